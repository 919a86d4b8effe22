"""Power: the smallest paired difference a design can detect, and the n a target needs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .._core.validation import InputError, InputTypeError, check_choice, check_float, check_int

__all__ = [
    "POWER_METHODS",
    "ci_halfwidth",
    "mde_accuracy",
    "mde_paired",
    "n_for_accuracy",
    "n_for_accuracy_equivalence",
    "n_for_accuracy_noninferiority",
    "n_for_halfwidth",
    "power_table",
]

# ---- 4. power: what a design can see -----------------------------------------------------------
POWER_METHODS = ("t", "normal")


def _check_power(power: object, alpha: float) -> float:
    return check_float(power, "power", alpha, 1.0)


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
    n = check_int(n, "n", 1)
    psi = check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
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
    psi = check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    d = check_float(mde, "mde", 0.0, psi, closed="high")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
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
    margin = check_float(margin, "margin", 0.0, 1.0)
    psi = check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    d = check_float(true_diff, "true_diff", -min(margin, psi), min(margin, psi),
                     closed="both" if psi < margin else "neither")
    alpha = check_float(alpha, "alpha", 0.0, 0.5)  # a TOST at alpha reads a (1 - 2 alpha) CI
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
    n = check_int(n, "n", 2 if method == "t" else 1)
    sd = check_float(sd, "sd", 0.0, math.inf)
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
    method = check_choice(method, "method", POWER_METHODS)
    n, sd = _check_n_sd(n, sd, method)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
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
    The paired bootstrap interval of :mod:`toolkit.decisions.stats` has about the normal width.

    Args:
        n, sd, alpha, method: as in :func:`mde_paired`.

    Returns:
        The half-width in the units of the metric.
    """
    method = check_choice(method, "method", POWER_METHODS)
    n, sd = _check_n_sd(n, sd, method)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
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
    method = check_choice(method, "method", POWER_METHODS)
    h = check_float(halfwidth, "halfwidth", 0.0, math.inf)
    sd = check_float(sd, "sd", 0.0, math.inf)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    n = max(1, math.ceil((_z(1 - alpha / 2) * sd / h) ** 2 - 1e-9))
    if method == "normal":
        return n
    n = max(n, 2)
    while ci_halfwidth(n, sd, alpha, "t") > h:
        n += 1
    return n


def n_for_accuracy_noninferiority(margin: float, p_disc: float, true_diff: float = 0.0, alpha: float = 0.05,
                                  power: float = 0.8) -> int:
    """Paired examples a one-sided test needs to show the pruned model keeps accuracy (Wald variance).

    H1: d > -margin, tested at one-sided level alpha; with sd^2 = psi - d^2 (one 0/1 difference):

        n = ceil( (z_{1-alpha} + z_{power})^2  sd^2 / (margin + d)^2 )

    (Liu et al. 2002, Stat. Med. 21:231-245, sec. 4, one arm of the TOST). A true gain (d > 0)
    needs fewer examples; a two-sided equivalence (:func:`n_for_accuracy_equivalence`) more.

    Args:
        margin: non-inferiority margin in (0, 1).
        p_disc: expected discordance psi in (0, 1].
        true_diff: the accuracy difference assumed true, > -margin and |d| <= psi.
        alpha: one-sided level in (0, 0.5).
        power: in (alpha, 1).

    Returns:
        n (int, >= 2).
    """
    margin = check_float(margin, "margin", 0.0, 1.0)
    psi = check_float(p_disc, "p_disc", 0.0, 1.0, closed="high")
    d = check_float(true_diff, "true_diff", -min(margin, psi), psi, closed="high")
    alpha = check_float(alpha, "alpha", 0.0, 0.5)
    power = _check_power(power, alpha)
    return max(2, math.ceil((_z(1 - alpha) + _z(power)) ** 2 * (psi - d * d) / (margin + d) ** 2 - 1e-9))


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
        ``ci_halfwidth`` ((1 - alpha) CI), ``n_equivalence`` and ``n_noninferiority`` (accuracy
        rows, true difference 0; NaN otherwise),
        ``alpha``, ``power``.
    """
    if not isinstance(pilot, pd.DataFrame):
        raise InputTypeError(f"pilot is a {type(pilot).__name__}; expected a DataFrame with metric, n, p_disc or sd")
    missing = [c for c in ("metric", "n") if c not in pilot]
    if missing or ("p_disc" not in pilot and "sd" not in pilot):
        raise InputError(f"pilot has columns {list(pilot.columns)}; expected 'metric', 'n' and 'p_disc' or 'sd'")
    rows = []
    for i, r in enumerate(pilot.to_dict("records")):
        p_disc, sd = r.get("p_disc", np.nan), r.get("sd", np.nan)
        n = int(r["n"]) if isinstance(r["n"], (int, np.integer, float)) and float(r["n"]).is_integer() else r["n"]
        has_p, has_sd = not pd.isna(p_disc), not pd.isna(sd)
        if has_p == has_sd:
            raise InputError(f"pilot row {i} ({r['metric']!r}) has p_disc={p_disc!r} and sd={sd!r}; expected exactly one")
        if has_p:
            rows.append(dict(metric=r["metric"], n=n, p_disc=float(p_disc), sd=np.nan,
                             mde=mde_accuracy(n, float(p_disc), alpha, power),
                             ci_halfwidth=ci_halfwidth(n, math.sqrt(float(p_disc)), alpha, "normal"),
                             n_equivalence=n_for_accuracy_equivalence(margin, float(p_disc), 0.0, alpha, power),
                             n_noninferiority=n_for_accuracy_noninferiority(margin, float(p_disc), 0.0, alpha, power)))
        else:
            rows.append(dict(metric=r["metric"], n=n, p_disc=np.nan, sd=float(sd), mde=mde_paired(n, float(sd), alpha, power),
                             ci_halfwidth=ci_halfwidth(n, float(sd), alpha), n_equivalence=np.nan,
                             n_noninferiority=np.nan))
    out = pd.DataFrame(rows, columns=["metric", "n", "p_disc", "sd", "mde", "ci_halfwidth", "n_equivalence",
                                      "n_noninferiority"])
    out["alpha"], out["power"] = alpha, power
    return out
