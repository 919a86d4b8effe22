"""Binned calibration errors: the ECE family, classwise and debiased variants, the reliability table.

Top-label quantities (Guo et al. 2017): prediction y^_i = argmax_c p_ic, confidence
f_i = max_c p_ic, correctness a_i = 1[y^_i = y_i]. Binned estimators group the f_i into bins
B_1..B_M and compare the mean confidence conf(B_m) with the accuracy acc(B_m) of each bin.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..._core.validation import InputError, check_choice, check_int
from .inputs import Data, check_n_bins, probs_and_labels, resample_weights, scalar_or_rows, top_label

__all__ = [
    "BINNINGS",
    "Binning",
    "NORMS",
    "Norm",
    "classwise_ece",
    "debiased_l2_ce",
    "ece",
    "positive_class_ece",
    "reliability_table",
]

Binning = Literal["width", "mass"]
Norm = Literal["l1", "l2", "max"]

BINNINGS: tuple[str, ...] = ("width", "mass")
NORMS: tuple[str, ...] = ("l1", "l2", "max")


def _mass_edges(cs: NDArray[np.float64], cum: NDArray[np.float64], n_bins: int) -> NDArray[np.float64]:
    """Interior equal-mass edges per row, (B, n_bins - 1), as Kumar et al. 2019 ``get_equal_bins``.

    The sorted (resampled) sample is split like ``np.array_split`` into n_bins parts: the first
    r = N mod M parts hold q + 1 points, the rest q = N // M. Edge i is the midpoint of the two
    order statistics x_(s_i), x_(s_i + 1) around the split, s_i = i*q + min(i, r); an edge
    after the last point (N < M) is +inf, which leaves that bin empty.
    """
    b, n = cum.shape
    total = cum[:, -1]
    i = np.arange(1, n_bins, dtype=np.float64)
    q, r = np.floor_divide(total, n_bins)[:, None], np.mod(total, n_bins)[:, None]
    s = i * q + np.minimum(i, r)  # (B, M-1) number of points before the split, 1-based rank
    offset = (np.arange(b, dtype=np.float64) * (float(total.max()) + 1.0))[:, None]
    flat = (cum + offset).ravel()
    row0 = (np.arange(b) * n)[:, None]

    def order_stat(k: NDArray[np.float64]) -> NDArray[np.float64]:  # x_(k), k 1-based rank
        pos = np.searchsorted(flat, (np.minimum(k, total[:, None]) + offset).ravel(), side="left")
        return cs[pos.reshape(k.shape) - row0]

    edges = (order_stat(s) + order_stat(s + 1.0)) / 2.0
    return np.where(s >= total[:, None], np.inf, edges)


def _bin_sums(
    conf: NDArray[np.float64],
    target: NDArray[np.float64],
    w: NDArray[np.float64],
    n_bins: int,
    binning: str,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-bin weighted count, sum of confidence and sum of target, each (B, n_bins), plus edges.

    Bins are (lower, upper]: a value equal to an edge belongs to the lower bin, 0 to the first
    bin and 1 to the last (Guo et al. 2017; never a phantom bin past 1). ``width``: edges m/M,
    the same for every row, so all sums are one matrix product w @ [1, f, y] one-hot by bin.
    ``mass``: edges depend on each row's resample (:func:`_mass_edges`); bins are then runs of
    the confidence-sorted examples, summed per row with one ``np.add.reduceat``.
    """
    b = w.shape[0]
    if binning == "width":
        inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        idx = np.searchsorted(inner, conf, side="left")  # #edges < f: f on an edge -> lower bin
        design = np.zeros((conf.size, 3 * n_bins))
        rows = np.arange(conf.size)
        design[rows, idx], design[rows, n_bins + idx], design[rows, 2 * n_bins + idx] = 1.0, conf, target
        sums = w @ design
        edges = np.broadcast_to(inner, (b, n_bins - 1))
        return sums[:, :n_bins], sums[:, n_bins : 2 * n_bins], sums[:, 2 * n_bins :], edges
    order = np.argsort(conf, kind="stable")
    cs, ts, ws = conf[order], target[order], np.take(w, order, axis=1)
    cum = np.cumsum(ws, axis=1)
    edges = _mass_edges(cs, cum, n_bins)
    pos = np.searchsorted(cs, edges.ravel(), side="right").reshape(edges.shape)
    n = cs.size
    starts = np.concatenate([np.zeros((b, 1), np.int64), pos], axis=1)  # (B, M) first sorted position per bin
    ends = np.concatenate([pos, np.full((b, 1), n)], axis=1)
    empty = starts >= ends
    flat = (starts + (np.arange(b) * n)[:, None]).ravel()  # non-decreasing; == b*n only at the tail
    inside = flat < b * n

    def per_bin(values: NDArray[np.float64]) -> NDArray[np.float64]:
        # segment sums over the flattened rows (one pass, no cumulative array); reduceat gives
        # values[i] for an empty segment, hence the mask
        sums = np.zeros(b * n_bins)
        sums[inside] = np.add.reduceat(values.ravel(), flat[inside])
        return np.where(empty, 0.0, sums.reshape(b, n_bins))

    cum_end = np.where(ends > 0, np.take_along_axis(cum, np.maximum(ends - 1, 0), axis=1), 0.0)
    counts = np.diff(cum_end, axis=1, prepend=0.0)
    sum_conf = per_bin(ws * cs)
    ws *= ts  # in place: ws is a fresh copy and its counts already live in cum
    return counts, sum_conf, per_bin(ws), edges


def _binned_error(counts: NDArray, sum_conf: NDArray, sum_target: NDArray, norm: str) -> NDArray[np.float64]:
    """ECE (l1), RMSCE (l2) or MCE (max) from per-bin sums, one value per row."""
    filled = counts > 0
    safe = np.where(filled, counts, 1.0)
    gap = np.where(filled, np.abs(sum_conf - sum_target) / safe, 0.0)
    prop = counts / counts.sum(axis=1, keepdims=True)
    if norm == "l1":
        return (prop * gap).sum(axis=1)
    if norm == "l2":
        return np.sqrt((prop * gap**2).sum(axis=1))
    return gap.max(axis=1)


def ece(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    binning: Binning = "width",
    norm: Norm = "l1",
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Expected calibration error of the top-label confidence (supports ``weights``).

    ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|     (norm="l1", Guo et al. 2017,
    https://arxiv.org/abs/1706.04599; Naeini et al. 2015)
    RMSCE = sqrt(sum_m |B_m|/n * (acc(B_m) - conf(B_m))^2)   (norm="l2")
    MCE = max_{m: |B_m| > 0} |acc(B_m) - conf(B_m)|          (norm="max")

    ``binning="width"``: M equal-width bins ((m-1)/M, m/M], a confidence of exactly 1 in the last
    bin. ``binning="mass"``: M equal-count bins (adaptive ECE; Nixon et al. 2019,
    https://arxiv.org/abs/1904.01685), edges at midpoints between order statistics as in Kumar et
    al. 2019. Empty bins contribute nothing.

    Args:
        probs: class probabilities (n, C), rows in [0, 1] summing to 1; or a predict() DataFrame.
        labels: integer labels (n,) in [0, C); None with a DataFrame.
        n_bins: number of bins M >= 1.
        binning: "width" or "mass".
        norm: "l1", "l2" or "max".
        weights: optional per-example counts, (n,) or (B, n) (bootstrap resamples).

    Returns:
        A float, or an array (B,) for 2-D weights.

    Raises:
        InputError: invalid probabilities/labels, n = 0, n_bins < 1, unknown binning or norm.
    """
    check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    conf, correct = top_label(p, y)
    counts, sc, st, _ = _bin_sums(conf, correct, w, n_bins, binning)
    return scalar_or_rows(_binned_error(counts, sc, st, norm), scalar)


def classwise_ece(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    binning: Binning = "width",
    norm: Norm = "l1",
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Class-wise (marginal) calibration error, averaged over classes (supports ``weights``).

    cwECE = (1/C) sum_c sum_m |B_mc|/n * |mean_{i in B_mc} 1[y_i = c] - mean_{i in B_mc} p_ic|
    (Kull et al. 2019, https://arxiv.org/abs/1910.12656; Nixon et al. 2019 "SCE"): every class
    probability p_ic is binned, not only the top one. ``norm`` applies per class as in
    :func:`ece`; the per-class errors are averaged.

    Args:
        probs, labels, n_bins, binning, norm, weights: as in :func:`ece`.

    Returns:
        A float, or an array (B,) for 2-D weights.

    Raises:
        InputError: as in :func:`ece`, or a single-class set (C < 2: nothing to marginalise).
    """
    check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p, y = probs_and_labels(probs, labels)
    if p.shape[1] < 2:
        raise InputError(f"classwise metrics need C >= 2 classes; probs has C={p.shape[1]} (a single-class set)")
    w, scalar = resample_weights(weights, p.shape[0])
    per_class = [
        _binned_error(*_bin_sums(p[:, c], (y == c).astype(np.float64), w, n_bins, binning)[:3], norm)
        for c in range(p.shape[1])
    ]
    return scalar_or_rows(np.mean(per_class, axis=0), scalar)


def positive_class_ece(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    positive: int = 1,
    n_bins: int = 15,
    binning: Binning = "width",
    norm: Norm = "l1",
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Calibration error of p(positive) for a binary task: the class-wise ECE of one class.

    ECE_+ = sum_m |B_m|/n * |mean_{i in B_m} 1[y_i = +] - mean_{i in B_m} p_i+|,  B_m bins of p_i+

    Top-label ECE bins max(p, 1 - p) and so folds the two classes together; binning p(positive)
    on [0, 1] keeps apart "says 0.3 positive" and "says 0.7 positive" (Kull et al. 2019,
    https://arxiv.org/abs/1910.12656). :func:`classwise_ece` averages this over the classes.

    Args:
        probs, labels, n_bins, binning, norm, weights: as in :func:`ece`.
        positive: the class index whose probability is binned, in [0, C).
    """
    check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p, y = probs_and_labels(probs, labels)
    check_int(positive, "positive", 0, p.shape[1] - 1)
    w, scalar = resample_weights(weights, p.shape[0])
    counts, sum_conf, sum_target, _ = _bin_sums(p[:, positive], (y == positive).astype(np.float64), w, n_bins, binning)
    return scalar_or_rows(_binned_error(counts, sum_conf, sum_target, norm), scalar)


def _debiased_sq(counts: NDArray, sum_conf: NDArray, sum_target: NDArray) -> NDArray[np.float64]:
    """Kumar et al. 2019 debiased squared L2 error from per-bin sums; bins with < 2 points give 0."""
    ok = counts >= 2
    safe = np.where(ok, counts, 2.0)
    acc, cf = sum_target / safe, sum_conf / safe
    term = (cf - acc) ** 2 - acc * (1.0 - acc) / (safe - 1.0)
    return (np.where(ok, term, 0.0) * counts / counts.sum(axis=1, keepdims=True)).sum(axis=1)


def debiased_l2_ce(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    mode: Literal["top-label", "marginal"] = "top-label",
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Debiased L2 calibration error with equal-mass bins (Kumar et al. 2019; supports ``weights``).

    CE^2 = sum_m |B_m|/n * [ (conf(B_m) - acc(B_m))^2 - acc(B_m)(1 - acc(B_m)) / (|B_m| - 1) ],
    the plug-in squared error minus the variance of each bin's label mean, an unbiased estimate
    of the binned squared error; result sqrt(max(CE^2, 0)). Bins with fewer than 2 points
    contribute 0. ``mode="marginal"`` averages CE_c^2 over classes before the square root.
    "Verified Uncertainty Calibration", https://arxiv.org/abs/1909.10155 (their
    ``get_calibration_error(..., p=2, debias=True)`` with ``get_equal_bins``).

    Args:
        probs, labels, n_bins, weights: as in :func:`ece`.
        mode: "top-label" (confidence vs correctness) or "marginal" (every class probability).

    Returns:
        A float, or an array (B,) for 2-D weights.
    """
    check_n_bins(n_bins)
    check_choice(mode, "mode", ("top-label", "marginal"))
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    if mode == "top-label":
        conf, correct = top_label(p, y)
        sq = np.maximum(_debiased_sq(*_bin_sums(conf, correct, w, n_bins, "mass")[:3]), 0.0)
    else:
        if p.shape[1] < 2:
            raise InputError(f"classwise metrics need C >= 2 classes; probs has C={p.shape[1]} (a single-class set)")
        sq = np.mean(
            [
                np.maximum(_debiased_sq(*_bin_sums(p[:, c], (y == c).astype(np.float64), w, n_bins, "mass")[:3]), 0.0)
                for c in range(p.shape[1])
            ],
            axis=0,
        )
    return scalar_or_rows(np.sqrt(sq), scalar)


def reliability_table(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    binning: Binning = "width",
) -> pd.DataFrame:
    """Per-bin confidence and accuracy of the top label: the data behind a reliability diagram.

    gap(B_m) = conf(B_m) - acc(B_m) (> 0: over-confident). ECE = sum_m count_m/n |gap_m|.

    Args:
        probs, labels, n_bins, binning: as in :func:`ece`.

    Returns:
        DataFrame, one row per bin (empty bins included, with NaN statistics): ``bin`` (0..M-1),
        ``lower``, ``upper`` (the bin is (lower, upper]; for "mass" the edges are data midpoints,
        the outer ones 0 and 1), ``count``, ``confidence`` (mean), ``accuracy``, ``gap``.
    """
    check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    p, y = probs_and_labels(probs, labels)
    conf, correct = top_label(p, y)
    counts, sc, st, edges = _bin_sums(conf, correct, np.ones((1, p.shape[0])), n_bins, binning)
    inner = np.minimum(edges[0], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts[0] > 0, sc[0] / counts[0], np.nan)
        acc = np.where(counts[0] > 0, st[0] / counts[0], np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": np.concatenate([[0.0], inner]),
            "upper": np.concatenate([inner, [1.0]]),
            "count": counts[0].astype(np.int64),
            "confidence": mean_conf,
            "accuracy": acc,
            "gap": mean_conf - acc,
        }
    )
