"""Notebook display of word attributions: an HTML heat view (escaped) with a legend true to the method.

Colours follow the method's kind (:attr:`toolkit.attribution.AttributionMethod.signed`, data in the
registry, not a rule here): an unsigned method (a magnitude, >= 0) gets one colour scale, deeper =
larger; a signed method gets two, one per direction relative to the explained label (the model's
prediction). Shading is |score| / the row's largest |score|, capped at ``MAX_ALPHA`` so black text
stays legible on a projector.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .registry import ATTRIBUTION_METHODS
from .results import Attribution

if TYPE_CHECKING:  # pragma: no cover
    from IPython.display import HTML

__all__ = [
    "LEGENDS",
    "attribution_legend_html",
    "attributions_html",
    "scores_are_signed",
    "show_attributions",
    "word_colour",
]

MAX_ALPHA = 0.75
# RGB of each shading: unsigned magnitude; signed towards / against the explained label.
MAGNITUDE_RGB = "217, 119, 6"  # amber: no direction implied
TOWARDS_RGB = "220, 38, 38"  # red
AGAINST_RGB = "37, 99, 235"  # blue

LEGENDS: dict[bool, str] = {
    False: "larger = more important to the prediction, no direction: a shaded word may push "
           "towards or against the predicted label",
    True: "pushes towards the predicted label | pushes against it",
}
"""Legend text by ``signed`` (the signed one is shown as two swatches, split at ``|``)."""


def scores_are_signed(attribution: Attribution) -> bool:
    """The registry's ``signed`` field of the attribution's method; for an unregistered method,
    whether any score is negative."""
    spec = ATTRIBUTION_METHODS.get(attribution.method) if attribution.method in ATTRIBUTION_METHODS else None
    if spec is not None:
        return spec.signed
    return bool(np.any(np.asarray(attribution.scores) < 0))


def word_colour(score: float, scale: float, signed: bool) -> str:
    """CSS colour of one word: opacity MAX_ALPHA * |score| / scale; signed: red >= 0, blue < 0."""
    alpha = 0.0 if scale <= 0 or not np.isfinite(score) else MAX_ALPHA * min(abs(score) / scale, 1.0)
    rgb = (TOWARDS_RGB if score >= 0 else AGAINST_RGB) if signed else MAGNITUDE_RGB
    return f"rgba({rgb}, {alpha:.3f})"


def _swatch(rgb: str, text: str) -> str:
    return (f'<span class="tk-swatch" style="background: rgba({rgb}, {MAX_ALPHA}); padding: 0 6px; border-radius: 3px">'
            f"{html.escape(text)}</span>")


def attribution_legend_html(signed: bool, methods: Sequence[str] = ()) -> str:
    """One legend line for a kind of score: the swatch(es) and what they mean (:data:`LEGENDS`)."""
    names = f" ({html.escape(', '.join(methods))})" if methods else ""
    if signed:
        towards, against = (t.strip() for t in LEGENDS[True].split("|"))
        body = (f"signed scores{names}: {_swatch(TOWARDS_RGB, 'red')} = {towards}, "
                f"{_swatch(AGAINST_RGB, 'blue')} = {against}; deeper = stronger; the predicted label is "
                "named in each row")
    else:
        body = f"{_swatch(MAGNITUDE_RGB, 'shading')}{names}: {LEGENDS[False]}"
    return (f'<div class="tk-attribution-legend" data-signed="{str(signed).lower()}" '
            f'style="font-size: 0.85em; color: #333; margin-top: 0.2em">{body}; hover a word for its score</div>')


def attributions_html(attributions: Sequence[Attribution], *, legend: bool = True) -> str:
    """A word-level heat view as an HTML string: one row per attribution, then a legend.

    Each row shows the example id, the explained label, the method and backend, then the words,
    each shaded by |score| divided by the row's largest |score|: one colour for an unsigned
    method, red (>= 0, towards the explained label) / blue (< 0, against it) for a signed one
    (:func:`scores_are_signed`); hovering a word shows its score. All text is HTML-escaped.

    Args:
        legend: append one legend line per kind of score shown (:func:`attribution_legend_html`).
    """
    rows = []
    kinds: dict[bool, list[str]] = {}
    for a in attributions:
        signed = scores_are_signed(a)
        methods = kinds.setdefault(signed, [])
        if a.method not in methods:
            methods.append(a.method)
        finite = np.abs(a.scores[np.isfinite(a.scores)])
        scale = float(finite.max()) if finite.size else 0.0
        words = " ".join(
            f'<span style="background-color: {word_colour(float(s), scale, signed)}; padding: 1px 2px; '
            f'border-radius: 3px" title="{html.escape(f"{float(s):.4g}", quote=True)}">{html.escape(w)}</span>'
            for w, s in zip(a.words, a.scores)
        )
        head = (
            f'<span style="color: #555; font-size: 0.85em">{html.escape(a.example_id)} &middot; '
            f"label <b>{html.escape(a.label_name)}</b> &middot; {html.escape(a.method)} ({html.escape(a.backend)})</span>"
        )
        rows.append(f'<div style="margin: 0.4em 0; line-height: 1.9">{head}<br>{words}</div>')
    legends = [attribution_legend_html(signed, methods) for signed, methods in kinds.items()] if legend else []
    return '<div class="toolkit-attributions">' + "\n".join(rows + legends) + "</div>"


def show_attributions(attributions: Sequence[Attribution], *, legend: bool = True) -> HTML:
    """:func:`attributions_html` wrapped for display in a notebook (the last expression of a cell)."""
    from IPython.display import HTML

    return HTML(attributions_html(attributions, legend=legend))
