"""The study's headline view: its claims, each a test with its size, and the statement of those sizes.

The claims are ``StudyConfig.claims`` (:func:`toolkit.study.claim_metrics`), by default the
registry's headline metrics (:func:`toolkit.metrics.headline_metrics`): the
equivalence claim (``test="tost"``: accuracy holds) and the change claims (ECE; NAOPC, or AOPC in a
study without the bound search). A metric registered as a headline claim becomes a column group
here, a change test counted in m, a row of :func:`toolkit.study.plan` and a panel of
:func:`toolkit.plots.claims_plot`, with no other edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..decisions import adjust_tests, error_budget, misalignment
from ..metrics import Metric, get_metric, metric_names
from ..validation import check_choice
from .config import CORRECTIONS, claim_metrics

__all__ = ["ClaimColumns", "Summary", "measured_metrics", "summary"]


@dataclass(frozen=True)
class ClaimColumns:
    """The summary columns of one claim: the metric, its paired difference, the test's interval and verdict."""

    metric: Metric
    value: str
    delta: str
    low: str
    high: str
    shown: str


@dataclass(frozen=True, eq=False)
class Summary:
    """A study's claims (:attr:`table`) with the statement of the tests behind them as typed fields.

    Attributes:
        table: one row per cell (see :func:`summary` for the columns).
        method: the attribution method whose faithfulness columns the table shows.
        faithfulness_metric: the headline faithfulness metric (``naopc_comprehensiveness``, or
            ``aopc_comprehensiveness`` in a study without the bound search); None without one.
        claims: the headline metrics the table shows, in column order (registry names).
        statement: the test sizes in one line (margin, alpha, m, the correction, the expected number
            of false flags without it), or ``"no pruned cell"``.
        m: number of change tests the correction counts (0 without a pruned cell).
        margin: the accuracy equivalence margin (None without a pruned cell).
        alpha: size of the change tests (and of the TOST, fixed when the table was built).
        correction: ``holm`` or ``bh``.
        expected_false_flags: alpha * m, the false "changed" flags expected without the correction.
    """

    table: pd.DataFrame
    method: str = ""
    faithfulness_metric: str | None = None
    claims: tuple[str, ...] = ()
    statement: str = ""
    m: int = 0
    margin: float | None = None
    alpha: float = 0.05
    correction: str = "holm"
    expected_false_flags: float = 0.0

    def claim_columns(self) -> list[ClaimColumns]:
        """The column names of each claim in :attr:`claims`, in order."""
        out = []
        for name in self.claims:
            metric = get_metric(name)
            s = metric.short
            if metric.test == "tost":
                out.append(ClaimColumns(metric, s, f"d_{s}", "tost_low", "tost_high", "equivalent"))
            else:
                out.append(ClaimColumns(metric, s, f"d_{s}", f"{s}_low", f"{s}_high", f"{s}_changed"))
        return out


def measured_metrics(table: pd.DataFrame) -> set[str]:
    """The registry names a study table holds rows of (``<name>:<method>`` counts as ``name``)."""
    return {m.split(":", 1)[0] for m in table.metric.unique()} & set(metric_names())


def summary(table: pd.DataFrame, *, method: str | None = None, correction: str = "holm", alpha: float = 0.05,
            claims: Sequence[str] = ()) -> Summary:
    """Per model, dataset, selection and level: the study's claims, each a test with its size.

    - accuracy holds: paired TOST of the accuracy difference at the table's ``margin``
      (``equivalent``; ``tost_low``/``tost_high`` is the (1 - 2 alpha) interval, which must lie
      inside (-margin, margin)). "The CI contains 0" is not evidence that accuracy holds.
    - ECE and NAOPC (comprehensiveness, every attribution method) changed: paired differences
      against the unpruned model, p-values and CIs adjusted for all m such tests in the study
      (``correction``: Holm, familywise error <= alpha; or Benjamini-Hochberg, false discovery
      rate <= alpha, with Benjamini-Yekutieli intervals) - :func:`toolkit.decisions.adjust_tests`.
      These are the registry's headline change claims: every headline metric is tested the same way.
    - misaligned: accuracy *shown* equivalent and a calibration or faithfulness metric *shown*
      changed (:func:`toolkit.decisions.misalignment`).

    Args:
        method: the attribution method whose NAOPC the table shows (default: the first).
        correction: ``"holm"`` or ``"bh"``.
        alpha: size of the change tests (the TOST's was fixed when the table was built).
        claims: the claims as registered metric names (``StudyConfig.claims``); the equivalence
            claim is always included. Empty: the registry's headline metrics
            (:func:`toolkit.study.claim_metrics`).

    Returns:
        :class:`Summary`. Its ``table`` has one row per cell: the keys, accuracy, d_accuracy,
        tost_low, tost_high, equivalent, ece, d_ece, ece_low, ece_high (adjusted), ece_changed,
        ece_ts, naopc, d_naopc, naopc_low, naopc_high (adjusted), naopc_changed (``aopc``, ... in
        an AOPC-only study; the same five columns for every other headline claim), misaligned,
        verdict. Its fields state the tests: method, statement, m, margin, alpha, correction,
        expected_false_flags.
    """
    check_choice(correction, "correction", CORRECTIONS)
    if "layers" in table:  # the reference's empty layer list reads back from table.csv as NaN: keep its row
        table = table.assign(layers=table["layers"].fillna("").astype(str))
    measured = measured_metrics(table)
    chosen = claim_metrics(tuple(claims), measured=measured)
    calibration = tuple(m for m in chosen if m.family == "calibration")
    faithfulness = tuple(m for m in chosen if m.family == "faithfulness")
    equivalence_metric = next((m for m in calibration if m.test == "tost"), None)
    faith = faithfulness[0].name if faithfulness else None  # the method choice follows the first one
    methods = sorted({m.split(":", 1)[1] for m in table.metric if faith and m.startswith(f"{faith}:")} - {"random"})
    if method is None:
        method = methods[0] if methods else "random"
    # table metric -> summary column, for each claim (faithfulness: the chosen method's rows)
    claims = list(calibration) + list(faithfulness)
    shown_as = {(f"{m.name}:{method}" if m.family == "faithfulness" else m.name): m.short for m in claims}
    wanted = dict(shown_as)
    for m in claims:
        wanted.update(dict(m.also_show))
    keys = ["model", "dataset", "selection", "k", "layers"]
    if "level" in table and any(isinstance(v, float) and not float(v).is_integer() for v in table["level"]):
        keys.insert(3, "level")  # fractions of the depth: show them beside the k they meant per model
    sub = table[table.metric.isin(wanted)].copy()
    sub["name"] = sub.metric.map(wanted)
    value = sub.pivot_table(index=keys, columns="name", values="value", aggfunc="first")
    delta = sub.pivot_table(index=keys, columns="name", values="delta", aggfunc="first").add_prefix("d_")
    out = value.join(delta).reset_index()

    pruned = table[table.k > 0]
    acc = pruned[pruned.metric == equivalence_metric.name] if equivalence_metric is not None else pruned.iloc[:0]
    statement, m_tests, margin = "no pruned cell", 0, None
    if len(acc):
        equivalence = acc[keys + ["tost_low", "tost_high", "equivalent", "margin"]].assign(alpha=alpha)
        equivalence["equivalent"] = equivalence["equivalent"].astype(bool)
        change_metrics = [m.name for m in calibration if m.test != "tost"]
        change_metrics += [f"{m.name}:{x}" for m in faithfulness for x in methods]
        tests = pruned[pruned.metric.isin(change_metrics)][keys + ["metric", "delta", "delta_se", "delta_df"]]
        tests = tests.rename(columns={"delta": "estimate", "delta_se": "se", "delta_df": "df"}).reset_index(drop=True)
        adjusted = adjust_tests(tests, method=correction, alpha=alpha)
        verdict = misalignment(equivalence, adjusted, on=keys)
        statement = verdict.statement
        out = out.merge(equivalence[keys + ["tost_low", "tost_high", "equivalent"]], on=keys, how="left")
        for metric, name in shown_as.items():
            if equivalence_metric is not None and metric == equivalence_metric.name:
                continue
            part = adjusted[adjusted.metric == metric][keys + ["ci_low", "ci_high", "changed"]]
            part = part.rename(columns={"ci_low": f"{name}_low", "ci_high": f"{name}_high", "changed": f"{name}_changed"})
            out = out.merge(part, on=keys, how="left")
        out = out.merge(verdict.table[keys + ["misaligned", "verdict"]], on=keys, how="left")
        m_tests = int(adjusted["m"].iloc[0]) if len(adjusted) else 0
        margin = float(acc["margin"].iloc[0])
    if "misaligned" not in out:
        out["misaligned"], out["verdict"] = False, np.nan
    reference = out["k"] == 0
    out["misaligned"] = out["misaligned"].where(~reference, False).astype(bool)  # the reference is no claim
    out["verdict"] = out["verdict"].where(~reference, "reference (unpruned)")
    out = out.sort_values(["model", "dataset", "k", "selection"], kind="stable")
    columns: list[str] = []
    for m in claims:
        s = m.short
        if m.test == "tost":
            columns += [s, f"d_{s}", "tost_low", "tost_high", "equivalent"]
        else:
            columns += [s, f"d_{s}", f"{s}_low", f"{s}_high", f"{s}_changed"]
        columns += [column for _, column in m.also_show]
    cols = keys + [c for c in columns + ["misaligned", "verdict"] if c in out]
    return Summary(
        table=out[cols].reset_index(drop=True),
        method=method,
        faithfulness_metric=faith,
        claims=tuple(m.name for m in claims),
        statement=statement,
        m=m_tests,
        margin=margin,
        alpha=alpha,
        correction=correction,
        expected_false_flags=error_budget(m_tests, correction, alpha).expected_unadjusted if m_tests else 0.0,
    )
