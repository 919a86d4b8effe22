"""How a result was made: code, library versions, model, tokenizer, prompt, batch size and seeds.

A :class:`Manifest` is written beside every result the toolkit stores: inside each study cell's
record (``cells/<id>.json``, key ``"manifest"``; ``table.csv`` is unchanged), as ``manifest.json``
in every :func:`toolkit.save_pruned` checkpoint, and as ``<file>.manifest.json`` beside the
files the benchmark scripts write. ``python -m toolkit manifest FOLDER`` prints them.

lm-eval users report scores that move with the batch size and the harness version
(EleutherAI/lm-evaluation-harness issues #1645, #3055: batch size 16 vs 32 moved BoolQ accuracy
by 0.02; #2211: old vs new version); a manifest makes such a change visible, and :func:`toolkit.run_study` refuses to resume a study whose finished cells were
computed under a different one (:func:`check_resume`).

Which differences matter when a study resumes:

* ``created`` and ``host`` differ between cells of one run (a cluster run spans machines): never
  compared (:data:`VOLATILE_FIELDS`).
* ``git_commit`` and ``git_dirty`` are recorded and shown, but do not refuse a resume
  (:data:`INFORMATIONAL_FIELDS`): a commit that touches only docs, tests or notebooks changes the
  commit but not one number. The code that computes is identified by ``toolkit_sha256``, a hash
  of the package's own code (syntax trees, docstrings and comments left out), which does refuse:
  any code edit under ``toolkit/`` may change a cell, committed or not.
* every other field refuses, unless the caller allows mixed manifests.

Hashes are sha256 hex digests. Files are hashed once per process and (path, size, mtime, inode):
a study hashes each model's weights once, however many cells it has.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.task import Example, Task
from .._core.digests import chat_template_digest, text_sha256, tokenizer_digest, weights_digest
from ..data.prompts import task_demos, uses_chat
from .._core.store import CellStore
from .._core.validation import InputError, InputTypeError, check_int, short_repr

__all__ = [
    "manifest_file",
    "INFORMATIONAL_FIELDS",
    "MANIFEST_FILE",
    "MODEL_FIELDS",
    "Manifest",
    "MixedManifestError",
    "TOKENIZER_FIELDS",
    "VOLATILE_FIELDS",
    "build_manifest",
    "check_resume",
    "folder_manifests",
    "group_manifests",
    "manifest_diff",
    "read_manifest",
    "read_result_manifests",
    "write_manifest",
    "write_result_manifest",
]

FORMAT = 1
MANIFEST_FILE = "manifest.json"
RESULT_SUFFIX = ".manifest.json"
VOLATILE_FIELDS = frozenset({"created", "host"})
INFORMATIONAL_FIELDS = frozenset({"git_commit", "git_dirty"})
# Fields that need the loaded model, or its tokenizer (and task): unknown to a check made before loading.
MODEL_FIELDS = frozenset({"device", "dtype"})
TOKENIZER_FIELDS = frozenset({"tokenizer_sha256", "chat_template_sha256", "task_sha256", "prompt", "demo_ids"})
_PACKAGE = Path(__file__).resolve().parents[1]  # toolkit/
_DISTRIBUTION = "attn-prune-toolkit"


class MixedManifestError(InputError):
    """A study would mix cells computed under different manifests (see :func:`check_resume`)."""


@dataclass(frozen=True)
class Manifest:
    """What produced a result. ``None`` means not known (or not applicable: no git checkout).

    Attributes:
        toolkit: the installed toolkit's version.
        toolkit_sha256: sha256 of the package's code: its ``*.py`` files' syntax trees without
            docstrings, by sorted relative path (an edited docstring or comment leaves it unchanged).
        git_commit, git_dirty: HEAD of the git checkout the package runs from, and whether tracked
            files differ from it; None when the package is not run from a checkout.
        python, torch, transformers, inseq: versions.
        torch_threads: ``torch.get_num_threads()``.
        device, dtype: of the model's first parameter (``"cpu"``, ``"float32"``).
        model: the model's name (a built-in name, folder or hub id).
        weights_sha256: the weights file's sha256 when the folder holds one ``*.safetensors``
            file, else sha256 of the sorted ``"<file> <sha256>"`` lines (:func:`weights_digest`).
        tokenizer_sha256: sha256 of the fast tokenizer's serialised JSON, ``to_str()``
            (vocabulary, merges, normalizer, pre-tokenizer, post-processor, added tokens; with
            padding and truncation switched off), or of its class and sorted vocabulary for a
            tokenizer without a fast backend.
        chat_template_sha256: sha256 of the chat template text; None without a template.
        task_sha256: sha256 of the task definition (instruction, labels, verbalizers, input name,
            chat-template use, n_shot).
        prompt: ``"plain"`` or ``"chat"``, with ``", <k>-shot"`` when demonstrations are shown.
        demo_ids: ids of the k-shot demonstrations, in prompt order.
        batch_size: examples per forward pass.
        seeds: named seeds, e.g. ``{"seed": 0}``.
        config_digest: :meth:`toolkit.StudyConfig.digest` of the study.
        created: UTC time the manifest was built; host: the machine (both volatile).
    """

    toolkit: str | None = None
    toolkit_sha256: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    inseq: str | None = None
    torch_threads: int | None = None
    device: str | None = None
    dtype: str | None = None
    model: str | None = None
    weights_sha256: str | None = None
    tokenizer_sha256: str | None = None
    chat_template_sha256: str | None = None
    task_sha256: str | None = None
    prompt: str | None = None
    demo_ids: tuple[str, ...] | None = None
    batch_size: int | None = None
    seeds: tuple[tuple[str, int], ...] | None = None
    config_digest: str | None = None
    created: str | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"format": 1, <field>: value, ...}`` (demo_ids a list, seeds an object)."""
        data = dataclasses.asdict(self)
        data["demo_ids"] = None if self.demo_ids is None else list(self.demo_ids)
        data["seeds"] = None if self.seeds is None else dict(self.seeds)
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """The inverse of :meth:`to_dict`; fields a newer toolkit added are ignored, missing ones are None."""
        if not isinstance(data, Mapping):
            raise InputTypeError(f"a manifest is a JSON object of Manifest fields, got {short_repr(data)}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("demo_ids") is not None:
            values["demo_ids"] = tuple(values["demo_ids"])
        if values.get("seeds") is not None:
            values["seeds"] = tuple(sorted(dict(values["seeds"]).items()))
        return cls(**values)


# ---- the environment -----------------------------------------------------------------------------
def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_CODE_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _code_sha256(path: Path) -> str:
    """sha256 of a module's code: its syntax tree without docstrings (comments and layout never enter it).

    A file that does not parse counts by its bytes. Memoised like :func:`file_sha256`.
    """
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _CODE_DIGESTS:
        source = path.read_bytes()
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            _CODE_DIGESTS[key] = hashlib.sha256(source).hexdigest()
        else:
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
                    node.body = body[1:] or [ast.Pass()]
            _CODE_DIGESTS[key] = text_sha256(ast.dump(tree))
    return _CODE_DIGESTS[key]


def _source_sha256() -> str:
    """sha256 over the package's ``*.py`` files: sorted relative paths and their :func:`_code_sha256`."""
    files = sorted(_PACKAGE.rglob("*.py"))
    return text_sha256("".join(f"{f.relative_to(_PACKAGE).as_posix()} {_code_sha256(f)}\n" for f in files))


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_PACKAGE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, tracked files modified?) when the package is the ``toolkit/`` of a git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() / "toolkit" != _PACKAGE:  # e.g. installed inside some other repo's venv
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _prompt(task: Task, tokenizer: Any, demos: Sequence[Example] | None) -> tuple[str, tuple[str, ...], str]:
    shown = task_demos(task, demos)
    kind = "chat" if uses_chat(task, tokenizer) else "plain"
    if shown:
        kind += f", {len(shown)}-shot"
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    return kind, tuple(str(e.id) for e in shown), text_sha256(json.dumps(fields, sort_keys=True, default=str))


def _seeds(seeds: Mapping[str, int] | int | None) -> tuple[tuple[str, int], ...] | None:
    if seeds is None:
        return None
    if not isinstance(seeds, Mapping):
        seeds = {"seed": seeds}
    out = []
    for name, value in seeds.items():
        if not isinstance(name, str):
            raise InputError(f"seeds has the name {short_repr(name)}; expected str names, e.g. {{'seed': 0}}")
        out.append((name, check_int(value, f"seeds[{name!r}]", minimum=-(2**63))))
    return tuple(sorted(out))


def build_manifest(
    model: Any = None,
    tokenizer: Any = None,
    *,
    model_id: str | None = None,
    weights: str | os.PathLike | Mapping[str, str] | None = None,
    weights_sha256: str | None = None,
    task: Task | None = None,
    demos: Sequence[Example] | None = None,
    batch_size: int | None = None,
    seeds: Mapping[str, int] | int | None = None,
    config_digest: str | None = None,
) -> Manifest:
    """The manifest of a result computed with ``model``, ``tokenizer`` and these settings.

    Everything is optional: the environment (code, versions, threads) is always recorded; the rest
    where given. Never fails for a missing git, an uninstalled inseq or a model without a folder.

    Args:
        model: a loaded model: device, dtype, and (unless given) ``model_id`` = its
            ``name_or_path`` and ``weights`` = that folder when it exists.
        tokenizer: tokenizer and chat-template hashes; needed with ``task``.
        model_id: the name to record (a built-in name rather than its cache folder).
        weights: a folder to hash (``*.safetensors``) or a file -> sha256 mapping already computed.
        weights_sha256: the :func:`weights_digest` when the caller has it (nothing is hashed).
        task, demos: the prompt kind, its k-shot demonstration ids and the task's hash.
        batch_size, seeds, config_digest: as recorded.

    Raises:
        InputError: ``task`` without a tokenizer, a bad ``batch_size`` or seed.
    """
    commit, dirty = _git_state()
    import torch  # here, not at import: reading a manifest needs no torch

    values: dict[str, Any] = dict(
        toolkit=_version(_DISTRIBUTION), toolkit_sha256=_source_sha256(), git_commit=commit, git_dirty=dirty,
        python=platform.python_version(), torch=torch.__version__, transformers=_version("transformers"),
        inseq=_version("inseq"), torch_threads=torch.get_num_threads(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), host=socket.gethostname(),
    )
    if model is not None:
        param = next(model.parameters(), None)
        if param is not None:
            values.update(device=param.device.type, dtype=str(param.dtype).removeprefix("torch."))
        source = getattr(model, "name_or_path", None) or None
        model_id = model_id or source
        if weights is None and weights_sha256 is None and source and Path(source).is_dir():
            weights = source
    if weights_sha256 is None and weights is not None:
        weights_sha256 = weights_digest(weights)
    values.update(model=None if model_id is None else str(model_id), weights_sha256=weights_sha256)
    if tokenizer is not None:
        values.update(tokenizer_sha256=tokenizer_digest(tokenizer), chat_template_sha256=chat_template_digest(tokenizer))
    if task is not None:
        if not isinstance(task, Task):
            raise InputTypeError(f"task must be a toolkit.Task, got {short_repr(task)}")
        if tokenizer is None:
            raise InputError("build_manifest(task=...) needs the tokenizer: it decides plain or chat prompt")
        values["prompt"], values["demo_ids"], values["task_sha256"] = _prompt(task, tokenizer, demos)
    if batch_size is not None:
        values["batch_size"] = check_int(batch_size, "batch_size", 1)
    values.update(seeds=_seeds(seeds), config_digest=config_digest)
    return Manifest(**values)


# ---- files ---------------------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> Path:
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex}")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _as_manifest(m: Manifest | Mapping[str, Any]) -> Manifest:
    if isinstance(m, Manifest):
        return m
    return Manifest.from_dict(m)


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``folder/manifest.json`` (atomically: a temporary file renamed into place); returns its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"cannot write a manifest into {str(folder)!r}: not an existing folder")
    return _write_json(folder / MANIFEST_FILE, _as_manifest(manifest).to_dict())


def manifest_file(model: Any, tokenizer: Any = None) -> Callable[[Path], str]:
    """A checkpoint writer's file maker: ``manifest.json``'s text for the weights already in the folder.

    For `toolkit.models.checkpoints.write_checkpoint`'s `files` (called inside the temporary folder after the
    weights are written, so the manifest hashes exactly the files that are renamed into place).
    """

    def make(folder: Path) -> str:
        return json.dumps(build_manifest(model, tokenizer, weights=folder).to_dict(), indent=1)

    return make


def write_result_manifest(result_file: str | os.PathLike, manifests: Manifest | Iterable[Manifest]) -> Path:
    """Write ``<result_file>.manifest.json`` beside a result a script wrote (one manifest per model used)."""
    path = Path(result_file)
    items = [manifests] if isinstance(manifests, Manifest) else list(manifests)
    return _write_json(path.with_name(path.name + RESULT_SUFFIX),
                       {"result": path.name, "manifests": [_as_manifest(m).to_dict() for m in items]})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the manifest {str(path)!r}: {err}") from None


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a checkpoint folder (``folder/manifest.json``).

    Raises:
        InputError: no such folder, or a folder without a manifest (name and what writes one).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder; expected a checkpoint or study folder")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"folder {str(folder)!r} has no {MANIFEST_FILE} (save_pruned writes one; a study keeps one "
                         "per cell in its cells/ folder)")
    return Manifest.from_dict(_read_json(path))


def read_result_manifests(result_file: str | os.PathLike) -> list[Manifest]:
    """The manifests written beside a result file by :func:`write_result_manifest`."""
    path = Path(result_file)
    side = path.with_name(path.name + RESULT_SUFFIX)
    if not side.is_file():
        raise InputError(f"result {str(path)!r} has no manifest beside it ({side.name})")
    data = _read_json(side)
    return [Manifest.from_dict(m) for m in data.get("manifests", [])] if isinstance(data, dict) else []


def _run_dirs(folder: Path) -> list[Path]:
    if (folder / "cells").is_dir() or (folder / "cells.jsonl").is_file():
        return [folder]
    return sorted(p for p in folder.iterdir() if p.is_dir() and ((p / "cells").is_dir() or (p / "cells.jsonl").is_file()))


def folder_manifests(folder: str | os.PathLike) -> dict[str, Manifest | None]:
    """Every manifest a folder holds, by what it describes.

    A checkpoint folder: ``{"": manifest}``. A study's run folder (``<output_dir>/<digest>``):
    ``{cell key: manifest or None}`` (None: a cell computed before manifests were recorded). An
    output folder holding run folders: ``{"<digest>|<cell key>": ...}``.

    Raises:
        InputError: not a folder, or nothing in it has a manifest or cells.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder; expected a checkpoint or study folder")
    if (folder / MANIFEST_FILE).is_file():
        return {"": read_manifest(folder)}
    runs = _run_dirs(folder)
    if not runs:
        raise InputError(f"folder {str(folder)!r} has no {MANIFEST_FILE} and no study cells: not a checkpoint written "
                         "by save_pruned, nor a study folder (<output_dir> or <output_dir>/<digest>)")
    out: dict[str, Manifest | None] = {}
    for run in runs:
        prefix = "" if run == folder else f"{run.name}|"
        for key, record in sorted(CellStore(run).records().items()):
            stored = record.get("manifest")
            out[prefix + key] = None if stored is None else Manifest.from_dict(stored)
    return out


def group_manifests(manifests: Mapping[str, Manifest | None]) -> dict[str, Any]:
    """Manifests grouped where identical (the volatile ``created`` and ``host`` aside).

    Returns:
        ``{"shared": {field: value} equal in every group, "groups": [{"fields": {field: value}
        that differ between groups, "keys": [...], "created": (first, last)}], "without": [keys
        without a manifest]}``; groups in order of first appearance.
    """
    groups: dict[str, dict[str, Any]] = {}
    without = []
    for key, m in manifests.items():
        if m is None:
            without.append(key)
            continue
        data = _as_manifest(m).to_dict()
        created = data.get("created") or ""
        for name in ("format", *VOLATILE_FIELDS):
            data.pop(name, None)
        ident = json.dumps(data, sort_keys=True)
        group = groups.setdefault(ident, {"data": data, "keys": [], "created": (created, created)})
        group["keys"].append(key)
        first, last = group["created"]
        group["created"] = (min(first, created), max(last, created))
    items = list(groups.values())
    names = list(items[0]["data"]) if items else []
    shared = {k: items[0]["data"][k] for k in names if all(g["data"][k] == items[0]["data"][k] for g in items)}
    return {"shared": shared, "without": without,
            "groups": [{"fields": {k: v for k, v in g["data"].items() if k not in shared}, "keys": g["keys"],
                        "created": g["created"]} for g in items]}


# ---- comparing -----------------------------------------------------------------------------------
def manifest_diff(
    a: Manifest | Mapping[str, Any], b: Manifest | Mapping[str, Any], *,
    ignore: Iterable[str] = VOLATILE_FIELDS, fields: Iterable[str] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """The fields whose values differ: ``{field: (value in a, value in b)}`` (JSON values, field order).

    Args:
        ignore: fields never compared (default: the volatile ``created`` and ``host``).
        fields: compare only these (default: all).
    """
    da, db = _as_manifest(a).to_dict(), _as_manifest(b).to_dict()
    da.pop("format"), db.pop("format")
    skip = set(ignore)
    keep = None if fields is None else set(fields)
    return {k: (da[k], db[k]) for k in da if k not in skip and (keep is None or k in keep) and da[k] != db[k]}


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256: 12 hex digits tell two apart
    return json.dumps(value) if not isinstance(value, str) else value


def check_resume(
    stored: Mapping[str, Manifest | Mapping[str, Any] | None],
    expected: Mapping[str, Manifest],
    *,
    fields: Mapping[str, Iterable[str]] | None = None,
    allow_mixed: bool = False,
    where: str = "the study",
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Compare the manifests of finished cells with the ones this run would write.

    Args:
        stored: cell key -> the manifest it was computed under (None: an older cell without one).
        expected: cell key -> this run's manifest (keys absent here are not checked).
        fields: cell key -> the fields known before the run (default: all); fields in
            :data:`VOLATILE_FIELDS` and :data:`INFORMATIONAL_FIELDS` are never compared.
        allow_mixed: warn instead of refusing.
        where: how the message names the study.

    Returns:
        cell key -> :func:`manifest_diff` (old, new) for the cells that differ.

    Raises:
        MixedManifestError: some finished cell differs and ``allow_mixed`` is False; the message
            lists each differing field as ``field: old -> new`` with its number of cells.

    Cells without a manifest only warn: they cannot be checked.
    """
    if not isinstance(allow_mixed, bool):
        raise InputTypeError(f"allow_mixed={allow_mixed!r}; expected True or False")
    ignore = VOLATILE_FIELDS | INFORMATIONAL_FIELDS
    diffs, unknown = {}, []
    for key, old in stored.items():
        if key not in expected:
            continue
        if old is None:
            unknown.append(key)
            continue
        keep = None if fields is None or key not in fields else fields[key]
        diff = manifest_diff(old, expected[key], ignore=ignore, fields=keep)
        if diff:
            diffs[key] = diff
    if unknown:
        warnings.warn(f"{len(unknown)} finished cell(s) of {where} have no manifest (computed before manifests were "
                      "recorded), so they cannot be checked against this run: e.g. " + ", ".join(unknown[:3]),
                      RuntimeWarning, stacklevel=3)
    if diffs:
        counts: dict[tuple[str, str, str], int] = {}
        for diff in diffs.values():
            for name, (old, new) in diff.items():
                counts[(name, _short(old), _short(new))] = counts.get((name, _short(old), _short(new)), 0) + 1
        lines = "; ".join(f"{name}: {old} -> {new} ({n} cell{'s' * (n != 1)})" for (name, old, new), n in counts.items())
        message = f"{len(diffs)} finished cell(s) of {where} were computed under a different manifest: {lines}"
        if not allow_mixed:
            raise MixedManifestError(
                f"{message}. Refusing to mix them with new cells: rerun with --allow-mixed (run_study(..., "
                "allow_mixed=True)) to keep them, or use another output_dir to start afresh")
        warnings.warn(message + " (allowed: allow_mixed=True)", RuntimeWarning, stacklevel=3)
    return diffs
