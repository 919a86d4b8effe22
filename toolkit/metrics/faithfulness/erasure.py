"""Erasing words and scoring the erased variants: the example type, the argument checks, the
fraction grid, the erasure itself and the deduplicating pool that scores a batch in one call.

Conventions (``words``, ``attributions``, k for a fraction, erasure modes): :mod:`toolkit.metrics.faithfulness`.
The checks and the pool are shared by the sibling modules (bounds, metrics, report).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...data.prompts import ERASURES, erase_words, split_words
from ..._core.validation import InputError, check_int

__all__ = [
    "BEAM_WIDTH",
    "EXACT_MAX_WORDS",
    "Examples",
    "FRACTIONS",
    "Options",
    "Pool",
    "Scorer",
    "Variant",
    "check_attributions",
    "check_flag",
    "check_words",
    "checked_probs",
    "k_for_fraction",
    "options",
    "ranking",
]


class Variant(tuple):
    """An (erased) example as a scorer receives it: a tuple of its words, plus the text it stands for.

    Attributes:
        text: the text to score: the example's text with the erased words deleted or replaced
            (:func:`toolkit.data.prompts.erase_words`) when the example was given as a text, else the
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
EXACT_MAX_WORDS = 8
# Beam width of the NAOPC bound search on longer texts; 1 is greedy. The search dominates the cost
# (~4 * width * sum_{m < k_max} (n - m) variants per text), hence a small default on CPU.
BEAM_WIDTH = 1


def k_for_fraction(fraction: float, n_words: int) -> int:
    """Number of top-ranked words a fraction stands for: ``k = max(1, ceil(fraction * n_words))``."""
    return max(1, math.ceil(round(fraction * n_words, 9)))


# ----------------------------------------------------------------------------- validation


def check_words(words: Sequence[str | Sequence[str]]) -> list[Variant]:
    """The examples as :class:`Variant` s (unerased), one per example; ValueError naming a bad one."""
    if isinstance(words, str):
        raise InputError("words must be a list of texts or word lists, got one str; use [text]")
    checked = []
    for i, example in enumerate(words):
        if isinstance(example, str):
            variant = Variant(split_words(example), example, example)
        else:
            example = tuple(example)
            if not all(isinstance(w, str) for w in example):
                raise InputError(f"example {i} holds non-str words; expected a text or a sequence of str")
            if any(not w or any(c.isspace() for c in w) for w in example):
                raise InputError(f"example {i} has an empty word or one with whitespace: {example!r}; "
                                 "words are split_words(text)")
            variant = Variant(example, " ".join(example))
        if len(variant) == 0:
            raise InputError(f"example {i} has zero words ({example!r}); every example needs at least one word")
        checked.append(variant)
    if not checked:
        raise InputError("words is empty; expected at least one example")
    return checked


def check_flag(value: Any, name: str = "naopc") -> bool:
    """``value`` as a bool; ValueError unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}={value!r}; expected True or False")
    return bool(value)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if not fractions:
        raise InputError("fractions is empty; expected fractions in (0, 1], e.g. FRACTIONS = (0.01, ..., 0.5)")
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad:
        raise InputError(f"fractions {bad} outside (0, 1]; expected fractions of the words, e.g. 0.1 for 10%")
    return fractions


def check_attributions(attributions: Sequence[Any], words: list[Variant], name: str) -> list[np.ndarray]:
    """One finite float array per example, one score per word; ValueError naming a bad entry."""
    if len(attributions) != len(words):
        raise InputError(f"{name} has {len(attributions)} entries for {len(words)} examples")
    checked = []
    for i, (a, w) in enumerate(zip(attributions, words)):
        a = np.asarray(a, dtype=float)
        if a.ndim != 1 or a.shape[0] != len(w):
            raise InputError(f"{name}[{i}] has shape {a.shape}; expected ({len(w)},), one score per word")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name}[{i}] has non-finite scores at words {np.flatnonzero(~np.isfinite(a)).tolist()}")
        checked.append(a)
    return checked


def ranking(attribution: np.ndarray) -> np.ndarray:
    """Word indices by descending attribution, ties broken by position (a stable sort)."""
    return np.argsort(-np.asarray(attribution, dtype=float), kind="stable")


# ----------------------------------------------------------------------------- erasure and batching


@dataclass(frozen=True)
class _Erasure:
    mode: str
    replacement: str

    @staticmethod
    def of(mode: str, replacement: str) -> _Erasure:
        if mode not in ERASURES:
            raise InputError(f"unknown erasure {mode!r}; expected one of {list(ERASURES)}")
        if not isinstance(replacement, str):
            raise InputError(f"replacement={replacement!r}; expected a str")
        return _Erasure(mode, replacement)

    def apply(self, words: Variant, erased: Iterable[int]) -> Variant:
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

    def keep(self, words: Variant, kept: Iterable[int]) -> Variant:
        kept = set(int(i) for i in kept)
        return self.apply(words, (i for i in range(len(words)) if i not in kept))


def checked_probs(probs: Any, n: int) -> np.ndarray:
    """A scorer's output as a finite float array of shape (n, C >= 2); ValueError otherwise."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 2:
        raise InputError(f"scorer returned shape {probs.shape} for {n} texts; expected ({n}, C>=2)")
    if not np.all(np.isfinite(probs)):
        raise InputError("scorer returned non-finite probabilities")
    return probs


class Pool:
    """Deduplicating queue of variants (by words and text); ``flush`` scores the queued ones in one call."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self._ids: dict[tuple, int] = {}
        self._pending: list[Variant] = []
        self._probs: list[np.ndarray] = []

    def add(self, variant: Variant) -> int:
        idx = self._ids.get(variant.key)
        if idx is None:
            idx = self._ids[variant.key] = len(self._ids)
            self._pending.append(variant)
        return idx

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._probs.extend(checked_probs(self._scorer(batch), len(batch)))

    def __getitem__(self, idx: int) -> np.ndarray:
        return self._probs[idx]


@dataclass(frozen=True)
class Options:
    """The checked options of one metric call: fraction grid, erasure and bound-search limits."""

    fractions: tuple[float, ...]
    erasure: _Erasure
    exact_max_words: int = EXACT_MAX_WORDS
    beam_width: int = BEAM_WIDTH
    soft_samples: int = 8
    soft_seed: int = 0
    bound_max_words: int | None = None  # longest text whose bounds are searched (None: every text)


def options(fractions, erasure, replacement, exact_max_words=EXACT_MAX_WORDS, beam_width=BEAM_WIDTH,
            soft_samples=8, soft_seed=0, bound_max_words=None) -> Options:
    """The :class:`Options` of a call, each argument checked (ValueError naming a bad one)."""
    return Options(
        _check_fractions(fractions),
        _Erasure.of(erasure, replacement),
        check_int(exact_max_words, "exact_max_words", 0),
        check_int(beam_width, "beam_width", 1),
        check_int(soft_samples, "soft_samples", 1),
        check_int(soft_seed, "soft_seed", 0),
        None if bound_max_words is None else check_int(bound_max_words, "naopc_max_words", 1),
    )
