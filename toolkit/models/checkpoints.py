"""Model folders on disk: the one function that writes them, and the config they carry.

Both checkpoint formats go through `write_checkpoint`: the structural one (`toolkit.pruning.attention.save_pruned`)
and the standard zeroed one (`toolkit.pruning.export.export_zeroed`). It writes safetensors weights, the
config (with the format's edits), the tokenizer and the format's own text files (spec, model card,
code) into a temporary folder renamed into place (`toolkit._core.folders.write_folder`), after
`check_output_folder` has said the target may be written.

A structural checkpoint's config.json carries a ``model_type`` of the toolkit's own
(``toolkit_pruned_<stock type>``), so plain transformers cannot mistake it for the stock model;
`stock_config` reads it back as the stock config the toolkit rebuilds the model from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .._core.folders import write_folder
from .pruned_arch import MODEL_TYPE_PREFIX
from .._core.validation import InputError, InputFileExistsError, InputTypeError

PRUNING_SPEC = "pruning.json"  # what was pruned, written by save_pruned; a folder holding it loads through load_pruned

__all__ = [
    "PRUNING_SPEC",
    "BASE_MODEL_TYPE_KEY",
    "check_output_folder",
    "stock_config",
    "stock_config_dict",
    "weights_sha256",
    "write_checkpoint",
]

BASE_MODEL_TYPE_KEY = "toolkit_base_model_type"  # in a structural checkpoint's config.json: the stock model_type
# Keys a structural checkpoint's config.json adds for its opt-in class; the stock config does not need them.
_STRUCTURAL_KEYS = ("auto_map", BASE_MODEL_TYPE_KEY, "toolkit_layers", "toolkit_attention", "toolkit_attn_norms",
                    "toolkit_loader")


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Where a checkpoint may be written: a new or empty folder, or (with `overwrite`) a model folder.

    Raises FileExistsError for a file at `path`, for a non-empty folder unless `overwrite=True`,
    and, even with `overwrite`, for a non-empty folder that holds no `config.json` (it is not a
    model folder, so replacing it whole would delete something else). Call it before spending time
    on a model that is to be saved (the `prune` command does).
    """
    path = Path(path)
    if not isinstance(overwrite, bool):
        raise InputTypeError(f"overwrite must be True or False, got {overwrite!r}")
    if path.exists() and not path.is_dir():
        raise InputFileExistsError(f"cannot save to {str(path)!r}: it is a file, not a folder; choose another path")
    entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if not entries:
        return path
    listed = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
    if not overwrite:
        raise InputFileExistsError(
            f"folder {str(path)!r} exists and is not empty ({listed}); pass overwrite=True "
            "(command line: --overwrite) to replace it whole, or choose another folder"
        )
    if "config.json" not in entries:
        raise InputFileExistsError(
            f"refusing to overwrite {str(path)!r}: it holds no config.json, so it is not a model folder "
            f"({listed}); choose another folder or empty it yourself"
        )
    return path


def weights_sha256(path: str | os.PathLike) -> dict[str, str]:
    """The sha256 of every `*.safetensors` file in the folder, by file name (what `pruning.json` records)."""
    out = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[file.name] = digest.hexdigest()
    return out


def write_checkpoint(
    model: PreTrainedModel,
    path: str | os.PathLike,
    tokenizer: Any = None,
    *,
    config_update: Mapping[str, Any] | None = None,
    files: Mapping[str, Callable[[Path], str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a model folder, whole: the one place every toolkit checkpoint is written.

    Order inside the temporary folder: ``model.save_pretrained`` (safetensors; tied weights stay
    tied: transformers stores a tied matrix once), `config_update` merged into config.json (a value
    of None deletes the key), the tokenizer, then each of `files` (name -> function of the folder
    returning the text, called after the weights exist, so it may checksum them). Then the folder is
    renamed into place (`toolkit._core.folders.write_folder`): a crash never leaves a half-written folder,
    and an existing folder is replaced whole only when `check_output_folder` allows it.

    Returns:
        The folder written.
    """
    path = check_output_folder(path, overwrite=overwrite)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        if config_update:
            config_file = tmp / "config.json"
            config = json.loads(config_file.read_text(encoding="utf-8"))
            for key, value in config_update.items():
                if value is None:
                    config.pop(key, None)
                else:
                    config[key] = value
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, make in (files or {}).items():
            (tmp / name).write_text(make(tmp), encoding="utf-8")

    return write_folder(path, write, replace=True)


def stock_config_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config.json dict as the stock architecture reads it: a structural checkpoint's own model_type undone.

    A dict without the toolkit's model_type (a stock model, or a structural checkpoint of an older
    toolkit, which kept the stock model_type) is returned unchanged (as a copy).

    Raises:
        InputError: a ``toolkit_pruned_*`` model_type without the stock type beside it.
    """
    out = dict(config)
    model_type = out.get("model_type")
    if not (isinstance(model_type, str) and model_type.startswith(MODEL_TYPE_PREFIX)):
        return out
    base = out.get(BASE_MODEL_TYPE_KEY)
    if not isinstance(base, str) or base not in CONFIG_MAPPING:
        raise InputError(
            f"config model_type {model_type!r} marks a toolkit-pruned checkpoint, but {BASE_MODEL_TYPE_KEY} is "
            f"{base!r}; expected the stock model_type transformers knows (e.g. 'llama'), as save_pruned writes it"
        )
    for key in _STRUCTURAL_KEYS:
        out.pop(key, None)
    out["model_type"] = base
    return out


def stock_config(path: str | os.PathLike) -> PretrainedConfig:
    """The stock transformers config of the model folder `path` (`stock_config_dict` of its config.json)."""
    file = Path(path) / "config.json"
    config = stock_config_dict(json.loads(file.read_text(encoding="utf-8")))
    return CONFIG_MAPPING[config["model_type"]].from_dict(config)
