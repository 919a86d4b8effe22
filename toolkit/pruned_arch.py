"""The structurally pruned architecture, standalone: what a removed attention sub-layer becomes.

This module imports only torch and transformers (never the toolkit), because `save_pruned` copies
it verbatim into every structural checkpoint as ``modeling_toolkit_pruned.py``. There it is the
opt-in class that plain transformers runs only with ``trust_remote_code=True``:

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)   # == toolkit.load_model(folder)

Such a folder's config.json has a ``model_type`` of its own (``toolkit_pruned_<stock type>``, unknown
to transformers) and an ``auto_map`` naming the classes below, so plain ``from_pretrained`` without
``trust_remote_code`` fails (transformers asks for ``trust_remote_code=True``) instead of silently
re-creating the removed attention with random weights. The toolkit itself loads the folder with the
stock classes (`toolkit.pruning.load_pruned`) and runs no code from the folder.

For each stock causal-LM class in `ARCHITECTURES` this module defines ``Pruned<Class>`` and
``Pruned<ConfigClass>``: the stock classes, whose ``__init__`` removes the attention modules (and the
norms that only feed them) of the layers listed in ``config.toolkit_pruned_attention``, at the
places the config's ``toolkit_layers`` / ``toolkit_attention`` / ``toolkit_attn_norms`` name (the
toolkit's adapter row, written by `save_pruned`).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch import nn
from transformers.cache_utils import DummyLayer

__all__ = ["ARCHITECTURES", "MODEL_TYPE_PREFIX", "PrunedAttention", "pruned_class_names", "remove_attention"]

MODEL_TYPE_PREFIX = "toolkit_pruned_"  # + the stock model_type: a model_type transformers does not know

# Stock causal-LM classes with an opt-in pruned class here (the toolkit's adapter table; a class that
# an older transformers lacks is skipped).
ARCHITECTURES: tuple[str, ...] = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "GemmaForCausalLM",
    "Phi3ForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "GPT2LMHeadModel",
    "GPTNeoXForCausalLM",
    "OPTForCausalLM",
)


def release_cache_slot(cache: Any, idx: int) -> None:
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


def zero_attention(layer_idx: int, args: tuple, kwargs: dict) -> tuple[torch.Tensor, None]:
    """What a dropped attention sub-layer returns: zeros shaped like its input, and no attention weights."""
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    release_cache_slot(kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("layer_past"))), layer_idx)
    # A broadcast view of one zero: no memory traffic, and `residual + out` is exactly `residual`.
    return hidden.new_zeros(()).expand_as(hidden), None


class PrunedAttention(nn.Module):
    """Stands where a removed attention module was: no parameters, contributes zero, keeps no KV."""

    def __init__(self, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return zero_attention(self.layer_idx, args, kwargs)

    def extra_repr(self) -> str:
        return f"layer_idx={self.layer_idx}"


def remove_attention(
    model: nn.Module, layers: Any, *, layers_path: str, attention: str, norms: tuple[str, ...] | list[str]
) -> None:
    """Replace the listed layers' attention by `PrunedAttention` and their attention-only norms by identities.

    Args:
        layers: decoder-layer indices.
        layers_path: dotted path from the causal-LM module to its decoder layers.
        attention: attribute of a decoder layer holding its attention module.
        norms: attributes of a decoder layer holding norms that serve only the attention.
    """
    decoder = model
    for part in layers_path.split("."):
        decoder = getattr(decoder, part)
    for i in layers:
        layer = decoder[i]
        if isinstance(getattr(layer, attention), PrunedAttention):
            continue
        setattr(layer, attention, PrunedAttention(i))
        for name in norms:
            setattr(layer, name, nn.Identity())


def pruned_class_names(architecture: str) -> tuple[str, str] | None:
    """``(config class, model class)`` names defined here for a stock class name, or None if there is none."""
    stock = getattr(transformers, architecture, None)
    if architecture not in ARCHITECTURES or stock is None:
        return None
    return f"Pruned{stock.config_class.__name__}", f"Pruned{architecture}"


def _inherit_weight_renaming(architecture: str, model_type: str, name: str) -> None:
    """Give ``name`` the stock class's checkpoint key renaming (GPT-NeoX stores ``lm_head`` as ``embed_out``).

    transformers applies no renaming to a class from a checkpoint's own code unless it is registered.
    """
    try:
        from transformers.conversion_mapping import (
            get_checkpoint_conversion_mapping,
            register_checkpoint_conversion_mapping,
        )
    except ImportError:  # a transformers without conversion mappings renames nothing
        return
    mapping = get_checkpoint_conversion_mapping(architecture) or get_checkpoint_conversion_mapping(model_type)
    if mapping:
        register_checkpoint_conversion_mapping(name, mapping, overwrite=True)


def _define(architecture: str) -> None:
    stock = getattr(transformers, architecture, None)
    if stock is None:
        return
    config_name, model_name = pruned_class_names(architecture)
    config_cls = type(config_name, (stock.config_class,), {"model_type": MODEL_TYPE_PREFIX + stock.config_class.model_type})

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        # Registered when the class is built (by from_pretrained), not at import: importing changes nothing.
        _inherit_weight_renaming(architecture, stock.config_class.model_type, model_name)
        stock.__init__(self, config, *args, **kwargs)
        remove_attention(
            self,
            list(getattr(config, "toolkit_pruned_attention", None) or []),
            layers_path=config.toolkit_layers,
            attention=config.toolkit_attention,
            norms=tuple(config.toolkit_attn_norms),
        )

    model_cls = type(model_name, (stock,), {"config_class": config_cls, "__init__": __init__})
    config_cls.__module__ = model_cls.__module__ = __name__
    globals()[config_name] = config_cls
    globals()[model_name] = model_cls


for _architecture in ARCHITECTURES:
    _define(_architecture)
