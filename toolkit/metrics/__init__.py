"""What the study measures: ``registry`` (one :class:`Metric` entry per metric), ``faithfulness/``
(erasure metrics) and ``calibration/`` (ECE family, smooth ECE, Brier, scaling).

The registry's names are importable from here (``from toolkit.metrics import register_metric``).
"""

from .registry import (
    FAMILIES,
    METRICS,
    TESTS,
    Metric,
    family_metric,
    get_metric,
    headline_metrics,
    list_metrics,
    metric_names,
    register_metric,
    unregister_metric,
)

__all__ = [
    "FAMILIES",
    "METRICS",
    "TESTS",
    "Metric",
    "family_metric",
    "get_metric",
    "headline_metrics",
    "list_metrics",
    "metric_names",
    "register_metric",
    "unregister_metric",
]
