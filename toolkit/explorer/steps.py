"""The pruning explorer's plain steps: score a layer set, explain one sentence, compare to unpruned.

What :class:`toolkit.explorer.widgets.PruningExplorer` runs on a click, as functions tested without a
browser: `score_layers` (accuracy and ECE with layers dropped), `explain_example` (one sentence's
attribution), `compare_to_reference` (paired bootstrap deltas), `evaluate_layers` (all of it for
one layer set, with the sentence's comprehensiveness from :mod:`toolkit.explorer.faithfulness`),
`least_important`, `check_droppable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..attribution import attribute, attributions_html
from ..metrics.calibration import ece, probs_labels
from ..data.datasets import Dataset
from ..pruning.importance import select_layers
from ..metrics.registry import Metric, headline_metrics
from .faithfulness import SentenceComprehensiveness, sentence_comprehensiveness
from ..pruning.attention import drop_attention
from ..models.scoring import predict
from ..decisions.stats import Interval, paired_bootstrap
from .._core.validation import InputError

__all__ = [
    "ExplorerResult",
    "LayerScores",
    "Progress",
    "check_droppable",
    "compare_to_reference",
    "evaluate_layers",
    "explain_example",
    "explorer_metrics",
    "explorer_result",
    "least_important",
    "score_layers",
]

Progress = Callable[[float, str], None]


def least_important(importance: pd.DataFrame | pd.Series, metric: str | None, k: int) -> list[int]:
    """The `k` least important layers by `metric` (a column of `importance`), in layer order."""
    if isinstance(importance, pd.DataFrame):
        if metric not in importance.columns:
            raise InputError(f"unknown importance metric {metric!r}; expected one of {list(importance.columns)}")
        importance = importance[metric]
    return select_layers(importance, k)


# --------------------------------------------------------------------------------------------------
# Evaluation (plain functions)
# --------------------------------------------------------------------------------------------------
def check_droppable(layers: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Sorted layers, refusing to drop every attention layer (nothing would mix the tokens any more)."""
    chosen = tuple(sorted(int(i) for i in layers))
    if n_layers and len(set(chosen)) >= n_layers:
        raise InputError(
            f"cannot drop all {n_layers} attention layers: with none left no token sees any other, "
            "so the prompt cannot reach the answer position; keep at least one layer"
        )
    return chosen


@dataclass(frozen=True, eq=False)
class LayerScores:
    """Predictions on the evaluation set with `layers` dropped: probabilities (n, C) and gold labels (n,)."""

    layers: tuple[int, ...]
    probs: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean())

    @property
    def ece(self) -> float:
        return float(ece(self.probs, self.labels))


def score_layers(model, tokenizer, dataset: Dataset, layers: Sequence[int], *, batch_size: int = 16,
                 chunks: int = 4, on_progress: Progress | None = None) -> LayerScores:
    """`predict` on `dataset` with `layers` dropped, in up to `chunks` pieces so progress can be shown."""
    layers = tuple(sorted(layers))
    n = len(dataset)
    bounds = np.linspace(0, n, min(chunks, n) + 1).round().astype(int)
    frames = []
    with drop_attention(model, layers):
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if on_progress:
                on_progress(i / (len(bounds) - 1), f"scoring sentences {a + 1}-{b} of {n}")
            frames.append(predict(model, tokenizer, dataset[a:b], batch_size=batch_size, progress=False))
    df = pd.concat(frames, ignore_index=True)
    df.attrs = frames[0].attrs
    probs, labels = probs_labels(df)
    return LayerScores(layers=layers, probs=probs, labels=labels, label_names=tuple(dataset.task.label_names))


def explain_example(model, tokenizer, dataset: Dataset, layers: Sequence[int], example: int, *,
                    method: str = "saliency", backend: str = "fast"):
    """The attribution of sentence `example` of `dataset` (for its predicted label) with `layers` dropped."""
    if not 0 <= example < len(dataset):
        raise InputError(f"example index {example} is out of range for a dataset of {len(dataset)}")
    with drop_attention(model, layers):
        return attribute(model, tokenizer, dataset.task, [dataset.examples[example]], method=method,
                         backend=backend)[0]


def explorer_metrics() -> tuple[Metric, ...]:
    """The metrics the explorer compares with the unpruned model: the calibration headline metrics
    (:func:`toolkit.metrics.registry.headline_metrics`; built in: accuracy and ECE)."""
    return headline_metrics("calibration")


def compare_to_reference(scores: LayerScores, reference: LayerScores, *, n_boot: int = 1000, alpha: float = 0.05,
                         seed: int = 0) -> pd.DataFrame:
    """Each metric with `layers` dropped against the unpruned reference on the same sentences.

    delta = metric(pruned) - metric(unpruned), with a paired percentile bootstrap CI
    (`toolkit.decisions.stats.paired_bootstrap`: both models resampled on the same sentences).

    Returns:
        DataFrame indexed by metric label (:func:`explorer_metrics`: `accuracy`, `ECE`) with columns
        `value`, `reference`, `delta`, `low`, `high` (the CI of delta), `better` ("higher" or
        "lower"), `n`.
    """
    if scores.n != reference.n or not np.array_equal(scores.labels, reference.labels):
        raise InputError(f"scores (n={scores.n}) and reference (n={reference.n}) are not on the same sentences")
    rows = {}
    for metric in explorer_metrics():
        name, fn, better = metric.label, metric.fn, metric.better
        if scores.layers == reference.layers:
            ci = Interval(0.0, 0.0, 0.0, alpha, 0)
        else:
            ci = paired_bootstrap(fn, (reference.probs, reference.labels), (scores.probs, scores.labels),
                                  n_boot=n_boot, alpha=alpha, seed=seed)
        rows[name] = dict(value=float(fn(scores.probs, scores.labels)),
                          reference=float(fn(reference.probs, reference.labels)),
                          delta=ci.estimate, low=ci.low, high=ci.high, better=better, n=scores.n)
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(frozen=True, eq=False)
class ExplorerResult:
    """What the explorer shows for one choice of dropped layers and one sentence."""

    layers: tuple[int, ...]
    accuracy: float
    ece: float
    prediction: str
    confidence: float
    attribution_html: str
    n: int = 0
    example: int = 0
    text: str = ""
    gold: str = ""
    scores: LayerScores | None = None
    attribution: object = None
    faithfulness: SentenceComprehensiveness | None = None


def explorer_result(dataset: Dataset, scores: LayerScores, example: int, attribution,
                    faithfulness: SentenceComprehensiveness | None = None) -> ExplorerResult:
    """The `ExplorerResult` of sentence `example` from a layer set's scores and the sentence's attribution."""
    ex = dataset.examples[example]
    return ExplorerResult(
        layers=scores.layers, accuracy=scores.accuracy, ece=scores.ece,
        prediction=scores.label_names[int(scores.preds[example])], confidence=float(scores.probs[example].max()),
        attribution_html=attributions_html([attribution]), n=scores.n, example=example, text=ex.text,
        gold=scores.label_names[ex.label], scores=scores, attribution=attribution, faithfulness=faithfulness,
    )


def evaluate_layers(model, tokenizer, dataset: Dataset, layers: Sequence[int], *, example: int = 0,
                    method: str = "saliency", backend: str = "fast", batch_size: int = 16) -> ExplorerResult:
    """Accuracy and ECE on `dataset`, and one sentence's prediction, attribution and comprehensiveness
    (`toolkit.explorer.faithfulness.sentence_comprehensiveness`), with `layers` dropped."""
    if not 0 <= example < len(dataset):
        raise InputError(f"example index {example} is out of range for a dataset of {len(dataset)}")
    scores = score_layers(model, tokenizer, dataset, layers, batch_size=batch_size, chunks=1)
    attribution = explain_example(model, tokenizer, dataset, layers, example, method=method, backend=backend)
    faith = sentence_comprehensiveness(model, tokenizer, dataset.task, dataset.examples[example].text, attribution,
                                       layers, batch_size=batch_size)
    return explorer_result(dataset, scores, example, attribution, faith)
