"""Examples made ready to attribute: the predicted label, its first verbalizer token, the encoded prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.datasets import Dataset, as_examples
from ..data.task import Example, Task
from ..data.prompts import EncodedPrompt, context_length, encode_examples, task_demos, verbalizer_ids, word_spans
from ..models.scoring import label_probs
from .._core.validation import InputError

__all__ = [
    "Item",
    "check_eager",
    "examples_of",
    "prepare_items",
]


@dataclass(frozen=True)
class Item:
    """An example ready to attribute: its encoded prompt and the explained label."""

    example_id: str
    encoded: EncodedPrompt
    label: int
    probability: float
    target_id: int
    target_text: str

    @property
    def ids(self) -> tuple[int, ...]:
        return self.encoded.ids

    @property
    def token_word(self) -> np.ndarray:
        return self.encoded.token_word


def examples_of(examples: Dataset | Sequence[Example]) -> list[Example]:
    return as_examples(examples, "examples")


def prepare_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: list[Example],
    *,
    batch_size: int,
    progress: bool,
) -> list[Item]:
    """Predict each example's label and tokenise its prompt, mapping tokens to words."""
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"attribution needs a fast tokenizer (character offsets), got {type(tokenizer).__name__}")
    for ex in examples:
        if not word_spans(ex.text):
            raise InputError(f"example {ex.id!r} has no words to attribute (text {ex.text!r})")
    verbalizers = verbalizer_ids(task, tokenizer)
    firsts = [v[0] for v in verbalizers]
    if len(set(firsts)) != len(firsts):
        raise InputError(
            f"the verbalizers {task.verbalizers} of task {task.name!r} share a first token {firsts}: the explained "
            "token would not tell the labels apart; choose verbalizers whose first tokens differ"
        )
    demos = task_demos(task)
    texts = [e.text for e in examples]
    encoded = encode_examples(tokenizer, task, texts, demos=demos, max_length=context_length(model))
    probs = label_probs(model, tokenizer, task, texts, batch_size=batch_size, progress=progress, demos=demos)
    items = []
    for ex, enc, p in zip(examples, encoded, probs):
        label = int(np.argmax(p))
        target_id = firsts[label]
        target_text = tokenizer.decode([target_id])
        items.append(Item(ex.id, enc, label, float(p[label]), target_id, target_text))
    return items


def check_eager(model: PreTrainedModel) -> None:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "eager"):
        raise InputError(
            f"attribution needs eager attention, the model uses {impl!r}; load it with attn_implementation='eager' "
            "(toolkit.load_model does)"
        )
