"""Label scoring: prompts, verbalizer tokens, and batched label probabilities.

A classification example is posed to the LM as a prompt (the task's instruction, optional k-shot
demonstrations, the text, an answer format) and encoded by :func:`toolkit.data.prompts.encode_example`,
the one encoding path every consumer shares; the answer is read off the next-token distribution at
the end of the prompt, restricted to the label verbalizers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.datasets import Dataset, as_examples
from ..data.task import Example, Task
from ..data.prompts import context_length, encode_examples, encode_text, verbalizer_ids
from .._core.validation import InputError, InputTypeError, check_int, check_text_list, is_int, short_repr
from .forward import common_prefix_length, continue_prefix, prefix_cache

__all__ = [
    "LOG_FLOOR",
    "encode_prompts",
    "encode_texts",
    "frame_logprobs",
    "frame_probs",
    "label_logprobs",
    "label_probs",
    "predict",
    "prediction_frame",
    "probability_columns",
]

LOG_FLOOR = 1e-300  # probabilities are clipped here before the log in frame_logprobs (finite logits)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Left-padded batch of token-id rows with `position_ids` counted from each row's first real token.

    transformers 5 derives positions from the cache position, not the attention mask, so a plain
    forward on a left-padded batch would shift every padded row; passing `position_ids` keeps
    batched scores equal to one-at-a-time scores.

    Args:
        prompts: token ids per row, as :func:`toolkit.data.prompts.encode_example` builds them.
    """
    if prompts and isinstance(prompts[0], str):
        raise InputError("encode_prompts takes token ids (toolkit.data.prompts.encode_example(...).ids), not strings")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, row in enumerate(prompts):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": position_ids.to(device)}


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Raw texts as the tokenizer encodes them (its BOS included), cut to ``max_length`` tokens, left-padded.

    The batch :func:`encode_prompts` builds (with ``position_ids``); no prompt is built around the
    texts. Used by attention importance and by its cost measurement. The tokenizer is not modified.
    """
    return encode_prompts(tokenizer, [encode_text(tokenizer, t)[:max_length] for t in texts], device)


def _batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _score_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    token_ids: Sequence[Sequence[int]],
    verbalizers: list[list[int]],
    *,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of each verbalizer after each prompt (token ids), and the vocabulary mass on them.

    Returns:
        `(loglik, mass)`: loglik is (n, C), the summed log-probability of each label's tokens;
        mass is (n,), the total probability of the label sequences under the full vocabulary.
    """
    check_int(batch_size, "batch_size", 1)
    n, n_labels = len(token_ids), len(verbalizers)
    loglik = np.zeros((n, n_labels), dtype=np.float64)
    device = _device(model)
    single = all(len(v) == 1 for v in verbalizers)
    prefix_len = common_prefix_length(token_ids) if single else 0
    cache = None
    if prefix_len:
        cache = prefix_cache(model, input_ids=torch.tensor([list(token_ids[0][:prefix_len])], device=device))
    # Sort by length so each batch pads little; results are written back in the input order.
    order = np.argsort(-np.array([len(t) for t in token_ids]), kind="stable")
    label_tok = torch.tensor([v[0] for v in verbalizers], device=device)
    bar = tqdm(total=n, desc="scoring", disable=not progress, leave=False)
    for idx in _batches(order, batch_size):
        if single:
            rows = [token_ids[i][prefix_len:] for i in idx]
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            logits = continue_prefix(model, rows, cache, pad_id=pad)
            loglik[idx] = torch.log_softmax(logits, dim=-1)[:, label_tok].double().cpu().numpy()
        else:
            batch = [token_ids[i] for i in idx]
            for c, seq in enumerate(verbalizers):
                loglik[idx, c] = _sequence_loglik(model, tokenizer, batch, seq, device)
        bar.update(len(idx))
    bar.close()
    mass = np.exp(loglik).sum(axis=1)
    return loglik, mass


def _sequence_loglik(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Sequence[int]],
    seq: list[int],
    device: torch.device,
) -> np.ndarray:
    """Summed log-probability of the token sequence `seq` after each prompt (teacher forcing)."""
    enc = encode_prompts(tokenizer, prompts, device)
    k = len(seq)
    tail = torch.tensor(seq, device=device).expand(len(prompts), k)
    input_ids = torch.cat([enc["input_ids"], tail], dim=1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(tail)], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
    logp = torch.log_softmax(logits[:, -k - 1 : -1, :].float(), dim=-1)
    picked = logp.gather(-1, tail.unsqueeze(-1)).squeeze(-1)
    return picked.sum(-1).double().cpu().numpy()


def _prompt_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    texts: Sequence[str],
    demos: Sequence[Example] | None,
) -> list[tuple[int, ...]]:
    return [e.ids for e in encode_examples(tokenizer, task, texts, demos=demos, max_length=context_length(model))]


def label_probs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    progress: bool = False,
    demos: Sequence[Example] | None = None,
) -> np.ndarray:
    """Class probabilities for raw texts: softmax over the label verbalizers' log-likelihoods.

    p(c | x) = exp(l_c) / sum_j exp(l_j),   l_c = log p_LM(verbalizer_c | prompt(x))

    Args:
        texts: the example texts (the prompt is built around each one).
        demos: k-shot demonstrations; default: the task's `n_shot` from the train split.

    Returns:
        Array of shape (len(texts), n_classes).

    An empty text is scored (the prompt around nothing: faithfulness erases every word this way).

    Raises:
        InputError (a ValueError): no texts, a single string, a prompt longer than the model's context.
        InputTypeError: an item that is not a str.
    """
    return _softmax(label_logprobs(model, tokenizer, task, texts, batch_size=batch_size, progress=progress,
                                   demos=demos))


def label_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    progress: bool = False,
    demos: Sequence[Example] | None = None,
) -> np.ndarray:
    """Raw log-likelihood of each label's verbalizer after each prompt, under the full vocabulary.

    l_c = log p_LM(verbalizer_c | prompt(x)) = sum_t log softmax(logits_t)[v_c,t]   (natural log)

    Not renormalised over the labels (that is :func:`label_probs`): the number an evaluation
    harness reports as the log-likelihood of a (prompt, continuation) pair, e.g. lm-eval's
    ``loglikelihood`` of ``(render_prompt(...).text, " " + verbalizer)``. Arguments as :func:`label_probs`.

    Returns:
        Array of shape (len(texts), n_classes), float64, each entry <= 0.
    """
    texts = check_text_list(texts, allow_blank=True)
    verbalizers = verbalizer_ids(task, tokenizer)
    prompts = _prompt_ids(model, tokenizer, task, texts, demos)
    loglik, _ = _score_prompts(model, tokenizer, prompts, verbalizers, batch_size=batch_size, progress=progress)
    return loglik


def _softmax(loglik: np.ndarray) -> np.ndarray:
    z = loglik - loglik.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Dataset | Sequence[Example],
    *,
    task: Task | None = None,
    batch_size: int = 16,
    progress: bool = True,
    demos: Sequence[Example] | None = None,
) -> pd.DataFrame:
    """Score labelled examples: one row per example.

    Args:
        data: a `Dataset` (its task is used) or a sequence of `Example` with `task=` given.
        task: overrides the dataset's task (e.g. another instruction or `n_shot`).

    Returns:
        DataFrame with columns `id`, `label`, `pred`, `p_<label name>` (one per class, in label
        order), `label_mass` (probability the full vocabulary puts on the label verbalizers),
        `confidence` (max class probability), `correct`. `df.attrs["label_names"]` holds the names.

    Raises:
        InputTypeError: ``data`` is not a Dataset or a sequence of Example (plain strings: use
            :func:`label_probs` for unlabeled texts), ``task`` is not a Task.
        InputError (a ValueError): no examples, an example with empty or whitespace-only text, a
            label that is not a class id of the task, a prompt longer than the model's context.
    """
    if isinstance(data, Dataset):
        task = task or data.task
        examples: Sequence[Example] = data.examples
    else:
        examples = as_examples(data)
        if task is None:
            raise InputError("task is required when data is a list of examples")
    if not isinstance(task, Task):
        raise InputTypeError(f"task must be a toolkit.Task, got a {type(task).__name__} ({short_repr(task)})")
    if len(examples) == 0:
        raise InputError("no examples to score: the example list is empty")
    _check_examples(examples, task)
    batch_size = check_int(batch_size, "batch_size", 1)
    verbalizers = verbalizer_ids(task, tokenizer)
    prompts = _prompt_ids(model, tokenizer, task, [e.text for e in examples], demos)
    loglik, mass = _score_prompts(model, tokenizer, prompts, verbalizers, batch_size=batch_size, progress=progress)
    return prediction_frame(
        [e.id for e in examples], [e.label for e in examples], _softmax(loglik), task.label_names, mass, task=task.name
    )


def _check_examples(examples: Sequence[Example], task: Task) -> None:
    """Every example has words to score and a label that is a class id of ``task``."""
    for ex in examples:
        if not isinstance(ex.text, str) or not ex.text.strip():
            raise InputError(f"example {ex.id!r} has no text to score (text {short_repr(ex.text)}); "
                             "every example needs at least one word")
        if not is_int(ex.label) or not 0 <= ex.label < task.n_classes:
            classes = ", ".join(f"{c}={name}" for c, name in enumerate(task.label_names))
            raise InputError(f"example {ex.id!r} has label {ex.label!r}, not a class of task {task.name!r}; "
                             f"allowed: class ids 0..{task.n_classes - 1} ({classes})")


# --------------------------------------------------------------------------------------------------
# The prediction frame: built here, read through these accessors
# --------------------------------------------------------------------------------------------------
def prediction_frame(
    ids: Sequence[str],
    labels: Sequence[int],
    probs: np.ndarray | Sequence[Sequence[float]],
    label_names: Sequence[str],
    label_mass: np.ndarray | Sequence[float],
    task: str | None = None,
) -> pd.DataFrame:
    """The frame :func:`predict` returns, from its parts (e.g. a study's persisted record).

    Returns:
        DataFrame with columns `id`, `label`, `pred` (argmax of `probs`), `p_<label name>` (one per
        class, in label order), `label_mass`, `confidence` (max class probability), `correct`;
        `attrs["label_names"]` holds the names, `attrs["task"]` the task name when given.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    df = pd.DataFrame({"id": list(ids), "label": labels, "pred": pred})
    for c, name in enumerate(label_names):
        df[f"p_{name}"] = probs[:, c]
    df["label_mass"] = np.asarray(label_mass)
    df["confidence"] = probs.max(axis=1)
    df["correct"] = pred == labels
    df.attrs["label_names"] = tuple(label_names)
    if task is not None:
        df.attrs["task"] = task
    return df


def probability_columns(df: pd.DataFrame) -> list[str]:
    """The `p_<label>` columns of a prediction frame, in label order.

    The order is `df.attrs["label_names"]` when present, else the order of the `p_` columns.

    Raises:
        InputError: a label name without its column, or no `p_` column at all.
    """
    names = df.attrs.get("label_names")
    if names is not None:
        cols = [f"p_{name}" for name in names]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(
                f"attrs['label_names']={tuple(names)} but columns {missing} are missing; "
                f"probability columns present: {[c for c in df.columns if str(c).startswith('p_')]}"
            )
        return cols
    cols = [c for c in df.columns if str(c).startswith("p_")]
    if not cols:
        raise InputError(f"DataFrame has no 'p_<label>' probability columns; columns are {list(df.columns)}")
    return cols


def frame_probs(df: pd.DataFrame) -> np.ndarray:
    """The class-probability matrix (n, C) of a prediction frame, columns in label order."""
    return df[probability_columns(df)].to_numpy()


def frame_logprobs(df: pd.DataFrame) -> np.ndarray:
    """log p (n, C), probabilities clipped at `LOG_FLOOR` first: finite logits for temperature scaling.

    Log-probabilities are valid logits for the softmax over the labels (softmax is shift-invariant).
    """
    return np.log(np.clip(frame_probs(df), LOG_FLOOR, None))
