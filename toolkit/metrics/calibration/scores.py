"""Proper scores and accuracy (Brier, NLL), the signed calibration gap, the predicted-positive rate,
and selective prediction (accuracy-coverage, AURC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..._core.validation import check_int
from .inputs import Data, probs_and_labels, resample_weights, scalar_or_rows, top_label

__all__ = [
    "NLL_FLOOR",
    "accuracy",
    "accuracy_coverage",
    "aurc",
    "brier",
    "calibration_gap",
    "nll",
    "positive_rate",
]

NLL_FLOOR = 1e-15  # p_y is clipped here before the log (sklearn.metrics.log_loss's former eps)


def _mean(values: NDArray[np.float64], w: NDArray[np.float64], scalar: bool) -> float | NDArray[np.float64]:
    return scalar_or_rows((w @ values) / w.sum(axis=1), scalar)


def brier(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Multi-class Brier score (supports ``weights``).

    BS = (1/n) sum_i sum_c (p_ic - 1[y_i = c])^2, in [0, 2] (Brier 1950, "Verification of
    forecasts expressed in terms of probability", Monthly Weather Review 78(1)).

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    return _mean(((p - onehot) ** 2).sum(axis=1), w, scalar)


def nll(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Negative log-likelihood (cross-entropy, nats; supports ``weights``).

    NLL = -(1/n) sum_i log max(p_{i, y_i}, 1e-15): the floor keeps a zero probability finite
    (at most 34.5 nats per example). Quinonero-Candela et al. 2006; Guo et al. 2017 Sec. 2.

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    return _mean(-np.log(np.maximum(p[np.arange(p.shape[0]), y], NLL_FLOOR)), w, scalar)


def accuracy(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Top-1 accuracy (1/n) sum_i 1[argmax_c p_ic = y_i] (supports ``weights``).

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    return _mean(top_label(p, y)[1], w, scalar)


def calibration_gap(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Signed top-label calibration gap: mean confidence minus accuracy (supports ``weights``).

    gap = (1/n) sum_i (f_i - a_i),  f_i = max_c p_ic, a_i = 1[argmax_c p_ic = y_i]

    > 0 overconfident, < 0 underconfident (the one-bin ECE keeps the sign; Guo et al. 2017,
    https://arxiv.org/abs/1706.04599). Unlike ECE it says which way a model is off: for an
    underconfident model ECE falls when accuracy falls, the gap moves toward 0 from below.

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    conf, correct = top_label(p, y)
    return _mean(conf - correct, w, scalar)


def positive_rate(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None, positive: int = 1
) -> float | NDArray[np.float64]:
    """Share of examples predicted as class ``positive`` (supports ``weights``).

    rate = (1/n) sum_i 1[argmax_c p_ic = positive]; a collapsed model sits at 0 or 1, whatever
    the labels (compare with the share of positive labels).

    Args:
        probs, labels, weights: as in :func:`ece` (labels are checked, not used).
        positive: the class index counted, in [0, C).
    """
    p, y = probs_and_labels(probs, labels)
    check_int(positive, "positive", 0, p.shape[1] - 1)
    w, scalar = resample_weights(weights, p.shape[0])
    return _mean((p.argmax(axis=1) == positive).astype(np.float64), w, scalar)


def accuracy_coverage(probs: Data, labels: ArrayLike | None = None) -> pd.DataFrame:
    """Accuracy-coverage curve of selective prediction by top-label confidence.

    Abstain when f_i < tau; for every distinct confidence tau (descending):
    coverage(tau) = #{f_i >= tau}/n, accuracy(tau) = mean_{f_i >= tau} a_i
    (El-Yaniv & Wiener 2010; Geifman & El-Yaniv 2017, https://arxiv.org/abs/1705.08500).

    Args:
        probs, labels: as in :func:`ece`.

    Returns:
        DataFrame with columns ``coverage``, ``accuracy``, ``threshold``, one row per distinct
        confidence, coverage increasing to 1.
    """
    p, y = probs_and_labels(probs, labels)
    conf, correct = top_label(p, y)
    thr, inv = np.unique(-conf, return_inverse=True)  # groups in descending confidence
    kept = np.cumsum(np.bincount(inv))
    right = np.cumsum(np.bincount(inv, weights=correct))
    return pd.DataFrame({"coverage": kept / conf.size, "accuracy": right / kept, "threshold": -thr})


def aurc(probs: Data, labels: ArrayLike | None = None) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019, https://arxiv.org/abs/1805.08206).

    Sort by confidence descending; AURC = (1/n) sum_{m=1}^{n} E_m / m, E_m the errors among the m
    most confident examples. Ties in confidence have no order, so E_m inside a tied group of
    size g with e errors, preceded by M examples with E errors, is its expectation over the
    group's orders: E + j e / g for m = M + j. Lower is better; 0 for a perfect classifier.

    Args:
        probs, labels: as in :func:`ece`.

    Returns:
        AURC in [0, 1].
    """
    p, y = probs_and_labels(probs, labels)
    conf, correct = top_label(p, y)
    _, inv = np.unique(-conf, return_inverse=True)
    size = np.bincount(inv).astype(np.float64)
    errs = np.bincount(inv, weights=1.0 - correct)
    before_n = np.cumsum(size) - size  # examples in more confident groups
    before_e = np.cumsum(errs) - errs
    order = np.argsort(inv, kind="stable")
    g = inv[order]
    j = np.arange(1, conf.size + 1) - before_n[g]  # 1..size within each group
    risk = (before_e[g] + j * errs[g] / size[g]) / (before_n[g] + j)
    return float(risk.mean())
