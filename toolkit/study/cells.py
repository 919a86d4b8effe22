"""The study's cells: the grid in run order, and computing one cell (the layers it drops, its predictions,
temperature and faithfulness) into the record that is persisted."""

from __future__ import annotations

import json
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..adapters import decoder_layers
from ..calibration import TemperatureScaler, ece
from ..data import load_dataset
from ..faithfulness import model_faithfulness
from ..importance import attention_importance, choose_layers, importance_metric, select_layers
from ..prompts import split_words
from ..pruning import drop_attention
from ..scoring import frame_logprobs, frame_probs, predict
from .config import StudyConfig, resolve_level
from ..validation import InputError

__all__ = ["Cell", "run_cell", "study_cells", "study_data"]


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


def study_cells(config: StudyConfig) -> Iterator[Cell]:
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
    selection = importance_metric(cell.selection)
    if selection.needs_labels:
        val = data["importance_labelled"]
        opts.update(task=val.task, labels=val.labels)
        texts = val.texts
    else:
        texts = data["importance_texts"]
    if config.strategy == "iterative" and not selection.control:
        return choose_layers(model, tok, texts, k, metric=cell.selection, strategy="iterative", **opts), None
    key = (cell.model, cell.dataset, cell.selection)
    if key not in importance_cache:
        if selection.control:  # one ranking per model and dataset, whatever the level
            opts["seed"] = Cell(cell.model, cell.dataset, cell.selection, 0).seed(config.seed)
        importance_cache[key] = attention_importance(model, tok, texts, metric=cell.selection, **opts)
    return select_layers(importance_cache[key], k), importance_cache[key]


def run_cell(cell: Cell, config: StudyConfig, model, tok, data: dict, importance_cache: dict) -> dict:
    """Compute one cell with its layers dropped: the record that is persisted.

    Returns:
        dict: cell, model, dataset, selection, level, k, layers, importance, ids, labels, probs,
        label_names, label_mass, temperature, ece_scaled, faithfulness (per-example rows of
        :func:`toolkit.faithfulness.model_faithfulness`), seconds.
    """
    t0 = time.perf_counter()
    layers, importance = _layers_for(cell, config, model, tok, importance_cache, data)
    seed = cell.seed(config.seed)
    test, val = data["test"], data["validation"]
    faith_examples = [e for e in test.examples if len(split_words(e.text)) <= config.max_words][: config.n_faithfulness]
    if not faith_examples:
        raise InputError(f"no test example of {cell.dataset!r} has at most max_words={config.max_words} words")
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




def study_data(dataset: str, config: StudyConfig) -> dict:
    """The examples a study draws from ``dataset``: test, validation, importance_texts, importance_labelled."""
    return {
        "test": load_dataset(dataset, n=config.n_eval, split="test", seed=config.seed),
        "validation": load_dataset(dataset, n=config.n_validation, split="validation", seed=config.seed),
        "importance_texts": load_dataset(dataset, n=config.n_importance, split="train", seed=config.seed).texts,
        "importance_labelled": load_dataset(dataset, n=config.n_importance, split="validation", seed=config.seed + 1),
    }
