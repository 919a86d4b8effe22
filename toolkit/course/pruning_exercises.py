"""Exercises of notebook 02 (pruning): a dropping hook, a paired bootstrap CI, attention's parameters."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from ..pruning.attention import drop_attention, n_parameters, prune_attention
from ..decisions.stats import paired_bootstrap
from .checking import Case, Exercise, Mismatch, exact_int, fields, floats, scalar, student_code

__all__ = [
    "CI_ATOL",
    "EXERCISES",
    "HOOK",
    "PAIRED_CI",
    "PARAMETERS",
    "REFERENCE_BOOT",
    "STUDENT_BOOT",
    "TINY",
    "cached_tiny_llama",
    "tiny_llama",
]

TINY = dict(
    vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)


def tiny_llama(seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A tiny randomly initialised Llama (eager attention, eval mode): milliseconds, no download."""
    torch.manual_seed(seed)
    config = LlamaConfig(**{**TINY, **overrides})
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


@functools.cache
def cached_tiny_llama() -> PreTrainedModel:
    """The tiny Llama of the hook exercise, built once; each case gets a deep copy of it, so a
    student's hook never reaches the cached model or the next case."""
    return tiny_llama()


def _ids(seed: int, batch: int, length: int) -> torch.Tensor:
    return torch.randint(3, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- drop_with_hook


def _hook_cases() -> list[Case]:
    model = cached_tiny_llama()
    return [
        Case(f"layer {layer}", (model, layer), {"input_ids": _ids(layer, batch, 7)},
             inputs=f"model=a tiny random LlamaForCausalLM (3 layers), layer={layer}, input_ids of shape ({batch}, 7)")
        for layer, batch in ((0, 1), (2, 2), (1, 2))
    ]


@torch.no_grad()
def _hook_reference(
    model: PreTrainedModel, layer: int, *, input_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    original = model(input_ids).logits
    with drop_attention(model, [layer]):
        dropped = model(input_ids).logits
    return dropped, original


@torch.no_grad()
def _hook_run(student: Any, model: PreTrainedModel, layer: int, *, input_ids: torch.Tensor) -> tuple[Any, Any]:
    handle = student(model, layer)
    if not callable(getattr(handle, "remove", None)):
        raise Mismatch(
            "expected the handle that register_forward_hook returns (it has .remove()), "
            f"received {type(handle).__name__}: {handle!r:.60}"
        )
    with student_code():
        hooked = model(input_ids).logits
    with student_code():
        handle.remove()
    restored = model(input_ids).logits
    return hooked, restored


# fp32: a zeroed attention output and a skipped sub-layer give the same residual stream; observed
# difference 0 (tests/test_pruning.py uses 1e-5 for the same comparison).
HOOK = Exercise(
    name="drop_with_hook",
    notebook="02_pruning",
    title="Drop one attention sub-layer with a removable forward hook",
    difficulty=2,
    importance=3,
    minutes=10,
    signature='''def drop_with_hook(model, layer):
    """Make attention sub-layer `layer` contribute nothing, reversibly, with a forward hook.

    The decoder layer computes h = x + Attn(LN(x)); a hook on `model.model.layers[layer].self_attn`
    that returns zeros for the attention output leaves h = x (+ the MLP as usual). LlamaAttention
    returns a tuple (attn_output, attn_weights): the hook returns (zeros_like(attn_output), attn_weights).

    Args:
        model: a LlamaForCausalLM.
        layer: the decoder-layer index.

    Returns:
        The handle of the registered hook; handle.remove() restores the model exactly.
    """''',
    hint=(
        'Use `register_forward_hook` on `model.model.layers[layer].self_attn`: the hook receives `(module, '
        'args, output)` and whatever it returns replaces the output. Keep the tuple shape `(attn_output, '
        'attn_weights)`, and return the handle `register_forward_hook` gives you.'
    ),
    cases=_hook_cases,
    reference=_hook_reference,
    run=_hook_run,
    compare=fields(
        ("logits with your hook (vs toolkit.drop_attention)", floats(atol=1e-5, what="logits")),
        ("logits after handle.remove() (vs the untouched model)", floats(what="logits")),
    ),
    compared_with="toolkit.drop_attention on the same tiny model",
    tolerance="abs tolerance 1e-5 with the hook (fp32; observed 0); exact after remove()",
)


# ----------------------------------------------------------------------------- paired bootstrap

REFERENCE_BOOT = 20_000
STUDENT_BOOT = 4_000
# Monte Carlo error: with n = 400 paired 0/1 outcomes the bootstrap quantiles of the difference
# move by one grid step (1/n = 0.0025) or two between seeds at B = 4000 (sd of a 2.5% quantile
# ~ 0.002 here); 0.01 is four grid steps. Resampling the arms independently widens the interval
# by 0.03-0.06 in every case below, and by 0.05 around the exact (0, 0) of identical arms.
CI_ATOL = 0.01


def _accuracy(correct: np.ndarray, *, weights: np.ndarray | None = None) -> Any:
    c = np.asarray(correct, dtype=np.float64)
    if weights is None:
        return float(c.mean())
    return (weights @ c) / weights.sum(axis=1)


def _ci_reference(correct_a: Any, correct_b: Any, n_boot: int, seed: int) -> tuple[float, float]:
    ci = paired_bootstrap(_accuracy, (np.asarray(correct_a),), (np.asarray(correct_b),), n_boot=REFERENCE_BOOT, seed=0)
    return ci.low, ci.high


def _paired_arms(n: int, acc: float, gain: int, loss: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = (rng.random(n) < acc).astype(np.int64)
    b = a.copy()
    wrong, right = np.flatnonzero(a == 0), np.flatnonzero(a == 1)
    b[rng.choice(wrong, gain, replace=False)] = 1
    b[rng.choice(right, loss, replace=False)] = 0
    return a, b


def _ci_cases() -> list[Case]:
    a1, b1 = _paired_arms(400, 0.75, 16, 8, 0)
    a2, b2 = _paired_arms(400, 0.6, 0, 12, 1)
    a3, _ = _paired_arms(400, 0.8, 0, 0, 2)
    return [
        Case("typical: n=400, b fixes 16 of a's errors and breaks 8", (a1, b1, STUDENT_BOOT, 1)),
        Case("b only loses (12 of 400 answers)", (a2, b2, STUDENT_BOOT, 2)),
        Case("identical arms: every paired resample has difference 0", (a3, a3.copy(), STUDENT_BOOT, 3)),
    ]


PAIRED_CI = Exercise(
    name="paired_accuracy_ci",
    notebook="02_pruning",
    title="A paired bootstrap CI of the accuracy change after pruning",
    difficulty=2,
    importance=3,
    minutes=10,
    signature='''def paired_accuracy_ci(correct_a, correct_b, n_boot, seed):
    """95% paired percentile bootstrap CI of the accuracy difference b - a.

    For b = 1..B draw n indices I_b with replacement (np.random.default_rng(seed)) and compute
    delta*_b = mean(correct_b[I_b]) - mean(correct_a[I_b]) with the SAME indices for both arms,
    because both models answered the same examples. CI = (2.5%, 97.5%) quantiles of delta*
    (np.quantile). Efron & Tibshirani 1993, ch. 13; Koehn 2004 (paired bootstrap in NLP).

    Args:
        correct_a: int array (n,), 1 where the unpruned model was right.
        correct_b: int array (n,), the pruned model on the same examples.
        n_boot: number of resamples B.
        seed: seed of the random generator.

    Returns:
        (low, high) as two floats.
    """''',
    hint=(
        'Pairing means ONE set of resampled indices per bootstrap round, used for both arrays (an example is '
        'drawn with both of its answers). Compute the difference of the two means per round, then the 2.5% '
        'and 97.5% quantiles (`np.quantile`).'
    ),
    cases=_ci_cases,
    reference=_ci_reference,
    compare=fields(("low", scalar(atol=CI_ATOL)), ("high", scalar(atol=CI_ATOL))),
    compared_with=f"toolkit.decisions.stats.paired_bootstrap (n_boot={REFERENCE_BOOT}, seed 0)",
    tolerance=(
        f"abs tolerance {CI_ATOL:g}: your resamples differ from the toolkit's, so the quantiles carry Monte "
        "Carlo error (about one step of 1/n = 0.0025 at B = 4000)"
    ),
)


# ----------------------------------------------------------------------------- attention parameters


def _params_reference(config: LlamaConfig) -> int:
    model = AutoModelForCausalLM.from_config(config)
    before = n_parameters(model)
    return before - n_parameters(prune_attention(model, [0]))


def _params_cases() -> list[Case]:
    small = dict(TINY, num_hidden_layers=2)  # two layers: pruning one is not "all of them"
    return [
        Case("grouped-query attention: 4 query heads, 2 key/value heads", (LlamaConfig(**small),)),
        Case("multi-head attention: as many key/value heads as query heads",
             (LlamaConfig(**{**small, "num_key_value_heads": 4}),)),
        Case("multi-query attention: one key/value head", (LlamaConfig(**{**small, "num_key_value_heads": 1}),)),
        Case("head_dim set explicitly (heads x head_dim != hidden_size)",
             (LlamaConfig(**{**small, "head_dim": 8}),)),
        Case("attention_bias=True (q, k, v, o have biases)", (LlamaConfig(**{**small, "attention_bias": True}),)),
        Case("SmolLM2-135M's shape (hidden 576, 9 query / 3 key-value heads)",
             (LlamaConfig(**{**small, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
                             "intermediate_size": 64, "vocab_size": 8}),)),
    ]


PARAMETERS = Exercise(
    name="attention_parameters",
    notebook="02_pruning",
    title="How many parameters does pruning one attention sub-layer remove?",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def attention_parameters(config):
    """Parameters that prune_attention removes from one decoder layer of a Llama-style model.

    The attention module: q_proj (hidden -> n_heads * head_dim), k_proj and v_proj
    (hidden -> n_kv_heads * head_dim), o_proj (n_heads * head_dim -> hidden), each with a bias
    vector when config.attention_bias is True; plus the pre-attention RMSNorm
    (input_layernorm, hidden_size weights), which feeds only the attention.
    head_dim = config.head_dim (hidden_size // num_attention_heads unless set).

    Args:
        config: a transformers LlamaConfig (hidden_size, num_attention_heads,
            num_key_value_heads, head_dim, attention_bias).

    Returns:
        The number of parameters, an int.
    """''',
    hint=(
        'A linear layer holds in_features x out_features weights (+ out_features biases). q and o use '
        '`num_attention_heads * head_dim`, k and v only `num_key_value_heads * head_dim`; read '
        '`config.head_dim` rather than dividing. The layer norm in front of the attention goes with it: '
        'count its weights too.'
    ),
    cases=_params_cases,
    reference=_params_reference,
    compare=exact_int(),
    compared_with="n_parameters before and after toolkit.prune_attention(model, [0])",
    tolerance="exact (an integer)",
)

EXERCISES = (HOOK, PAIRED_CI, PARAMETERS)
