"""The study's cells: the grid in run order, and computing one cell (the layers it drops, its predictions,
temperature and faithfulness) into the record that is persisted."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..models.adapters import decoder_layers
from ..metrics.calibration import TemperatureScaler, ece
from ..data.datasets import best_shots, chance_models, demonstrations, get_task, load_dataset
from ..metrics.faithfulness import model_faithfulness
from ..metrics.registry import register_metric
from ..pruning.importance import attention_importance, choose_layers, importance_metric, select_layers
from ..data.prompts import split_words
from ..pruning.attention import drop_attention
from ..models.scoring import frame_logprobs, frame_probs, predict
from .config import StudyConfig, bucket_labels, resolve_level
from .._core.validation import InputError

__all__ = ["Cell", "base_selection", "run_cell", "study_cells", "study_data", "study_pairs", "study_shots"]


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


def study_pairs(config: StudyConfig) -> list[tuple[str, str]]:
    """The (model, dataset) pairs of the grid, in run order: all of them, or with ``skip_at_chance``
    those where the model is not at chance (:func:`toolkit.data.datasets.chance_models`).

    Raises:
        InputError: ``skip_at_chance`` leaves no pair.
    """
    pairs = [(model, dataset) for model in config.models for dataset in config.datasets]
    if config.skip_at_chance:
        at_chance = chance_models()
        pairs = [(m, d) for m, d in pairs if m not in at_chance.get(d, ())]
        if not pairs:
            raise InputError(f"skip_at_chance leaves no cell: every model of {list(config.models)} is at chance on "
                             f"every dataset of {list(config.datasets)} (data/bundled_accuracy.csv); set "
                             "skip_at_chance: false, or add a model or dataset with above-chance accuracy")
    return pairs


def study_shots(config: StudyConfig) -> dict[tuple[str, str], int]:
    """The k-shot demonstrations per (model, dataset) pair of the grid (``StudyConfig.shots`` resolved).

    An int k >= 1 applies to every pair; 0 (the default) leaves each dataset's task as registered
    (its ``n_shot``: 0 for every bundled dataset); ``"auto"`` takes :func:`toolkit.data.datasets.best_shots`
    (the above-chance setting with the highest accuracy in ``data/bundled_accuracy.csv``), 0 for a
    pair without one. A report states them from here.
    """
    if config.shots == "auto":
        best = best_shots()
        return {pair: best.get(pair, 0) for pair in study_pairs(config)}
    return {(m, d): config.shots or get_task(d).n_shot for m, d in study_pairs(config)}


def study_cells(config: StudyConfig) -> Iterator[Cell]:
    """Cells in run order; k = 0 once per (model, dataset) under the name 'none' (pairs: :func:`study_pairs`).

    A selection runs at ``config.selection_levels(selection)``; a control (``random``) with
    ``random_draws`` = R > 1 yields R cells per level, ``random``, ``random#2``, ... ``random#R``
    (independent draws: each cell's seed comes from its key).
    """
    for model, dataset in study_pairs(config):
        if 0 in config.levels:
            yield Cell(model, dataset, "none", 0)
        for selection in config.selections:
            draws = config.random_draws if importance_metric(selection).control else 1
            for level in config.selection_levels(selection):
                for draw in range(1, draws + 1):
                    yield Cell(model, dataset, selection if draw == 1 else f"{selection}#{draw}", level)


def base_selection(selection: str) -> str:
    """The importance metric of a cell's selection: ``random#2`` (a control's second draw) -> ``random``."""
    return selection.split("#", 1)[0]


# ---- one cell ----------------------------------------------------------------------------------
def _layers_for(
    cell: Cell, config: StudyConfig, model, tok, importance_cache: dict, data: dict
) -> tuple[list[int], pd.Series | None]:
    k = resolve_level(cell.level, len(decoder_layers(model)))
    if k == 0:
        return [], None
    opts: dict[str, Any] = dict(batch_size=min(config.batch_size, 8), seed=cell.seed(config.seed))
    selection = importance_metric(base_selection(cell.selection))
    if "labels" in selection.needs:
        val = data["importance_labelled"]
        opts.update(task=val.task, labels=val.labels)
        texts = val.texts
    else:
        texts = data["importance_texts"]
    if config.strategy == "iterative" and not selection.control:
        return choose_layers(model, tok, texts, k, metric=base_selection(cell.selection), strategy="iterative",
                             **opts), None
    key = (cell.model, cell.dataset, cell.selection)
    if key not in importance_cache:
        if selection.control:  # one ranking per model and dataset, whatever the level
            opts["seed"] = Cell(cell.model, cell.dataset, cell.selection, 0).seed(config.seed)
        importance_cache[key] = attention_importance(model, tok, texts, metric=base_selection(cell.selection), **opts)
    return select_layers(importance_cache[key], k), importance_cache[key]


def run_cell(cell: Cell, config: StudyConfig, model, tok, data: dict, importance_cache: dict) -> dict:
    """Compute one cell with its layers dropped: the record that is persisted.

    Returns:
        dict: cell, model, dataset, selection, level, k, shots, layers, importance, ids, labels, probs,
        label_names, label_mass, temperature, ece_scaled, faithfulness (per-example rows of
        :func:`toolkit.metrics.faithfulness.model_faithfulness`; with ``length_buckets`` each has its
        ``length_bucket`` label), seconds.
    """
    t0 = time.perf_counter()
    layers, importance = _layers_for(cell, config, model, tok, importance_cache, data)
    seed = cell.seed(config.seed)
    test, val = data["test"], data["validation"]
    faith_examples, buckets = _faithfulness_examples(cell, config, test.examples)
    permuted = {}
    if config.n_permutations:  # seeded by the study seed and the text: the same in every cell
        permuted = {"n_permutations": config.n_permutations, "permutation_seed": config.seed}
    with drop_attention(model, layers):
        pred = predict(model, tok, test, batch_size=config.batch_size, progress=False)
        val_pred = predict(model, tok, val, batch_size=config.batch_size, progress=False)
        per_example, _ = model_faithfulness(
            model, tok, test.task, faith_examples, config.methods, options=config.erasure,
            backend=config.attribution_backend, batch_size=config.batch_size, n_random=config.n_random, seed=seed,
            n_boot=config.n_boot, **permuted,
        )
    if buckets is not None:  # the engine's `example` is the index into faith_examples
        per_example["length_bucket"] = [buckets[i] for i in per_example["example"]]
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
        "shots": test.task.n_shot,
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




# What a cell's record holds beside its predictions, as rows of the study's table: calibration
# entries of the metric registry whose function reads the record (``fn(record)``), so not columns of
# calibration_report; shown after the calibration metrics, without a CI or a test.
def _ece_temperature_scaled(record: dict) -> float:
    return float(record["ece_scaled"])


def _temperature(record: dict) -> float:
    return float(record["temperature"])


def _label_mass(record: dict) -> float:
    return float(np.mean(record["label_mass"]))


register_metric("ece_temperature_scaled", _ece_temperature_scaled, family="calibration", higher_is_better=False,
                label="ECE after temperature scaling", short="ece_ts")
register_metric("temperature", _temperature, family="calibration", label="temperature")
register_metric("label_mass", _label_mass, family="calibration", label="label-verbalizer mass")


def _faithfulness_examples(cell: Cell, config: StudyConfig, examples) -> tuple[list, list[str] | None]:
    """The test examples a cell explains and, with ``length_buckets``, each one's bucket label.

    Without buckets: the first n_faithfulness with at most ``max_words`` words. With buckets: the
    first n_faithfulness of each bucket, in test order (longer than the last bound: left out).
    """
    if not config.length_buckets:
        chosen = [e for e in examples if len(split_words(e.text)) <= config.max_words][: config.n_faithfulness]
        if not chosen:
            raise InputError(f"no test example of {cell.dataset!r} has at most max_words={config.max_words} words")
        if len(chosen) < config.n_faithfulness:
            warnings.warn(f"{cell.key}: only {len(chosen)} of the n_eval={config.n_eval} test examples have at most "
                          f"max_words={config.max_words} words; faithfulness uses those, not n_faithfulness="
                          f"{config.n_faithfulness} (raise n_eval or max_words)", stacklevel=3)
        return chosen, None
    labels = bucket_labels(config.length_buckets)
    per_bucket: dict[str, list] = {label: [] for label in labels}
    for e in examples:
        n_words = len(split_words(e.text))
        label = next((lab for lab, bound in zip(labels, config.length_buckets) if n_words <= bound), None)
        if label is not None and len(per_bucket[label]) < config.n_faithfulness:
            per_bucket[label].append(e)
    short = {label: len(chosen) for label, chosen in per_bucket.items() if len(chosen) < config.n_faithfulness}
    if len(short) == len(labels) and not any(short.values()):
        raise InputError(f"no test example of {cell.dataset!r} falls in any of length_buckets="
                         f"{list(config.length_buckets)} (at most {config.length_buckets[-1]} words)")
    if short:
        warnings.warn(f"{cell.key}: length bucket(s) {short} hold fewer than n_faithfulness={config.n_faithfulness} "
                      f"of the n_eval={config.n_eval} test examples; faithfulness uses those (raise n_eval)",
                      stacklevel=3)
    # in test order, so the unpruned and pruned cells explain the same sentences at the same index
    order = {e.id: i for i, e in enumerate(examples)}
    chosen = sorted((e for group in per_bucket.values() for e in group), key=lambda e: order[e.id])
    where = {e.id: label for label, group in per_bucket.items() for e in group}
    return chosen, [where[e.id] for e in chosen]


def study_data(dataset: str, config: StudyConfig, model: str | None = None) -> dict:
    """The examples a study draws from ``dataset``: test, validation, importance_texts, importance_labelled.

    Each dataset poses its examples with the task's ``n_shot`` set to the shots of (``model``,
    ``dataset``) (:func:`study_shots`; ``model`` None: ``StudyConfig.shots`` when an int, else 0).

    Raises:
        InputError: as :func:`toolkit.load_dataset`; more shots than the train split holds.
    """
    if model is None:
        shots = config.shots if config.shots != "auto" else 0
        shots = shots or get_task(dataset).n_shot
    else:
        shots = study_shots(config).get((model, dataset), 0)
    if shots:
        demonstrations(dataset, shots)  # the train pool holds them (an InputError naming k and the pool)

    def load(n: int, split: str, seed: int):
        data = load_dataset(dataset, n=n, split=split, seed=seed)
        return data if data.task.n_shot == shots else dataclasses.replace(
            data, task=dataclasses.replace(data.task, n_shot=shots))

    return {
        "test": load(config.n_eval, "test", config.seed),
        "validation": load(config.n_validation, "validation", config.seed),
        "importance_texts": load(config.n_importance, "train", config.seed).texts,
        "importance_labelled": load(config.n_importance, "validation", config.seed + 1),
    }
