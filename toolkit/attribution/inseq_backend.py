"""The inseq backend: every registered method through inseq, one example at a time.

inseq is imported when a wrapper is first built (:func:`inseq_model`), never when the toolkit is
imported. Building a wrapper also makes inseq's ``.show()`` work under IPython 9 (see
:func:`_shim_ipython_display`); nothing is patched at import.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models.adapters import decoder_layers
from ..models.adapters import dropped_layers
from .._core.validation import InputError
from .prepare import Item, check_eager
from .registry import ATTRIBUTION_METHODS, AttributionMethod

__all__ = [
    "inseq_accepted_kwargs",
    "inseq_model",
    "inseq_token_scores",
]


# Arguments of the captum/inseq `attribute` methods that inseq fills itself (or that make no sense
# here): never accepted from the user.
_RESERVED_KWARGS = frozenset(
    {
        "self",
        "method",  # consumed by inseq's own `attribute(method=...)`: captum's IG rule cannot be set through inseq
        "inputs",
        "baselines",
        "target",
        "additional_forward_args",
        "show_progress",
        "return_convergence_delta",
        "args",
        "kwargs",
        "encoder_self_attentions",
        "decoder_self_attentions",
        "cross_attentions",
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_zeroed_units_indices",
        "cross_zeroed_units_indices",
        "output_decoder_self_scores",
        "output_encoder_self_scores",
    }
)


class _WrapperCache(dict):
    """Per-model store of inseq wrappers; copies and pickles of the model start with an empty one."""

    def __deepcopy__(self, memo: dict) -> _WrapperCache:
        return _WrapperCache()

    def __copy__(self) -> _WrapperCache:
        return _WrapperCache()

    def __reduce__(self) -> tuple:
        return (_WrapperCache, ())


_CACHE_ATTR = "_toolkit_inseq_wrappers"


def inseq_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, method: str) -> Any:
    """The inseq wrapper of ``model`` for ``method``, built once and cached on the model.

    The wrapper calls the same module objects, so it sees ``drop_attention`` and
    ``prune_attention`` edits made later. Use it for inseq's own API, e.g.
    ``inseq_model(model, tok, "saliency").attribute(prompt, prompt + " positive").show()``.

    Building it has inseq's side effects: ``model.eval()``; ``tokenizer.truncation_side = "left"``;
    a missing ``tokenizer.unk_token_id`` / ``model.config.pad_token_id`` is set to the pad token.

    Args:
        method: a name from ``inseq.list_feature_attribution_methods()`` (registered names map to
            their ``inseq_name``).
    """
    import inseq

    _shim_ipython_display()  # inseq's .show() on this wrapper's outputs needs it under IPython 9
    name = ATTRIBUTION_METHODS.get(method).inseq_name if method in ATTRIBUTION_METHODS else method
    available = inseq.list_feature_attribution_methods()
    if name not in available:
        raise InputError(f"unknown inseq method {name!r}; inseq 0.7.1 offers {sorted(available)}")
    check_eager(model)
    cache = model.__dict__.get(_CACHE_ATTR)
    if not isinstance(cache, _WrapperCache):
        cache = _WrapperCache()
        object.__setattr__(model, _CACHE_ATTR, cache)
    hit = cache.get(name)
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    device = str(next(model.parameters()).device)
    wrapper = inseq.load_model(model, name, tokenizer=tokenizer, device=device)
    if name == "value_zeroing":
        _fix_value_zeroing(wrapper)
    cache[name] = (tokenizer, wrapper)
    return wrapper


def _fix_value_zeroing(wrapper: Any) -> None:
    """inseq 0.7.1's value zeroing expects decoder layers to return tuples; transformers 5 returns a tensor.

    Replaces, on this wrapper's method instance only, the hook that swaps in clean block outputs
    with one that accepts both forms.
    """
    vz = wrapper.attribution_method.method

    def get_states_extract_and_patch_hook(self: Any, block_idx: int, hidden_state_idx: int = 0) -> Callable:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            hidden = output[hidden_state_idx] if isinstance(output, tuple) else output
            self.corrupted_block_output_states[block_idx] = hidden.clone().float().detach().cpu()
            clean = self.clean_block_output_states[block_idx].to(hidden.device, hidden.dtype)
            if isinstance(output, tuple):
                return output[:hidden_state_idx] + (clean,) + output[hidden_state_idx + 1 :]
            return clean

        return hook

    vz.get_states_extract_and_patch_hook = types.MethodType(get_states_extract_and_patch_hook, vz)


def inseq_accepted_kwargs(wrapper: Any) -> list[str]:
    """The user-settable arguments of the inseq method's ``attribute``."""
    params = inspect.signature(wrapper.attribution_method.method.attribute).parameters
    return [p for p in params if p not in _RESERVED_KWARGS]


def _kept_layers(model: PreTrainedModel) -> list[int]:
    dropped = set(dropped_layers(model))
    return [i for i in range(len(decoder_layers(model))) if i not in dropped]


def inseq_token_scores(
    wrapper: Any, model: PreTrainedModel, item: Item, spec: AttributionMethod, method_kwargs: dict[str, Any], seed: int
) -> np.ndarray:
    """One example through inseq: per-token scores of the prompt tokens, reduced per ``spec.reduce``."""
    kwargs = dict(method_kwargs)
    kept = _kept_layers(model)
    if not kept and spec.reduce in ("mean", "mean_kept_layers"):
        raise InputError(f"method {spec.inseq_name!r} reads attention, but every layer's attention is dropped")
    if spec.inseq_name == "value_zeroing":
        # inseq finds the value vectors in each attention module's source; a dropped layer has none.
        chosen = kwargs.pop("decoder_zeroed_units_indices", None)
        if isinstance(chosen, dict):
            kwargs["decoder_zeroed_units_indices"] = {k: v for k, v in chosen.items() if k in kept}
        else:
            kwargs["decoder_zeroed_units_indices"] = {k: chosen for k in kept}
    # inseq drops pad-token positions from its token list but not from the score tensor; with no pad
    # token (a single unpadded example) tokens and rows stay aligned, which is checked below.
    pad_token = wrapper.pad_token
    wrapper.pad_token = None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = wrapper.attribute(
                item.encoded.prompt.text,
                item.encoded.prompt.text + item.target_text,
                attributed_fn="probability",
                show_progress=False,
                pretty_progress=False,
                **kwargs,
            )
    finally:
        wrapper.pad_token = pad_token
    seq = out.sequence_attributions[0]
    got = [t.id for t in seq.target]
    if got != list(item.ids) + [item.target_id]:
        raise RuntimeError(
            f"inseq tokenised example {item.example_id!r} differently from toolkit.data.prompts.encode_example: "
            f"{got} vs {list(item.ids) + [item.target_id]}. inseq adds the tokenizer's special tokens to the prompt "
            f"and needs the answer {item.target_text!r} to extend the prompt's tokens by one; use backend='fast' "
            "or a task whose verbalizers tokenise as one token after the prompt"
        )
    raw = seq.target_attributions[: len(item.ids), 0].detach().double()
    if spec.reduce == "l2":
        scores = torch.linalg.vector_norm(raw, dim=-1)
    elif spec.reduce == "sum":
        scores = raw.sum(dim=-1)
    elif spec.reduce == "none":
        scores = raw
    elif spec.reduce == "mean":
        scores = raw.reshape(len(item.ids), -1).mean(dim=-1)
    else:  # mean_kept_layers
        scores = raw[:, kept].mean(dim=-1)
    return scores.numpy()


def _shim_ipython_display() -> None:
    """inseq's ``.show()`` imports ``display`` from ``IPython.core.display``, gone in IPython 9; put it back."""
    try:
        import IPython.core.display as core_display
        from IPython.display import display
    except ImportError:  # IPython not installed: nothing to show anyway
        return
    if not hasattr(core_display, "display"):
        core_display.display = display
