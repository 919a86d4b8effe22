"""Erasing words and scoring the erased variants: the example type, the argument checks, the
fraction grid, the erasure itself, the deduplicating pool that scores a batch in one call, and
:class:`ErasureOptions`: the engine's options as one object.

Conventions (``words``, ``attributions``, k for a fraction, erasure modes): :mod:`toolkit.metrics.faithfulness`.
The checks and the pool are shared by the sibling modules (bounds, metrics, report).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...data.prompts import ERASURES, erase_words, split_words
from ..._core.validation import InputError, check_int

__all__ = [
    "BEAM_WIDTH",
    "EXACT_MAX_WORDS",
    "ErasureOptions",
    "Examples",
    "FRACTIONS",
    "Pool",
    "SOFT_SAMPLES",
    "Scorer",
    "Variant",
    "check_attributions",
    "check_flag",
    "check_words",
    "checked_probs",
    "k_for_fraction",
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


SOFT_SAMPLES = 8
"""Monte Carlo draws of the embedding mask per (example, ranking) and soft metric."""


@dataclass(frozen=True)
class ErasureOptions:
    """How the erasure engine erases and which of its optional parts it runs: one object, passed whole.

    :func:`~toolkit.metrics.faithfulness.faithfulness_report`, :func:`~toolkit.metrics.faithfulness.model_faithfulness`,
    :func:`~toolkit.metrics.faithfulness.random_baseline` and :attr:`toolkit.study.StudyConfig.erasure` take it
    (those functions also take its fields as keywords, each replacing the options' own). Every field is checked
    when the object is made (InputError naming the bad one).

    Attributes:
        fractions: fractions of the words erased for the curves, in (0, 1] (ERASER's by default).
        erasure: ``"delete"`` the erased words, or ``"replace"`` each by ``replacement``.
        replacement: the token put in place of an erased word when ``erasure="replace"``.
        naopc: run the engine part ``bounds`` (the AOPC bound search NAOPC needs; the dominant cost).
        exact_max_words: longest text whose bounds are solved exactly (longer ones: beam search).
        beam_width: chains kept per step of the bound beam search (1 = greedy).
        naopc_max_words: longest text whose bounds are searched at all (None: every text); a longer
            text's NAOPC is NaN (bound_method "none").
        soft: run the engine part ``soft`` (masked-embedding variants; the scorer must accept them).
        soft_samples: Monte Carlo mask draws per (example, ranking) and soft metric.
        soft_seed: seed of the mask draws (with each text's crc32 and the draw index).
        part_options: options of engine parts registered outside the toolkit, by name (a part reads
            its own entry; see :func:`~toolkit.metrics.faithfulness.metrics.register_engine_part`).
    """

    fractions: tuple[float, ...] = FRACTIONS
    erasure: str = "delete"
    replacement: str = "..."
    naopc: bool = True
    exact_max_words: int = EXACT_MAX_WORDS
    beam_width: int = BEAM_WIDTH
    naopc_max_words: int | None = None
    soft: bool = False
    soft_samples: int = SOFT_SAMPLES
    soft_seed: int = 0
    part_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _Erasure.of(self.erasure, self.replacement)
        set_ = object.__setattr__
        set_(self, "fractions", _check_fractions(self.fractions))
        set_(self, "naopc", check_flag(self.naopc, "naopc"))
        set_(self, "soft", check_flag(self.soft, "soft"))
        set_(self, "exact_max_words", check_int(self.exact_max_words, "exact_max_words", 0))
        set_(self, "beam_width", check_int(self.beam_width, "beam_width", 1))
        if self.naopc_max_words is not None:
            set_(self, "naopc_max_words", check_int(self.naopc_max_words, "naopc_max_words", 1))
        set_(self, "soft_samples", check_int(self.soft_samples, "soft_samples", 1))
        set_(self, "soft_seed", check_int(self.soft_seed, "soft_seed", 0))
        if not isinstance(self.part_options, Mapping):
            raise InputError(f"part_options={self.part_options!r}; expected engine part name -> its options")
        set_(self, "part_options", dict(self.part_options))

    @staticmethod
    def of(options: ErasureOptions | None = None, **fields: Any) -> ErasureOptions:
        """``options`` (default: the defaults) with ``fields`` replaced; an unknown field is an InputError."""
        if options is None:
            options = ErasureOptions()
        elif not isinstance(options, ErasureOptions):
            raise InputError(f"options={options!r}; expected an ErasureOptions")
        known = [f.name for f in dataclasses.fields(ErasureOptions)]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise InputError(f"unknown erasure option(s) {unknown}; ErasureOptions fields: {known}")
        return dataclasses.replace(options, **fields) if fields else options

    def enabled(self, switch: str | None) -> bool:
        """Whether the switch of an engine part is on: None (no switch: always), a bool field (``naopc``,
        ``soft``), else ``part_options[switch]`` (default off)."""
        if switch is None:
            return True
        if switch in _FLAG_FIELDS:
            return bool(getattr(self, switch))
        return bool(self.part_options.get(switch, False))

    def searches_bounds(self, n_words: int) -> bool:
        """Whether the bound search runs on a text of ``n_words`` words (``naopc`` and ``naopc_max_words``)."""
        return self.naopc and (self.naopc_max_words is None or n_words <= self.naopc_max_words)

    @functools.cached_property
    def eraser(self) -> _Erasure:
        """The erasure itself: ``apply(words, erased)`` and ``keep(words, kept)``."""
        return _Erasure(self.erasure, self.replacement)


_FLAG_FIELDS = ("naopc", "soft")
