"""The memo of scored variants across calls, per model state.

Memo: :func:`toolkit.metrics.faithfulness.model_scorer` remembers every variant it scored per model state
(:class:`ScoreMemo`, :func:`model_state`), so a second call on the same sentences - another
metric, another method, the random baseline, the bounds - scores only what is new.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from ...models.adapters import dropped_layers
from ..._core.validation import check_int
from .erasure import Scorer, Variant, checked_probs

__all__ = [
    "MEMO_STATES",
    "ScoreMemo",
    "clear_memo",
    "memo_for",
    "memoize",
    "model_state",
]


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
        self.max_states = check_int(max_states, "max_states", 1)
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
            probs = checked_probs(scorer(list(new.values())), len(new))
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

    The dropped attention layers (:func:`toolkit.models.adapters.dropped_layers`: inside
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


def memo_for(model: Any, tokenizer: Any, task: Any) -> ScoreMemo:
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
