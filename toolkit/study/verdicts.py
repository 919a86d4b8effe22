"""One verdict per pruned cell, and their counts: what a multi-model, multi-dataset study concluded.

A verdict reads a :class:`~toolkit.study.Summary` row (whose tests are already sized: the paired
TOST for "accuracy holds", the change tests adjusted for every change test of the study) and says
it in words: whether accuracy was shown equivalent, which change claims moved and in which
direction, and whether the cell is misaligned (accuracy shown equivalent while a calibration or
faithfulness metric was shown to change). Counting verdicts over models, datasets, selections and
metrics describes how far a claim replicates; the heatmap (:func:`toolkit.plots.verdict_heatmap`)
shows every verdict at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..decisions import NONINFERIORITY_MARGINS
from ..validation import InputError, InputTypeError

__all__ = ["OUTCOMES", "verdict_counts", "verdicts"]

OUTCOMES = (
    "equivalent, nothing moved",
    "equivalent, a metric moved (misaligned)",
    "not shown equivalent, a metric moved",
    "not shown equivalent, nothing moved",
)
"""The four outcomes of a pruned cell, in the order the heatmap colours them."""


def verdicts(summary) -> pd.DataFrame:
    """One row per pruned cell of ``summary``: its tests in words.

    Args:
        summary: the :class:`toolkit.study.Summary` of a study with pruned cells.

    Returns:
        DataFrame with the summary's key columns (model, dataset, selection, [level,] k, layers),
        then equivalent (bool, two-sided TOST), d_accuracy, keeps_accuracy_0.02 / _0.05 / _0.1
        (bool: non-inferiority at that margin, the TOST interval's lower limit above -margin,
        which is the one-sided (1 - alpha) bound; a gain never fails it), one ``<claim>`` column per change claim holding
        ``"up"``, ``"down"`` or ``""`` (not shown to change; the direction is the sign of the
        paired difference, pruned minus unpruned), moved (the claims that moved, e.g.
        ``"ECE down, Brier down"``), misaligned (bool) and outcome (one of :data:`OUTCOMES`).
    """
    if not (hasattr(summary, "claim_columns") and isinstance(getattr(summary, "table", None), pd.DataFrame)):
        raise InputTypeError(f"summary must be the Summary toolkit.study.summary returns, got {type(summary).__name__}")
    table = summary.table
    pruned = table[table.k > 0].reset_index(drop=True)
    if pruned.empty:
        raise InputError("the summary has no pruned cell (k > 0): nothing to give a verdict on")
    keys = [c for c in ("model", "dataset", "selection", "level", "k", "layers") if c in pruned]
    claims = summary.claim_columns()
    equivalence = next(c for c in claims if c.metric.test == "tost")
    out = pruned[keys].copy()
    out["equivalent"] = pruned[equivalence.shown].fillna(False).astype(bool)
    out["d_accuracy"] = pruned[equivalence.delta]
    for margin in NONINFERIORITY_MARGINS:  # the TOST's lower limit is the one-sided (1 - alpha) bound
        out[f"keeps_accuracy_{margin:g}"] = (pruned[equivalence.low] > -margin).fillna(False).astype(bool)
    names = []
    for claim in claims:
        if claim.metric.test == "tost":
            continue
        changed = pruned[claim.shown].fillna(False).astype(bool)
        direction = np.where(pruned[claim.delta] > 0, "up", "down")
        out[claim.metric.name] = np.where(changed, direction, "")
        names.append((claim.metric.name, claim.metric.label))
    out["moved"] = [", ".join(f"{label} {row[name]}" for name, label in names if row[name]) for _, row in out.iterrows()]
    out["misaligned"] = pruned["misaligned"].astype(bool)
    moved = out["moved"] != ""
    out["outcome"] = np.select(
        [out.equivalent & ~moved, out.equivalent & moved, ~out.equivalent & moved],
        list(OUTCOMES[:3]), default=OUTCOMES[3],
    )
    return out


def verdict_counts(verdicts: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Counts of the verdicts per group: cells, equivalent, misaligned, and per change claim up / down.

    Args:
        verdicts: the table :func:`verdicts` returns.
        by: the column(s) to group by, e.g. ``"model"`` or ``["model", "dataset"]``.

    Returns:
        One row per group: the ``by`` columns, cells, equivalent, ``keeps accuracy <margin>`` per
        non-inferiority margin, misaligned, and ``<claim> up`` /
        ``<claim> down`` for each change claim.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in verdicts]
    if missing:
        raise InputError(f"verdicts has no column(s) {missing}; group by some of {list(verdicts.columns)}")
    plain = {"model", "dataset", "selection", "level", "k", "layers", "moved", "outcome", *by}
    claims = [c for c in verdicts.columns if c not in plain and verdicts[c].isin(["up", "down", ""]).all()]
    rows = []
    for key, group in verdicts.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key)) | {"cells": len(group), "equivalent": int(group.equivalent.sum())}
        row |= {f"keeps accuracy {m:g}": int(group[f"keeps_accuracy_{m:g}"].sum())
                for m in NONINFERIORITY_MARGINS if f"keeps_accuracy_{m:g}" in group}
        row["misaligned"] = int(group.misaligned.sum())
        for c in claims:
            row[f"{c} up"] = int((group[c] == "up").sum())
            row[f"{c} down"] = int((group[c] == "down").sum())
        rows.append(row)
    return pd.DataFrame(rows)
