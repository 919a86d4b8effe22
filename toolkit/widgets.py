"""ipywidgets glue for notebooks: a layer picker and a pruning explorer a teacher can project.

The work behind each widget is a plain function, tested without a browser: `score_layers`
(accuracy and ECE with layers dropped), `explain_example` (one sentence's attribution),
`compare_to_reference` (paired bootstrap deltas), `importance_colours` / `colour_legend_html`,
`least_important`, `result_html`, `faithfulness_html`; the faithfulness numbers come from
:mod:`toolkit.pruned_faithfulness`. The widgets only collect choices, call these, and show what
they return, including any exception (a callback's exception would otherwise go to JupyterLab's
hidden log console).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import pandas as pd
from matplotlib import colormaps, colors

from .attribution import attribute, attribution_legend_html, attributions_html, scores_are_signed
from .calibration import ece, probs_labels
from .data import Dataset
from .importance import select_layers
from .models import decoder_layers
from .pruned_faithfulness import (
    FAITHFULNESS_METRICS,
    SentenceComprehensiveness,
    compare_comprehensiveness,
    sentence_comprehensiveness,
    set_comprehensiveness,
)
from .pruning import drop_attention
from .scoring import predict
from .stats import Interval, paired_bootstrap

__all__ = [
    "COLOUR_SCALES",
    "ExplorerResult",
    "LayerPicker",
    "LayerScores",
    "PruningExplorer",
    "check_droppable",
    "colour_legend_html",
    "compare_to_reference",
    "evaluate_layers",
    "explain_example",
    "faithfulness_html",
    "importance_colours",
    "least_important",
    "result_html",
    "score_layers",
]

COLOUR_SCALES = ("rank", "log", "linear")
_CMAP = "viridis"
_NAN_COLOUR = "#cccccc"
Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------------
def _positions(values: np.ndarray, scale: str) -> np.ndarray:
    """Map finite values to [0, 1] by rank (ties share the lowest rank), log10, or linearly; NaN stays NaN."""
    if scale not in COLOUR_SCALES:
        raise ValueError(f"unknown colour scale {scale!r}; expected one of {list(COLOUR_SCALES)}")
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    v = values[ok]
    if v.size == 0:
        return out
    if scale == "rank":
        ranks = np.searchsorted(np.sort(v), v, side="left").astype(float)
        out[ok] = ranks / max(v.size - 1, 1)
        return out
    if scale == "log":
        positive = v[v > 0]
        floor = positive.min() if positive.size else 1.0
        v = np.log10(np.maximum(v, floor))
    span = v.max() - v.min()
    out[ok] = (v - v.min()) / span if span > 0 else 0.0
    return out


def importance_colours(importance: pd.Series | Sequence[float], scale: str = "rank", cmap: str = _CMAP) -> list[str]:
    """One hex colour per layer: low importance (safe to drop) dark, high bright; NaN grey.

    `scale="rank"` spreads the layers evenly over the colour map, so the few layers that dominate
    the raw scores (e.g. 0, 1 and 24 of SmolLM2) no longer squash the other 27 into one colour;
    `"log"` uses log10 of the scores (non-positive scores clipped to the smallest positive one);
    `"linear"` the raw scores.
    """
    pos = _positions(np.asarray(importance, dtype=float), scale)
    cm = colormaps[cmap]
    return [colors.to_hex(cm(p)) if np.isfinite(p) else _NAN_COLOUR for p in pos]


def colour_legend_html(importance: pd.Series | Sequence[float], scale: str = "rank", cmap: str = _CMAP,
                       name: str = "importance") -> str:
    """A colour bar for `importance_colours`: its ends labelled with the scale's meaning and the values."""
    values = np.asarray(importance, dtype=float)
    finite = values[np.isfinite(values)]
    cm = colormaps[cmap]
    stops = ", ".join(colors.to_hex(cm(x)) for x in np.linspace(0, 1, 9))
    low, high = (f"{finite.min():.3g}", f"{finite.max():.3g}") if finite.size else ("-", "-")
    how = {"rank": "colour = rank", "log": "colour = log10 of the score", "linear": "colour = score"}[scale]
    return (
        '<div class="tk-legend" style="display:flex; align-items:center; gap:8px; font-size:13px">'
        f"<span>border: {html.escape(name)} ({how})</span>"
        f"<span>least important<br><small>{low}, safest to drop</small></span>"
        f'<span style="display:inline-block; width:220px; height:14px; border-radius:3px; '
        f'background: linear-gradient(to right, {stops})"></span>'
        f"<span>most important<br><small>{high}</small></span>"
        f'<span style="display:inline-block; width:14px; height:14px; background:{_NAN_COLOUR}"></span>'
        "<span>no score</span></div>"
    )


def least_important(importance: pd.DataFrame | pd.Series, metric: str | None, k: int) -> list[int]:
    """The `k` least important layers by `metric` (a column of `importance`), in layer order."""
    if isinstance(importance, pd.DataFrame):
        if metric not in importance.columns:
            raise ValueError(f"unknown importance metric {metric!r}; expected one of {list(importance.columns)}")
        importance = importance[metric]
    return select_layers(importance, k)


# --------------------------------------------------------------------------------------------------
# Evaluation (plain functions)
# --------------------------------------------------------------------------------------------------
def check_droppable(layers: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Sorted layers, refusing to drop every attention layer (nothing would mix the tokens any more)."""
    chosen = tuple(sorted(int(i) for i in layers))
    if n_layers and len(set(chosen)) >= n_layers:
        raise ValueError(
            f"cannot drop all {n_layers} attention layers: with none left no token sees any other, "
            "so the prompt cannot reach the answer position; keep at least one layer"
        )
    return chosen


@dataclass(frozen=True, eq=False)
class LayerScores:
    """Predictions on the evaluation set with `layers` dropped: probabilities (n, C) and gold labels (n,)."""

    layers: tuple[int, ...]
    probs: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean())

    @property
    def ece(self) -> float:
        return float(ece(self.probs, self.labels))


def score_layers(model, tokenizer, dataset: Dataset, layers: Sequence[int], *, batch_size: int = 16,
                 chunks: int = 4, on_progress: Progress | None = None) -> LayerScores:
    """`predict` on `dataset` with `layers` dropped, in up to `chunks` pieces so progress can be shown."""
    layers = tuple(sorted(layers))
    n = len(dataset)
    bounds = np.linspace(0, n, min(chunks, n) + 1).round().astype(int)
    frames = []
    with drop_attention(model, layers):
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if on_progress:
                on_progress(i / (len(bounds) - 1), f"scoring sentences {a + 1}-{b} of {n}")
            frames.append(predict(model, tokenizer, dataset[a:b], batch_size=batch_size, progress=False))
    df = pd.concat(frames, ignore_index=True)
    df.attrs = frames[0].attrs
    probs, labels = probs_labels(df)
    return LayerScores(layers=layers, probs=probs, labels=labels, label_names=tuple(dataset.task.label_names))


def explain_example(model, tokenizer, dataset: Dataset, layers: Sequence[int], example: int, *,
                    method: str = "saliency", backend: str = "fast"):
    """The attribution of sentence `example` of `dataset` (for its predicted label) with `layers` dropped."""
    if not 0 <= example < len(dataset):
        raise ValueError(f"example index {example} is out of range for a dataset of {len(dataset)}")
    with drop_attention(model, layers):
        return attribute(model, tokenizer, dataset.task, [dataset.examples[example]], method=method,
                         backend=backend)[0]


def _accuracy(probs: np.ndarray, labels: np.ndarray, *, weights: np.ndarray | None = None):
    correct = (probs.argmax(axis=1) == labels).astype(float)
    return float(correct.mean()) if weights is None else (weights @ correct) / weights.sum(axis=-1)


def _ece(probs: np.ndarray, labels: np.ndarray, *, weights: np.ndarray | None = None):
    return ece(probs, labels, weights=weights)


METRICS = {"accuracy": (_accuracy, "higher"), "ECE": (_ece, "lower")}


def compare_to_reference(scores: LayerScores, reference: LayerScores, *, n_boot: int = 1000, alpha: float = 0.05,
                         seed: int = 0) -> pd.DataFrame:
    """Each metric with `layers` dropped against the unpruned reference on the same sentences.

    delta = metric(pruned) - metric(unpruned), with a paired percentile bootstrap CI
    (`toolkit.stats.paired_bootstrap`: both models resampled on the same sentences).

    Returns:
        DataFrame indexed by metric (`accuracy`, `ECE`) with columns `value`, `reference`, `delta`,
        `low`, `high` (the CI of delta), `better` ("higher" or "lower"), `n`.
    """
    if scores.n != reference.n or not np.array_equal(scores.labels, reference.labels):
        raise ValueError(f"scores (n={scores.n}) and reference (n={reference.n}) are not on the same sentences")
    rows = {}
    for name, (fn, better) in METRICS.items():
        if scores.layers == reference.layers:
            ci = Interval(0.0, 0.0, 0.0, alpha, 0)
        else:
            ci = paired_bootstrap(fn, (reference.probs, reference.labels), (scores.probs, scores.labels),
                                  n_boot=n_boot, alpha=alpha, seed=seed)
        rows[name] = dict(value=float(fn(scores.probs, scores.labels)),
                          reference=float(fn(reference.probs, reference.labels)),
                          delta=ci.estimate, low=ci.low, high=ci.high, better=better, n=scores.n)
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(frozen=True, eq=False)
class ExplorerResult:
    """What the explorer shows for one choice of dropped layers and one sentence."""

    layers: tuple[int, ...]
    accuracy: float
    ece: float
    prediction: str
    confidence: float
    attribution_html: str
    n: int = 0
    example: int = 0
    text: str = ""
    gold: str = ""
    scores: LayerScores | None = None
    attribution: object = None
    faithfulness: SentenceComprehensiveness | None = None


def _result(dataset: Dataset, scores: LayerScores, example: int, attribution,
            faithfulness: SentenceComprehensiveness | None = None) -> ExplorerResult:
    ex = dataset.examples[example]
    return ExplorerResult(
        layers=scores.layers, accuracy=scores.accuracy, ece=scores.ece,
        prediction=scores.label_names[int(scores.preds[example])], confidence=float(scores.probs[example].max()),
        attribution_html=attributions_html([attribution]), n=scores.n, example=example, text=ex.text,
        gold=scores.label_names[ex.label], scores=scores, attribution=attribution, faithfulness=faithfulness,
    )


def evaluate_layers(model, tokenizer, dataset: Dataset, layers: Sequence[int], *, example: int = 0,
                    method: str = "saliency", backend: str = "fast", batch_size: int = 16) -> ExplorerResult:
    """Accuracy and ECE on `dataset`, and one sentence's prediction, attribution and comprehensiveness
    (`toolkit.pruned_faithfulness.sentence_comprehensiveness`), with `layers` dropped."""
    if not 0 <= example < len(dataset):
        raise ValueError(f"example index {example} is out of range for a dataset of {len(dataset)}")
    scores = score_layers(model, tokenizer, dataset, layers, batch_size=batch_size, chunks=1)
    attribution = explain_example(model, tokenizer, dataset, layers, example, method=method, backend=backend)
    faith = sentence_comprehensiveness(model, tokenizer, dataset.task, dataset.examples[example].text, attribution,
                                       layers, batch_size=batch_size)
    return _result(dataset, scores, example, attribution, faith)


# --------------------------------------------------------------------------------------------------
# HTML views
# --------------------------------------------------------------------------------------------------
def _layers_text(layers: Sequence[int]) -> str:
    return "none" if not layers else str(list(layers))


def _fmt_delta(row: pd.Series) -> str:
    if row.low == row.high == row.delta == 0.0:
        return "&ndash;"
    return f"{row.delta:+.3f} <small>[{row.low:+.3f}, {row.high:+.3f}]</small>"


_CELL = "style='padding:2px 12px 2px 0; text-align:right'"
COMPREHENSIVENESS_NOTE = (
    "comprehensiveness = how much the predicted label's probability drops when the words the explanation "
    "ranks highest are erased (mean over erasing 1, 5, 10, 20, 50% of the words); higher is better"
)


def _metrics_table(comparison: pd.DataFrame, css_class: str = "tk-metrics") -> str:
    """Rows of `compare_to_reference` / `compare_comprehensiveness`: value, unpruned, change [95% CI]."""
    def number(x: float) -> str:
        return "&ndash;" if not np.isfinite(x) else f"{x:.3f}"

    rows = "".join(
        f"<tr><td style='padding-right:12px'><b>{html.escape(str(name))}</b> <small>({row.better} is better)</small>"
        f"</td><td {_CELL}>{number(row.value)}</td><td {_CELL}>{number(row.reference)}</td>"
        f"<td {_CELL}>{_fmt_delta(row) if np.isfinite(row.delta) else '&ndash;'}</td></tr>"
        for name, row in comparison.iterrows()
    )
    return (
        f'<table class="{css_class}" style="border-collapse:collapse; font-size:15px">'
        f"<tr><th style='text-align:left'>metric</th><th {_CELL}>this set</th><th {_CELL}>unpruned</th>"
        f"<th {_CELL}>change vs unpruned <small>[95% CI]</small></th></tr>" + rows + "</table>"
    )


def _sentence_faithfulness_html(result: ExplorerResult, reference: ExplorerResult, dropped: str) -> str:
    """One line: this sentence's AOPC comprehensiveness unpruned and with the layers dropped."""
    if result.faithfulness is None or reference.faithfulness is None:
        return ""
    after, before = result.faithfulness.aopc, reference.faithfulness.aopc
    change = f" (change {after - before:+.3f})" if result.layers else ""
    return (
        "<div class='tk-sentence-faithfulness' style='margin-top:6px; font-size:15px'>"
        "<b>faithfulness of this sentence's explanation</b>: comprehensiveness "
        f"unpruned <b>{before:.3f}</b> &middot; with {dropped} dropped <b>{after:.3f}</b>{change}"
        f"<div style='font-size:12px; color:#555'>{COMPREHENSIVENESS_NOTE}; one sentence, so no CI</div></div>"
    )


def faithfulness_html(comparison: pd.DataFrame | None, layers: Sequence[int], *, n: int, method: str,
                      busy: bool = False) -> str:
    """The explorer's set-level faithfulness panel: the table of `compare_comprehensiveness`, or a hint."""
    dropped = _layers_text(layers)
    head = (f"<div style='font-size:15px'><b>faithfulness on all {n} sentences</b> "
            f"<small>({html.escape(method)} explanations, unpruned vs {dropped} dropped)</small></div>")
    if comparison is None:
        what = "computing..." if busy else (
            "press <b>faithfulness</b> to explain and erase every sentence, unpruned and pruned "
            "(slower than evaluate: it runs once per layer set, then comes from the cache)")
        return f'<div class="tk-faithfulness-body" style="margin-top:6px">{head}<small>{what}</small></div>'
    row = comparison.iloc[0]
    used = f"n = {row.n} sentences" + (f" ({row.n_total - row.n} with no room to rank left out)"
                                       if row.n_total != row.n else "")
    return (
        f'<div class="tk-faithfulness-body" style="margin-top:6px">{head}'
        + _metrics_table(comparison, "tk-faithfulness-table")
        + f"<div style='font-size:12px; color:#555'>{COMPREHENSIVENESS_NOTE}. {used}; paired bootstrap over "
        "the same sentences; each model is explained by its own attributions</div></div>"
    )


def result_html(result: ExplorerResult, reference: ExplorerResult, comparison: pd.DataFrame, *,
                n_layers: int | None = None, stale: bool = False) -> str:
    """The explorer's result panel: metrics vs unpruned with CIs, the sentence, its faithfulness, and
    both attributions with a legend true to the method (signed or not)."""
    dropped = _layers_text(result.layers)
    of = f" ({len(result.layers)} of {n_layers} attention layers)" if n_layers and result.layers else ""
    table = (
        _metrics_table(comparison)
        + f"<div style='font-size:12px; color:#555'>n = {result.n} sentences; paired bootstrap over the same "
        "sentences; a CI that contains 0 is no evidence of a change</div>"
    )

    def verdict(pred: str, conf: float) -> str:
        mark = "&#10003;" if pred == result.gold else "&#10007;"
        colour = "#1a7f37" if pred == result.gold else "#cf222e"
        return f"<b style='color:{colour}'>{html.escape(pred)}</b> ({conf:.2f}) {mark}"

    sentence = (
        f"<div style='margin-top:8px; font-size:15px'><b>sentence #{result.example}</b>: "
        f"&ldquo;{html.escape(result.text)}&rdquo;<br>gold label: <b>{html.escape(result.gold)}</b> &middot; "
        f"unpruned predicts {verdict(reference.prediction, reference.confidence)} &middot; "
        f"with {dropped} dropped: {verdict(result.prediction, result.confidence)}</div>"
    )

    def column(title: str, attribution) -> str:
        body = attributions_html([attribution], legend=False) if attribution is not None else ""
        return f"<div style='flex:1; min-width:280px'><b>{html.escape(title)}</b>{body}</div>"

    shown = [a for a in (reference.attribution, result.attribution) if a is not None]
    legend = ""
    if shown:
        legend = attribution_legend_html(scores_are_signed(shown[-1]), sorted({a.method for a in shown}))
    attributions = (
        "<div style='display:flex; gap:24px; margin-top:6px'>"
        + column("unpruned", reference.attribution)
        + column(f"dropped {dropped}", result.attribution)
        + "</div>" + legend
    )
    style = "opacity:0.45" if stale else ""
    return (
        f'<div class="tk-result-body" style="{style}">'
        f"<div style='font-size:16px'><b>dropped:</b> {dropped}{of}</div>"
        + table + sentence + _sentence_faithfulness_html(result, reference, dropped) + attributions + "</div>"
    )


def _error_html(error: BaseException) -> str:
    return (
        '<div class="tk-error" style="color:#cf222e; border:1px solid #cf222e; padding:6px; border-radius:4px">'
        f"<b>{html.escape(type(error).__name__)}</b>: {html.escape(str(error))}</div>"
    )


# --------------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------------
class LayerPicker:
    """A grid of toggle buttons, one per layer, framed in a colour by importance. `.value` is the chosen layers.

    A chosen (dropped) layer is drawn red; the border colour says how important the layer is.
    """

    def __init__(self, n_layers: int, importance: pd.Series | None = None, *, selected: Sequence[int] = (),
                 columns: int = 10, scale: str = "rank"):
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
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
                raise ValueError(f"importance has {len(importance)} values for {self.n_layers} layers")
            fills = importance_colours(importance, scale)
            values = np.asarray(importance, dtype=float)
            order = _positions(values, "rank")
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
            raise ValueError(f"unknown faithfulness {faithfulness!r}; expected one of {list(FAITHFULNESS_METRICS)}")
        self.faithfulness = faithfulness
        self.model, self.tokenizer, self.dataset = model, tokenizer, dataset
        self.method, self.batch_size, self.n_boot, self.seed, self.scale = method, batch_size, n_boot, seed, scale
        self.n_layers = len(decoder_layers(model))
        if not 0 <= example < len(dataset):
            raise ValueError(f"example index {example} is out of range for a dataset of {len(dataset)}")
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
        return _result(self.dataset, self._scores[layers], example, self._attributions[(layers, example)],
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

        `toolkit.pruned_faithfulness.compare_comprehensiveness` of `set_comprehensiveness` for the
        unpruned model and for `layers`, each computed once (cached per layer set). Does not change
        what the widget shows (use `update_faithfulness` for that).
        """
        layers = check_droppable(self.result.layers if layers is None else layers, self.n_layers)
        report = on_progress or (lambda fraction, what: None)
        for i, key in enumerate(dict.fromkeys(((), layers))):
            if key not in self._set_faith:
                name = "unpruned" if not key else f"dropped {_layers_text(key)}"
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
            self.status.value = _error_html(error)
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
            self.faith_status.value = _error_html(error)
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
                f"{_layers_text(self.result.layers)}, the toggles say {_layers_text(layers)}; press evaluate")

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
            self._busy(True, f"dropped {_layers_text(chosen)}")
        started = time.perf_counter()
        try:
            result = self.evaluate(chosen, on_progress=self._on_progress if fresh else None)
            self._show(result)
            self.last_seconds = time.perf_counter() - started
            return result
        except Exception as error:  # noqa: BLE001 - shown to the user, who can act on it
            self.status.value = _error_html(error)
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
            "text/plain": f"PruningExplorer: dropped {_layers_text(self.result.layers)}, accuracy "
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
