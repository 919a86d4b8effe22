"""The study's headline view: its claims, each a test with its size, and the statement of those sizes.

The seed claim is conditional and directional: pruned models that *keep* accuracy *lose*
calibration or faithfulness. So a pruned cell is judged in three steps, from columns of the
study's table alone (:mod:`toolkit.study.decide` computed them):

1. the premise: accuracy is kept (one-sided paired non-inferiority at the study's margin; a gain
   never fails it) and the model is not collapsed (:mod:`toolkit.decisions.collapse`);
2. the primary family: each change claim (``StudyConfig.claims``, by default the registry's
   headline metrics: ECE; NAOPC, or AOPC in a study without the bound search) *degrades*,
   one-sided, only in cells that pass step 1 and are not a control selection; Holm (or BH) within
   that family (:func:`toolkit.decisions.gated_family`); a test that cannot reject at its n is
   refused, not counted;
3. everything else (the same claims in cells that fail the gate, control selections) is
   exploratory: Benjamini-Hochberg, and labelled so.

A metric registered as a headline claim becomes a column group here, a row of
:func:`toolkit.study.plan` and a panel of :func:`toolkit.study.plots.claims_plot`, with no other edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..decisions import error_budget, gated_family
from ..metrics.registry import Metric, get_metric, metric_names
from .._core.validation import InputError, as_bool, check_choice
from .config import CORRECTIONS, claim_metrics
from .decide import cell_verdict, claim_methods, is_control

__all__ = ["SHOWN_BESIDE", "ClaimColumns", "Summary", "claim_tests", "measured_metrics", "summary"]

SHOWN_BESIDE: dict[str, tuple[str, ...]] = {"ece": ("ece_temperature_scaled",)}
"""Registered metrics shown beside a claim's columns in the summary, each under its ``short`` name:
ECE is followed by the ECE after temperature scaling (``ece_ts``)."""


@dataclass(frozen=True)
class ClaimColumns:
    """The summary columns of one claim: the metric, its paired difference, its interval, p and verdict.

    The premise (accuracy): ``low`` is the one-sided non-inferiority bound (``ni_low``), ``high``
    is empty, ``p_adj`` is empty and ``shown`` is ``keeps_accuracy``. A change claim: ``low`` /
    ``high`` its paired 95% interval (unadjusted), ``p_adj`` the one-sided p adjusted in its
    family, ``shown`` = ``<short>_degrades`` (rejected in its family).
    """

    metric: Metric
    value: str
    delta: str
    low: str
    high: str
    shown: str
    p_adj: str = ""


@dataclass(frozen=True, eq=False)
class Summary:
    """A study's claims (:attr:`table`) with the statement of the tests behind them as typed fields.

    Attributes:
        table: one row per cell (see :func:`summary` for the columns).
        method: the attribution method whose faithfulness columns the table shows.
        faithfulness_metric: the headline faithfulness metric (``naopc_comprehensiveness``, or
            ``aopc_comprehensiveness`` in a study without the bound search); None without one.
        claims: the headline metrics the table shows, in column order (registry names; the premise first).
        statement: the test sizes in one line (margin, alpha, the gate's counts, each family's m
            and adjustment), or ``"no pruned cell"``.
        m: tests in the primary family (after refusals; 0 without a gated cell).
        m_exploratory: tests in the exploratory family.
        margin: the non-inferiority margin of accuracy (None without a pruned cell).
        alpha: level of the non-inferiority tests and of each family.
        correction: the primary family's adjustment, ``holm`` or ``bh`` (the exploratory one is BH).
        expected_false_flags: alpha * m, the false "degrades" flags expected in the primary family
            without the correction.
        tests: one row per change test (:func:`claim_tests`: family, p, p_adj, refused, reason, ...).
    """

    table: pd.DataFrame
    method: str = ""
    faithfulness_metric: str | None = None
    claims: tuple[str, ...] = ()
    statement: str = ""
    m: int = 0
    m_exploratory: int = 0
    margin: float | None = None
    alpha: float = 0.05
    correction: str = "holm"
    expected_false_flags: float = 0.0
    tests: pd.DataFrame | None = None

    def claim_columns(self) -> list[ClaimColumns]:
        """The column names of each claim in :attr:`claims`, in order."""
        out = []
        for name in self.claims:
            metric = get_metric(name)
            s = metric.short
            if metric.test == "noninferiority":
                out.append(ClaimColumns(metric, s, f"d_{s}", "ni_low", "", "keeps_accuracy"))
            else:
                out.append(ClaimColumns(metric, s, f"d_{s}", f"{s}_low", f"{s}_high", f"{s}_degrades", f"{s}_p_adj"))
        return out


def measured_metrics(table: pd.DataFrame) -> set[str]:
    """The registry names a study table holds rows of (``<name>:<method>`` counts as ``name``)."""
    return {m.split(":", 1)[0] for m in table.metric.unique()} & set(metric_names())


def claim_tests(table: pd.DataFrame, change_metrics: Sequence[str], primary: Sequence[str], *,
                keys: Sequence[str], alpha: float = 0.05, correction: str = "holm") -> pd.DataFrame:
    """The gated families of a study table's change tests (steps 2 and 3 of the module docstring).

    Args:
        table: the study's tidy table (its ``p``, ``test``, ``n`` columns on tested rows; ``noninferior``
            and ``collapsed`` on pruned accuracy rows).
        change_metrics: the table metric names tested (``ece``, ``naopc_comprehensiveness:<method>``).
        primary: those that are primary claims (in gated cells of a non-control selection).
        keys: the cell key columns.
        alpha, correction: each family's level; the primary family's adjustment (``holm`` or ``bh``).

    Returns:
        One row per test: keys, metric, estimate, p, test, n, alternative, primary_claim, gate, and
        :func:`toolkit.decisions.gated_family`'s family, p_min, threshold, refused, reason, m, p_adj,
        rejected, method.
    """
    keys = list(keys)
    pruned = table[table.k > 0]
    acc = pruned[pruned.metric == "accuracy"]
    if acc["noninferior"].isna().all():
        raise InputError("this table has no non-inferiority columns (noninferior, collapsed) on its accuracy rows: it "
                         "predates them; rebuild it from the records with toolkit.study.tidy_table(load_results(config), "
                         "config)")
    gate = acc[keys].assign(gate=(as_bool(acc["noninferior"]) & ~as_bool(acc["collapsed"])).to_numpy())
    rows = pruned[pruned.metric.isin(change_metrics) & pruned["p"].notna()]
    tests = rows[keys + ["metric", "delta", "p", "test", "n", "alternative"]].rename(columns={"delta": "estimate"})
    tests = tests.merge(gate, on=keys, how="left")
    tests["gate"] = tests["gate"].fillna(False).astype(bool)
    tests["n"] = tests["n"].astype(int)
    tests["primary_claim"] = [m in primary and not is_control(s) for m, s in zip(tests.metric, tests.selection)]
    return gated_family(tests.reset_index(drop=True), alpha=alpha, primary=correction, exploratory="bh")


def summary(table: pd.DataFrame, *, method: str | None = None, correction: str = "holm", alpha: float = 0.05,
            claims: Sequence[str] = ()) -> Summary:
    """Per model, dataset, selection and level: the study's claims, each a test with its size.

    The three steps of the module docstring, from the table's columns (its ``margin`` and the
    non-inferiority bound were fixed when it was built, at the study's alpha):

    - keeps_accuracy: the one-sided (1 - alpha) lower bound of the paired accuracy change
      (``ni_low``, Tango's score bound) is above -margin; collapsed: a rule of
      :mod:`toolkit.decisions.collapse` fires. "The CI contains 0" is not evidence that accuracy holds.
    - ``<claim>_degrades``: the one-sided test that the claim's metric got worse, rejected in its
      family: primary (gated cells, Holm or BH per ``correction``) or exploratory (BH).
      ``<claim>_p_adj`` is its adjusted p; ``<claim>_low`` / ``_high`` its unadjusted paired 95% interval.
    - misaligned: the seed claim's event, a cell that keeps accuracy, is not collapsed, and has a
      primary claim shown to degrade; verdict: the cell's outcome in words
      (:func:`toolkit.study.decide.cell_verdict`, the same words as the audit table's).

    Args:
        method: the attribution method whose faithfulness columns the table shows (default: the
            first claim method, :func:`toolkit.study.decide.claim_methods`: ``<method>_minus_permuted``
            where the study ran permuted baselines). Every non-random method's rows are tested; the
            claim methods' are primary, the raw method's and the permuted baseline's exploratory.
        correction: the primary family's adjustment, ``"holm"`` or ``"bh"``.
        alpha: level of each family.
        claims: the claims as registered metric names (``StudyConfig.claims``); the premise
            (accuracy) is always included. Empty: the registry's headline metrics
            (:func:`toolkit.study.claim_metrics`).

    Returns:
        :class:`Summary`. Its ``table`` has one row per cell: the keys, accuracy, d_accuracy, ni_low,
        keeps_accuracy, collapsed, then per change claim ``<s>``, ``d_<s>``, ``<s>_low``, ``<s>_high``,
        ``<s>_p_adj``, ``<s>_degrades`` (ece, naopc, ...; ECE is followed by ece_ts), misaligned,
        verdict. Its fields state the tests.
    """
    check_choice(correction, "correction", CORRECTIONS)
    if "layers" in table:  # the reference's empty layer list reads back from table.csv as NaN: keep its row
        table = table.assign(layers=table["layers"].fillna("").astype(str))
    measured = measured_metrics(table)
    chosen = claim_metrics(tuple(claims), measured=measured)
    calibration = tuple(m for m in chosen if m.family == "calibration")
    faithfulness = tuple(m for m in chosen if m.family == "faithfulness")
    premise = next((m for m in calibration if m.test == "noninferiority"), None)
    faith = faithfulness[0].name if faithfulness else None  # the method choice follows the first one
    methods = sorted({m.split(":", 1)[1] for m in table.metric if faith and m.startswith(f"{faith}:")} - {"random"})
    claimed = claim_methods(methods)  # a method over its permuted baseline where the table has it
    if method is None:
        method = claimed[0] if claimed else "random"
    claims = list(calibration) + list(faithfulness)
    shown_as = {(f"{m.name}:{method}" if m.family == "faithfulness" else m.name): m.short for m in claims}
    wanted = dict(shown_as)
    for m in claims:
        wanted.update({name: get_metric(name).short for name in SHOWN_BESIDE.get(m.name, ())})
    keys = ["model", "dataset", "selection", "k", "layers"]
    if "level" in table and any(isinstance(v, float) and not float(v).is_integer() for v in table["level"]):
        keys.insert(3, "level")  # fractions of the depth: show them beside the k they meant per model
    if "shots" in table and table["shots"].nunique() > 1:
        keys.insert(keys.index("k") + 1, "shots")
    sub = table[table.metric.isin(wanted)].copy()
    sub["name"] = sub.metric.map(wanted)
    value = sub.pivot_table(index=keys, columns="name", values="value", aggfunc="first")
    delta = sub.pivot_table(index=keys, columns="name", values="delta", aggfunc="first").add_prefix("d_")
    out = value.join(delta).reset_index()

    pruned = table[table.k > 0]
    acc = pruned[pruned.metric == premise.name] if premise is not None else pruned.iloc[:0]
    statement, margin, tests = "no pruned cell", None, None
    m_primary = m_explore = 0
    if len(acc):
        change_metrics = [m.name for m in calibration if m.test != "noninferiority"]
        change_metrics += [f"{m.name}:{x}" for m in faithfulness for x in methods]
        # primary where the gate admits it: calibration, and faithfulness of the claim methods (raw scores and
        # permuted baselines are tested too, as exploratory rows)
        primary = {m.name for m in calibration if m.test != "noninferiority"}
        primary |= {f"{m.name}:{x}" for m in faithfulness for x in claimed}
        tests = claim_tests(table, change_metrics, primary, keys=keys, alpha=alpha, correction=correction)
        gate = acc[keys + ["ni_low", "noninferior", "collapsed", "collapse_reasons", "margin"]].copy()
        gate["keeps_accuracy"] = as_bool(gate["noninferior"])
        gate["collapsed"] = as_bool(gate["collapsed"])
        gate["collapse_reasons"] = gate["collapse_reasons"].fillna("").astype(str)
        margin = float(gate["margin"].iloc[0])
        out = out.merge(gate[keys + ["ni_low", "keeps_accuracy", "collapsed"]], on=keys, how="left")
        for metric, name in shown_as.items():
            if premise is not None and metric == premise.name:
                continue
            part = pruned[pruned.metric == metric][keys + ["delta_low", "delta_high"]].rename(
                columns={"delta_low": f"{name}_low", "delta_high": f"{name}_high"})
            fam = tests[tests.metric == metric][keys + ["p_adj", "rejected"]].rename(
                columns={"p_adj": f"{name}_p_adj", "rejected": f"{name}_degrades"})
            out = out.merge(part, on=keys, how="left").merge(fam, on=keys, how="left")
        hits: dict[tuple, list[str]] = {}  # each cell's primary claims shown to degrade, in test order
        for row in tests[(tests.family == "primary") & tests.rejected][keys + ["metric"]].itertuples(index=False):
            hits.setdefault(tuple(row[:-1]), []).append(row[-1])
        verdicts = []
        for _, g in gate.iterrows():
            key = tuple(g[k] for k in keys)
            hit = hits.get(key, [])
            verdicts.append(dict(zip(keys, key), misaligned=bool(g.keeps_accuracy and not g.collapsed and hit),
                                 verdict=cell_verdict(g.collapse_reasons if g.collapsed else "", bool(g.keeps_accuracy),
                                                      hit, margin)))
        out = out.merge(pd.DataFrame(verdicts, columns=keys + ["misaligned", "verdict"]), on=keys, how="left")
        primary_rows = tests[tests.family == "primary"]
        m_primary = int(primary_rows["m"].iloc[0]) if len(primary_rows) else 0
        explore_rows = tests[tests.family == "exploratory"]
        m_explore = int(explore_rows["m"].iloc[0]) if len(explore_rows) else 0
        n_cells, n_kept = len(gate), int(gate.keeps_accuracy.sum())
        n_collapsed, n_gated = int(gate.collapsed.sum()), int((gate.keeps_accuracy & ~gate.collapsed).sum())
        names = ", ".join(m.label for m in claims if m is not premise)
        refused = int(tests["refused"].sum())
        statement = (
            f"keeps accuracy: the one-sided {1 - alpha:.0%} bound of the paired accuracy change above -{margin:g} "
            f"(non-inferiority, score method) in {n_kept} of {n_cells} pruned cells; {n_collapsed} collapsed "
            f"(kept out of the claims); primary claims ({names} degrade, one-sided) in the {n_gated} gated cells: "
            f"m = {m_primary}, {correction.upper() if correction == 'bh' else 'Holm'} at alpha = {alpha:g} "
            f"(expected false flags without it: {alpha * m_primary:.2f}); exploratory (the rest, labelled): "
            f"m = {m_explore}, BH" + (f"; {refused} test(s) refused: they cannot reject at their n" if refused else ""))
    for col in ("misaligned", "verdict"):
        if col not in out:
            out[col] = False if col == "misaligned" else np.nan
    reference = out["k"] == 0
    out["misaligned"] = out["misaligned"].where(~reference, False).fillna(False).astype(bool)
    out["verdict"] = out["verdict"].where(~reference, "reference (unpruned)")
    out = out.sort_values(["model", "dataset", "k", "selection"], kind="stable")
    columns: list[str] = []
    for m in claims:
        s = m.short
        if m.test == "noninferiority":
            columns += [s, f"d_{s}", "ni_low", "keeps_accuracy", "collapsed"]
        else:
            columns += [s, f"d_{s}", f"{s}_low", f"{s}_high", f"{s}_p_adj", f"{s}_degrades"]
        columns += [get_metric(name).short for name in SHOWN_BESIDE.get(m.name, ())]
    cols = keys + [c for c in columns + ["misaligned", "verdict"] if c in out]
    return Summary(
        table=out[cols].reset_index(drop=True),
        method=method,
        faithfulness_metric=faith,
        claims=tuple(m.name for m in claims),
        statement=statement,
        m=m_primary,
        m_exploratory=m_explore,
        margin=margin,
        alpha=alpha,
        correction=correction,
        expected_false_flags=error_budget(m_primary, correction, alpha).expected_unadjusted if m_primary else 0.0,
        tests=tests,
    )
