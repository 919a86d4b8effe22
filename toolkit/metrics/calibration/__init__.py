"""Calibration of class-probability predictions: ECE family, proper scores, temperature scaling.

Inputs are per-example class probabilities ``probs`` (n, C) with integer ``labels`` (n,), or a
``predict()`` DataFrame (its ``p_<label>`` columns and ``label``; see :func:`probs_labels`).
Logits enter only through :class:`TemperatureScaler`.

Top-label quantities (Guo et al. 2017): prediction y^_i = argmax_c p_ic, confidence
f_i = max_c p_ic, correctness a_i = 1[y^_i = y_i]. Binned estimators group the f_i into bins
B_1..B_M and compare the mean confidence conf(B_m) with the accuracy acc(B_m) of each bin.

Vectorised bootstrap: metrics marked "weights" accept ``weights`` of shape (B, n) (resample
counts, see :mod:`toolkit.decisions.stats`) and then return B values, one per row, equal to the metric
on the data resampled with those counts.
"""

from .binned import (
    BINNINGS,
    NORMS,
    Binning,
    Norm,
    classwise_ece,
    debiased_l2_ce,
    ece,
    positive_class_ece,
    reliability_table,
)
from .inputs import ROW_SUM_ATOL, Data, probs_labels
from .murphy import BrierDecomposition, brier_decomposition
from .report import calibration_profile, calibration_report, compare_calibration, report_metrics
from .scaling import TemperatureScaler, with_temperature
from .scores import NLL_FLOOR, accuracy, accuracy_coverage, aurc, brier, calibration_gap, nll, positive_rate
from .smooth import smooth_ece, smooth_ece_bandwidth

# Modules, in dependency order: inputs (checks, shared by all) <- binned, smooth, scores, murphy <- scaling,
# report. Every public name is re-exported here: `toolkit.metrics.calibration.ece` is the same function.
__all__ = [
    "BrierDecomposition",
    "TemperatureScaler",
    "accuracy",
    "accuracy_coverage",
    "aurc",
    "brier",
    "brier_decomposition",
    "calibration_gap",
    "calibration_profile",
    "calibration_report",
    "classwise_ece",
    "compare_calibration",
    "debiased_l2_ce",
    "ece",
    "nll",
    "positive_class_ece",
    "positive_rate",
    "probs_labels",
    "reliability_table",
    "report_metrics",
    "smooth_ece",
    "smooth_ece_bandwidth",
    "with_temperature",
]
