"""Decisions a pruning study can claim, each as a test with a stated size.

Three kinds of claim, all about paired differences against the unpruned model on the same
examples (d = metric(pruned) - metric(reference)):

- *Accuracy holds*: paired equivalence by two one-sided tests (TOST, Schuirmann 1987) within a
  margin; "the CI of d contains 0" is absence of evidence, TOST is evidence of absence.
- *A faithfulness or calibration metric changed*: paired tests whose p-values and CIs are adjusted
  for the number of tests in the study (Holm 1979, or Benjamini & Hochberg 1995 with the
  Benjamini & Yekutieli 2005 false-coverage-rate intervals).
- *Misaligned*: accuracy shown equivalent and at least one other metric shown changed.

Plus power: the smallest paired difference a design can detect, and the n a target needs.

Everything is numpy/scipy on per-example vectors or per-test tables; nothing here runs a model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

__all__ = [
    "ACCURACY_METHODS",
    "ADJUSTMENTS",
    "Equivalence",
    "ErrorBudget",
    "Misalignment",
    "POWER_METHODS",
    "VERDICTS",
    "accuracy_tost",
    "adjust_pvalues",
    "adjust_tests",
    "ci_halfwidth",
    "error_budget",
    "mde_accuracy",
    "mde_paired",
    "misalignment",
    "n_for_accuracy",
    "n_for_accuracy_equivalence",
    "n_for_halfwidth",
    "paired_tost",
    "power_table",
]

ACCURACY_METHODS = ("score", "wald", "t")


# ---- input checks (the public boundary names the bad value and what is allowed) ---------------
def _check_float(value: object, name: str, low: float, high: float, *, closed: str = "neither") -> float:
    """A real number in (low, high); `closed` in {'neither', 'low', 'high', 'both'} adds endpoints."""
    lo_ok = {"neither": False, "low": True, "high": False, "both": True}[closed]
    hi_ok = {"neither": False, "low": False, "high": True, "both": True}[closed]
    allowed = f"{'[' if lo_ok else '('}{low:g}, {high:g}{']' if hi_ok else ')'}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}={value!r}; expected a float in {allowed}")
    v = float(value)  # NaN fails both comparisons below
    above = v > low or (lo_ok and v == low)
    below = v < high or (hi_ok and v == high)
    if not (above and below):
        raise ValueError(f"{name}={value!r}; expected a float in {allowed}")
    return v


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")
    return int(value)


def _check_choice(value: object, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {list(allowed)}")
    return value


def _check_alpha(alpha: object, *, tost: bool = False) -> float:
    # A TOST at alpha reads a (1 - 2 alpha) interval, which needs alpha < 0.5.
    return _check_float(alpha, "alpha", 0.0, 0.5 if tost else 1.0)


def _check_paired(a: ArrayLike, b: ArrayLike, names: tuple[str, str], *, binary: bool = False) -> tuple[NDArray, NDArray]:
    out = []
    for x, name in zip((a, b), names):
        try:
            v = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} could not be read as numbers; expected a 1-D array of per-example values") from None
        if v.ndim != 1:
            raise ValueError(f"{name} has shape {v.shape}; expected a 1-D array of per-example values")
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}]={v[bad[0]]}; expected finite values (drop unpaired examples first)")
        if binary:
            bad = np.flatnonzero((v != 0) & (v != 1))
            if bad.size:
                raise ValueError(f"{name}[{bad[0]}]={v[bad[0]]}; expected 0/1 (or bool) correctness per example")
        out.append(v)
    if out[0].shape != out[1].shape:
        raise ValueError(
            f"{names[0]} has n={out[0].size} examples but {names[1]} has n={out[1].size}; a paired test needs the same examples"
        )
    return out[0], out[1]


# ---- 1. equivalence ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Equivalence:
    """A paired TOST: is d = mean(b) - mean(a) inside (-margin, +margin)?

    Attributes:
        estimate: d^, the paired difference (pruned - reference).
        low, high: the (1 - 2 alpha) confidence interval of d.
        p_lower: p-value of H0: d <= -margin against d > -margin.
        p_upper: p-value of H0: d >= +margin against d < +margin.
        p: max(p_lower, p_upper), the TOST p-value.
        equivalent: p < alpha, i.e. the (1 - 2 alpha) CI lies inside (-margin, +margin).
        margin: the equivalence margin delta > 0.
        alpha: the size of the TOST (each one-sided test is at level alpha).
        n: number of paired examples.
        method: how the CI and p-values were computed ('t', 'wald' or 'score').
    """

    estimate: float
    low: float
    high: float
    p_lower: float
    p_upper: float
    p: float
    equivalent: bool
    margin: float
    alpha: float
    n: int
    method: str


def _tost_from_normal(est: float, se: float, margin: float, alpha: float, n: int, method: str,
                      df: float | None = None) -> Equivalence:
    """TOST from an estimate and its standard error: t(df) reference when df is given, else normal."""
    dist = stats.t(df) if df is not None else stats.norm()
    q = float(dist.ppf(1.0 - alpha))
    if se > 0:
        p_lower = float(dist.sf((est + margin) / se))
        p_upper = float(dist.cdf((est - margin) / se))
    else:  # no spread at all: the interval is the point, each one-sided test is decided by it
        p_lower = 0.0 if est > -margin else 1.0
        p_upper = 0.0 if est < margin else 1.0
    p = max(p_lower, p_upper)
    return Equivalence(estimate=float(est), low=float(est - q * se), high=float(est + q * se), p_lower=p_lower,
                       p_upper=p_upper, p=p, equivalent=bool(p < alpha), margin=float(margin),
                       alpha=float(alpha), n=int(n), method=method)


def paired_tost(a: ArrayLike, b: ArrayLike, margin: float, alpha: float = 0.05) -> Equivalence:
    """Paired two one-sided t-tests (TOST) for equivalence of means within +-margin.

    With d_i = b_i - a_i, d^ = mean(d), s = sd(d) (ddof=1), se = s / sqrt(n), df = n - 1:

        p_lower = P(T_df > (d^ + margin) / se)      H0: d <= -margin
        p_upper = P(T_df < (d^ - margin) / se)      H0: d >= +margin
        p = max(p_lower, p_upper);  equivalent  <=>  p < alpha
                                    <=>  d^ +- t_{1-alpha, df} se  lies inside (-margin, +margin)

    Schuirmann 1987, "A comparison of the two one-sided tests procedure and the power approach for
    assessing the equivalence of average bioavailability", J. Pharmacokinet. Biopharm. 15:657-680,
    https://doi.org/10.1007/BF01068419 . Same numbers as statsmodels'
    ``ttost_paired(b, a, -margin, margin)``. When all d_i are equal (se = 0) the CI is the point d^.

    Args:
        a: per-example values of the reference (unpruned) model, shape (n,), finite.
        b: per-example values of the pruned model on the same examples, shape (n,).
        margin: delta > 0; equivalence means |d| < delta.
        alpha: size of the TOST, in (0, 0.5); the matching interval has level 1 - 2 alpha.

    Returns:
        :class:`Equivalence` with method 't'.

    Raises:
        ValueError: non-1-D, non-finite or unequal-length inputs, n < 2, margin <= 0, alpha
            outside (0, 0.5).
    """
    margin = _check_float(margin, "margin", 0.0, math.inf)
    alpha = _check_alpha(alpha, tost=True)
    a, b = _check_paired(a, b, ("a", "b"))
    if a.size < 2:
        raise ValueError(f"n={a.size} paired examples; a paired t-test needs n >= 2")
    d = b - a
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    return _tost_from_normal(float(d.mean()), se, margin, alpha, d.size, "t", df=d.size - 1)


def _rmle_loss(g: float, l: float, n: float, d0: float) -> float:
    """Restricted MLE of p_l = P(loss) in a paired 2x2 table under H0: p_g - p_l = d0.

    Maximises g log(p_l + d0) + l log(p_l) + (n - g - l) log(1 - 2 p_l - d0); the score equation
    is the quadratic A p^2 + B p + C = 0 with A = 2n, B = -g - l + (2n - g + l) d0,
    C = -l d0 (1 - d0), whose admissible root is p~_l = (sqrt(B^2 - 4AC) - B) / (2A)
    (Tango 1998, eq. 3, with his (b, c) = our (gains, losses)).
    """
    a_ = 2.0 * n
    b_ = -g - l + (2.0 * n - g + l) * d0
    c_ = -l * d0 * (1.0 - d0)
    disc = max(b_ * b_ - 4.0 * a_ * c_, 0.0)  # >= 0 in exact arithmetic
    return max((math.sqrt(disc) - b_) / (2.0 * a_), 0.0, -d0)


def _score_stat(g: float, l: float, n: float, d0: float) -> float:
    """Tango's score statistic T(d0) = (g - l - n d0) / sqrt(n (2 p~_l + d0 (1 - d0))).

    Decreasing in d0; T(0) is McNemar's z = (g - l) / sqrt(g + l). 0/0 (the estimate sits on d0
    with no variance left) reads as 0.
    """
    num = g - l - n * d0
    var = n * (2.0 * _rmle_loss(g, l, n, d0) + d0 * (1.0 - d0))
    if var <= 0.0:
        return 0.0 if num == 0.0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def _score_limit(g: float, l: float, n: float, z: float, side: str) -> float:
    """The d0 where T(d0) = +z (lower limit) or -z (upper limit), on [-1, 1]."""
    target = z if side == "low" else -z
    eps = 1e-12
    lo, hi = -1.0 + eps, 1.0 - eps
    f_lo, f_hi = _score_stat(g, l, n, lo) - target, _score_stat(g, l, n, hi) - target
    if f_lo <= 0.0:
        return -1.0
    if f_hi >= 0.0:
        return 1.0
    return float(optimize.brentq(lambda d0: _score_stat(g, l, n, d0) - target, lo, hi, xtol=1e-12, rtol=1e-12))


def _score_tost(g: int, l: int, n: int, margin: float, alpha: float) -> Equivalence:
    z = float(stats.norm.ppf(1.0 - alpha))
    p_lower = float(stats.norm.sf(_score_stat(g, l, n, -margin)))
    p_upper = float(stats.norm.cdf(_score_stat(g, l, n, margin)))
    p = max(p_lower, p_upper)
    return Equivalence(estimate=(g - l) / n, low=_score_limit(g, l, n, z, "low"), high=_score_limit(g, l, n, z, "high"),
                       p_lower=p_lower, p_upper=p_upper, p=p, equivalent=bool(p < alpha), margin=float(margin),
                       alpha=float(alpha), n=int(n), method="score")


def accuracy_tost(
    correct_ref: ArrayLike,
    correct_pruned: ArrayLike,
    margin: float = 0.05,
    alpha: float = 0.05,
    method: str = "score",
) -> Equivalence:
    """Paired equivalence of two accuracies on the same n examples (TOST within +-margin).

    Per example, correctness (x_i, y_i) in {0,1}^2 for (reference, pruned). g = #{x=0, y=1}
    (gains), l = #{x=1, y=0} (losses); d^ = acc_pruned - acc_ref = (g - l) / n and the
    discordance rate psi^ = (g + l) / n. H0: |d| >= margin, H1: |d| < margin; two one-sided tests
    at level alpha, equivalent <=> p = max(p_lower, p_upper) < alpha <=> the (1 - 2 alpha) CI lies
    inside (-margin, +margin).

    Methods:

    - ``'score'`` (default): Tango's score statistic with the variance at the restricted MLE
      under each null, T(d0) = (g - l - n d0) / sqrt(n (2 p~_l + d0 (1 - d0))); p_lower =
      1 - Phi(T(-margin)), p_upper = Phi(T(+margin)); CI = {d0 : |T(d0)| <= z_{1-alpha}}.
      Tango 1998, "Equivalence test and confidence interval for the difference in proportions
      for the paired-sample design", Stat. Med. 17:891-908,
      https://doi.org/10.1002/(SICI)1097-0258(19980430)17:8%3C891::AID-SIM780%3E3.0.CO;2-B ;
      the RMLE test that Liu et al. 2002 (Stat. Med. 21:231-245,
      https://doi.org/10.1002/sim.1012) recommend over the Wald test. Stays honest when few
      examples flip: with g = l = 0 the upper limit is z^2 / (n + z^2), not 0.
    - ``'wald'``: the Wald test of Liu et al. 2002 with the unrestricted variance
      var^(d^) = (psi^ - d^^2) / n and normal quantiles. Degenerates to the point d^ when no
      example flips (g = l = 0 gives a zero-width CI: "equivalent" at any n).
    - ``'t'``: the paired t-test on the 0/1 differences (:func:`paired_tost`), i.e. the Wald
      statistic with variance (psi^ - d^^2) / (n - 1) and t_{n-1} quantiles; same degeneracy.

    Args:
        correct_ref: per-example correctness of the unpruned model, shape (n,), 0/1 or bool.
        correct_pruned: per-example correctness of the pruned model on the same examples.
        margin: equivalence margin delta in (0, 1) on the accuracy scale (0.05 = 5 points).
        alpha: size of the TOST, in (0, 0.5).
        method: ``'score'``, ``'wald'`` or ``'t'``.

    Returns:
        :class:`Equivalence` of acc_pruned - acc_ref.

    Raises:
        ValueError: inputs not 0/1, of unequal length or empty (n < 2 for 't'), margin outside
            (0, 1), alpha outside (0, 0.5), unknown method.
    """
    margin = _check_float(margin, "margin", 0.0, 1.0)
    alpha = _check_alpha(alpha, tost=True)
    method = _check_choice(method, "method", ACCURACY_METHODS)
    x, y = _check_paired(correct_ref, correct_pruned, ("correct_ref", "correct_pruned"), binary=True)
    n = x.size
    if n < 1:
        raise ValueError("correct_ref is empty (n=0); expected at least one paired example")
    if method == "t":
        return paired_tost(x, y, margin, alpha)
    g, l = int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))
    if method == "score":
        return _score_tost(g, l, n, margin, alpha)
    d, psi = (g - l) / n, (g + l) / n
    se = math.sqrt(max(psi - d * d, 0.0) / n)
    return _tost_from_normal(d, se, margin, alpha, n, "wald")


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
        ValueError: unknown method, not 1-D, or a value outside [0, 1].
    """
    method = _check_choice(method, "method", ADJUSTMENTS)
    try:
        p = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("p could not be read as numbers; expected a 1-D array of p-values in [0, 1]") from None
    if p.ndim != 1:
        raise ValueError(f"p has shape {p.shape}; expected a 1-D array of p-values in [0, 1]")
    bad = np.flatnonzero(~np.isnan(p) & ((p < 0) | (p > 1)))
    if bad.size:
        raise ValueError(f"p[{bad[0]}]={p[bad[0]]}; expected p-values in [0, 1] (or NaN for a test not run)")
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
    m = _check_int(m, "m", 0)
    method = _check_choice(method, "method", ADJUSTMENTS)
    alpha = _check_alpha(alpha)
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
        raise ValueError(f"{name}={tests[name].iloc[bad[0]]!r} in row {bad[0]}; expected a number (or NaN)")
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
        ValueError: not a DataFrame, no ``estimate`` column, a row with neither se nor samples,
            se <= 0, df <= 0, empty or non-finite samples, unknown method, alpha outside (0, 1).
    """
    method = _check_choice(method, "method", ADJUSTMENTS)
    alpha = _check_alpha(alpha)
    if not isinstance(tests, pd.DataFrame):
        raise ValueError(f"tests is a {type(tests).__name__}; expected a pandas DataFrame with one row per test")
    if "estimate" not in tests:
        raise ValueError(f"tests has columns {list(tests.columns)}; expected 'estimate' and 'se' or 'samples'")
    if "se" not in tests and "samples" not in tests:
        raise ValueError(f"tests has columns {list(tests.columns)}; expected 'se' or 'samples' beside 'estimate'")
    n_rows = len(tests)
    est, se, df = (_numeric_column(tests, c) for c in ("estimate", "se", "df"))
    samples: list[NDArray[np.float64] | None] = [None] * n_rows
    if "samples" in tests:
        for i, s in enumerate(tests["samples"]):
            if s is None or (np.ndim(s) == 0 and pd.isna(s)):
                continue
            arr = np.asarray(s, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ValueError(f"samples of row {i} has shape {arr.shape} (or non-finite values); "
                                 "expected a non-empty 1-D array of finite bootstrap replicates")
            samples[i] = arr
    p = np.full(n_rows, np.nan)
    for i in range(n_rows):
        if samples[i] is not None:
            if np.isnan(est[i]):
                raise ValueError(f"estimate of row {i} is NaN but samples are given; expected a finite estimate")
            p[i] = _samples_p(samples[i])
            continue
        if np.isnan(est[i]) or np.isnan(se[i]):
            if "se" not in tests:
                raise ValueError(f"row {i} has no samples and tests has no 'se' column; give one of them per row")
            continue  # a test not run
        if not se[i] > 0 or not np.isfinite(se[i]):
            raise ValueError(f"se={float(se[i])!r} in row {i}; expected a finite float > 0 (or NaN for a test not run)")
        if not np.isnan(df[i]) and not df[i] > 0:
            raise ValueError(f"df={float(df[i])!r} in row {i}; expected a float > 0 (or NaN for the normal reference)")
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
        raise ValueError(f"{what} has {column} values {sorted(map(str, values))}; expected one value for the whole study")
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
        ValueError: missing columns, duplicate cells in ``equivalence``, cells in ``changes`` with
            no equivalence row, several margins/alphas/methods in one study.
    """
    for frame, what, need in ((equivalence, "equivalence", ("equivalent", "margin", "alpha")),
                              (changes, "changes", ("metric", "changed", "m", "method", "alpha"))):
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{what} is a {type(frame).__name__}; expected a pandas DataFrame")
        missing = [c for c in (*on, *need) if c not in frame]
        if missing:
            raise ValueError(f"{what} lacks column(s) {missing}; expected {list(on) + list(need)}")
    on = list(on)
    if not on:
        raise ValueError("on=[]; expected the column names that identify a cell")
    dup = equivalence.duplicated(on)
    if dup.any():
        raise ValueError(f"equivalence has several rows for cell {_keys(equivalence[dup], on)[0]}; expected one per cell")
    keys = set(_keys(equivalence, on))
    orphans = [k for k in _keys(changes, on) if k not in keys]
    if orphans:
        raise ValueError(f"changes has cell {orphans[0]} with no row in equivalence; give its accuracy TOST")
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


# ---- 4. power: what a design can see -----------------------------------------------------------
POWER_METHODS = ("t", "normal")


def _check_power(power: object, alpha: float) -> float:
    return _check_float(power, "power", alpha, 1.0)


def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


def _connor_gap(d: float, n: float, psi: float, za: float, zb: float) -> float:
    """d sqrt(n) - z_{1-a/2} sqrt(psi) - z_{1-b} sqrt(psi - d^2): zero at Connor's MDE."""
    return d * math.sqrt(n) - za * math.sqrt(psi) - zb * math.sqrt(max(psi - d * d, 0.0))


def mde_accuracy(n: int, p_disc: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable paired accuracy difference (McNemar's test, two-sided alpha, power).

    Connor 1987, "Sample size for testing differences in proportions for the paired-sample
    design", Biometrics 43:207-211, https://doi.org/10.2307/2531961 : with discordance rate
    psi = P(correctness differs) and difference d = p_gain - p_loss, McNemar's test has power
    1 - beta at

        d sqrt(n) = z_{1-alpha/2} sqrt(psi) + z_{1-beta} sqrt(psi - d^2)

    solved here for d (~ (z_{1-alpha/2} + z_{1-beta}) sqrt(psi / n) when d^2 << psi). Since
    |d| <= psi, a root above psi means no difference is detectable at this discordance: inf.

    Args:
        n: paired examples (>= 1).
        p_disc: psi in (0, 1], from a pilot: mean(correct_ref != correct_pruned).
        alpha: two-sided level in (0, 1).
        power: 1 - beta in (alpha, 1).

    Returns:
        The MDE on the accuracy scale (0.05 = 5 points), or inf.
    """
    n = _check_int(n, "n", 1)
    psi = _check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    alpha = _check_alpha(alpha)
    power = _check_power(power, alpha)
    za, zb = _z(1 - alpha / 2), _z(power)
    top = min(psi, math.sqrt(psi))
    if _connor_gap(top, n, psi, za, zb) < 0:
        return math.inf
    lo = 0.0
    if _connor_gap(lo, n, psi, za, zb) >= 0:  # power below alpha/2: any d "is detectable"
        return 0.0
    return float(optimize.brentq(_connor_gap, lo, top, args=(n, psi, za, zb), xtol=1e-14, rtol=1e-12))


def n_for_accuracy(mde: float, p_disc: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired examples McNemar's test needs to detect an accuracy difference ``mde`` (Connor 1987).

        n = ceil( [z_{1-alpha/2} sqrt(psi) + z_{1-beta} sqrt(psi - mde^2)]^2 / mde^2 )

    Args:
        mde: the difference to detect, in (0, p_disc] (it cannot exceed the discordance).
        p_disc, alpha, power: as in :func:`mde_accuracy`.

    Returns:
        n (int).
    """
    psi = _check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    d = _check_float(mde, "mde", 0.0, psi, closed="high")
    alpha = _check_alpha(alpha)
    power = _check_power(power, alpha)
    za, zb = _z(1 - alpha / 2), _z(power)
    return max(1, math.ceil((za * math.sqrt(psi) + zb * math.sqrt(max(psi - d * d, 0.0))) ** 2 / (d * d) - 1e-9))


def n_for_accuracy_equivalence(margin: float, p_disc: float, true_diff: float = 0.0, alpha: float = 0.05,
                               power: float = 0.8) -> int:
    """Paired examples a TOST needs to show accuracy equivalent within +-margin (Wald variance).

    With sd^2 = psi - d^2 the variance of one 0/1 difference (Liu et al. 2002, sec. 4), the TOST
    passes when the (1 - 2 alpha) CI half-width z_{1-alpha} sd / sqrt(n) fits in margin - |d|;
    asking that with probability 1 - beta:

        d != 0:  n = ceil( (z_{1-alpha} + z_{1-beta})^2   sd^2 / (margin - |d|)^2 )
        d == 0:  n = ceil( (z_{1-alpha} + z_{1-beta/2})^2 sd^2 / margin^2 )

    (the far bound is ignored for d != 0, so the power is slightly above 1 - beta). power = 0.5
    with d != 0 gives "the expected CI half-width equals margin - |d|". The score test
    (:func:`accuracy_tost`'s default) needs about the same n when n psi is not small.

    Args:
        margin: equivalence margin in (0, 1).
        p_disc: expected discordance psi in (0, 1].
        true_diff: the accuracy difference assumed true, |true_diff| < margin and <= psi.
        alpha: size of the TOST, in (0, 0.5).
        power: in (alpha, 1).

    Returns:
        n (int).
    """
    margin = _check_float(margin, "margin", 0.0, 1.0)
    psi = _check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    d = _check_float(true_diff, "true_diff", -min(margin, psi), min(margin, psi),
                     closed="both" if psi < margin else "neither")
    alpha = _check_alpha(alpha, tost=True)
    power = _check_power(power, alpha)
    zb = _z(1 - (1 - power) / 2) if d == 0 else _z(power)
    return max(2, math.ceil((_z(1 - alpha) + zb) ** 2 * (psi - d * d) / (margin - abs(d)) ** 2 - 1e-9))


def _t_power(delta: float, n: int, sd: float, alpha: float) -> float:
    """Two-sided one-sample t-test power at mean difference delta: both tails of the noncentral t."""
    df, nc = n - 1, delta * math.sqrt(n) / sd
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    upper, lower = float(stats.nct.sf(crit, df, nc)), float(stats.nct.cdf(-crit, df, nc))
    # scipy's noncentral t returns NaN far in its tails (tiny alpha, large nc): there the far tail
    # is 0 and the near one is close to its normal limit
    if not math.isfinite(lower):
        lower = 0.0
    if not math.isfinite(upper):
        upper = float(stats.norm.sf(crit - nc))
    return upper + lower


def _check_n_sd(n: object, sd: object, method: str) -> tuple[int, float]:
    n = _check_int(n, "n", 2 if method == "t" else 1)
    sd = _check_float(sd, "sd", 0.0, math.inf)
    return n, sd


def mde_paired(n: int, sd: float, alpha: float = 0.05, power: float = 0.8, method: str = "t") -> float:
    """Minimal detectable mean of a continuous paired difference (ECE contributions, NAOPC, ...).

        normal:  MDE = (z_{1-alpha/2} + z_{1-beta}) sd / sqrt(n)
        t:       the delta where the two-sided paired t-test has power 1 - beta:
                 P(|T'| > t_{1-alpha/2, n-1}) = 1 - beta, T' ~ noncentral t(n - 1, delta sqrt(n) / sd)

    (Cohen 1988, *Statistical Power Analysis for the Behavioral Sciences*, ch. 2; the t version
    is what statsmodels' ``TTestPower`` solves). Use 't' for small n: at n = 6 the normal
    formula understates the MDE by about a third.

    Args:
        n: paired examples (>= 2 for 't').
        sd: standard deviation of the per-example paired differences (> 0), from a pilot.
        alpha: two-sided level in (0, 1).
        power: 1 - beta in (alpha, 1).
        method: ``'t'`` (default) or ``'normal'``.

    Returns:
        The MDE in the units of the metric.
    """
    method = _check_choice(method, "method", POWER_METHODS)
    n, sd = _check_n_sd(n, sd, method)
    alpha = _check_alpha(alpha)
    power = _check_power(power, alpha)
    normal = (_z(1 - alpha / 2) + _z(power)) * sd / math.sqrt(n)
    if method == "normal":
        return max(normal, 0.0)
    hi = max(normal, sd / math.sqrt(n))
    while _t_power(hi, n, sd, alpha) < power:
        hi *= 2.0
    return float(optimize.brentq(lambda d: _t_power(d, n, sd, alpha) - power, 0.0, hi, xtol=1e-12 * sd, rtol=1e-12))


def ci_halfwidth(n: int, sd: float, alpha: float = 0.05, method: str = "t") -> float:
    """Expected half-width of the (1 - alpha) CI of a paired mean difference.

        normal: z_{1-alpha/2} sd / sqrt(n);    t: t_{1-alpha/2, n-1} sd / sqrt(n)

    For accuracy, sd = sqrt(psi - d^2) (psi the discordance rate), ~ sqrt(psi) near d = 0.
    The paired bootstrap interval of :mod:`toolkit.stats` has about the normal width.

    Args:
        n, sd, alpha, method: as in :func:`mde_paired`.

    Returns:
        The half-width in the units of the metric.
    """
    method = _check_choice(method, "method", POWER_METHODS)
    n, sd = _check_n_sd(n, sd, method)
    alpha = _check_alpha(alpha)
    q = _z(1 - alpha / 2) if method == "normal" else float(stats.t.ppf(1 - alpha / 2, n - 1))
    return q * sd / math.sqrt(n)


def n_for_halfwidth(halfwidth: float, sd: float, alpha: float = 0.05, method: str = "t") -> int:
    """Smallest n whose expected (1 - alpha) CI half-width (:func:`ci_halfwidth`) is <= halfwidth.

        normal: n = ceil((z_{1-alpha/2} sd / halfwidth)^2); t: the smallest n >= 2 with
        t_{1-alpha/2, n-1} sd / sqrt(n) <= halfwidth (searched upward from the normal n).

    Args:
        halfwidth: target half-width (> 0), in the units of the metric.
        sd, alpha, method: as in :func:`mde_paired`.

    Returns:
        n (int).
    """
    method = _check_choice(method, "method", POWER_METHODS)
    h = _check_float(halfwidth, "halfwidth", 0.0, math.inf)
    sd = _check_float(sd, "sd", 0.0, math.inf)
    alpha = _check_alpha(alpha)
    n = max(1, math.ceil((_z(1 - alpha / 2) * sd / h) ** 2 - 1e-9))
    if method == "normal":
        return n
    n = max(n, 2)
    while ci_halfwidth(n, sd, alpha, "t") > h:
        n += 1
    return n


def power_table(pilot: pd.DataFrame, alpha: float = 0.05, power: float = 0.8, margin: float = 0.05) -> pd.DataFrame:
    """What a design can detect, per metric: MDE, CI half-width and the n for accuracy equivalence.

    Per row of ``pilot``: an accuracy row (``p_disc`` given) uses :func:`mde_accuracy`,
    sd = sqrt(p_disc) for the half-width (normal) and :func:`n_for_accuracy_equivalence` at
    true_diff = 0; a continuous row (``sd`` given) uses :func:`mde_paired` and
    :func:`ci_halfwidth` with the t method.

    Args:
        pilot: one row per metric with columns ``metric``, ``n`` and ``p_disc`` (accuracy) or
            ``sd`` (continuous paired metrics); NaN in the column a row does not use.
        alpha: two-sided level of the change tests and of the CIs; the TOST uses it too.
        power: target power in (alpha, 1).
        margin: equivalence margin for ``n_equivalence``.

    Returns:
        DataFrame, one row per metric: ``metric``, ``n``, ``p_disc``, ``sd``, ``mde``,
        ``ci_halfwidth`` ((1 - alpha) CI), ``n_equivalence`` (accuracy rows; NaN otherwise),
        ``alpha``, ``power``.
    """
    if not isinstance(pilot, pd.DataFrame):
        raise ValueError(f"pilot is a {type(pilot).__name__}; expected a DataFrame with metric, n, p_disc or sd")
    missing = [c for c in ("metric", "n") if c not in pilot]
    if missing or ("p_disc" not in pilot and "sd" not in pilot):
        raise ValueError(f"pilot has columns {list(pilot.columns)}; expected 'metric', 'n' and 'p_disc' or 'sd'")
    rows = []
    for i, r in enumerate(pilot.to_dict("records")):
        p_disc, sd = r.get("p_disc", np.nan), r.get("sd", np.nan)
        n = int(r["n"]) if isinstance(r["n"], (int, np.integer, float)) and float(r["n"]).is_integer() else r["n"]
        has_p, has_sd = not pd.isna(p_disc), not pd.isna(sd)
        if has_p == has_sd:
            raise ValueError(f"pilot row {i} ({r['metric']!r}) has p_disc={p_disc!r} and sd={sd!r}; expected exactly one")
        if has_p:
            rows.append(dict(metric=r["metric"], n=n, p_disc=float(p_disc), sd=np.nan,
                             mde=mde_accuracy(n, float(p_disc), alpha, power),
                             ci_halfwidth=ci_halfwidth(n, math.sqrt(float(p_disc)), alpha, "normal"),
                             n_equivalence=n_for_accuracy_equivalence(margin, float(p_disc), 0.0, alpha, power)))
        else:
            rows.append(dict(metric=r["metric"], n=n, p_disc=np.nan, sd=float(sd), mde=mde_paired(n, float(sd), alpha, power),
                             ci_halfwidth=ci_halfwidth(n, float(sd), alpha), n_equivalence=np.nan))
    out = pd.DataFrame(rows, columns=["metric", "n", "p_disc", "sd", "mde", "ci_halfwidth", "n_equivalence"])
    out["alpha"], out["power"] = alpha, power
    return out
