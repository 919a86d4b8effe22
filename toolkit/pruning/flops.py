"""Analytical FLOPs of a forward call, and what dropping attention layers saves of them.

FLOPs here are the FLOPs of the matrix multiplications of one forward call, a multiply-add
counted as 2 FLOPs (the convention of `torch.utils.flop_counter.FlopCounterMode`, Kaplan et al.
2020 "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361, Table 1).
For a call with B rows, q new tokens, p tokens already in the KV cache, per decoder layer
(h = hidden size, H_q / H_kv query / key-value heads of size d_h, I = MLP width, m = 3 MLP
matrices for gated MLPs (Llama family), 2 otherwise):

    attention_proj   = 2 B q h (H_q d_h + 2 H_kv d_h) + 2 B q H_q d_h h      (q, k, v; o)
    attention_scores = 2 B H_q q (p + q) d_h  (Q K^T)  +  2 B H_q q (p + q) d_h  (A V)
    mlp              = m * 2 B q h I
    lm_head          = 2 B n_logits h V          (n_logits = q, or `logits_to_keep`)

`attention_scores` counts the full q x (p + q) score matrix because eager attention computes
it and only then adds the causal mask (the masked half is computed and thrown away); a causal
kernel would do about half of the prefill part. Element-wise work (softmax, norms, rotary,
residual adds) is not counted: it is a small share of the FLOPs but a larger share of the time
on a CPU, one reason why measured savings can exceed FLOP-ideal ones.

Dropping the attention of a layer removes its `attention_proj` and `attention_scores`, so the
FLOP-ideal saving of dropping layers S is  sum_{l in S} attn_l / total.

:mod:`toolkit.pruning.efficiency` re-exports the public functions and adds bytes and measured latency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from ..models.adapters import dropped_layers
from .._core.validation import InputError, InputTypeError, check_int, check_layers

__all__ = [
    "FLOP_PARTS",
    "MLP_SHAPES",
    "attention_flop_share",
    "decode_flops",
    "flop_ideal_saving",
    "flops_per_token",
    "forward_flops",
    "layer_set",
]

# MLP shape per `config.model_type`: (number of h x I matrices, config attribute holding I).
# Gated MLPs (gate, up, down; Phi-3 fuses gate and up into one 2I-wide matrix) have 3.
MLP_SHAPES: dict[str, tuple[int, str]] = {
    "llama": (3, "intermediate_size"),
    "mistral": (3, "intermediate_size"),
    "qwen2": (3, "intermediate_size"),
    "qwen3": (3, "intermediate_size"),
    "gemma": (3, "intermediate_size"),
    "gemma2": (3, "intermediate_size"),
    "gemma3": (3, "intermediate_size"),
    "gemma3_text": (3, "intermediate_size"),
    "phi3": (3, "intermediate_size"),
    "gpt2": (2, "n_inner"),  # None means 4 h
    "gpt_neox": (2, "intermediate_size"),
    "opt": (2, "ffn_dim"),
}

FLOP_PARTS = ("attention_proj", "attention_scores", "mlp", "lm_head")


@dataclass(frozen=True)
class _Dims:
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    mlp_matrices: int
    vocab: int


def _config_of(model: PreTrainedModel | PreTrainedConfig) -> PreTrainedConfig:
    config = model if isinstance(model, PreTrainedConfig) else getattr(model, "config", None)
    if not isinstance(config, PreTrainedConfig):
        raise InputTypeError(f"expected a transformers model or config, got {type(model).__name__}")
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _dims(config: PreTrainedConfig) -> _Dims:
    if config.model_type not in MLP_SHAPES:
        raise InputError(
            f"no FLOP formula for model_type {config.model_type!r}; supported: {sorted(MLP_SHAPES)}"
        )
    matrices, width_attr = MLP_SHAPES[config.model_type]
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    width = getattr(config, width_attr, None)
    return _Dims(
        n_layers=int(config.num_hidden_layers),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(config, "head_dim", None) or hidden // heads),
        intermediate=int(width if width is not None else 4 * hidden),
        mlp_matrices=matrices,
        vocab=int(config.vocab_size),
    )


def layer_set(layers: Iterable[int], n_layers: int, name: str = "layers_dropped") -> set[int]:
    """The checked layer indices (:func:`toolkit._core.validation.check_layers`) as a set."""
    return set(check_layers(layers, n_layers, name))


def forward_flops(
    model: PreTrainedModel | PreTrainedConfig,
    seq_len: int,
    *,
    batch: int = 1,
    past_len: int = 0,
    logits_to_keep: int = 0,
    layers_dropped: Sequence[int] = (),
) -> dict[str, int]:
    """Matrix-multiplication FLOPs of one eager forward call (formulas in the module docstring).

    Matches `torch.utils.flop_counter.FlopCounterMode` exactly for the supported architectures
    (tested on tiny models) when every layer attends to the whole cache; sliding-window layers
    (Gemma 2/3) whose cache holds fewer than `past_len` keys are over-counted in decoding.

    Args:
        model: a model (its attention already dropped or pruned is not counted) or a config.
        seq_len: q, the tokens fed in this call (the prompt for a prefill, 1 for a decode step).
        batch: B, rows in the batch.
        past_len: p, tokens already in the KV cache.
        logits_to_keep: as in transformers: 0 computes logits for all q positions, n > 0 for the
            last n (generation's prefill uses 1).
        layers_dropped: further layers whose attention is treated as dropped.

    Returns:
        `{"attention_proj", "attention_scores", "mlp", "lm_head", "total"}`, summed over layers and
        the batch, as Python ints.
    """
    config = _config_of(model)
    dims = _dims(config)
    q = check_int(seq_len, "seq_len", 1)
    b = check_int(batch, "batch", 1)
    p = check_int(past_len, "past_len", 0)
    keep = check_int(logits_to_keep, "logits_to_keep", 0)
    dropped = layer_set(layers_dropped, dims.n_layers)
    if isinstance(model, nn.Module):
        dropped |= set(dropped_layers(model))
    h, hq, hkv, dh = dims.hidden, dims.n_heads, dims.n_kv_heads, dims.head_dim
    kept = dims.n_layers - len(dropped)
    proj = 2 * b * q * h * (hq * dh + 2 * hkv * dh) + 2 * b * q * hq * dh * h
    scores = 2 * (2 * b * hq * q * (p + q) * dh)
    mlp = dims.mlp_matrices * 2 * b * q * h * dims.intermediate
    n_logits = q if keep == 0 else min(keep, q)
    out = {
        "attention_proj": kept * proj,
        "attention_scores": kept * scores,
        "mlp": dims.n_layers * mlp,
        "lm_head": 2 * b * n_logits * h * dims.vocab,
    }
    out["total"] = sum(out.values())
    return out


def flops_per_token(
    model: PreTrainedModel | PreTrainedConfig, seq_len: int, *, layers_dropped: Sequence[int] = ()
) -> float:
    """Prefill FLOPs per token: `forward_flops(model, seq_len)["total"] / seq_len` (logits everywhere)."""
    return forward_flops(model, seq_len, layers_dropped=layers_dropped)["total"] / seq_len


def flop_ideal_saving(
    model: PreTrainedModel | PreTrainedConfig,
    layers: Sequence[int],
    *,
    seq_len: int,
    batch: int = 1,
    past_len: int = 0,
    logits_to_keep: int = 0,
) -> float:
    """Share of one forward call's FLOPs removed by dropping `layers`' attention.

    saving = 1 - F(dropped = layers) / F(as is)  (F = `forward_flops` total, same arguments)

    Every term is linear in the batch size B, so B cancels; it is accepted for symmetry with
    `forward_flops`. Dropping disjoint sets adds up: saving(A | B) = saving(A) + saving(B).
    """
    kwargs = dict(batch=batch, past_len=past_len, logits_to_keep=logits_to_keep)
    full = forward_flops(model, seq_len, **kwargs)["total"]
    return 1.0 - forward_flops(model, seq_len, layers_dropped=layers, **kwargs)["total"] / full


def attention_flop_share(
    model: PreTrainedModel | PreTrainedConfig, seq_len: int, *, layers: Sequence[int] | None = None
) -> float:
    """Share of a length-`seq_len` prefill's FLOPs (logits everywhere) spent in attention.

    With `layers` given, only those layers' attention: the FLOP-ideal saving of dropping them.
    """
    n = _dims(_config_of(model)).n_layers
    return flop_ideal_saving(model, range(n) if layers is None else layers, seq_len=seq_len)


def decode_flops(model: PreTrainedModel | PreTrainedConfig, batch: int, prompt: int, steps: int,
                 layers: Sequence[int]) -> int:
    """FLOPs of `steps` greedy decode steps after a `prompt`-token prefill (step t sees prompt + t keys)."""
    return sum(
        forward_flops(model, 1, batch=batch, past_len=prompt + t, layers_dropped=layers)["total"] for t in range(steps)
    )
