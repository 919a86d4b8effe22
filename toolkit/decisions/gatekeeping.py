"""Serial gatekeeping: primary claims only where accuracy is kept, everything else exploratory.

The seed claim is conditional and directional: pruned models that *keep* accuracy *lose*
faithfulness or calibration. So its tests form one pre-specified primary family, asked only of
cells that pass the gate (non-inferiority of accuracy, not collapsed), with Holm's familywise
control within it. Every other test (a primary claim in a cell that fails the gate, any
two-sided or secondary metric) is exploratory: Benjamini-Hochberg, and labelled so. Holm bounds
the familywise error within the primary family for the cells the gate admits; the gate itself is
a per-cell non-inferiority test of accuracy at alpha, reported beside it, not adjusted across
cells (a strict serial gatekeeper would adjust it too: Dmitrienko, Tamhane & Wiens 2008,
"General multistage gatekeeping procedures", Biometrical Journal 50:667-677,
https://doi.org/10.1002/bimj.200710464).

A test that cannot reject is not run: its smallest attainable p (:func:`smallest_p`) above its
family's first threshold alpha / m is refused, with the reason in the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._core.validation import InputError, InputTypeError, check_choice, check_float
from .exact import smallest_p
from .multiplicity import ADJUSTMENTS, adjust_pvalues

__all__ = [
    "FAMILIES",
    "gated_family",
    "runnable",
]

FAMILIES = ("primary", "exploratory")


def runnable(p_min: np.ndarray, alpha: float) -> np.ndarray:
    """Which tests of one family can reject at all: the largest set S with max p_min(S) <= alpha / |S|.

    Dropping a test that cannot reject makes m smaller and every other threshold larger, so the
    set is found once, from the sorted smallest attainable p values: S = the k smallest for the
    largest k with p_min_(k) <= alpha / k, tests tied at p_min_(k) kept or dropped together.

    Args:
        p_min: smallest attainable p of each test, shape (m,).
        alpha: the family's level.

    Returns:
        bool array, True for the tests kept.
    """
    p_min = np.asarray(p_min, dtype=np.float64)
    order = np.argsort(p_min, kind="stable")
    ps = p_min[order]
    k_best = 0
    for k in range(1, ps.size + 1):
        tie_break = k == ps.size or ps[k] > ps[k - 1]
        if ps[k - 1] <= alpha / k and tie_break:
            k_best = k
    keep = np.zeros(p_min.size, dtype=bool)
    keep[order[:k_best]] = True
    return keep


def _flag(tests: pd.DataFrame, column: str) -> np.ndarray:
    values = tests[column]
    bad = [v for v in values if not isinstance(v, (bool, np.bool_))]
    if bad:
        raise InputError(f"{column}={bad[0]!r}; expected True/False per test")
    return values.to_numpy(dtype=bool)


def gated_family(tests: pd.DataFrame, alpha: float = 0.05, primary: str = "holm",
                 exploratory: str = "bh") -> pd.DataFrame:
    """Split tests into the gated primary family and the exploratory rest; refuse what cannot reject.

    Per row: family = 'primary' if ``primary_claim`` and ``gate`` else 'exploratory'. Within each
    family, p_min = :func:`smallest_p` (test, n, alternative, n_resamples); rows outside
    :func:`runnable` (p_min > alpha / m for the family's m after the refusals) are refused: not
    counted in m, p_adj NaN, never rejected, ``reason`` says why. The rest are adjusted by
    ``primary`` (default Holm) or ``exploratory`` (default BH) over the family's m, and rejected
    when p_adj <= alpha.

    Args:
        tests: one row per test, columns ``p`` (in [0, 1], in the direction of the claim for a
            directional one; NaN = not run), ``primary_claim`` (bool), ``gate`` (bool: the cell keeps
            accuracy and is not collapsed), ``test`` (one of ``SMALLEST_P_TESTS``), ``n`` (pairs);
            optional ``alternative`` (default 'two-sided') and ``n_resamples`` (B, for 'bootstrap'
            and 'permutation'). Other columns are carried through.
        alpha: level of each family, in (0, 1).
        primary, exploratory: adjustments (``'holm'``, ``'bh'`` or ``'none'``).

    Returns:
        A copy of ``tests`` plus ``family``, ``p_min``, ``threshold`` (alpha / m of the family after
        refusals), ``refused`` (bool), ``reason`` ('' or why refused), ``m`` (tests counted in the
        family), ``p_adj``, ``rejected`` (bool), ``method``.
    """
    if not isinstance(tests, pd.DataFrame):
        raise InputTypeError(f"tests is a {type(tests).__name__}; expected a pandas DataFrame with one row per test")
    missing = [c for c in ("p", "primary_claim", "gate", "test", "n") if c not in tests]
    if missing:
        raise InputError(f"tests lacks columns {missing}; expected p, primary_claim, gate, test, n")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    methods = {"primary": check_choice(primary, "primary", ADJUSTMENTS),
               "exploratory": check_choice(exploratory, "exploratory", ADJUSTMENTS)}
    p = pd.to_numeric(tests["p"], errors="raise").to_numpy(dtype=np.float64)
    family = np.where(_flag(tests, "primary_claim") & _flag(tests, "gate"), "primary", "exploratory")
    alt = tests["alternative"] if "alternative" in tests else pd.Series("two-sided", index=tests.index)
    resamples = tests["n_resamples"] if "n_resamples" in tests else pd.Series(np.nan, index=tests.index)
    p_min = np.array([
        smallest_p(t, int(n), a, None if pd.isna(b) else int(b))
        for t, n, a, b in zip(tests["test"], tests["n"], alt, resamples)
    ])
    out = tests.copy()
    out["family"], out["p_min"] = family, p_min
    out["threshold"], out["m"] = np.nan, 0
    out["refused"], out["reason"] = False, ""
    out["p_adj"], out["rejected"], out["method"] = np.nan, False, ""
    for name in FAMILIES:
        rows = np.flatnonzero((family == name) & ~np.isnan(p))
        if rows.size == 0:
            continue
        keep = runnable(p_min[rows], alpha)
        m = int(keep.sum())
        threshold = alpha / m if m else np.nan
        for i in rows[~keep]:
            out.iloc[i, out.columns.get_loc("refused")] = True
            out.iloc[i, out.columns.get_loc("reason")] = (
                f"smallest attainable p {p_min[i]:.3g} > alpha/m = {alpha / max(m, 1):.3g} ({tests['test'].iloc[i]}, "
                f"n={int(tests['n'].iloc[i])}): cannot reject"
            )
        kept = rows[keep]
        adj = adjust_pvalues(p[kept], methods[name]) if m else np.array([])
        col = out.columns.get_loc
        out.iloc[rows, col("threshold")] = threshold
        out.iloc[rows, col("m")] = m
        out.iloc[rows, col("method")] = methods[name]
        out.iloc[kept, col("p_adj")] = adj
        out.iloc[kept, col("rejected")] = adj <= alpha
    return out
