"""Stage 1 of the two-stage design (issue 28): the dose-response sweep on the validation split, the
k* rule, and the stage-2 study configs generated from k*.

Stage 1 scores, per (model, dataset, selection, shots), every k from 1 to floor(L / 3) (L the
model's depth) on the VALIDATION split only, for accuracy and calibration (no faithfulness: cheap).
k* is then the largest k that keeps accuracy (one-sided non-inferiority of the paired accuracy
change at ``margin``), by a rule stated in the config before the run (:func:`k_star`). Stage 2
confirms on the TEST split at k*, with a random-layer control of several draws at the same k
(:func:`stage2_configs` writes ordinary :class:`~toolkit.study.StudyConfig` s).

Temperature scaling is cross-fitted: the scored validation examples are split in two folds by
position (even / odd), T is fitted on one and applied to the other, so no example's scaled
probabilities come from a T fitted on it. Layer importance is read on the TRAIN split (the
k-shot demonstration pool), also for loss_delta, so the validation examples that decide k* never
choose the layers.

Cells persist one file each in a :class:`toolkit._core.store.CellStore` under
``<output_dir>/sweep-<digest>/`` as they finish; rerunning resumes. The digest holds only what
changes a cell's numbers (n_eval, n_importance, seed, batch_size), and each cell's key names its
model, dataset, selection, shots and k: a larger grid (another model, a larger ``k_max``) reuses
every finished cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..models.adapters import decoder_layers
from ..metrics.calibration import (
    TemperatureScaler,
    brier_decomposition,
    calibration_report,
    compare_calibration,
    ece,
    positive_class_ece,
    report_metrics,
)
from ..data.datasets import best_shots, chance_models, demonstrations, get_task, load_dataset
from ..decisions import accuracy_noninferiority, collapsed
from ..pruning.importance import attention_importance, importance_metric, select_layers
from ..models.manifest import Manifest, check_resume
from .._core.digests import weights_digest
from ..models.loading import load_model
from ..pruning.attention import drop_attention
from ..models.scoring import frame_logprobs, frame_probs, predict
from ..decisions.stats import bootstrap_ci, paired_bootstrap
from .._core.store import CellStore
from .._core.validation import InputError, as_bool, check_choice, check_int, check_probability, is_int, short_repr
from .config import StudyConfig, claim_metrics, parse_config_text
from .decide import se_from_interval
from .plan import plan, planned_metrics
from .run import cell_manifest, model_depth, model_folder

__all__ = ["KSTAR_RULES", "SweepCell", "SweepConfig", "k_star", "run_sweep", "stage2_configs", "stage2_pilot",
           "stage2_plan", "sweep_cells", "sweep_table"]

KSTAR_RULES = ("all_smaller", "largest")
"""How :func:`k_star` reads the sweep: ``all_smaller`` (default) = the largest k such that every
k' <= k passes non-inferiority; ``largest`` = the largest k that passes, whatever smaller k's do
(accuracy is not monotone in k, so the two differ)."""

SWEEP_METRICS = ("accuracy", "calibration_gap", "ece", "smooth_ece", "ece_temperature_scaled", "brier",
                 "brier_reliability", "brier_resolution", "positive_ece", "positive_rate", "label_mass")
"""The metrics of the sweep table, in row order (registered calibration metrics are added after these)."""

_DIGEST_FIELDS = ("n_eval", "n_importance", "seed", "batch_size")


@dataclass(frozen=True)
class SweepConfig:
    """Stage 1 of the two-stage design: the dose-response sweep (see the module docstring).

    Attributes:
        models, datasets: as :class:`~toolkit.study.StudyConfig`.
        selections: importance metrics that choose the layers (one-shot: the k least important).
        shots: the prompt settings, a factor: ints (demonstrations per prompt) and/or ``"auto"``
            (per model and dataset the best above-chance setting, :func:`toolkit.data.datasets.best_shots`);
            settings that resolve to the same number are run once.
        k_max: largest k swept (None: floor(L / 3) for each model of depth L).
        n_eval: validation examples scored per cell (at most the split's size).
        n_importance: train texts (cosine etc.) or labelled train examples (loss_delta) for importance.
        n_boot: bootstrap resamples of the table's CIs.
        seed: seeds subsampling, importance and bootstraps.
        batch_size: examples per forward pass.
        margin: non-inferiority margin of the accuracy change (k* rule).
        alpha: one-sided level of the non-inferiority bound.
        kstar_rule: one of :data:`KSTAR_RULES` (default ``all_smaller``), fixed before the run.
        random_draws: random-layer draws at k* in stage 2 (>= 3).
        stage2: :class:`~toolkit.study.StudyConfig` fields for the stage-2 studies (e.g.
            ``n_eval``, ``methods``, ``soft``, ``n_permutations``); models, datasets, levels,
            selections and shots are set from the sweep.
        skip_at_chance: leave out (model, dataset) pairs at chance (:func:`toolkit.data.datasets.chance_models`).
        output_dir: the sweep's folder is ``<output_dir>/sweep-<digest>``.

    Only n_eval, n_importance, seed and batch_size enter :meth:`digest`.
    """

    models: tuple[str, ...] = ("smollm2-135m",)
    datasets: tuple[str, ...] = ("uci_yelp",)
    selections: tuple[str, ...] = ("cosine", "loss_delta")
    shots: tuple[int | str, ...] = (0, "auto")
    k_max: int | None = None
    n_eval: int = 200
    n_importance: int = 16
    n_boot: int = 500
    seed: int = 0
    batch_size: int = 16
    margin: float = 0.05
    alpha: float = 0.05
    kstar_rule: str = "all_smaller"
    random_draws: int = 3
    stage2: Mapping[str, Any] = field(default_factory=dict)
    skip_at_chance: bool = False
    output_dir: str = "results"

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "selections", "shots"):
            value = getattr(self, name)
            if isinstance(value, (str, int)) or not isinstance(value, Iterable):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise InputError(f"SweepConfig.{name} is empty; give at least one")
        for s in self.selections:
            if importance_metric(s).control:
                raise InputError(f"SweepConfig.selections holds {s!r}, a control; the random control runs in "
                                 "stage 2 at k* (random_draws)")
        for s in self.shots:
            if s != "auto" and (not is_int(s) or s < 0):
                raise InputError(f"SweepConfig.shots holds {short_repr(s)}; expected integers >= 0 or 'auto'")
        if self.k_max is not None:
            object.__setattr__(self, "k_max", check_int(self.k_max, "SweepConfig.k_max", 1))
        for name in ("n_eval", "n_importance", "n_boot", "batch_size"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"SweepConfig.{name}", 1))
        object.__setattr__(self, "random_draws", check_int(self.random_draws, "SweepConfig.random_draws", 3))
        if not is_int(self.seed):
            raise InputError(f"SweepConfig.seed={self.seed!r}; expected an integer")
        for name in ("margin", "alpha"):
            object.__setattr__(self, name, check_probability(getattr(self, name), f"SweepConfig.{name}"))
        check_choice(self.kstar_rule, "kstar_rule", KSTAR_RULES)
        if not isinstance(self.stage2, Mapping):
            raise InputError(f"SweepConfig.stage2={short_repr(self.stage2)}; expected a mapping of StudyConfig fields")
        owned = sorted({"models", "datasets", "levels", "selections", "shots", "levels_by_selection",
                        "random_draws"} & set(self.stage2))
        if owned:
            raise InputError(f"SweepConfig.stage2 sets {owned}, which the sweep decides; leave them out")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SweepConfig:
        """Read a sweep config from YAML or JSON (a mapping of SweepConfig fields)."""
        path = Path(path)
        if path.suffix not in (".json", ".yaml", ".yml") or not path.is_file():
            raise InputError(f"sweep config {str(path)!r} must be an existing .yaml, .yml or .json file")
        data = parse_config_text(path.read_text(encoding="utf-8"), path.suffix, f"sweep config {str(path)!r}")
        if not isinstance(data, Mapping) or not data:
            raise InputError(f"sweep config {str(path)!r} holds no mapping of SweepConfig fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise InputError(f"unknown sweep option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stage2"] = dict(self.stage2)
        return data

    def digest(self) -> str:
        data = {k: getattr(self, k) for k in _DIGEST_FIELDS} | {"design": "sweep-v1"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def run_dir(self) -> Path:
        return Path(self.output_dir) / f"sweep-{self.digest()}"


@dataclass(frozen=True)
class SweepCell:
    """One sweep cell: ``k`` attention layers dropped, chosen by ``selection`` (``none`` at k = 0)."""

    model: str
    dataset: str
    selection: str
    shots: int
    k: int

    @property
    def key(self) -> str:
        return f"sweep|{self.model}|{self.dataset}|{self.selection}|{self.shots}|{self.k}"

    def seed(self, base: int) -> int:
        return (base * 1_000_003 + zlib.crc32(self.key.encode())) % (2**31)


# ---- the grid ----------------------------------------------------------------------------------
def sweep_shots(config: SweepConfig, model: str, dataset: str) -> list[int]:
    """The distinct shots of ``config.shots`` for one pair, in config order ("auto" resolved)."""
    best = best_shots() if "auto" in config.shots else {}
    resolved = [best.get((model, dataset), 0) if s == "auto" else int(s) for s in config.shots]
    return list(dict.fromkeys(resolved))


def sweep_pairs(config: SweepConfig) -> list[tuple[str, str]]:
    pairs = [(m, d) for m in config.models for d in config.datasets]
    if config.skip_at_chance:
        at_chance = chance_models()
        pairs = [(m, d) for m, d in pairs if m not in at_chance.get(d, ())]
    if not pairs:
        raise InputError("skip_at_chance leaves no (model, dataset) pair in the sweep")
    return pairs


def k_range(config: SweepConfig, n_layers: int) -> range:
    """k = 1 .. k_max (floor(L / 3) unless set; at most L)."""
    top = n_layers // 3 if config.k_max is None else min(config.k_max, n_layers)
    return range(1, top + 1)


def sweep_cells(config: SweepConfig, depth: Mapping[str, int]) -> Iterator[SweepCell]:
    """Cells in run order: per (model, dataset, shots) the reference (k = 0), then each selection's k's."""
    for model, dataset in sweep_pairs(config):
        for shots in sweep_shots(config, model, dataset):
            yield SweepCell(model, dataset, "none", shots, 0)
            for selection in config.selections:
                for k in k_range(config, depth[model]):
                    yield SweepCell(model, dataset, selection, shots, k)


# ---- computing cells ---------------------------------------------------------------------------
def _sweep_data(config: SweepConfig, dataset: str, shots: int) -> dict:
    """Validation examples to score and train examples for importance, posed with ``shots`` demonstrations."""
    if shots:
        demonstrations(dataset, shots)

    def load(n: int, split: str, seed: int):
        data = load_dataset(dataset, n=n, split=split, seed=seed)
        return data if data.task.n_shot == shots else dataclasses.replace(
            data, task=dataclasses.replace(data.task, n_shot=shots))

    labelled = load(config.n_importance, "train", config.seed + 1)
    return {"validation": load(config.n_eval, "validation", config.seed),
            "importance_texts": load(config.n_importance, "train", config.seed).texts,
            "importance_labelled": labelled}


def cross_fitted_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Probabilities after temperature scaling, each example scaled by a T fitted on the other fold.

    Folds: even and odd positions. softmax(z_i / T_other(i)). Returns (probs (n, C), [T_even, T_odd])
    where T_even was fitted on the even fold (and applied to the odd one).
    """
    z, y = np.asarray(logits, dtype=float), np.asarray(labels)
    folds = [np.arange(0, len(y), 2), np.arange(1, len(y), 2)]
    out = np.full(z.shape, np.nan)
    temps = []
    for fit, apply in ((folds[0], folds[1]), (folds[1], folds[0])):
        if len(fit) == 0 or len(apply) == 0:
            temps.append(math.nan)
            continue
        scaler = TemperatureScaler().fit(z[fit], y[fit])
        temps.append(float(scaler.temperature_))
        out[apply] = scaler.transform(z[apply])
    if len(y) == 1:
        out = np.exp(z - z.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    return out, temps


def sweep_cell(cell: SweepCell, config: SweepConfig, model: Any, tok: Any, data: dict,
               importance_cache: dict) -> dict:
    """Compute one sweep cell: predictions on the validation examples with the cell's layers dropped.

    Returns:
        dict: cell, model, dataset, selection, shots, k, layers, importance, ids, labels, probs,
        label_names, label_mass, probs_scaled (cross-fitted temperature), temperatures, seconds.
    """
    t0 = time.perf_counter()
    importance = None
    layers: list[int] = []
    if cell.k:
        labelled = "labels" in importance_metric(cell.selection).needs
        # a label-free metric reads the bare texts: the same ranking for every shots setting
        key = (cell.model, cell.dataset, cell.selection, cell.shots if labelled else None)
        if key not in importance_cache:
            opts: dict[str, Any] = dict(batch_size=min(config.batch_size, 8),
                                        seed=SweepCell(cell.model, cell.dataset, cell.selection, cell.shots if labelled
                                                       else 0, 0).seed(config.seed))
            texts = data["importance_texts"]
            if labelled:
                lab = data["importance_labelled"]
                opts.update(task=lab.task, labels=lab.labels)
                texts = lab.texts
            importance_cache[key] = attention_importance(model, tok, texts, metric=cell.selection, **opts)
        importance = importance_cache[key]
        layers = select_layers(importance, cell.k)
    val = data["validation"]
    with drop_attention(model, layers):
        pred = predict(model, tok, val, batch_size=config.batch_size, progress=False)
    scaled, temps = cross_fitted_temperature(frame_logprobs(pred), pred.label.to_numpy())
    return {
        "cell": cell.key, "model": cell.model, "dataset": cell.dataset, "selection": cell.selection,
        "shots": cell.shots, "k": cell.k, "layers": [int(i) for i in layers], "split": "validation",
        "importance": None if importance is None else [None if np.isnan(v) else float(v) for v in importance],
        "ids": pred.id.tolist(), "labels": pred.label.tolist(), "probs": frame_probs(pred).tolist(),
        "label_names": list(pred.attrs["label_names"]), "label_mass": pred.label_mass.tolist(),
        "probs_scaled": scaled.tolist(), "temperatures": temps, "seconds": time.perf_counter() - t0,
    }


def run_sweep(config: SweepConfig, *, progress: bool = True, model_loader: Any = None,
              allow_mixed: bool = False) -> pd.DataFrame:
    """Run (or resume) the sweep locally and return :func:`sweep_table`; writes ``sweep.csv`` and ``kstar.csv``.

    Every record carries the manifest it was computed under (:mod:`toolkit.models.manifest`: library
    versions, toolkit code, weights, tokenizer, prompt, batch size, seed). Before a model computes
    a cell, the finished cells of that model are checked against this run's manifest, as
    :func:`toolkit.study.run_study` does: a resumed sweep never mixes code or library versions in
    one table unless ``allow_mixed`` (then it warns).

    Args:
        model_loader: ``name -> (model, tokenizer)`` (default :func:`toolkit.load_model`).
        allow_mixed: resume even when finished cells were computed under another manifest.

    Raises:
        MixedManifestError (an InputError): finished cells of a model with cells left to compute
            were computed under another manifest; the message lists ``field: old -> new``.
    """
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep_config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
    store = CellStore(run_dir)
    loader = model_loader or (lambda name: load_model(name))
    keys: list[str] = []
    for model_name in dict.fromkeys(m for m, _ in sweep_pairs(config)):
        model = tok = None
        n_layers = model_depth(model_name) if model_loader is None else None  # config.json only, no weights
        if n_layers is None:
            model, tok = loader(model_name)
            n_layers = len(decoder_layers(model))
        cells = list(sweep_cells(dataclasses.replace(config, models=(model_name,)), {model_name: n_layers}))
        keys += [c.key for c in cells]
        todo = [c for c in cells if not store.done(c.key)]
        if not todo:  # a finished model's cells never load it
            continue
        if model is None:
            model, tok = loader(model_name)
        manifests = _sweep_manifests(config, model_name, model, tok, {(c.dataset, c.shots) for c in cells})
        records = store.records()
        check_resume({c.key: records[c.key].get("manifest") for c in cells if c.key in records},
                     {c.key: manifests[(c.dataset, c.shots)] for c in cells},
                     allow_mixed=allow_mixed, where=f"sweep {run_dir}")
        data: dict = {}
        cache: dict = {}
        for cell in todo:
            if (cell.dataset, cell.shots) not in data:
                data[(cell.dataset, cell.shots)] = _sweep_data(config, cell.dataset, cell.shots)

            def compute(cell: SweepCell = cell) -> dict:
                torch.manual_seed(cell.seed(config.seed))
                record = sweep_cell(cell, config, model, tok, data[(cell.dataset, cell.shots)], cache)
                return {**record, "manifest": manifests[(cell.dataset, cell.shots)].to_dict()}

            store.run_cell(cell.key, compute)
            if progress:
                print(f"sweep {cell.key} done", flush=True)
    records = store.records()
    missing = [k for k in keys if k not in records]
    if missing:
        raise InputError(f"{len(missing)} sweep cells did not finish (see {run_dir}/failed/); rerun: {missing[:3]}")
    table = sweep_table([records[k] for k in keys], config)
    table.to_csv(run_dir / "sweep.csv", index=False)
    k_star(table, margin=config.margin, rule=config.kstar_rule).to_csv(run_dir / "kstar.csv", index=False)
    return table


def _sweep_manifests(config: SweepConfig, model_name: str, model: Any, tok: Any,
                     groups: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Manifest]:
    """The manifest of each (dataset, shots) group of ``model_name``'s cells, as a study's cells get
    theirs (:func:`toolkit.study.run.cell_manifest`; the weights hashed once)."""
    folder = model_folder(model_name)
    digest = None if folder is None else weights_digest(folder)
    return {(dataset, shots): cell_manifest(config, model_name, dataclasses.replace(get_task(dataset), n_shot=shots),
                                            tok, digest, model=model)
            for dataset, shots in sorted(groups)}


# ---- the table ---------------------------------------------------------------------------------
def _probs_labels(record: dict, key: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(record[key], dtype=float), np.asarray(record["labels"], dtype=int)


def _gap(p: np.ndarray, y: np.ndarray) -> float:
    """Signed calibration gap: mean top-label confidence - accuracy (> 0: overconfident)."""
    return float(np.mean(p.max(axis=1)) - np.mean(p.argmax(axis=1) == y))


def _positive_rate(p: np.ndarray, y: np.ndarray) -> float:
    """Share of examples predicted as class 1 (the positive class of a binary task)."""
    return float(np.mean(p.argmax(axis=1) == 1))


def _mean_first(m: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(m))


def _reliability(p: np.ndarray, y: np.ndarray) -> float:
    """Murphy's reliability term of the Brier score, forecasts in ECE's 15 equal-width bins (lower is better).

    Binned, not grouped by distinct values: a language model's probabilities are all distinct, and
    one group per forecast makes reliability equal the Brier score itself (and resolution the
    uncertainty), which splits nothing.
    """
    return brier_decomposition(p, y, n_bins=15).reliability


def _resolution(p: np.ndarray, y: np.ndarray) -> float:
    """Murphy's resolution term of the Brier score, forecasts in 15 equal-width bins (higher is better)."""
    return brier_decomposition(p, y, n_bins=15).resolution


def _positive_ece(p: np.ndarray, y: np.ndarray) -> float:
    """ECE of p(positive), class 1 of a binary task (15 equal-width bins)."""
    return float(positive_class_ece(p, y))


def sweep_table(records: Sequence[dict], config: SweepConfig) -> pd.DataFrame:
    """One row per (sweep cell, metric), with the paired change against the unpruned cell.

    Metrics (:data:`SWEEP_METRICS`, then the other registered calibration metrics): accuracy,
    calibration_gap = mean confidence - accuracy, ece, smooth_ece, ece_temperature_scaled (the
    cross-fitted temperature), brier with Murphy's brier_reliability and brier_resolution,
    positive_ece (ECE of p(class 1)) and positive_rate (predicted class 1), both binary tasks
    only, label_mass. Accuracy rows also carry ``collapsed`` and ``collapse_reasons``
    (:func:`toolkit.decisions.collapsed`: one class > 95%, or balanced accuracy at chance; label mass is reported, not a rule).
    value, low, high: the metric and its percentile-bootstrap CI; delta, delta_low, delta_high: the
    paired-bootstrap change against the k = 0 cell of the same (model, dataset, shots). On accuracy
    rows of pruned cells, ``lower``: the one-sided (1 - alpha) lower confidence bound of the paired
    accuracy change (Tango's score bound, :func:`toolkit.decisions.accuracy_noninferiority`),
    ``noninferior`` = lower > -margin, and ``discordant``: the share of examples whose correctness
    differs from the unpruned model's (the spread that sizes stage 2).

    Returns:
        DataFrame: model, dataset, selection, shots, k, layers, n, metric, value, low, high, delta,
        delta_low, delta_high, lower, noninferior, margin, discordant, collapsed, collapse_reasons.
    """
    extra = {"calibration_gap": ("probs", _gap), "ece_temperature_scaled": ("probs_scaled", ece),
             "brier_reliability": ("probs", _reliability), "brier_resolution": ("probs", _resolution),
             "positive_ece": ("probs", _positive_ece), "positive_rate": ("probs", _positive_rate),
             "label_mass": ("label_mass", _mean_first)}
    registered = list(report_metrics())  # the calibration metrics of probabilities and labels
    order = list(SWEEP_METRICS) + [m for m in registered if m not in SWEEP_METRICS]
    refs = {(r["model"], r["dataset"], r["shots"]): r for r in records if r["k"] == 0}
    rows = []
    for r in records:
        seed = SweepCell(r["model"], r["dataset"], r["selection"], r["shots"], r["k"]).seed(config.seed)
        base = dict(model=r["model"], dataset=r["dataset"], selection=r["selection"], shots=r["shots"], k=r["k"],
                    layers=" ".join(map(str, r["layers"])), n=len(r["labels"]))
        p, y = _probs_labels(r)
        ref = refs.get((r["model"], r["dataset"], r["shots"]))
        if ref is not None and ref["ids"] != r["ids"]:
            raise InputError(f"{r['cell']} scored other examples than its reference {ref['cell']}")
        p_ref = None if ref is None else _probs_labels(ref)[0]
        report = calibration_report(p, y, n_boot=config.n_boot, seed=seed).iloc[0]
        paired = None if p_ref is None else compare_calibration(
            p_ref, p, y, n_boot=config.n_boot, seed=seed).set_index("metric")
        values: dict[str, dict] = {}
        for name in registered:
            values[name] = dict(value=float(report[name]), low=float(report[f"{name}_low"]),
                                high=float(report[f"{name}_high"]))
            if paired is not None:
                d = paired.loc[name]
                values[name] |= dict(delta=float(d["diff"]), delta_low=float(d["low"]), delta_high=float(d["high"]))
        for name, (column, fn) in extra.items():
            x = np.asarray(r[column], dtype=float)
            if name in ("positive_rate", "positive_ece") and p.shape[1] != 2:
                values[name] = dict(value=math.nan, low=math.nan, high=math.nan)
                continue
            iv = bootstrap_ci(fn, x, y, n_boot=config.n_boot, seed=seed)
            values[name] = dict(value=iv.estimate, low=iv.low, high=iv.high)
            if ref is not None:
                d = paired_bootstrap(fn, (np.asarray(ref[column], dtype=float), y), (x, y), n_boot=config.n_boot,
                                     seed=seed)
                values[name] |= dict(delta=d.estimate, delta_low=d.low, delta_high=d.high)
        flag = collapsed(p.argmax(axis=1), y, p.shape[1], np.asarray(r["label_mass"], dtype=float))
        values["accuracy"] |= dict(collapsed=flag.collapsed, collapse_reasons=", ".join(flag.reasons))
        if p_ref is not None and r["k"] > 0:
            correct_ref, correct = p_ref.argmax(axis=1) == y, p.argmax(axis=1) == y
            ni = accuracy_noninferiority(correct_ref, correct, margin=config.margin, alpha=config.alpha)
            values["accuracy"] |= dict(lower=float(ni.low), noninferior=bool(ni.noninferior), margin=config.margin,
                                       discordant=float(np.mean(correct_ref != correct)))
        rows += [dict(base, metric=name, **values[name]) for name in order if name in values]
    table = pd.DataFrame(rows)
    for col in ("delta", "delta_low", "delta_high", "lower", "noninferior", "margin", "discordant", "collapsed",
                "collapse_reasons"):
        if col not in table:
            table[col] = np.nan
    return table


# ---- k* and stage 2 ----------------------------------------------------------------------------
def k_star(frame: pd.DataFrame, *, margin: float, rule: str = "all_smaller",
           by: Sequence[str] = ("model", "dataset", "selection", "shots")) -> pd.DataFrame:
    """k* per group: the largest k whose paired accuracy change passes non-inferiority.

    A k passes when ``lower > -margin`` (``lower``: the one-sided lower confidence bound of the
    accuracy change, pruned - unpruned) and, with a ``collapsed`` column, neither the cell nor its
    unpruned reference (the group's k = 0 row; selection ``none``, so matched on the other keys) is collapsed. Rules (:data:`KSTAR_RULES`): ``all_smaller`` = the largest
    k such that every swept k' in 1..k passes; ``largest`` = the largest passing k. k* = 0 when
    none qualifies (no pruning keeps accuracy). Only rows with k >= 1 and a ``lower`` are read;
    with a ``metric`` column only its ``accuracy`` rows.

    Returns:
        One row per group: the ``by`` columns, k_star, passing (the passing k's, space-separated),
        swept (how many k's), rule, margin.
    """
    check_choice(rule, "rule", KSTAR_RULES)
    by = list(by)
    missing = [c for c in [*by, "k", "lower"] if c not in frame]
    if missing:
        raise InputError(f"k_star needs columns {missing}; got {list(frame.columns)}")
    sub = frame[(frame["metric"] == "accuracy")] if "metric" in frame else frame
    broken_refs: set = set()
    if "collapsed" in sub:  # a collapsed unpruned model: nothing to keep, every k of its group fails
        refs = sub[sub["k"] == 0]
        ref_keys = [c for c in by if c != "selection"]
        broken_refs = {tuple(r) for r in refs.loc[as_bool(refs["collapsed"]), ref_keys].itertuples(index=False)}
    sub = sub[(sub["k"] >= 1) & sub["lower"].notna()]
    rows = []
    for key, g in sub.groupby(by, sort=False):
        g = g.sort_values("k")
        ks = g["k"].astype(int).tolist()
        ok = g["lower"].astype(float) > -float(margin)
        if "collapsed" in g:
            ok &= ~as_bool(g["collapsed"])
        group = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        if tuple(group[c] for c in by if c != "selection") in broken_refs:
            ok[:] = False
        ok = ok.tolist()
        if len(set(ks)) != len(ks):
            raise InputError(f"k_star: group {key} has several rows for one k")
        passing = [k for k, good in zip(ks, ok) if good]
        if rule == "largest":
            best = max(passing, default=0)
        else:
            best = 0
            for k, good in zip(ks, ok):
                if not good:
                    break
                best = k
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,)), k_star=best,
                         passing=" ".join(map(str, passing)), swept=len(ks), rule=rule, margin=float(margin)))
    return pd.DataFrame(rows, columns=[*by, "k_star", "passing", "swept", "rule", "margin"])


def stage2_configs(config: SweepConfig, kstar: pd.DataFrame) -> list:
    """The stage-2 studies: per (model, dataset, shots) with some k* >= 1, one StudyConfig on the test split.

    Each has levels (0, the distinct k*s), the sweep's selections at their own k* only
    (``levels_by_selection``), and ``random`` at every k* with ``config.random_draws`` draws
    (``random_draws``), paired with the same reference; ``config.stage2`` supplies the rest
    (n_eval, methods, soft, n_permutations ...). Groups where every k* is 0 get no study (nothing
    keeps accuracy there: stage 2 has no premise to test).
    """
    out = []
    for (model, dataset, shots), g in kstar.groupby(["model", "dataset", "shots"], sort=False):
        g = g[g["k_star"] > 0]
        if g.empty:
            continue
        by_sel = {str(s): (int(k),) for s, k in zip(g["selection"], g["k_star"])}
        levels = (0, *sorted({int(k) for k in g["k_star"]}))
        opts = dict(config.stage2)
        opts.setdefault("seed", config.seed)
        out.append(StudyConfig(models=(model,), datasets=(dataset,), levels=levels,
                               selections=(*by_sel, "random"), levels_by_selection=by_sel,
                               random_draws=config.random_draws, shots=int(shots), margin=config.margin,
                               alpha=config.alpha, **opts))
    return out


def stage2_pilot(table: pd.DataFrame, kstar: pd.DataFrame, model: str, dataset: str, shots: int,
                 metrics: Sequence[str] = ("ece", "smooth_ece", "brier")) -> dict[str, float]:
    """The spread stage 1 measured at k*, to size one stage-2 study (:func:`toolkit.study.plan`'s ``pilot``).

    Over the selections of (model, dataset, shots) with k* >= 1, at their k* on the validation
    split: ``p_disc`` = the largest share of examples whose correctness differs from the unpruned
    model's; ``sd_<metric>`` for each calibration metric of ``metrics`` the table holds = the
    largest sd of its per-example change, from the paired bootstrap's 95% interval:
    (delta_high - delta_low) / (2 z_0.975) * sqrt(n). The largest, so that the plan's MDE holds for
    every selection. Faithfulness is not measured in stage 1: its spread stays assumed.

    Returns:
        {"p_disc": ..., "sd_ece": ..., ...}, or {} when no selection has k* >= 1.
    """
    rows = kstar[(kstar.model == model) & (kstar.dataset == dataset) & (kstar.shots == shots) & (kstar.k_star > 0)]
    out: dict[str, list[float]] = {}
    for sel, k in zip(rows.selection, rows.k_star):
        cell = table[(table.model == model) & (table.dataset == dataset) & (table.shots == shots)
                     & (table.selection == sel) & (table.k == k)].set_index("metric")
        out.setdefault("p_disc", []).append(float(cell.loc["accuracy", "discordant"]))
        for metric in metrics:
            if metric in cell.index:
                e = cell.loc[metric]
                sd = se_from_interval(e.delta_low, e.delta_high) * math.sqrt(float(e.n))
                out.setdefault(f"sd_{metric}", []).append(sd)
    return {key: max(values) for key, values in out.items()}


def stage2_plan(table: pd.DataFrame, kstar: pd.DataFrame, studies: Sequence[StudyConfig]) -> pd.DataFrame:
    """What each stage-2 study can detect: :func:`toolkit.study.plan` with stage 1's spread at k*.

    Per study (one model, dataset and shots, as :func:`stage2_configs` writes them): the pilot is
    :func:`stage2_pilot` for the study's calibration claims, and n is what the study will score,
    min(n_eval, the test split's size).

    Returns:
        The plans stacked, led by model, dataset, shots and n_test; empty without a study.
    """
    plans = []
    for study in studies:
        claims = claim_metrics(study.claims, measured=planned_metrics(study))
        pilot = stage2_pilot(table, kstar, study.models[0], study.datasets[0], study.shots,
                             metrics=[m.short for m in claims if m.family == "calibration" and m.test != "noninferiority"])
        n_test = len(load_dataset(study.datasets[0], split="test").texts)  # the study scores min(n_eval, n_test)
        sized = plan(study.with_overrides(n_eval=min(study.n_eval, n_test)), pilot=pilot, pilot_source="stage 1 at k*")
        plans.append(sized.assign(model=study.models[0], dataset=study.datasets[0], shots=study.shots, n_test=n_test))
    if not plans:
        return pd.DataFrame()
    sized = pd.concat(plans, ignore_index=True)
    lead = ["model", "dataset", "shots", "n_test"]
    return sized[[*lead, *[c for c in sized if c not in lead]]]
