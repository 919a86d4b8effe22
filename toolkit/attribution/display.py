"""Notebook display of word attributions: an HTML heat view (escaped), no plotting state.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .results import Attribution

if TYPE_CHECKING:  # pragma: no cover
    from IPython.display import HTML

__all__ = [
    "attributions_html",
    "show_attributions",
]


def _colour(score: float, scale: float) -> str:
    """Red for positive, blue for negative scores; opacity |score| / scale."""
    alpha = 0.0 if scale <= 0 or not np.isfinite(score) else min(abs(score) / scale, 1.0)
    rgb = "220, 38, 38" if score >= 0 else "37, 99, 235"
    return f"rgba({rgb}, {alpha:.3f})"


def attributions_html(attributions: Sequence[Attribution]) -> str:
    """A word-level heat view as an HTML string: one row per attribution.

    Each row shows the example id, the explained label, the method and backend, then the words,
    each shaded by its score divided by the row's largest absolute score (red >= 0, blue < 0);
    hovering a word shows its score. All text is HTML-escaped.
    """
    rows = []
    for a in attributions:
        finite = np.abs(a.scores[np.isfinite(a.scores)])
        scale = float(finite.max()) if finite.size else 0.0
        words = " ".join(
            f'<span style="background-color: {_colour(float(s), scale)}; padding: 1px 2px; border-radius: 3px" '
            f'title="{html.escape(f"{float(s):.4g}", quote=True)}">{html.escape(w)}</span>'
            for w, s in zip(a.words, a.scores)
        )
        head = (
            f'<span style="color: #555; font-size: 0.85em">{html.escape(a.example_id)} &middot; '
            f"label <b>{html.escape(a.label_name)}</b> &middot; {html.escape(a.method)} ({html.escape(a.backend)})</span>"
        )
        rows.append(f'<div style="margin: 0.4em 0; line-height: 1.9">{head}<br>{words}</div>')
    return '<div class="toolkit-attributions">' + "\n".join(rows) + "</div>"


def show_attributions(attributions: Sequence[Attribution]) -> HTML:
    """:func:`attributions_html` wrapped for display in a notebook (the last expression of a cell)."""
    from IPython.display import HTML

    return HTML(attributions_html(attributions))
