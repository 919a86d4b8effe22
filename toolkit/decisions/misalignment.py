"""Misaligned: accuracy shown equivalent and at least one other metric shown changed, per cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._core.validation import InputError, InputTypeError
from .multiplicity import error_budget

__all__ = [
    "VERDICTS",
    "Misalignment",
    "misalignment",
]

# ---- 3. the misalignment verdict ---------------------------------------------------------------
VERDICTS = ("misaligned", "equivalent, no change shown", "accuracy not shown equivalent")


@dataclass(frozen=True)
class Misalignment:
    """Per-cell verdicts and the sizes of the tests behind them.

    Attributes:
        table: one row per cell; columns: the key columns, ``accuracy_equivalent`` (bool),
            ``changed_metrics`` (the metrics shown changed, ", "-joined, "" for none),
            ``n_changed``, ``misaligned`` (bool), ``verdict`` (one of ``VERDICTS``).
        statement: one line with margin, alpha, number of cells, m, correction and the expected
            false flags.
    """

    table: pd.DataFrame
    statement: str


def _keys(frame: pd.DataFrame, on: list[str]) -> list[tuple]:
    """Cell keys as tuples of plain Python values (readable in messages, hashable for lookups)."""
    return [tuple(row) for row in frame[on].astype(object).to_numpy().tolist()]


def _single(frame: pd.DataFrame, column: str, what: str) -> object:
    values = frame[column].dropna().unique()
    if len(values) != 1:
        raise InputError(f"{what} has {column} values {sorted(map(str, values))}; expected one value for the whole study")
    return values[0]


def misalignment(equivalence: pd.DataFrame, changes: pd.DataFrame, on: Sequence[str]) -> Misalignment:
    """Cells where accuracy is *shown* equivalent and another metric is *shown* changed.

    misaligned(cell) = equivalent(accuracy; TOST at margin, alpha)  AND  OR_metric changed(metric)

    Both halves are claims with a stated size: the TOST rejects "|d_acc| >= margin" at alpha
    (per cell, not adjusted across cells), ``changed`` rejects "d_metric = 0" under the study-wide
    correction of :func:`adjust_tests`. A cell whose accuracy is not shown equivalent is never
    misaligned, however much else moves ("accuracy not shown equivalent" is not "accuracy changed").
    The verdict is an intersection-union test (Berger 1982, Technometrics 24:295-300,
    https://doi.org/10.1080/00401706.1982.10487790): its null "not equivalent OR nothing changed"
    is rejected only when both component nulls are, so a false "misaligned" in a cell has
    probability at most the larger of the two sizes (alpha of the TOST; for the changes, the
    familywise alpha under Holm, alpha under the global null for BH).

    Args:
        equivalence: one row per pruned cell with the ``on`` columns and ``equivalent`` (bool),
            ``margin``, ``alpha`` (e.g. ``pd.DataFrame([{**keys, **dataclasses.asdict(accuracy_tost(...))}])``).
        changes: the output of :func:`adjust_tests` for the faithfulness/calibration tests, with
            the ``on`` columns, ``metric``, ``changed``, ``m``, ``method``, ``alpha``.
        on: the columns naming a cell (e.g. ``["model", "dataset", "selection", "k"]``).

    Returns:
        :class:`Misalignment` (table in the order of ``equivalence``, and the statement).

    Raises:
        InputError: missing columns, duplicate cells in ``equivalence``, cells in ``changes`` with
            no equivalence row, several margins/alphas/methods in one study.
    """
    for frame, what, need in ((equivalence, "equivalence", ("equivalent", "margin", "alpha")),
                              (changes, "changes", ("metric", "changed", "m", "method", "alpha"))):
        if not isinstance(frame, pd.DataFrame):
            raise InputTypeError(f"{what} is a {type(frame).__name__}; expected a pandas DataFrame")
        missing = [c for c in (*on, *need) if c not in frame]
        if missing:
            raise InputError(f"{what} lacks column(s) {missing}; expected {list(on) + list(need)}")
    on = list(on)
    if not on:
        raise InputError("on=[]; expected the column names that identify a cell")
    dup = equivalence.duplicated(on)
    if dup.any():
        raise InputError(f"equivalence has several rows for cell {_keys(equivalence[dup], on)[0]}; expected one per cell")
    keys = set(_keys(equivalence, on))
    orphans = [k for k in _keys(changes, on) if k not in keys]
    if orphans:
        raise InputError(f"changes has cell {orphans[0]} with no row in equivalence; give its accuracy TOST")
    margin, tost_alpha = float(_single(equivalence, "margin", "equivalence")), float(_single(equivalence, "alpha", "equivalence"))
    if len(changes):
        m, method, alpha = int(_single(changes, "m", "changes")), str(_single(changes, "method", "changes")), float(_single(changes, "alpha", "changes"))
    else:
        m, method, alpha = 0, "none", tost_alpha
    flagged: dict[tuple, list[str]] = {}
    for key, metric, changed in zip(_keys(changes, on), changes["metric"], changes["changed"]):
        if changed:
            flagged.setdefault(key, []).append(str(metric))
    table = equivalence[on].copy().reset_index(drop=True)
    table["accuracy_equivalent"] = equivalence["equivalent"].astype(bool).to_numpy()
    table["changed_metrics"] = [", ".join(sorted(flagged.get(k, []))) for k in _keys(table, on)]
    table["n_changed"] = [len(s.split(", ")) if s else 0 for s in table["changed_metrics"]]
    table["misaligned"] = table["accuracy_equivalent"] & (table["n_changed"] > 0)
    table["verdict"] = np.where(table["misaligned"], VERDICTS[0],
                                np.where(table["accuracy_equivalent"], VERDICTS[1], VERDICTS[2]))
    budget = error_budget(m, method, alpha)
    n_cells = len(table)
    statement = (
        f"misaligned = accuracy equivalent by paired TOST within +-{margin:g} (alpha={tost_alpha:g} per cell, "
        f"{n_cells} cells, not adjusted across cells) and >= 1 metric changed ({budget.statement}): "
        f"{int(table['misaligned'].sum())} of {n_cells} cells misaligned"
    )
    return Misalignment(table=table, statement=statement)
