"""The structurally pruned architecture, standalone: what a removed attention sub-layer becomes.

This module imports only torch and transformers (never the toolkit), because `save_pruned` copies
it verbatim into every structural checkpoint as ``modeling_toolkit_pruned.py``. There it is the
opt-in class that plain transformers runs only with ``trust_remote_code=True``:

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)   # == toolkit.load_model(folder)

Such a folder's config.json has a ``model_type`` of its own (``toolkit_pruned_<stock type>``, unknown
to transformers) and an ``auto_map`` naming the classes below, so plain ``from_pretrained`` without
``trust_remote_code`` fails (transformers asks for ``trust_remote_code=True``) instead of silently
re-creating the removed attention with random weights. The toolkit itself loads the folder with the
stock classes (`toolkit.pruning.attention.load_pruned`) and runs no code from the folder.

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

try:  # how transformers itself marks a cache slot that holds no KV (cache_utils, transformers >= 5.0)
    from transformers.cache_utils import CacheLayerMixin, DummyLayer
except ImportError as err:  # pragma: no cover - exercised only on an unsupported transformers
    raise ImportError(
        f"toolkit needs transformers >=5.24,<6 (tested: 5.24.0, 5.25.0); found {transformers.__version__}, whose "
        "cache_utils has no DummyLayer / CacheLayerMixin. Install the locked versions: pip install -r requirements/lock.txt"
    ) from err

__all__ = [
    "ARCHITECTURES", "MODEL_TYPE_PREFIX", "NoKVLayer", "PrunedAttention", "pruned_class_names", "remove_attention",
]

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


class NoKVLayer(DummyLayer, CacheLayerMixin):
    """The cache slot of a layer whose attention is removed: it stores no KV, yet answers for the sequence.

    transformers asks a cache's layers about the sequence as well as for their KV: the cache's length
    is layer 0's length (``Cache.get_seq_length()``; since transformers 5.25 with no fallback to another
    layer), and a mask's sizes come from the first layer of its kind (``get_mask_sizes``). A plain
    ``DummyLayer`` answers neither, so dropping attention layer 0 broke every cached forward there.
    This slot counts the tokens that pass the removed attention and answers exactly as the layer it
    replaces would have: a full-attention `DynamicLayer` (length = tokens seen, mask over them all) or a
    `DynamicSlidingWindowLayer` (the same window arithmetic), where it is asked. It is both of
    transformers' layer kinds: a ``DummyLayer``, so transformers keeps treating it as a slot without KV
    (``Cache.is_dummy``: skipped by offloading, early initialisation and the search for the first
    full-attention layer; reorder, batch repeat/select and offload have nothing to move), and a
    ``CacheLayerMixin`` (the cache API's base for a layer type), so ``Cache.get_mask_sizes`` asks it
    rather than refusing, as it refuses a plain ``DummyLayer`` where no attention layer is kept.

    Args:
        seen: tokens the slot has already passed (the replaced layer's length).
        sliding_window: the window of the replaced sliding-window layer; None for full attention.
    """

    def __init__(self, seen: int = 0, sliding_window: int | None = None):
        super().__init__()
        self.seen = int(seen)
        self.sliding_window = sliding_window
        # Never the layer a mask is read from: transformers picks the first `is_sliding` slot for the
        # sliding-window mask, and `Cache.get_mask_sizes` refuses a slot that is no `CacheLayerMixin`
        # at any index but 0 (at 0 it asks the first attention layer instead).
        self.is_sliding = False

    @classmethod
    def replacing(cls, layer: Any) -> NoKVLayer:
        """The slot that stands where `layer` (a cache layer, or None for a slot not yet created) was."""
        if layer is None:
            return cls()
        seen = layer.get_seq_length() if callable(getattr(layer, "get_seq_length", None)) else 0
        window = getattr(layer, "sliding_window", None) if getattr(layer, "is_sliding", False) else None
        return cls(seen=seen, sliding_window=window)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to allocate: the slot stores no KV."""

    def advance(self, tokens: int) -> None:
        """Count `tokens` new positions (one forward through the removed attention)."""
        self.seen += int(tokens)

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """``(kv_length, kv_offset)`` as `DynamicLayer` / `DynamicSlidingWindowLayer` compute them."""
        if self.sliding_window is None:
            return self.seen + query_length, 0
        offset = max(self.seen - self.sliding_window + 1, 0)
        if self.seen >= self.sliding_window:
            return self.sliding_window - 1 + query_length, offset
        return self.seen + query_length, offset

    def reset(self) -> None:
        self.seen = 0

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last ``-tokens_to_remove`` tokens (a negative count, as `DynamicLayer.crop` takes it)."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"crop takes a negative number of tokens to remove, got {tokens_to_remove} (as DynamicLayer.crop)"
            )
        self.seen = max(self.seen + tokens_to_remove, 0)

    def __repr__(self) -> str:
        window = "" if self.sliding_window is None else f", sliding_window={self.sliding_window}"
        return f"NoKVLayer(seen={self.seen}{window})"


def release_cache_slot(cache: Any, idx: int, new_tokens: int = 0) -> None:
    """Make cache slot `idx` a `NoKVLayer` (once) and count the `new_tokens` this forward passes through it."""
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
        layers.append(NoKVLayer())
    elif idx < len(layers) and not isinstance(layers[idx], NoKVLayer):
        layers[idx] = NoKVLayer.replacing(layers[idx])
    if idx < len(layers):
        layers[idx].advance(new_tokens)


def zero_attention(layer_idx: int, args: tuple, kwargs: dict) -> tuple[torch.Tensor, None]:
    """What a dropped attention sub-layer returns: zeros shaped like its input, and no attention weights."""
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    cache = kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("layer_past")))
    release_cache_slot(cache, layer_idx, new_tokens=hidden.shape[-2])
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
