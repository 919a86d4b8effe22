"""The study runner: models x datasets x pruning levels x layer selections x attribution methods.

Every cell (one model, dataset, selection metric and number k of dropped attention layers) scores
the test examples, fits a temperature on the validation examples, explains a subset of the test
examples with each attribution method and measures erasure faithfulness beside a random ranking
baseline. Each finished cell is appended to `<output_dir>/<config hash>/cells.jsonl` at once, so a
killed run resumes where it stopped and the final table is the same as an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .calibration import REPORT_METRICS, TemperatureScaler, calibration_report, compare_calibration, ece
from .data import load_dataset
from .faithfulness import METRICS as FAITHFULNESS_METRICS
from .faithfulness import model_faithfulness
from .importance import IMPORTANCE_METRICS, SELECTION_STRATEGIES, attention_importance, choose_layers, select_layers
from .adapters import decoder_layers
from .models import load_model
from .prompts import split_words
from .pruning import drop_attention
from .report import write_report
from .scoring import frame_logprobs, frame_probs, predict, prediction_frame
from .stats import mean_ci, paired_bootstrap
from .validation import check_choice, check_int

__all__ = ["StudyConfig", "load_results", "record_frame", "resolve_level", "run_study", "summary"]

PROFILES = ("full", "quick", "ci")
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
        n_boot: bootstrap resamples for every CI.
        seed: seeds subsampling, random selections, random rankings and bootstraps.
        batch_size: examples per forward pass.
        output_dir: where results, figures and the report go.
    """

    models: tuple[str, ...] = ("smollm2-135m",)
    datasets: tuple[str, ...] = ("uci_yelp",)
    levels: tuple[int | float, ...] = (0, 1, 2, 3, 4, 6, 8, 10)
    selections: tuple[str, ...] = ("cosine", "loss_delta", "random")
    strategy: str = "one_shot"
    methods: tuple[str, ...] = ("saliency", "input_x_gradient")
    attribution_backend: str = "fast"
    n_eval: int = 100
    n_validation: int = 50
    n_importance: int = 16
    n_faithfulness: int = 6
    max_words: int = 10
    n_random: int = 3
    n_boot: int = 500
    seed: int = 0
    batch_size: int = 16
    output_dir: str = "results"

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "levels", "selections", "methods"):
            value = getattr(self, name)
            if isinstance(value, (str, int)):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise ValueError(f"StudyConfig.{name} is empty; give at least one")
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
        for name in ("n_eval", "n_validation", "n_importance", "n_faithfulness", "n_boot", "batch_size", "max_words"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"StudyConfig.{name}", 1))
        if self.n_faithfulness > self.n_eval:
            raise ValueError(f"n_faithfulness ({self.n_faithfulness}) cannot exceed n_eval ({self.n_eval})")

    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown study option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> StudyConfig:
        """Read a config from JSON, YAML or TOML (by file extension)."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise ValueError(f"config file {str(path)!r} must end in .json, .yaml, .yml or .toml")
        return cls.from_dict(data or {})

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
        """Content hash of everything that changes results (not where they are written)."""
        data = {k: v for k, v in self.to_dict().items() if k != "output_dir"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.digest()


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


# ---- the persisted cell log --------------------------------------------------------------------
def _read_cells(path: Path) -> dict[str, dict]:
    """Finished cells by key. A truncated last line (a killed write) is ignored; first record wins."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done.setdefault(record["cell"], record)
    return done


def _append_cell(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with path.open("a") as f:
        # A previous run killed mid-write may have left a partial line: start on a fresh one.
        if f.tell() > 0:
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write("\n")
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


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
    with drop_attention(model, layers):
        pred = predict(model, tok, test, batch_size=config.batch_size, progress=False)
        val_pred = predict(model, tok, val, batch_size=config.batch_size, progress=False)
        per_example, _ = model_faithfulness(
            model, tok, test.task, faith_examples, config.methods, backend=config.attribution_backend,
            batch_size=config.batch_size, n_random=config.n_random, seed=seed, n_boot=config.n_boot,
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
        paired = (
            compare_calibration(record_frame(ref), pred, n_boot=config.n_boot, seed=seed).set_index("metric")
            if ref is not None
            else None
        )
        for metric in REPORT_METRICS:
            row = dict(base, metric=metric, value=float(report[metric]), low=float(report[f"{metric}_low"]),
                       high=float(report[f"{metric}_high"]))
            if paired is not None and metric in paired.index:
                d = paired.loc[metric]
                row.update(delta=float(d["diff"]), delta_low=float(d["low"]), delta_high=float(d["high"]))
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
                rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("delta", "delta_low", "delta_high"):
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
    """The persisted cells of a study (finished ones only), in run order."""
    done = _read_cells(config.run_dir() / "cells.jsonl")
    return [done[c.key] for c in _cells(config) if c.key in done]


def run_study(config: StudyConfig | None = None, *, progress: bool = True, report: bool = True) -> pd.DataFrame:
    """Run (or resume) a study and return its tidy table.

    Returns:
        DataFrame, one row per (cell, metric): model, dataset, selection, k, layers, metric, value,
        low, high (bootstrap CI), delta, delta_low, delta_high (paired difference against the
        unpruned model on the same examples). Metrics: accuracy, ece, mce, adaptive_ece,
        smooth_ece, brier, nll, ece_temperature_scaled, temperature, label_mass, and
        `<faithfulness metric>:<method>` for each attribution method and `random`.
    """
    config = config or StudyConfig()
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    log_path = run_dir / "cells.jsonl"
    done = _read_cells(log_path)
    cells = list(_cells(config))
    todo = [c for c in cells if c.key not in done]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="study cells", disable=not progress)
    importance_cache: dict = {}
    for model_name in config.models:
        model_cells = [c for c in todo if c.model == model_name]
        if not model_cells:
            continue
        model, tok = load_model(model_name)
        for dataset in config.datasets:
            ds_cells = [c for c in model_cells if c.dataset == dataset]
            if not ds_cells:
                continue
            data = _study_data(dataset, config)
            for cell in ds_cells:
                torch.manual_seed(cell.seed(config.seed))
                record = _run_cell(cell, config, model, tok, data, importance_cache)
                _append_cell(log_path, record)
                bar.update(1)
        del model
    bar.close()
    table = _tidy(load_results(config), config)
    table.to_csv(run_dir / "table.csv", index=False)
    if report:
        records = load_results(config)
        write_report(run_dir, table, summary(table), _report_frames(records), digest=config.digest())
    return table


def _study_data(dataset: str, config: StudyConfig) -> dict:
    return {
        "test": load_dataset(dataset, n=config.n_eval, split="test", seed=config.seed),
        "validation": load_dataset(dataset, n=config.n_validation, split="validation", seed=config.seed),
        "importance_texts": load_dataset(dataset, n=config.n_importance, split="train", seed=config.seed).texts,
        "importance_labelled": load_dataset(dataset, n=config.n_importance, split="validation", seed=config.seed + 1),
    }


# ---- the headline views ------------------------------------------------------------------------
def summary(table: pd.DataFrame, *, method: str | None = None) -> pd.DataFrame:
    """Per model, dataset, selection and k: accuracy, ECE, NAOPC and their deltas vs unpruned.

    Adds a `misaligned` column answering the question of the 2026 study: accuracy stays within
    its paired CI of the unpruned model (the CI of the difference contains 0) while ECE or NAOPC
    moves (its paired CI excludes 0).
    """
    if method is None:
        methods = sorted({m.split(":", 1)[1] for m in table.metric if m.startswith("naopc_comprehensiveness:")} - {"random"})
        method = methods[0] if methods else "random"
    naopc = f"naopc_comprehensiveness:{method}"
    keys = ["model", "dataset", "selection", "k", "layers"]
    if "level" in table and any(isinstance(v, float) for v in table["level"]):
        keys.insert(3, "level")  # fractions of the depth: show them beside the k they meant per model
    wanted = {"accuracy": "accuracy", "ece": "ece", naopc: "naopc", "ece_temperature_scaled": "ece_ts"}
    sub = table[table.metric.isin(wanted)].copy()
    sub["name"] = sub.metric.map(wanted)
    value = sub.pivot_table(index=keys, columns="name", values="value", aggfunc="first")
    delta = sub.pivot_table(index=keys, columns="name", values="delta", aggfunc="first").add_prefix("d_")
    lo = sub.pivot_table(index=keys, columns="name", values="delta_low", aggfunc="first")
    hi = sub.pivot_table(index=keys, columns="name", values="delta_high", aggfunc="first")
    out = value.join(delta)

    def moved(name: str) -> pd.Series:
        if name not in lo:
            return pd.Series(False, index=out.index)
        return (lo[name] > 0) | (hi[name] < 0)

    k = out.index.get_level_values("k")
    out["accuracy_holds"] = ~moved("accuracy") & (k > 0)
    out["misaligned"] = out["accuracy_holds"] & (moved("ece") | moved("naopc"))
    out = out.reset_index().sort_values(["model", "dataset", "k", "selection"], kind="stable")
    cols = keys + [c for c in ("accuracy", "d_accuracy", "ece", "d_ece", "ece_ts", "naopc", "d_naopc",
                               "accuracy_holds", "misaligned") if c in out]
    out = out[cols].reset_index(drop=True)
    out.attrs["method"] = method
    return out
