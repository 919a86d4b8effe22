"""Erasure faithfulness with attention layers dropped, against the unpruned model: one sentence, a set.

The faithfulness axis of the pruning explorer (:class:`toolkit.explorer.widgets.PruningExplorer`), as plain
functions on top of :mod:`toolkit.metrics.faithfulness`:

- :func:`sentence_comprehensiveness`: one sentence's ERASER comprehensiveness at each fraction and
  its AOPC, erasing the words its own attribution ranks highest, with ``layers`` dropped.
- :func:`set_comprehensiveness`: the same (AOPC, or NAOPC) for every sentence of a dataset, each
  explained by ``method`` in the same model state.
- :func:`compare_comprehensiveness`: the set's mean pruned vs unpruned, the change with a paired
  bootstrap CI (:func:`toolkit.decisions.stats.paired_bootstrap`, both models resampled on the same sentences).

Comprehensiveness (DeYoung et al. 2020): comp_f = p(y^ | x) - p(y^ | x without its top-k(f)
attributed words), y^ the model's own prediction; AOPC = mean over the fractions f in
{1, 5, 10, 20, 50}% (:data:`toolkit.metrics.faithfulness.FRACTIONS`). Higher = more faithful: the words the
explanation ranks first really carry the prediction. Each model state explains and erases with its
own attribution, so a change mixes "the explanation got worse" with "the model changed"; NAOPC
(Edin et al. 2025) divides out each sentence's range of attainable AOPC, which makes the two models'
numbers comparable.

Erased variants are scored with :func:`toolkit.metrics.faithfulness.model_scorer`, whose memo keeps every
scored variant per model state (the dropped layers are part of the state): a sentence, a set or a
bound search asked for twice, or the unpruned reference asked for by every layer set, costs one
scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..attribution import Attribution, attribute, split_words
from ..data.datasets import Dataset
from ..data.task import Task
from ..metrics.faithfulness import FRACTIONS, comprehensiveness, k_for_fraction, model_scorer, naopc
from ..metrics.registry import get_metric, list_metrics
from ..pruning.attention import drop_attention
from ..decisions.stats import Interval, paired_bootstrap
from .._core.validation import InputError, check_choice, check_int

__all__ = [
    "FAITHFULNESS_METRICS",
    "SentenceComprehensiveness",
    "compare_comprehensiveness",
    "sentence_comprehensiveness",
    "set_comprehensiveness",
]

FAITHFULNESS_METRICS: dict[str, str] = {m.short: m.name for m in list_metrics("faithfulness") if m.headline}
"""Set-level metric name -> the column of :mod:`toolkit.metrics.faithfulness` it reads: the registry's headline
faithfulness metrics by their short name (``aopc``, ``naopc``)."""

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SentenceComprehensiveness:
    """One sentence's comprehensiveness with ``layers`` dropped.

    Attributes:
        layers: the dropped attention layers.
        aopc: AOPC comprehensiveness, the mean of ``curve``.
        curve: comp_f at each of ``fractions``.
        fractions: the erased fractions of the words.
        ks: the number of erased words at each fraction (``k_for_fraction``).
        label: y^, the predicted label that is tracked.
        p_full: p(y^ | x), the unerased sentence.
    """

    layers: tuple[int, ...]
    aopc: float
    curve: tuple[float, ...]
    fractions: tuple[float, ...]
    ks: tuple[int, ...]
    label: int
    p_full: float


def _words_match(attribution: Attribution, text: str) -> None:
    words = tuple(w for w, _, _ in split_words(text))
    if tuple(attribution.words) != words:
        raise InputError(
            f"attribution {attribution.example_id!r} has words {list(attribution.words)[:8]} but the text has "
            f"{list(words)[:8]}; pass the attribution of this text"
        )


def sentence_comprehensiveness(model, tokenizer, task: Task, text: str, attribution: Attribution,
                               layers: Sequence[int] = (), *, fractions: Sequence[float] = FRACTIONS,
                               batch_size: int = 16) -> SentenceComprehensiveness:
    """ERASER comprehensiveness of one sentence's own attribution, with ``layers`` dropped.

    comp_f = p(y^ | x) - p(y^ | x without its top-k(f) words), k(f) = max(1, ceil(f * n_words));
    AOPC = mean_f comp_f (DeYoung et al. 2020, https://arxiv.org/abs/1911.03429). Words are erased
    from the text (``erasure="delete"``) in the order of ``attribution.scores`` (descending; ties
    by position) and scored by :func:`toolkit.metrics.faithfulness.model_scorer` (memoised per model state).

    Args:
        text: the sentence (``attribution`` must hold its words, ``split_words(text)``).
        attribution: the sentence's attribution computed in the same model state (``layers`` dropped).
        layers: the attention layers to drop while scoring.
        fractions: fractions of the words to erase (default ERASER's).
        batch_size: erased variants per forward pass.

    Returns:
        A :class:`SentenceComprehensiveness`.

    Raises:
        InputError: the attribution's words are not the text's.
    """
    _words_match(attribution, text)
    layers = tuple(sorted(int(i) for i in layers))
    with drop_attention(model, layers):
        scorer = model_scorer(model, tokenizer, task, batch_size=batch_size)
        row = comprehensiveness(scorer, [text], [attribution.scores], fractions=fractions).iloc[0]
    fractions = tuple(float(f) for f in fractions)
    return SentenceComprehensiveness(
        layers=layers, aopc=float(row["aopc_comprehensiveness"]),
        curve=tuple(float(row[f"comprehensiveness@{f:g}"]) for f in fractions), fractions=fractions,
        ks=tuple(k_for_fraction(f, len(attribution.words)) for f in fractions),
        label=int(row["label"]), p_full=float(row["p_full"]),
    )


def set_comprehensiveness(model, tokenizer, dataset: Dataset, layers: Sequence[int] = (), *,
                          method: str = "saliency", metric: str = "aopc", backend: str = "fast",
                          batch_size: int = 16, on_progress: Progress | None = None) -> pd.DataFrame:
    """Per sentence of ``dataset``: the comprehensiveness of its own ``method`` attribution, ``layers`` dropped.

    Every sentence is explained (:func:`toolkit.attribution.attribute`, the predicted label) and its
    erased variants are scored in the same model state. ``metric="aopc"``: AOPC comprehensiveness
    (:func:`toolkit.metrics.faithfulness.comprehensiveness`). ``metric="naopc"``: AOPC min-max normalised
    between the sentence's lowest and highest AOPC over all word orderings
    (:func:`toolkit.metrics.faithfulness.naopc`; exact for sentences of <= 8 words, a beam search above;
    NaN when the bounds coincide) - costlier: the bound search scores many more variants.

    Args:
        layers: the attention layers to drop.
        method: the attribution method (:func:`toolkit.attribution.list_attribution_methods`).
        metric: ``"aopc"`` or ``"naopc"`` (:data:`FAITHFULNESS_METRICS`).
        backend: the attribution backend.
        batch_size: examples per forward pass (attribution and scoring).
        on_progress: called as ``on_progress(fraction_done, what)`` before each step.

    Returns:
        One row per sentence, in dataset order: example, n_words, label (y^), p_full,
        aopc_comprehensiveness, value (the chosen metric; for NAOPC also naopc_comprehensiveness,
        the bound columns).
    """
    check_choice(metric, "faithfulness metric", FAITHFULNESS_METRICS)
    check_int(batch_size, "batch_size", 1)
    if len(dataset) == 0:
        raise InputError("the dataset is empty; expected at least one sentence")
    report = on_progress or (lambda fraction, what: None)
    layers = tuple(sorted(int(i) for i in layers))
    texts = [e.text for e in dataset.examples]
    with drop_attention(model, layers):
        report(0.0, f"explaining {len(texts)} sentences ({method})")
        attributions = attribute(model, tokenizer, dataset.task, dataset.examples, method=method, backend=backend,
                                 batch_size=batch_size)
        report(0.5, f"erasing their top words ({metric.upper()})")
        scorer = model_scorer(model, tokenizer, dataset.task, batch_size=batch_size)
        scores = [a.scores for a in attributions]
        if "bounds" in get_metric(FAITHFULNESS_METRICS[metric]).needs:  # NAOPC: the bound search too
            table = naopc(scorer, texts, scores)
        else:
            table = comprehensiveness(scorer, texts, scores)
    report(1.0, "done")
    return table.assign(value=table[FAITHFULNESS_METRICS[metric]].astype(float)).reset_index(drop=True)


def _mean(values: np.ndarray, *, weights: np.ndarray | None = None):
    """Mean over sentences; with bootstrap count weights (B, n) one mean per resample."""
    return float(values.mean()) if weights is None else (weights @ values) / weights.sum(axis=-1)


def compare_comprehensiveness(values: pd.DataFrame | Sequence[float], reference: pd.DataFrame | Sequence[float], *,
                              metric: str = "aopc", n_boot: int = 1000, alpha: float = 0.05,
                              seed: int = 0) -> pd.DataFrame:
    """The set's mean comprehensiveness with layers dropped against the unpruned model, same sentences.

    delta = mean_i v_i(pruned) - mean_i v_i(unpruned) over the sentences where both are finite (NAOPC
    is NaN for a sentence whose bounds coincide), with a paired percentile bootstrap CI
    (:func:`toolkit.decisions.stats.paired_bootstrap`: the same resampled sentences for both models).

    Args:
        values: the pruned model's per-sentence values (:func:`set_comprehensiveness`, or an array).
        reference: the unpruned model's, on the same sentences in the same order.
        metric: the name the row gets (``"aopc"`` or ``"naopc"``).
        n_boot, alpha, seed: as in :func:`toolkit.decisions.stats.paired_bootstrap`.

    Returns:
        One row indexed by ``"<METRIC> comprehensiveness"`` with the columns of
        :func:`toolkit.explorer.widgets.compare_to_reference`: value, reference, delta, low, high (the CI of
        delta), better ("higher"), n (sentences used), plus n_total (sentences given).
    """
    check_choice(metric, "faithfulness metric", FAITHFULNESS_METRICS)
    v = np.asarray(values["value"] if isinstance(values, pd.DataFrame) else values, dtype=float)
    r = np.asarray(reference["value"] if isinstance(reference, pd.DataFrame) else reference, dtype=float)
    if v.ndim != 1 or v.shape != r.shape:
        raise InputError(f"values (shape {v.shape}) and reference (shape {r.shape}) must be 1-D over the same sentences")
    both = np.isfinite(v) & np.isfinite(r)
    v, r = v[both], r[both]
    if not both.any():
        ci = Interval(np.nan, np.nan, np.nan, alpha, 0)
        value = ref = np.nan
    else:
        ci = paired_bootstrap(_mean, (r,), (v,), n_boot=n_boot, alpha=alpha, seed=seed)
        value, ref = float(v.mean()), float(r.mean())
    row = dict(value=value, reference=ref, delta=ci.estimate, low=ci.low, high=ci.high,
               better=get_metric(FAITHFULNESS_METRICS[metric]).better,
               n=int(both.sum()), n_total=int(len(both)))
    return pd.DataFrame.from_dict({f"{metric.upper()} comprehensiveness": row}, orient="index")
