"""The architecture adapter table: where each architecture keeps what attention pruning touches.

Architecture differences are rows of data in `ADAPTERS` (a :class:`toolkit._core.registry.Registry`
keyed by the class name in ``config.architectures``: decoder layers, their attention sub-layers
and the norms that serve only the attention), not `if arch == ...` code. Everything that edits or
inspects layers (pruning, importance, attribution, efficiency) finds them through this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._core.registry import Registry
from .._core.validation import InputError, InputTypeError
from .pruned_arch import PrunedAttention

__all__ = [
    "DROPPED_MARK",
    "dropped_layers",
    "ADAPTERS",
    "Adapter",
    "adapter_for",
    "attention_modules",
    "attn_norm_names",
    "decoder_layers",
    "register_adapter",
]


@dataclass(frozen=True)
class Adapter:
    """Where one architecture keeps the parts that attention pruning touches.

    Attributes:
        layers: dotted path from the causal-LM module to the `ModuleList` of decoder layers.
        attention: attribute of a decoder layer that holds its self-attention module.
        attn_norm: attribute of a decoder layer holding the norm that feeds only the attention
            (pre-norm); removed together with the attention by `prune_attention`.
        post_attn_norms: norms applied only to the attention output (Gemma 2/3); they map zero to
            zero, so they are removed too.
        final_norm: dotted path to the final norm before the LM head.
        embed: dotted path to the token embedding.
        pre_norm_flag: config attribute that must be true for `attn_norm` to be a pre-attention norm
            (OPT-350m normalises after the residual add instead; then the norm stays).
        out_proj: attribute of the attention module holding its output projection (a Linear or
            GPT-2's Conv1D; its bias, where it has one, is part of it). Zeroing it is
            `toolkit.pruning.export.export_zeroed`'s standard-checkpoint drop; None: that export is refused.
    """

    layers: str
    attention: str
    attn_norm: str | None
    final_norm: str
    embed: str
    post_attn_norms: tuple[str, ...] = ()
    pre_norm_flag: str | None = None
    out_proj: str | None = None


_LLAMA_LIKE = Adapter(
    layers="model.layers",
    attention="self_attn",
    attn_norm="input_layernorm",
    final_norm="model.norm",
    embed="model.embed_tokens",
    out_proj="o_proj",
)
_GEMMA2_LIKE = Adapter(
    layers="model.layers",
    attention="self_attn",
    attn_norm="input_layernorm",
    post_attn_norms=("post_attention_layernorm",),
    final_norm="model.norm",
    embed="model.embed_tokens",
    out_proj="o_proj",
)

ADAPTERS: Registry[Adapter] = Registry("architecture", {
    "LlamaForCausalLM": _LLAMA_LIKE,
    "MistralForCausalLM": _LLAMA_LIKE,
    "Qwen2ForCausalLM": _LLAMA_LIKE,
    "Qwen3ForCausalLM": _LLAMA_LIKE,
    "GemmaForCausalLM": _LLAMA_LIKE,
    "Phi3ForCausalLM": _LLAMA_LIKE,
    "Gemma2ForCausalLM": _GEMMA2_LIKE,
    "Gemma3ForCausalLM": _GEMMA2_LIKE,
    "GPT2LMHeadModel": Adapter(
        layers="transformer.h", attention="attn", attn_norm="ln_1", final_norm="transformer.ln_f", embed="transformer.wte",
        out_proj="c_proj",
    ),
    # GPT-NeoX's `post_attention_layernorm` feeds the MLP, not the attention: it is not listed.
    "GPTNeoXForCausalLM": Adapter(
        layers="gpt_neox.layers",
        attention="attention",
        attn_norm="input_layernorm",
        final_norm="gpt_neox.final_layer_norm",
        embed="gpt_neox.embed_in",
        out_proj="dense",
    ),
    "OPTForCausalLM": Adapter(
        layers="model.decoder.layers",
        attention="self_attn",
        attn_norm="self_attn_layer_norm",
        final_norm="model.decoder.final_layer_norm",
        embed="model.decoder.embed_tokens",
        pre_norm_flag="do_layer_norm_before",
        out_proj="out_proj",
    ),
})


def register_adapter(architecture: str, adapter: Adapter, *, replace: bool = False) -> Adapter:
    """Teach the toolkit a new architecture (the class name in `config.architectures`); returns ``adapter``.

    An architecture already registered is refused (InputError) unless ``replace=True``.
    """
    if not isinstance(adapter, Adapter):
        raise InputTypeError(f"register_adapter needs an Adapter, got {type(adapter).__name__}")
    return ADAPTERS.register(architecture, adapter, replace=replace)


def _get(root: nn.Module, dotted: str) -> nn.Module:
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter row for `model`, or a ValueError naming the supported architectures."""
    name = type(model).__name__
    if name not in ADAPTERS:
        raise InputError(
            f"unsupported architecture {name!r}; supported: {sorted(ADAPTERS)} "
            "(add one with toolkit.models.adapters.register_adapter)"
        )
    return ADAPTERS.get(name)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's decoder layers, in order."""
    adapter = adapter_for(model)
    try:
        return _get(model, adapter.layers)
    except AttributeError as err:
        raise InputError(f"cannot find decoder layers at {adapter.layers!r} in {type(model).__name__}") from err


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Each decoder layer's self-attention module (or the module that replaced it after pruning)."""
    adapter = adapter_for(model)
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        if not hasattr(layer, adapter.attention):
            raise InputError(
                f"cannot find the attention module {adapter.attention!r} in layer {i} of {type(model).__name__}"
            )
        out.append(getattr(layer, adapter.attention))
    return out


def attn_norm_names(model: nn.Module) -> tuple[str, ...]:
    """Names (on a decoder layer) of the norms that only serve the attention sub-layer."""
    adapter = adapter_for(model)
    names: list[str] = []
    pre_norm = adapter.pre_norm_flag is None or bool(getattr(model.config, adapter.pre_norm_flag, True))
    if adapter.attn_norm and pre_norm:
        names.append(adapter.attn_norm)
    names.extend(adapter.post_attn_norms)
    return tuple(names)


# An attention dropped reversibly by `toolkit.pruning.attention.drop_attention` carries this attribute
# (its forward is shadowed); one pruned structurally is a `PrunedAttention`.
DROPPED_MARK = "_toolkit_dropped"


def dropped_layers(model: nn.Module) -> tuple[int, ...]:
    """Indices whose attention is currently dropped (reversibly) or pruned (structurally)."""
    return tuple(
        i
        for i, attn in enumerate(attention_modules(model))
        if isinstance(attn, PrunedAttention) or getattr(attn, DROPPED_MARK, False)
    )
