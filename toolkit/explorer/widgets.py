"""ipywidgets glue for notebooks: a layer picker and a pruning explorer a teacher can project.

The work behind each widget is a plain function, tested without a browser: the steps in
:mod:`toolkit.explorer.steps` (`score_layers`, `explain_example`, `compare_to_reference`,
`evaluate_layers`, `least_important`), the faithfulness numbers in :mod:`toolkit.explorer.faithfulness`
(`sentence_comprehensiveness`, `set_comprehensiveness`, `compare_comprehensiveness`) and the HTML in
:mod:`toolkit.explorer.html` (`importance_colours` / `colour_legend_html`, `result_html`,
`faithfulness_html`). The widgets only collect choices, call these, and show what they return,
including any exception (a callback's exception would otherwise go to JupyterLab's hidden log
console). The names listed in ``__all__`` stay importable from here.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

import ipywidgets as W
import numpy as np
import pandas as pd

from ..data.datasets import Dataset
from .steps import (
    ExplorerResult,
    LayerScores,
    Progress,
    check_droppable,
    compare_to_reference,
    explain_example,
    explorer_result,
    least_important,
    score_layers,
)
from .html import (
    colour_legend_html,
    colour_positions,
    error_html,
    faithfulness_html,
    importance_colours,
    layers_text,
    result_html,
)
from ..models.adapters import decoder_layers
from .faithfulness import (
    FAITHFULNESS_METRICS,
    SentenceComprehensiveness,
    compare_comprehensiveness,
    sentence_comprehensiveness,
    set_comprehensiveness,
)
from .._core.validation import InputError, check_int

__all__ = [
    "LayerPicker",
    "PruningExplorer",
]


# --------------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------------
class LayerPicker:
    """A grid of toggle buttons, one per layer, framed in a colour by importance. `.value` is the chosen layers.

    A chosen (dropped) layer is drawn red; the border colour says how important the layer is.
    """

    def __init__(self, n_layers: int, importance: pd.Series | None = None, *, selected: Sequence[int] = (),
                 columns: int = 10, scale: str = "rank"):
        check_int(n_layers, "n_layers", 1)
        self.n_layers = n_layers
        self.buttons = [
            W.ToggleButton(value=i in selected, description=str(i), button_style="danger" if i in selected else "",
                           layout=W.Layout(width="46px", height="34px"))
            for i in range(n_layers)
        ]
        for b in self.buttons:
            b.add_class("tk-layer")
            b.observe(self._restyle, names="value")
        self.recolour(importance, scale)
        self.widget = W.GridBox(self.buttons, layout=W.Layout(grid_template_columns=f"repeat({columns}, 50px)"))

    @staticmethod
    def _restyle(change) -> None:
        change["owner"].button_style = "danger" if change["new"] else ""

    def recolour(self, importance: pd.Series | None, scale: str = "rank") -> None:
        """Frame each button in its importance colour (grey without importance); tooltips show the score."""
        tips = [f"layer {i}" for i in range(self.n_layers)]
        fills = ["#eeeeee"] * self.n_layers
        if importance is not None:
            if len(importance) != self.n_layers:
                raise InputError(f"importance has {len(importance)} values for {self.n_layers} layers")
            fills = importance_colours(importance, scale)
            values = np.asarray(importance, dtype=float)
            order = colour_positions(values, "rank")
            tips = [f"layer {i}: {getattr(importance, 'name', None) or 'importance'} {v:.4g}"
                    + (f", rank {int(round(o * (np.isfinite(values).sum() - 1))) + 1} (1 = least important)"
                       if np.isfinite(o) else "")
                    for i, (v, o) in enumerate(zip(values, order))]
        for b, fill, tip in zip(self.buttons, fills, tips):
            b.layout.border = f"4px solid {fill}"
            b.tooltip = tip

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


_HIDE_STATIC = "<style>.tk-static-copy{display:none}</style>"


class PruningExplorer:
    """Pick layers, press evaluate: accuracy, ECE (with CIs vs unpruned), one sentence's attribution and
    its comprehensiveness; press faithfulness: the set's mean comprehensiveness vs unpruned with a CI.

    Results are cached per (layer set, sentence), the set-level faithfulness per layer set:
    re-picking a set shows its result at once. While it evaluates, the pressed button is disabled
    and a progress bar runs; an exception is shown in the widget.
    The last result is also written to a plain HTML output below the widget, so a saved notebook
    (or a static renderer) shows it without a kernel; in a live session that copy is hidden.

    Args:
        importance: a Series (one metric) or a DataFrame (one column per metric) indexed by layer;
            colours the buttons and feeds the "k least important" picker.
        example: the sentence shown first (an index into `dataset`).
        scale: colour scale, one of `COLOUR_SCALES`.
        live: evaluate on every toggle instead of on the button.
        faithfulness: the set-level metric of the faithfulness button: ``"aopc"`` (AOPC
            comprehensiveness, cheap) or ``"naopc"`` (normalised between each sentence's bounds:
            exact for sentences of <= 8 words, searched above; many more forward passes).
    """

    def __init__(self, model, tokenizer, dataset: Dataset, importance: pd.Series | pd.DataFrame | None = None, *,
                 example: int = 0, method: str = "saliency", live: bool = False, scale: str = "rank",
                 batch_size: int = 16, n_boot: int = 1000, seed: int = 0, faithfulness: str = "aopc"):
        if faithfulness not in FAITHFULNESS_METRICS:
            raise InputError(f"unknown faithfulness {faithfulness!r}; expected one of {list(FAITHFULNESS_METRICS)}")
        self.faithfulness = faithfulness
        self.model, self.tokenizer, self.dataset = model, tokenizer, dataset
        self.method, self.batch_size, self.n_boot, self.seed, self.scale = method, batch_size, n_boot, seed, scale
        self.n_layers = len(decoder_layers(model))
        if not 0 <= example < len(dataset):
            raise InputError(f"example index {example} is out of range for a dataset of {len(dataset)}")
        self.example = example
        if isinstance(importance, pd.Series):
            importance = importance.to_frame(importance.name or "importance")
        self.importance = importance
        self._scores: dict[tuple[int, ...], LayerScores] = {}
        self._attributions: dict[tuple[tuple[int, ...], int], object] = {}
        self._sentence_faith: dict[tuple[tuple[int, ...], int], SentenceComprehensiveness] = {}
        self._set_faith: dict[tuple[int, ...], pd.DataFrame] = {}
        self._faith_tables: dict[tuple[int, ...], pd.DataFrame] = {}
        self._static = None

        metric = None if importance is None else importance.columns[0]
        self.picker = LayerPicker(self.n_layers, None if importance is None else importance[metric], scale=scale)
        self.legend = W.HTML(colour_legend_html(importance[metric], scale, name=str(metric)) if metric else "")
        self.metric = W.Dropdown(options=[] if importance is None else list(importance.columns), value=metric,
                                 description="metric", layout=W.Layout(width="230px"))
        self.k = W.BoundedIntText(value=3, min=0, max=self.n_layers - 1, description="k",
                                  layout=W.Layout(width="120px"))
        self.pick_k = W.Button(description="select k least important", layout=W.Layout(width="200px"))
        self.clear = W.Button(description="clear", layout=W.Layout(width="70px"))
        self.sentence = W.Dropdown(
            options=[(f"#{i} [{dataset.label_names[e.label]}] {e.text[:70]}", i) for i, e in enumerate(dataset)],
            value=example, description="sentence", layout=W.Layout(width="640px"))
        self.button = W.Button(description="evaluate", button_style="primary", icon="play")
        self.button.add_class("tk-evaluate")
        self.progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self.status = W.HTML()
        self.status.add_class("tk-status")
        self.output = W.HTML()
        self.output.add_class("tk-result")
        self.faith_button = W.Button(description="faithfulness", icon="balance-scale",
                                     tooltip=f"{faithfulness.upper()} comprehensiveness on all {len(dataset)} "
                                             "sentences, unpruned vs the shown layer set",
                                     layout=W.Layout(width="170px"))
        self.faith_button.add_class("tk-faith-button")
        self.faith_status = W.HTML()
        self.faith_status.add_class("tk-faith-status")
        self.faith_output = W.HTML()
        self.faith_output.add_class("tk-faithfulness")

        self.button.on_click(lambda _: self.update())
        self.faith_button.on_click(lambda _: self.update_faithfulness())
        self.pick_k.on_click(lambda _: self._guard(self._select_k))
        self.clear.on_click(lambda _: setattr(self.picker, "value", []))
        self.metric.observe(lambda _: self._guard(self._recolour), names="value")
        self.sentence.observe(lambda change: self._on_sentence(change["new"]), names="value")
        self.picker.observe(lambda layers: self.update() if live else self._on_toggle())

        self.reference = self.evaluate([])
        self.result = self.reference
        self._show(self.result)
        pickers = [self.metric, self.k, self.pick_k, self.clear] if importance is not None else [self.clear]
        self.widget = W.VBox([
            self.legend, self.picker.widget, W.HBox(pickers), self.sentence,
            W.HBox([self.button, self.progress, self.status]), self.output,
            W.HBox([self.faith_button, self.faith_status]), self.faith_output,
        ])
        self.widget.add_class("tk-explorer")

    # -- plain steps -----------------------------------------------------------------------------
    def evaluate(self, layers: Sequence[int] | None = None, example: int | None = None,
                 on_progress: Progress | None = None) -> ExplorerResult:
        """The result for `layers` (default: the picker's) and `example`, from the cache when evaluated before.

        Does not change what the widget shows (use `update` for that).
        """
        layers = check_droppable(self.picker.value if layers is None else layers, self.n_layers)
        example = self.example if example is None else example
        report = on_progress or (lambda fraction, what: None)
        if layers not in self._scores:
            self._scores[layers] = score_layers(self.model, self.tokenizer, self.dataset, layers,
                                                batch_size=self.batch_size,
                                                on_progress=lambda f, w: report(0.8 * f, w))
        for key in ((), layers):
            if (key, example) not in self._attributions:
                report(0.8 if key else 0.85, f"explaining sentence #{example}")
                self._attributions[(key, example)] = explain_example(
                    self.model, self.tokenizer, self.dataset, key, example, method=self.method)
            if (key, example) not in self._sentence_faith:
                report(0.9 if key else 0.95, f"erasing the top words of sentence #{example}")
                self._sentence_faith[(key, example)] = sentence_comprehensiveness(
                    self.model, self.tokenizer, self.dataset.task, self.dataset.examples[example].text,
                    self._attributions[(key, example)], key, batch_size=self.batch_size)
        report(1.0, "done")
        return self._cached_result(layers, example)

    def _cached_result(self, layers: tuple[int, ...], example: int) -> ExplorerResult:
        return explorer_result(self.dataset, self._scores[layers], example, self._attributions[(layers, example)],
                       self._sentence_faith[(layers, example)])

    def cached(self, layers: Sequence[int], example: int | None = None) -> bool:
        """Whether `evaluate(layers, example)` would answer from the cache."""
        key = tuple(sorted(layers))
        example = self.example if example is None else example
        return key in self._scores and all(
            (k, example) in self._attributions and (k, example) in self._sentence_faith for k in ((), key))

    def comparison(self, result: ExplorerResult) -> pd.DataFrame:
        return compare_to_reference(result.scores, self._scores[()], n_boot=self.n_boot, seed=self.seed)

    def faithfulness_comparison(self, layers: Sequence[int] | None = None,
                                on_progress: Progress | None = None) -> pd.DataFrame:
        """The set's mean comprehensiveness with `layers` (default: the shown result's) dropped vs unpruned.

        `toolkit.explorer.faithfulness.compare_comprehensiveness` of `set_comprehensiveness` for the
        unpruned model and for `layers`, each computed once (cached per layer set). Does not change
        what the widget shows (use `update_faithfulness` for that).
        """
        layers = check_droppable(self.result.layers if layers is None else layers, self.n_layers)
        report = on_progress or (lambda fraction, what: None)
        for i, key in enumerate(dict.fromkeys(((), layers))):
            if key not in self._set_faith:
                name = "unpruned" if not key else f"dropped {layers_text(key)}"
                self._set_faith[key] = set_comprehensiveness(
                    self.model, self.tokenizer, self.dataset, key, method=self.method, metric=self.faithfulness,
                    batch_size=self.batch_size,
                    on_progress=lambda f, w, i=i, name=name: report(0.5 * (i + f), f"{name}: {w}"))
        report(1.0, "done")
        if layers not in self._faith_tables:
            self._faith_tables[layers] = compare_comprehensiveness(
                self._set_faith[layers], self._set_faith[()], metric=self.faithfulness, n_boot=self.n_boot,
                seed=self.seed)
        return self._faith_tables[layers]

    # -- display ---------------------------------------------------------------------------------
    def _reference_for(self, example: int) -> ExplorerResult:
        return self._cached_result((), example)

    def _faith_html(self, busy: bool = False) -> str:
        layers = self.result.layers
        table = None
        if () in self._set_faith and layers in self._set_faith:
            table = self.faithfulness_comparison(layers)
        return faithfulness_html(table, layers, n=len(self.dataset), method=self.method, busy=busy)

    def _html(self, result: ExplorerResult, stale: bool = False) -> str:
        return result_html(result, self._reference_for(result.example), self.comparison(result),
                           n_layers=self.n_layers, stale=stale)

    def _show(self, result: ExplorerResult) -> None:
        self.result = result
        self.output.value = _HIDE_STATIC + self._html(result)
        self.status.value = ""
        self._show_faith()

    def _show_faith(self, busy: bool = False) -> None:
        self.faith_output.value = self._faith_html(busy)
        if self._static is not None:
            self._static.update(self._static_bundle(self._static_body()), raw=True)

    def _static_body(self) -> str:
        return self._html(self.result) + self._faith_html()

    def _busy(self, busy: bool, what: str = "") -> None:
        self.button.disabled = busy
        self.button.description = "evaluating..." if busy else "evaluate"
        self.button.icon = "spinner" if busy else "play"
        self.progress.layout.visibility = "visible" if busy else "hidden"
        if busy:
            self.progress.value = 0
            self.status.value = f"<i>evaluating {html.escape(what)}...</i>"

    def _on_progress(self, fraction: float, what: str) -> None:
        self.progress.value = fraction
        self.status.value = f"<i>evaluating... {html.escape(what)}</i>"

    def _guard(self, step: Callable[[], object]) -> object:
        try:
            return step()
        except Exception as error:  # noqa: BLE001 - shown to the user, who can act on it
            self.status.value = error_html(error)
            return None

    def _faith_busy(self, busy: bool) -> None:
        self.faith_button.disabled = busy
        self.button.disabled = busy  # one computation at a time: the kernel runs them in turn anyway
        self.faith_button.description = "computing..." if busy else "faithfulness"
        self.faith_button.icon = "spinner" if busy else "balance-scale"
        self.progress.layout.visibility = "visible" if busy else "hidden"
        if busy:
            self.progress.value = 0
            self.faith_status.value = "<i>computing faithfulness...</i>"

    def _on_faith_progress(self, fraction: float, what: str) -> None:
        self.progress.value = fraction
        self.faith_status.value = f"<i>computing faithfulness... {html.escape(what)}</i>"

    def update_faithfulness(self) -> pd.DataFrame | None:
        """Compute (or take from the cache) the set-level faithfulness of the shown layer set and show it;
        an error is shown in the panel, not raised."""
        layers = self.result.layers
        fresh = not ({(), layers} <= self._set_faith.keys())
        if fresh:
            self._faith_busy(True)
            self._show_faith(busy=True)
        started = time.perf_counter()
        try:
            table = self.faithfulness_comparison(layers, on_progress=self._on_faith_progress if fresh else None)
            self._show_faith()
            self.faith_status.value = ""
            self.last_faith_seconds = time.perf_counter() - started
            return table
        except Exception as error:  # noqa: BLE001 - shown to the user, who can act on it
            self.faith_output.value = self._faith_html()
            self.faith_status.value = error_html(error)
            return None
        finally:
            if fresh:
                self._faith_busy(False)

    def _on_toggle(self) -> None:
        layers = tuple(self.picker.value)
        if self.cached(layers):
            self._guard(lambda: self._show(self.evaluate(layers)))
        elif layers != self.result.layers or self.example != self.result.example:
            self.output.value = _HIDE_STATIC + self._html(self.result, stale=True)
            self.status.value = (
                "<b style='color:#9a6700'>&#9888; out of date</b>: the result below is for dropped "
                f"{layers_text(self.result.layers)}, the toggles say {layers_text(layers)}; press evaluate")

    def _on_sentence(self, example: int) -> None:
        self.example = example
        self.update(self.result.layers, keep_picker=True)

    def _select_k(self) -> None:
        self.picker.value = least_important(self.importance, self.metric.value, int(self.k.value))

    def _recolour(self) -> None:
        scores = self.importance[self.metric.value]
        self.picker.recolour(scores, self.scale)
        self.legend.value = colour_legend_html(scores, self.scale, name=str(self.metric.value))

    def update(self, layers: Sequence[int] | None = None, *, keep_picker: bool = False) -> ExplorerResult | None:
        """Evaluate the picker's choice (or `layers`) and show it; an error is shown, not raised."""
        if layers is not None and not keep_picker:
            self.picker.value = layers
        chosen = tuple(sorted(self.picker.value if layers is None else layers))
        fresh = not self.cached(chosen)
        if fresh:
            self._busy(True, f"dropped {layers_text(chosen)}")
        started = time.perf_counter()
        try:
            result = self.evaluate(chosen, on_progress=self._on_progress if fresh else None)
            self._show(result)
            self.last_seconds = time.perf_counter() - started
            return result
        except Exception as error:  # noqa: BLE001 - shown to the user, who can act on it
            self.status.value = error_html(error)
            return None
        finally:
            if fresh:
                self._busy(False)
                if self.status.value.startswith("<i>"):
                    self.status.value = ""

    # -- notebook display ------------------------------------------------------------------------
    def _static_bundle(self, body: str) -> dict:
        return {
            "text/html": '<div class="tk-static-copy"><small>Last result of the pruning explorer (a static copy; '
                         "run the notebook to interact)</small>" + body + "</div>",
            "text/plain": f"PruningExplorer: dropped {layers_text(self.result.layers)}, accuracy "
                          f"{self.result.accuracy:.3f}, ECE {self.result.ece:.3f} (n={self.result.n})",
        }

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "PruningExplorer (an interactive widget: run the notebook to use it)"
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self._static = display(self._static_bundle(self._static_body()), raw=True, display_id=True)
