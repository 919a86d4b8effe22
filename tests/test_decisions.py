"""Tests for toolkit.decisions: equivalence, multiplicity, misalignment verdicts and power.

References: statsmodels (``ttost_paired``, ``multipletests``, ``TTestPower``, ``NormalIndPower``,
``mcnemar``), hand computations written out below, a numerical restricted MLE (scipy
``minimize_scalar``) for Tango's score test, and seeded Monte-Carlo simulations for power.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_paired

from toolkit.decisions import (
    Equivalence,
    accuracy_tost,
    adjust_pvalues,
    adjust_tests,
    ci_halfwidth,
    error_budget,
    mde_accuracy,
    mde_paired,
    misalignment,
    n_for_accuracy,
    n_for_accuracy_equivalence,
    n_for_halfwidth,
    paired_tost,
    power_table,
)
from toolkit._core.validation import InputError

SM_METHOD = {"holm": "holm", "bh": "fdr_bh"}


def _table(g: int, l: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors (ref, pruned) with g gains, l losses and n - g - l concordant pairs."""
    ref = np.r_[np.zeros(g), np.ones(l), np.ones((n - g - l) // 2), np.zeros(n - g - l - (n - g - l) // 2)]
    pruned = np.r_[np.ones(g), np.zeros(l), np.ones((n - g - l) // 2), np.zeros(n - g - l - (n - g - l) // 2)]
    return ref, pruned


# ---- equivalence -------------------------------------------------------------------------------
def test_paired_tost_hand_computed():
    # d = [0.1, 0.2, 0.3, 0.0]: mean 0.15, sd = sqrt(0.05 / 3), se = sd / 2; t_{0.95, 3} = 2.353363
    # (printed t table), so the 90% CI is 0.15 +- 2.353363 * 0.0645497 = [-0.001909, 0.301909].
    res = paired_tost([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.0], margin=0.5, alpha=0.05)
    se = math.sqrt(0.05 / 3) / 2
    assert res.estimate == pytest.approx(0.15)
    assert (res.low, res.high) == pytest.approx((0.15 - 2.353363 * se, 0.15 + 2.353363 * se), abs=1e-6)
    assert res.p_lower == pytest.approx(stats.t(3).sf(0.65 / se))
    assert res.p_upper == pytest.approx(stats.t(3).cdf(-0.35 / se))
    assert res.p == max(res.p_lower, res.p_upper) and res.equivalent and res.n == 4 and res.method == "t"
    # a margin inside the CI: not equivalent
    assert not paired_tost([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.0], margin=0.3).equivalent


@pytest.mark.parametrize("seed", range(5))
def test_paired_tost_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    a = rng.normal(size=n)
    b = a + rng.normal(rng.normal(0, 0.1), rng.uniform(0.05, 1.0), size=n)
    margin = float(rng.uniform(0.02, 0.5))
    ours = paired_tost(a, b, margin, alpha=0.05)
    p, (t1, p1, df1), (t2, p2, df2) = ttost_paired(b, a, -margin, margin)
    assert ours.p_lower == pytest.approx(p1, rel=1e-10, abs=1e-300)
    assert ours.p_upper == pytest.approx(p2, rel=1e-10, abs=1e-300)
    assert ours.p == pytest.approx(p, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("method", ["score", "wald", "t"])
def test_accuracy_tost_equivalent_iff_ci_inside_margin(method):
    for g in range(0, 12, 3):
        for l in range(0, 12, 2):
            for n in (30, 120, 400):
                ref, pruned = _table(g, l, n)
                res = accuracy_tost(ref, pruned, margin=0.05, method=method)
                assert res.equivalent == (res.p < 0.05)
                assert res.equivalent == (-0.05 < res.low and res.high < 0.05), (g, l, n)
                assert res.low <= res.estimate <= res.high


@pytest.mark.parametrize("method", ["score", "wald", "t"])
def test_accuracy_tost_swap_negates(method):
    ref, pruned = _table(7, 3, 90)
    fwd, back = accuracy_tost(ref, pruned, method=method), accuracy_tost(pruned, ref, method=method)
    assert back.estimate == pytest.approx(-fwd.estimate)
    assert (back.low, back.high) == pytest.approx((-fwd.high, -fwd.low), abs=1e-9)
    assert (back.p_lower, back.p_upper) == pytest.approx((fwd.p_upper, fwd.p_lower), abs=1e-12)


def test_accuracy_wald_hand_computed():
    # g=3, l=5, n=100: d = -0.02, psi = 0.08, var = (0.08 - 0.0004) / 100, z_{0.95} = 1.644854.
    ref, pruned = _table(3, 5, 100)
    res = accuracy_tost(ref, pruned, margin=0.05, method="wald")
    se = math.sqrt((0.08 - 0.0004) / 100)
    assert res.estimate == pytest.approx(-0.02)
    assert (res.low, res.high) == pytest.approx((-0.02 - 1.644854 * se, -0.02 + 1.644854 * se), abs=1e-6)
    assert res.p_lower == pytest.approx(stats.norm.sf(0.03 / se))
    assert not res.equivalent  # low = -0.0664 < -0.05


def test_accuracy_t_is_ttost_on_zero_one():
    ref, pruned = _table(4, 6, 150)
    res = accuracy_tost(ref, pruned, margin=0.05, method="t")
    p, (_, p1, _), (_, p2, _) = ttost_paired(pruned, ref, -0.05, 0.05)
    assert (res.p_lower, res.p_upper, res.p) == pytest.approx((p1, p2, p), rel=1e-10)


def _numeric_score_stat(g: int, l: int, n: int, d0: float) -> float:
    """Tango's statistic with the restricted MLE found numerically (not by the closed form)."""
    m = n - g - l

    def nll(p_l):
        p_g = p_l + d0
        return -(g * np.log(p_g) + l * np.log(p_l) + m * np.log(1 - p_g - p_l))

    lo, hi = max(0.0, -d0) + 1e-12, (1 - d0) / 2 - 1e-12
    p_l = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x
    return (g - l - n * d0) / math.sqrt(n * (p_l + d0 + p_l - d0 * d0))


@pytest.mark.parametrize("g,l,n", [(3, 5, 100), (10, 2, 60), (1, 9, 200), (20, 20, 80)])
def test_accuracy_score_matches_numerical_rmle(g, l, n):
    ref, pruned = _table(g, l, n)
    res = accuracy_tost(ref, pruned, margin=0.05, method="score")
    assert res.p_lower == pytest.approx(stats.norm.sf(_numeric_score_stat(g, l, n, -0.05)), rel=1e-5)
    assert res.p_upper == pytest.approx(stats.norm.cdf(_numeric_score_stat(g, l, n, 0.05)), rel=1e-5)
    # the CI limits solve T(d0) = +-z_{0.95}
    z = stats.norm.ppf(0.95)
    assert _numeric_score_stat(g, l, n, res.low) == pytest.approx(z, abs=1e-4)
    assert _numeric_score_stat(g, l, n, res.high) == pytest.approx(-z, abs=1e-4)


@pytest.mark.parametrize("g,l", [(3, 5), (12, 2), (0, 6), (9, 9)])
def test_accuracy_score_ci_excludes_zero_iff_mcnemar_rejects(g, l):
    # T(0) is McNemar's z = (g - l) / sqrt(g + l): the (1 - 2 alpha) score CI excludes 0 exactly
    # when McNemar's asymptotic test (no continuity correction) rejects at 2 alpha.
    ref, pruned = _table(g, l, 100)
    res = accuracy_tost(ref, pruned, margin=0.05, alpha=0.05, method="score")
    mc = mcnemar([[100 - g - l, l], [g, 0]], exact=False, correction=False)
    assert (res.low > 0 or res.high < 0) == (mc.pvalue < 0.10)


def test_accuracy_score_no_flips_is_not_automatically_equivalent():
    # g = l = 0: Wald and t give the point 0 (equivalent at any n); the score interval is
    # [-u, u] with u = z^2 / (n + z^2) (solve n u / (1 - u) = z^2 by hand).
    z2 = stats.norm.ppf(0.95) ** 2
    for n in (20, 100):
        ref, pruned = _table(0, 0, n)
        res = accuracy_tost(ref, pruned, margin=0.05)
        assert res.high == pytest.approx(z2 / (n + z2), abs=1e-9)
        assert res.low == pytest.approx(-z2 / (n + z2), abs=1e-9)
        assert accuracy_tost(ref, pruned, margin=0.05, method="wald").equivalent
    assert not accuracy_tost(*_table(0, 0, 20), margin=0.05).equivalent  # u = 0.119
    assert accuracy_tost(*_table(0, 0, 100), margin=0.05).equivalent  # u = 0.026


def test_accuracy_score_converges_to_wald():
    ref, pruned = _table(5000, 4000, 100_000)
    s, w = accuracy_tost(ref, pruned, method="score"), accuracy_tost(ref, pruned, method="wald")
    assert (s.low, s.high) == pytest.approx((w.low, w.high), abs=2e-5)


def test_equivalence_is_frozen():
    res = paired_tost([0.0, 1.0, 2.0], [0.1, 1.0, 2.2], margin=1.0)
    assert isinstance(res, Equivalence)
    with pytest.raises(AttributeError):
        res.p = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: paired_tost([1, 2], [1, 2], margin=-0.1), r"margin must be a float in \(0, inf\), got -0.1"),
        (lambda: paired_tost([1, 2], [1, 2], margin=0.1, alpha=0.5), r"alpha must be a float in \(0, 0.5\), got 0.5"),
        (lambda: paired_tost([1, 2], [1, 2, 3], margin=0.1), r"a has n=2 examples but b has n=3"),
        (lambda: paired_tost([1.0], [1.0], margin=0.1), r"n=1 paired examples"),
        (lambda: paired_tost([1, np.nan], [1, 2], margin=0.1), r"a\[1\]=nan; expected finite"),
        (lambda: paired_tost([[1, 2]], [[1, 2]], margin=0.1), r"a has shape \(1, 2\)"),
        (lambda: accuracy_tost([0, 1], [0, 2]), r"correct_pruned\[1\]=2.0; expected 0/1"),
        (lambda: accuracy_tost([0, 1], [0, 1], margin=1.0), r"margin must be a float in \(0, 1\), got 1.0"),
        (lambda: accuracy_tost([0, 1], [0, 1], method="exact"), r"unknown method 'exact'; expected one of \['score', 'wald', 't'\]"),
        (lambda: accuracy_tost([], []), r"n=0"),
        (lambda: accuracy_tost([0, 1], [0, 1], margin=True), r"margin must be a float in \(0, 1\), got True"),
    ],
)
def test_equivalence_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ---- multiplicity ------------------------------------------------------------------------------
def test_adjust_pvalues_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4)
    # holm: 4*0.005, 3*0.01, 2*0.03, 1*0.04 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    # bh:   4*0.005/1, 4*0.01/2, 4*0.03/3, 4*0.04/4 = 0.02, 0.02, 0.04, 0.04 -> running min from the top
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)


@pytest.mark.parametrize("method", ["holm", "bh"])
@pytest.mark.parametrize("seed", range(4))
def test_adjust_pvalues_matches_multipletests(method, seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 80))
    p = rng.uniform(size=m) ** rng.uniform(1, 6)  # some small ones
    p[rng.integers(0, m, size=m // 4)] = p[0]  # ties
    reject, ref, _, _ = multipletests(p, alpha=0.05, method=SM_METHOD[method])
    ours = adjust_pvalues(p, method)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ours <= 0.05, reject)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_adjust_pvalues_nan_passes_through_and_is_not_counted(method):
    rng = np.random.default_rng(7)
    p = rng.uniform(size=30) ** 3
    p[[3, 11, 29]] = np.nan
    ours = adjust_pvalues(p, method)
    ok = ~np.isnan(p)
    assert np.isnan(ours[~ok]).all()
    np.testing.assert_allclose(ours[ok], multipletests(p[ok], method=SM_METHOD[method])[1], atol=1e-15)
    assert np.isnan(adjust_pvalues([np.nan, np.nan], method)).all()


def _random_tests(seed: int, m: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.01, 0.1, size=m)
    est = rng.normal(0, 1, size=m) * se + np.where(rng.uniform(size=m) < 0.3, 3.5 * se, 0.0)
    return pd.DataFrame({"metric": [f"metric{i}" for i in range(m)], "estimate": est, "se": se})


def test_adjust_tests_se_rows_hand_computed():
    t = pd.DataFrame({"cell": ["a", "b", "c"], "estimate": [0.1, -0.02, np.nan], "se": [0.03, 0.04, np.nan]},
                     index=[10, 20, 30])
    out = adjust_tests(t, "holm", alpha=0.05)
    assert list(out.index) == [10, 20, 30] and list(out.cell) == ["a", "b", "c"]
    p = [2 * stats.norm.sf(0.1 / 0.03), 2 * stats.norm.sf(0.02 / 0.04)]
    np.testing.assert_allclose(out.p.iloc[:2], p)
    np.testing.assert_allclose(out.p_adj.iloc[:2], [2 * p[0], max(2 * p[0], p[1])])
    q = stats.norm.ppf(1 - 0.05 / 2 / 2)  # Bonferroni over m = 2 counted tests
    np.testing.assert_allclose(out.ci_low.iloc[:2], [0.1 - q * 0.03, -0.02 - q * 0.04])
    np.testing.assert_allclose(out.ci_level.iloc[:2], 1 - 0.05 / 2)
    assert list(out.changed) == [True, False, False]
    assert (out.m == 2).all() and np.isnan(out.p.iloc[2]) and np.isnan(out.ci_low.iloc[2])
    assert out.attrs["budget"].m == 2


def test_adjust_tests_df_uses_t_reference():
    t = pd.DataFrame({"estimate": [0.3], "se": [0.1], "df": [5.0]})
    out = adjust_tests(t, "none")
    assert out.p.iloc[0] == pytest.approx(2 * stats.t(5).sf(3.0))
    assert out.ci_high.iloc[0] == pytest.approx(0.3 + stats.t(5).ppf(0.975) * 0.1)


@pytest.mark.parametrize("seed", range(3))
def test_adjust_tests_matches_multipletests_and_ci_duality(seed):
    t = _random_tests(seed)
    for method in ("holm", "bh"):
        out = adjust_tests(t, method)
        reject, ref, _, _ = multipletests(out.p, alpha=0.05, method=SM_METHOD[method])
        np.testing.assert_allclose(out.p_adj, ref, atol=1e-15)
        np.testing.assert_array_equal(out.changed, reject)
        excludes = (out.ci_low > 0) | (out.ci_high < 0)
        if method == "bh":
            # Benjamini & Yekutieli 2005: at level 1 - R alpha / m, a z-interval excludes 0 exactly
            # for the R rows BH selects.
            np.testing.assert_array_equal(excludes, out.changed)
            assert out.ci_level.iloc[0] == pytest.approx(1 - out.changed.sum() * 0.05 / len(t))
        else:
            # Bonferroni intervals are conservative companions of Holm: excluding 0 implies changed.
            assert not (excludes & ~out.changed).any()
            assert out.ci_level.iloc[0] == pytest.approx(1 - 0.05 / len(t))


def test_adjust_tests_holm_controls_familywise_error_under_global_null():
    # 2000 families of m = 20 independent null z-tests: P(any flag) <= 0.05 (+ 3 MC standard errors).
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 20))
    p = 2 * stats.norm.sf(np.abs(z))
    any_holm = np.mean([(adjust_pvalues(row, "holm") <= 0.05).any() for row in p])
    any_none = np.mean((p <= 0.05).any(axis=1))
    assert any_holm <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    assert np.mean((p <= 0.05).sum(axis=1)) == pytest.approx(error_budget(20, "none").expected_unadjusted, abs=0.1)
    assert any_none > 0.5  # 1 - 0.95**20 = 0.64: why the correction matters


def test_adjust_tests_bootstrap_samples():
    # s = [-1, 1, 2, 3]: #{s <= 0} = 1, so p = 2 (1 + 1) / (4 + 1) = 0.8
    t = pd.DataFrame({"estimate": [1.0, 0.5], "samples": [np.array([-1.0, 1.0, 2.0, 3.0]), None],
                      "se": [np.nan, 0.1]})
    with pytest.warns(UserWarning, match="B=4 bootstrap replicates"):
        out = adjust_tests(t, "holm")
    assert out.p.iloc[0] == pytest.approx(0.8)
    assert out.p.iloc[1] == pytest.approx(2 * stats.norm.sf(5.0))
    g = 0.05 / 2
    np.testing.assert_allclose([out.ci_low.iloc[0], out.ci_high.iloc[0]],
                               np.quantile([-1.0, 1.0, 2.0, 3.0], [g / 2, 1 - g / 2]))


def test_adjust_tests_bootstrap_resolution_is_enough_with_large_b():
    rng = np.random.default_rng(1)
    b = 2 * 10 / 0.05  # B >= 2m/alpha - 1 for m = 10
    rows = [rng.normal(0.2 if i < 3 else 0.0, 0.02, size=int(b)) for i in range(10)]
    t = pd.DataFrame({"estimate": [r.mean() for r in rows], "samples": rows})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # B = 400 >= 2m/alpha - 1: no resolution warning
        out = adjust_tests(t, "holm")
    assert list(out.changed) == [True] * 3 + [False] * 7


def test_error_budget_statements():
    assert error_budget(63, "none").expected_unadjusted == pytest.approx(3.15)
    assert "P(any false flag) <= 0.05" in error_budget(63, "holm").statement
    assert "3.15 expected without correction" in error_budget(63, "bh").statement
    assert error_budget(63, "holm").bound == 0.05


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: adjust_pvalues([0.1, 1.2]), r"p\[1\]=1.2; expected p-values in \[0, 1\]"),
        (lambda: adjust_pvalues([[0.1]]), r"p has shape \(1, 1\)"),
        (lambda: adjust_pvalues([0.1], method="bonferroni"), r"unknown method 'bonferroni'; expected one of \['holm', 'bh', 'none'\]"),
        (lambda: adjust_tests({"estimate": [1]}), r"tests is a dict; expected a pandas DataFrame"),
        (lambda: adjust_tests(pd.DataFrame({"est": [1]})), r"expected 'estimate'"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0]})), r"expected 'se' or 'samples'"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0], "se": [0.0]})), r"se=0.0 in row 0; expected a finite float > 0"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0], "se": ["x"]})), r"se='x' in row 0; expected a number"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0], "se": [1.0], "df": [0.0]})), r"df=0.0 in row 0"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0], "se": [1.0]}), alpha=1.5), r"alpha must be a float in \(0, 1\), got 1.5"),
        (lambda: adjust_tests(pd.DataFrame({"estimate": [1.0], "samples": [np.array([])]})), r"samples of row 0"),
        (lambda: error_budget(-1), r"m must be an integer >= 0, got -1"),
    ],
)
def test_multiplicity_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ---- misalignment --------------------------------------------------------------------------------
def _study(equivalent: list[bool], changed: dict[tuple[str, int], list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An equivalence frame for cells k = 1..len(equivalent) and a changes frame flagging `changed`."""
    eq = pd.DataFrame({"model": "m", "k": range(1, len(equivalent) + 1), "equivalent": equivalent,
                       "margin": 0.05, "alpha": 0.05, "p": 0.01})
    rows = []
    for k in range(1, len(equivalent) + 1):
        for metric in ("ece", "naopc"):
            flagged = metric in changed.get(("m", k), [])
            rows.append({"model": "m", "k": k, "metric": metric, "estimate": 0.5 if flagged else 0.0, "se": 0.1})
    return eq, adjust_tests(pd.DataFrame(rows), "holm")


def test_misalignment_truth_table():
    eq, ch = _study([True, True, False, False], {("m", 1): ["naopc", "ece"], ("m", 3): ["ece"]})
    out = misalignment(eq, ch, on=["model", "k"])
    t = out.table
    assert list(t.columns) == ["model", "k", "accuracy_equivalent", "changed_metrics", "n_changed", "misaligned", "verdict"]
    assert list(t.misaligned) == [True, False, False, False]
    assert list(t.changed_metrics) == ["ece, naopc", "", "ece", ""]
    assert list(t.n_changed) == [2, 0, 1, 0]
    assert list(t.verdict) == ["misaligned", "equivalent, no change shown", "accuracy not shown equivalent",
                               "accuracy not shown equivalent"]
    # the statement carries every size: margin, TOST alpha, cells, m, correction, expected false flags
    for part in ("+-0.05", "alpha=0.05 per cell", "4 cells", "m=8 tests", "Holm", "0.40 expected without correction",
                 "1 of 4 cells misaligned"):
        assert part in out.statement, part
    assert "\n" not in out.statement


def test_misalignment_from_real_tests():
    ref = np.r_[np.ones(300), np.zeros(100)]
    eq = pd.DataFrame([{"k": k, **dataclasses.asdict(accuracy_tost(ref, np.r_[np.ones(300 - k), np.zeros(100 + k)]))}
                       for k in (1, 30)])
    ch = adjust_tests(pd.DataFrame({"k": [1, 1, 30], "metric": ["ece", "naopc", "ece"], "estimate": [0.1, 0.0, 0.2],
                                    "se": [0.02, 0.1, 0.05]}), "bh")
    out = misalignment(eq, ch, on=["k"])
    assert list(out.table.misaligned) == [True, False]  # k = 30 loses 7.5 points: not equivalent
    assert "Benjamini-Hochberg" in out.statement


def test_misalignment_no_changes_rows():
    eq, _ = _study([True], {})
    out = misalignment(eq, pd.DataFrame(columns=["model", "k", "metric", "changed", "m", "method", "alpha"]), on=["model", "k"])
    assert list(out.table.verdict) == ["equivalent, no change shown"]


def test_misalignment_input_errors():
    eq, ch = _study([True, False], {})
    with pytest.raises(ValueError, match=r"changes lacks column\(s\) \['changed'\]"):
        misalignment(eq, ch.drop(columns="changed"), on=["model", "k"])
    with pytest.raises(ValueError, match=r"equivalence has several rows for cell \('m', 1\)"):
        misalignment(pd.concat([eq, eq.iloc[:1]]), ch, on=["model", "k"])
    with pytest.raises(ValueError, match=r"changes has cell \('m', 2\) with no row in equivalence"):
        misalignment(eq.iloc[:1], ch, on=["model", "k"])
    with pytest.raises(ValueError, match=r"equivalence has margin values \['0.05', '0.1'\]"):
        misalignment(eq.assign(margin=[0.05, 0.1]), ch, on=["model", "k"])
    with pytest.raises(ValueError, match=r"on=\[\]"):
        misalignment(eq, ch, on=[])


# ---- power ---------------------------------------------------------------------------------------
Z975, Z95, Z90, Z80 = 1.959964, 1.644854, 1.281552, 0.841621  # printed normal table


def test_connor_hand_computed():
    # psi = 0.2, d = 0.1: n = (1.959964 sqrt(0.2) + 0.841621 sqrt(0.19))^2 / 0.01 = 154.6 -> 155
    assert n_for_accuracy(0.1, 0.2) == math.ceil((Z975 * math.sqrt(0.2) + Z80 * math.sqrt(0.19)) ** 2 / 0.01) == 155
    d = mde_accuracy(155, 0.2)
    assert d == pytest.approx(0.1, abs=5e-4) and d <= 0.1  # n = 155 > 154.6 sees slightly less than 0.1
    # ~ (z + z) sqrt(psi / n) when d^2 << psi
    assert mde_accuracy(10_000, 0.2) == pytest.approx((Z975 + Z80) * math.sqrt(0.2 / 10_000), rel=2e-3)
    # 5 flips in 100 cannot show any difference: the root lies above psi
    assert mde_accuracy(100, 0.05) == math.inf


def test_tost_sample_size_hand_computed():
    # d = 0: (z_{0.95} + z_{0.90})^2 * 0.2 / 0.05^2 = 685.2 -> 686
    assert n_for_accuracy_equivalence(0.05, 0.2) == math.ceil((Z95 + Z90) ** 2 * 0.2 / 0.0025) == 686
    # d = 0.02: (z_{0.95} + z_{0.80})^2 * (0.2 - 0.0004) / 0.03^2
    assert n_for_accuracy_equivalence(0.05, 0.2, true_diff=0.02) == math.ceil((Z95 + Z80) ** 2 * 0.1996 / 0.0009)
    # power = 0.5: the expected (1 - 2 alpha) CI half-width equals margin - |d|
    n = n_for_accuracy_equivalence(0.05, 0.2, true_diff=0.02, power=0.5)
    assert Z95 * math.sqrt(0.1996 / n) <= 0.03 < Z95 * math.sqrt(0.1996 / (n - 1))


@pytest.mark.parametrize("n", [6, 20, 100])
def test_mde_paired_matches_statsmodels(n):
    # statsmodels solves with its own root finder: agreement to its tolerance (observed < 4e-6 rel)
    es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert mde_paired(n, 0.3) == pytest.approx(es * 0.3, rel=1e-5)
    es_z = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=0)
    # the closed form ignores the far tail (Phi(-4.8) ~ 1e-6): same MDE to ~1e-6
    assert mde_paired(n, 0.3, method="normal") == pytest.approx(es_z * 0.3, rel=1e-5)
    assert mde_paired(n, 0.3, method="normal") == pytest.approx((Z975 + Z80) * 0.3 / math.sqrt(n), rel=1e-6)


def test_ci_halfwidth_and_inverse():
    assert ci_halfwidth(100, 0.5, method="normal") == pytest.approx(Z975 * 0.05, rel=1e-6)
    assert ci_halfwidth(6, 1.0) == pytest.approx(stats.t.ppf(0.975, 5) / math.sqrt(6))
    for method in ("t", "normal"):
        n = n_for_halfwidth(0.1, 0.4, method=method)
        assert ci_halfwidth(n, 0.4, method=method) <= 0.1 < ci_halfwidth(max(n - 1, 2), 0.4, method=method)
    assert n_for_halfwidth(0.1, 0.4, method="normal") == math.ceil((Z975 * 0.4 / 0.1) ** 2)


def test_power_by_simulation():
    # 2000 seeded simulated studies at each MDE: observed power within 0.03 of the target
    # (Monte-Carlo standard error sqrt(0.8 * 0.2 / 2000) = 0.009).
    rng = np.random.default_rng(2026)
    reps = 2000
    # paired t-test, small n where the normal formula would be off
    for n in (6, 20):
        mde = mde_paired(n, 1.0)
        d = rng.normal(mde, 1.0, size=(reps, n))
        t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
        assert np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1)) == pytest.approx(0.8, abs=0.03), n
    # McNemar (asymptotic, no continuity correction) at Connor's MDE
    n, psi = 400, 0.2
    d = mde_accuracy(n, psi)
    g, l, _ = rng.multinomial(n, [(psi + d) / 2, (psi - d) / 2, 1 - psi], size=reps).T
    z = (g - l) / np.sqrt(np.maximum(g + l, 1))
    assert np.mean(np.abs(z) > Z975) == pytest.approx(0.8, abs=0.03)
    # Wald TOST at the n it asks for, true difference 0 and 0.02
    for true in (0.0, 0.02):
        n = n_for_accuracy_equivalence(0.05, psi, true_diff=true)
        g, l, _ = rng.multinomial(n, [(psi + true) / 2, (psi - true) / 2, 1 - psi], size=reps).T
        dh = (g - l) / n
        se = np.sqrt(((g + l) / n - dh**2) / n)
        passed = (dh - Z95 * se > -0.05) & (dh + Z95 * se < 0.05)
        assert passed.mean() == pytest.approx(0.8, abs=0.03), true


def test_power_table_columns():
    pilot = pd.DataFrame({"metric": ["accuracy", "ece", "naopc"], "n": [100, 100, 6],
                          "p_disc": [0.1, np.nan, np.nan], "sd": [np.nan, 0.05, 0.3]})
    out = power_table(pilot)
    assert list(out.columns) == ["metric", "n", "p_disc", "sd", "mde", "ci_halfwidth", "n_equivalence",
                                 "n_noninferiority", "alpha", "power"]
    assert out.mde.iloc[0] == pytest.approx(mde_accuracy(100, 0.1))
    assert out.ci_halfwidth.iloc[0] == pytest.approx(Z975 * math.sqrt(0.1 / 100), rel=1e-6)
    assert out.n_equivalence.iloc[0] == n_for_accuracy_equivalence(0.05, 0.1)
    assert out.mde.iloc[2] == pytest.approx(mde_paired(6, 0.3)) and np.isnan(out.n_equivalence.iloc[2])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mde_accuracy(0, 0.1), r"n must be an integer >= 1, got 0"),
        (lambda: mde_accuracy(100, 0.0), r"p_disc must be a float in \(0, 1\], got 0.0"),
        (lambda: mde_accuracy(100, 0.1, power=0.01), r"power must be a float in \(0.05, 1\), got 0.01"),
        (lambda: n_for_accuracy(0.3, 0.2), r"mde must be a float in \(0, 0.2\], got 0.3"),
        (lambda: n_for_accuracy_equivalence(0.05, 0.2, true_diff=0.05), r"true_diff must be a float in \(-0.05, 0.05\), got 0.05"),
        (lambda: mde_paired(1, 1.0), r"n must be an integer >= 2, got 1"),
        (lambda: mde_paired(10, -1.0), r"sd must be a float in \(0, inf\), got -1.0"),
        (lambda: mde_paired(10, 1.0, method="z"), r"unknown method 'z'; expected one of \['t', 'normal'\]"),
        (lambda: ci_halfwidth(10, 1.0, alpha=0), r"alpha must be a float in \(0, 1\), got 0"),
        (lambda: n_for_halfwidth(0.0, 1.0), r"halfwidth must be a float in \(0, inf\), got 0.0"),
        (lambda: power_table(pd.DataFrame({"metric": ["a"], "n": [10]})), r"expected 'metric', 'n' and 'p_disc' or 'sd'"),
        (lambda: power_table(pd.DataFrame({"metric": ["a"], "n": [10], "p_disc": [0.1], "sd": [0.2]})),
         r"pilot row 0 \('a'\) has p_disc=0.1 and sd=0.2; expected exactly one"),
    ],
)
def test_power_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ---- non-inferiority ("keeps accuracy") ---------------------------------------------------------
from toolkit.decisions import (  # noqa: E402
    NONINFERIORITY_MARGINS,
    accuracy_noninferiority,
    noninferiority_from_counts,
    noninferiority_table,
)


@pytest.mark.parametrize("g, l, n", [(30, 50, 400), (10, 12, 200), (60, 40, 400), (5, 0, 50)])
def test_noninferiority_wald_bound_by_hand(g, l, n):
    # One-sided 95% Wald bound for a paired difference (Liu et al. 2002): d - z_.95 sqrt((psi - d^2) / n)
    d, psi = (g - l) / n, (g + l) / n
    low = d - 1.6448536269514722 * math.sqrt((psi - d * d) / n)
    for margin in (0.02, 0.05, 0.10):
        r = noninferiority_from_counts(g, l, n, margin, 0.05, method="wald")
        assert r.low == pytest.approx(low, abs=1e-12)
        assert r.noninferior == (low > -margin)
        assert r.p == pytest.approx(stats.norm.sf((d + margin) / math.sqrt((psi - d * d) / n)))


def _tango_p_by_hand(g, l, n, d0):
    """Tango's score p for H0: d <= d0, the restricted MLE found numerically (no closed form used)."""
    def negll(pl):
        pg = pl + d0
        return -(g * math.log(pg) + l * math.log(pl) + (n - g - l) * math.log(1 - pg - pl))
    lo, hi = max(1e-12, -d0 + 1e-12), (1 - d0) / 2 - 1e-12
    pl = optimize.minimize_scalar(negll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    t = (g - l - n * d0) / math.sqrt(n * (2 * pl + d0 * (1 - d0)))
    return stats.norm.sf(t)


@pytest.mark.parametrize("g, l, n", [(30, 50, 400), (60, 40, 400), (12, 20, 100)])
def test_noninferiority_score_p_against_a_numerical_rmle(g, l, n):
    for margin in NONINFERIORITY_MARGINS:
        r = noninferiority_from_counts(g, l, n, margin)
        assert r.p == pytest.approx(_tango_p_by_hand(g, l, n, -margin), rel=1e-5)
        assert r.noninferior == (r.low > -margin)


def test_noninferiority_is_one_arm_of_tost():
    ref, pruned = _table(40, 25, 400)
    tost = accuracy_tost(ref, pruned, margin=0.05)
    ni = accuracy_noninferiority(ref, pruned, margin=0.05)
    assert (ni.low, ni.p, ni.estimate) == (tost.low, tost.p_lower, tost.estimate)


@pytest.mark.parametrize("method", ["score", "wald"])
def test_a_gain_never_fails_noninferiority_at_study_size(method):
    # d = +0.04 and +0.10 at n = 400 (the replication's two SmolLM2 loss-delta gains), every
    # possible discordance: TOST fails +0.10 on the upper side, non-inferiority passes at 0.05 and 0.10.
    n = 400
    for diff in (16, 41):
        for disc in range(diff, n + 1, 2):
            g, l = (disc + diff) // 2, (disc - diff) // 2
            for margin in (0.05, 0.10):
                assert noninferiority_from_counts(g, l, n, margin, method=method).noninferior, (g, l, margin)
    ref, pruned = _table(60, 19, 400)  # d = +0.1025
    assert not accuracy_tost(ref, pruned, margin=0.05).equivalent
    assert accuracy_noninferiority(ref, pruned, margin=0.05).noninferior
    # more gains never lower the bound
    lows = [noninferiority_from_counts(g, 20, 400).low for g in range(0, 100, 5)]
    assert all(b >= a for a, b in zip(lows, lows[1:]))


def test_noninferiority_table_has_one_row_per_margin():
    ref, pruned = _table(10, 20, 400)  # d = -0.025, 7.5% discordant: Wald bound -0.047
    t = noninferiority_table(ref, pruned)
    assert list(t["margin"]) == [0.02, 0.05, 0.10]
    assert list(t["noninferior"]) == [False, True, True]
    assert list(t["verdict"]) == ["not shown to keep accuracy", "keeps accuracy", "keeps accuracy"]
    assert set(t.columns) >= {"estimate", "low", "p", "alpha", "n", "gains", "losses", "method"}


def test_noninferiority_refuses_bad_counts():
    with pytest.raises(InputError, match="gains \\+ losses"):
        noninferiority_from_counts(300, 200, 400)
    with pytest.raises(InputError, match="method"):
        noninferiority_from_counts(3, 2, 40, method="t")


# ---- collapsed cells ---------------------------------------------------------------------------
from toolkit.decisions import CHANCE_TOLERANCE, MAX_CLASS_SHARE, collapsed  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402


def test_constant_predictor_is_collapsed():
    labels = np.r_[np.zeros(200, int), np.ones(200, int)]
    c = collapsed(np.zeros(400, int), labels, 2)
    assert c.collapsed and c.reasons == ("one class", "chance")
    assert (c.majority_share, c.majority_class, c.balanced_accuracy) == (1.0, 0, 0.5)


def test_a_working_model_is_not_collapsed_and_ba_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, labels, 1 - labels)
    c = collapsed(pred, labels, 2, label_mass=np.full(400, 0.3))
    assert not c.collapsed and c.reasons == ()
    assert c.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, pred), abs=1e-12)
    assert c.mean_label_mass == pytest.approx(0.3)


def test_each_rule_fires_at_its_stated_threshold():
    assert (MAX_CLASS_SHARE, CHANCE_TOLERANCE) == (0.95, 0.05)
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    # 96 of 100 predicted 0, yet the 4 ones are right: BA = (1 + 4/50) / 2 = 0.54 <= 0.55 -> chance too
    pred = np.r_[np.zeros(96, int), np.ones(4, int)]
    assert collapsed(pred, labels, 2).reasons == ("one class", "chance")
    # exactly 95% in one class is not "more than 95%"
    pred = np.r_[np.zeros(50, int), np.zeros(45, int), np.ones(5, int)]
    assert "one class" not in collapsed(pred, labels, 2).reasons
    # balanced but no better than chance + 0.05: 28 of 50 right per class -> BA 0.56 passes, 27 -> 0.54 fails
    for right, fires in ((28, False), (27, True)):
        pred = np.r_[np.zeros(right, int), np.ones(50 - right, int), np.ones(right, int), np.zeros(50 - right, int)]
        assert ("chance" in collapsed(pred, labels, 2).reasons) == fires
    # label mass decides nothing by default: a working model far off format (Gemma zero-shot on yelp,
    # pruned: 0.002% label mass at 0.69-0.94 accuracy) is not collapsed; the rule is opt-in
    good = labels.copy()
    assert collapsed(good, labels, 2, label_mass=np.full(100, 2e-5)).reasons == ()
    assert collapsed(good, labels, 2, label_mass=np.full(100, 2e-5), label_mass_floor=1e-3).reasons == ("label mass",)
    assert collapsed(good, labels, 2, label_mass=np.full(100, 3e-3), label_mass_floor=1e-3).reasons == ()


def test_collapsed_refuses_bad_input():
    with pytest.raises(InputError, match="n_classes"):
        collapsed([0, 1, 2], [0, 1, 2], 2)
    with pytest.raises(InputError, match="same examples"):
        collapsed([0, 1], [0, 1, 1], 2)


# ---- exact tests, smallest attainable p, gated families ---------------------------------------
import itertools  # noqa: E402

from toolkit.decisions import gated_family, runnable, sign_flip_test, smallest_p  # noqa: E402


def _brute_force_sign_flip(d, alternative):
    d = np.asarray(d, float)
    t = d.sum()
    ts = np.array([np.dot(s, d) for s in itertools.product((1.0, -1.0), repeat=d.size)])
    eps = 1e-9 * np.abs(d).sum()
    if alternative == "greater":
        return np.mean(ts >= t - eps)
    if alternative == "less":
        return np.mean(ts <= t + eps)
    return np.mean(np.abs(ts) >= abs(t) - eps)


@pytest.mark.parametrize("seed, n", [(0, 4), (1, 7), (2, 12)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_equals_brute_force_and_scipy(seed, n, alternative):
    d = np.random.default_rng(seed).normal(0.2, 1.0, n).round(3)  # rounding makes ties possible
    res = sign_flip_test(d, alternative)
    assert res.p == pytest.approx(_brute_force_sign_flip(d, alternative), abs=1e-12)
    ref = stats.permutation_test((d,), lambda x, axis: np.sum(x, axis=axis), permutation_type="samples",
                                 alternative=alternative, n_resamples=np.inf)
    assert res.p == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_reaches_its_smallest_p_and_no_lower():
    for n in (4, 12):
        d = np.arange(1, n + 1, dtype=float)  # every difference positive: the most extreme data
        assert sign_flip_test(d, "two-sided").p == pytest.approx(2 / 2 ** n) == smallest_p("sign_flip", n)
        assert sign_flip_test(d, "greater").p == pytest.approx(1 / 2 ** n) == smallest_p("sign_flip", n, "greater")
    with pytest.raises(InputError, match="at most n=20"):
        sign_flip_test(np.ones(21))


def test_smallest_p_by_hand():
    assert smallest_p("sign_flip", 4) == 0.125  # the replication's NAOPC: 4 sentences
    assert smallest_p("sign_flip", 12) == pytest.approx(4.8828125e-4)  # its soft metrics: above 0.05/162
    assert smallest_p("bootstrap", 400, n_resamples=500) == pytest.approx(2 / 501)
    assert smallest_p("bootstrap", 400, "greater", n_resamples=999) == pytest.approx(1 / 1000)
    assert smallest_p("permutation", 4, n_resamples=10_000) == 0.125  # never below the exact 2 / 2^n
    assert smallest_p("t", 400) == 0.0
    with pytest.raises(InputError, match="n_resamples"):
        smallest_p("bootstrap", 10)


def test_runnable_is_the_largest_self_consistent_set():
    # alpha = 0.05: {1e-4, 1e-3, 0.01} -> k = 3 needs 0.01 <= 0.0167: kept; 0.125 needs <= 0.0125: dropped
    keep = runnable(np.array([0.125, 1e-3, 0.01, 1e-4]), 0.05)
    assert keep.tolist() == [False, True, True, True]
    # ties go together: two tests at 0.02 fit alone (0.02 <= 0.025) ... with a third 0.0 test, 0.02 > 0.0167
    assert runnable(np.array([0.02, 0.02]), 0.05).tolist() == [True, True]
    assert runnable(np.array([0.0, 0.02, 0.02]), 0.05).tolist() == [True, False, False]


def _family_frame(seed=0):
    rng = np.random.default_rng(seed)
    n_rows = 40
    return pd.DataFrame({
        "cell": np.repeat(np.arange(10), 4),
        "metric": np.tile(["ece", "brier", "naopc", "soft"], 10),
        "p": rng.uniform(0, 0.02, n_rows) ** 2,
        "primary_claim": np.tile([True, False, True, True], 10),
        "gate": np.repeat(rng.random(10) < 0.5, 4),
        "test": np.tile(["t", "t", "sign_flip", "bootstrap"], 10),
        "n": np.tile([400, 400, 4, 12], 10),
        "alternative": np.tile(["greater", "two-sided", "greater", "greater"], 10),
        "n_resamples": np.tile([np.nan, np.nan, np.nan, 5000.0], 10),
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gated_family_matches_statsmodels_within_each_family(seed):
    tests = _family_frame(seed)
    out = gated_family(tests, alpha=0.05)
    assert (out["family"] == "primary").tolist() == (tests["primary_claim"] & tests["gate"]).tolist()
    assert out.loc[out["metric"] == "naopc", "refused"].all()  # 4 pairs, one-sided: 1/16 > alpha/m for any m > 0
    assert out.loc[out["metric"] == "naopc", "reason"].str.contains("cannot reject").all()
    for family, sm in (("primary", "holm"), ("exploratory", "fdr_bh")):
        kept = out[(out["family"] == family) & ~out["refused"]]
        reject, p_adj, _, _ = multipletests(kept["p"], alpha=0.05, method=sm)
        np.testing.assert_allclose(kept["p_adj"], p_adj, rtol=1e-12)
        assert kept["rejected"].tolist() == reject.tolist()
        assert (kept["m"] == len(kept)).all() and (kept["threshold"] == 0.05 / len(kept)).all()
    assert not out.loc[out["refused"], "rejected"].any() and out.loc[out["refused"], "p_adj"].isna().all()


def test_a_failed_gate_sends_primary_claims_to_the_exploratory_family():
    tests = _family_frame(0)
    tests["gate"] = False
    out = gated_family(tests)
    assert set(out["family"]) == {"exploratory"} and set(out["method"]) == {"bh"}
    with pytest.raises(InputError, match="lacks columns"):
        gated_family(tests.drop(columns="gate"))


def test_n_for_noninferiority_by_hand_and_by_simulation():
    from toolkit.decisions import n_for_accuracy_noninferiority

    # (z_.95 + z_.8)^2 * 0.379 / 0.05^2 = 937.3 -> 938 (the replication's pooled discordance)
    assert n_for_accuracy_noninferiority(0.05, 0.379) == math.ceil((1.6448536 + 0.8416212) ** 2 * 0.379 / 0.0025)
    assert n_for_accuracy_noninferiority(0.05, 0.379) < n_for_accuracy_equivalence(0.05, 0.379)
    assert n_for_accuracy_noninferiority(0.05, 0.2, true_diff=0.02) < n_for_accuracy_noninferiority(0.05, 0.2)
    # simulated power of the Wald non-inferiority test at that n, true d = 0, psi = 0.2: about 0.8
    n = n_for_accuracy_noninferiority(0.05, 0.2)
    rng = np.random.default_rng(0)
    cells = rng.multinomial(n, [0.1, 0.1, 0.8], size=4000)
    passed = [noninferiority_from_counts(int(g), int(l), n, 0.05, method="wald").noninferior for g, l, _ in cells]
    assert 0.77 < np.mean(passed) < 0.83
