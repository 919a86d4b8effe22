"""Calibration reports: every metric with a percentile-bootstrap CI, and paired comparisons.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..registry import Metric, list_metrics, register_metric
from ...decisions.stats import Interval, bootstrap_ci, paired_bootstrap
from .binned import ece, positive_class_ece
from .murphy import brier_decomposition
from .inputs import Data, check_n_bins, probs_and_labels, probs_labels
from .scores import accuracy, brier, calibration_gap, nll, positive_rate
from .smooth import smooth_ece
from ..._core.validation import InputError

__all__ = [
    "calibration_profile",
    "calibration_report",
    "compare_calibration",
    "report_metrics",
]


def _binned(norm: str = "l1", binning: str = "width") -> Callable[..., float | NDArray[np.float64]]:
    def metric(p: NDArray, y: NDArray, *, weights: NDArray | None = None, n_bins: int = 15) -> float | NDArray:
        return ece(p, y, n_bins=n_bins, norm=norm, binning=binning, weights=weights)

    return metric


# The calibration family of the metric registry, in the order of the report's columns and the study's
# rows. A new calibration metric is one entry here (or a register_metric call anywhere).
register_metric(Metric("accuracy", accuracy, "calibration", higher_is_better=True, test="noninferiority", headline=True,
                       plot=True))
register_metric(Metric("ece", _binned(), "calibration", higher_is_better=False, test="paired_bootstrap",
                       headline=True, label="ECE", plot=True))
register_metric(Metric("mce", _binned(norm="max"), "calibration", higher_is_better=False, test="paired_bootstrap",
                       label="MCE"))
register_metric(Metric("adaptive_ece", _binned(binning="mass"), "calibration", higher_is_better=False,
                       test="paired_bootstrap", label="adaptive ECE"))
register_metric(Metric("smooth_ece", smooth_ece, "calibration", higher_is_better=False, test="paired_bootstrap",
                       label="smooth ECE"))
register_metric(Metric("brier", brier, "calibration", higher_is_better=False, test="paired_bootstrap",
                       label="Brier", plot=True))
register_metric(Metric("nll", nll, "calibration", higher_is_better=False, test="paired_bootstrap", label="NLL"))


def report_metrics(n_bins: int = 15) -> dict[str, Callable[..., float | NDArray[np.float64]]]:
    """The registered calibration metrics (:func:`toolkit.metrics.registry.list_metrics`), ``n_bins`` bound where
    a metric takes it: name -> ``fn(probs, labels, *, weights=None)``, in registration order.

    An entry whose function takes one ``record`` (``fn(record)``: a value a study cell computed
    and persisted, e.g. its fitted temperature) is not a function of probabilities and labels: it
    is a row of the study's table (:func:`toolkit.study.tidy_table`), not of these reports.
    """
    out = {}
    for metric in list_metrics("calibration"):
        parameters = inspect.signature(metric.fn).parameters
        if list(parameters) == ["record"]:
            continue
        takes_bins = "n_bins" in parameters
        out[metric.name] = functools.partial(metric.fn, n_bins=n_bins) if takes_bins else metric.fn
    return out


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

    Metrics: the registered calibration metrics (:func:`report_metrics`; built in: accuracy, ECE
    (width, l1), MCE (width, max), adaptive ECE (mass, l1), smooth ECE, Brier, NLL); every interval
    uses the same ``seed``, hence the same resamples.

    Args:
        data: probabilities (n, C) with ``labels``, or a predict() DataFrame.
        labels: as in :func:`ece`.
        n_bins: bins for the binned metrics.
        n_boot, alpha, seed: as in :func:`toolkit.decisions.stats.bootstrap_ci`.

    Returns:
        One-row DataFrame: ``n``, the metrics, then ``<metric>_low``, ``<metric>_high``
        for each; ``attrs`` holds ``alpha``, ``n_boot``, ``n_bins``, ``seed``.
    """
    check_n_bins(n_bins)
    p, y = probs_and_labels(data, labels)
    row: dict[str, float] = {"n": p.shape[0]}
    cis: dict[str, float] = {}
    for name, fn in report_metrics(n_bins).items():
        iv = bootstrap_ci(fn, p, y, n_boot=n_boot, alpha=alpha, seed=seed)
        row[name] = iv.estimate
        cis[f"{name}_low"], cis[f"{name}_high"] = iv.low, iv.high
    out = pd.DataFrame([{**row, **cis}])
    out.attrs.update({"alpha": alpha, "n_boot": n_boot, "n_bins": n_bins, "seed": seed})
    return out


def calibration_profile(data: Data, labels: ArrayLike | None = None, *, n_bins: int = 15) -> pd.DataFrame:
    """One cell's calibration at a glance, point estimates only (the dose-response sweep's row).

    Columns: ``n``, ``accuracy``, ``confidence`` (mean top-label confidence), ``calibration_gap``
    (confidence - accuracy: > 0 over-, < 0 underconfident), ``ece``, ``smooth_ece``, ``brier`` with
    ``brier_reliability``, ``brier_resolution``, ``brier_uncertainty`` (Murphy, forecasts grouped
    into the ``n_bins`` equal-width bins of ECE: :func:`brier_decomposition`; grouped by distinct
    values, continuous forecasts are each their own group and the split degenerates to
    reliability = Brier, resolution = uncertainty), ``nll``; for a binary task ``positive_ece`` (ECE of
    p(positive), class 1), ``positive_rate`` (share predicted class 1) and ``positive_share`` (share
    labelled class 1), NaN otherwise; ``label_mass`` (mean label-verbalizer mass) when ``data`` is a
    predict() DataFrame with that column, else NaN.

    Args:
        data, labels, n_bins: as in :func:`calibration_report`.

    Returns:
        One-row DataFrame.
    """
    check_n_bins(n_bins)
    p, y = probs_and_labels(data, labels)
    murphy = brier_decomposition(p, y, n_bins=n_bins)
    binary = p.shape[1] == 2
    row = {
        "n": p.shape[0],
        "accuracy": accuracy(p, y),
        "confidence": float(p.max(axis=1).mean()),
        "calibration_gap": calibration_gap(p, y),
        "ece": ece(p, y, n_bins=n_bins),
        "smooth_ece": smooth_ece(p, y),
        "brier": brier(p, y),
        "brier_reliability": murphy.reliability,
        "brier_resolution": murphy.resolution,
        "brier_uncertainty": murphy.uncertainty,
        "nll": nll(p, y),
        "positive_ece": positive_class_ece(p, y, n_bins=n_bins) if binary else np.nan,
        "positive_rate": positive_rate(p, y) if binary else np.nan,
        "positive_share": float(np.mean(y == 1)) if binary else np.nan,
        "label_mass": float(data["label_mass"].mean())
        if isinstance(data, pd.DataFrame) and "label_mass" in data else np.nan,
    }
    return pd.DataFrame([row])


def _paired_inputs(a: Data, b: Data, labels: ArrayLike | None) -> tuple[NDArray, NDArray, NDArray]:
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        if labels is not None:
            raise InputError("labels must be None when predict() DataFrames are given")
        if "id" in a.columns and "id" in b.columns:
            if a["id"].duplicated().any() or set(a["id"]) != set(b["id"]) or len(a) != len(b):
                raise InputError("a and b must score the same examples: their 'id' columns differ (or repeat)")
            b = b.set_index("id").loc[a["id"]].reset_index().__finalize__(b)
        pa, ya = probs_labels(a)
        pb, yb = probs_labels(b)
        if not np.array_equal(ya, yb):
            raise InputError(
                "a and b have different labels for the same examples; a paired comparison needs the same data"
            )
        return pa, pb, ya
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        raise InputError("pass two predict() DataFrames or two probability arrays with labels, not a mix")
    pa, ya = probs_and_labels(a, labels)
    pb, _ = probs_and_labels(b, labels)
    if pa.shape != pb.shape:
        raise InputError(f"a has shape {pa.shape} but b has shape {pb.shape}; expected the same examples and classes")
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
    worse. Uses :func:`toolkit.decisions.stats.paired_bootstrap` (same resampled examples for a and b).

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
    for name, fn in report_metrics(n_bins).items():
        iv: Interval = paired_bootstrap(fn, (pa, y), (pb, y), n_boot=n_boot, alpha=alpha, seed=seed)
        rows.append({"metric": name, "a": float(fn(pa, y)), "b": float(fn(pb, y)), "diff": iv.estimate,
                     "low": iv.low, "high": iv.high})
    return pd.DataFrame(rows)
