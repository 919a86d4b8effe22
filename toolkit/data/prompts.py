"""The one encoding path: how an example becomes the token ids a model is fed.

Every consumer - scoring (``predict``, ``label_probs``), both attribution backends, the
faithfulness scorer, task-aware importance, the widgets and the study - builds its model input
with :func:`encode_example` (or :func:`encode_text` for raw texts), so the probability that
``predict`` reports, the input an attribution explains and the text a faithfulness metric erases
are the same token sequence.

Conventions (they follow the tokenizer, never a model name):

* A **plain prompt** (``instruction / <input_name>: <text> / Answer:``) gets exactly the special
  tokens that ``tokenizer(text)`` puts *before* a text: a BOS for Llama, Mistral and Gemma
  tokenizers, nothing for SmolLM2 and GPT-2 (:func:`special_prefix`). A special token a tokenizer
  appends *after* a text (an EOS) is not added: the prompt is continued by the answer.
* A **chat prompt** is rendered by the tokenizer's chat template, which writes its own special
  tokens (Gemma's starts with ``<bos>``); it is encoded with ``add_special_tokens=False``, so it
  never gets a second BOS.
* **Words** are maximal runs of non-whitespace (:func:`split_words`); attribution ranks them and
  faithfulness erases them. Erasing works on the text (:func:`erase_words`): a deleted word goes
  with the whitespace after it, so erasing nothing returns the text unchanged, byte for byte.
* **k-shot demonstrations** are earlier chat turns or earlier blocks of the same plain prompt;
  by default the task's ``n_shot`` label-balanced examples from the train split.

The BOS and any instruction or demonstration tokens all precede the example text, so prompts of
one task share a token prefix and the shared-prefix KV cache of scoring and attribution keeps
working (the BOS belongs to the prefix).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .task import Example, Task
from .datasets import demonstrations
from .._core.validation import InputError

if TYPE_CHECKING:  # pragma: no cover - annotations only; this module needs no torch or transformers
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ERASURES",
    "EncodedPrompt",
    "Prompt",
    "context_length",
    "encode_example",
    "encode_examples",
    "encode_text",
    "erase_words",
    "render_prompt",
    "special_prefix",
    "split_words",
    "task_demos",
    "uses_chat",
    "verbalizer_ids",
    "word_spans",
]

ERASURES: tuple[str, ...] = ("delete", "replace")
_WORD = re.compile(r"\S+")
_SLOT = "\u241fTOOLKIT_TEXT\u241f"  # placeholder located after templating, then replaced by the text


# --------------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------------
def split_words(text: str) -> list[str]:
    """The words of ``text``: maximal runs of non-whitespace, ``re.finditer(r"\\S+", text)``."""
    return [m.group() for m in _WORD.finditer(text)]


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of each word of :func:`split_words`, in order."""
    return [m.span() for m in _WORD.finditer(text)]


def erase_words(text: str, erased: Iterable[int], *, erasure: str = "delete", replacement: str = "...") -> str:
    """``text`` with the words at indices ``erased`` deleted or replaced.

    ``delete`` keeps each remaining word with the whitespace that stood before it (the first one
    remaining takes the text's leading whitespace), plus the text's trailing whitespace;
    ``replace`` puts ``replacement`` where each erased word was. Erasing no word returns ``text``.

    Raises:
        InputError: an unknown erasure, or an index that is not a word of ``text``.
    """
    if erasure not in ERASURES:
        raise InputError(f"unknown erasure {erasure!r}; expected one of {list(ERASURES)}")
    spans = word_spans(text)
    gone = {int(i) for i in erased}
    bad = sorted(i for i in gone if not 0 <= i < len(spans))
    if bad:
        raise InputError(f"word indices {bad} out of range for a text of {len(spans)} words")
    if not gone:
        return text
    lead = text[: spans[0][0]]
    trail = text[spans[-1][1] :]
    pieces = []
    for i, (s, e) in enumerate(spans):
        before = text[spans[i - 1][1] : s] if i else ""
        if erasure == "replace":
            pieces.append(before + (replacement if i in gone else text[s:e]))
        elif i not in gone:
            pieces.append((before if pieces else "") + text[s:e])
    return lead + "".join(pieces) + trail


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and where the example's own text sits in it.

    Attributes:
        text: the full prompt string (chat template applied where used).
        span: `(start, end)` character offsets of the example text inside `text`; attribution and
            erasure only rank and remove words inside this span.
        chat: whether the chat template was used (decides the verbalizers' leading space).
    """

    text: str
    span: tuple[int, int]
    chat: bool


def uses_chat(task: Task, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``task`` is posed through ``tokenizer``'s chat template.

    ``task.use_chat_template``: ``"auto"`` uses the template when the tokenizer has one; ``True``
    requires one; ``False`` never uses it.

    Raises:
        InputError: ``use_chat_template=True`` and the tokenizer has no chat template.
    """
    has = bool(getattr(tokenizer, "chat_template", None))
    if task.use_chat_template is True and not has:
        raise InputError(
            f"task {task.name!r} asks for the chat template (use_chat_template=True), but the tokenizer "
            f"{getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r} has none; "
            "use use_chat_template='auto' (plain prompt when there is no template) or False"
        )
    return bool(task.use_chat_template) and has


def _user_message(task: Task, text: str) -> str:
    options = " or ".join(task.verbalizers)
    return f"{task.instruction}\n\n{task.input_name}: {text}\nAnswer with one word: {options}."


def task_demos(task: Task, demos: Sequence[Example] | None = None) -> tuple[Example, ...]:
    """The demonstrations a prompt of ``task`` shows: ``demos`` if given, else ``task.n_shot`` from train."""
    if demos is not None:
        return tuple(demos)
    return demonstrations(task.name, task.n_shot) if task.n_shot > 0 else ()


def render_prompt(
    task: Task, tokenizer: PreTrainedTokenizerBase, text: str, *, demos: Sequence[Example] = ()
) -> Prompt:
    """Render `text` as a prompt for `task`; demonstrations become earlier chat turns (or blocks).

    With a chat template the answer is the assistant's first word; without one the prompt ends
    in "Answer:" and verbalizers are scored with a leading space.
    """
    chat = uses_chat(task, tokenizer)
    if chat:
        messages: list[dict[str, str]] = []
        for demo in demos:
            messages.append({"role": "user", "content": _user_message(task, demo.text)})
            messages.append({"role": "assistant", "content": task.verbalizers[demo.label]})
        messages.append({"role": "user", "content": _user_message(task, _SLOT)})
        template = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        blocks = [f"{task.instruction}\n"]
        for demo in demos:
            blocks.append(f"{task.input_name}: {demo.text}\nAnswer: {task.verbalizers[demo.label]}\n")
        blocks.append(f"{task.input_name}: {_SLOT}\nAnswer:")
        template = "\n".join(blocks)
    if template.count(_SLOT) != 1:
        raise InputError("the chat template did not keep the example text exactly once")
    start = template.index(_SLOT)
    full = template.replace(_SLOT, text)
    return Prompt(text=full, span=(start, start + len(text)), chat=chat)


def verbalizer_ids(task: Task, tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each label's verbalizer as it follows the prompt.

    Raises:
        InputError: when two labels encode to the same token sequence (or, for single-token
            verbalizers, the same token), since the scores could not tell them apart.
    """
    prefix = "" if uses_chat(task, tokenizer) else " "
    ids = [tokenizer.encode(prefix + v, add_special_tokens=False) for v in task.verbalizers]
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if ids[i] == ids[j]:
                raise InputError(
                    f"verbalizers {task.verbalizers[i]!r} and {task.verbalizers[j]!r} of task {task.name!r} "
                    f"encode to the same tokens {ids[i]}; choose distinct words"
                )
    if any(not seq for seq in ids):
        raise InputError(f"a verbalizer of task {task.name!r} encodes to no token: {task.verbalizers}")
    return ids


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------
def special_prefix(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The special tokens ``tokenizer(text)`` puts before any text: ``(bos,)`` or ``()``.

    Found by encoding a probe with and without special tokens, so it follows the tokenizer's own
    post-processor (Llama, Mistral, Gemma: BOS; SmolLM2, GPT-2: none).
    """
    probe = "a"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return tuple(full[:i])
    raise InputError(f"could not locate a text's own tokens among {full}: the tokenizer's special tokens are unusual")


@dataclass(frozen=True, eq=False)
class EncodedPrompt:
    """A prompt as token ids, and where the example's words sit in them.

    Attributes:
        prompt: the rendered prompt (its text, the example's span in it, whether chat was used).
        ids: the token ids fed to the model, special tokens included.
        offsets: ``(start, end)`` characters of ``prompt.text`` per token; ``(0, 0)`` for an added
            special token.
        words: the example's words (:func:`split_words` of the example text as rendered).
        spans: ``(start, end)`` of each word in the example text.
        token_word: per token, the index of the example word it belongs to, -1 for every token
            outside the example text (BOS, instruction, template, demonstrations). A token belongs to
            the word holding its first non-space character (BPE tokens carry their leading space).
    """

    prompt: Prompt
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    token_word: np.ndarray

    def __post_init__(self) -> None:
        self.token_word.setflags(write=False)


def _token_words(prompt: Prompt, offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    start, end = prompt.span
    char_word = np.full(end - start, -1, dtype=np.int64)
    for w, (s, e) in enumerate(spans):
        char_word[s:e] = w
    out = np.full(len(offsets), -1, dtype=np.int64)
    text = prompt.text
    for i, (s, e) in enumerate(offsets):
        c = next((c for c in range(s, e) if not text[c].isspace()), None)
        if c is not None and start <= c < end:
            out[i] = char_word[c - start]
    return out


def _encode(tokenizer: PreTrainedTokenizerBase, text: str, prefix: tuple[int, ...]) -> tuple[list[int], list[tuple[int, int]]]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    else:  # slow tokenizers have no offsets: no token maps to a word
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        offsets = [(0, 0)] * len(ids)
    return list(prefix) + ids, [(0, 0)] * len(prefix) + offsets


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """A raw text's token ids with the tokenizer's leading special tokens (:func:`special_prefix`)."""
    return _encode(tokenizer, text, special_prefix(tokenizer))[0]


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    text: str,
    *,
    demos: Sequence[Example] | None = None,
    erase: Iterable[int] = (),
    erasure: str = "delete",
    replacement: str = "...",
    max_length: int | None = None,
) -> EncodedPrompt:
    """The model input for one example: its prompt's token ids and where its words are.

    Args:
        text: the example text.
        demos: k-shot demonstrations; default :func:`task_demos` (the task's ``n_shot``).
        erase: indices of the example's words to erase first (:func:`erase_words`).
        erasure: ``"delete"`` or ``"replace"`` (by ``replacement``).
        max_length: the model's context length; a longer prompt is an error naming both lengths
            (nothing is truncated silently).

    Raises:
        InputError: a chat template required but absent, a prompt longer than ``max_length``.
    """
    if not isinstance(text, str):
        raise InputError(f"an example text must be a str, got {type(text).__name__}")
    demos = task_demos(task, demos)
    text = erase_words(text, erase, erasure=erasure, replacement=replacement)
    prompt = render_prompt(task, tokenizer, text, demos=demos)
    prefix = () if prompt.chat else special_prefix(tokenizer)
    ids, offsets = _encode(tokenizer, prompt.text, prefix)
    if max_length is not None and len(ids) > max_length:
        what = f" ({len(demos)} demonstrations take part of it; use fewer)" if demos else ""
        raise InputError(
            f"the prompt of text {text[:40]!r}... is {len(ids)} tokens, longer than the model's context of "
            f"{max_length} tokens{what}"
        )
    spans = word_spans(text)
    return EncodedPrompt(
        prompt=prompt,
        ids=tuple(ids),
        offsets=tuple(offsets),
        words=tuple(text[s:e] for s, e in spans),
        spans=tuple(spans),
        token_word=_token_words(prompt, offsets, spans),
    )


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    texts: Sequence[str],
    *,
    demos: Sequence[Example] | None = None,
    max_length: int | None = None,
) -> list[EncodedPrompt]:
    """:func:`encode_example` for many texts (the demonstrations drawn once)."""
    demos = task_demos(task, demos)
    return [encode_example(tokenizer, task, t, demos=demos, max_length=max_length) for t in texts]


def context_length(model: object) -> int | None:
    """The number of positions ``model`` was built for (``max_position_embeddings``/``n_positions``), if known."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
