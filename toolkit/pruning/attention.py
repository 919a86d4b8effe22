"""Dropping attention sub-layers: reversibly (for analysis) or structurally (to save compute).

A dropped attention sub-layer contributes nothing: the decoder layer computes
h = x + 0 (+ MLP as usual) instead of h = x + Attn(LN(x)). Its attention is not computed, its
pre-attention norm is skipped, and it keeps no KV cache (its cache slot becomes a
`toolkit.models.pruned_arch.NoKVLayer`: a transformers `DummyLayer` that still answers for the sequence length and mask sizes).

Both routes edit stock transformers modules in place; nothing is forked and no remote code is
needed to load a pruned checkpoint back with `toolkit.load_model`. The removed module
(`PrunedAttention`) lives in `toolkit.models.pruned_arch`, which a structural checkpoint also ships as its
opt-in ``trust_remote_code`` class for plain transformers (which otherwise refuses the folder).
The standard, load-anywhere format (attention output projection zeroed) is `toolkit.pruning.export`.
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
from safetensors import safe_open
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel

from ..models import pruned_arch

from ..models.adapters import (
    DROPPED_MARK,
    adapter_for,
    attention_modules,
    attn_norm_names,
    decoder_layers,
    dropped_layers,
)
from ..models.checkpoints import (
    PRUNING_SPEC,
    BASE_MODEL_TYPE_KEY,
    check_output_folder,
    stock_config,
    weights_sha256,
    write_checkpoint,
)
from ..models.loading import FOLDER_LOADERS
from ..models.manifest import MANIFEST_FILE, manifest_file
from ..models.pruned_arch import MODEL_TYPE_PREFIX, PrunedAttention, pruned_class_names, zero_attention
from .._core.validation import InputError, check_layers, is_int

__all__ = [
    "checked_layers",
    "drop_attention",
    "load_pruned",
    "n_parameters",
    "prune_attention",
    "read_pruning_spec",
    "save_pruned",
]

_FORMAT = "toolkit-pruned-attention/1"
_MODELING_FILE = "modeling_toolkit_pruned.py"  # toolkit.models.pruned_arch, copied into a structural checkpoint
_SPEC_SHAPE = (
    f'a JSON object {{"format": "{_FORMAT}", "pruned_attention_layers": [layer indices], ...}} as save_pruned writes it'
)


def checked_layers(model: nn.Module, layers: Sequence[int]) -> tuple[int, ...]:
    """Layer indices of ``model``, validated and sorted: integers in [0, n_layers), no duplicates.

    Warns when every layer is listed (the model would keep no attention at all).
    """
    n = len(decoder_layers(model))
    out = check_layers(layers, n)
    if len(set(out)) != len(out):
        dupes = sorted({i for i in out if out.count(i) > 1})
        raise InputError(f"duplicate layer indices {dupes} in {list(out)}")
    if out and len(out) == n:
        warnings.warn(f"dropping all {n} attention layers: the model becomes a bag of per-token MLPs", stacklevel=3)
    return tuple(sorted(out))


def _identity(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


def _patch(module: nn.Module, forward: Any) -> Any:
    """Shadow `module.forward` with an instance attribute; return the undo."""
    had = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    module.forward = forward
    setattr(module, DROPPED_MARK, True)

    def undo() -> None:
        if had:
            module.forward = previous
        else:
            del module.forward
        delattr(module, DROPPED_MARK)

    return undo


def _bypass_attention(model: nn.Module, layers: tuple[int, ...]) -> list:
    adapter = adapter_for(model)
    norms = attn_norm_names(model)
    undos = []
    try:
        for i in layers:
            layer = decoder_layers(model)[i]
            attn = getattr(layer, adapter.attention)
            if isinstance(attn, PrunedAttention) or getattr(attn, DROPPED_MARK, False):
                continue  # already contributes nothing (pruned, or dropped by an outer context)

            def forward(*args: Any, _i: int = i, **kwargs: Any) -> tuple[torch.Tensor, None]:
                return zero_attention(_i, args, kwargs)

            undos.append(_patch(attn, forward))
            for name in norms:
                norm = getattr(layer, name)
                if not getattr(norm, DROPPED_MARK, False):
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
        model: a model with a registered adapter (`toolkit.models.adapters.ADAPTERS`).
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
        if getattr(getattr(layer, adapter.attention), DROPPED_MARK, False):
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


def save_pruned(
    model: PreTrainedModel, path: str | os.PathLike, tokenizer: Any = None, *, overwrite: bool = False
) -> Path:
    """Write a pruned model as safetensors + config + `pruning.json`; reload with `load_model(path)`.

    The structural format: the removed attention weights are not stored, so the folder is smaller and
    the model it loads as computes less. `toolkit.load_model` rebuilds the stock architecture, removes
    the same attention modules and loads the saved weights (logits identical to the model saved here),
    running no code from the folder. `pruning.json` records the removed layers and the sha256 of each
    weights file, which `load_pruned` checks. Save the tokenizer with it: `load_model` needs one.
    `manifest.json` records how it was made (:mod:`toolkit.models.manifest`: library versions, toolkit
    code, source model, weights and tokenizer hashes); `python -m toolkit manifest PATH` prints it.

    Plain transformers never loads it silently wrong: config.json has a model_type of the toolkit's
    own (``toolkit_pruned_<stock type>``) and an ``auto_map`` to ``modeling_toolkit_pruned.py`` (a copy
    of `toolkit.models.pruned_arch`), so ``AutoModelForCausalLM.from_pretrained(path)`` fails asking for
    ``trust_remote_code=True``, and with it loads the same pruned model (opt-in). A README.md in the
    folder says so. For a checkpoint any tool loads with no code, see `toolkit.pruning.export.export_zeroed`.

    The folder is written whole (`toolkit.models.checkpoints.write_checkpoint`): an existing non-empty folder
    is refused (FileExistsError) unless `overwrite=True`; then it is replaced whole, provided it is a
    model folder (holds a config.json).
    """
    if any(getattr(attn, DROPPED_MARK, False) for attn in attention_modules(model)):
        raise RuntimeError("save_pruned called inside drop_attention; use prune_attention to make the drop permanent")
    check_output_folder(path, overwrite=overwrite)
    layers = list(dropped_layers(model))
    if tokenizer is None:
        warnings.warn(
            f"saving {path} without a tokenizer: load_model will refuse the folder until one is saved beside the "
            "weights (pass tokenizer=... to save_pruned)",
            UserWarning,
            stacklevel=2,
        )
    adapter = adapter_for(model)
    architecture = type(model).__name__
    stock_type = model.config.model_type
    loader = (f"toolkit.load_model(path) (pip package attn-prune-toolkit); plain transformers: "
              f"AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True) runs {_MODELING_FILE}")
    config_update: dict[str, Any] = {
        "model_type": MODEL_TYPE_PREFIX + stock_type,
        BASE_MODEL_TYPE_KEY: stock_type,
        "toolkit_layers": adapter.layers,
        "toolkit_attention": adapter.attention,
        "toolkit_attn_norms": list(attn_norm_names(model)),
        "toolkit_loader": loader,
    }
    files = {}
    names = pruned_class_names(architecture)
    stock = getattr(transformers, architecture, None)
    if names is not None and stock is not None and type(model.config) is stock.config_class:
        module = _MODELING_FILE.removesuffix(".py")
        config_update["auto_map"] = {"AutoConfig": f"{module}.{names[0]}", "AutoModelForCausalLM": f"{module}.{names[1]}"}
        files[_MODELING_FILE] = lambda tmp: Path(pruned_arch.__file__).read_text(encoding="utf-8")

    def spec(tmp: Path) -> str:
        return json.dumps({
            "format": _FORMAT,
            "architecture": architecture,
            "pruned_attention_layers": layers,
            "n_layers": len(decoder_layers(model)),
            "n_parameters": n_parameters(model),
            "weights_sha256": weights_sha256(tmp),
            "note": "load with toolkit.load_model(path); plain transformers refuses this folder unless "
                    "trust_remote_code=True (then it runs modeling_toolkit_pruned.py)",
        }, indent=1)

    files[PRUNING_SPEC] = spec
    files[MANIFEST_FILE] = manifest_file(model, tokenizer)
    files["README.md"] = lambda tmp: _structural_card(architecture, layers, len(decoder_layers(model)), _MODELING_FILE in files)
    return write_checkpoint(model, path, tokenizer, config_update=config_update, files=files, overwrite=overwrite)


def _structural_card(architecture: str, layers: list[int], n_layers: int, remote: bool) -> str:
    opt_in = (
        "Plain transformers refuses this folder unless you opt in to the code shipped in it:\n\n"
        "```python\nAutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)\n```\n\n"
        f"runs `{_MODELING_FILE}` (stock {architecture} with the listed attention removed; logits equal "
        "`toolkit.load_model` to 1e-6). "
        if remote else
        "Plain transformers refuses this folder (its model_type is the toolkit's own). "
    )
    return (
        f"# {architecture} with attention removed in {len(layers)} of {n_layers} layers (structural format)\n\n"
        f"The attention sub-layers of layers {layers} were removed by attn-prune-toolkit `prune_attention`: "
        "their weights are not stored and the model does not compute them.\n\n"
        "**Load it with the toolkit** (no code from this folder is run):\n\n"
        "```python\nimport toolkit\nmodel, tokenizer = toolkit.load_model(path)\n```\n\n"
        f"{opt_in}Without either, loading would fail rather than re-create the removed attention at random.\n\n"
        "For a standard checkpoint that plain transformers, lm-eval, vLLM or llama.cpp load with no code "
        "(same outputs, no compute saved), export the zeroed format: "
        "`python -m toolkit prune OUT --layers ... --format transformers`.\n"
    )


def read_pruning_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of `path/pruning.json`, checked for the shape `save_pruned` writes.

    Raises a ValueError naming the file and what it should hold when it is empty, not JSON, not a
    JSON object, of another format, or without a list of distinct non-negative layer indices.
    """
    file = Path(path) / PRUNING_SPEC
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{file} is not UTF-8 text ({err}); expected {_SPEC_SHAPE}") from err
    if not text.strip():
        raise InputError(f"{file} is empty; expected {_SPEC_SHAPE}")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{file} is not valid JSON ({err}); expected {_SPEC_SHAPE}") from err
    if not isinstance(spec, dict):
        raise InputError(f"{file} holds a JSON {type(spec).__name__}, not an object; expected {_SPEC_SHAPE}")
    if spec.get("format") != _FORMAT:
        raise InputError(
            f"{file} is not a toolkit pruning spec (format {spec.get('format')!r}); expected format {_FORMAT!r}"
        )
    layers = spec.get("pruned_attention_layers")
    if not isinstance(layers, list) or not all(is_int(i) and i >= 0 for i in layers):
        raise InputError(
            f"{file}: pruned_attention_layers is {layers!r}; expected a list of layer indices (integers >= 0)"
        )
    if len(set(layers)) != len(layers):
        raise InputError(f"{file}: pruned_attention_layers {layers} lists a layer twice; expected distinct indices")
    if "n_layers" in spec and not (is_int(spec["n_layers"]) and spec["n_layers"] >= 1):
        raise InputError(f"{file}: n_layers is {spec['n_layers']!r}; expected an integer >= 1")
    sums = spec.get("weights_sha256")
    if sums is not None and not (
        isinstance(sums, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items())
    ):
        raise InputError(
            f"{file}: weights_sha256 is {sums!r}; expected an object mapping file names to sha256 hex digests"
        )
    return spec


def _check_checksums(path: Path, spec: dict[str, Any]) -> None:
    """The weights files are the ones `save_pruned` wrote: same names, same sha256."""
    file = path / PRUNING_SPEC
    recorded = spec.get("weights_sha256")
    if recorded is None:
        warnings.warn(
            f"{file} records no weights checksum (written by an older toolkit), so the weights in {path} cannot "
            "be verified (the layer check still runs); re-save it to add one: model, tok = toolkit.load_model(path); "
            "toolkit.save_pruned(model, path, tok, overwrite=True)",
            UserWarning,
            stacklevel=4,
        )
        return
    found = weights_sha256(path)
    problems = [f"{name} is missing" for name in sorted(set(recorded) - set(found))]
    problems += [f"{name} was not saved with it" for name in sorted(set(found) - set(recorded))]
    problems += [
        f"{name} has sha256 {found[name][:12]}... but {PRUNING_SPEC} records {recorded[name][:12]}..."
        for name in sorted(set(recorded) & set(found))
        if found[name] != recorded[name]
    ]
    if problems:
        raise InputError(
            f"the weights in {path} changed since pruning: {'; '.join(problems)}; they no longer match {file}. "
            "Prune and save the model again (toolkit.save_pruned, or python -m toolkit prune)"
        )


def _attention_keys(model: nn.Module) -> list[set[str]]:
    """Per decoder layer, the state-dict keys of its attention and of the norms that only feed it."""
    adapter = adapter_for(model)
    keys = list(model.state_dict())
    out = []
    for i in range(len(decoder_layers(model))):
        prefixes = tuple(f"{adapter.layers}.{i}.{name}." for name in (adapter.attention, *attn_norm_names(model)))
        out.append({k for k in keys if k.startswith(prefixes)})
    return out


def _check_stored_keys(path: Path, expected: list[set[str]], layers: list[int]) -> None:
    """The attention keys absent from the weights files are exactly those of the listed layers.

    The file keys are compared with the un-pruned architecture's own names: for every supported
    architecture transformers stores attention weights under their module paths.
    """
    stored: set[str] = set()
    for weights in sorted(path.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as f:
            stored.update(f.keys())
    file = path / PRUNING_SPEC
    absent = {i: sorted(keys - stored) for i, keys in enumerate(expected) if keys - stored}
    unlisted = {i: keys for i, keys in absent.items() if i not in layers}
    kept = {i: sorted(expected[i] & stored) for i in layers if expected[i] & stored}
    problems = []
    if unlisted:
        problems.append(
            f"the weights lack the attention of layers {sorted(unlisted)} (e.g. {_some(unlisted)}) but {file} "
            f"lists only {sorted(layers)} as pruned: loading would re-create that attention with random weights"
        )
    if kept:
        problems.append(
            f"{file} lists layers {sorted(kept)} as pruned but the weights hold their attention (e.g. {_some(kept)})"
        )
    if problems:
        raise InputError(f"{path} is not the pruned checkpoint it claims to be: {'; '.join(problems)}")


def _some(keys_by_layer: dict[int, list[str]], n: int = 3) -> str:
    keys = [k for ks in keys_by_layer.values() for k in ks]
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} keys)" if len(keys) > n else "")


def load_pruned(
    path: str | os.PathLike, *, dtype: torch.dtype | None = None, device_map: Any = None
) -> PreTrainedModel:
    """Load a folder written by `save_pruned` (used by `load_model`), after checking it is what it claims.

    Checks, each failure a ValueError naming the file: `pruning.json` has the shape `save_pruned`
    writes (`read_pruning_spec`) and agrees with config.json (architecture, number of layers); the
    weights files have the sha256 it records (a checkpoint without one, from an older toolkit, only
    warns); the attention weights absent from the files are exactly those of the listed layers, and
    no other weight is missing or unexpected.
    """
    path = Path(path)
    spec = read_pruning_spec(path)
    file = path / PRUNING_SPEC
    _check_checksums(path, spec)
    config = stock_config(path)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    n_layers = len(decoder_layers(skeleton))
    if spec.get("architecture", type(skeleton).__name__) != type(skeleton).__name__:
        raise InputError(
            f"{file} was written for {spec['architecture']} but {path / 'config.json'} builds "
            f"{type(skeleton).__name__}"
        )
    if spec.get("n_layers", n_layers) != n_layers:
        raise InputError(f"{file} records n_layers={spec['n_layers']} but {path / 'config.json'} has {n_layers} layers")
    layers = check_layers(spec["pruned_attention_layers"], n_layers, name=f"pruned_attention_layers in {file}")
    expected = _attention_keys(skeleton)
    del skeleton
    _check_stored_keys(path, expected, layers)
    # The removed attention weights are absent from the checkpoint: transformers initialises them,
    # then prune_attention drops them again. Silence its "newly initialized" report (the keys were
    # checked above, and the loading report is checked below).
    tf_logger = logging.getLogger("transformers.modeling_utils")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            path,
            config=config,
            dtype=dtype,
            device_map=device_map,
            attn_implementation="eager",
            use_safetensors=True,
            output_loading_info=True,
        )
    finally:
        tf_logger.setLevel(level)
    removed = set().union(*(expected[i] for i in layers))
    missing = sorted(set(info.get("missing_keys", ())) - removed)
    unexpected = sorted(info.get("unexpected_keys", ()))
    if missing or unexpected:
        raise InputError(
            f"the weights in {path} do not fit its config.json beyond the pruned attention: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    return prune_attention(model, layers)


FOLDER_LOADERS.register(PRUNING_SPEC, load_pruned)  # load_model reads a save_pruned folder through this
