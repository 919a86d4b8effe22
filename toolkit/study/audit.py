"""An auditable per-cell table: every test's inputs in one CSV, and every verdict recomputed from it.

:func:`audit_table` turns a study's cell records into one row per (cell, metric): the effect
(pruned minus unpruned, paired), its CI, the test and its p, n, the discordant accuracy counts and
the collapse statistics, and the verdicts derived from them. :func:`recompute` derives every
verdict column again from the *input* columns alone (:data:`INPUT_COLUMNS`), so a reader with the
CSV and no records can check each verdict: ``python -m toolkit verdicts TABLE.csv``.

How a verdict follows, per pruned cell (margin and alpha are columns of the table):

1. keeps accuracy: :func:`toolkit.decisions.noninferiority_from_counts` on (gains, losses, n) at
   0.02, 0.05 and 0.10; the gate uses the table's ``margin``;
2. collapsed: :func:`toolkit.decisions.collapse_reasons` on (majority share, balanced accuracy,
   mean label mass: reported, decides nothing; see :mod:`toolkit.decisions.collapse`);
3. gate = keeps accuracy at ``margin`` and not collapsed;
4. :func:`toolkit.decisions.gated_family`: directional primary claims (``primary_claim``) in gated
   cells form the Holm family, everything else the exploratory BH family; tests that cannot reject
   are refused;
5. verdict: 'collapsed', 'not shown to keep accuracy', 'keeps accuracy; degrades: ...' (a primary
   claim rejected) or 'keeps accuracy; no degradation shown'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics.calibration import compare_calibration
from ..decisions import NONINFERIORITY_MARGINS, collapse_reasons, gated_family, noninferiority_from_counts
from ..metrics.registry import get_metric, metric_names
from .._core.validation import InputError, check_float
from .cells import Cell
from .decide import accuracy_gate, cell_verdict, claim_methods, degrade_test, is_control, paired_values
from .table import record_frame

__all__ = [
    "CELL_KEYS",
    "DEFAULT_PRIMARY",
    "INPUT_COLUMNS",
    "audit_table",
    "cell_verdicts",
    "recompute",
]

CELL_KEYS = ("model", "dataset", "selection", "level", "k", "shots", "layers")
#: The seed claim's directional primary metrics: calibration (ECE) and faithfulness (NAOPC comprehensiveness).
DEFAULT_PRIMARY = ("ece", "naopc_comprehensiveness")
INPUT_COLUMNS = (*CELL_KEYS, "metric", "n", "estimate", "ci_low", "ci_high", "test", "alternative", "n_resamples",
                 "p", "primary_claim", "gains", "losses", "n_classes", "majority_share", "balanced_accuracy",
                 "mean_label_mass", "margin", "alpha")
# calibration metrics the audit tests: paired bootstrap se + normal reference (the registry's paired_bootstrap)
_CALIBRATION = ("ece", "smooth_ece", "brier")


def _cell_rows(ref: dict, rec: dict, primary: Sequence[str], n_boot: int, seed: int, margin: float,
               alpha: float) -> list[dict]:
    if list(ref["ids"]) != list(rec["ids"]):
        raise InputError(f"cell {rec.get('cell', rec['selection'])}: its test ids differ from the unpruned cell's; "
                         "expected the same examples in the same order")
    base = {k: rec.get(k, 0 if k == "shots" else None) for k in CELL_KEYS}
    base["layers"] = " ".join(map(str, rec["layers"]))
    a, b = record_frame(ref), record_frame(rec)
    gate = accuracy_gate(a["correct"].to_numpy(), b["correct"].to_numpy(), b["pred"].to_numpy(), b["label"].to_numpy(),
                         len(rec["label_names"]), np.asarray(rec["label_mass"]), margin=margin, alpha=alpha)
    n = gate["n"]
    rows = [dict(base, metric="accuracy", n=n, estimate=gate["d_accuracy"], ci_low=gate["ni_low"], ci_high=np.nan,
                 test="score", alternative="greater", n_resamples=np.nan, p=np.nan, primary_claim=False,
                 gains=gate["gains"], losses=gate["losses"], n_classes=len(rec["label_names"]),
                 majority_share=gate["majority_share"], balanced_accuracy=gate["balanced_accuracy"],
                 mean_label_mass=gate["mean_label_mass"])]
    # the same paired bootstrap as the study table's (same seed): the same p on both
    cell_seed = Cell(rec["model"], rec["dataset"], rec["selection"], rec.get("level", rec["k"])).seed(seed)
    paired = compare_calibration(a, b, n_boot=n_boot, seed=cell_seed).set_index("metric")
    for metric in _CALIBRATION:
        d = paired.loc[metric]
        test = degrade_test(metric, estimate=float(d["diff"]), low=float(d["low"]), high=float(d["high"]))
        rows.append(dict(base, metric=metric, n=n, estimate=test["estimate"], ci_low=test["ci_low"],
                         ci_high=test["ci_high"], test=test["test"], alternative=test["alternative"],
                         n_resamples=n_boot, p=test["p"], primary_claim=metric in primary and not is_control(rec["selection"])))
    faith_a, faith_b = pd.DataFrame(ref.get("faithfulness", [])), pd.DataFrame(rec.get("faithfulness", []))
    if len(faith_a) and len(faith_b):
        names = [m for m in metric_names() if get_metric(m).family == "faithfulness" and m in faith_b
                 and get_metric(m).higher_is_better is not None]
        claimed = set(claim_methods(faith_b["method"].unique()))
        for method, group in faith_b.groupby("method", sort=True):
            for metric in names:
                both = paired_values(faith_a[faith_a.method == method], group, metric)
                if len(both) < 2:
                    continue
                name = f"{metric}:{method}"
                test = degrade_test(name, d=both.b.to_numpy() - both.a.to_numpy())
                rows.append(dict(base, metric=name, n=test["n"], estimate=test["estimate"], ci_low=test["ci_low"],
                                 ci_high=test["ci_high"], test=test["test"], alternative=test["alternative"],
                                 n_resamples=np.nan, p=test["p"], primary_claim=metric in primary and method in claimed
                                 and not is_control(rec["selection"])))
    return rows


def audit_table(records: Sequence[dict], *, margin: float = 0.05, alpha: float = 0.05,
                primary: Sequence[str] = DEFAULT_PRIMARY, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (pruned cell, metric): every test's inputs and the verdicts derived from them.

    Rows per pruned cell: ``accuracy`` (gains, losses, n; the score method's one-sided (1 - alpha)
    lower bound as ci_low; the collapse statistics), ``ece``, ``smooth_ece`` and ``brier``
    (paired-bootstrap CI with the study table's per-cell seed, its se = width / 3.92 with a normal
    reference: no 1/B floor on p) and ``<faithfulness metric>:<method>`` (exact sign-flip test for
    <= 20 pairs, else a paired t), all by :func:`toolkit.study.decide.degrade_test`, so each p
    equals the study table's. p values are one-sided in the direction "degrades" (the registry's
    ``higher_is_better``); primary claims are ``primary`` metrics (faithfulness: the claim methods
    of :func:`toolkit.study.decide.claim_methods`, a method over its permuted baseline where the
    study ran one) in cells of a non-control selection.

    Args:
        records: the study's cell records (``toolkit.study.load_results``); each pruned cell is
            paired with the unpruned cell (k = 0) of its model and dataset.
        margin: the non-inferiority margin of the gate.
        alpha: level of the non-inferiority tests and of each family.
        primary: registry names of the directional primary claims.
        n_boot, seed: the paired bootstrap of the calibration CIs (``seed`` is the study's base seed;
            each cell resamples with its own, as the study table does).

    Returns:
        DataFrame with :data:`INPUT_COLUMNS` and the columns :func:`recompute` adds.
    """
    margin = check_float(margin, "margin", 0.0, 1.0)
    alpha = check_float(alpha, "alpha", 0.0, 0.5)
    refs = {(r["model"], r["dataset"], r.get("shots", 0)): r for r in records if r["k"] == 0}
    rows = []
    for r in records:
        if r["k"] == 0:
            continue
        ref = refs.get((r["model"], r["dataset"], r.get("shots", 0)))
        if ref is None:
            raise InputError(f"no unpruned cell (k=0) for model={r['model']!r}, dataset={r['dataset']!r}: "
                             "nothing to pair the pruned cell with")
        rows += _cell_rows(ref, r, tuple(primary), n_boot, seed, margin, alpha)
    frame = pd.DataFrame(rows)
    frame["margin"], frame["alpha"] = margin, alpha
    return recompute(frame[list(INPUT_COLUMNS)])


def recompute(frame: pd.DataFrame, *, family_by: str | None = "study") -> pd.DataFrame:
    """Every verdict column, derived from :data:`INPUT_COLUMNS` alone (the steps in the module docstring).

    Args:
        frame: an audit table (:func:`audit_table`), or several studies' tables stacked with a
            column naming the study.
        family_by: with a column of this name in ``frame`` (default ``study``), each of its values
            is its own pair of families (each study's primary claims adjusted among themselves, as
            :func:`toolkit.study.summary` does for one study); None, or no such column: one pair of
            families over the whole table.

    Returns:
        The input columns plus ``keeps_accuracy_<margin>`` for 0.02, 0.05, 0.1, ``collapsed``,
        ``collapse_reasons``, ``gate``, ``family``, ``p_min``, ``refused``, ``reason``, ``m``,
        ``p_adj``, ``rejected`` and ``verdict`` (the cell's verdict, on each of its rows).
    """
    missing = [c for c in INPUT_COLUMNS if c not in frame]
    if missing:
        raise InputError(f"the audit table lacks columns {missing}; expected {list(INPUT_COLUMNS)}")
    group = family_by if family_by is not None and family_by in frame else None
    df = frame[list(INPUT_COLUMNS) + ([group] if group else [])].copy()
    df["layers"] = df["layers"].fillna("").astype(str)
    df["primary_claim"] = df["primary_claim"].astype(str).str.lower().map({"true": True, "false": False})
    keys = list(CELL_KEYS) + ([group] if group else [])
    margin, alpha = float(df["margin"].iloc[0]), float(df["alpha"].iloc[0])
    if df["margin"].nunique() != 1 or df["alpha"].nunique() != 1:
        raise InputError("the audit table holds more than one margin or alpha; expected one of each")
    acc = df[df.metric == "accuracy"]
    cells = {}
    for _, row in acc.iterrows():
        g, l_, n = int(row.gains), int(row.losses), int(row.n)
        keeps = {m: noninferiority_from_counts(g, l_, n, m, alpha).noninferior for m in NONINFERIORITY_MARGINS}
        gate_keep = noninferiority_from_counts(g, l_, n, margin, alpha).noninferior
        reasons = collapse_reasons(float(row.majority_share), float(row.balanced_accuracy), int(row.n_classes),
                                   float(row.mean_label_mass))
        cells[tuple(row[k] for k in keys)] = (keeps, gate_keep, reasons)
    cell_key = [tuple(r) for r in df[keys].itertuples(index=False)]
    if any(k not in cells for k in cell_key):
        raise InputError("a cell of the audit table has no accuracy row; every cell needs one (gains, losses, n)")
    for m in NONINFERIORITY_MARGINS:
        df[f"keeps_accuracy_{m:g}"] = [cells[k][0][m] for k in cell_key]
    df["collapsed"] = [bool(cells[k][2]) for k in cell_key]
    df["collapse_reasons"] = [", ".join(cells[k][2]) for k in cell_key]
    df["gate"] = [cells[k][1] and not cells[k][2] for k in cell_key]
    tests = df[df.metric != "accuracy"]
    parts = [t for _, t in tests.groupby(group, sort=False)] if group else [tests]
    fam = pd.concat([gated_family(t, alpha=alpha) for t in parts]) if len(tests) else gated_family(tests, alpha=alpha)
    for c in ("family", "p_min", "refused", "reason", "m", "p_adj", "rejected"):
        df[c] = fam[c] if c in fam else np.nan
    df.loc[df.metric == "accuracy", ["family", "reason"]] = ["gate", ""]
    df.loc[df.metric == "accuracy", ["refused", "rejected"]] = False
    df["refused"] = df["refused"].astype(bool)
    df["rejected"] = df["rejected"].astype(bool)
    verdict = {}
    for k in cells:
        rows = df[[ck == k for ck in cell_key]]
        keeps, gate_keep, reasons = cells[k]
        hit = rows[(rows.family == "primary") & rows.rejected].metric.tolist()
        verdict[k] = cell_verdict(", ".join(reasons), gate_keep, hit, margin)
    df["verdict"] = [verdict[k] for k in cell_key]
    return df


def cell_verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of an audit table: its keys, accuracy change, flags and verdict."""
    acc = frame[frame.metric == "accuracy"]
    cols = [*CELL_KEYS, "estimate", *[f"keeps_accuracy_{m:g}" for m in NONINFERIORITY_MARGINS], "collapsed", "verdict"]
    return acc[cols].rename(columns={"estimate": "d_accuracy"}).reset_index(drop=True)
