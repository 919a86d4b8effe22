"""Erasure-based faithfulness of word attributions: ERASER comprehensiveness and sufficiency, AOPC,
normalised AOPC, decision flip, and a random-ranking baseline.

The core is model-agnostic: every metric takes a :data:`Scorer`, a callable that maps a list of
word sequences (erased variants of texts) to class probabilities of shape ``(len, C)``, so it can
be tested on a transparent model. :func:`model_scorer` builds one from (model, tokenizer, task).

Conventions shared by every function here (documented once):

- ``words``: per example, its text (a ``str``) or its word list. Words are whitespace-separated
  tokens of the text (:func:`split_words`, ``re.finditer(r"\\S+", text)``). No example may be
  empty. A text is erased at the text level (:func:`toolkit.prompts.erase_words`), so erasing
  nothing gives the scorer the example's own text; a word list is rendered as its words joined
  by single spaces.
- ``attributions``: one score per word of each example; higher = more important for the
  predicted label. Words are ranked by descending score, ties broken by position (earlier first).
- y^ = argmax of the scorer on the full, unerased word list; every metric tracks p(y^).
- k for a fraction f of an n-word text: ``k = max(1, ceil(f * n))`` (at least one word); f * n is
  rounded to 9 decimals first so float noise (0.14 * 50 = 7.000000000000001) adds no word.
- ``erasure="delete"`` removes the erased words; ``erasure="replace"`` puts ``replacement`` in
  their place (the text keeps its length).
- Batching: each public function gathers all erased variants of all examples (every fraction,
  both metrics, every ranking, the bound search), deduplicates them by content and scores them in
  one scorer call; only the beam search for NAOPC bounds of long texts adds one call per step.
- Memo: :func:`model_scorer` remembers every variant it scored per model state (:class:`ScoreMemo`,
  :func:`model_state`), so a second call on the same sentences - another metric, another method,
  the random baseline, the bounds - scores only what is new. ``naopc=False`` skips the bound search
  (AOPC and decision flip only): the cheaper option when NAOPC is not needed.
"""

from __future__ import annotations

import itertools
import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metrics import Metric, register_metric
from .attribution import attribute
from .prompts import ERASURES, erase_words, split_words
from .pruning import dropped_layers
from .validation import check_int


class Variant(tuple):
    """An (erased) example as a scorer receives it: a tuple of its words, plus the text it stands for.

    Attributes:
        text: the text to score: the example's text with the erased words deleted or replaced
            (:func:`toolkit.prompts.erase_words`) when the example was given as a text, else the
            words joined by single spaces.
        source: the example's unerased text, or None when it was given as a word list.
    """

    text: str
    source: str | None

    def __new__(cls, words: Iterable[str], text: str, source: str | None = None) -> Variant:
        obj = super().__new__(cls, words)
        obj.text, obj.source = text, source
        return obj

    @property
    def key(self) -> tuple[tuple[str, ...], str]:
        return tuple(self), self.text


Examples = Sequence["str | Sequence[str]"]
"""Per example, its text or its word list (see the module docstring)."""

Scorer = Callable[[Sequence[Variant]], np.ndarray]
"""Variants (n of them; each a tuple of words with a ``.text``) -> class probabilities, shape (n, C)."""

FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
RANDOM = "random"
EXACT_MAX_WORDS = 8
# Beam width of the NAOPC bound search on longer texts; 1 is greedy. The search dominates the cost
# (~4 * width * sum_{m < k_max} (n - m) variants per text), hence a small default on CPU.
BEAM_WIDTH = 1
# A text whose AOPC bounds differ by no more than this has no room to rank orderings: NAOPC is NaN.
FLAT_BOUNDS_TOL = 1e-12

METRICS: tuple[str, ...] = (
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "naopc_comprehensiveness",
    "naopc_sufficiency",
    "flip_rate",
    "fraction_flip",
)

_Variant = Variant


def k_for_fraction(fraction: float, n_words: int) -> int:
    """Number of top-ranked words a fraction stands for: ``k = max(1, ceil(fraction * n_words))``."""
    return max(1, math.ceil(round(fraction * n_words, 9)))


# ----------------------------------------------------------------------------- validation


def _check_words(words: Sequence[str | Sequence[str]]) -> list[_Variant]:
    if isinstance(words, str):
        raise ValueError("words must be a list of texts or word lists, got one str; use [text]")
    checked = []
    for i, example in enumerate(words):
        if isinstance(example, str):
            variant = Variant(split_words(example), example, example)
        else:
            example = tuple(example)
            if not all(isinstance(w, str) for w in example):
                raise ValueError(f"example {i} holds non-str words; expected a text or a sequence of str")
            if any(not w or any(c.isspace() for c in w) for w in example):
                raise ValueError(f"example {i} has an empty word or one with whitespace: {example!r}; "
                                 "words are split_words(text)")
            variant = Variant(example, " ".join(example))
        if len(variant) == 0:
            raise ValueError(f"example {i} has zero words ({example!r}); every example needs at least one word")
        checked.append(variant)
    if not checked:
        raise ValueError("words is empty; expected at least one example")
    return checked


def _check_flag(value: Any, name: str = "naopc") -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r}; expected True or False")
    return bool(value)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if not fractions:
        raise ValueError("fractions is empty; expected fractions in (0, 1], e.g. FRACTIONS = (0.01, ..., 0.5)")
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad:
        raise ValueError(f"fractions {bad} outside (0, 1]; expected fractions of the words, e.g. 0.1 for 10%")
    return fractions


def _check_attributions(attributions: Sequence[Any], words: list[_Variant], name: str) -> list[np.ndarray]:
    if len(attributions) != len(words):
        raise ValueError(f"{name} has {len(attributions)} entries for {len(words)} examples")
    checked = []
    for i, (a, w) in enumerate(zip(attributions, words)):
        a = np.asarray(a, dtype=float)
        if a.ndim != 1 or a.shape[0] != len(w):
            raise ValueError(f"{name}[{i}] has shape {a.shape}; expected ({len(w)},), one score per word")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{i}] has non-finite scores at words {np.flatnonzero(~np.isfinite(a)).tolist()}")
        checked.append(a)
    return checked


def ranking(attribution: np.ndarray) -> np.ndarray:
    """Word indices by descending attribution, ties broken by position (a stable sort)."""
    return np.argsort(-np.asarray(attribution, dtype=float), kind="stable")


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


# ----------------------------------------------------------------------------- erasure and batching


@dataclass(frozen=True)
class _Erasure:
    mode: str
    replacement: str

    @staticmethod
    def of(mode: str, replacement: str) -> _Erasure:
        if mode not in ERASURES:
            raise ValueError(f"unknown erasure {mode!r}; expected one of {list(ERASURES)}")
        if not isinstance(replacement, str):
            raise ValueError(f"replacement={replacement!r}; expected a str")
        return _Erasure(mode, replacement)

    def apply(self, words: _Variant, erased: Iterable[int]) -> _Variant:
        """The example ``words`` (a full example) with the words at ``erased`` erased."""
        gone = set(int(i) for i in erased)
        if self.mode == "delete":
            kept = tuple(w for i, w in enumerate(words) if i not in gone)
        else:
            kept = tuple(self.replacement if i in gone else w for i, w in enumerate(words))
        if words.source is None:
            return Variant(kept, " ".join(kept))
        return Variant(kept, erase_words(words.source, gone, erasure=self.mode, replacement=self.replacement),
                       words.source)

    def keep(self, words: _Variant, kept: Iterable[int]) -> _Variant:
        kept = set(int(i) for i in kept)
        return self.apply(words, (i for i in range(len(words)) if i not in kept))


def _checked_probs(probs: Any, n: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 2:
        raise ValueError(f"scorer returned shape {probs.shape} for {n} texts; expected ({n}, C>=2)")
    if not np.all(np.isfinite(probs)):
        raise ValueError("scorer returned non-finite probabilities")
    return probs


class _Pool:
    """Deduplicating queue of variants (by words and text); ``flush`` scores the queued ones in one call."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self._ids: dict[tuple, int] = {}
        self._pending: list[_Variant] = []
        self._probs: list[np.ndarray] = []

    def add(self, variant: _Variant) -> int:
        idx = self._ids.get(variant.key)
        if idx is None:
            idx = self._ids[variant.key] = len(self._ids)
            self._pending.append(variant)
        return idx

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._probs.extend(_checked_probs(self._scorer(batch), len(batch)))

    def __getitem__(self, idx: int) -> np.ndarray:
        return self._probs[idx]


# ----------------------------------------------------------------------------- memo across calls

MEMO_STATES = 8
"""Model states a :class:`ScoreMemo` keeps (least recently used dropped first)."""


class ScoreMemo:
    """The class probabilities of every variant scored, per model state.

    A study cell, a notebook or a widget often asks for the same erased variants more than once:
    another metric, another attribution method, the random baseline or the NAOPC bounds of the same
    sentences on the same model. Within one metric call the variants are already deduplicated; the
    memo carries that across calls, keyed by the variant (its words and its text) under the model
    state it was scored in, so each is scored once per state. It is exact: a remembered row is
    the row the scorer returned (up to the scorer's own batch-to-batch float noise, which the memo
    removes rather than adds).

    Attributes:
        requested: variants asked of the memo, counting repeats across calls.
        scored: variants it passed to the scorer (the forwards it did not save).
    """

    def __init__(self, max_states: int = MEMO_STATES) -> None:
        self.max_states = check_int(max_states, "max_states", 1, keyword=True)
        self._states: OrderedDict[Hashable, dict[tuple, np.ndarray]] = OrderedDict()
        self.requested = 0
        self.scored = 0

    @property
    def saved(self) -> int:
        """Variants answered from the memo instead of the scorer."""
        return self.requested - self.scored

    def __len__(self) -> int:
        return sum(len(t) for t in self._states.values())

    def clear(self) -> None:
        self._states.clear()

    def _table(self, state: Hashable) -> dict[tuple, np.ndarray]:
        table = self._states.pop(state, None)
        table = {} if table is None else table
        self._states[state] = table  # most recently used last
        while len(self._states) > self.max_states:
            self._states.popitem(last=False)
        return table

    def score(self, scorer: Scorer, variants: Sequence[Variant], state: Hashable = None) -> np.ndarray:
        """``scorer(variants)``, scoring only the variants this memo has not seen under ``state``."""
        table = self._table(state)
        keys = [v.key if isinstance(v, Variant) else (tuple(v), " ".join(v)) for v in variants]
        new = {key: v for key, v in zip(keys, variants) if key not in table}
        if new:
            probs = _checked_probs(scorer(list(new.values())), len(new))
            table.update(zip(new, probs))
        self.requested += len(variants)
        self.scored += len(new)
        if not variants:
            return np.zeros((0, 2))
        return np.stack([table[key] for key in keys])


def memoize(scorer: Scorer, memo: ScoreMemo | None = None, state: Callable[[], Hashable] | None = None) -> Scorer:
    """``scorer`` with a :class:`ScoreMemo`: each variant scored once per ``state()`` (default: one state).

    The returned scorer has the memo as its ``.memo`` attribute (``memo.saved`` counts the forwards saved).
    """
    memo = ScoreMemo() if memo is None else memo

    def score(variants: Sequence[Variant]) -> np.ndarray:
        return memo.score(scorer, variants, None if state is None else state())

    score.memo = memo  # type: ignore[attr-defined]
    return score


def model_state(model: Any) -> Hashable | None:
    """What the model's outputs depend on that can change in place, or None when it cannot be read.

    The dropped attention layers (:func:`toolkit.pruning.dropped_layers`: inside
    ``drop_attention`` or after ``prune_attention``), train/eval mode, and for every parameter its
    identity, storage, dtype and in-place version counter (``Tensor._version``, bumped by every
    in-place write such as an optimizer step or ``load_state_dict``). A forward hook or a patched
    module it cannot see: pass ``memo=False`` to :func:`model_scorer` after such an edit, or
    :func:`clear_memo`.
    """
    import torch  # the engine itself is model-agnostic

    if not isinstance(model, torch.nn.Module):
        return None
    params = tuple((id(p), p.data_ptr(), p.dtype, p._version) for p in model.parameters())
    return dropped_layers(model), model.training, params


_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memo_for(model: Any, tokenizer: Any, task: Any) -> ScoreMemo:
    """The memo :func:`model_scorer` shares for (model, tokenizer, task); it lives as long as the model."""
    per_model = _MEMOS.setdefault(model, {})
    try:
        key = (id(tokenizer), hash(task), task)
    except TypeError:  # an unhashable task: by identity
        key = (id(tokenizer), id(task))
    return per_model.setdefault(key, ScoreMemo())


def clear_memo(model: Any = None) -> None:
    """Forget the variants :func:`model_scorer` remembered for ``model`` (every model if None)."""
    if model is None:
        _MEMOS.clear()
    else:
        _MEMOS.pop(model, None)


@dataclass(frozen=True)
class _Options:
    fractions: tuple[float, ...]
    erasure: _Erasure
    exact_max_words: int = EXACT_MAX_WORDS
    beam_width: int = BEAM_WIDTH


def _options(fractions, erasure, replacement, exact_max_words=EXACT_MAX_WORDS, beam_width=BEAM_WIDTH) -> _Options:
    return _Options(
        _check_fractions(fractions),
        _Erasure.of(erasure, replacement),
        check_int(exact_max_words, "exact_max_words", 0, keyword=True),
        check_int(beam_width, "beam_width", 1, keyword=True),
    )


@dataclass(frozen=True)
class _Job:
    """One ranking of one example's words to evaluate."""

    example: int
    method: str
    ranking: int  # index of a random ranking; -1 for a given attribution
    order: np.ndarray


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


class _ExactBounds:
    """Every subset of each level's size scored once; the chain DP replaces the n! orderings."""

    def __init__(self, pool: _Pool, words: _Variant, opts: _Options) -> None:
        self.levels, self.weights = _levels(len(words), opts.fractions)
        self.ids = {}
        for k in self.levels:
            for c in itertools.combinations(range(len(words)), k):
                s = frozenset(c)
                self.ids[s] = (pool.add(opts.erasure.apply(words, s)), pool.add(opts.erasure.keep(words, s)))

    def bounds(self, pool: _Pool, p_full: float, label: int) -> dict[str, float]:
        comp = {s: p_full - pool[i][label] for s, (i, _) in self.ids.items()}
        suff = {s: p_full - pool[j][label] for s, (_, j) in self.ids.items()}
        c_lo, c_hi = _chain_extremes(comp, self.levels, self.weights)
        s_lo, s_hi = _chain_extremes(suff, self.levels, self.weights)
        return {"comprehensiveness_lower": c_lo, "comprehensiveness_upper": c_hi,
                "sufficiency_lower": s_lo, "sufficiency_upper": s_hi}


class _Beam:
    """Beam search for one extreme (sign=+1: max, -1: min) of one metric's AOPC over orderings.

    Words are added one at a time; a partial chain S is ranked by its objective so far plus the
    next level's weight times its current erasure effect g(S) (a greedy look-ahead). Every chain it
    returns is a real ordering, so its max is <= the exact max and its min >= the exact min.
    """

    def __init__(self, words: _Variant, opts: _Options, metric: str, sign: int, p_full: float, label: int) -> None:
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

    def request(self, pool: _Pool) -> None:
        erase = self.opts.erasure.apply if self.metric == "comprehensiveness" else self.opts.erasure.keep
        self.pending = [
            (s | {i}, a, pool.add(erase(self.words, s | {i})))
            for s, a in self.beam
            for i in range(len(self.words))
            if i not in s
        ]

    def advance(self, pool: _Pool) -> None:
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


# ----------------------------------------------------------------------------- engine


@dataclass
class _Results:
    curves: pd.DataFrame | None
    flips: pd.DataFrame | None
    bounds: pd.DataFrame | None


@dataclass(frozen=True)
class _Full:
    """What the unerased texts say: y^ per example, p(y^|x), and the rows' leading columns."""

    labels: np.ndarray
    p_y: np.ndarray
    base: list[dict[str, Any]]

    @staticmethod
    def read(pool: _Pool, ids: list[int], words: list[_Variant]) -> _Full:
        p_full = np.stack([pool[i] for i in ids])
        labels = p_full.argmax(axis=1)
        p_y = p_full[np.arange(len(words)), labels]
        base = [{"example": i, "n_words": len(w), "label": int(labels[i]), "p_full": float(p_y[i])}
                for i, w in enumerate(words)]
        return _Full(labels, p_y, base)

    def row(self, job: _Job) -> dict[str, Any]:
        return {**self.base[job.example], "method": job.method, "ranking": job.ranking}


def _curve_rows(pool: _Pool, full: _Full, jobs: list[_Job], ids: list, fractions: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for job, job_ids in zip(jobs, ids):
        y, p = full.labels[job.example], full.p_y[job.example]
        for f, (k, comp_id, suff_id) in zip(fractions, job_ids):
            p_comp = math.nan if comp_id is None else pool[comp_id][y]
            p_suff = math.nan if suff_id is None else pool[suff_id][y]
            rows.append({**full.row(job), "fraction": f, "k": k, "p_comp": p_comp, "p_suff": p_suff,
                         "comprehensiveness": p - p_comp, "sufficiency": p - p_suff})
    return pd.DataFrame(rows)


def _flip_rows(pool: _Pool, full: _Full, jobs: list[_Job], ids: list) -> pd.DataFrame:
    rows = []
    for job, job_ids in zip(jobs, ids):
        y = full.labels[job.example]
        hit = next((k for k, idx in enumerate(job_ids, start=1) if pool[idx].argmax() != y), None)
        rows.append({**full.row(job), "flipped": hit is not None,
                     "k": math.nan if hit is None else float(hit),
                     "fraction": math.nan if hit is None else hit / len(job_ids)})
    return pd.DataFrame(rows)


def _bound_rows(pool: _Pool, full: _Full, words: list[_Variant], exact: dict[int, _ExactBounds],
                opts: _Options) -> pd.DataFrame:
    """Exact bounds from the scored subsets; beam searches for the rest, all examples in step."""
    found = {i: {"bound_method": "exact", **b.bounds(pool, full.p_y[i], full.labels[i])} for i, b in exact.items()}
    beams = {
        i: {f"{m}_{side}": _Beam(w, opts, m, sign, full.p_y[i], full.labels[i])
            for m in ("comprehensiveness", "sufficiency") for side, sign in (("lower", -1), ("upper", 1))}
        for i, w in enumerate(words) if i not in exact
    }
    searches = [s for group in beams.values() for s in group.values()]
    while live := [s for s in searches if not s.done]:
        for s in live:
            s.request(pool)
        pool.flush()
        for s in live:
            s.advance(pool)
    for i, group in beams.items():
        found[i] = {"bound_method": "beam", **{name: s.value for name, s in group.items()}}
    return pd.DataFrame([{**full.base[i], **found[i]} for i in range(len(words))])


def _evaluate(
    scorer: Scorer, words: list[_Variant], jobs: list[_Job], opts: _Options,
    *, curves: bool = False, flips: bool = False, bounds: bool = False,
    curve_metrics: tuple[str, ...] = ("comprehensiveness", "sufficiency"),
) -> _Results:
    """Queue every variant asked for, score them in one call (+ beam steps), read the tables.

    ``curve_metrics``: the curves whose variants are scored (the other's columns are NaN).
    """
    comp, suff = "comprehensiveness" in curve_metrics, "sufficiency" in curve_metrics
    pool, erasure = _Pool(scorer), opts.erasure
    full_ids = [pool.add(w) for w in words]
    curve_ids, flip_ids = [], []
    for job in jobs:
        w, order = words[job.example], job.order
        if curves:
            ks = [k_for_fraction(f, len(w)) for f in opts.fractions]
            curve_ids.append([(k, pool.add(erasure.apply(w, order[:k])) if comp else None,
                               pool.add(erasure.keep(w, order[:k])) if suff else None) for k in ks])
        if flips:
            flip_ids.append([pool.add(erasure.apply(w, order[:k])) for k in range(1, len(w) + 1)])
    exact = {i: _ExactBounds(pool, w, opts) for i, w in enumerate(words)
             if bounds and len(w) <= opts.exact_max_words}
    pool.flush()
    full = _Full.read(pool, full_ids, words)
    return _Results(
        _curve_rows(pool, full, jobs, curve_ids, opts.fractions) if curves else None,
        _flip_rows(pool, full, jobs, flip_ids) if flips else None,
        _bound_rows(pool, full, words, exact, opts) if bounds else None,
    )


def _jobs_for(attributions: Sequence[np.ndarray], method: str) -> list[_Job]:
    return [_Job(i, method, -1, ranking(a)) for i, a in enumerate(attributions)]


def _random_jobs(words: list[_Variant], n_rankings: int, seed: int) -> list[_Job]:
    """R seeded random rankings per example; example i uses rng([seed, i]), independent of the others."""
    jobs = []
    for i, w in enumerate(words):
        rng = np.random.default_rng([seed, i])
        jobs += [_Job(i, RANDOM, r, rng.permutation(len(w))) for r in range(n_rankings)]
    return jobs


_KEYS = ["example", "method", "ranking"]
_BOUND_COLS = ["bound_method", "comprehensiveness_lower", "comprehensiveness_upper",
               "sufficiency_lower", "sufficiency_upper"]


def _aopc_table(curves: pd.DataFrame) -> pd.DataFrame:
    """AOPC = mean of the curve over the fractions, per ranking."""
    out = curves.groupby(_KEYS, sort=False).agg(
        n_words=("n_words", "first"), label=("label", "first"), p_full=("p_full", "first"),
        aopc_comprehensiveness=("comprehensiveness", "mean"), aopc_sufficiency=("sufficiency", "mean"),
    )
    return out.reset_index()


def _normalise(aopc: pd.DataFrame, bounds: pd.DataFrame) -> pd.DataFrame:
    """NAOPC per ranking; searched (beam) bounds first widened to every ranking evaluated with them."""
    out = aopc.merge(bounds[["example", *_BOUND_COLS]], on="example", how="left")
    searched = out["bound_method"] == "beam"
    for m in ("comprehensiveness", "sufficiency"):
        seen = out.groupby("example")[f"aopc_{m}"]
        out[f"{m}_lower"] = out[f"{m}_lower"].where(~searched, np.minimum(out[f"{m}_lower"], seen.transform("min")))
        out[f"{m}_upper"] = out[f"{m}_upper"].where(~searched, np.maximum(out[f"{m}_upper"], seen.transform("max")))
        out[f"naopc_{m}"] = naopc_from_bounds(out[f"aopc_{m}"], out[f"{m}_lower"], out[f"{m}_upper"])
    return out


# ----------------------------------------------------------------------------- public metrics


def erasure_curves(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Comprehensiveness and sufficiency of the top-k attributed words at each fraction.

    comp_k = p(y^ | x) - p(y^ | x without r_k),   suff_k = p(y^ | x) - p(y^ | r_k only),
    r_k = the k top-ranked words. DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
    Rationalized NLP Models", https://arxiv.org/abs/1911.03429. Conventions: module docstring.

    Args:
        scorer: word sequences -> class probabilities (n, C).
        words: one word list per example.
        attributions: one score per word per example.
        fractions: fractions of the words in (0, 1]; default ERASER's (1, 5, 10, 20, 50)%.
        erasure: "delete" or "replace".
        replacement: the token put in place of an erased word when erasure="replace".

    Returns:
        One row per (example, fraction): example, n_words, label (y^), fraction, k, p_full,
        p_comp, p_suff, comprehensiveness, sufficiency.
    """
    words = _check_words(words)
    attributions = _check_attributions(attributions, words, "attributions")
    opts = _options(fractions, erasure, replacement)
    curves = _evaluate(scorer, words, _jobs_for(attributions, ""), opts, curves=True).curves
    return curves.drop(columns=["method", "ranking"]).reset_index(drop=True)


def aopc(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Area over the perturbation curve: the mean of comp_k (or suff_k) over the fractions.

    AOPC_comp = 1/|B| sum_{f in B} comp_{k(f)}, the same for sufficiency (higher comp, lower suff
    = more faithful). ERASER (DeYoung et al. 2020) prints a 1/(|B|+1) sum over k = 0..|B|
    normalisation; its released scorer (rationale_benchmark/metrics.py, ``_instances_aopc``)
    averages over the |B| thresholds with ``np.average``, and so do we. Counting a 0% bin (whose
    comp is 0) would scale our value by |B|/(|B|+1). Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, aopc_comprehensiveness, aopc_sufficiency.
    """
    curves = erasure_curves(scorer, words, attributions, fractions=fractions, erasure=erasure, replacement=replacement)
    out = curves.assign(method="", ranking=-1)
    return _aopc_table(out).drop(columns=["method", "ranking"])


def _one_metric(
    metric: str, scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    fractions: Sequence[float], erasure: str, replacement: str,
) -> pd.DataFrame:
    """One metric's curve and AOPC; only that metric's erased variants are scored (half of erasure_curves')."""
    words = _check_words(words)
    attributions = _check_attributions(attributions, words, "attributions")
    opts = _options(fractions, erasure, replacement)
    curves = _evaluate(scorer, words, _jobs_for(attributions, ""), opts, curves=True, curve_metrics=(metric,)).curves
    wide = curves.pivot_table(index="example", columns="fraction", values=metric, sort=False)
    wide.columns = [f"{metric}@{f:g}" for f in wide.columns]
    head = curves.groupby("example", sort=False)[["n_words", "label", "p_full"]].first()
    out = head.join(wide)
    out[f"aopc_{metric}"] = wide.mean(axis=1)
    return out.reset_index()


def comprehensiveness(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """ERASER comprehensiveness at each fraction and its AOPC (higher = more faithful).

    comp_f = p(y^ | x) - p(y^ | x without its top-k(f) words); AOPC_comp = mean over the fractions
    (:func:`aopc`). Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, ``comprehensiveness@<f>`` for each
        fraction f, aopc_comprehensiveness.
    """
    return _one_metric("comprehensiveness", scorer, words, attributions, fractions, erasure, replacement)


def sufficiency(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """ERASER sufficiency at each fraction and its AOPC (lower = more faithful).

    suff_f = p(y^ | x) - p(y^ | only the top-k(f) words of x); AOPC_suff = mean over the fractions.
    Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, ``sufficiency@<f>`` for each
        fraction f, aopc_sufficiency.
    """
    return _one_metric("sufficiency", scorer, words, attributions, fractions, erasure, replacement)


def aopc_bounds(
    scorer: Scorer, words: Examples,
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> pd.DataFrame:
    """Lower and upper bound of each example's AOPC over all orderings of its words.

    lower = min_pi AOPC(pi), upper = max_pi AOPC(pi), for comprehensiveness and for sufficiency
    (Edin et al. 2025, "Normalized AOPC: Fixing Misleading Faithfulness Metrics for Feature
    Attribution Explainability", https://arxiv.org/abs/2408.08137). On the fraction grid the AOPC
    of an ordering depends only on its nested top-k sets for the distinct k's, so texts of
    <= ``exact_max_words`` words are solved exactly: each subset of a needed size is scored once
    and a DP over chains takes the min and max. Longer texts use a beam search (as the paper's
    NAOPC_beam): its bounds are attained by real orderings, so lower >= exact lower and
    upper <= exact upper (equal when greedy is optimal, e.g. an additive logit model).

    Args:
        exact_max_words: longest text solved exactly (scores sum_k C(n, k) subsets).
        beam_width: chains kept per step of the beam search (1 = greedy); it costs one scorer
            call per word up to the largest k, each with about 4 * beam_width * n variants per
            example - the dominant cost of the metrics on long texts.
        Others: as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, bound_method ("exact" | "beam"),
        comprehensiveness_lower, comprehensiveness_upper, sufficiency_lower, sufficiency_upper.
    """
    words = _check_words(words)
    opts = _options(fractions, erasure, replacement, exact_max_words, beam_width)
    return _evaluate(scorer, words, [], opts, bounds=True).bounds


def naopc(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> pd.DataFrame:
    """AOPC min-max normalised per example between its bounds over orderings (Edin et al. 2025).

    NAOPC = (AOPC - lower) / (upper - lower), for comprehensiveness (1 = the most comprehensive
    ordering; higher is better) and for sufficiency (0 = the most sufficient ordering; lower is
    better), each with its own bounds (:func:`aopc_bounds`). When upper - lower <=
    FLAT_BOUNDS_TOL (1e-12) no ordering is better than another and NAOPC is NaN. Searched (beam)
    bounds are widened to the AOPCs of the rankings evaluated in the same call (each is a real
    ordering, so the bounds stay attained and inside the exact ones), which keeps NAOPC in [0, 1];
    the bound columns hold the bounds used. Arguments as :func:`erasure_curves` and
    :func:`aopc_bounds`.

    Returns:
        One row per example: example, n_words, label, p_full, aopc_comprehensiveness,
        aopc_sufficiency, bound_method, comprehensiveness_lower, comprehensiveness_upper,
        sufficiency_lower, sufficiency_upper, naopc_comprehensiveness, naopc_sufficiency.
    """
    words = _check_words(words)
    attributions = _check_attributions(attributions, words, "attributions")
    opts = _options(fractions, erasure, replacement, exact_max_words, beam_width)
    res = _evaluate(scorer, words, _jobs_for(attributions, ""), opts, curves=True, bounds=True)
    return _normalise(_aopc_table(res.curves), res.bounds).drop(columns=["method", "ranking"])


def decision_flip(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Smallest number of top-ranked words whose erasure changes the predicted label.

    k_flip = min {k in 1..n : argmax p(. | x without r_k) != y^}, or "never" (NaN, flipped=False).
    Every k is tried (not only the fraction grid), in one batched call. Ties in argmax go to the
    lower class index (numpy). Cf. the "decision flip" of Chrysostomou & Aletras 2021 and
    ERASER's "tokens_to_flip". Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, flipped (bool), k (float, NaN if
        never), fraction (k / n_words, NaN if never).
    """
    words = _check_words(words)
    attributions = _check_attributions(attributions, words, "attributions")
    opts = _options(FRACTIONS, erasure, replacement)
    flips = _evaluate(scorer, words, _jobs_for(attributions, ""), opts, flips=True).flips
    return flips.drop(columns=["method", "ranking"])


def _metric_table(res: _Results) -> pd.DataFrame:
    """Per-ranking AOPC, NAOPC and flip columns from the engine's tables (NAOPC NaN without bounds)."""
    table = _aopc_table(res.curves)
    if res.bounds is None:
        table = table.assign(bound_method="none", **{c: math.nan for c in _BOUND_COLS[1:]},
                             naopc_comprehensiveness=math.nan, naopc_sufficiency=math.nan)
    else:
        table = _normalise(table, res.bounds)
    flips = res.flips[_KEYS + ["flipped", "fraction"]].rename(columns={"fraction": "fraction_flip"})
    table = table.merge(flips, on=_KEYS, how="left")
    table["flip_rate"] = table.pop("flipped").astype(float)
    return table


def _average_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over a method's rankings per example (fraction_flip over the rankings that flipped)."""
    first = ["n_words", "label", "p_full", *_BOUND_COLS]
    agg = {c: (c, "first") for c in first} | {m: (m, "mean") for m in METRICS}
    out = table.groupby(["example", "method"], sort=False).agg(**agg, n_rankings=("ranking", "size"))
    return out.reset_index()


def random_baseline(
    scorer: Scorer, words: Examples,
    *, n_rankings: int = 10, seed: int = 0, per_ranking: bool = False, naopc: bool = True,
    fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> pd.DataFrame:
    """The metrics of R seeded random rankings, the chance level to read a method's scores against.

    Example i draws its R rankings from ``np.random.default_rng([seed, i])``. Other arguments as
    :func:`erasure_curves` and :func:`aopc_bounds`.

    Args:
        n_rankings: R, random rankings per example.
        seed: seed of the rankings.
        per_ranking: return one row per (example, ranking) instead of the per-example mean.
        naopc: compute the NAOPC bounds; False skips the bound search (the dominant cost): the
            NAOPC columns are NaN and bound_method is "none".

    Returns:
        One row per example (or per (example, ranking)): example, method ("random"), n_words,
        label, p_full, bound columns as :func:`aopc_bounds`, aopc_comprehensiveness,
        aopc_sufficiency, naopc_comprehensiveness, naopc_sufficiency, flip_rate (share of the
        rankings whose erasure flips the label), fraction_flip (mean over those that flip, NaN if
        none), n_rankings (or ranking).
    """
    words = _check_words(words)
    n_rankings = check_int(n_rankings, "n_rankings", 1, keyword=True)
    opts = _options(fractions, erasure, replacement, exact_max_words, beam_width)
    jobs = _random_jobs(words, n_rankings, seed)
    table = _metric_table(_evaluate(scorer, words, jobs, opts, curves=True, flips=True, bounds=_check_flag(naopc)))
    return table if per_ranking else _average_rankings(table)


def faithfulness_report(
    scorer: Scorer, words: Examples, attributions: Mapping[str, Sequence[np.ndarray]],
    *, n_random: int = 10, seed: int = 0, n_boot: int = 1000, alpha: float = 0.05, naopc: bool = True,
    fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AOPC, NAOPC and decision flip of each attribution method beside a random baseline.

    All methods, the R random rankings and the bound search share one deduplicated batch of
    erased variants, and an example's NAOPC bounds are shared by all its rankings (searched bounds
    widened to all of them, see :func:`naopc`). The aggregate gives, per method, the mean over examples of each metric with
    a seeded percentile-bootstrap CI over examples (``toolkit.stats.mean_ci``); NaN values
    (flat bounds, never-flipped examples for fraction_flip) are left out and counted in
    ``n_<metric>``.

    Args:
        attributions: method name -> one score array per example ("random" is reserved).
        n_random: random rankings per example (0 leaves the baseline out).
        seed: seed of the random rankings and of the bootstrap.
        n_boot: bootstrap resamples.
        alpha: 1 - confidence level of the intervals.
        naopc: compute the NAOPC bounds (shared by all rankings of a sentence); False is the
            cheaper AOPC-only run: no bound search, NAOPC columns NaN, bound_method "none".
        Others: as :func:`erasure_curves` and :func:`aopc_bounds`.

    Returns:
        (per_example, aggregate). per_example: one row per (example, method) with the columns of
        :func:`random_baseline` (n_rankings = 1 for a method). aggregate: one row per method:
        method, n_examples, and for each metric in METRICS: <metric>, <metric>_low,
        <metric>_high, n_<metric>.
    """
    words = _check_words(words)
    if not isinstance(attributions, Mapping) or not attributions:
        raise ValueError("attributions must be a non-empty mapping: method name -> one score array per example")
    if RANDOM in attributions:
        raise ValueError(f"method name {RANDOM!r} is reserved for the random baseline; rename it")
    n_random = check_int(n_random, "n_random", 0, keyword=True)
    opts = _options(fractions, erasure, replacement, exact_max_words, beam_width)
    jobs = []
    for name, attr in attributions.items():
        jobs += _jobs_for(_check_attributions(attr, words, f"attributions[{name!r}]"), str(name))
    jobs += _random_jobs(words, n_random, seed)
    table = _metric_table(_evaluate(scorer, words, jobs, opts, curves=True, flips=True, bounds=_check_flag(naopc)))
    per_example = _average_rankings(table)

    return per_example, aggregate(per_example, n_boot=n_boot, alpha=alpha, seed=seed)


def aggregate(per_example: pd.DataFrame, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
              by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Mean of each metric in METRICS per group of rows, with a percentile-bootstrap CI over rows.

    NaN values (flat bounds, never-flipped rankings for fraction_flip) are left out and counted in
    ``n_<metric>``. Used by :func:`faithfulness_report`; also for per-example rows gathered over
    several calls (e.g. chunks of a long run), grouped by ``by``.

    Returns:
        One row per group: the ``by`` columns, n_examples, and for each metric: <metric>,
        <metric>_low, <metric>_high, n_<metric>.
    """
    from toolkit.stats import mean_ci  # a sibling module; imported where it is needed

    by = list(by)
    rows = []
    for key, group in per_example.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key)) | {"n_examples": len(group)}
        for m in METRICS:
            values = group[m].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if len(values):
                ci = mean_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
                row |= {m: ci.estimate, f"{m}_low": ci.low, f"{m}_high": ci.high}
            else:
                row |= {m: math.nan, f"{m}_low": math.nan, f"{m}_high": math.nan}
            row[f"n_{m}"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)


def model_scorer(
    model: Any, tokenizer: Any, task: Any, *, batch_size: int = 16, progress: bool = False,
    memo: bool | ScoreMemo = True,
) -> Scorer:
    """A :data:`Scorer` backed by a language model: label probabilities of the task's prompt.

    Each variant's ``.text`` (a plain word list: its words joined by single spaces) goes through
    ``toolkit.scoring.label_probs(model, tokenizer, task, texts, batch_size=, progress=)``, which
    encodes it with the one encoding path (:func:`toolkit.prompts.encode_example`). An example
    given as a text and erased nowhere is that text, so the scorer feeds the model the same ids as
    ``predict`` and erasing nothing reproduces p(y^ | x) exactly (comp = 0 at k = 0).

    Args:
        memo: True (default) remembers each scored variant per model state
            (:func:`model_state`, read at every call, so one scorer serves inside and outside a
            ``drop_attention``) in a :class:`ScoreMemo` shared by every scorer of the same
            (model, tokenizer, task); a ``ScoreMemo`` uses that one; False scores every call afresh.
            The scorer's ``.memo`` attribute is the memo (None when off).
    """
    from toolkit.scoring import label_probs  # imported here: scoring pulls in torch and the model stack

    batch_size = check_int(batch_size, "batch_size", 1, keyword=True)
    if not isinstance(memo, (bool, ScoreMemo)):
        raise ValueError(f"memo={memo!r}; expected True, False or a ScoreMemo")

    def score(variants: Sequence[Sequence[str]]) -> np.ndarray:
        texts = [v.text if isinstance(v, Variant) else " ".join(v) for v in variants]
        probs = label_probs(model, tokenizer, task, texts, batch_size=batch_size, progress=progress)
        return np.asarray(probs, dtype=float)

    if memo is False or model_state(model) is None:
        score.memo = None  # type: ignore[attr-defined]
        return score
    shared = memo if isinstance(memo, ScoreMemo) else _memo_for(model, tokenizer, task)
    return memoize(score, shared, state=lambda: model_state(model))


def model_faithfulness(
    model: Any,
    tokenizer: Any,
    task: Any,
    examples: Sequence[Any],
    methods: Sequence[str],
    *,
    backend: str = "fast",
    batch_size: int = 16,
    n_random: int = 10,
    seed: int = 0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    naopc: bool = True,
    memo: bool | ScoreMemo = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explain ``examples`` with each attribution method and measure the erasure faithfulness of each.

    One study cell's faithfulness, on the model as it is (inside ``drop_attention`` the dropped
    layers stay dropped for both the attributions and the erased forwards): each method's word
    attributions (:func:`toolkit.attribution.attribute`, ``seed=0``) of the predicted label, then
    :func:`faithfulness_report` over the example texts (text-level erasure) with the model's label
    probabilities as the scorer (:func:`model_scorer`).

    Args:
        examples: ``toolkit.Example`` objects (their ``.text`` is erased).
        methods: attribution method names, e.g. ``("saliency", "input_x_gradient")``.
        backend: attribution backend, ``"fast"`` or ``"inseq"``.
        batch_size: examples per forward pass, for attributions and scoring alike.
        n_random, seed, n_boot, alpha, naopc: as in :func:`faithfulness_report`.
        memo: as in :func:`model_scorer` (default: remembered per model state, so a second call
            on the same sentences and model state scores only new variants).

    Returns:
        ``(per_example, aggregate)`` as :func:`faithfulness_report` returns them.
    """
    attributions = {
        m: attribute(model, tokenizer, task, examples, method=m, backend=backend, batch_size=batch_size) for m in methods
    }
    scorer = model_scorer(model, tokenizer, task, batch_size=batch_size, memo=memo)
    return faithfulness_report(
        scorer, [e.text for e in examples], {m: [a.scores for a in attributions[m]] for m in methods},
        n_random=n_random, seed=seed, n_boot=n_boot, alpha=alpha, naopc=naopc,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the registry's entries
def _column(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    def metric(table: pd.DataFrame) -> pd.Series:
        return table[name]

    metric.__name__ = name
    return metric


register_metric(Metric("aopc_comprehensiveness", _column("aopc_comprehensiveness"), "faithfulness",
                       higher_is_better=True, test="paired_t", headline=True, superseded_by="naopc_comprehensiveness",
                       label="AOPC", short="aopc", plot=True, needs={"curves"}))
register_metric(Metric("aopc_sufficiency", _column("aopc_sufficiency"), "faithfulness", higher_is_better=False,
                       test="paired_t", label="AOPC sufficiency", needs={"curves"}))
register_metric(Metric("naopc_comprehensiveness", _column("naopc_comprehensiveness"), "faithfulness",
                       higher_is_better=True, test="paired_t", headline=True, label="NAOPC", short="naopc", plot=True,
                       needs={"curves", "bounds"}))
register_metric(Metric("naopc_sufficiency", _column("naopc_sufficiency"), "faithfulness", higher_is_better=False,
                       test="paired_t", label="NAOPC sufficiency", needs={"curves", "bounds"}))
register_metric(Metric("fraction_flip", _column("fraction_flip"), "faithfulness", higher_is_better=False,
                       test="paired_t", label="fraction erased to flip", needs={"flips"}))
register_metric(Metric("flip_rate", _column("flip_rate"), "faithfulness", higher_is_better=True, test="paired_t",
                       label="decision flip rate", needs={"flips"}))
