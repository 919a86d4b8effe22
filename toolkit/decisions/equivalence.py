"""Accuracy holds: paired non-inferiority (one-sided), or equivalence by TOST, within a margin.

"Keeps accuracy" is a one-sided statement: the pruned model is not worse than the unpruned one
by more than the margin (``accuracy_noninferiority``, ``noninferiority_table``). A two-sided
TOST also rejects an accuracy *gain* larger than the margin as "not equivalent"; it stays
available for a claim of "unchanged".
``paired_tost`` for continuous per-example values (t reference), ``accuracy_tost`` for 0/1
correctness (score, Wald or t). "The CI of d contains 0" is absence of evidence; TOST is
evidence of absence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from .._core.validation import InputError, check_choice, check_float, check_int

__all__ = [
    "ACCURACY_METHODS",
    "NONINFERIORITY_MARGINS",
    "Equivalence",
    "NonInferiority",
    "accuracy_noninferiority",
    "accuracy_tost",
    "noninferiority_from_counts",
    "noninferiority_table",
    "paired_tost",
]

ACCURACY_METHODS = ("score", "wald", "t")
#: The margins every report shows "keeps accuracy" at (accuracy scale: 0.05 = 5 points).
NONINFERIORITY_MARGINS = (0.02, 0.05, 0.10)


def _check_paired(a: ArrayLike, b: ArrayLike, names: tuple[str, str], *, binary: bool = False) -> tuple[NDArray, NDArray]:
    out = []
    for x, name in zip((a, b), names):
        try:
            v = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name} could not be read as numbers; expected a 1-D array of per-example values") from None
        if v.ndim != 1:
            raise InputError(f"{name} has shape {v.shape}; expected a 1-D array of per-example values")
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise InputError(f"{name}[{bad[0]}]={v[bad[0]]}; expected finite values (drop unpaired examples first)")
        if binary:
            bad = np.flatnonzero((v != 0) & (v != 1))
            if bad.size:
                raise InputError(f"{name}[{bad[0]}]={v[bad[0]]}; expected 0/1 (or bool) correctness per example")
        out.append(v)
    if out[0].shape != out[1].shape:
        raise InputError(
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
        InputError: non-1-D, non-finite or unequal-length inputs, n < 2, margin <= 0, alpha
            outside (0, 0.5).
    """
    margin = check_float(margin, "margin", 0.0, math.inf)
    alpha = check_float(alpha, "alpha", 0.0, 0.5)  # a TOST at alpha reads a (1 - 2 alpha) CI
    a, b = _check_paired(a, b, ("a", "b"))
    if a.size < 2:
        raise InputError(f"n={a.size} paired examples; a paired t-test needs n >= 2")
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
        InputError: inputs not 0/1, of unequal length or empty (n < 2 for 't'), margin outside
            (0, 1), alpha outside (0, 0.5), unknown method.
    """
    margin = check_float(margin, "margin", 0.0, 1.0)
    alpha = check_float(alpha, "alpha", 0.0, 0.5)  # a TOST at alpha reads a (1 - 2 alpha) CI
    method = check_choice(method, "method", ACCURACY_METHODS)
    x, y = _check_paired(correct_ref, correct_pruned, ("correct_ref", "correct_pruned"), binary=True)
    n = x.size
    if n < 1:
        raise InputError("correct_ref is empty (n=0); expected at least one paired example")
    if method == "t":
        return paired_tost(x, y, margin, alpha)
    g, l = int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))
    if method == "score":
        return _score_tost(g, l, n, margin, alpha)
    d, psi = (g - l) / n, (g + l) / n
    se = math.sqrt(max(psi - d * d, 0.0) / n)
    return _tost_from_normal(d, se, margin, alpha, n, "wald")


# ---- 2. non-inferiority: "keeps accuracy" ------------------------------------------------------
@dataclass(frozen=True)
class NonInferiority:
    """A paired one-sided test: is d = acc_pruned - acc_ref above -margin?

    Attributes:
        estimate: d^ = (g - l) / n.
        low: the one-sided (1 - alpha) lower confidence bound of d.
        p: p-value of H0: d <= -margin against H1: d > -margin.
        noninferior: p < alpha, i.e. low > -margin ("keeps accuracy").
        margin, alpha, n, method: as given; gains g and losses l are the discordant counts.
    """

    estimate: float
    low: float
    p: float
    noninferior: bool
    margin: float
    alpha: float
    n: int
    gains: int
    losses: int
    method: str


def noninferiority_from_counts(gains: int, losses: int, n: int, margin: float = 0.05, alpha: float = 0.05,
                               method: str = "score") -> NonInferiority:
    """Paired non-inferiority of accuracy from the discordant counts of a paired 2x2 table.

    H0: d <= -margin, H1: d > -margin, with d = acc_pruned - acc_ref = (g - l) / n. The test is
    one arm of :func:`accuracy_tost` at level alpha: p = p_lower of the TOST and the bound is the
    lower end of its (1 - 2 alpha) two-sided interval, i.e. a one-sided (1 - alpha) bound.

        score: p = 1 - Phi(T(-margin)), T Tango's RMLE score statistic; low = {d0 : T(d0) = z_{1-alpha}}
        wald:  low = d^ - z_{1-alpha} sqrt((psi^ - d^^2) / n),  psi^ = (g + l) / n

    A gain (d^ >= 0) passes whenever the bound clears -margin, which at the study's n it does for
    any discordance (a two-sided TOST would fail it on the upper side once d^ >= margin). With
    very few examples a gain can still fail: too little evidence, never "worse".

    Args:
        gains: g, examples the pruned model gets right and the reference wrong (>= 0).
        losses: l, the reverse (>= 0); g + l <= n.
        n: paired examples (>= 1).
        margin: in (0, 1).
        alpha: one-sided level in (0, 0.5).
        method: ``'score'`` (default) or ``'wald'``.

    Returns:
        :class:`NonInferiority`.
    """
    g, l_, n = check_int(gains, "gains", 0), check_int(losses, "losses", 0), check_int(n, "n", 1)
    if g + l_ > n:
        raise InputError(f"gains + losses = {g + l_} > n = {n}; expected at most n discordant pairs")
    margin = check_float(margin, "margin", 0.0, 1.0)
    alpha = check_float(alpha, "alpha", 0.0, 0.5)
    method = check_choice(method, "method", ("score", "wald"))
    if method == "score":
        res = _score_tost(g, l_, n, margin, alpha)
    else:
        d, psi = (g - l_) / n, (g + l_) / n
        res = _tost_from_normal(d, math.sqrt(max(psi - d * d, 0.0) / n), margin, alpha, n, "wald")
    return NonInferiority(estimate=res.estimate, low=res.low, p=res.p_lower, noninferior=bool(res.p_lower < alpha),
                          margin=float(margin), alpha=float(alpha), n=int(n), gains=g, losses=l_, method=method)


def accuracy_noninferiority(correct_ref: ArrayLike, correct_pruned: ArrayLike, margin: float = 0.05,
                            alpha: float = 0.05, method: str = "score") -> NonInferiority:
    """Does the pruned model keep accuracy? Paired non-inferiority on per-example correctness.

    Counts g (gains) and l (losses) and calls :func:`noninferiority_from_counts`; see there.

    Args:
        correct_ref: per-example correctness of the unpruned model, shape (n,), 0/1 or bool.
        correct_pruned: per-example correctness of the pruned model on the same examples.
        margin, alpha, method: as in :func:`noninferiority_from_counts`.
    """
    x, y = _check_paired(correct_ref, correct_pruned, ("correct_ref", "correct_pruned"), binary=True)
    if x.size < 1:
        raise InputError("correct_ref is empty (n=0); expected at least one paired example")
    g, l_ = int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))
    return noninferiority_from_counts(g, l_, x.size, margin, alpha, method)


def noninferiority_table(correct_ref: ArrayLike, correct_pruned: ArrayLike,
                         margins: tuple[float, ...] = NONINFERIORITY_MARGINS, alpha: float = 0.05,
                         method: str = "score") -> pd.DataFrame:
    """"Keeps accuracy" at each margin (default 0.02, 0.05, 0.10), one row per margin.

    Returns:
        DataFrame with columns ``margin``, ``estimate``, ``low`` (one-sided 1 - alpha bound),
        ``p``, ``noninferior`` (bool), ``verdict`` ('keeps accuracy' / 'not shown to keep
        accuracy'), ``alpha``, ``n``, ``gains``, ``losses``, ``method``.
    """
    rows = []
    for margin in margins:
        r = accuracy_noninferiority(correct_ref, correct_pruned, margin, alpha, method)
        rows.append({"margin": r.margin, "estimate": r.estimate, "low": r.low, "p": r.p, "noninferior": r.noninferior,
                     "verdict": "keeps accuracy" if r.noninferior else "not shown to keep accuracy",
                     "alpha": r.alpha, "n": r.n, "gains": r.gains, "losses": r.losses, "method": r.method})
    return pd.DataFrame(rows)
