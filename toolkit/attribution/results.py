"""Word attributions: one :class:`Attribution` per example, its tidy frame, and token-to-word sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.prompts import word_spans
from .._core.validation import InputError

__all__ = [
    "Attribution",
    "attributions_frame",
    "split_words",
    "words_from_tokens",
]


def split_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` with their character spans (:func:`toolkit.data.prompts.word_spans`).

    The same words as ``toolkit.metrics.faithfulness.split_words`` (which returns the strings only), so
    an :class:`Attribution`'s scores line up with the words that faithfulness metrics erase.

    Returns:
        ``[(word, start, end), ...]`` with ``text[start:end] == word``.
    """
    return [(text[s:e], s, e) for s, e in word_spans(text)]


def words_from_tokens(token_scores: np.ndarray, token_word: np.ndarray, n_words: int) -> np.ndarray:
    """Sum of token scores per word (tokens with word index -1 are dropped)."""
    keep = token_word >= 0
    return np.bincount(token_word[keep], weights=np.asarray(token_scores, dtype=np.float64)[keep], minlength=n_words)


@dataclass(frozen=True, eq=False)
class Attribution:
    """One example's word attribution.

    Attributes:
        example_id: the example's id.
        words: the words of the example text (:func:`split_words`).
        spans: ``(start, end)`` character offsets of each word in the example text.
        scores: one score per word (float64, read-only); higher = more important for ``label``;
            >= 0 unless ``method`` is signed (then < 0 = pushes against ``label``).
        label: the explained label: the model's prediction (argmax over the verbalizers).
        label_name: ``task.label_names[label]``.
        method: the attribution method.
        backend: ``"inseq"`` or ``"fast"``.
        probability: ``predict``'s probability of ``label`` for this example (softmax over the
            verbalizers), from the same token ids.
        input_ids: the token ids of the prompt the model was fed (``encode_example(...).ids``).
    """

    example_id: str
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    scores: np.ndarray
    label: int
    label_name: str
    method: str
    backend: str
    probability: float = float("nan")
    input_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        scores = np.array(self.scores, dtype=np.float64)
        if scores.shape != (len(self.words),):
            raise InputError(f"{len(self.words)} words but scores of shape {scores.shape} for example {self.example_id!r}")
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)

    def to_frame(self) -> pd.DataFrame:
        """One row per word; columns as in :func:`attributions_frame`."""
        return pd.DataFrame(
            {
                "example_id": self.example_id,
                "method": self.method,
                "backend": self.backend,
                "label": self.label,
                "label_name": self.label_name,
                "probability": self.probability,
                "word_index": np.arange(len(self.words)),
                "word": list(self.words),
                "start": [s for s, _ in self.spans],
                "end": [e for _, e in self.spans],
                "score": self.scores,
            }
        )


_FRAME_COLUMNS = [
    "example_id", "method", "backend", "label", "label_name", "probability", "word_index", "word", "start", "end", "score",
]


def attributions_frame(attributions: Sequence[Attribution]) -> pd.DataFrame:
    """Tidy form: one row per (attribution, word).

    Returns:
        DataFrame with columns ``example_id``, ``method``, ``backend``, ``label``, ``label_name``,
        ``probability``, ``word_index``, ``word``, ``start``, ``end`` (character offsets in the example text), ``score``.
    """
    frames = [a.to_frame() for a in attributions]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _FRAME_COLUMNS})
    return pd.concat(frames, ignore_index=True)[_FRAME_COLUMNS]
