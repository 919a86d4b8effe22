"""Calibration of class-probability predictions: ECE family, proper scores, temperature scaling.

Inputs are per-example class probabilities ``probs`` (n, C) with integer ``labels`` (n,), or a
``predict()`` DataFrame (its ``p_<label>`` columns and ``label``; see :func:`probs_labels`).
Logits enter only through :class:`TemperatureScaler`.

Top-label quantities (Guo et al. 2017): prediction y^_i = argmax_c p_ic, confidence
f_i = max_c p_ic, correctness a_i = 1[y^_i = y_i]. Binned estimators group the f_i into bins
B_1..B_M and compare the mean confidence conf(B_m) with the accuracy acc(B_m) of each bin.

Vectorised bootstrap: metrics marked "weights" accept ``weights`` of shape (B, n) (resample
counts, see :mod:`toolkit.stats`) and then return B values, one per row, equal to the metric
on the data resampled with those counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import fft, optimize, special

from .stats import Interval, bootstrap_ci, paired_bootstrap
from .validation import check_choice, check_int

__all__ = [
    "TemperatureScaler",
    "accuracy",
    "accuracy_coverage",
    "aurc",
    "brier",
    "calibration_report",
    "classwise_ece",
    "compare_calibration",
    "debiased_l2_ce",
    "ece",
    "nll",
    "probs_labels",
    "reliability_table",
    "smooth_ece",
    "smooth_ece_bandwidth",
    "with_temperature",
]

Binning = Literal["width", "mass"]
Norm = Literal["l1", "l2", "max"]
Data = ArrayLike | pd.DataFrame

BINNINGS: tuple[str, ...] = ("width", "mass")
NORMS: tuple[str, ...] = ("l1", "l2", "max")
ROW_SUM_ATOL = 1e-4  # probability rows must sum to 1 within this (float32 softmax: ~1e-7)
NLL_FLOOR = 1e-15  # p_y is clipped here before the log (sklearn.metrics.log_loss's former eps)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def probs_labels(df: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Read class probabilities and labels from a ``predict()`` DataFrame.

    Args:
        df: columns ``label`` and ``p_<name>`` per class. The class order is
            ``df.attrs["label_names"]`` when present, else the order of the ``p_`` columns.

    Returns:
        ``(probs, labels)``: float64 (n, C) and int64 (n,), validated as in :func:`ece`.

    Raises:
        ValueError: no ``label`` column, no ``p_`` columns, or a label name without its column.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a predict() DataFrame, got {type(df).__name__}")
    if "label" not in df.columns:
        raise ValueError(f"DataFrame has no 'label' column; columns are {list(df.columns)}")
    names = df.attrs.get("label_names")
    if names is not None:
        cols = [f"p_{name}" for name in names]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(
                f"attrs['label_names']={tuple(names)} but columns {missing} are missing; "
                f"probability columns present: {[c for c in df.columns if str(c).startswith('p_')]}"
            )
    else:
        cols = [c for c in df.columns if str(c).startswith("p_")]
        if not cols:
            raise ValueError(f"DataFrame has no 'p_<label>' probability columns; columns are {list(df.columns)}")
    return _check(df[cols].to_numpy(dtype=np.float64), df["label"].to_numpy())


def _check(probs: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Validate probabilities (n, C) and labels (n,); return float64 / int64 copies."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs has shape {p.shape}; expected a 2-D array (n examples, C classes)")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels has shape {y.shape}; expected a 1-D array of n integer labels")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"mismatched lengths: probs has n={p.shape[0]} rows but labels has n={y.shape[0]}")
    if p.shape[0] == 0:
        raise ValueError("empty set: probs and labels have n=0 examples; expected n >= 1")
    if p.shape[1] == 0:
        raise ValueError("probs has C=0 classes; expected C >= 1 columns")
    if not np.all(np.isfinite(p)):
        i, j = np.argwhere(~np.isfinite(p))[0]
        raise ValueError(f"probs[{i}, {j}] = {float(p[i, j])} is not finite; expected probabilities in [0, 1]")
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"probs[{i}, {j}] = {float(p[i, j])} is outside [0, 1]; expected probabilities in [0, 1]")
    dev = np.abs(p.sum(axis=1) - 1.0)
    if np.any(dev > ROW_SUM_ATOL):
        i = int(np.argmax(dev))
        raise ValueError(
            f"row {i} of probs sums to {float(p[i].sum()):.6g}; expected rows summing to 1 within {ROW_SUM_ATOL} "
            "(pass logits to TemperatureScaler, or normalise)"
        )
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"labels have dtype {y.dtype}; expected integers in [0, {p.shape[1] - 1}]")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
        i = int(np.flatnonzero(~(np.isfinite(y) & (y == np.round(y))))[0])
        raise ValueError(f"labels[{i}] = {float(y[i])} is not an integer; expected integers in [0, {p.shape[1] - 1}]")
    y = y.astype(np.int64)
    out = (y < 0) | (y >= p.shape[1])
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(
            f"labels[{i}] = {y[i]} is out of range; expected integers in [0, {p.shape[1] - 1}] for C={p.shape[1]}"
        )
    return p, y


def _inputs(probs: Data, labels: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(probs, labels)`` from arrays, or from a predict() DataFrame when labels is None."""
    if isinstance(probs, pd.DataFrame):
        if labels is not None:
            raise ValueError("labels must be None when a predict() DataFrame is given (its 'label' column is used)")
        return probs_labels(probs)
    if labels is None:
        raise ValueError("labels is required when probs is an array (or pass a predict() DataFrame)")
    return _check(probs, labels)


def _weights(weights: ArrayLike | None, n: int) -> tuple[NDArray[np.float64], bool]:
    """Weights as (B, n) plus whether the caller expects a scalar (None or 1-D weights)."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=np.float64)
    scalar = w.ndim == 1
    w = np.atleast_2d(w)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights has shape {np.shape(weights)}; expected (n,) or (B, n) with n={n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0 (resample counts)")
    if np.any(w.sum(axis=1) <= 0):
        raise ValueError("every row of weights must have a positive sum")
    return w, scalar


def _out(values: NDArray[np.float64], scalar: bool) -> float | NDArray[np.float64]:
    return float(values[0]) if scalar else values


def _check_n_bins(n_bins: int) -> None:
    check_int(n_bins, "n_bins", 1, keyword=True)


def _top_label(p: NDArray[np.float64], y: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Top-label confidence f_i = max_c p_ic and correctness a_i = 1[argmax_c p_ic = y_i]."""
    pred = p.argmax(axis=1)
    return p[np.arange(p.shape[0]), pred], (pred == y).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Binning
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Binned calibration errors
# --------------------------------------------------------------------------------------------


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
        ValueError: invalid probabilities/labels, n = 0, n_bins < 1, unknown binning or norm.
    """
    _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
    conf, correct = _top_label(p, y)
    counts, sc, st, _ = _bin_sums(conf, correct, w, n_bins, binning)
    return _out(_binned_error(counts, sc, st, norm), scalar)


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
        ValueError: as in :func:`ece`, or a single-class set (C < 2: nothing to marginalise).
    """
    _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p, y = _inputs(probs, labels)
    if p.shape[1] < 2:
        raise ValueError(f"classwise metrics need C >= 2 classes; probs has C={p.shape[1]} (a single-class set)")
    w, scalar = _weights(weights, p.shape[0])
    per_class = [
        _binned_error(*_bin_sums(p[:, c], (y == c).astype(np.float64), w, n_bins, binning)[:3], norm)
        for c in range(p.shape[1])
    ]
    return _out(np.mean(per_class, axis=0), scalar)


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
    _check_n_bins(n_bins)
    check_choice(mode, "mode", ("top-label", "marginal"))
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
    if mode == "top-label":
        conf, correct = _top_label(p, y)
        sq = np.maximum(_debiased_sq(*_bin_sums(conf, correct, w, n_bins, "mass")[:3]), 0.0)
    else:
        if p.shape[1] < 2:
            raise ValueError(f"classwise metrics need C >= 2 classes; probs has C={p.shape[1]} (a single-class set)")
        sq = np.mean(
            [
                np.maximum(_debiased_sq(*_bin_sums(p[:, c], (y == c).astype(np.float64), w, n_bins, "mass")[:3]), 0.0)
                for c in range(p.shape[1])
            ],
            axis=0,
        )
    return _out(np.sqrt(sq), scalar)


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
    _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    p, y = _inputs(probs, labels)
    conf, correct = _top_label(p, y)
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


# --------------------------------------------------------------------------------------------
# Smooth ECE
# --------------------------------------------------------------------------------------------


class _SmoothCoefficients:
    """Cosine coefficients a_bk of the weighted residual measure, k = 0..K, extended lazily.

    a_bk = sum_i w_bi r_i cos(pi k f_i) / sum_i w_bi, from the Chebyshev recurrence
    cos(k x) = 2 cos(x) cos((k-1) x) - cos((k-2) x) (relative error ~k * 1e-16).
    """

    def __init__(self, f: NDArray[np.float64], r: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        self._wr = w * r / w.sum(axis=1, keepdims=True)  # (B, n)
        self._two_cos = 2.0 * np.cos(np.pi * f)
        self._prev, self._cur = np.ones_like(f), np.cos(np.pi * f)  # cos((k-1) pi f), cos(k pi f)
        self._a = self._wr @ np.stack([self._prev, self._cur], axis=1)  # (B, 2)

    def get(self, k_max: int) -> NDArray[np.float64]:
        if self._a.shape[1] <= k_max:
            # extend by at least doubling; one matrix product per block (fast BLAS path)
            m = max(k_max + 1, 2 * self._a.shape[1]) - self._a.shape[1]
            block = np.empty((self._cur.size, m))
            for j in range(m):
                self._prev, self._cur = self._cur, self._two_cos * self._cur - self._prev
                block[:, j] = self._cur
            self._a = np.concatenate([self._a, self._wr @ block], axis=1)
        return self._a[:, : k_max + 1]


def _n_terms(sigma: float) -> int:
    """Cosine terms kept at bandwidth sigma: exp(-pi^2 k^2 sigma^2 / 2) < 1e-15 beyond 2.7/sigma."""
    return max(4, math.ceil(2.7 / sigma))


def _smooth_integrals(
    coef: _SmoothCoefficients, rows: NDArray[np.int64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """smECE_sigma = int_0^1 |s_sigma(t)| dt and its derivative in sigma, one sigma per row.

    On [0, 1] the Gaussian kernel reflected at 0 and 1 (infinitely often) has the expansion
        K_sigma(t, f) = sum_m [phi_sigma(t - f - 2m) + phi_sigma(t + f - 2m)]
                      = 1 + 2 sum_{k>=1} exp(-pi^2 k^2 sigma^2 / 2) cos(pi k f) cos(pi k t),
    so s_sigma(t) = sum_k c_k cos(pi k t), c_0 = a_0, c_k = 2 a_k exp(-pi^2 k^2 sigma^2 / 2).
    s is evaluated on a grid of spacing ~sigma/10 by a DCT-I to locate its sign changes, each
    root is polished by a Newton step on the series, and int |s| = sum_j |S(r_{j+1}) - S(r_j)|
    over consecutive roots (with r = 0 and 1 at the ends), S(t) = c_0 t + sum_k c_k
    sin(pi k t)/(pi k) the exact antiderivative: exact up to root finding (~1e-12). As s = 0 at
    the roots, d/dsigma int |s| = sum_j sign(dS_j) (D(r_{j+1}) - D(r_j)), D = dS/dsigma =
    -pi sigma sum_k k c_k sin(pi k t).
    """
    k_max = _n_terms(float(sigma.min()))
    k = np.arange(k_max + 1, dtype=np.float64)
    c = coef.get(k_max)[rows] * np.exp(-((np.pi * np.outer(sigma, k)) ** 2) / 2.0)
    c[:, 1:] *= 2.0
    n_grid = 4 * k_max + 1
    x = np.zeros((rows.size, n_grid))
    x[:, 0], x[:, 1 : k_max + 1] = c[:, 0], c[:, 1:] / 2.0
    # DCT-I: y_j = x_0 + (-1)^j x_{T-1} + 2 sum_{k=1}^{T-2} x_k cos(pi k j / (T-1)) = s(j / (T-1))
    s = fft.dct(x, type=1, axis=1)
    sign = np.sign(s)
    row, cell = np.nonzero(sign[:, :-1] * sign[:, 1:] < 0)  # row-major: roots sorted within a row
    s0, s1 = s[row, cell], s[row, cell + 1]
    lo, hi = cell / (n_grid - 1.0), (cell + 1.0) / (n_grid - 1.0)
    root = lo - s0 * (hi - lo) / (s1 - s0)
    cr = c[row]
    arg = np.pi * np.outer(root, k)
    val = np.einsum("rk,rk->r", np.cos(arg), cr)
    der = -np.einsum("rk,rk->r", np.sin(arg), cr * (np.pi * k))
    root = np.clip(root - np.divide(val, der, out=np.zeros_like(val), where=der != 0), lo, hi)
    sin = np.sin(np.pi * np.outer(root, k[1:]))
    anti = cr[:, 0] * root + np.einsum("rk,rk->r", sin, cr[:, 1:] / (np.pi * k[1:]))
    dsig = -np.pi * sigma[row] * np.einsum("rk,rk->r", sin, cr[:, 1:] * k[1:])
    # per row, points 0 = r_0 < r_1 < ... < r_m < 1: S(0) = 0, S(1) = c_0, D(0) = D(1) = 0
    same = np.r_[False, row[1:] == row[:-1]]
    step = anti - np.where(same, np.r_[0.0, anti[:-1]], 0.0)
    dstep = dsig - np.where(same, np.r_[0.0, dsig[:-1]], 0.0)
    total = np.bincount(row, weights=np.abs(step), minlength=rows.size)
    deriv = np.bincount(row, weights=np.sign(step) * dstep, minlength=rows.size)
    last, dlast = np.zeros(rows.size), np.zeros(rows.size)
    if row.size:
        is_last = np.r_[row[1:] != row[:-1], True]
        last[row[is_last]], dlast[row[is_last]] = anti[is_last], dsig[is_last]
    tail = c[:, 0] - last
    return total + np.abs(tail), deriv - np.sign(tail) * dlast


def _smooth_batched(
    coef: _SmoothCoefficients, rows: NDArray[np.int64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_smooth_integrals` in row batches of <= ~4M grid entries (bounds memory)."""
    per = max(1, (1 << 22) // (4 * _n_terms(float(sigma.min())) + 1))
    parts = [_smooth_integrals(coef, rows[i : i + per], sigma[i : i + per]) for i in range(0, rows.size, per)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _smooth_fixed_points(coef: _SmoothCoefficients, n_rows: int, eps: float) -> tuple[NDArray, NDArray]:
    """sigma*_b with smECE_sigma* = sigma* for every weight row (Blasiok & Nakkiran 2023, Sec. 4).

    g(sigma) = smECE_sigma - sigma strictly decreases (smoothing contracts the L1 norm), so the
    root is unique. Bracket it by halving sigma from 1 (cost grows like 1/sigma^2, so larger
    sigmas first), then Newton steps with the analytic derivative, safeguarded by the bracket
    (bisection when a step leaves it), all rows at once, to a relative step of 1e-12. If
    g(eps) < 0 the row gets sigma = eps (as relplot).

    Returns:
        (sigma*, smECE_sigma*), each (n_rows,).
    """
    sig_out = np.ones(n_rows)
    val_out, dval = _smooth_batched(coef, np.arange(n_rows), sig_out)
    g, dg = val_out - 1.0, dval - 1.0
    lo, hi = np.full(n_rows, np.nan), np.ones(n_rows)
    open_ = g < 0.0  # g(1) >= 0 only if every example is confidently wrong: sigma* = 1
    cur = 1.0
    while open_.any():  # ladder: sigma = 1/2, 1/4, ..., eps
        cur = max(cur / 2.0, eps)
        r = np.flatnonzero(open_)
        v, dv = _smooth_batched(coef, r, np.full(r.size, cur))
        up = v - cur >= 0.0
        lo[r[up]], sig_out[r[up]], val_out[r[up]] = cur, cur, v[up]
        g[r[up]], dg[r[up]] = v[up] - cur, dv[up] - 1.0
        hi[r[~up]] = cur
        open_[r[up]] = False
        if cur <= eps:  # g(eps) < 0: the fixed point lies below eps
            sig_out[r[~up]], val_out[r[~up]] = eps, v[~up]
            open_[:] = False
    active = ~np.isnan(lo) & (g != 0.0)
    for _ in range(100):
        r = np.flatnonzero(active)
        if r.size == 0:
            break
        new = sig_out[r] - g[r] / dg[r]  # dg = d smECE/d sigma - 1 <= -1
        out = ~((new > lo[r]) & (new < hi[r]))
        new[out] = np.sqrt(lo[r][out] * hi[r][out])
        v, dv = _smooth_batched(coef, r, new)
        moved = np.abs(new - sig_out[r])
        sig_out[r], val_out[r], g[r], dg[r] = new, v, v - new, dv - 1.0
        up = g[r] >= 0.0
        lo[r[up]], hi[r[~up]] = new[up], new[~up]
        active[r[(g[r] == 0.0) | (moved <= 1e-12 * new) | (hi[r] - lo[r] <= 1e-12 * hi[r])]] = False
    return sig_out, val_out


def _smooth_setup(
    probs: Data, labels: ArrayLike | None, weights: ArrayLike | None, eps: float
) -> tuple[_SmoothCoefficients, int, bool]:
    if not (isinstance(eps, (int, float, np.floating)) and 0 < eps < 1):
        raise ValueError(f"eps={eps!r} is invalid; expected a float in (0, 1)")
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
    conf, correct = _top_label(p, y)
    return _SmoothCoefficients(conf, correct - conf, w), w.shape[0], scalar


def smooth_ece(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    sigma: float | None = None,
    eps: float = 1e-3,
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Smooth ECE of the top-label confidence (Blasiok & Nakkiran 2023; supports ``weights``).

    smECE_sigma = int_0^1 | (1/n) sum_i (a_i - f_i) K_sigma(t, f_i) | dt, K_sigma the Gaussian
    kernel reflected at 0 and 1; smECE = smECE_sigma* at the fixed point sigma* = smECE_sigma*
    (unique: smECE_sigma decreases in sigma). "Smooth ECE: Principled Reliability Diagrams via
    Kernel Smoothing", https://arxiv.org/abs/2309.12236. Their code (``relplot.smECE``)
    discretises on a grid and bisects sigma to 2^-10; here the integral is evaluated in closed
    form (cosine series, see :func:`_smooth_integrals`) and sigma* solved to 1e-12.

    Args:
        probs, labels, weights: as in :func:`ece`.
        sigma: a fixed bandwidth > 0 (smECE_sigma); None solves for the fixed point.
        eps: smallest bandwidth searched (as relplot); if smECE_eps < eps, returns smECE_eps.

    Returns:
        The smooth ECE in [0, 1]: a float, or an array (B,) for 2-D weights.
    """
    if sigma is not None and not (isinstance(sigma, (int, float, np.floating)) and sigma > 0):
        raise ValueError(f"sigma={sigma!r} is invalid; expected a float > 0 or None (fixed point)")
    coef, b, scalar = _smooth_setup(probs, labels, weights, eps)
    if sigma is not None:
        return _out(_smooth_batched(coef, np.arange(b), np.full(b, float(sigma)))[0], scalar)
    return _out(_smooth_fixed_points(coef, b, float(eps))[1], scalar)


def smooth_ece_bandwidth(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    eps: float = 1e-3,
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """The fixed-point bandwidth sigma* = smECE_sigma* used by :func:`smooth_ece`.

    Args:
        probs, labels, eps, weights: as in :func:`smooth_ece`.

    Returns:
        sigma* in [eps, 1]: a float, or an array (B,) for 2-D weights.
    """
    coef, b, scalar = _smooth_setup(probs, labels, weights, eps)
    return _out(_smooth_fixed_points(coef, b, float(eps))[0], scalar)


# --------------------------------------------------------------------------------------------
# Proper scores and accuracy
# --------------------------------------------------------------------------------------------


def _mean(values: NDArray[np.float64], w: NDArray[np.float64], scalar: bool) -> float | NDArray[np.float64]:
    return _out((w @ values) / w.sum(axis=1), scalar)


def brier(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Multi-class Brier score (supports ``weights``).

    BS = (1/n) sum_i sum_c (p_ic - 1[y_i = c])^2, in [0, 2] (Brier 1950, "Verification of
    forecasts expressed in terms of probability", Monthly Weather Review 78(1)).

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
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
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
    return _mean(-np.log(np.maximum(p[np.arange(p.shape[0]), y], NLL_FLOOR)), w, scalar)


def accuracy(
    probs: Data, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
) -> float | NDArray[np.float64]:
    """Top-1 accuracy (1/n) sum_i 1[argmax_c p_ic = y_i] (supports ``weights``).

    Args:
        probs, labels, weights: as in :func:`ece`.
    """
    p, y = _inputs(probs, labels)
    w, scalar = _weights(weights, p.shape[0])
    return _mean(_top_label(p, y)[1], w, scalar)


# --------------------------------------------------------------------------------------------
# Selective prediction
# --------------------------------------------------------------------------------------------


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
    p, y = _inputs(probs, labels)
    conf, correct = _top_label(p, y)
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
    p, y = _inputs(probs, labels)
    conf, correct = _top_label(p, y)
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


# --------------------------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------------------------


def _check_logits(logits: ArrayLike, labels: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits has shape {z.shape}; expected (n >= 1, C >= 2)")
    if not np.all(np.isfinite(z)):
        i, j = np.argwhere(~np.isfinite(z))[0]
        raise ValueError(
            f"logits[{i}, {j}] = {float(z[i, j])} is not finite; expected finite logits (clip log-probs first)"
        )
    if labels is None:
        return z, None
    uniform = np.full_like(z, 1.0 / z.shape[1])
    return z, _check(uniform, labels)[1]


class TemperatureScaler:
    """Temperature scaling: p = softmax(z / T) with one T > 0 fitted by NLL on held-out data.

    T^ = argmin_T -(1/n) sum_i log softmax(z_i / T)_{y_i}, optimised over log T by L-BFGS-B
    with the analytic gradient d NLL / d log T = (1/T) mean_i (z_{i,y_i} - sum_c p_ic z_ic).
    The objective is convex in 1/T, so the optimum is unique. Dividing by T > 0 never changes
    the argmax (Guo et al. 2017, https://arxiv.org/abs/1706.04599, Sec. 4.2).

    Log-probabilities are valid logits (softmax is shift-invariant): for a predict() DataFrame
    use ``np.log(probs)`` (clipped away from 0), or :func:`with_temperature`.

    Args:
        min_temperature: lower bound of T (separable data would drive T -> 0).
        max_temperature: upper bound of T.

    Attributes (after ``fit``):
        temperature_: the fitted T.
        nll_before_, nll_after_, ece_before_, ece_after_: on the fitting split, T = 1 vs T^.
    """

    def __init__(self, *, min_temperature: float = 1e-2, max_temperature: float = 1e2) -> None:
        if not (0 < min_temperature < max_temperature):
            raise ValueError(
                f"temperature bounds ({min_temperature!r}, {max_temperature!r}) are invalid; expected 0 < min < max"
            )
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)

    @staticmethod
    def _nll_and_grad(
        log_t: NDArray[np.float64], z: NDArray[np.float64], y: NDArray[np.int64]
    ) -> tuple[float, NDArray[np.float64]]:
        t = float(np.exp(log_t[0]))
        zt = z / t
        lse = special.logsumexp(zt, axis=1)
        zy = z[np.arange(z.shape[0]), y]
        p = np.exp(zt - lse[:, None])
        value = float(np.mean(lse - zy / t))
        grad = float(np.mean(zy - (p * z).sum(axis=1))) / t
        return value, np.array([grad])

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        """Fit T on held-out ``logits`` (n, C) and ``labels`` (n,); returns self."""
        z, y = _check_logits(logits, labels)
        assert y is not None
        bounds = [(math.log(self.min_temperature), math.log(self.max_temperature))]
        res = optimize.minimize(
            self._nll_and_grad, x0=np.zeros(1), args=(z, y), jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 200},
        )
        self.temperature_ = float(np.exp(res.x[0]))
        before, after = special.softmax(z, axis=1), self.transform(z)
        self.nll_before_, self.nll_after_ = float(nll(before, y)), float(nll(after, y))
        self.ece_before_, self.ece_after_ = float(ece(before, y)), float(ece(after, y))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise ValueError("this TemperatureScaler is not fitted yet; call fit(logits, labels) first")

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities softmax(logits / T), shape (n, C)."""
        self._check_fitted()
        z, _ = _check_logits(logits, None)
        return special.softmax(z / self.temperature_, axis=1)

    def report(self, logits: ArrayLike, labels: ArrayLike, *, n_bins: int = 15) -> pd.DataFrame:
        """NLL, ECE, Brier and accuracy before (T = 1) and after (T = T^) on any split.

        Returns:
            DataFrame with rows ``stage`` in ("before", "after") and columns ``stage``,
            ``temperature``, ``nll``, ``ece``, ``brier``, ``accuracy``.
        """
        z, y = _check_logits(logits, labels)
        self._check_fitted()
        rows = []
        for stage, t in (("before", 1.0), ("after", self.temperature_)):
            p = special.softmax(z / t, axis=1)
            rows.append(
                {"stage": stage, "temperature": t, "nll": nll(p, y), "ece": ece(p, y, n_bins=n_bins),
                 "brier": brier(p, y), "accuracy": accuracy(p, y)}
            )
        return pd.DataFrame(rows)


def with_temperature(df: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """A copy of a predict() DataFrame with probabilities rescaled: p' = softmax(log p / T).

    Log-probabilities are logits up to a per-row constant, so this equals temperature scaling of
    the original logits; ``pred`` and ``correct`` do not change. Probabilities are floored at
    1e-15 before the log (NLL_FLOOR).

    Args:
        df: a predict() DataFrame.
        temperature: T > 0, e.g. ``TemperatureScaler().fit(...).temperature_``.

    Returns:
        New DataFrame (same columns and attrs) with ``p_*`` and ``confidence`` updated.
    """
    if not (isinstance(temperature, (int, float, np.floating)) and temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature={temperature!r} is invalid; expected a finite float > 0")
    p, _ = probs_labels(df)
    names = df.attrs.get("label_names")
    cols = [f"p_{n}" for n in names] if names is not None else [c for c in df.columns if str(c).startswith("p_")]
    scaled = special.softmax(np.log(np.maximum(p, NLL_FLOOR)) / temperature, axis=1)
    out = df.copy()
    out[cols] = scaled
    if "confidence" in out.columns:
        out["confidence"] = scaled.max(axis=1)
    out.attrs = dict(df.attrs)
    return out


# --------------------------------------------------------------------------------------------
# Reports with bootstrap intervals
# --------------------------------------------------------------------------------------------


def _report_metrics(n_bins: int) -> dict[str, Callable[..., float | NDArray[np.float64]]]:
    def ece_(p: NDArray, y: NDArray, *, weights: NDArray | None = None) -> float | NDArray:
        return ece(p, y, n_bins=n_bins, weights=weights)

    def mce_(p: NDArray, y: NDArray, *, weights: NDArray | None = None) -> float | NDArray:
        return ece(p, y, n_bins=n_bins, norm="max", weights=weights)

    def adaptive_(p: NDArray, y: NDArray, *, weights: NDArray | None = None) -> float | NDArray:
        return ece(p, y, n_bins=n_bins, binning="mass", weights=weights)

    return {
        "accuracy": accuracy,
        "ece": ece_,
        "mce": mce_,
        "adaptive_ece": adaptive_,
        "smooth_ece": smooth_ece,
        "brier": brier,
        "nll": nll,
    }


REPORT_METRICS: tuple[str, ...] = ("accuracy", "ece", "mce", "adaptive_ece", "smooth_ece", "brier", "nll")


def calibration_report(
    data: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy and calibration metrics with percentile bootstrap CIs, as one row.

    Metrics: accuracy, ECE (width, l1), MCE (width, max), adaptive ECE (mass, l1), smooth ECE,
    Brier, NLL; every interval uses the same ``seed``, hence the same resamples.

    Args:
        data: probabilities (n, C) with ``labels``, or a predict() DataFrame.
        labels: as in :func:`ece`.
        n_bins: bins for the binned metrics.
        n_boot, alpha, seed: as in :func:`toolkit.stats.bootstrap_ci`.

    Returns:
        One-row DataFrame: ``n``, the seven metrics, then ``<metric>_low``, ``<metric>_high``
        for each; ``attrs`` holds ``alpha``, ``n_boot``, ``n_bins``, ``seed``.
    """
    _check_n_bins(n_bins)
    p, y = _inputs(data, labels)
    row: dict[str, float] = {"n": p.shape[0]}
    cis: dict[str, float] = {}
    for name, fn in _report_metrics(n_bins).items():
        iv = bootstrap_ci(fn, p, y, n_boot=n_boot, alpha=alpha, seed=seed)
        row[name] = iv.estimate
        cis[f"{name}_low"], cis[f"{name}_high"] = iv.low, iv.high
    out = pd.DataFrame([{**row, **cis}])
    out.attrs.update({"alpha": alpha, "n_boot": n_boot, "n_bins": n_bins, "seed": seed})
    return out


def _paired_inputs(a: Data, b: Data, labels: ArrayLike | None) -> tuple[NDArray, NDArray, NDArray]:
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        if labels is not None:
            raise ValueError("labels must be None when predict() DataFrames are given")
        if "id" in a.columns and "id" in b.columns:
            if a["id"].duplicated().any() or set(a["id"]) != set(b["id"]) or len(a) != len(b):
                raise ValueError("a and b must score the same examples: their 'id' columns differ (or repeat)")
            b = b.set_index("id").loc[a["id"]].reset_index().__finalize__(b)
        pa, ya = probs_labels(a)
        pb, yb = probs_labels(b)
        if not np.array_equal(ya, yb):
            raise ValueError(
                "a and b have different labels for the same examples; a paired comparison needs the same data"
            )
        return pa, pb, ya
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        raise ValueError("pass two predict() DataFrames or two probability arrays with labels, not a mix")
    pa, ya = _inputs(a, labels)
    pb, _ = _inputs(b, labels)
    if pa.shape != pb.shape:
        raise ValueError(f"a has shape {pa.shape} but b has shape {pb.shape}; expected the same examples and classes")
    return pa, pb, ya


def compare_calibration(
    a: Data,
    b: Data,
    labels: ArrayLike | None = None,
    *,
    n_bins: int = 15,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired bootstrap of metric(b) - metric(a) for two models scored on the same examples.

    E.g. a = unpruned, b = pruned: a CI of the ECE difference above 0 says calibration got
    worse. Uses :func:`toolkit.stats.paired_bootstrap` (same resampled examples for a and b).

    Args:
        a, b: predict() DataFrames (aligned by ``id``) or probability arrays (n, C) with ``labels``.
        labels: labels for array inputs; None for DataFrames (their labels must agree).
        n_bins, n_boot, alpha, seed: as in :func:`calibration_report`.

    Returns:
        DataFrame, one row per metric: ``metric``, ``a``, ``b``, ``diff`` (b - a), ``low``,
        ``high`` (CI of the difference).
    """
    _check_n_bins(n_bins)
    pa, pb, y = _paired_inputs(a, b, labels)
    rows = []
    for name, fn in _report_metrics(n_bins).items():
        iv: Interval = paired_bootstrap(fn, (pa, y), (pb, y), n_boot=n_boot, alpha=alpha, seed=seed)
        rows.append({"metric": name, "a": float(fn(pa, y)), "b": float(fn(pb, y)), "diff": iv.estimate,
                     "low": iv.low, "high": iv.high})
    return pd.DataFrame(rows)

