"""Attention-layer importance scores and layer selection.

Similarity metrics follow LLM-Drop (He et al. 2024, "What Matters in Transformers? Not All
Attention is Needed", https://arxiv.org/abs/2406.15786): with X the residual stream entering a
layer and Y = X + Attn(LN(X)) the stream after the attention sub-layer,

    cosine(l)          = 1 - mean_t cos(X_t, Y_t)
    angular(l)         = mean_t arccos(cos(X_t, Y_t)) / pi                (Gromov et al. 2024)
    block_influence(l) = 1 - mean_t cos(X_t, Block(X)_t)                  (ShortGPT, Men et al. 2024)

averaged over all non-padding tokens t of all texts. A low score means the sub-layer barely
changes the stream, so it is the first to drop. All three come from one forward pass per batch:
hooks add per-layer running sums, nothing keeps activations.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models.adapters import adapter_for, decoder_layers
from ..metrics.registry import Metric, family_metric, metric_names, register_metric
from ..data.prompts import context_length, encode_text
from .attention import checked_layers, drop_attention
from ..models.scoring import encode_prompts, label_probs
from .._core.validation import InputError, InputTypeError, check_int, check_text_list, is_int, short_repr

__all__ = [
    "ImportanceInputs",
    "angular_distance",
    "attention_importance",
    "choose_layers",
    "cosine_importance",
    "importance_metric",
    "select_layers",
    "token_cosine",
]

SELECTION_STRATEGIES = ("one_shot", "iterative")
COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity's eps: a zero vector has cosine 0


def _as_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.ndim < 1 or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise InputError(f"{name} has shape {tuple(t.shape)} and dtype {t.dtype}; expected a float array [..., d]")
    return t.float()


def token_cosine(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    """cos(x_t, y_t) for every token t, over the last (feature) axis, in float32.

    cos(x, y) = x . y / max(|x| |y|, eps), eps = 1e-8 (``torch.nn.functional.cosine_similarity``).

    Args:
        x, y: residual streams of the same shape ``[..., tokens, d]``.

    Returns:
        A float32 tensor of shape ``[..., tokens]``.
    """
    xt, yt = _as_tensor(x, "x"), _as_tensor(y, "y")
    if xt.shape != yt.shape:
        raise InputError(f"x has shape {tuple(xt.shape)} but y has {tuple(yt.shape)}; expected the same shape")
    return torch.nn.functional.cosine_similarity(xt, yt, dim=-1, eps=COSINE_EPS)


def _token_angle(cos: torch.Tensor) -> torch.Tensor:
    """arccos of a cosine, clamped to [-1, 1] first (float32 rounding can give 1 + 1e-7)."""
    return torch.arccos(cos.clamp(-1, 1))


def cosine_importance(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """LLM-Drop importance of one attention sub-layer: 1 - mean_t cos(X_t, Y_t).

    X = the residual stream entering the layer, Y = X + Attn(LN(X)) the stream after the attention
    sub-layer (He et al. 2024, https://arxiv.org/abs/2406.15786). :func:`attention_importance`
    ("cosine") computes the same per-token cosines (:func:`token_cosine`) inside its hooks and
    averages them over all non-padding tokens of all texts.

    Args:
        x, y: ``[tokens, d]`` (or ``[..., tokens, d]``; every token counts once).

    Returns:
        The score as a float in [0, 2].
    """
    return float(1.0 - token_cosine(x, y).double().mean())


def angular_distance(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Angular distance between the streams before and after a sub-layer: mean_t arccos(cos(X_t, Y_t)) / pi.

    Gromov et al. 2024 (https://arxiv.org/abs/2403.17887), per token then averaged, as
    :func:`attention_importance` ("angular") computes it. Arguments as :func:`cosine_importance`.

    Returns:
        The score as a float in [0, 1].
    """
    return float(_token_angle(token_cosine(x, y)).double().mean() / np.pi)


@torch.no_grad()
def _similarity_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    token_ids: list[list[int]],
    *,
    batch_size: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Per-layer cosine / angular / block-influence scores from one forward pass per batch."""
    adapter = adapter_for(model)
    layers = decoder_layers(model)
    n = len(layers)
    device = next(model.parameters()).device
    sums = {k: torch.zeros(n, dtype=torch.float64) for k in ("cos", "ang", "block")}
    count = torch.zeros((), dtype=torch.float64)
    state: dict[str, torch.Tensor] = {}
    x_in: dict[int, torch.Tensor] = {}

    def cos_to_x(i: int, y: torch.Tensor) -> torch.Tensor:
        return token_cosine(x_in[i], y)

    def pre_layer(i: int):
        def hook(module, args, kwargs):
            x_in[i] = kwargs.get("hidden_states", args[0] if args else None)

        return hook

    def post_attn(i: int):
        def hook(module, args, output):
            a = output[0] if isinstance(output, tuple) else output
            for name in adapter.post_attn_norms:  # Gemma 2/3 normalise the attention output
                a = getattr(layers[i], name)(a)
            c = cos_to_x(i, x_in[i].float() + a.float())
            m = state["mask"]
            sums["cos"][i] += (c * m).sum().double().cpu()
            sums["ang"][i] += (_token_angle(c) * m).sum().double().cpu()

        return hook

    def post_layer(i: int):
        def hook(module, args, kwargs, output):
            y = output[0] if isinstance(output, tuple) else output
            sums["block"][i] += (cos_to_x(i, y) * state["mask"]).sum().double().cpu()
            del x_in[i]

        return hook

    handles = []
    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(pre_layer(i), with_kwargs=True))
            handles.append(getattr(layer, adapter.attention).register_forward_hook(post_attn(i)))
            handles.append(layer.register_forward_hook(post_layer(i), with_kwargs=True))
        for start in tqdm(range(0, len(token_ids), batch_size), desc="importance", disable=not progress, leave=False):
            enc = encode_prompts(tokenizer, token_ids[start : start + batch_size], device)
            state["mask"] = enc["attention_mask"].float()
            count += enc["attention_mask"].sum().double().cpu()
            # Only the residual stream is needed: run the base model, skip the LM head.
            model.get_decoder()(**enc, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        x_in.clear()
    return {
        "cosine": (1 - sums["cos"] / count).numpy(),
        "angular": (sums["ang"] / count / np.pi).numpy(),
        "block_influence": (1 - sums["block"] / count).numpy(),
    }


@torch.no_grad()
def _lm_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, token_ids: list[list[int]], batch_size: int
) -> float:
    """Mean next-token cross-entropy (nats) over all non-padding target tokens."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(token_ids), batch_size):
        enc = encode_prompts(tokenizer, token_ids[start : start + batch_size], device)
        logits = model(**enc, use_cache=False).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        mask = enc["attention_mask"][:, 1:] * enc["attention_mask"][:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        total += float((nll * mask).sum())
        count += int(mask.sum())
    if count == 0:
        raise InputError("the texts hold no next-token targets (each is at most one token long)")
    return total / count


def _label_loss(model, tokenizer, task, texts, labels, batch_size) -> float:
    """Mean negative log-probability of the true label (restricted to the verbalizers)."""
    probs = label_probs(model, tokenizer, task, texts, batch_size=batch_size)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def _encoded_texts(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int | None
) -> list[list[int]]:
    """Each text's token ids (:func:`toolkit.data.prompts.encode_text`), checked against the length policy.

    An int ``max_length`` cuts longer texts to it, with a warning counting the cut. Then a text
    (as cut) longer than the model's context is an error, as a prompt is in :func:`toolkit.predict`.
    """
    if max_length is not None and (not is_int(max_length) or max_length < 1):
        raise InputError(
            f"max_length={max_length!r} is invalid; expected an integer >= 1 (tokens kept per text) or None "
            "(whole texts, none longer than the model's context)"
        )
    ids = [encode_text(tokenizer, t) for t in texts]
    for i, row in enumerate(ids):
        if not row:
            raise InputError(f"texts[{i}] ({short_repr(texts[i])}) encodes to no tokens")
    kept = ids if max_length is None else [row[:max_length] for row in ids]
    context = context_length(model)
    for i, row in enumerate(kept):
        if context is not None and len(row) > context:
            cut_to = "" if max_length is None else f" (cut to max_length={max_length})"
            raise InputError(
                f"texts[{i}] ({short_repr(texts[i], 40)}) is {len(row)} tokens{cut_to}, longer than the model's "
                f"context of {context} tokens; shorten it, or pass max_length=<n <= {context}> to cut every text "
                "to n tokens"
            )
    cut = [len(row) - len(short) for row, short in zip(ids, kept) if len(row) > len(short)]
    if cut:
        warnings.warn(
            f"attention_importance: max_length={max_length} dropped {sum(cut)} tokens from {len(cut)} of "
            f"{len(ids)} texts (the longest lost {max(cut)}); scores describe the first {max_length} tokens "
            "of those texts",
            UserWarning,
            stacklevel=3,
        )
    return kept


def attention_importance(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    metric: str = "cosine",
    batch_size: int = 8,
    max_length: int | None = None,
    task=None,
    labels: Sequence[int] | None = None,
    exclude: Sequence[int] = (),
    seed: int = 0,
    progress: bool = False,
) -> pd.Series:
    """Importance of each decoder layer's attention sub-layer (low = safest to drop).

    Metrics: `cosine`, `angular`, `block_influence` (see the module docstring; one forward pass per
    batch, float32, padding masked), `loss_delta` (task-aware: the loss with that one attention
    sub-layer skipped minus the loss of the model as it is: the true label's negative log-probability
    when `task` and `labels` are given, else the texts' next-token cross-entropy; one pass per layer),
    and `random` (seeded uniform scores, a control).

    Length policy (the same as :func:`toolkit.predict` and :func:`toolkit.attribute`: nothing is
    cut silently): by default a text longer than the model's context is an error naming it;
    ``max_length=n`` cuts every text to its first n tokens and warns (``UserWarning``) how many
    tokens were dropped from how many texts (a text still longer than the context is an error,
    before any warning). With a task, `loss_delta` scores whole prompts, which
    :func:`toolkit.predict`'s policy covers (``max_length`` does not apply).

    Args:
        texts: the texts to measure on (for `loss_delta` with a task: the example texts); each
            needs at least one non-space character.
        metric: a registered importance metric (:func:`toolkit.metrics.registry.list_metrics` ``("importance")``).
        max_length: None (default: whole texts, at most the model's context) or the number of
            tokens (>= 1) to keep of each text, the tokenizer's BOS included.
        labels: with `task`, the class id of each text, in ``range(task.n_classes)``.
        exclude: layers already dropped; they get NaN and are never selected.

    Returns:
        `pandas.Series` indexed by layer (name `metric`), one score per decoder layer.

    Raises:
        InputError (a ValueError): an unknown metric, an empty or blank text, a text longer than
            the context (without ``max_length``), a bad ``max_length``, ``batch_size`` or label.
    """
    entry = importance_metric(metric)
    texts = check_text_list(texts)
    batch_size = check_int(batch_size, "batch_size", 1)
    n = len(decoder_layers(model))
    exclude = set(checked_layers(model, exclude)) if exclude else set()
    inputs = ImportanceInputs(model=model, tokenizer=tokenizer, texts=texts, batch_size=batch_size,
                              max_length=max_length, task=task, labels=labels, exclude=frozenset(exclude), seed=seed,
                              progress=progress)
    scores = np.asarray(entry.fn(inputs), dtype=np.float64)
    if scores.shape != (n,):
        raise InputError(f"importance metric {metric!r} returned {scores.shape[0] if scores.ndim else 'a scalar'} "
                         f"scores for a model of {n} layers; expected one per layer")
    for i in exclude:
        scores[i] = np.nan
    return pd.Series(scores, index=pd.RangeIndex(n, name="layer"), name=metric)


@dataclass(frozen=True)
class ImportanceInputs:
    """What an importance metric's function receives (``fn(inputs)`` -> one score per decoder layer).

    Attributes:
        model, tokenizer: the model as it is (with ``exclude`` already dropped by the caller, if any).
        texts: the checked texts.
        batch_size: texts per forward pass.
        max_length: tokens kept per text, or None (see :func:`attention_importance`).
        task, labels: labelled examples (both or neither), for task-aware metrics.
        exclude: layers already dropped: they get NaN whatever the metric returns for them.
        seed: for metrics that draw random numbers.
        progress: show a progress bar.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    texts: list[str]
    batch_size: int
    max_length: int | None = None
    task: Any = None
    labels: Sequence[int] | None = None
    exclude: frozenset[int] = frozenset()
    seed: int = 0
    progress: bool = False

    def token_ids(self) -> list[list[int]]:
        """Each text's token ids under the length policy of :func:`attention_importance`."""
        return _encoded_texts(self.model, self.tokenizer, self.texts, self.max_length)


def _similarity(name: str):
    def metric(inputs: ImportanceInputs) -> np.ndarray:
        ids = inputs.token_ids()
        return _similarity_scores(inputs.model, inputs.tokenizer, ids, batch_size=inputs.batch_size,
                                  progress=inputs.progress)[name]

    metric.__name__ = f"{name}_importance_scores"
    return metric


def _loss_delta(inputs: ImportanceInputs) -> np.ndarray:
    """Loss with one attention sub-layer skipped minus the loss as it is (label NLL with a task, else LM loss)."""
    model, tokenizer, task, labels, texts = inputs.model, inputs.tokenizer, inputs.task, inputs.labels, inputs.texts
    if (task is None) != (labels is None):
        raise InputError("loss_delta needs both task= and labels= (or neither, for the LM loss on texts)")
    if labels is not None:
        labels = _checked_labels(labels, task, len(texts))
    ids = inputs.token_ids() if task is None else None

    def loss() -> float:
        if task is None:
            return _lm_loss(model, tokenizer, ids, inputs.batch_size)
        return _label_loss(model, tokenizer, task, texts, labels, inputs.batch_size)

    n = len(decoder_layers(model))
    base = loss()
    scores = np.full(n, np.nan)
    for i in tqdm(range(n), desc="loss_delta", disable=not inputs.progress, leave=False):
        if i in inputs.exclude:
            continue
        with drop_attention(model, [i]):
            scores[i] = loss() - base
    return scores


def _random(inputs: ImportanceInputs) -> np.ndarray:
    return np.random.default_rng(inputs.seed).random(len(decoder_layers(inputs.model)))


# The importance family of the metric registry: the study's selections and `attention_importance`'s
# metrics, in this order. A new importance metric is one entry here (or a register_metric call anywhere).
register_metric(Metric("cosine", _similarity("cosine"), "importance", label="cosine (1 - cos(X, X + Attn))"))
register_metric(Metric("angular", _similarity("angular"), "importance", label="angular distance"))
register_metric(Metric("block_influence", _similarity("block_influence"), "importance", label="block influence"))
register_metric(Metric("loss_delta", _loss_delta, "importance", label="loss increase", needs={"labels"}))
register_metric(Metric("random", _random, "importance", label="random (control)", control=True))


def importance_metric(name: str) -> Metric:
    """The registered importance metric ``name``.

    Raises:
        InputError: not a registered importance metric; the message lists those that are.
    """
    return family_metric(name, "importance", "importance metric")



def _checked_labels(labels: Sequence[int], task, n_texts: int) -> np.ndarray:
    """``labels`` as an int array, one class id of ``task`` per text."""
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise InputTypeError(f"labels must be a sequence of class ids, got {type(labels).__name__}")
    if len(labels) != n_texts:
        raise InputError(f"labels has {len(labels)} entries but texts has {n_texts}")
    n_classes = len(task.label_names)
    for i, label in enumerate(labels):
        if not is_int(label) or not 0 <= label < n_classes:
            raise InputError(
                f"labels[{i}] is {label!r}, not a class of task {task.name!r}; allowed: class ids 0..{n_classes - 1} "
                f"({', '.join(f'{c}={name}' for c, name in enumerate(task.label_names))})"
            )
    return np.asarray(labels, dtype=np.int64)


def select_layers(importance: pd.Series, k: int) -> list[int]:
    """The `k` layers with the lowest importance (NaN never chosen), in ascending layer order.

    Args:
        importance: a ``pandas.Series`` indexed by layer, as :func:`attention_importance` returns.
    """
    if not isinstance(importance, pd.Series):
        raise InputTypeError(
            f"importance must be a pandas Series indexed by layer (what attention_importance returns), got a "
            f"{type(importance).__name__}; wrap plain scores as pd.Series(scores) (index = layer)"
        )
    valid = importance.dropna()
    if not is_int(k) or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k!r}")
    if k > len(valid):
        raise InputError(f"k={k} is larger than the {len(valid)} layers that can be selected")
    # Stable: ties broken by layer index.
    order = valid.sort_values(kind="stable").index[:k]
    return sorted(int(i) for i in order)


def choose_layers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    k: int,
    *,
    metric: str = "cosine",
    strategy: str = "one_shot",
    **importance_options,
) -> list[int]:
    """Pick `k` attention layers to drop, one-shot or iteratively (LLM-Drop offers both).

    `one_shot` ranks once and takes the `k` least important; `iterative` drops the least important
    layer, recomputes importance on the pruned model, and repeats `k` times.
    `importance_options` are passed to `attention_importance` (its keyword arguments only).
    """
    if strategy not in SELECTION_STRATEGIES:
        raise InputError(f"unknown selection strategy {strategy!r}; expected one of {list(SELECTION_STRATEGIES)}")
    n = len(decoder_layers(model))
    check_int(k, "k", 0, n)
    if strategy == "one_shot" or importance_metric(metric).control or k == 0:
        scores = attention_importance(model, tokenizer, texts, metric=metric, **importance_options)
        return select_layers(scores, k)
    chosen: list[int] = []
    for _ in range(k):
        with drop_attention(model, chosen):
            scores = attention_importance(model, tokenizer, texts, metric=metric, exclude=chosen, **importance_options)
        chosen = sorted(chosen + select_layers(scores, 1))
    return chosen
