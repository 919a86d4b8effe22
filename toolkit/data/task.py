"""A labelled example and the task that poses it to a model: :class:`Example` and :class:`Task`.

The value types at the bottom of the data layer (:mod:`toolkit.data.datasets` re-exports both; the bundled
datasets, the registry and the loaders live there). The scoring code renders a task as::

    {instruction}
    {input_name}: {text}
    Answer with one word: {verbalizers joined with " or "}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._core.validation import InputError, is_int

__all__ = [
    "Example",
    "Task",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Example:
    """One labelled text.

    Attributes:
        id: unique within its dataset, e.g. ``"uci_imdb-17"``.
        text: the input shown to the model after ``f"{task.input_name}: "``.
        label: class id, an index into ``task.label_names``.
        meta: every other field of the record (``split``, VADER's mean human ``rating``, ...),
            read-only; excluded from equality and hashing.
    """

    id: str
    text: str
    label: int
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)


@dataclass(frozen=True)
class Task:
    """How a dataset is posed to a model.

    Attributes:
        name: dataset name.
        instruction: the question, without the answer-format sentence that the scoring code adds.
        label_names: index = label id, e.g. ``("negative", "positive")``.
        verbalizers: the answer word the model should produce per label (distinct).
        input_name: how the text is introduced in the prompt: "Review", "Tweet", "Question", ...
        use_chat_template: ``"auto"`` uses the tokenizer's chat template when it has one (else the
            plain prompt); ``True`` requires one (an error for a tokenizer without); ``False``
            always uses the plain prompt.
        n_shot: number of k-shot demonstrations drawn from the train split.
    """

    name: str
    instruction: str
    label_names: tuple[str, ...]
    verbalizers: tuple[str, ...]
    input_name: str = "Text"
    use_chat_template: bool | str = "auto"
    n_shot: int = 0

    def __post_init__(self) -> None:
        for attr in ("label_names", "verbalizers"):
            value = getattr(self, attr)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise InputError(f"Task.{attr} must be a sequence of strings, got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Task.name must be a non-empty string, got {self.name!r}")
        if len(self.label_names) < 2:
            raise InputError(f"Task {self.name!r}: need at least 2 label_names, got {self.label_names!r}")
        if len(self.verbalizers) != len(self.label_names):
            raise InputError(f"Task {self.name!r}: {len(self.verbalizers)} verbalizers {self.verbalizers!r} "
                             f"for {len(self.label_names)} label_names {self.label_names!r}")
        for attr in ("label_names", "verbalizers"):
            value = getattr(self, attr)
            if any(not isinstance(v, str) or not v.strip() or v != v.strip() for v in value):
                raise InputError(f"Task {self.name!r}: {attr} must be non-empty strings without surrounding "
                                 f"whitespace, got {value!r}")
            if len(set(value)) != len(value):
                raise InputError(f"Task {self.name!r}: {attr} must be distinct, got {value!r}")
        if not isinstance(self.input_name, str) or not self.input_name.strip():
            raise InputError(f"Task {self.name!r}: input_name must be a non-empty string, got {self.input_name!r}")
        if not is_int(self.n_shot) or self.n_shot < 0:
            raise InputError(f"Task {self.name!r}: n_shot must be an int >= 0, got {self.n_shot!r}")
        if not (self.use_chat_template is True or self.use_chat_template is False or self.use_chat_template == "auto"):
            raise InputError(f"Task {self.name!r}: use_chat_template must be 'auto', True or False, "
                             f"got {self.use_chat_template!r}")

    @property
    def n_classes(self) -> int:
        """Number of labels."""
        return len(self.label_names)
