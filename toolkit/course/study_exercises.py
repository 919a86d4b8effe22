"""Exercises of notebook 05 (study): paired TOST, Holm's adjustment, false flags, detectable effects."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..decisions import adjust_pvalues, error_budget, mde_paired, paired_tost
from .checking import Case, Exercise, fields, floats, scalar

__all__ = [
    "EXERCISES",
    "FALSE_FLAGS",
    "HOLM",
    "MDE",
    "TOST",
]

# ----------------------------------------------------------------------------- TOST


def _tost_reference(a: Any, b: Any, margin: float, alpha: float = 0.05) -> tuple[float, float, float]:
    result = paired_tost(a, b, margin, alpha)
    return result.low, result.high, result.p


def _tost_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    a = rng.normal(0.7, 0.2, 60)
    b_close = a + rng.normal(0.005, 0.05, 60)
    b_far = a + rng.normal(0.04, 0.05, 60)
    a8 = rng.normal(0.5, 0.1, 8)
    b8 = a8 + rng.normal(0.01, 0.03, 8)
    flat = np.linspace(0.2, 0.9, 10)
    return [
        Case("equivalent: n=60, small differences, margin 0.03", (a, b_close, 0.03)),
        Case("not shown equivalent: the mean difference is near the margin", (a, b_far, 0.05)),
        Case("small n=8: the t distribution, not the normal", (a8, b8, 0.04)),
        Case("alpha=0.01", (a, b_close, 0.03), {"alpha": 0.01}),
        Case("every difference equal (se = 0), inside the margin: p = 0", (flat, flat + 0.01, 0.05)),
        Case("every difference equal (se = 0), outside the margin: p = 1", (flat, flat - 0.08, 0.05)),
    ]


TOST = Exercise(
    name="paired_tost",
    notebook="05_study",
    title="Paired TOST: is the change smaller than the margin?",
    difficulty=3,
    importance=3,
    minutes=10,
    signature='''def paired_tost(a, b, margin, alpha=0.05):
    """Paired two one-sided t-tests (Schuirmann 1987) for |mean(b - a)| < margin.

    d_i = b_i - a_i, d^ = mean(d), se = sd(d, ddof=1) / sqrt(n), df = n - 1, T ~ Student t(df):

        (low, high) = d^ -+ t_{1 - alpha, df} * se            the (1 - 2 alpha) interval
        p_lower = P(T > (d^ + margin) / se)                  (H0: d <= -margin)
        p_upper = P(T < (d^ - margin) / se)                  (H0: d >= +margin)
        p = max(p_lower, p_upper);   equivalent <=> p < alpha <=> -margin < low, high < margin

    When se = 0 (all d_i equal) the interval is the point d^, p_lower = 0 if d^ > -margin else 1,
    p_upper = 0 if d^ < margin else 1. As toolkit.decisions.paired_tost (its .low, .high, .p).

    Args:
        a, b: float arrays (n,), per-example values of the reference and the pruned model on the
            same examples.
        margin: the equivalence margin > 0.
        alpha: the size of the test.

    Returns:
        (low, high, p): three floats.
    """''',
    hint=(
        "Work on the differences d = b - a with the t distribution (df = n - 1, sd with `ddof=1`). The interval "
        "uses t at 1 - alpha (not 1 - alpha/2): each one-sided test is at level alpha. p is the LARGER of the "
        "two one-sided p-values (both must reject). Handle se = 0 before dividing."
    ),
    cases=_tost_cases,
    reference=_tost_reference,
    compare=fields(*((name, scalar(atol=1e-12, rtol=1e-7)) for name in ("low", "high", "p"))),
    compared_with="toolkit.decisions.paired_tost",
    tolerance="abs 1e-12 + rel 1e-7 (scipy's t distribution; the same formula)",
)


# ----------------------------------------------------------------------------- Holm


def _holm_cases() -> list[Case]:
    return [
        Case("typical: 5 p-values, unsorted", (np.array([0.01, 0.04, 0.03, 0.005, 0.2]),)),
        Case("the monotone step: an adjusted p-value never falls below an earlier one",
             (np.array([0.02, 0.021, 0.3, 0.026]),)),
        Case("large p-values are capped at 1", (np.array([0.4, 0.6, 0.01]),)),
        Case("ties", (np.array([0.01, 0.03, 0.01, 0.03]),)),
        Case("a single test: unchanged", (np.array([0.04]),)),
        Case("p-values of 0 and 1", (np.array([0.0, 1.0, 0.02]),)),
    ]


HOLM = Exercise(
    name="holm",
    notebook="05_study",
    title="Holm's step-down adjusted p-values",
    difficulty=2,
    importance=3,
    minutes=10,
    signature='''def holm(pvalues):
    """Holm (1979) adjusted p-values, in the input's order.

    With p_(1) <= ... <= p_(m) the sorted p-values:

        p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))

    Rejecting p~ <= alpha keeps the familywise error <= alpha under any dependence.
    Holm 1979, Scand. J. Stat. 6:65-70; as toolkit.decisions.adjust_pvalues(p, "holm").

    Args:
        pvalues: float array (m,) in [0, 1].

    Returns:
        A float array (m,): the adjusted p-value of each test, in the input's order.
    """''',
    hint=(
        'Sort the p-values, multiply the i-th smallest (i from 0) by m - i, cap at 1, make the sequence '
        'non-decreasing (a running maximum: the step that Bonferroni lacks), and put the values back in the '
        "input's order."
    ),
    cases=_holm_cases,
    reference=lambda pvalues: adjust_pvalues(pvalues, method="holm"),
    compare=floats(atol=1e-12, what="a float array"),
    compared_with='toolkit.decisions.adjust_pvalues(method="holm")',
    tolerance="abs tolerance 1e-12 (float64 products)",
)


# ----------------------------------------------------------------------------- error budget, MDE

FALSE_FLAGS = Exercise(
    name="expected_false_flags",
    notebook="05_study",
    title="How many false 'changed' flags do m unadjusted tests raise?",
    difficulty=1,
    importance=2,
    minutes=3,
    signature='''def expected_false_flags(m, alpha):
    """Expected number of false positives among m unadjusted tests at level alpha, all nulls true.

        E[V] = alpha * m

    Each p-value is uniform under its null, so each test flags with probability alpha; the
    expectation adds up whatever the dependence. (P(at least one) is a different number.)
    As toolkit.decisions.error_budget(m, "none", alpha).expected_unadjusted.

    Args:
        m: number of tests, >= 0.
        alpha: level of each test.

    Returns:
        A Python float.
    """''',
    hint=(
        'Linearity of expectation: each of the m tests flags with probability alpha, dependent or not. `1 - '
        '(1 - alpha) ** m` is the chance of at least one.'
    ),
    cases=lambda: [
        Case("20 tests at 0.05", (20, 0.05)),
        Case("no tests", (0, 0.05)),
        Case("7 tests at 0.1", (7, 0.1)),
        Case("one test at 0.01", (1, 0.01)),
        Case("300 tests at 0.05 (one per layer, metric and model)", (300, 0.05)),
    ],
    reference=lambda m, alpha: error_budget(m, "none", alpha).expected_unadjusted,
    compare=scalar(atol=1e-12, rtol=1e-12),
    compared_with='toolkit.decisions.error_budget(m, "none", alpha)',
    tolerance="abs 1e-12 + rel 1e-12",
)

MDE = Exercise(
    name="mde_paired",
    notebook="05_study",
    title="The smallest paired difference a study can detect (normal approximation)",
    difficulty=2,
    importance=2,
    minutes=10,
    signature='''def mde_paired(n, sd, alpha=0.05, power=0.8):
    """Minimal detectable mean of a paired difference, two-sided test, normal approximation.

        MDE = (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n),   z_q = the standard normal quantile

    Cohen 1988, ch. 2; as toolkit.decisions.mde_paired(n, sd, alpha, power, method="normal").

    Args:
        n: number of paired examples.
        sd: standard deviation of the per-example differences.
        alpha: two-sided level.
        power: the probability of detecting a true difference of size MDE.

    Returns:
        A Python float, in the units of the metric.
    """''',
    hint=(
        'Two-sided test: the standard normal quantile (the inverse of its CDF) at 1 - alpha/2, plus the one at '
        '`power`; scale the sum by the standard error sd / sqrt(n). For scale: z at 0.975 is about 1.96, at 0.8 '
        'about 0.84.'
    ),
    cases=lambda: [
        Case("typical: 500 examples, sd 0.1", (500, 0.1)),
        Case("alpha=0.01, power=0.9", (200, 0.05), {"alpha": 0.01, "power": 0.9}),
        Case("a pilot of 10 examples, sd 1", (10, 1.0)),
        Case("power 0.5: only the alpha term remains", (100, 0.2), {"power": 0.5}),
    ],
    reference=lambda n, sd, alpha=0.05, power=0.8: mde_paired(n, sd, alpha, power, method="normal"),
    compare=scalar(atol=1e-12, rtol=1e-9),
    compared_with='toolkit.decisions.mde_paired(method="normal")',
    tolerance="rel 1e-9 (scipy's normal quantiles)",
)

EXERCISES = (TOST, HOLM, FALSE_FLAGS, MDE)
