"""ipywidgets glue for notebooks: a layer picker and a small pruning explorer. No math lives here.

The work behind each widget is a plain function (`evaluate_layers`), tested without a browser;
the widgets only collect a choice of layers and display what that function returns.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import pandas as pd
from matplotlib import colormaps, colors

from .calibration import ece
from .data import Dataset
from .pruning import drop_attention
from .scoring import predict

__all__ = ["ExplorerResult", "LayerPicker", "PruningExplorer", "evaluate_layers", "importance_colours"]


def importance_colours(importance: pd.Series | Sequence[float], cmap: str = "viridis") -> list[str]:
    """One hex colour per layer: low importance (safe to drop) dark, high bright; NaN grey."""
    values = np.asarray(importance, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ["#cccccc"] * len(values)
    norm = colors.Normalize(vmin=float(finite.min()), vmax=float(finite.max()) or 1.0)
    cm = colormaps[cmap]
    return [colors.to_hex(cm(norm(v))) if np.isfinite(v) else "#cccccc" for v in values]


class LayerPicker:
    """A grid of toggle buttons, one per layer, framed in a colour by importance. `.value` is the chosen layers."""

    def __init__(self, n_layers: int, importance: pd.Series | None = None, *, selected: Sequence[int] = (),
                 columns: int = 10):
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        tips = [""] * n_layers
        fills = ["#eeeeee"] * n_layers
        if importance is not None:
            if len(importance) != n_layers:
                raise ValueError(f"importance has {len(importance)} values for {n_layers} layers")
            fills = importance_colours(importance)
            tips = [f"importance {v:.4f}" for v in np.asarray(importance, dtype=float)]
        self.buttons = [
            W.ToggleButton(value=i in selected, description=str(i), tooltip=tips[i],
                           layout=W.Layout(width="44px", border=f"3px solid {fills[i]}"))
            for i in range(n_layers)
        ]
        self.widget = W.GridBox(self.buttons, layout=W.Layout(grid_template_columns=f"repeat({columns}, 48px)"))

    @property
    def value(self) -> list[int]:
        return [i for i, b in enumerate(self.buttons) if b.value]

    @value.setter
    def value(self, layers: Sequence[int]) -> None:
        chosen = set(layers)
        for i, b in enumerate(self.buttons):
            b.value = i in chosen

    def observe(self, callback: Callable[[list[int]], None]) -> None:
        """Call `callback(layers)` whenever a button is toggled."""
        for b in self.buttons:
            b.observe(lambda change: callback(self.value), names="value")

    def _repr_mimebundle_(self, **kwargs):  # display the grid itself
        return self.widget._repr_mimebundle_(**kwargs)


@dataclass(frozen=True)
class ExplorerResult:
    """What the explorer shows for one choice of dropped layers."""

    layers: tuple[int, ...]
    accuracy: float
    ece: float
    prediction: str
    confidence: float
    attribution_html: str


def evaluate_layers(model, tokenizer, dataset: Dataset, layers: Sequence[int], *, example: int = 0,
                    method: str = "saliency", backend: str = "fast", batch_size: int = 16) -> ExplorerResult:
    """Accuracy and ECE on `dataset`, and one example's prediction and attribution, with `layers` dropped."""
    from .attribution import attribute, show_attributions

    if not 0 <= example < len(dataset):
        raise ValueError(f"example index {example} is out of range for a dataset of {len(dataset)}")
    with drop_attention(model, layers):
        df = predict(model, tokenizer, dataset, batch_size=batch_size, progress=False)
        attr = attribute(model, tokenizer, dataset.task, [dataset.examples[example]], method=method, backend=backend)
    probs = df[[f"p_{n}" for n in df.attrs["label_names"]]].to_numpy()
    row = df.iloc[example]
    return ExplorerResult(
        layers=tuple(sorted(layers)),
        accuracy=float(df.correct.mean()),
        ece=float(ece(probs, df.label.to_numpy())),
        prediction=dataset.task.label_names[int(row.pred)],
        confidence=float(row.confidence),
        attribution_html=show_attributions(attr).data,
    )


def _result_html(r: ExplorerResult, reference: ExplorerResult | None) -> str:
    def delta(a: float, b: float | None) -> str:
        return "" if b is None else f" ({a - b:+.3f})"

    ref_acc = reference.accuracy if reference else None
    ref_ece = reference.ece if reference else None
    return (
        f"<b>dropped:</b> {html.escape(str(list(r.layers)) or '[]')}<br>"
        f"<b>accuracy</b> {r.accuracy:.3f}{delta(r.accuracy, ref_acc)} &nbsp; "
        f"<b>ECE</b> {r.ece:.3f}{delta(r.ece, ref_ece)}<br>"
        f"<b>example prediction:</b> {html.escape(r.prediction)} ({r.confidence:.2f})<br>{r.attribution_html}"
    )


class PruningExplorer:
    """Pick layers -> accuracy, ECE and one attribution update (against the unpruned reference)."""

    def __init__(self, model, tokenizer, dataset: Dataset, importance: pd.Series | None = None, *,
                 example: int = 0, method: str = "saliency", live: bool = False):
        from .models import decoder_layers

        self._args = (model, tokenizer, dataset)
        self._opts = dict(example=example, method=method)
        self.picker = LayerPicker(len(decoder_layers(model)), importance)
        self.output = W.HTML()
        self.button = W.Button(description="evaluate", button_style="primary")
        self.button.on_click(lambda _: self.update())
        if live:
            self.picker.observe(lambda layers: self.update())
        self.reference = evaluate_layers(*self._args, [], **self._opts)
        self.result = self.reference
        self.output.value = _result_html(self.reference, None)
        self.widget = W.VBox([self.picker.widget, self.button, self.output])

    def update(self) -> ExplorerResult:
        """Evaluate the picker's current choice and refresh the display."""
        self.result = evaluate_layers(*self._args, self.picker.value, **self._opts)
        self.output.value = _result_html(self.result, self.reference)
        return self.result

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
