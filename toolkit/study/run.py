"""Running a study: checks before anything loads, the worker task, manifests, the table and the report."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import AutoConfig, AutoTokenizer

from ..models.adapters import decoder_layers
from ..attribution.registry import check_method
from ..models.checkpoints import stock_config
from ..data.datasets import DatasetSpec, get_task, restore_datasets, user_datasets
from .executors import RunReport, run_cells
from ..models.manifest import MODEL_FIELDS, TOKENIZER_FIELDS, Manifest, build_manifest, check_resume
from .._core.digests import weights_digest
from ..models.loading import BUILTIN_MODELS, cache_dir, load_model
from ..models.checkpoints import PRUNING_SPEC
from .report import write_report
from .._core.store import CellStore
from .._core.validation import InputError, InputTypeError, is_int
from .cells import Cell, run_cell, study_cells, study_data, study_pairs, study_shots
from .audit import audit_table
from .config import StudyConfig, claim_metrics
from .summary import measured_metrics, summary
from .table import faithfulness_by_length, load_results, report_frames, tidy_table

__all__ = ["StudyIncomplete", "check_study", "model_depth", "run_study"]


class StudyIncomplete(RuntimeError):
    """Some cells failed or were left unfinished; the finished ones are saved, a rerun retries the rest."""


def _study_work(
    model_name: str, cells: list[Cell], store: CellStore, *, config: StudyConfig, datasets: dict[str, DatasetSpec],
    weights: Mapping[str, str | None] | None = None,
) -> None:
    """One worker task: load the model once, compute the cells it can claim (top level: workers import it).

    ``datasets``: the user datasets the driver registered (a worker process starts without them).
    ``weights``: the weights digest per model, hashed once by the driver (None: hash here).
    Every record carries the manifest it was computed under (:mod:`toolkit.models.manifest`).
    """
    restore_datasets(datasets)
    model, tok = load_model(model_name, **config.load_options(model_name))
    _check_levels(config, model_name, len(decoder_layers(model)))  # before any cell, when check_study could not
    data: dict[str, dict] = {}
    importance_cache: dict = {}
    digest = (weights or {}).get(model_name)

    def compute(cell: Cell) -> dict:
        if cell.dataset not in data:
            data[cell.dataset] = study_data(cell.dataset, config, model_name)  # its task carries the pair's shots
            data[cell.dataset]["manifest"] = cell_manifest(config, model_name, data[cell.dataset]["test"].task,
                                                            tok, digest, model=model)
        torch.manual_seed(cell.seed(config.seed))
        record = run_cell(cell, config, model, tok, data[cell.dataset], importance_cache)
        return {**record, "manifest": data[cell.dataset]["manifest"].to_dict()}

    for cell in cells:
        store.run_cell(cell.key, functools.partial(compute, cell))


def cell_manifest(config: StudyConfig, model_name: str, task, tok, digest: str | None, model=None) -> Manifest:
    """The manifest of ``model_name``'s cells on one dataset (``model`` None: before it loads, in the driver).

    ``config`` is any config with ``batch_size``, ``seed`` and ``digest()`` (a study's or a sweep's).
    """
    folder = None if digest is not None or model is not None else model_folder(model_name)
    return build_manifest(model, tok, model_id=model_name, weights=folder, weights_sha256=digest,
                          task=task if tok is not None else None, batch_size=config.batch_size,
                          seeds={"seed": config.seed}, config_digest=config.digest())


def model_folder(name: str) -> Path | None:
    """The local folder of a model (a built-in one once converted); None for a hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    cached = cache_dir() / name
    return cached if name in BUILTIN_MODELS and (cached / "SOURCE.json").is_file() else None


def _check_manifests(config: StudyConfig, store: CellStore, cells: list[Cell], weights: Mapping[str, str | None],
                     allow_mixed: bool) -> None:
    """Refuse to resume when finished cells were computed under another manifest (:func:`check_resume`).

    Checked before any model loads: everything but device and dtype (which follow from the config's
    load options, part of its digest) and, on Ray or SLURM, the workers' torch threads (the driver
    cannot know them; ``python -m toolkit manifest`` shows them); the tokenizer, chat template and
    prompt by loading only the tokenizer, and only when there are finished cells to compare.
    """
    records = store.records()
    stored = {c.key: records[c.key].get("manifest") for c in cells if c.key in records}
    if not stored:
        return
    expected: dict[str, Manifest] = {}
    fields: dict[str, set[str]] = {}
    every = {f.name for f in dataclasses.fields(Manifest)}
    tokenizers: dict[str, Any] = {}
    shots = study_shots(config)
    for model, dataset in dict.fromkeys((c.model, c.dataset) for c in cells if c.key in stored):
        if model not in tokenizers:
            folder = model_folder(model)
            try:
                tokenizers[model] = None if folder is None else AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError):
                tokenizers[model] = None
        tok = tokenizers[model]
        task = dataclasses.replace(get_task(dataset), n_shot=shots[(model, dataset)])
        manifest = cell_manifest(config, model, task, tok, weights.get(model))
        known = every - MODEL_FIELDS - (TOKENIZER_FIELDS if tok is None else set())
        if weights.get(model) is None:
            known.discard("weights_sha256")
        if config.executor != "local":  # Ray / SLURM workers set their own thread count (Resources.cpus)
            known.discard("torch_threads")
        for c in cells:
            if (c.model, c.dataset) == (model, dataset):
                expected[c.key], fields[c.key] = manifest, known
    check_resume(stored, expected, fields=fields, allow_mixed=allow_mixed, where=f"study {config.run_dir()}")


def run_study(
    config: StudyConfig | None = None, *, progress: bool = True, report: bool = True, allow_mixed: bool = False
) -> pd.DataFrame:
    """Run (or resume) a study on ``config.executor`` and return its tidy table.

    Cells are claimed and saved one file each as they finish (:class:`toolkit._core.store.CellStore`), so
    a killed run, another process or another machine on a shared filesystem resumes without losing
    or repeating a cell; the table is built from the records in grid order and is the same on every
    engine. A failing cell is recorded with its traceback and does not stop the others.

    Returns:
        DataFrame, one row per (cell, metric): model, dataset, selection, level, k, layers, metric,
        value, low, high (bootstrap CI), delta, delta_low, delta_high (paired difference against
        the unpruned model on the same examples), delta_se, delta_df (for the change tests) and,
        on accuracy rows, tost_low, tost_high, equivalent (the (1 - 2 alpha) TOST interval and its
        verdict at ``config.margin``); with ``config.shots`` set, a ``shots`` column after ``k``.
        Metrics: accuracy, ece, mce, adaptive_ece, smooth_ece,
        brier, nll, ece_temperature_scaled, temperature, label_mass, and
        `<faithfulness metric>:<method>` for each attribution method and `random`.

    A resumed study with cells left to compute checks first that its finished cells were computed
    under this run's manifest (library versions, toolkit code, model weights, tokenizer, prompt,
    batch size, seeds; see :mod:`toolkit.models.manifest`) and refuses otherwise, unless ``allow_mixed``
    (a finished study only rebuilds its table and report: nothing would mix). Each record stores
    its manifest (``python -m toolkit manifest <run_dir>`` prints them); ``table.csv`` does not.
    With ``config.length_buckets``, ``faithfulness_by_length.csv`` beside it holds
    :func:`toolkit.study.faithfulness_by_length`.

    Raises:
        InputError: what :func:`check_study` finds, before anything is computed or written.
        MixedManifestError (an InputError): finished cells computed under another manifest, and
            not ``allow_mixed``; the message lists ``field: old -> new``.
        StudyIncomplete: cells failed (tracebacks in ``<run_dir>/failed/``) or could not be finished.
    """
    config = config or StudyConfig()
    check_study(config)
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
    store = CellStore(run_dir)
    cells = list(study_cells(config))
    weights: dict[str, str | None] = {}
    if len(store.done_keys(c.key for c in cells)) < len(cells):  # cells to compute: they must not mix manifests
        weights = {m: None if (folder := model_folder(m)) is None else weights_digest(folder) for m in config.models}
        _check_manifests(config, store, cells, weights, allow_mixed)
    groups = [(m, [c for c in cells if c.model == m]) for m in config.models if any(c.model == m for c in cells)]
    work = functools.partial(_study_work, config=config, datasets=user_datasets(config.datasets), weights=weights)
    result: RunReport = run_cells(groups, work, store=store,
                                  executor=config.executor, resources=config.resources, progress=progress)
    if not result.complete:
        lines = [f"{key}: {err}" for key, err in result.failed.items()]
        lines += [f"{key}: not finished" for key in result.missing] + list(result.errors)
        raise StudyIncomplete(
            f"{len(result.done)} of {len(cells)} cells finished in {run_dir}; rerun to retry the rest:\n  "
            + "\n  ".join(lines)
        )
    records = load_results(config)
    table = tidy_table(records, config)
    table.to_csv(run_dir / "table.csv", index=False)
    if any(r["k"] > 0 for r in records):  # every test's inputs; `python -m toolkit verdicts audit.csv` recomputes them
        primary = [m.name for m in claim_metrics(config.claims, measured=measured_metrics(table))
                   if m.test != "noninferiority"]
        audit_table(records, margin=config.margin, alpha=config.alpha, primary=primary, n_boot=config.n_boot,
                    seed=config.seed).to_csv(run_dir / "audit.csv", index=False)
    by_length = None
    if config.length_buckets:
        by_length = faithfulness_by_length(records, n_boot=config.n_boot, seed=config.seed)
        by_length.to_csv(run_dir / "faithfulness_by_length.csv", index=False)
    if report:
        head = summary(table, correction=config.correction, alpha=config.alpha, claims=config.claims)
        write_report(run_dir, table, head, report_frames(records), digest=config.digest(), by_length=by_length,
                     shots=study_shots(config) if config.shots != 0 else None)
    return table


def check_study(config: StudyConfig) -> None:
    """Check what can be known about ``config`` before any model loads; :func:`run_study` calls it first.

    Every dataset is registered and has the splits and examples the study draws (and the train
    examples for its demonstrations); ``skip_at_chance`` leaves a cell; every attribution
    method exists for ``config.attribution_backend``; no level asks for more attention layers than a
    model has, where the depth can be read from the model's ``config.json`` without its weights (a
    local folder, a built-in model already converted, a hub id in the local cache). Otherwise the
    depth is checked right after the model loads, before its first cell.

    Raises:
        InputError (a ValueError): the first problem found, naming the value and what is allowed.
    """
    if not isinstance(config, StudyConfig):
        raise InputTypeError(f"config must be a StudyConfig, got a {type(config).__name__}")
    for dataset in config.datasets:
        study_data(dataset, config)
    for model, dataset in study_pairs(config):  # skip_at_chance leaves a cell; the train split holds the shots
        if config.shots != 0:
            study_data(dataset, config, model)
    for method in config.methods:
        check_method(method, config.attribution_backend)
    for model in config.models:
        _check_model_name(model)
        depth = model_depth(model, config.load_options(model).get("revision"))
        if depth is not None:
            _check_levels(config, model, depth)


def _check_model_name(name: str) -> None:
    """Refuse a model name that is surely neither a folder, a built-in model nor a hub id (``org/name``).

    Only the sure cases: no ``/`` at all (a mistyped built-in name), or a path (``/``, ``~``, ``./``,
    ``../``) to nothing. :func:`toolkit.load_model` decides the rest when it loads.
    """
    path = Path(name).expanduser()
    if path.is_dir() or name in BUILTIN_MODELS:
        return
    allowed = f"expected a model folder, a built-in model {sorted(BUILTIN_MODELS)} or a hub id 'org/name'"
    if path.exists():
        raise InputError(f"model {name!r} is a file, not a model folder; {allowed}")
    if "/" not in name:
        raise InputError(f"unknown model {name!r}: not a built-in model and no such folder; {allowed}")
    if name.startswith(("/", "~", "./", "../")):
        raise InputError(f"model folder {name!r} does not exist; {allowed}")


def model_depth(name: str, revision: str | None = None) -> int | None:
    """Decoder layers of model ``name`` from its config.json alone (no weights, no download); None if not at hand."""
    path = Path(name).expanduser()
    source = str(path) if path.is_dir() else name
    if not path.is_dir() and name in BUILTIN_MODELS:
        source = str(cache_dir() / name)
        if not (Path(source) / "config.json").is_file():
            return None
    try:
        if (Path(source) / PRUNING_SPEC).is_file():  # a structural checkpoint: its model_type is the toolkit's own
            model_config = stock_config(source)
        else:
            model_config = AutoConfig.from_pretrained(source, local_files_only=True, revision=revision)
    except (OSError, ValueError, KeyError):
        return None
    depth = getattr(model_config.get_text_config(), "num_hidden_layers", None)
    return int(depth) if is_int(depth) and depth > 0 else None


def _check_levels(config: StudyConfig, model: str, n_layers: int) -> None:
    """Every level of ``config`` is a number of attention layers that ``model`` (``n_layers`` deep) has."""
    too_deep = [k for k in config.levels if is_int(k) and k > n_layers]  # a fraction in (0, 1) always fits
    if too_deep:
        raise InputError(
            f"StudyConfig.levels {too_deep} ask(s) for more attention layers than model {model!r} has ({n_layers}); "
            f"allowed: integers 0..{n_layers} or fractions of the depth in (0, 1)"
        )
