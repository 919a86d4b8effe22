"""Bounds of an example's AOPC over all orderings of its words (exact for short texts, beam search
for longer ones), and NAOPC from them (Edin et al. 2025, https://arxiv.org/abs/2408.08137).

The public entry point is :func:`toolkit.metrics.faithfulness.aopc_bounds`; this module holds the search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .erasure import ErasureOptions, Pool, Variant, k_for_fraction

__all__ = [
    "Beam",
    "ExactBounds",
    "FLAT_BOUNDS_TOL",
    "naopc_from_bounds",
]

# A text whose AOPC bounds differ by no more than this has no room to rank orderings: NAOPC is NaN.
FLAT_BOUNDS_TOL = 1e-12


def naopc_from_bounds(aopc: Any, lower: Any, upper: Any) -> np.ndarray | float:
    """Min-max normalised AOPC: (AOPC - lower) / (upper - lower), NaN where upper - lower <= 1e-12.

    Edin et al. 2025, https://arxiv.org/abs/2408.08137 : lower and upper are the AOPC of the least
    and the most faithful orderings of the same input (:func:`aopc_bounds`). A span of at most
    ``FLAT_BOUNDS_TOL`` means no ordering beats another: NaN, not a division by ~0. Elementwise
    over arrays (numpy broadcasting); :func:`naopc` normalises with this.

    Returns:
        A float for scalar inputs, else a float array.
    """
    a, lo, hi = (np.asarray(v, dtype=float) for v in (aopc, lower, upper))
    span = hi - lo
    flat = ~(span > FLAT_BOUNDS_TOL)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(flat, np.nan, (a - lo) / np.where(flat, 1.0, span))
    return float(out) if out.ndim == 0 else out


def _levels(n_words: int, fractions: tuple[float, ...]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Distinct k's of the fraction grid (ascending) and their weights (share of fractions)."""
    ks = [k_for_fraction(f, n_words) for f in fractions]
    levels = tuple(sorted(set(ks)))
    return levels, tuple(ks.count(k) / len(ks) for k in levels)


# ----------------------------------------------------------------------------- NAOPC bounds


def _chain_extremes(
    g: Mapping[frozenset, float], levels: tuple[int, ...], weights: tuple[float, ...]
) -> tuple[float, float]:
    """Min and max over nested chains S_1 c ... c S_L (|S_j| = levels[j]) of sum_j w_j g(S_j), by DP."""
    by_size: dict[int, list[frozenset]] = {k: [] for k in levels}
    for s in g:
        by_size[len(s)].append(s)
    lo = {s: weights[0] * g[s] for s in by_size[levels[0]]}
    hi = dict(lo)
    for j in range(1, len(levels)):
        new_lo, new_hi = {}, {}
        for s in by_size[levels[j]]:
            subs = [frozenset(c) for c in itertools.combinations(sorted(s), levels[j - 1])]
            new_lo[s] = weights[j] * g[s] + min(lo[t] for t in subs)
            new_hi[s] = weights[j] * g[s] + max(hi[t] for t in subs)
        lo, hi = new_lo, new_hi
    return min(lo.values()), max(hi.values())


class ExactBounds:
    """Every subset of each level's size scored once; the chain DP replaces the n! orderings."""

    def __init__(self, pool: Pool, words: Variant, opts: ErasureOptions) -> None:
        self.levels, self.weights = _levels(len(words), opts.fractions)
        self.ids = {}
        for k in self.levels:
            for c in itertools.combinations(range(len(words)), k):
                s = frozenset(c)
                self.ids[s] = (pool.add(opts.eraser.apply(words, s)), pool.add(opts.eraser.keep(words, s)))

    def bounds(self, pool: Pool, p_full: float, label: int) -> dict[str, float]:
        comp = {s: p_full - pool[i][label] for s, (i, _) in self.ids.items()}
        suff = {s: p_full - pool[j][label] for s, (_, j) in self.ids.items()}
        c_lo, c_hi = _chain_extremes(comp, self.levels, self.weights)
        s_lo, s_hi = _chain_extremes(suff, self.levels, self.weights)
        return {"comprehensiveness_lower": c_lo, "comprehensiveness_upper": c_hi,
                "sufficiency_lower": s_lo, "sufficiency_upper": s_hi}


class Beam:
    """Beam search for one extreme (sign=+1: max, -1: min) of one metric's AOPC over orderings.

    Words are added one at a time; a partial chain S is ranked by its objective so far plus the
    next level's weight times its current erasure effect g(S) (a greedy look-ahead). Every chain it
    returns is a real ordering, so its max is <= the exact max and its min >= the exact min.
    """

    def __init__(self, words: Variant, opts: ErasureOptions, metric: str, sign: int, p_full: float, label: int) -> None:
        self.words, self.opts, self.metric, self.sign = words, opts, metric, sign
        self.p_full, self.label = p_full, label
        levels, weights = _levels(len(words), opts.fractions)
        self.weight = dict(zip(levels, weights))
        self.last = levels[-1]
        self.beam: list[tuple[frozenset, float]] = [(frozenset(), 0.0)]
        self.pending: list[tuple[frozenset, float, int]] = []
        self.value = math.nan

    @property
    def done(self) -> bool:
        return not math.isnan(self.value)

    def request(self, pool: Pool) -> None:
        erase = self.opts.eraser.apply if self.metric == "comprehensiveness" else self.opts.eraser.keep
        self.pending = [
            (s | {i}, a, pool.add(erase(self.words, s | {i})))
            for s, a in self.beam
            for i in range(len(self.words))
            if i not in s
        ]

    def advance(self, pool: Pool) -> None:
        size = len(self.pending[0][0])
        w_here = self.weight.get(size, 0.0)
        w_next = next((self.weight[k] for k in sorted(self.weight) if k > size), 0.0)
        best: dict[frozenset, tuple[float, float]] = {}
        for s, a, idx in self.pending:
            g = self.p_full - pool[idx][self.label]
            total = a + w_here * g
            key = self.sign * (total + w_next * g)
            if s not in best or key > best[s][0]:
                best[s] = (key, total)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[: self.opts.beam_width]
        self.beam = [(s, total) for s, (_, total) in ranked]
        if size == self.last:
            self.value = self.sign * max(self.sign * total for _, total in self.beam)
