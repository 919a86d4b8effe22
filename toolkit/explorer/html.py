"""HTML for the pruning explorer and the layer picker: importance colours, the result and faithfulness panels.

Strings in, strings out (all text escaped); no widget state. The colour scales map layer importance
to a matplotlib colour map without touching matplotlib's global state.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps, colors

from ..attribution import attribution_legend_html, attributions_html, scores_are_signed
from .steps import ExplorerResult
from .._core.validation import InputError

__all__ = [
    "COLOUR_SCALES",
    "COMPREHENSIVENESS_NOTE",
    "colour_legend_html",
    "colour_positions",
    "error_html",
    "faithfulness_html",
    "importance_colours",
    "layers_text",
    "result_html",
]

COLOUR_SCALES = ("rank", "log", "linear")
_CMAP = "viridis"
_NAN_COLOUR = "#cccccc"


# --------------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------------
def colour_positions(values: np.ndarray, scale: str) -> np.ndarray:
    """Map finite values to [0, 1] by rank (ties share the lowest rank), log10, or linearly; NaN stays NaN."""
    if scale not in COLOUR_SCALES:
        raise InputError(f"unknown colour scale {scale!r}; expected one of {list(COLOUR_SCALES)}")
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
    pos = colour_positions(np.asarray(importance, dtype=float), scale)
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


# --------------------------------------------------------------------------------------------------
# HTML views
# --------------------------------------------------------------------------------------------------
def layers_text(layers: Sequence[int]) -> str:
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
    dropped = layers_text(layers)
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
    dropped = layers_text(result.layers)
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


def error_html(error: BaseException) -> str:
    return (
        '<div class="tk-error" style="color:#cf222e; border:1px solid #cf222e; padding:6px; border-radius:4px">'
        f"<b>{html.escape(type(error).__name__)}</b>: {html.escape(str(error))}</div>"
    )
