"""Calibration reports: every metric with a percentile-bootstrap CI, and paired comparisons.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..stats import Interval, bootstrap_ci, paired_bootstrap
from .binned import ece
from .inputs import Data, check_n_bins, probs_and_labels, probs_labels
from .scores import accuracy, brier, nll
from .smooth import smooth_ece

__all__ = [
    "REPORT_METRICS",
    "calibration_report",
    "compare_calibration",
]



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
    check_n_bins(n_bins)
    p, y = probs_and_labels(data, labels)
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
    pa, ya = probs_and_labels(a, labels)
    pb, _ = probs_and_labels(b, labels)
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
    check_n_bins(n_bins)
    pa, pb, y = _paired_inputs(a, b, labels)
    rows = []
    for name, fn in _report_metrics(n_bins).items():
        iv: Interval = paired_bootstrap(fn, (pa, y), (pb, y), n_boot=n_boot, alpha=alpha, seed=seed)
        rows.append({"metric": name, "a": float(fn(pa, y)), "b": float(fn(pb, y)), "diff": iv.estimate,
                     "low": iv.low, "high": iv.high})
    return pd.DataFrame(rows)
