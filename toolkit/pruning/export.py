"""Export a pruned model as a standard checkpoint: the unmodified architecture, attention output zeroed.

In the exported folder each dropped layer's attention output projection (weight, and bias where
the architecture has one: GPT-2 ``c_proj``, OPT ``out_proj``, GPT-NeoX ``dense``) is zero, so the
attention sub-layer adds nothing to the residual stream:

    h = x + W_o · Attn(LN(x)) + b_o = x + 0          (W_o = 0, b_o = 0)

which is `toolkit.pruning.attention.drop_attention` made permanent. Where the attention output passes a norm
before the residual add (Gemma 2/3's post-attention RMSNorm, g · y / sqrt(mean(y²) + eps)), a zero
input still gives zero; GPT-NeoX's parallel residual adds the attention and MLP outputs separately,
so the MLP branch is unchanged. The folder is a plain transformers checkpoint (safetensors, stock
config, no code): plain transformers, lm-eval, vLLM or llama.cpp's converter load it as they load the
original. It saves no compute: the attention is still computed (and cached), then multiplied by
zero. For a smaller, faster model use the structural format (`toolkit.pruning.attention.save_pruned`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ..models.adapters import adapter_for, attention_modules, decoder_layers
from ..models.checkpoints import check_output_folder, write_checkpoint
from ..models.manifest import MANIFEST_FILE, manifest_file
from ..models.pruned_arch import PrunedAttention
from .attention import checked_layers, drop_attention
from ..models.adapters import dropped_layers
from .._core.validation import InputError, InputTypeError

__all__ = ["ZEROED_KEY", "export_zeroed", "zeroed_parameters"]

ZEROED_KEY = "toolkit_zeroed_attention"  # in the exported config.json: the dropped layers (informative only)
_PROBE_TOKENS = 8  # length of the self-check input


def zeroed_parameters(model: PreTrainedModel, layers: Sequence[int]) -> dict[str, nn.Parameter]:
    """The parameters `export_zeroed` sets to zero: each listed layer's attention output projection.

    Returns:
        ``{state-dict name: parameter}``: the projection's weight, and its bias where it has one.

    Raises:
        InputError: the architecture's adapter row names no ``out_proj``, or the attention module
            lacks it (then a zeroed export is not known to be exact: refused by name).
    """
    adapter = adapter_for(model)
    architecture = type(model).__name__
    if adapter.out_proj is None:
        raise InputError(
            f"cannot export {architecture} in the zeroed format: its adapter row names no attention output "
            "projection (out_proj); register one with toolkit.models.adapters.register_adapter(..., replace=True) "
            "once zeroing it is known to remove the attention exactly, or use the structural format (save_pruned)"
        )
    out: dict[str, nn.Parameter] = {}
    for i in checked_layers(model, layers):
        attn = attention_modules(model)[i]
        proj = getattr(attn, adapter.out_proj, None)
        if proj is None:
            raise InputError(
                f"layer {i} of {architecture} has no attention output projection {adapter.out_proj!r} "
                f"(its attention module is {type(attn).__name__})"
            )
        prefix = f"{adapter.layers}.{i}.{adapter.attention}.{adapter.out_proj}"
        for name, param in proj.named_parameters(recurse=False):
            out[f"{prefix}.{name}"] = param
    return out


def _checked_selection(selection: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if selection is None:
        return None
    if not isinstance(selection, Mapping) or not all(isinstance(k, str) for k in selection):
        raise InputTypeError(
            f"selection must be a mapping of str to JSON values (e.g. {{'metric': 'cosine', 'k': 3}}), got {selection!r}"
        )
    try:
        json.dumps(dict(selection))
    except TypeError as err:
        raise InputTypeError(f"selection must hold JSON values (str, numbers, lists, dicts): {err}") from err
    return dict(selection)


def export_zeroed(
    model: PreTrainedModel,
    layers: Sequence[int],
    path: str | os.PathLike,
    tokenizer: Any = None,
    *,
    selection: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` with `layers`' attention dropped as a standard checkpoint any tool loads (zeroed format).

    W_o = 0 and b_o = 0 in each listed layer's attention output projection (`zeroed_parameters`),
    so its attention adds nothing to the residual: the logits equal ``drop_attention(model, layers)``
    (tested to 1e-5 on every adapter architecture and both bundled models). The architecture,
    config and tensor names are the stock ones: ``AutoModelForCausalLM.from_pretrained(path)`` loads
    it with no toolkit and no remote code, and so do lm-eval, vLLM and llama.cpp's converter. It
    saves no compute; `save_pruned` writes the smaller structural format.

    Before writing, a short probe checks that the zeroed weights give the logits of
    `drop_attention` (to 1e-4 relative in fp32, 5e-2 in half precision); a mismatch refuses the
    export. `model` is left exactly as it was (its weights are zeroed only while the folder is
    written, then restored bit for bit, also on error). The folder gets a model card (README.md)
    saying what was dropped, how it was chosen (`selection`), that it saves no compute and how to
    get the structural format; config.json records the layers under ``toolkit_zeroed_attention``.
    Written whole through `toolkit.models.checkpoints.write_checkpoint` (safetensors; tied embeddings stay tied).

    Args:
        model: the unpruned model (not structurally pruned, not inside `drop_attention`).
        layers: decoder-layer indices whose attention to drop (empty: an unmodified copy).
        path: the folder to write (new or empty, or a model folder with `overwrite=True`).
        tokenizer: saved beside the weights (evaluation tools need it).
        selection: how the layers were chosen, for the model card, e.g. ``{"metric": "cosine",
            "dataset": "uci_yelp", "n": 64, "k": 3}``; JSON values.
        overwrite: replace an existing model folder whole.

    Returns:
        The folder written.

    Raises:
        InputError: an architecture with no output projection in its adapter row, bad layers, a
            selection that is not a mapping of JSON values, a failed self-check.
        RuntimeError: a structurally pruned model, or a call inside `drop_attention`.
        FileExistsError: see `toolkit.models.checkpoints.check_output_folder`.
    """
    if any(isinstance(a, PrunedAttention) for a in attention_modules(model)):
        raise RuntimeError(
            f"export_zeroed needs the unpruned model, but layers {list(dropped_layers(model))} of this one were removed "
            "by prune_attention (their weights are gone); load the original model and pass the layers to drop"
        )
    if dropped_layers(model):
        raise RuntimeError("export_zeroed called inside drop_attention; call it outside the block, passing the layers")
    layers = checked_layers(model, layers)
    selection = _checked_selection(selection)
    check_output_folder(path, overwrite=overwrite)
    params = zeroed_parameters(model, layers)
    saved = {name: p.detach().clone() for name, p in params.items()}
    architecture = type(model).__name__
    n_layers = len(decoder_layers(model))
    try:
        with torch.no_grad():
            for p in params.values():
                p.zero_()
        diff, scale = _compare_with_drop(model, layers, params, saved)
        tol = 1e-4 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 5e-2
        if diff > tol * max(1.0, scale):
            raise InputError(
                f"zeroing the attention output projection of {architecture} does not equal dropping its attention "
                f"(max |logit diff| {diff:.3g} on a probe); the zeroed format is refused for this architecture: "
                "use the structural format (save_pruned)"
            )
        card = _model_card(model, architecture, list(layers), n_layers, selection, sorted(params))
        return write_checkpoint(
            model, path, tokenizer,
            config_update={ZEROED_KEY: list(layers)} if layers else None,
            files={"README.md": lambda tmp: card, MANIFEST_FILE: manifest_file(model, tokenizer)},
            overwrite=overwrite,
        )
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])


@torch.no_grad()
def _compare_with_drop(
    model: PreTrainedModel, layers: tuple[int, ...], params: dict[str, nn.Parameter], saved: dict[str, torch.Tensor]
) -> tuple[float, float]:
    """(max |logit diff|, max |logit|) between the zeroed weights (in place now) and `drop_attention` on the originals."""
    if not layers:
        return 0.0, 1.0
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(0)
    probe = torch.randint(0, vocab, (1, _PROBE_TOKENS), generator=g).to(device)
    zeroed = model(probe, use_cache=False).logits.float()
    for name, p in params.items():
        p.copy_(saved[name])
    try:
        with drop_attention(model, layers):
            dropped = model(probe, use_cache=False).logits.float()
    finally:
        for p in params.values():
            p.zero_()
    return (zeroed - dropped).abs().max().item(), dropped.abs().max().item()


def _model_card(
    model: PreTrainedModel,
    architecture: str,
    layers: list[int],
    n_layers: int,
    selection: dict[str, Any] | None,
    zeroed: list[str],
) -> str:
    source = getattr(model.config, "_name_or_path", "") or "not recorded"
    chosen = (
        "How the layers were chosen:\n\n```json\n" + json.dumps(selection, indent=1) + "\n```\n"
        if selection else "How the layers were chosen: not recorded.\n"
    )
    what = (
        f"The attention sub-layers of layers {layers} (of {n_layers}) are dropped: in each, the attention output "
        "projection is zero (its weight, and its bias where it has one), so the sub-layer adds nothing to the residual stream. This equals "
        "attn-prune-toolkit's reversible `drop_attention(model, layers)` on the original weights.\n\n"
        "Zeroed tensors:\n\n" + "".join(f"- `{name}`\n" for name in zeroed)
        if layers else "No attention layer is dropped: this is an unmodified copy of the model.\n"
    )
    return (
        "---\nlibrary_name: transformers\ntags:\n- attention-pruning\n- attn-prune-toolkit\n---\n\n"
        f"# {architecture} with attention dropped in {len(layers)} of {n_layers} layers (zeroed format)\n\n"
        f"Original weights: `{source}`.\n\n{what}\n{chosen}\n"
        "This is a standard transformers checkpoint of the unmodified architecture (no custom code): "
        "`AutoModelForCausalLM.from_pretrained(path)`, lm-eval (`--model hf --model_args pretrained=path`), vLLM "
        "and llama.cpp's `convert_hf_to_gguf.py` load it as they load the original.\n\n"
        "**It saves no compute**: the dropped layers' attention is still computed and cached, then multiplied by "
        "zero. For the smaller, faster model (attention modules removed, no KV cache for them), write the "
        "structural format with the toolkit: `python -m toolkit prune OUT --layers "
        f"{','.join(map(str, layers)) or '...'} --format toolkit`, or "
        "`toolkit.save_pruned(toolkit.prune_attention(model, layers), OUT, tokenizer)`; load it with "
        "`toolkit.load_model(OUT)`.\n"
    )
