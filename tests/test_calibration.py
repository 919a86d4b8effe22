"""Tests for toolkit.metrics.calibration against hand computations, brute force and other libraries.

References: torchmetrics (ECE l1/l2/max, equal-width bins), the authors' package of Kumar et al.
2019 (`uncertainty-calibration`, module `calibration`: equal-width/equal-mass ECE, debiased L2,
marginal CE, selective accuracy), `relplot` (Blasiok & Nakkiran's smooth ECE), torch's NLL,
and brute-force loops written here.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from toolkit.metrics.calibration import (
    TemperatureScaler,
    accuracy,
    accuracy_coverage,
    aurc,
    brier,
    calibration_report,
    classwise_ece,
    compare_calibration,
    debiased_l2_ce,
    ece,
    nll,
    probs_labels,
    reliability_table,
    smooth_ece,
    smooth_ece_bandwidth,
    with_temperature,
)
from toolkit.decisions.stats import resample_counts


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sample_labels(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw y_i ~ Categorical(q_i)."""
    return (q.cumsum(axis=1) > rng.uniform(size=(q.shape[0], 1))).argmax(axis=1)


def _random_case(n: int, c: int, seed: int, *, scale: float = 2.0, temp: float = 1.5):
    """Probabilities softmax(z) with labels from softmax(z / temp): over-confident when temp > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * scale
    return _softmax(z), _sample_labels(_softmax(z / temp), rng)


def _predict_df(probs: np.ndarray, labels: np.ndarray, names=("negative", "positive")) -> pd.DataFrame:
    df = pd.DataFrame({"id": [f"ex{i}" for i in range(len(labels))], "label": labels, "pred": probs.argmax(1)})
    for c, name in enumerate(names):
        df[f"p_{name}"] = probs[:, c]
    df["label_mass"] = 0.5
    df["confidence"] = probs.max(axis=1)
    df["correct"] = df["pred"] == df["label"]
    df.attrs["label_names"] = tuple(names)
    return df


# A 5-example, 3-class case computable on paper (n_bins=5, edges 0.2, 0.4, 0.6, 0.8):
#   conf 0.9 right, 1.0 wrong -> bin (0.8, 1]: conf 0.95, acc 0.5, gap 0.45, weight 2/5
#   conf 0.8 wrong (on an edge: lower bin) -> bin (0.6, 0.8]: conf 0.8, acc 0, gap 0.8, weight 1/5
#   conf 0.6 right, 0.5 right -> bin (0.4, 0.6]: conf 0.55, acc 1, gap 0.45, weight 2/5
HAND_P = np.array(
    [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]
)
HAND_Y = np.array([0, 1, 0, 1, 2])


# ---------------------------------------------------------------------------------------------
# ECE family: hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_ece_hand_computed():
    assert ece(HAND_P, HAND_Y, n_bins=5) == pytest.approx(0.4 * 0.45 + 0.2 * 0.8 + 0.4 * 0.45)  # 0.52
    assert ece(HAND_P, HAND_Y, n_bins=5, norm="max") == pytest.approx(0.8)
    rmsce = math.sqrt(0.4 * 0.45**2 + 0.2 * 0.8**2 + 0.4 * 0.45**2)
    assert ece(HAND_P, HAND_Y, n_bins=5, norm="l2") == pytest.approx(rmsce)


def test_reliability_table_hand_computed_and_sums_to_ece():
    t = reliability_table(HAND_P, HAND_Y, n_bins=5)
    assert list(t.columns) == ["bin", "lower", "upper", "count", "confidence", "accuracy", "gap"]
    assert t["count"].tolist() == [0, 0, 2, 1, 2]
    np.testing.assert_allclose(t["confidence"].iloc[2:], [0.55, 0.8, 0.95])
    np.testing.assert_allclose(t["accuracy"].iloc[2:], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(t["lower"], [0, 0.2, 0.4, 0.6, 0.8])
    assert t["confidence"].iloc[:2].isna().all()
    p, y = _random_case(400, 3, seed=0)
    for binning in ("width", "mass"):
        t = reliability_table(p, y, n_bins=10, binning=binning)
        full = t[t["count"] > 0]
        assert full["count"].sum() == 400
        assert (full["count"] / 400 * full["gap"].abs()).sum() == pytest.approx(ece(p, y, n_bins=10, binning=binning))


def test_confidence_one_goes_in_last_bin_not_a_phantom_bin():
    # conf 0.95 right and 1.0 wrong share the last of 10 bins: conf 0.975, acc 0.5 -> ECE 0.475.
    # A phantom bin for 1.0 (torchmetrics' bucketize(right=True)) would give 0.5*0.05 + 0.5*1 = 0.525.
    p = np.array([[0.95, 0.05], [1.0, 0.0]])
    y = np.array([0, 1])
    assert ece(p, y, n_bins=10) == pytest.approx(0.475)
    t = reliability_table(p, y, n_bins=10)
    assert len(t) == 10 and t["count"].tolist() == [0] * 9 + [2]


def test_zero_probability_lands_in_first_bin_for_classwise():
    # class 1 gets p = 0 for every example; those must be counted (bin [0, 0.5]), not dropped
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([0, 1])
    # class 0: bin (0.5, 1]: conf 1, acc 0.5 -> 0.5; class 1: bin [0, 0.5]: conf 0, acc 0.5 -> 0.5
    assert classwise_ece(p, y, n_bins=2) == pytest.approx(0.5)


def test_empty_bins_contribute_nothing():
    p = np.array([[0.7, 0.3]] * 4)
    y = np.array([0, 0, 0, 1])
    for n_bins in (1, 3, 50):
        assert ece(p, y, n_bins=n_bins) == pytest.approx(0.05)
        assert ece(p, y, n_bins=n_bins, norm="max") == pytest.approx(0.05)


def test_mass_binning_equal_counts():
    p, y = _random_case(300, 2, seed=1)
    t = reliability_table(p, y, n_bins=15, binning="mass")
    assert t["count"].tolist() == [20] * 15


# ---------------------------------------------------------------------------------------------
# ECE family: other implementations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize(("n", "c", "seed"), [(1000, 2, 0), (777, 5, 1), (50, 3, 2)])
def test_ece_matches_torchmetrics(norm, n, c, seed):
    from torchmetrics.functional.classification import multiclass_calibration_error

    # torchmetrics computes in float32: feed float32 probabilities (exactly representable in both)
    z = np.random.default_rng(seed).normal(size=(n, c)) * 2
    p32 = torch.softmax(torch.tensor(z, dtype=torch.float32), dim=1)
    y = _sample_labels(_softmax(z / 1.5), np.random.default_rng(seed + 100))
    ref = multiclass_calibration_error(p32, torch.tensor(y), num_classes=c, n_bins=15, norm=norm).item()
    # atol: float32 accumulation in torchmetrics (observed max 6e-8)
    assert ece(p32.numpy(), y, n_bins=15, norm=norm) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize(("n", "c", "seed"), [(1000, 3, 0), (997, 2, 1), (10, 4, 2), (7, 3, 3)])
def test_binned_errors_match_kumar_reference(n, c, seed):
    U = pytest.importorskip("calibration.utils")  # uncertainty-calibration==0.1.4 (Kumar et al.)
    p, y = _random_case(n, c, seed)
    width, mass = U.get_equal_prob_bins, U.get_equal_bins

    def ref(pw, debias, scheme, mode):
        return U.lower_bound_scaling_ce(p, y, p=pw, debias=debias, num_bins=15, binning_scheme=scheme, mode=mode)

    tol = 1e-12  # both float64; cumulative-sum differencing here, per-bin means there
    assert ece(p, y) == pytest.approx(ref(1, False, width, "top-label"), abs=tol)
    assert ece(p, y, binning="mass") == pytest.approx(ref(1, False, mass, "top-label"), abs=tol)
    assert ece(p, y, norm="l2") == pytest.approx(ref(2, False, width, "top-label"), abs=tol)
    assert ece(p, y, norm="l2", binning="mass") == pytest.approx(ref(2, False, mass, "top-label"), abs=tol)
    assert classwise_ece(p, y) == pytest.approx(ref(1, False, width, "marginal"), abs=tol)
    assert classwise_ece(p, y, binning="mass") == pytest.approx(ref(1, False, mass, "marginal"), abs=tol)
    assert debiased_l2_ce(p, y) == pytest.approx(ref(2, True, mass, "top-label"), abs=tol)
    assert debiased_l2_ce(p, y, mode="marginal") == pytest.approx(ref(2, True, mass, "marginal"), abs=tol)


def test_mass_binning_with_ties_matches_kumar_reference():
    U = pytest.importorskip("calibration.utils")
    rng = np.random.default_rng(7)
    p = np.round(rng.dirichlet([1, 1, 1], size=500), 1)  # heavy ties in confidence
    p /= p.sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, 500)
    assert ece(p, y, binning="mass") == pytest.approx(U.get_ece_em(p, y), abs=1e-12)
    assert classwise_ece(p, y, binning="mass") == pytest.approx(U.get_ece_em(p, y, mode="marginal"), abs=1e-12)


def test_debiased_l2_hand_computed():
    # one bin (n_bins=1) of 4 points: conf mean 0.7, acc 0.75 ->
    # (0.7 - 0.75)^2 - 0.75 * 0.25 / 3 = 0.0025 - 0.0625 < 0 -> clipped to 0
    p = np.array([[0.6, 0.4], [0.7, 0.3], [0.7, 0.3], [0.8, 0.2]])
    y = np.array([0, 0, 0, 1])
    assert debiased_l2_ce(p, y, n_bins=1) == 0.0
    # 10 points at conf 0.9, 5 right: (0.9 - 0.5)^2 - 0.25 / 9
    p = np.array([[0.9, 0.1]] * 10)
    y = np.array([0] * 5 + [1] * 5)
    assert debiased_l2_ce(p, y, n_bins=1) == pytest.approx(math.sqrt(0.16 - 0.25 / 9))


# ---------------------------------------------------------------------------------------------
# Smooth ECE
# ---------------------------------------------------------------------------------------------


def _smooth_brute(f: np.ndarray, r: np.ndarray, sigma: float) -> float:
    """int_0^1 |(1/n) sum_i r_i K(t, f_i)| dt by direct summation of reflected Gaussians
    (images m = -3..3) on a 20001-point grid and the trapezoid rule."""
    t = np.linspace(0.0, 1.0, 20001)
    s = np.zeros_like(t)
    for fi, ri in zip(f, r):
        for m in range(-3, 4):
            for center in (fi + 2 * m, -fi + 2 * m):
                s += ri * np.exp(-((t - center) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    return float(np.trapezoid(np.abs(s / f.size), t))


def _top(p, y):
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)


@pytest.mark.parametrize("sigma", [0.3, 0.1, 0.04, 0.015])
def test_smooth_ece_fixed_sigma_matches_brute_force(sigma):
    p, y = _random_case(30, 3, seed=4, temp=1.2)
    f, a = _top(p, y)
    # atol: trapezoid error of the brute force on a 5e-5 grid (observed < 2e-8 at sigma = 0.01)
    assert smooth_ece(p, y, sigma=sigma) == pytest.approx(_smooth_brute(f, a - f, sigma), abs=1e-6)


def test_smooth_ece_is_a_fixed_point_by_brute_force():
    p, y = _random_case(30, 2, seed=5, temp=0.8)
    f, a = _top(p, y)
    sigma = smooth_ece_bandwidth(p, y)
    assert 1e-3 < sigma < 1
    assert smooth_ece(p, y) == pytest.approx(sigma, abs=1e-10)
    assert _smooth_brute(f, a - f, sigma) == pytest.approx(sigma, abs=1e-6)


def test_smooth_ece_hand_computed():
    # one example: s(t) = r K(t, f) integrates to |r| for every sigma, so sigma* = |r| = smECE
    assert smooth_ece(np.array([[0.7, 0.3]]), np.array([0])) == pytest.approx(0.3, abs=1e-10)
    assert smooth_ece_bandwidth(np.array([[0.7, 0.3]]), np.array([1])) == pytest.approx(0.7, abs=1e-10)
    # two far-apart examples whose kernels do not overlap at sigma = 0.02 (25 sigma apart):
    # confidently wrong at f = 1 (r = -1) and right at f = 0.5 (r = 0.5): (1 + 0.5) / 2 = 0.75
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert smooth_ece(p, np.array([1, 0]), sigma=0.02) == pytest.approx(0.75, abs=1e-9)


def test_smooth_ece_matches_relplot_on_interior_confidences():
    relplot = pytest.importorskip("relplot")
    rng = np.random.default_rng(0)
    for _ in range(5):
        n = int(rng.integers(200, 2000))
        top = rng.uniform(0.45, 0.8, size=n)
        p = np.stack([top, (1 - top) / 2, (1 - top) / 2], axis=1)
        y = np.where(rng.uniform(size=n) < top**1.2, 0, 1)
        f, a = _top(p, y)
        for sigma in (0.02, 0.05):
            # atol: relplot bins f linearly onto a 1001-point grid (observed max 1e-5)
            assert smooth_ece(p, y, sigma=sigma) == pytest.approx(relplot.smECE_sigma(f, a, sigma), abs=5e-5)


def test_smooth_ece_close_to_relplot_fixed_point():
    relplot = pytest.importorskip("relplot")
    for seed in range(4):
        p, y = _random_case(800, 3, seed=seed, temp=1.3)
        f, a = _top(p, y)
        value, width = relplot.smECE(f, a, return_width=True)
        # relplot bisects sigma to 2^-10 and returns the upper end; its grid reflects mass at the
        # boundary grid point only once (confidences near 1 lose weight: see the hand case above,
        # where relplot gives 0.671 for 0.75). Observed differences here < 1.5e-3.
        assert smooth_ece_bandwidth(p, y) == pytest.approx(width, abs=2**-10 + 3e-3)
        assert smooth_ece(p, y) == pytest.approx(value, abs=3e-3)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def test_calibrated_data_ece_goes_to_zero_as_n_grows():
    rng = np.random.default_rng(11)
    values = {}
    for n in (300, 30_000):
        p = _softmax(rng.normal(size=(n, 3)) * 2)
        y = _sample_labels(p, rng)  # labels drawn from the model itself: perfectly calibrated
        values[n] = (ece(p, y), ece(p, y, binning="mass"), smooth_ece(p, y))
        # debiased L2 is unbiased for CE^2, whose true binned value is 0 here; the sqrt of a
        # noisy ~1e-4 estimate is not monotone in n, so only its size is checked
        assert debiased_l2_ce(p, y) < 0.02
    assert all(big < small for big, small in zip(values[30_000], values[300]))
    assert max(values[30_000]) < 0.015


def test_brier_nll_perfect_and_worst():
    y = np.array([0, 2, 1])
    onehot = np.eye(3)[y]
    assert brier(onehot, y) == 0.0
    assert nll(onehot, y) == 0.0
    assert accuracy(onehot, y) == 1.0
    wrong = np.eye(3)[(y + 1) % 3]
    assert brier(wrong, y) == 2.0
    assert nll(wrong, y) == pytest.approx(-math.log(1e-15))  # floored, finite


def test_brier_nll_accuracy_match_independent_computations():
    p, y = _random_case(500, 4, seed=3)
    expected_brier = np.mean([sum((p[i, c] - (c == y[i])) ** 2 for c in range(4)) for i in range(500)])
    assert brier(p, y) == pytest.approx(expected_brier, rel=1e-12)
    ref_nll = torch.nn.functional.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y)).item()
    assert nll(p, y) == pytest.approx(ref_nll, rel=1e-12)
    assert accuracy(p, y) == pytest.approx(np.mean(np.argmax(p, axis=1) == y))


# ---------------------------------------------------------------------------------------------
# Weighted (vectorised bootstrap) path == explicit resampling
# ---------------------------------------------------------------------------------------------

WEIGHTED = {
    "ece": lambda p, y, **kw: ece(p, y, **kw),
    "ece_l2": lambda p, y, **kw: ece(p, y, norm="l2", **kw),
    "mce": lambda p, y, **kw: ece(p, y, norm="max", **kw),
    "ece_mass": lambda p, y, **kw: ece(p, y, binning="mass", n_bins=7, **kw),
    "mce_mass": lambda p, y, **kw: ece(p, y, binning="mass", norm="max", **kw),
    "classwise": lambda p, y, **kw: classwise_ece(p, y, **kw),
    "classwise_mass": lambda p, y, **kw: classwise_ece(p, y, binning="mass", **kw),
    "debiased": lambda p, y, **kw: debiased_l2_ce(p, y, n_bins=5, **kw),
    "debiased_marginal": lambda p, y, **kw: debiased_l2_ce(p, y, n_bins=5, mode="marginal", **kw),
    "smooth": lambda p, y, **kw: smooth_ece(p, y, **kw),
    "brier": lambda p, y, **kw: brier(p, y, **kw),
    "nll": lambda p, y, **kw: nll(p, y, **kw),
    "accuracy": lambda p, y, **kw: accuracy(p, y, **kw),
}


@pytest.mark.parametrize("n", [120, 9])  # n=9 < n_bins: empty bins, also at the end of the last row
@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_weighted_path_equals_np_take_resampling(name, n):
    fn = WEIGHTED[name]
    p, y = _random_case(n, 3, seed=8)
    p = np.round(p, 2)  # ties in confidence exercise the mass-binning order statistics
    p /= p.sum(axis=1, keepdims=True)
    idx = np.random.default_rng(0).integers(0, n, size=(25, n))
    fast = fn(p, y, weights=resample_counts(idx, n))
    slow = np.array([fn(np.take(p, i, axis=0), np.take(y, i)) for i in idx])
    assert fast.shape == (25,)
    # atol: cumulative-sum differencing vs direct sums (observed 3e-15); smooth ECE's root
    # solver stops at a relative step of 1e-12 (observed 5e-11)
    np.testing.assert_allclose(fast, slow, atol=1e-9, rtol=0)
    assert fn(p, y, weights=np.ones(n)) == pytest.approx(fn(p, y), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------------------------


def _overconfident(n: int, seed: int, true_t: float = 2.5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) * 3
    return z, _sample_labels(_softmax(z / true_t), rng)


def test_temperature_recovers_true_temperature_and_lowers_ece():
    z, y = _overconfident(20_000, seed=0)
    ts = TemperatureScaler().fit(z[:10_000], y[:10_000])
    assert ts.temperature_ == pytest.approx(2.5, rel=0.05)
    test_z, test_y = z[10_000:], y[10_000:]
    before, after = ece(_softmax(test_z), test_y), ece(ts.transform(test_z), test_y)
    assert after < 0.5 * before
    assert ts.ece_after_ < ts.ece_before_ and ts.nll_after_ < ts.nll_before_
    rep = ts.report(test_z, test_y)
    assert rep["stage"].tolist() == ["before", "after"]
    assert rep["ece"].iloc[1] == pytest.approx(after)
    assert rep["accuracy"].iloc[0] == rep["accuracy"].iloc[1]


def test_temperature_minimises_nll_by_grid_search():
    z, y = _overconfident(2000, seed=1, true_t=0.6)  # under-confident logits: T < 1

    def nll_t(t: np.ndarray) -> np.ndarray:  # independent: torch log_softmax, all T at once
        logp = torch.log_softmax(torch.tensor(z)[None] / torch.tensor(t)[:, None, None], dim=2)
        return -logp[:, torch.arange(len(y)), torch.tensor(y)].mean(dim=1).numpy()

    grid = np.exp(np.linspace(np.log(0.2), np.log(3.0), 4001))
    best = grid[np.argmin(nll_t(grid))]
    fitted = TemperatureScaler().fit(z, y).temperature_
    assert fitted == pytest.approx(best, rel=1e-3)  # grid step is 7e-4 relative
    assert nll_t(np.array([fitted]))[0] <= nll_t(np.array([best]))[0] + 1e-12


def test_temperature_near_one_for_calibrated_logits():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(20_000, 3)) * 2
    y = _sample_labels(_softmax(z), rng)
    assert TemperatureScaler().fit(z, y).temperature_ == pytest.approx(1.0, abs=0.05)


def test_temperature_never_changes_argmax():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5000, 6)) * rng.choice([1e-3, 1.0, 50.0], size=(5000, 1))
    y = rng.integers(0, 6, 5000)
    for ts in (TemperatureScaler().fit(z, y), TemperatureScaler().fit(z, (z.argmax(1) + 1) % 6)):
        np.testing.assert_array_equal(ts.transform(z).argmax(axis=1), z.argmax(axis=1))


def test_temperature_deterministic_and_errors():
    z, y = _overconfident(500, seed=4)
    assert TemperatureScaler().fit(z, y).temperature_ == TemperatureScaler().fit(z, y).temperature_
    with pytest.raises(ValueError, match="not fitted"):
        TemperatureScaler().transform(z)
    with pytest.raises(ValueError, match="not finite"):
        TemperatureScaler().fit(np.array([[0.0, np.inf]]), np.array([0]))
    with pytest.raises(ValueError, match="out of range"):
        TemperatureScaler().fit(z, np.full(500, 4))
    with pytest.raises(ValueError, match="bounds"):
        TemperatureScaler(min_temperature=2.0, max_temperature=1.0)


def test_with_temperature_equals_scaler_on_log_probs():
    p, y = _random_case(200, 2, seed=6)
    df = _predict_df(p, y)
    ts = TemperatureScaler().fit(np.log(p), y)
    out = with_temperature(df, ts.temperature_)
    np.testing.assert_allclose(probs_labels(out)[0], ts.transform(np.log(p)), atol=1e-12)
    assert (out["pred"] == df["pred"]).all() and out.attrs == df.attrs
    np.testing.assert_allclose(with_temperature(df, 1.0)[["p_negative", "p_positive"]], p, atol=1e-12)
    with pytest.raises(ValueError, match=r"temperature must be a float in \(0, inf\), got 0"):
        with_temperature(df, 0)


# ---------------------------------------------------------------------------------------------
# Selective prediction
# ---------------------------------------------------------------------------------------------


def _aurc_one_order(correct_sorted: np.ndarray) -> float:
    errors = np.cumsum(1 - correct_sorted)
    return float(np.mean(errors / np.arange(1, correct_sorted.size + 1)))


def test_aurc_matches_brute_force_without_ties():
    p, y = _random_case(300, 3, seed=9)
    f, a = _top(p, y)
    assert aurc(p, y) == pytest.approx(_aurc_one_order(a[np.argsort(-f)]), abs=1e-12)


def test_aurc_with_ties_is_mean_over_tie_orders():
    # confidences with ties; brute force averages the per-order AURC over all orders of tied items
    conf = np.array([0.9, 0.9, 0.9, 0.7, 0.7, 0.6, 0.55])
    right = np.array([1, 0, 1, 0, 1, 1, 0])
    p = np.stack([conf, 1 - conf], axis=1)
    y = np.where(right == 1, 0, 1)
    groups = [np.flatnonzero(conf == c) for c in sorted(set(conf), reverse=True)]
    values = [
        _aurc_one_order(right[np.concatenate(order)])
        for order in itertools.product(*[list(itertools.permutations(g)) for g in groups])
    ]
    assert aurc(p, y) == pytest.approx(np.mean(values), abs=1e-12)


def test_aurc_matches_kumar_selective_stats():
    U = pytest.importorskip("calibration.utils")
    p, y = _random_case(500, 4, seed=10)
    f, a = _top(p, y)
    assert aurc(p, y) == pytest.approx(1 - U.get_selective_stats(f, a)[0], abs=1e-12)


def test_accuracy_coverage_brute_force():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    y = np.array([0, 1, 0, 0, 1])
    cov = accuracy_coverage(p, y)
    assert list(cov.columns) == ["coverage", "accuracy", "threshold"]
    np.testing.assert_allclose(cov["threshold"], [0.9, 0.8, 0.6, 0.55])
    for _, row in cov.iterrows():
        keep = p.max(axis=1) >= row["threshold"]
        assert row["coverage"] == pytest.approx(keep.mean())
        assert row["accuracy"] == pytest.approx((p.argmax(1) == y)[keep].mean())
    assert cov["coverage"].iloc[-1] == 1.0 and cov["accuracy"].iloc[-1] == accuracy(p, y)


# ---------------------------------------------------------------------------------------------
# DataFrame input, reports, paired comparison
# ---------------------------------------------------------------------------------------------


def test_probs_labels_reads_attrs_order_or_p_columns():
    p, y = _random_case(20, 2, seed=12)
    df = _predict_df(p, y)
    shuffled = df[["id", "p_positive", "label", "p_negative", "pred", "confidence", "correct"]]
    shuffled.attrs = dict(df.attrs)
    got_p, got_y = probs_labels(shuffled)
    np.testing.assert_array_equal(got_p, p)  # attrs order, not column order
    np.testing.assert_array_equal(got_y, y)
    no_attrs = df.copy()
    no_attrs.attrs = {}
    np.testing.assert_array_equal(probs_labels(no_attrs)[0], p)
    assert ece(df) == ece(p, y)
    broken = df.drop(columns="p_positive")
    broken.attrs = dict(df.attrs)
    with pytest.raises(ValueError, match="p_positive"):
        probs_labels(broken)


def test_calibration_report_columns_and_values():
    p, y = _random_case(300, 2, seed=13)
    rep = calibration_report(_predict_df(p, y), n_boot=200, seed=1)
    metrics = ["accuracy", "ece", "mce", "adaptive_ece", "smooth_ece", "brier", "nll"]
    assert list(rep.columns) == ["n"] + metrics + [f"{m}_{e}" for m in metrics for e in ("low", "high")]
    assert len(rep) == 1 and rep["n"].iloc[0] == 300
    row = rep.iloc[0]
    assert row["ece"] == pytest.approx(ece(p, y))
    assert row["mce"] == pytest.approx(ece(p, y, norm="max"))
    assert row["adaptive_ece"] == pytest.approx(ece(p, y, binning="mass"))
    assert row["smooth_ece"] == pytest.approx(smooth_ece(p, y))
    assert row["brier"] == pytest.approx(brier(p, y)) and row["nll"] == pytest.approx(nll(p, y))
    for m in metrics:
        assert row[f"{m}_low"] <= row[f"{m}_high"]
    for m in ("accuracy", "brier", "nll"):  # means: the estimate sits inside its interval
        assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"]
    assert rep.equals(calibration_report(p, y, n_boot=200, seed=1))


def test_compare_calibration_paired():
    p, y = _random_case(400, 2, seed=14)
    a = _predict_df(p, y)
    same = compare_calibration(a, a, n_boot=100)
    assert (same[["diff", "low", "high"]].to_numpy() == 0).all()
    b = with_temperature(a, 0.25)  # sharper: more over-confident
    res = compare_calibration(a, b, n_boot=300).set_index("metric")
    assert res.loc["ece", "diff"] == pytest.approx(ece(b) - ece(a))
    assert res.loc["ece", "low"] > 0 and res.loc["nll", "low"] > 0  # significantly worse
    assert res.loc["accuracy", "diff"] == 0.0
    # rows of b in another order are aligned by id
    res2 = compare_calibration(a, b.sample(frac=1.0, random_state=0), n_boot=300).set_index("metric")
    pd.testing.assert_frame_equal(res, res2)
    with pytest.raises(ValueError, match="same examples"):
        compare_calibration(a, b.iloc[:-1], n_boot=10)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

GOOD_P = np.array([[0.3, 0.7], [0.6, 0.4]])
GOOD_Y = np.array([1, 0])


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[np.nan, 1.0], [0.5, 0.5]]), GOOD_Y, r"probs\[0, 0\] = nan is not finite"),
        (np.array([[-0.1, 1.1], [0.5, 0.5]]), GOOD_Y, r"probs\[0, 0\] = .*-0.1.* outside \[0, 1\]"),
        (np.array([[0.3, 0.6], [0.5, 0.5]]), GOOD_Y, r"row 0 of probs sums to 0.9"),
        (GOOD_P, np.array([1, 2]), r"labels\[1\] = 2 is out of range; expected integers in \[0, 1\]"),
        (GOOD_P, np.array([1, -1]), r"labels\[1\] = -1 is out of range"),
        (GOOD_P, np.array([1.5, 0.0]), r"labels\[0\] = 1.5 is not an integer"),
        (GOOD_P, np.array([1, 0, 1]), r"mismatched lengths: probs has n=2 rows but labels has n=3"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), r"empty set"),
        (np.array([0.3, 0.7]), GOOD_Y, r"expected a 2-D array"),
    ],
)
def test_bad_input_is_a_clear_error(probs, labels, match):
    for fn in (ece, classwise_ece, debiased_l2_ce, smooth_ece, brier, nll, accuracy, aurc, reliability_table):
        with pytest.raises(ValueError, match=match):
            fn(probs, labels)


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_bad_n_bins(n_bins):
    with pytest.raises(ValueError, match=re.escape(f"n_bins must be an integer >= 1, got {n_bins!r}")):
        ece(GOOD_P, GOOD_Y, n_bins=n_bins)


def test_bad_options_name_the_allowed_values():
    with pytest.raises(ValueError, match=r"unknown binning 'quantile'; expected one of \['width', 'mass'\]"):
        ece(GOOD_P, GOOD_Y, binning="quantile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown norm 'L1'; expected one of \['l1', 'l2', 'max'\]"):
        ece(GOOD_P, GOOD_Y, norm="L1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single-class set"):
        classwise_ece(np.ones((3, 1)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="single-class set"):
        debiased_l2_ce(np.ones((3, 1)), np.zeros(3, dtype=int), mode="marginal")
    with pytest.raises(ValueError, match="labels is required"):
        ece(GOOD_P)
    with pytest.raises(ValueError, match="labels must be None"):
        ece(_predict_df(GOOD_P, GOOD_Y), GOOD_Y)
    with pytest.raises(ValueError, match="weights has shape"):
        ece(GOOD_P, GOOD_Y, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"sigma must be a float in \(0, inf\), got 0"):
        smooth_ece(GOOD_P, GOOD_Y, sigma=0)


# ---- signed gap, predicted-positive rate, Murphy's decomposition, ECE of p(positive) ------------
from toolkit.metrics.calibration import (  # noqa: E402
    brier_decomposition,
    calibration_gap,
    positive_class_ece,
    positive_rate,
)


def test_calibration_gap_and_positive_rate_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 0])
    # confidences 0.9 0.6 0.7 0.8 (mean 0.75), correct 1 0 1 0 (accuracy 0.5): gap +0.25, overconfident
    assert calibration_gap(probs, labels) == pytest.approx(0.25)
    assert positive_rate(probs, labels) == pytest.approx(0.5)
    assert positive_rate(probs, labels, positive=0) == pytest.approx(0.5)
    # weights: the resampled data's value, one per row
    w = np.array([[2.0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(calibration_gap(probs, labels, weights=w), [(1.8 - 2 + 0.7 - 1 + 0.8) / 4, 0.25])
    np.testing.assert_allclose(positive_rate(probs, labels, weights=w), [0.5, 0.5])


def test_brier_decomposition_by_hand():
    # binary, p(positive) takes two values: 0.2 on 4 examples (1 positive), 0.8 on 4 (3 positive)
    p_pos = np.array([0.2] * 4 + [0.8] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probs = np.c_[1 - p_pos, p_pos]
    d = brier_decomposition(probs, y)
    # per class: REL = (4 (0.2 - 0.25)^2 + 4 (0.8 - 0.75)^2) / 8 = 0.0025; RES = (4 (0.25 - 0.5)^2 * 2) / 8 = 0.0625;
    # UNC = 0.5 * 0.5 = 0.25; BS_c = 0.0025 - 0.0625 + 0.25 = 0.19; two mirrored classes double each term
    assert (d.reliability, d.resolution, d.uncertainty) == pytest.approx((0.005, 0.125, 0.5))
    assert d.brier == pytest.approx(0.38) == pytest.approx(brier(probs, y))
    assert d.residual == pytest.approx(0.0, abs=1e-15) and d.groups == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brier_identity_is_exact_for_few_distinct_forecasts(seed):
    rng = np.random.default_rng(seed)
    levels = np.array([0.1, 0.35, 0.5, 0.9])
    p_pos = rng.choice(levels, 300)
    y = (rng.random(300) < p_pos * 0.8 + 0.1).astype(int)
    probs = np.c_[1 - p_pos, p_pos]
    d = brier_decomposition(probs, y)
    assert d.reliability - d.resolution + d.uncertainty == pytest.approx(brier(probs, y), abs=1e-14)
    assert d.residual == pytest.approx(0.0, abs=1e-14)
    # three classes too
    p3 = rng.dirichlet(np.ones(3), 5).round(2)
    p3 = p3 / p3.sum(1, keepdims=True)
    p3 = p3[rng.integers(0, 5, 200)]
    y3 = rng.integers(0, 3, 200)
    d3 = brier_decomposition(p3, y3)
    assert d3.brier == pytest.approx(brier(p3, y3)) and abs(d3.residual) < 1e-14
    # binned grouping: no longer exact, the residual says by how much
    assert brier_decomposition(rng.dirichlet(np.ones(2), 300), y, n_bins=5).residual != 0.0


def test_positive_class_ece_by_hand_and_as_one_class_of_classwise():
    p_pos = np.array([0.2] * 4 + [0.8] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probs = np.c_[1 - p_pos, p_pos]
    # bins of p(positive): {0.2: freq 0.25}, {0.8: freq 0.75} -> (4 * 0.05 + 4 * 0.05) / 8 = 0.05
    assert positive_class_ece(probs, y, n_bins=10) == pytest.approx(0.05)
    rng = np.random.default_rng(3)
    q = rng.dirichlet([2, 2], 500)
    yy = (rng.random(500) < q[:, 1]).astype(int)
    both = [positive_class_ece(q, yy, positive=c, n_bins=10) for c in (0, 1)]
    assert classwise_ece(q, yy, n_bins=10) == pytest.approx(np.mean(both))


def test_calibration_profile_agrees_with_each_metric():
    from toolkit.metrics.calibration import calibration_profile

    rng = np.random.default_rng(4)
    q = rng.dirichlet([2, 2], 300)
    y = (rng.random(300) < q[:, 1]).astype(int)
    row = calibration_profile(q, y).iloc[0]
    assert row["calibration_gap"] == pytest.approx(row["confidence"] - row["accuracy"])
    assert row["ece"] == pytest.approx(ece(q, y)) and row["brier"] == pytest.approx(brier(q, y))
    murphy = brier_decomposition(q, y, n_bins=15)  # binned as ECE: continuous forecasts are all distinct
    assert (row["brier_reliability"], row["brier_resolution"]) == pytest.approx((murphy.reliability, murphy.resolution))
    assert row["brier_reliability"] - row["brier_resolution"] + row["brier_uncertainty"] == pytest.approx(
        row["brier"], abs=0.01)
    assert row["brier_reliability"] < 0.2 * row["brier"]  # calibrated forecasts: little of the score is reliability
    assert row["positive_rate"] == pytest.approx(np.mean(q.argmax(1) == 1))
    assert row["positive_share"] == pytest.approx(np.mean(y))
    assert row["positive_ece"] == pytest.approx(positive_class_ece(q, y))
    assert np.isnan(row["label_mass"])
    three = calibration_profile(rng.dirichlet([1, 1, 1], 50), rng.integers(0, 3, 50)).iloc[0]
    assert np.isnan(three["positive_rate"]) and np.isnan(three["positive_ece"])
