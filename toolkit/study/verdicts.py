"""One verdict per pruned cell, and their counts: what a multi-model, multi-dataset study concluded.

A verdict reads a :class:`~toolkit.study.Summary` row (whose tests are already decided: the
non-inferiority gate for "keeps accuracy", the collapse rules, the one-sided "degrades" tests in
their gated families) and says it in words: whether accuracy was kept, whether the model
collapsed, which claims were shown to degrade and in which family (primary: the cell keeps
accuracy; exploratory: otherwise), and whether the cell is misaligned (keeps accuracy while a
primary claim degrades: the seed claim). Counting verdicts over models, datasets, selections and
metrics describes how far a claim replicates; the heatmap (:func:`toolkit.study.plots.verdict_heatmap`)
shows every verdict at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..decisions import NONINFERIORITY_MARGINS
from .._core.validation import InputError, InputTypeError, as_bool

__all__ = ["OUTCOMES", "verdict_counts", "verdicts"]

OUTCOMES = (
    "keeps accuracy, no degradation shown",
    "keeps accuracy, a claim degrades (misaligned)",
    "not shown to keep accuracy",
    "collapsed",
)
"""The four outcomes of a pruned cell, in the order the heatmap colours them."""


def verdicts(summary) -> pd.DataFrame:
    """One row per pruned cell of ``summary``: its tests in words.

    Args:
        summary: the :class:`toolkit.study.Summary` of a study with pruned cells.

    Returns:
        DataFrame with the summary's key columns (model, dataset, selection, [level,] k, layers),
        then d_accuracy, ni_low, keeps_accuracy (at the study's margin), keeps_accuracy_0.02 /
        _0.05 / _0.1 (bool: the one-sided (1 - alpha) bound ``ni_low`` above -margin; a gain never
        fails it), collapsed, one ``<claim>`` column per change claim holding ``"worse"`` (shown to
        degrade in the primary family), ``"worse?"`` (in the exploratory family) or ``""``,
        degraded (the claims shown worse, e.g. ``"ECE worse"``), misaligned (bool) and outcome
        (one of :data:`OUTCOMES`).
    """
    if not (hasattr(summary, "claim_columns") and isinstance(getattr(summary, "table", None), pd.DataFrame)):
        raise InputTypeError(f"summary must be the Summary toolkit.study.summary returns, got {type(summary).__name__}")
    table = summary.table
    pruned = table[table.k > 0].reset_index(drop=True)
    if pruned.empty:
        raise InputError("the summary has no pruned cell (k > 0): nothing to give a verdict on")
    keys = [c for c in ("model", "dataset", "selection", "level", "k", "shots", "layers") if c in pruned]
    claims = summary.claim_columns()
    premise = next(c for c in claims if c.metric.test == "noninferiority")
    out = pruned[keys].copy()
    out["d_accuracy"] = pruned[premise.delta]
    out["ni_low"] = pruned[premise.low]
    out["keeps_accuracy"] = as_bool(pruned[premise.shown])
    for margin in NONINFERIORITY_MARGINS:  # the one-sided (1 - alpha) bound above -margin
        out[f"keeps_accuracy_{margin:g}"] = (pruned[premise.low] > -margin).fillna(False).astype(bool)
    out["collapsed"] = as_bool(pruned["collapsed"])
    gated = out["keeps_accuracy"] & ~out["collapsed"]
    names = []
    for claim in claims:
        if claim is premise:
            continue
        worse = as_bool(pruned[claim.shown])
        out[claim.metric.name] = np.where(worse, np.where(gated, "worse", "worse?"), "")
        names.append((claim.metric.name, claim.metric.label))
    out["degraded"] = [", ".join(f"{label} {row[name]}" for name, label in names if row[name])
                       for _, row in out.iterrows()]
    out["misaligned"] = as_bool(pruned["misaligned"])
    out["outcome"] = np.select(
        [out.collapsed, ~out.keeps_accuracy, out.misaligned],
        [OUTCOMES[3], OUTCOMES[2], OUTCOMES[1]], default=OUTCOMES[0],
    )
    return out


def verdict_counts(verdicts: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Counts of the verdicts per group: cells, keeps accuracy, collapsed, misaligned, per claim worse.

    Args:
        verdicts: the table :func:`verdicts` returns.
        by: the column(s) to group by, e.g. ``"model"`` or ``["model", "dataset"]``.

    Returns:
        One row per group: the ``by`` columns, cells, keeps accuracy (at the study's margin),
        ``keeps accuracy <margin>`` per non-inferiority margin, collapsed, misaligned, and
        ``<claim> worse`` (primary family) / ``<claim> worse?`` (exploratory) for each change claim.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in verdicts]
    if missing:
        raise InputError(f"verdicts has no column(s) {missing}; group by some of {list(verdicts.columns)}")
    plain = {"model", "dataset", "selection", "level", "k", "shots", "layers", "degraded", "outcome", *by}
    claims = [c for c in verdicts.columns if c not in plain and verdicts[c].isin(["worse", "worse?", ""]).all()]
    rows = []
    for key, group in verdicts.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key)) | {"cells": len(group), "keeps accuracy": int(group.keeps_accuracy.sum())}
        row |= {f"keeps accuracy {m:g}": int(group[f"keeps_accuracy_{m:g}"].sum())
                for m in NONINFERIORITY_MARGINS if f"keeps_accuracy_{m:g}" in group}
        row["collapsed"] = int(group.collapsed.sum())
        row["misaligned"] = int(group.misaligned.sum())
        for c in claims:
            row[f"{c} worse"] = int((group[c] == "worse").sum())
            row[f"{c} worse?"] = int((group[c] == "worse?").sum())
        rows.append(row)
    return pd.DataFrame(rows)
