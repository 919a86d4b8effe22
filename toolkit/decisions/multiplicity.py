"""A faithfulness or calibration metric changed: paired tests adjusted for the number of tests.

Holm 1979 (familywise error), or Benjamini & Hochberg 1995 with the Benjamini & Yekutieli 2005
false-coverage-rate intervals; :func:`error_budget` states what a study's m tests can claim.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from .._core.validation import InputError, InputTypeError, check_choice, check_float, check_int

__all__ = [
    "ADJUSTMENTS",
    "ErrorBudget",
    "adjust_pvalues",
    "adjust_tests",
    "error_budget",
]

# ---- 2. multiplicity -----------------------------------------------------------------------------
ADJUSTMENTS = ("holm", "bh", "none")


def adjust_pvalues(p: ArrayLike, method: str = "holm") -> NDArray[np.float64]:
    """p-values adjusted for the m non-NaN tests in ``p`` (NaNs pass through, uncounted).

    With p_(1) <= ... <= p_(m) sorted:

        holm:  p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))    Holm 1979, Scand. J. Stat.
               6:65-70, https://www.jstor.org/stable/4615733 ; familywise error <= alpha under any
               dependence.
        bh:    p~_(i) = min_{j >= i} min(1, m p_(j) / j)          Benjamini & Hochberg 1995,
               JRSS B 57:289-300, https://doi.org/10.1111/j.2517-6161.1995.tb02031.x ; false
               discovery rate <= alpha under independence or positive dependence (PRDS,
               Benjamini & Yekutieli 2001).
        none:  p~ = p.

    Rejecting p~ <= alpha is the procedure at level alpha (as statsmodels' ``multipletests``).

    Args:
        p: 1-D array of p-values in [0, 1]; NaN marks a test that was not run.
        method: ``'holm'``, ``'bh'`` or ``'none'``.

    Returns:
        float64 array of the same shape: adjusted p-values, NaN where ``p`` is NaN.

    Raises:
        InputError: unknown method, not 1-D, or a value outside [0, 1].
    """
    method = check_choice(method, "method", ADJUSTMENTS)
    try:
        p = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("p could not be read as numbers; expected a 1-D array of p-values in [0, 1]") from None
    if p.ndim != 1:
        raise InputError(f"p has shape {p.shape}; expected a 1-D array of p-values in [0, 1]")
    bad = np.flatnonzero(~np.isnan(p) & ((p < 0) | (p > 1)))
    if bad.size:
        raise InputError(f"p[{bad[0]}]={p[bad[0]]}; expected p-values in [0, 1] (or NaN for a test not run)")
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0 or method == "none":
        out[ok] = p[ok]
        return out
    order = np.argsort(p[ok], kind="stable")
    ps = p[ok][order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ps))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ps / rank)[::-1])[::-1]
    out[ok[order]] = adj
    return out


@dataclass(frozen=True)
class ErrorBudget:
    """How many false 'changed' flags a family of m tests allows under the global null.

    Attributes:
        m: number of tests (non-NaN p-values).
        method: 'holm', 'bh' or 'none'.
        alpha: level of the procedure.
        expected_unadjusted: alpha * m, the expected number of false flags if each test ran at
            alpha with no correction (exact by linearity, whatever the dependence).
        bound: the guarantee of ``method`` under the global null (every flag false):
            'none' -> expected false flags = alpha * m; 'holm' -> P(any false flag) <= alpha
            (any dependence); 'bh' -> FDR = P(any false flag) <= alpha (independence or PRDS).
        statement: the above in one line.
    """

    m: int
    method: str
    alpha: float
    expected_unadjusted: float
    bound: float
    statement: str


def error_budget(m: int, method: str = "holm", alpha: float = 0.05) -> ErrorBudget:
    """The false-flag guarantee of ``method`` for m tests at level alpha (see :class:`ErrorBudget`).

    Under the global null each p-value is (super-)uniform, so m unadjusted tests at alpha raise
    alpha * m false flags on average. Holm bounds the familywise error P(V >= 1) <= alpha for any
    dependence (Holm 1979). Under the global null V = R, so BH's FDR = E[V/R; R > 0] equals
    P(V >= 1), which BH bounds by alpha under independence or PRDS (Benjamini & Hochberg 1995;
    Benjamini & Yekutieli 2001, https://doi.org/10.1214/aos/1013699998).

    Args:
        m: number of tests, >= 0.
        method: ``'holm'``, ``'bh'`` or ``'none'``.
        alpha: level in (0, 1).

    Returns:
        :class:`ErrorBudget`.
    """
    m = check_int(m, "m", 0)
    method = check_choice(method, "method", ADJUSTMENTS)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    naive = alpha * m
    if method == "none":
        text = f"m={m} tests at alpha={alpha:g}, unadjusted: {naive:.2f} false flags expected under the global null"
        return ErrorBudget(m, method, alpha, naive, naive, text)
    name = {"holm": "Holm (familywise)", "bh": "Benjamini-Hochberg (FDR)"}[method]
    text = (f"m={m} tests, {name} at alpha={alpha:g}: P(any false flag) <= {alpha:g} under the global null"
            f"{' (independence/PRDS)' if method == 'bh' else ''}; {naive:.2f} expected without correction")
    return ErrorBudget(m, method, alpha, naive, alpha, text)


def _samples_p(s: NDArray[np.float64]) -> float:
    """Two-sided percentile-bootstrap p-value of H0: d = 0 (Davison & Hinkley 1997, eq. 4.11).

    p = min(1, 2 (1 + min(#{s_b <= 0}, #{s_b >= 0})) / (B + 1)); never below 2 / (B + 1).
    """
    b = s.size
    tail = min(int(np.sum(s <= 0)), int(np.sum(s >= 0)))
    return min(1.0, 2.0 * (1 + tail) / (b + 1))


def _numeric_column(tests: pd.DataFrame, name: str) -> NDArray[np.float64]:
    """A column as float64 (all NaN when absent), naming the first value that is not a number."""
    if name not in tests:
        return np.full(len(tests), np.nan)
    values = pd.to_numeric(tests[name], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & tests[name].notna().to_numpy())
    if bad.size:
        raise InputError(f"{name}={tests[name].iloc[bad[0]]!r} in row {bad[0]}; expected a number (or NaN)")
    return values


def adjust_tests(tests: pd.DataFrame, method: str = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """Paired "did it change?" tests, p-values and CIs adjusted for the m tests in the table.

    One row per test of H0: d = 0 for a paired difference d (pruned - reference). Per row, from
    a standard error (normal, or t with ``df``) or from bootstrap replicates of d:

        se:       p = 2 P(Z > |d^| / se);   CI = d^ +- q_{1 - g/2} se
        samples:  p = min(1, 2 (1 + min(#{s <= 0}, #{s >= 0})) / (B + 1));
                  CI = [quantile(s, g/2), quantile(s, 1 - g/2)]   (percentile, Efron & Tibshirani)

    then p_adj = :func:`adjust_pvalues` (p, method) and changed = p_adj <= alpha. The CI level
    1 - g is adjusted to match the claim:

        none:  g = alpha
        holm:  g = alpha / m  (Bonferroni simultaneous intervals: all m cover at once with
               probability >= 1 - alpha). Conservative companions of Holm: a row that Holm
               rejects at a later step can have an interval that touches 0; ``changed`` is the
               Holm decision.
        bh:    g = R alpha / m with R = the number BH rejects (max(R, 1)): Benjamini & Yekutieli
               2005 false-coverage-rate intervals, JASA 100:71-81,
               https://doi.org/10.1198/016214504000001907 ; for the R selected rows the expected
               share of non-covering intervals is <= alpha. With ``se`` rows a BH-selected row's
               interval excludes 0.

    Percentile-bootstrap p-values cannot go below 2 / (B + 1): with B replicates a row can only
    pass Holm/BH's first step if 2 / (B + 1) <= alpha / m, i.e. B >= 2m / alpha - 1 (2519 for
    m = 63 at alpha = 0.05). A UserWarning says so when B is smaller.

    Args:
        tests: one row per test with column ``estimate`` (d^) and, per row, either ``se`` (> 0)
            or ``samples`` (1-D array of bootstrap replicates of d); where both are given
            ``samples`` is used. Optional ``df`` (> 0; NaN/missing = normal). Other columns (model,
            dataset, selection, k, metric, ...) are carried through unchanged. A row whose
            estimate/se is NaN is a test not run: p, p_adj, CI are NaN, changed is False, and it
            does not count in m.
        method: ``'holm'`` (default), ``'bh'`` or ``'none'``.
        alpha: level in (0, 1).

    Returns:
        A copy of ``tests`` (same index) plus columns: ``p`` (unadjusted two-sided), ``p_adj``,
        ``ci_low``, ``ci_high`` (adjusted interval), ``ci_level`` (its marginal level 1 - g),
        ``changed`` (bool, p_adj <= alpha), ``m`` (tests counted), ``method``, ``alpha``.
        ``attrs['budget']`` holds the :class:`ErrorBudget` (m, expected false flags, statement).

    Raises:
        InputError: not a DataFrame, no ``estimate`` column, a row with neither se nor samples,
            se <= 0, df <= 0, empty or non-finite samples, unknown method, alpha outside (0, 1).
    """
    method = check_choice(method, "method", ADJUSTMENTS)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    if not isinstance(tests, pd.DataFrame):
        raise InputTypeError(f"tests is a {type(tests).__name__}; expected a pandas DataFrame with one row per test")
    if "estimate" not in tests:
        raise InputError(f"tests has columns {list(tests.columns)}; expected 'estimate' and 'se' or 'samples'")
    if "se" not in tests and "samples" not in tests:
        raise InputError(f"tests has columns {list(tests.columns)}; expected 'se' or 'samples' beside 'estimate'")
    n_rows = len(tests)
    est, se, df = (_numeric_column(tests, c) for c in ("estimate", "se", "df"))
    samples: list[NDArray[np.float64] | None] = [None] * n_rows
    if "samples" in tests:
        for i, s in enumerate(tests["samples"]):
            if s is None or (np.ndim(s) == 0 and pd.isna(s)):
                continue
            arr = np.asarray(s, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise InputError(f"samples of row {i} has shape {arr.shape} (or non-finite values); "
                                 "expected a non-empty 1-D array of finite bootstrap replicates")
            samples[i] = arr
    p = np.full(n_rows, np.nan)
    for i in range(n_rows):
        if samples[i] is not None:
            if np.isnan(est[i]):
                raise InputError(f"estimate of row {i} is NaN but samples are given; expected a finite estimate")
            p[i] = _samples_p(samples[i])
            continue
        if np.isnan(est[i]) or np.isnan(se[i]):
            if "se" not in tests:
                raise InputError(f"row {i} has no samples and tests has no 'se' column; give one of them per row")
            continue  # a test not run
        if not se[i] > 0 or not np.isfinite(se[i]):
            raise InputError(f"se={float(se[i])!r} in row {i}; expected a finite float > 0 (or NaN for a test not run)")
        if not np.isnan(df[i]) and not df[i] > 0:
            raise InputError(f"df={float(df[i])!r} in row {i}; expected a float > 0 (or NaN for the normal reference)")
        z = abs(est[i]) / se[i]
        p[i] = float(2.0 * (stats.norm.sf(z) if np.isnan(df[i]) else stats.t.sf(z, df[i])))
    p_adj = adjust_pvalues(p, method)
    m = int(np.sum(~np.isnan(p)))
    changed = ~np.isnan(p_adj) & (p_adj <= alpha)
    if method == "none":
        g = alpha
    elif method == "holm":
        g = alpha / max(m, 1)
    else:
        g = max(int(changed.sum()), 1) * alpha / max(m, 1)
    b_min = [s.size for s in samples if s is not None]
    if b_min and method != "none" and 2.0 / (min(b_min) + 1) > alpha / max(m, 1):
        warnings.warn(
            f"B={min(b_min)} bootstrap replicates give p-values >= {2.0 / (min(b_min) + 1):.2g} > alpha/m = "
            f"{alpha / max(m, 1):.2g}: those rows cannot be flagged; use B >= {math.ceil(2 * max(m, 1) / alpha - 1)}",
            UserWarning, stacklevel=2,
        )
    low, high = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    for i in range(n_rows):
        if np.isnan(p[i]):
            continue
        if samples[i] is not None:
            low[i], high[i] = np.quantile(samples[i], [g / 2.0, 1.0 - g / 2.0])
        else:
            q = float(stats.norm.ppf(1.0 - g / 2.0) if np.isnan(df[i]) else stats.t.ppf(1.0 - g / 2.0, df[i]))
            low[i], high[i] = est[i] - q * se[i], est[i] + q * se[i]
    out = tests.copy()
    out["p"], out["p_adj"], out["ci_low"], out["ci_high"] = p, p_adj, low, high
    out["ci_level"] = np.where(np.isnan(p), np.nan, 1.0 - g)
    out["changed"] = changed
    out["m"], out["method"], out["alpha"] = m, method, alpha
    out.attrs["budget"] = error_budget(m, method, alpha)
    return out
