"""Dropping attention sub-layers: reversibly (for analysis) or structurally (to save compute).

A dropped attention sub-layer contributes nothing: the decoder layer computes
h = x + 0 (+ MLP as usual) instead of h = x + Attn(LN(x)). Its attention is not computed, its
pre-attention norm is skipped, and it keeps no KV cache (its cache slot becomes transformers'
`DummyLayer`, which is how transformers itself marks layers that store no KV).

Both routes edit stock transformers modules in place; nothing is forked and no remote code is
needed to load a pruned checkpoint back with `toolkit.load_model`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.cache_utils import DummyLayer

from .adapters import adapter_for, attention_modules, attn_norm_names, decoder_layers
from .validation import check_layers

__all__ = [
    "PRUNING_SPEC",
    "PrunedAttention",
    "checked_layers",
    "drop_attention",
    "dropped_layers",
    "load_pruned",
    "n_parameters",
    "prune_attention",
    "save_pruned",
]

_MARK = "_toolkit_dropped"
PRUNING_SPEC = "pruning.json"  # written by save_pruned, read back by load_model (via load_pruned)


def checked_layers(model: nn.Module, layers: Sequence[int]) -> tuple[int, ...]:
    """Layer indices of ``model``, validated and sorted: integers in [0, n_layers), no duplicates.

    Warns when every layer is listed (the model would keep no attention at all).
    """
    n = len(decoder_layers(model))
    out = check_layers(layers, n)
    if len(set(out)) != len(out):
        dupes = sorted({i for i in out if out.count(i) > 1})
        raise ValueError(f"duplicate layer indices {dupes} in {list(out)}")
    if out and len(out) == n:
        warnings.warn(f"dropping all {n} attention layers: the model becomes a bag of per-token MLPs", stacklevel=3)
    return tuple(sorted(out))


def _release_cache_slot(cache: Any, idx: int) -> None:
    """Mark cache slot `idx` as holding no KV, the way transformers marks KV-less layers."""
    if cache is None:
        return
    cache = getattr(cache, "self_attention_cache", cache)  # EncoderDecoderCache (GPT-2)
    layers = getattr(cache, "layers", None)
    if layers is None:
        return
    replicate = getattr(cache, "layer_class_to_replicate", None)
    while len(layers) < idx and replicate is not None:
        layers.append(replicate())
    if len(layers) == idx:
        layers.append(DummyLayer())
    elif idx < len(layers) and not isinstance(layers[idx], DummyLayer):
        layers[idx] = DummyLayer()


def _zero_attention(layer_idx: int, args: tuple, kwargs: dict) -> tuple[torch.Tensor, None]:
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    _release_cache_slot(kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("layer_past"))), layer_idx)
    # A broadcast view of one zero: no memory traffic, and `residual + out` is exactly `residual`.
    return hidden.new_zeros(()).expand_as(hidden), None


def _identity(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


class PrunedAttention(nn.Module):
    """Stands where a removed attention module was: no parameters, contributes zero, keeps no KV."""

    def __init__(self, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return _zero_attention(self.layer_idx, args, kwargs)

    def extra_repr(self) -> str:
        return f"layer_idx={self.layer_idx}"


def dropped_layers(model: nn.Module) -> tuple[int, ...]:
    """Indices whose attention is currently dropped (reversibly) or pruned (structurally)."""
    return tuple(
        i
        for i, attn in enumerate(attention_modules(model))
        if isinstance(attn, PrunedAttention) or getattr(attn, _MARK, False)
    )


def _patch(module: nn.Module, forward: Any) -> Any:
    """Shadow `module.forward` with an instance attribute; return the undo."""
    had = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    module.forward = forward
    setattr(module, _MARK, True)

    def undo() -> None:
        if had:
            module.forward = previous
        else:
            del module.forward
        delattr(module, _MARK)

    return undo


def _bypass_attention(model: nn.Module, layers: tuple[int, ...]) -> list:
    adapter = adapter_for(model)
    norms = attn_norm_names(model)
    undos = []
    try:
        for i in layers:
            layer = decoder_layers(model)[i]
            attn = getattr(layer, adapter.attention)
            if isinstance(attn, PrunedAttention) or getattr(attn, _MARK, False):
                continue  # already contributes nothing (pruned, or dropped by an outer context)

            def forward(*args: Any, _i: int = i, **kwargs: Any) -> tuple[torch.Tensor, None]:
                return _zero_attention(_i, args, kwargs)

            undos.append(_patch(attn, forward))
            for name in norms:
                norm = getattr(layer, name)
                if not getattr(norm, _MARK, False):
                    undos.append(_patch(norm, _identity))
    except BaseException:
        for undo in reversed(undos):
            undo()
        raise
    return undos


@contextmanager
def drop_attention(model: PreTrainedModel, layers: Sequence[int]) -> Iterator[PreTrainedModel]:
    """Inside the block, the listed layers' attention sub-layers contribute nothing and are not computed.

    Equivalent to zeroing each listed layer's attention output projection (tested to 1e-5), but
    cheaper: attention and its pre-norm are skipped and the layer keeps no KV cache. On exit,
    normally or through an exception, the model is exactly as before (logits bit-identical).
    Nesting is allowed; a layer dropped by an outer block stays dropped until that block exits.

    Args:
        model: a model with a registered adapter (`toolkit.ADAPTERS`).
        layers: decoder-layer indices, each in [0, n_layers), no duplicates; empty drops nothing.

    Example:
        >>> with drop_attention(model, [3, 7]):
        ...     df = predict(model, tokenizer, dataset)
    """
    undos = _bypass_attention(model, checked_layers(model, layers))
    try:
        yield model
    finally:
        for undo in reversed(undos):
            undo()


def prune_attention(model: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """Remove the listed layers' attention modules (and the norms that only feed them), in place.

    Parameter count and memory fall; the KV cache holds entries only for the kept attention layers
    (KV bytes are exactly kept/L of the original); `generate()` works as usual. The removed layers
    are recorded in `model.config.toolkit_pruned_attention` so `save_pruned` can write them out.

    Returns:
        The same model object, pruned.
    """
    layers = checked_layers(model, layers)
    adapter = adapter_for(model)
    norms = attn_norm_names(model)
    for i in layers:
        layer = decoder_layers(model)[i]
        if isinstance(getattr(layer, adapter.attention), PrunedAttention):
            continue
        if getattr(getattr(layer, adapter.attention), _MARK, False):
            raise RuntimeError(f"layer {i} is inside an active drop_attention block; prune outside it")
        setattr(layer, adapter.attention, PrunedAttention(i))
        for name in norms:
            setattr(layer, name, nn.Identity())
    done = sorted(set(getattr(model.config, "toolkit_pruned_attention", []) or []) | set(layers))
    model.config.toolkit_pruned_attention = done
    return model


def n_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        seen[id(p)] = p.numel()
    return sum(seen.values())


def save_pruned(model: PreTrainedModel, path: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write a pruned model as plain safetensors + config + `pruning.json`; reload with `load_model(path)`.

    The folder holds no code: `toolkit.load_model` rebuilds the stock architecture, removes the
    same attention modules and loads the saved weights (logits identical to the model saved here).
    """
    path = Path(path)
    layers = list(dropped_layers(model))
    if any(getattr(attn, _MARK, False) for attn in attention_modules(model)):
        raise RuntimeError("save_pruned called inside drop_attention; use prune_attention to make the drop permanent")
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    spec = {
        "format": "toolkit-pruned-attention/1",
        "architecture": type(model).__name__,
        "pruned_attention_layers": layers,
        "n_layers": len(decoder_layers(model)),
        "n_parameters": n_parameters(model),
        "note": "load with toolkit.load_model(path); plain transformers would re-create the removed attention randomly",
    }
    (path / PRUNING_SPEC).write_text(json.dumps(spec, indent=1))
    return path


def load_pruned(
    path: str | os.PathLike, *, dtype: torch.dtype | None = None, device_map: Any = None
) -> PreTrainedModel:
    """Load a folder written by `save_pruned` (used by `load_model`)."""
    path = Path(path)
    spec = json.loads((path / PRUNING_SPEC).read_text())
    if spec.get("format") != "toolkit-pruned-attention/1":
        raise ValueError(f"{path / PRUNING_SPEC} is not a toolkit pruning spec (format {spec.get('format')!r})")
    # The removed attention weights are absent from the checkpoint: transformers initialises them,
    # then prune_attention drops them again. Silence its "newly initialized" report for those keys.
    tf_logger = logging.getLogger("transformers.modeling_utils")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, device_map=device_map, attn_implementation="eager", use_safetensors=True
        )
    finally:
        tf_logger.setLevel(level)
    return prune_attention(model, spec["pruned_attention_layers"])
