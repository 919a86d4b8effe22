"""Inputs of every calibration metric: probabilities (n, C) with labels (n,), or a prediction frame.

Checked once here, with errors that name the bad entry; the metric modules take what these return.
Resample weights (B, n) are the vectorised bootstrap's counts (see :mod:`toolkit.decisions.stats`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ...models.scoring import probability_columns
from ..._core.validation import InputError, check_int

__all__ = [
    "Data",
    "ROW_SUM_ATOL",
    "check_n_bins",
    "check_probs",
    "probs_and_labels",
    "probs_labels",
    "resample_weights",
    "scalar_or_rows",
    "top_label",
]


Data = ArrayLike | pd.DataFrame
ROW_SUM_ATOL = 1e-4  # probability rows must sum to 1 within this (float32 softmax: ~1e-7)


def probs_labels(df: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Read class probabilities and labels from a ``predict()`` DataFrame.

    Args:
        df: columns ``label`` and ``p_<name>`` per class. The class order is
            ``df.attrs["label_names"]`` when present, else the order of the ``p_`` columns.

    Returns:
        ``(probs, labels)``: float64 (n, C) and int64 (n,), validated as in :func:`toolkit.metrics.calibration.ece`.

    Raises:
        InputError: no ``label`` column, no ``p_`` columns, or a label name without its column.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"expected a predict() DataFrame, got {type(df).__name__}")
    if "label" not in df.columns:
        raise InputError(f"DataFrame has no 'label' column; columns are {list(df.columns)}")
    return check_probs(df[probability_columns(df)].to_numpy(dtype=np.float64), df["label"].to_numpy())


def check_probs(probs: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Validate probabilities (n, C) and labels (n,); return float64 / int64 copies."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise InputError(f"probs has shape {p.shape}; expected a 2-D array (n examples, C classes)")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise InputError(f"labels has shape {y.shape}; expected a 1-D array of n integer labels")
    if p.shape[0] != y.shape[0]:
        raise InputError(f"mismatched lengths: probs has n={p.shape[0]} rows but labels has n={y.shape[0]}")
    if p.shape[0] == 0:
        raise InputError("empty set: probs and labels have n=0 examples; expected n >= 1")
    if p.shape[1] == 0:
        raise InputError("probs has C=0 classes; expected C >= 1 columns")
    if not np.all(np.isfinite(p)):
        i, j = np.argwhere(~np.isfinite(p))[0]
        raise InputError(f"probs[{i}, {j}] = {float(p[i, j])} is not finite; expected probabilities in [0, 1]")
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"probs[{i}, {j}] = {float(p[i, j])} is outside [0, 1]; expected probabilities in [0, 1]")
    dev = np.abs(p.sum(axis=1) - 1.0)
    if np.any(dev > ROW_SUM_ATOL):
        i = int(np.argmax(dev))
        raise InputError(
            f"row {i} of probs sums to {float(p[i].sum()):.6g}; expected rows summing to 1 within {ROW_SUM_ATOL} "
            "(pass logits to TemperatureScaler, or normalise)"
        )
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise InputError(f"labels have dtype {y.dtype}; expected integers in [0, {p.shape[1] - 1}]")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
        i = int(np.flatnonzero(~(np.isfinite(y) & (y == np.round(y))))[0])
        raise InputError(f"labels[{i}] = {float(y[i])} is not an integer; expected integers in [0, {p.shape[1] - 1}]")
    y = y.astype(np.int64)
    out = (y < 0) | (y >= p.shape[1])
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise InputError(
            f"labels[{i}] = {y[i]} is out of range; expected integers in [0, {p.shape[1] - 1}] for C={p.shape[1]}"
        )
    return p, y


def probs_and_labels(probs: Data, labels: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(probs, labels)`` from arrays, or from a predict() DataFrame when labels is None."""
    if isinstance(probs, pd.DataFrame):
        if labels is not None:
            raise InputError("labels must be None when a predict() DataFrame is given (its 'label' column is used)")
        return probs_labels(probs)
    if labels is None:
        raise InputError("labels is required when probs is an array (or pass a predict() DataFrame)")
    return check_probs(probs, labels)


def resample_weights(weights: ArrayLike | None, n: int) -> tuple[NDArray[np.float64], bool]:
    """Weights as (B, n) plus whether the caller expects a scalar (None or 1-D weights)."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=np.float64)
    scalar = w.ndim == 1
    w = np.atleast_2d(w)
    if w.ndim != 2 or w.shape[1] != n:
        raise InputError(f"weights has shape {np.shape(weights)}; expected (n,) or (B, n) with n={n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("weights must be finite and >= 0 (resample counts)")
    if np.any(w.sum(axis=1) <= 0):
        raise InputError("every row of weights must have a positive sum")
    return w, scalar


def scalar_or_rows(values: NDArray[np.float64], scalar: bool) -> float | NDArray[np.float64]:
    return float(values[0]) if scalar else values


def check_n_bins(n_bins: int) -> None:
    check_int(n_bins, "n_bins", 1)


def top_label(p: NDArray[np.float64], y: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Top-label confidence f_i = max_c p_ic and correctness a_i = 1[argmax_c p_ic = y_i]."""
    pred = p.argmax(axis=1)
    return p[np.arange(p.shape[0]), pred], (pred == y).astype(np.float64)
