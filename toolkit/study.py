"""The study runner: models x datasets x pruning levels x layer selections x attribution methods.

Every cell (one model, dataset, selection metric and number k of dropped attention layers) scores
the test examples, fits a temperature on the validation examples, explains a subset of the test
examples with each attribution method and measures erasure faithfulness beside a random ranking
baseline. Each finished cell is appended to `<output_dir>/<config hash>/cells.jsonl` at once, so a
killed run resumes where it stopped and the final table is the same as an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer

from .calibration import REPORT_METRICS, TemperatureScaler, calibration_report, compare_calibration, ece
from .checkpoints import stock_config
from .data import DatasetSpec, get_task, load_dataset, restore_datasets, user_datasets
from .decisions import accuracy_tost, adjust_tests, misalignment, power_table
from .executors import EXECUTORS, Resources, RunReport, run_cells
from .faithfulness import METRICS as FAITHFULNESS_METRICS
from .faithfulness import model_faithfulness
from .importance import IMPORTANCE_METRICS, SELECTION_STRATEGIES, attention_importance, choose_layers, select_layers
from .manifest import MODEL_FIELDS, TOKENIZER_FIELDS, Manifest, build_manifest, check_resume, weights_digest
from .adapters import decoder_layers
from .attribution import check_method
from .models import BUILTIN_MODELS, cache_dir, load_model
from .prompts import split_words
from .pruning import PRUNING_SPEC, drop_attention
from .report import write_report
from .scoring import frame_logprobs, frame_probs, predict, prediction_frame
from .stats import mean_ci, paired_bootstrap
from .store import CellStore
from .validation import InputError, InputTypeError, check_choice, check_int, check_probability, is_int, short_repr

__all__ = ["StudyConfig", "check_study", "load_results", "record_frame", "resolve_level", "run_study", "summary"]

PROFILES = ("full", "quick", "ci")
CORRECTIONS = ("holm", "bh")
_Z975 = 1.959963984540054  # standard normal 97.5% quantile
_NOT_IN_DIGEST = frozenset({"output_dir", "margin", "alpha", "correction", "executor", "resources"})
# Table rows per cell: calibration's report metrics, then faithfulness's metrics per method with
# flip_rate last (the table's row order since the first studies; a stable sort keeps the rest).
TABLE_FAITHFULNESS = tuple(sorted(FAITHFULNESS_METRICS, key=lambda m: m == "flip_rate"))


@dataclass(frozen=True)
class StudyConfig:
    """What a study measures. Defaults describe the default study (<= 15 min on 2 CPU cores).

    Attributes:
        models: built-in names, local folders or hub ids.
        datasets: bundled or registered dataset names.
        levels: how many attention layers to drop: an int is k layers (0 = the unpruned reference);
            a float in (0, 1) is a fraction of the model's depth, k = round(f * n_layers) (at least 1),
            so one config spans models of different depth (see :func:`resolve_level`).
        selections: how the k layers are chosen: importance metrics (`IMPORTANCE_METRICS`).
        strategy: `one_shot` or `iterative` selection.
        methods: attribution methods for faithfulness.
        attribution_backend: `fast` (batched gradients) or `inseq`.
        n_eval: test examples per dataset for accuracy and calibration.
        n_validation: validation examples for temperature scaling.
        n_importance: train texts for similarity importance; labelled validation examples for loss_delta.
        n_faithfulness: test examples explained per cell: the first of the n_eval examples that have
            at most `max_words` words (NAOPC's bound search costs grow with the square of the length).
        max_words: longest text (in words) used for faithfulness.
        n_random: random rankings per example for the faithfulness baseline.
        naopc: search each sentence's AOPC bounds for NAOPC (the dominant cost of faithfulness);
            False is the cheaper AOPC-only study: the change tests then use AOPC comprehensiveness.
        n_boot: bootstrap resamples for every CI.
        seed: seeds subsampling, random selections, random rankings and bootstraps.
        batch_size: examples per forward pass.
        output_dir: where results, figures and the report go.
        margin: equivalence margin for "accuracy holds": paired TOST of the accuracy difference.
        alpha: size of every test (the TOST, and the familywise / false-discovery level of the
            change tests).
        correction: multiplicity correction of the change tests: ``holm`` (familywise) or ``bh``
            (Benjamini-Hochberg, false discovery rate).
        executor: where cells run: ``local`` (this process), ``ray`` or ``slurm``.
        resources: what each worker task asks of the engine (:class:`toolkit.executors.Resources`).
        device, dtype, device_map: passed to :func:`toolkit.load_model` for every model;
            ``model_options`` overrides them per model (e.g. ``{"org/big": {"device_map": "auto"}}``).

    ``margin``, ``alpha``, ``correction``, ``executor``, ``resources`` and ``output_dir`` change no
    cell, so they are not part of :meth:`digest`: rerunning with another margin or engine reuses
    (and resumes) the same cells.
    """

    models: tuple[str, ...] = ("smollm2-135m",)
    datasets: tuple[str, ...] = ("uci_yelp",)
    levels: tuple[int | float, ...] = (0, 1, 2, 4, 6)
    selections: tuple[str, ...] = ("cosine",)
    strategy: str = "one_shot"
    methods: tuple[str, ...] = ("saliency", "input_x_gradient")
    attribution_backend: str = "fast"
    n_eval: int = 500
    n_validation: int = 50
    n_importance: int = 16
    n_faithfulness: int = 80
    max_words: int = 8
    n_random: int = 2
    naopc: bool = True
    n_boot: int = 500
    seed: int = 0
    batch_size: int = 16
    output_dir: str = "results"
    margin: float = 0.05
    alpha: float = 0.05
    correction: str = "holm"
    executor: str = "local"
    resources: Resources = Resources()
    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "levels", "selections", "methods"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float, os.PathLike)) or not isinstance(value, Iterable):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise ValueError(f"StudyConfig.{name} is empty; give at least one")
        self._check_names()
        for s in self.selections:
            check_choice(s, "selection", IMPORTANCE_METRICS)
        check_choice(self.strategy, "strategy", SELECTION_STRATEGIES)
        if self.attribution_backend not in ("fast", "inseq"):
            raise ValueError(f"unknown attribution_backend {self.attribution_backend!r}; expected 'fast' or 'inseq'")
        for k in self.levels:
            if isinstance(k, bool) or not isinstance(k, (int, float)) or (isinstance(k, int) and k < 0) or (
                isinstance(k, float) and not 0.0 < k < 1.0
            ):
                raise ValueError(
                    f"levels must be integers k >= 0 (layers to drop) or fractions of the depth in (0, 1), got {k!r}"
                )
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels has duplicates: {list(self.levels)}")
        if all(k == 0 for k in self.levels):
            raise InputError(
                f"StudyConfig.levels={list(self.levels)} has no pruned level: a study compares pruned models with "
                "the unpruned one (level 0); add a level k >= 1 (layers to drop) or a fraction of the depth in (0, 1)"
            )
        for name in ("n_eval", "n_validation", "n_importance", "n_faithfulness", "n_boot", "batch_size", "max_words"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"StudyConfig.{name}", 1))
        if self.n_faithfulness > self.n_eval:
            raise ValueError(f"n_faithfulness ({self.n_faithfulness}) cannot exceed n_eval ({self.n_eval})")
        if not isinstance(self.naopc, bool):
            raise ValueError(f"StudyConfig.naopc={self.naopc!r}; expected true or false")
        for name in ("margin", "alpha"):
            object.__setattr__(self, name, check_probability(getattr(self, name), f"StudyConfig.{name}"))
        check_choice(self.correction, "correction", CORRECTIONS)
        check_choice(self.executor, "executor", EXECUTORS)
        if isinstance(self.resources, Mapping):
            fields = sorted(f.name for f in dataclasses.fields(Resources))
            bad = sorted(map(str, set(self.resources) - set(fields)))
            if bad:
                raise InputError(f"StudyConfig.resources has unknown field(s) {bad}; allowed: {fields}")
            object.__setattr__(self, "resources", Resources(**self.resources))
        if not isinstance(self.resources, Resources):
            raise ValueError(f"StudyConfig.resources={self.resources!r}; expected a mapping of Resources fields")
        if not isinstance(self.model_options, Mapping):
            raise ValueError(f"StudyConfig.model_options={self.model_options!r}; expected model -> options mapping")
        allowed = {"device", "dtype", "device_map", "revision"}
        for model, options in self.model_options.items():
            if model not in self.models:
                raise ValueError(f"model_options names {model!r}, which is not in models {list(self.models)}")
            if not isinstance(options, Mapping):
                raise InputError(f"model_options[{model!r}]={short_repr(options)}; expected a mapping of load options "
                                 f"({sorted(allowed)})")
            bad = sorted(set(options) - allowed)
            if bad:
                raise ValueError(f"model_options[{model!r}] has unknown option(s) {bad}; allowed: {sorted(allowed)}")

    def _check_names(self) -> None:
        """Models and datasets are names (a path-like model becomes its str); seed, output_dir and the
        load options have the types the runner needs (a str seed would be repeated, not added)."""
        for name, what in (("models", "a model name, folder or hub id"), ("datasets", "a dataset name")):
            values = tuple(os.fspath(v) if isinstance(v, os.PathLike) else v for v in getattr(self, name))
            object.__setattr__(self, name, values)
            for i, v in enumerate(values):
                if not isinstance(v, str) or not v.strip():
                    raise InputError(f"StudyConfig.{name}[{i}] is {short_repr(v)}; expected {what} (a non-empty str)")
        for i, v in enumerate(self.selections + self.methods):
            if not isinstance(v, str):
                kind = "selections" if i < len(self.selections) else "methods"
                raise InputError(f"StudyConfig.{kind} holds {short_repr(v)} ({type(v).__name__}); expected names (str)")
        if not is_int(self.seed):
            raise InputError(f"StudyConfig.seed={self.seed!r} is invalid; expected an integer")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "n_random", check_int(self.n_random, "StudyConfig.n_random", 0))
        if isinstance(self.output_dir, os.PathLike):
            object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise InputError(f"StudyConfig.output_dir={self.output_dir!r}; expected a folder path (str)")
        for name in ("device", "dtype", "device_map"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"StudyConfig.{name}={short_repr(value)}; expected a str or None")

    def load_options(self, model: str) -> dict[str, Any]:
        """Keyword arguments of :func:`toolkit.load_model` for ``model``."""
        base = {k: getattr(self, k) for k in ("device", "dtype", "device_map") if getattr(self, k) is not None}
        return {**base, **dict(self.model_options.get(model, {}))}
    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model_options"] = {k: dict(v) for k, v in self.model_options.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        if not isinstance(data, Mapping):
            raise InputTypeError(f"a study config is a mapping of StudyConfig fields, got a {type(data).__name__} "
                                 f"({short_repr(data)})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ValueError(f"unknown study option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_overrides(self, **changes: Any) -> StudyConfig:
        """A copy with the given fields changed (None values are ignored: "not given")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> StudyConfig:
        """Read a config from JSON, YAML or TOML (by file extension).

        Raises:
            InputError (a ValueError, one line each): another extension; a missing or unreadable
                file; text that does not parse (the file, line and the parser's reason); an empty
                file or one without settings (it would silently be the full default study); a top
                level that is not a mapping; unknown or invalid fields.
        """
        path = Path(path)
        where = f"config file {str(path)!r}"
        if path.suffix not in _CONFIG_SUFFIXES:
            raise InputError(f"{where} must end in .json, .yaml, .yml or .toml")
        if not path.is_file():
            raise InputError(f"{where} {'is a folder' if path.is_dir() else 'does not exist'}; expected a "
                             f"{'/'.join(_CONFIG_SUFFIXES)} file of StudyConfig fields")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{where} cannot be read: {err}") from None
        data = _parse_config(text, path.suffix, where)
        if data is None or (isinstance(data, Mapping) and not data):
            raise InputError(
                f"{where} is empty (no settings), which would run the full default study; give the fields to set "
                "(e.g. `levels: [0, 2, 4]`), or use StudyConfig() / leave out --config for the default study"
            )
        if not isinstance(data, Mapping):
            raise InputError(f"{where} holds {short_repr(data)} ({type(data).__name__}) at the top level; expected "
                             "a mapping of StudyConfig fields, e.g. `levels: [0, 2, 4]`")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None

    @classmethod
    def profile(cls, name: str = "full", **overrides: Any) -> StudyConfig:
        """The default study (`full`), a `quick` one for a first look, or the tiny `ci` one."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; expected one of {list(PROFILES)}")
        sizes = {
            "full": {},
            "quick": dict(levels=(0, 2, 8), selections=("cosine", "random"), n_eval=60, n_validation=30,
                          n_importance=8, n_faithfulness=4, n_random=2, n_boot=200, max_words=10),
            "ci": dict(levels=(0, 2, 6), selections=("cosine", "random"), methods=("saliency",), n_eval=16,
                       n_validation=12, n_importance=4, n_faithfulness=2, n_random=1, n_boot=50, max_words=8),
        }[name]
        return cls(**{**sizes, **overrides})

    def digest(self) -> str:
        """Content hash of everything that changes a cell (not where or how it runs, nor the decisions).

        Device options enter only when set, so configs from before they existed keep their hash.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_DIGEST}
        for name in ("device", "dtype", "device_map", "model_options"):
            if not data[name]:
                del data[name]
        if data["naopc"]:  # the default, as before the option existed
            del data["naopc"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.digest()


_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml")


def _parse_config(text: str, suffix: str, where: str) -> Any:
    """The parsed text of a config file; a syntax error becomes one InputError line naming the file and line."""
    if not text.strip():
        return None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{where} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{where} is not valid TOML: {' '.join(str(err).split())}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{where} is not valid YAML: {problem}{at}") from None


def resolve_level(level: int | float, n_layers: int) -> int:
    """The number k of attention layers a study level drops in a model of ``n_layers`` layers.

    An int is k itself; a fraction f in (0, 1) gives k = floor(f * n_layers + 1/2), at least 1
    (0.1 of 30 layers is 3, of 18 layers 2; 0.33 of 30 is 10, of 18 is 6).

    Raises:
        ValueError: k larger than ``n_layers``.
    """
    k = level if isinstance(level, int) else max(1, int(np.floor(level * n_layers + 0.5)))
    if k > n_layers:
        raise ValueError(f"level {level!r} asks for {k} layers, but the model has {n_layers}")
    return k


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    selection: str
    level: int | float

    @property
    def key(self) -> str:
        return f"{self.model}|{self.dataset}|{self.selection}|{self.level}"

    def seed(self, base: int) -> int:
        """A per-cell seed: results never depend on which cells ran earlier in the process."""
        return (base * 1_000_003 + zlib.crc32(self.key.encode())) % (2**31)


def _cells(config: StudyConfig) -> Iterator[Cell]:
    """Cells in run order; k = 0 once per (model, dataset) under the name 'none'."""
    for model in config.models:
        for dataset in config.datasets:
            if 0 in config.levels:
                yield Cell(model, dataset, "none", 0)
            for selection in config.selections:
                for level in config.levels:
                    if level != 0:
                        yield Cell(model, dataset, selection, level)


# ---- one cell ----------------------------------------------------------------------------------
def _layers_for(
    cell: Cell, config: StudyConfig, model, tok, importance_cache: dict, data: dict
) -> tuple[list[int], pd.Series | None]:
    k = resolve_level(cell.level, len(decoder_layers(model)))
    if k == 0:
        return [], None
    opts: dict[str, Any] = dict(batch_size=min(config.batch_size, 8), seed=cell.seed(config.seed))
    if cell.selection == "loss_delta":
        val = data["importance_labelled"]
        opts.update(task=val.task, labels=val.labels)
        texts = val.texts
    else:
        texts = data["importance_texts"]
    if config.strategy == "iterative" and cell.selection != "random":
        return choose_layers(model, tok, texts, k, metric=cell.selection, strategy="iterative", **opts), None
    key = (cell.model, cell.dataset, cell.selection)
    if key not in importance_cache:
        if cell.selection == "random":
            opts["seed"] = Cell(cell.model, cell.dataset, "random", 0).seed(config.seed)
        importance_cache[key] = attention_importance(model, tok, texts, metric=cell.selection, **opts)
    return select_layers(importance_cache[key], k), importance_cache[key]


def _run_cell(cell: Cell, config: StudyConfig, model, tok, data: dict, importance_cache: dict) -> dict:
    t0 = time.perf_counter()
    layers, importance = _layers_for(cell, config, model, tok, importance_cache, data)
    seed = cell.seed(config.seed)
    test, val = data["test"], data["validation"]
    faith_examples = [e for e in test.examples if len(split_words(e.text)) <= config.max_words][: config.n_faithfulness]
    if not faith_examples:
        raise ValueError(f"no test example of {cell.dataset!r} has at most max_words={config.max_words} words")
    if len(faith_examples) < config.n_faithfulness:
        warnings.warn(f"{cell.key}: only {len(faith_examples)} of the n_eval={config.n_eval} test examples have at most "
                      f"max_words={config.max_words} words; faithfulness uses those, not n_faithfulness="
                      f"{config.n_faithfulness} (raise n_eval or max_words)", stacklevel=2)
    with drop_attention(model, layers):
        pred = predict(model, tok, test, batch_size=config.batch_size, progress=False)
        val_pred = predict(model, tok, val, batch_size=config.batch_size, progress=False)
        per_example, _ = model_faithfulness(
            model, tok, test.task, faith_examples, config.methods, backend=config.attribution_backend,
            batch_size=config.batch_size, n_random=config.n_random, seed=seed, n_boot=config.n_boot,
            naopc=config.naopc,
        )
    # log-probabilities are valid logits for the restricted softmax: T rescales them
    scaler = TemperatureScaler().fit(frame_logprobs(val_pred), val_pred.label.to_numpy())
    scaled = scaler.transform(frame_logprobs(pred))
    return {
        "cell": cell.key,
        "model": cell.model,
        "dataset": cell.dataset,
        "selection": cell.selection,
        "level": cell.level,
        "k": len(layers),
        "layers": layers,
        "importance": None if importance is None else [None if np.isnan(v) else float(v) for v in importance],
        "ids": pred.id.tolist(),
        "labels": pred.label.tolist(),
        "probs": frame_probs(pred).tolist(),
        "label_names": list(pred.attrs["label_names"]),
        "label_mass": pred.label_mass.tolist(),
        "temperature": float(scaler.temperature_),
        "ece_scaled": float(ece(scaled, pred.label.to_numpy())),
        "faithfulness": json.loads(per_example.to_json(orient="records")),
        "seconds": time.perf_counter() - t0,
    }


# ---- the table ---------------------------------------------------------------------------------
def record_frame(record: dict) -> pd.DataFrame:
    """The prediction frame of one persisted cell (as :func:`toolkit.scoring.predict` returned it)."""
    return prediction_frame(record["ids"], record["labels"], record["probs"], record["label_names"], record["label_mass"])


def _tidy(records: list[dict], config: StudyConfig) -> pd.DataFrame:
    """One row per (cell, metric): value, CI, and the paired difference against the unpruned cell."""
    rows: list[dict] = []
    refs = {(r["model"], r["dataset"]): r for r in records if r["k"] == 0}
    for r in records:
        level = r.get("level", r["k"])
        base = dict(model=r["model"], dataset=r["dataset"], selection=r["selection"], level=level, k=r["k"],
                    layers=" ".join(map(str, r["layers"])))
        seed = Cell(r["model"], r["dataset"], r["selection"], level).seed(config.seed)
        pred = record_frame(r)
        report = calibration_report(pred, n_boot=config.n_boot, seed=seed).iloc[0]
        ref = refs.get((r["model"], r["dataset"]))
        ref_pred = record_frame(ref) if ref is not None else None
        paired = (
            compare_calibration(ref_pred, pred, n_boot=config.n_boot, seed=seed).set_index("metric")
            if ref_pred is not None
            else None
        )
        for metric in REPORT_METRICS:
            row = dict(base, metric=metric, value=float(report[metric]), low=float(report[f"{metric}_low"]),
                       high=float(report[f"{metric}_high"]))
            if paired is not None and metric in paired.index:
                d = paired.loc[metric]
                # se of the difference from its 95% paired-bootstrap interval (normal approximation)
                row.update(delta=float(d["diff"]), delta_low=float(d["low"]), delta_high=float(d["high"]),
                           delta_se=float(d["high"] - d["low"]) / (2 * _Z975))
            if metric == "accuracy" and ref is not None and r["k"] > 0:
                tost = accuracy_tost(ref_pred.correct.to_numpy(), pred.correct.to_numpy(),
                                     margin=config.margin, alpha=config.alpha)
                row.update(tost_low=tost.low, tost_high=tost.high, equivalent=tost.equivalent, margin=config.margin)
            rows.append(row)
        rows.append(dict(base, metric="ece_temperature_scaled", value=r["ece_scaled"], low=np.nan, high=np.nan))
        rows.append(dict(base, metric="temperature", value=r["temperature"], low=np.nan, high=np.nan))
        rows.append(dict(base, metric="label_mass", value=float(np.mean(r["label_mass"])), low=np.nan, high=np.nan))
        faith = pd.DataFrame(r["faithfulness"])
        ref_faith = pd.DataFrame(ref["faithfulness"]) if ref is not None else None
        for method, group in faith.groupby("method", sort=True):
            for metric in TABLE_FAITHFULNESS:
                if metric not in group:
                    continue
                values = group[metric].to_numpy(dtype=float)
                ok = ~np.isnan(values)
                if not ok.any():
                    continue
                ci = mean_ci(values[ok], n_boot=config.n_boot, seed=seed)
                row = dict(base, metric=f"{metric}:{method}", value=ci.estimate, low=ci.low, high=ci.high)
                if ref_faith is not None:
                    ref_vals = ref_faith[ref_faith.method == method].set_index("example")[metric]
                    cur = group.set_index("example")[metric]
                    both = pd.concat([ref_vals, cur], axis=1, keys=["a", "b"]).dropna()
                    if len(both) > 0:
                        d = paired_bootstrap(np.mean, (both.a.to_numpy(),), (both.b.to_numpy(),),
                                             n_boot=config.n_boot, seed=seed)
                        row.update(delta=d.estimate, delta_low=d.low, delta_high=d.high)
                    if len(both) > 1:  # paired t: se of the mean difference, n - 1 degrees of freedom
                        diff = both.b.to_numpy() - both.a.to_numpy()
                        row.update(delta_se=float(np.std(diff, ddof=1) / np.sqrt(len(diff))), delta_df=len(diff) - 1)
                rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("delta", "delta_low", "delta_high", "delta_se", "delta_df", "tost_low", "tost_high", "equivalent",
                "margin"):
        if col not in table:
            table[col] = np.nan
    return table


def _report_frames(records: list[dict]) -> dict[tuple[str, str], dict]:
    """What the report draws per (model, dataset) besides the table: prediction frames and importance.

    ``frames``: the unpruned cell and the cells of the first pruning selection, by ``k=<k>``;
    ``selection``: that selection; ``importance``: importance profile per selection (not random).
    """
    out: dict[tuple[str, str], dict] = {}
    for key in dict.fromkeys((r["model"], r["dataset"]) for r in records):
        recs = [r for r in records if (r["model"], r["dataset"]) == key]
        first_sel = next((r["selection"] for r in recs if r["k"] > 0), None)
        out[key] = {
            "selection": first_sel,
            "frames": {f"k={r['k']}": record_frame(r) for r in recs if r["k"] == 0 or r["selection"] == first_sel},
            "importance": {r["selection"]: r["importance"] for r in recs
                           if r.get("importance") and r["selection"] != "random"},
        }
    return out


def load_results(config: StudyConfig) -> list[dict]:
    """The persisted cells of a study (finished ones only), in grid order."""
    records = CellStore(config.run_dir()).records()
    return [records[c.key] for c in _cells(config) if c.key in records]


class StudyIncomplete(RuntimeError):
    """Some cells failed or were left unfinished; the finished ones are saved, a rerun retries the rest."""


def _study_work(
    model_name: str, cells: list[Cell], store: CellStore, *, config: StudyConfig, datasets: dict[str, DatasetSpec],
    weights: Mapping[str, str | None] | None = None,
) -> None:
    """One worker task: load the model once, compute the cells it can claim (top level: workers import it).

    ``datasets``: the user datasets the driver registered (a worker process starts without them).
    ``weights``: the weights digest per model, hashed once by the driver (None: hash here).
    Every record carries the manifest it was computed under (:mod:`toolkit.manifest`).
    """
    restore_datasets(datasets)
    model, tok = load_model(model_name, **config.load_options(model_name))
    _check_levels(config, model_name, len(decoder_layers(model)))  # before any cell, when check_study could not
    data: dict[str, dict] = {}
    importance_cache: dict = {}
    digest = (weights or {}).get(model_name)

    def compute(cell: Cell) -> dict:
        if cell.dataset not in data:
            data[cell.dataset] = _study_data(cell.dataset, config)
            data[cell.dataset]["manifest"] = _cell_manifest(config, model_name, data[cell.dataset]["test"].task,
                                                            tok, digest, model=model)
        torch.manual_seed(cell.seed(config.seed))
        record = _run_cell(cell, config, model, tok, data[cell.dataset], importance_cache)
        return {**record, "manifest": data[cell.dataset]["manifest"].to_dict()}

    for cell in cells:
        store.run_cell(cell.key, functools.partial(compute, cell))


def _cell_manifest(config: StudyConfig, model_name: str, task, tok, digest: str | None, model=None) -> Manifest:
    """The manifest of ``model_name``'s cells on one dataset (``model`` None: before it loads, in the driver)."""
    folder = None if digest is not None or model is not None else _model_folder(model_name)
    return build_manifest(model, tok, model_id=model_name, weights=folder, weights_sha256=digest,
                          task=task if tok is not None else None, batch_size=config.batch_size,
                          seeds={"seed": config.seed}, config_digest=config.digest())


def _model_folder(name: str) -> Path | None:
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
    for model, dataset in dict.fromkeys((c.model, c.dataset) for c in cells if c.key in stored):
        if model not in tokenizers:
            folder = _model_folder(model)
            try:
                tokenizers[model] = None if folder is None else AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError):
                tokenizers[model] = None
        tok = tokenizers[model]
        manifest = _cell_manifest(config, model, get_task(dataset), tok, weights.get(model))
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

    Cells are claimed and saved one file each as they finish (:class:`toolkit.store.CellStore`), so
    a killed run, another process or another machine on a shared filesystem resumes without losing
    or repeating a cell; the table is built from the records in grid order and is the same on every
    engine. A failing cell is recorded with its traceback and does not stop the others.

    Returns:
        DataFrame, one row per (cell, metric): model, dataset, selection, level, k, layers, metric,
        value, low, high (bootstrap CI), delta, delta_low, delta_high (paired difference against
        the unpruned model on the same examples), delta_se, delta_df (for the change tests) and,
        on accuracy rows, tost_low, tost_high, equivalent (the (1 - 2 alpha) TOST interval and its
        verdict at ``config.margin``). Metrics: accuracy, ece, mce, adaptive_ece, smooth_ece,
        brier, nll, ece_temperature_scaled, temperature, label_mass, and
        `<faithfulness metric>:<method>` for each attribution method and `random`.

    A resumed study with cells left to compute checks first that its finished cells were computed
    under this run's manifest (library versions, toolkit code, model weights, tokenizer, prompt,
    batch size, seeds; see :mod:`toolkit.manifest`) and refuses otherwise, unless ``allow_mixed``
    (a finished study only rebuilds its table and report: nothing would mix). Each record stores
    its manifest (``python -m toolkit manifest <run_dir>`` prints them); ``table.csv`` does not.

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
    cells = list(_cells(config))
    weights: dict[str, str | None] = {}
    if len(store.done_keys(c.key for c in cells)) < len(cells):  # cells to compute: they must not mix manifests
        weights = {m: None if (folder := _model_folder(m)) is None else weights_digest(folder) for m in config.models}
        _check_manifests(config, store, cells, weights, allow_mixed)
    groups = [(m, [c for c in cells if c.model == m]) for m in config.models]
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
    table = _tidy(records, config)
    table.to_csv(run_dir / "table.csv", index=False)
    if report:
        write_report(run_dir, table, summary(table, correction=config.correction, alpha=config.alpha),
                     _report_frames(records), digest=config.digest())
    return table


def check_study(config: StudyConfig) -> None:
    """Check what can be known about ``config`` before any model loads; :func:`run_study` calls it first.

    Every dataset is registered and has the splits and examples the study draws; every attribution
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
        _study_data(dataset, config)
    for method in config.methods:
        check_method(method, config.attribution_backend)
    for model in config.models:
        _check_model_name(model)
        depth = _model_depth(model, config.load_options(model).get("revision"))
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


def _model_depth(name: str, revision: str | None = None) -> int | None:
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


def _study_data(dataset: str, config: StudyConfig) -> dict:
    return {
        "test": load_dataset(dataset, n=config.n_eval, split="test", seed=config.seed),
        "validation": load_dataset(dataset, n=config.n_validation, split="validation", seed=config.seed),
        "importance_texts": load_dataset(dataset, n=config.n_importance, split="train", seed=config.seed).texts,
        "importance_labelled": load_dataset(dataset, n=config.n_importance, split="validation", seed=config.seed + 1),
    }


# ---- the headline views ------------------------------------------------------------------------
def summary(
    table: pd.DataFrame, *, method: str | None = None, correction: str = "holm", alpha: float = 0.05
) -> pd.DataFrame:
    """Per model, dataset, selection and level: the study's claims, each a test with its size.

    - accuracy holds: paired TOST of the accuracy difference at the table's ``margin``
      (``equivalent``; ``tost_low``/``tost_high`` is the (1 - 2 alpha) interval, which must lie
      inside (-margin, margin)). "The CI contains 0" is not evidence that accuracy holds.
    - ECE and NAOPC (comprehensiveness, every attribution method) changed: paired differences
      against the unpruned model, p-values and CIs adjusted for all m such tests in the study
      (``correction``: Holm, familywise error <= alpha; or Benjamini-Hochberg, false discovery
      rate <= alpha, with Benjamini-Yekutieli intervals) - :func:`toolkit.decisions.adjust_tests`.
    - misaligned: accuracy *shown* equivalent and a calibration or faithfulness metric *shown*
      changed (:func:`toolkit.decisions.misalignment`).

    Args:
        method: the attribution method whose NAOPC the table shows (default: the first).
        correction: ``"holm"`` or ``"bh"``.
        alpha: size of the change tests (the TOST's was fixed when the table was built).

    Returns:
        One row per cell: the keys, accuracy, d_accuracy, tost_low, tost_high, equivalent, ece,
        d_ece, ece_low, ece_high (adjusted), ece_changed, ece_ts, naopc, d_naopc, naopc_low,
        naopc_high (adjusted), naopc_changed (``aopc``, ... in an AOPC-only study), misaligned, verdict. ``attrs``: ``method``,
        ``statement`` (the test sizes: margin, alpha, m, the correction and the expected number of
        false flags without it) and ``m``.
    """
    check_choice(correction, "correction", CORRECTIONS)
    if "layers" in table:  # the reference's empty layer list reads back from table.csv as NaN: keep its row
        table = table.assign(layers=table["layers"].fillna("").astype(str))
    # NAOPC, or AOPC in an AOPC-only study (naopc=False): its columns are then named aopc, d_aopc, ...
    short = "naopc" if table.metric.str.startswith("naopc_comprehensiveness:").any() else "aopc"
    faith = f"{short}_comprehensiveness"
    methods = sorted({m.split(":", 1)[1] for m in table.metric if m.startswith(f"{faith}:")} - {"random"})
    if method is None:
        method = methods[0] if methods else "random"
    faith_metric = f"{faith}:{method}"
    keys = ["model", "dataset", "selection", "k", "layers"]
    if "level" in table and any(isinstance(v, float) and not float(v).is_integer() for v in table["level"]):
        keys.insert(3, "level")  # fractions of the depth: show them beside the k they meant per model
    wanted = {"accuracy": "accuracy", "ece": "ece", faith_metric: short, "ece_temperature_scaled": "ece_ts"}
    sub = table[table.metric.isin(wanted)].copy()
    sub["name"] = sub.metric.map(wanted)
    value = sub.pivot_table(index=keys, columns="name", values="value", aggfunc="first")
    delta = sub.pivot_table(index=keys, columns="name", values="delta", aggfunc="first").add_prefix("d_")
    out = value.join(delta).reset_index()

    pruned = table[table.k > 0]
    acc = pruned[pruned.metric == "accuracy"]
    statement = "no pruned cell"
    if len(acc):
        equivalence = acc[keys + ["tost_low", "tost_high", "equivalent", "margin"]].assign(alpha=alpha)
        equivalence["equivalent"] = equivalence["equivalent"].astype(bool)
        change_metrics = ["ece"] + [f"{faith}:{m}" for m in methods]
        tests = pruned[pruned.metric.isin(change_metrics)][keys + ["metric", "delta", "delta_se", "delta_df"]]
        tests = tests.rename(columns={"delta": "estimate", "delta_se": "se", "delta_df": "df"}).reset_index(drop=True)
        adjusted = adjust_tests(tests, method=correction, alpha=alpha)
        verdict = misalignment(equivalence, adjusted, on=keys)
        statement = verdict.statement
        out = out.merge(equivalence[keys + ["tost_low", "tost_high", "equivalent"]], on=keys, how="left")
        for metric, name in (("ece", "ece"), (faith_metric, short)):
            part = adjusted[adjusted.metric == metric][keys + ["ci_low", "ci_high", "changed"]]
            part = part.rename(columns={"ci_low": f"{name}_low", "ci_high": f"{name}_high", "changed": f"{name}_changed"})
            out = out.merge(part, on=keys, how="left")
        out = out.merge(verdict.table[keys + ["misaligned", "verdict"]], on=keys, how="left")
        out.attrs["m"] = int(adjusted["m"].iloc[0]) if len(adjusted) else 0
        out.attrs["margin"] = float(acc["margin"].iloc[0])
    if "misaligned" not in out:
        out["misaligned"], out["verdict"] = False, np.nan
    reference = out["k"] == 0
    out["misaligned"] = out["misaligned"].where(~reference, False).astype(bool)  # the reference is no claim
    out["verdict"] = out["verdict"].where(~reference, "reference (unpruned)")
    out = out.sort_values(["model", "dataset", "k", "selection"], kind="stable")
    cols = keys + [c for c in ("accuracy", "d_accuracy", "tost_low", "tost_high", "equivalent", "ece", "d_ece",
                               "ece_low", "ece_high", "ece_changed", "ece_ts", short, f"d_{short}", f"{short}_low",
                               f"{short}_high", f"{short}_changed", "misaligned", "verdict") if c in out]
    result = out[cols].reset_index(drop=True)
    result.attrs.update(out.attrs, method=method, statement=statement, faithfulness_metric=faith, alpha=alpha,
                        correction=correction)
    return result


# ---- before anything runs: what is done, what it will cost, what it can detect -------------------
# Seconds per cell on 2 idle CPU cores for a model of SmolLM2-135M's size (measured idle: predict
# ~0.034 s per UCI sentence, saliency ~0.29 s per sentence and method, one erased variant ~0.02 s;
# a sentence of <= 8 words (5.2 on average) needs ~4.4 variants per ranking for the curves and the
# decision flip and ~33 for its NAOPC bounds; both scaled here to 10 words and by words^2; the
# loss_delta ranking ~0.11 s per layer and labelled sentence, once per model and dataset).
# A finished cell's own time replaces the model: the median per model of the cells already done.
_SECONDS_PER_SENTENCE = 0.034
_SECONDS_PER_ATTRIBUTION = 0.29
_SECONDS_PER_ERASURE_RANKING = 0.14
_SECONDS_PER_BOUNDS = 1.0
_SECONDS_PER_LOSS_DELTA = 0.11
_ASSUMED_LAYERS = 30
# Paired spread assumed when no pilot cell exists (the default study's SmolLM2 cells): share of
# sentences whose correctness flips, and sd of the per-example NAOPC difference.
PILOT_ASSUMPTIONS = {"p_disc": 0.10, "sd_naopc": 0.25, "sd_ece": 0.6}


def _cell_cost(cell: Cell, config: StudyConfig) -> float:
    words = (config.max_words / 10) ** 2
    seconds = _SECONDS_PER_SENTENCE * (config.n_eval + config.n_validation)
    seconds += _SECONDS_PER_ATTRIBUTION * config.n_faithfulness * len(config.methods)
    seconds += _SECONDS_PER_ERASURE_RANKING * config.n_faithfulness * words * (len(config.methods) + config.n_random)
    if config.naopc:
        seconds += _SECONDS_PER_BOUNDS * config.n_faithfulness * words
    return seconds


def status(config: StudyConfig) -> pd.DataFrame:
    """Every cell of ``config`` with its state and (estimated) cost, without running anything.

    Returns:
        One row per cell in grid order: model, dataset, selection, level, state (``done``,
        ``failed``, ``running`` - claimed by a live worker - or ``todo``), seconds (measured for done
        cells, else estimated: the median of the model's done cells, or the stated cost model),
        estimated (bool), holder (who holds a running cell).
    """
    store = CellStore(config.run_dir())
    records, failures = store.records(), store.failures()
    measured: dict[str, list[float]] = {}
    for rec in records.values():
        measured.setdefault(rec["model"], []).append(float(rec.get("seconds", np.nan)))
    rows = []
    for cell in _cells(config):
        holder = store.holder(cell.key) if cell.key not in records else None
        state = "done" if cell.key in records else "failed" if cell.key in failures else "running" if holder else "todo"
        if state == "done":
            seconds, estimated = float(records[cell.key].get("seconds", np.nan)), False
        else:
            seen = [s for s in measured.get(cell.model, []) if np.isfinite(s)]
            seconds, estimated = (float(np.median(seen)) if seen else _cell_cost(cell, config)), True
        rows.append(dict(model=cell.model, dataset=cell.dataset, selection=cell.selection, level=cell.level,
                         state=state, seconds=seconds, estimated=estimated,
                         holder="" if not holder else f"{holder.get('host')}:{holder.get('pid')}"))
    out = pd.DataFrame(rows)
    if "loss_delta" in config.selections:  # the ranking itself, once per model and dataset
        out.attrs["ranking_seconds"] = (_SECONDS_PER_LOSS_DELTA * _ASSUMED_LAYERS * config.n_importance
                                        * len(config.models) * len(config.datasets))
    return out


def plan(config: StudyConfig, *, power: float = 0.8) -> pd.DataFrame:
    """What the config can detect: minimal detectable paired differences and CI half-widths.

    Uses :func:`toolkit.decisions.power_table` with n = ``n_eval`` (accuracy, ECE) and
    ``n_faithfulness`` (NAOPC). The spread comes from a pilot: the finished cells of this config
    (share of sentences whose correctness flips against the unpruned cell; sd of the per-example
    NAOPC difference; ECE's paired-bootstrap se times sqrt(n)), else :data:`PILOT_ASSUMPTIONS`.
    Change tests are sized at alpha / m (Bonferroni, the conservative end of Holm) with m the
    number of change tests the study makes.

    Returns:
        :func:`toolkit.decisions.power_table`'s columns plus ``source`` (pilot or assumed) and
        ``test_alpha``.
    """
    records = load_results(config)
    pilot = dict(PILOT_ASSUMPTIONS)
    source = "assumed"
    if any(r["k"] > 0 for r in records):
        table = _tidy(records, config)
        refs = {(r["model"], r["dataset"]): record_frame(r) for r in records if r["k"] == 0}
        flips = [float(np.mean(record_frame(r).correct.to_numpy() != refs[(r["model"], r["dataset"])].correct.to_numpy()))
                 for r in records if r["k"] > 0 and (r["model"], r["dataset"]) in refs]
        faith = "naopc" if config.naopc else "aopc"  # the change test's faithfulness metric
        naopc = table[table.metric.str.startswith(f"{faith}_comprehensiveness:") & (table.k > 0)]
        ece_rows = table[(table.metric == "ece") & (table.k > 0)]
        if flips:
            pilot["p_disc"] = max(float(np.mean(flips)), 1e-3)
            source = f"pilot ({len(flips)} pruned cells)"
        if naopc.delta_se.notna().any():
            pilot["sd_naopc"] = float(np.nanmedian(naopc.delta_se * np.sqrt(naopc.delta_df + 1)))
        if ece_rows.delta_se.notna().any():
            pilot["sd_ece"] = float(np.nanmedian(ece_rows.delta_se) * np.sqrt(config.n_eval))
    n_pruned = sum(1 for c in _cells(config) if c.level != 0)
    m = max(1, n_pruned * (1 + len(config.methods)))
    test_alpha = config.alpha / m
    acc = power_table(pd.DataFrame([{"metric": "accuracy", "n": config.n_eval, "p_disc": pilot["p_disc"]}]),
                      alpha=config.alpha, power=power, margin=config.margin)
    changes = power_table(pd.DataFrame([
        {"metric": "ece", "n": config.n_eval, "sd": pilot["sd_ece"]},
        {"metric": "naopc" if config.naopc else "aopc", "n": config.n_faithfulness, "sd": pilot["sd_naopc"]},
    ]), alpha=test_alpha, power=power, margin=config.margin)
    out = pd.concat([acc.assign(test_alpha=config.alpha), changes.assign(test_alpha=test_alpha)], ignore_index=True)
    out["source"] = source
    out.attrs.update(m=m, margin=config.margin)
    return out
