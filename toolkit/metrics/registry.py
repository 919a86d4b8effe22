"""The metric registry: one entry per metric, read by every table, summary, plan, plot and listing.

An entry (:class:`Metric`) says what a metric is (name, function, family), how to read it
(``higher_is_better``), which paired test stands behind a "changed" claim about it (``test``),
whether that claim is a headline of the study (``headline``), how it is displayed (``label``,
``short``, ``plot``) and what its function needs beyond its family's inputs (``needs``). Three families:

- ``calibration``: ``fn(probs, labels, *, weights=None[, n_bins])`` -> float, or one value per row
  of resample ``weights`` (the vectorised bootstrap of :mod:`toolkit.decisions.stats`). Every entry is a
  column of :func:`toolkit.metrics.calibration.calibration_report` and a row of the study's table.
- ``faithfulness``: ``fn(table)`` -> one value per example, from the erasure engine's per-example
  table (its columns: ``aopc_comprehensiveness``, ``aopc_sufficiency``, the bounds
  ``comprehensiveness_lower`` ... and ``flipped``); ``needs`` names the engine parts it reads
  (``curves``, ``flips``, ``bounds``, ``soft``). Every entry is a column of
  :func:`toolkit.metrics.faithfulness.faithfulness_report` and a row ``<name>:<method>`` of the study's table.
- ``importance``: ``fn(inputs)`` -> one score per decoder layer (low = first to drop), with
  :class:`toolkit.pruning.importance.ImportanceInputs`; a selection of the study. ``needs``
  ``labels``: it reads labelled examples (``task=`` and ``labels=``).

The built-in entries are registered beside their functions (calibration in
:mod:`toolkit.metrics.calibration.report`, faithfulness in :mod:`toolkit.metrics.faithfulness`, importance in
:mod:`toolkit.pruning.importance`); a new metric is one :func:`register_metric` call, anywhere. The
registry is ``METRICS``, a :class:`toolkit._core.registry.Registry` (lm-evaluation-harness's
``@register_metric`` over one generic registry): a name already registered is refused unless
``replace=True``, and ``with METRICS.restored(): ...`` undoes every registration made in the block.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .._core.registry import Registry
from .._core.validation import InputError, InputTypeError, check_choice, short_repr

__all__ = [
    "ALLOWED_NEEDS",
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

FAMILIES = ("importance", "faithfulness", "calibration")
TESTS = {
    "noninferiority": "paired non-inferiority of per-example correctness against the unpruned model (one-sided "
                      "Tango score bound above -margin): the premise 'keeps accuracy' that gates the other claims",
    "paired_bootstrap": "paired bootstrap difference against the unpruned model, normal approximation "
                        "(se from its 95% interval), multiplicity-adjusted",
    "paired_t": "paired t test of the per-example difference against the unpruned model, multiplicity-adjusted",
}
_TESTS_OF = {"calibration": ("noninferiority", "paired_bootstrap"), "faithfulness": ("paired_t",), "importance": ()}
# What ``needs`` may name, per family, asked when a Metric is made: an importance metric's labelled
# examples; a faithfulness metric's erasure-engine parts, which the engine (a module above this one)
# answers live by installing ``ENGINE.names`` here (toolkit.metrics.faithfulness.metrics), so a part
# registered or undone there is allowed or refused here with no copy to keep in step.
ALLOWED_NEEDS: dict[str, Callable[[], Collection[str]]] = {
    "calibration": tuple,
    "faithfulness": tuple,
    "importance": lambda: ("labels",),
}


@dataclass(frozen=True)
class Metric:
    """One metric: what it computes, how to read it, the test behind a claim about it, how it is shown.

    Attributes:
        name: the registry key and the study table's metric name (faithfulness: ``<name>:<method>``).
        fn: the function (its signature per family: see the module docstring).
        family: ``importance``, ``faithfulness`` or ``calibration``.
        higher_is_better: True, False, or None where neither (importance scores, a temperature).
        test: the paired test behind a "degrades" (or, ``noninferiority``, "keeps") claim: a key of :data:`TESTS`.
        headline: the claim is one of the study's headline claims: a summary column group, a change
            test of the primary family (or, ``noninferiority``, the gate), a plan row and a claims panel.
        label: how a title names it (``ECE``); default ``name``.
        short: its column prefix in the summary (``naopc`` -> ``naopc``, ``d_naopc``, ...); default ``name``.
        plot: a panel of the report's metrics-vs-pruning figure.
        needs: what ``fn`` reads beyond its family's inputs. Faithfulness: the engine parts
            (``curves``, ``flips``, ``bounds``, ``soft``); a study without the bound search
            (``naopc=False``) does not measure metrics that need ``bounds``. Importance: ``labels``
            (labelled examples: ``task=`` and ``labels=``).
        control: importance: a control (seeded random scores), not a ranking of the model; one-shot
            only, and no importance profile is drawn for it.

    The explorer's comparison with the unpruned model shows the calibration headline metrics
    (accuracy and ECE); AOPC standing in for NAOPC as a headline in a study without the bound
    search is the study's rule (:data:`toolkit.study.config.STAND_INS`).
    """

    name: str
    fn: Callable[..., Any]
    family: str
    higher_is_better: bool | None = None
    test: str | None = None
    headline: bool = False
    label: str = ""
    short: str = ""
    plot: bool = False
    needs: frozenset[str] = field(default_factory=frozenset)
    control: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or ":" in self.name or self.name != self.name.strip():
            raise InputError(f"metric name {short_repr(self.name)} is invalid; expected a non-empty str without ':'")
        if not callable(self.fn):
            raise InputTypeError(f"metric {self.name!r}: fn={short_repr(self.fn)} is not callable")
        check_choice(self.family, "metric family", FAMILIES)
        if self.test is not None and self.test not in _TESTS_OF[self.family]:
            raise InputError(f"metric {self.name!r}: test={self.test!r} is not a test of the {self.family} family; "
                             f"allowed: {list(_TESTS_OF[self.family]) or 'none (importance metrics make no claim)'}")
        if self.headline and self.test is None:
            raise InputError(f"metric {self.name!r} is a headline claim without a test; give test= one of "
                             f"{list(_TESTS_OF[self.family])}")
        if self.higher_is_better not in (True, False, None):
            raise InputTypeError(f"metric {self.name!r}: higher_is_better={short_repr(self.higher_is_better)}; "
                                 "expected True, False or None")
        object.__setattr__(self, "label", self.label or self.name)
        object.__setattr__(self, "short", self.short or self.name)
        if isinstance(self.needs, str):
            raise InputTypeError(f"metric {self.name!r}: needs={self.needs!r} is one str; expected a set of names")
        object.__setattr__(self, "needs", frozenset(self.needs))
        allowed = list(ALLOWED_NEEDS[self.family]())
        if self.needs - set(allowed):
            raise InputError(f"metric {self.name!r}: needs={sorted(self.needs)}; allowed for {self.family} metrics: "
                             f"{allowed or 'none'}")
        if self.control and self.family != "importance":
            raise InputError(f"metric {self.name!r}: control is for importance metrics")

    @property
    def better(self) -> str:
        """``higher``, ``lower`` or ``-`` (neither)."""
        return {True: "higher", False: "lower", None: "-"}[self.higher_is_better]


METRICS: Registry[Metric] = Registry("metric")
"""Every registered metric by name, in registration order: the order of every table."""


def register_metric(metric: Metric | str | None = None, fn: Callable[..., Any] | None = None, *,
                    replace: bool = False, **fields: Any):
    """Add a metric to the registry; a name already registered is refused unless ``replace=True``.

    Three spellings: ``register_metric(Metric(...))``; ``register_metric("name", fn, family=...,
    ...)``; or as a decorator, ``@register_metric("name", family=..., higher_is_better=...)``
    over the function (lm-evaluation-harness's form).

    Returns:
        The registered :class:`Metric` (the decorator returns the function unchanged).

    Raises:
        InputError: the name is already registered and not ``replace``, or the entry is invalid
            (see :class:`Metric`).
    """
    if isinstance(metric, Metric):
        if fn is not None or fields:
            raise InputError("register_metric(Metric(...)) takes no other arguments than replace=")
        return METRICS.register(metric.name, metric, replace=replace)
    if not isinstance(metric, str):
        raise InputTypeError(f"register_metric takes a Metric or a name, got {short_repr(metric)}")
    if fn is None:
        def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
            register_metric(Metric(metric, function, **fields), replace=replace)
            return function

        return decorator
    return register_metric(Metric(metric, fn, **fields), replace=replace)


def unregister_metric(name: str) -> Metric:
    """Remove a metric from the registry and return its entry (an unknown name is an InputError)."""
    return METRICS.unregister(name)


def get_metric(name: str) -> Metric:
    """The registered entry named ``name``.

    Raises:
        InputError: ``unknown metric '<name>'; expected one of [...]`` (the registered names).
    """
    return METRICS.get(name)


def family_metric(name: str, family: str, what: str | None = None) -> Metric:
    """The registered ``family`` metric ``name``.

    Raises:
        InputError: ``unknown <what> '<name>'; expected one of [...]`` (the family's registered names).
    """
    check_choice(name, what or f"{family} metric", metric_names(family))
    return METRICS.get(name)


def list_metrics(family: str | None = None) -> tuple[Metric, ...]:
    """The registered metrics (of one ``family``), in registration order: the order of every table."""
    if family is not None:
        check_choice(family, "metric family", FAMILIES)
    return tuple(m for m in METRICS.values() if family is None or m.family == family)


def metric_names(family: str | None = None) -> tuple[str, ...]:
    """The names of :func:`list_metrics` (``family``)."""
    return tuple(m.name for m in list_metrics(family))


def headline_metrics(family: str | None = None, *, measured: Collection[str] | None = None,
                     test: str | None = None) -> tuple[Metric, ...]:
    """The headline metrics (of one ``family``, with one ``test``) among the metrics a study ``measured``.

    Every one of them: which of NAOPC and AOPC is a study's default claim is the study's rule
    (:func:`toolkit.study.config.claim_metrics`).

    Args:
        measured: names of the metrics at hand (None: every registered one).
    """
    have = set(metric_names()) if measured is None else set(measured)
    return tuple(m for m in list_metrics(family) if m.headline and m.name in have
                 and (test is None or m.test == test))
