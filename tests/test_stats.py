"""Tests for toolkit.decisions.stats: percentile bootstrap, paired bootstrap, resample counts."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.decisions.stats import Interval, bootstrap_ci, mean_ci, paired_bootstrap, resample_counts


def _weighted_mean(v, *, weights=None):
    if weights is None:
        return float(np.mean(v))
    return weights @ v / weights.sum(axis=1)


def test_resample_counts_match_bincount_per_row():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 7, size=(5, 7))
    counts = resample_counts(idx, 7)
    expected = np.stack([np.bincount(row, minlength=7) for row in idx])
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts.sum(axis=1), 7)


def test_weighted_path_equals_loop_path_same_draws():
    # The same metric with and without `weights=` must give the same interval: the vectorised
    # path (counts) and the fallback (np.take on the same indices) see the same resamples.
    v = np.random.default_rng(1).normal(size=301)
    fast = bootstrap_ci(_weighted_mean, v, n_boot=500, seed=3)
    slow = bootstrap_ci(lambda x: float(np.mean(x)), v, n_boot=500, seed=3)
    assert fast.n_boot == slow.n_boot == 500
    assert fast.estimate == pytest.approx(slow.estimate, abs=1e-12)
    assert fast.low == pytest.approx(slow.low, abs=1e-12)
    assert fast.high == pytest.approx(slow.high, abs=1e-12)


def test_interval_is_percentiles_of_replicates():
    # Record what the fallback path is called with; the interval must be their quantiles.
    seen: list[float] = []
    v = np.arange(50.0)

    def metric(x):
        seen.append(float(np.median(x)))
        return seen[-1]

    iv = bootstrap_ci(metric, v, n_boot=200, alpha=0.1, seed=0)
    reps = np.array(seen[1:])  # first call is the full-sample estimate
    assert reps.size == 200
    assert iv.estimate == np.median(v)
    assert iv.low == pytest.approx(np.quantile(reps, 0.05))
    assert iv.high == pytest.approx(np.quantile(reps, 0.95))


def test_mean_ci_matches_normal_theory():
    # For a normal sample the percentile interval of the mean ~ mean +- 1.96 s / sqrt(n).
    rng = np.random.default_rng(2)
    v = rng.normal(loc=3.0, scale=2.0, size=2000)
    iv = mean_ci(v, n_boot=2000, seed=0)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert iv.estimate == pytest.approx(v.mean())
    assert iv.low == pytest.approx(v.mean() - half, abs=0.15 * half)  # MC error of 2000 resamples
    assert iv.high == pytest.approx(v.mean() + half, abs=0.15 * half)


def test_mean_ci_coverage_simulation():
    # Nominal 90% intervals should cover the true mean about 90% of the time.
    rng = np.random.default_rng(5)
    hits = 0
    trials = 300
    for i in range(trials):
        v = rng.exponential(size=80)
        iv = mean_ci(v, n_boot=400, alpha=0.1, seed=i)
        hits += iv.low <= 1.0 <= iv.high
    # percentile bootstrap undercovers slightly for skewed data at n=80; binomial sd ~ 0.017
    assert 0.82 <= hits / trials <= 0.96


def test_seed_reproducible_and_varies():
    v = np.random.default_rng(0).normal(size=100)
    assert mean_ci(v, seed=1) == mean_ci(v, seed=1)
    assert mean_ci(v, seed=1) != mean_ci(v, seed=2)


def test_multiple_arrays_resampled_together():
    # metric = mean of x - y with x == y rowwise: every resample gives exactly 0 only if rows stay aligned
    x = np.random.default_rng(0).normal(size=60)
    iv = bootstrap_ci(lambda a, b: float(np.mean(a - b)), x, x.copy(), n_boot=100)
    assert (iv.low, iv.high) == (0.0, 0.0)


def test_paired_bootstrap_constant_shift_and_identity():
    a = np.random.default_rng(0).normal(size=200)
    same = paired_bootstrap(_weighted_mean, (a,), (a,), n_boot=300)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    shift = paired_bootstrap(_weighted_mean, (a,), (a + 1.0,), n_boot=300)
    assert shift.estimate == pytest.approx(1.0)
    assert shift.low == pytest.approx(1.0) and shift.high == pytest.approx(1.0)


def test_paired_narrower_than_unpaired_for_correlated_scores():
    rng = np.random.default_rng(3)
    a = rng.normal(size=500)
    b = a + rng.normal(scale=0.1, size=500) + 0.05
    paired = paired_bootstrap(_weighted_mean, (a,), (b,), n_boot=500)
    ia, ib = mean_ci(a, n_boot=500, seed=1), mean_ci(b, n_boot=500, seed=2)
    assert paired.high - paired.low < 0.2 * ((ia.high - ia.low) + (ib.high - ib.low))
    assert paired.low > 0.0  # the +0.05 shift is detected


def test_paired_loop_path_equals_weighted_path():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=99), rng.normal(size=99)
    fast = paired_bootstrap(_weighted_mean, (a,), (b,), n_boot=250, seed=9)
    slow = paired_bootstrap(lambda x: float(np.mean(x)), (a,), (b,), n_boot=250, seed=9)
    assert fast.low == pytest.approx(slow.low, abs=1e-12)
    assert fast.high == pytest.approx(slow.high, abs=1e-12)


def test_interval_is_frozen():
    iv = Interval(estimate=1.0, low=0.0, high=2.0, alpha=0.05, n_boot=10)
    with pytest.raises(AttributeError):
        iv.low = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 0}, "n_boot must be an integer >= 1, got 0"),
        ({"n_boot": 2.5}, "n_boot must be an integer >= 1, got 2.5"),
        ({"alpha": 0.0}, r"alpha must be a float in \(0, 1\), got 0.0"),
        ({"alpha": 1.0}, r"alpha must be a float in \(0, 1\), got 1.0"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(_weighted_mean, np.ones(5), **kwargs)


def test_bad_arrays():
    with pytest.raises(ValueError, match="mismatched lengths"):
        bootstrap_ci(lambda a, b: 0.0, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="n=0"):
        bootstrap_ci(_weighted_mean, np.ones(0))
    with pytest.raises(ValueError, match="no arrays"):
        bootstrap_ci(_weighted_mean)
    with pytest.raises(ValueError, match="tuples"):
        paired_bootstrap(_weighted_mean, np.ones(3), np.ones(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n=3 .* n=4"):
        paired_bootstrap(_weighted_mean, (np.ones(3),), (np.ones(4),))
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([1.0, np.nan])


def test_metric_with_weights_must_return_one_value_per_row():
    def bad(v, *, weights=None):
        return float(np.mean(v)) if weights is None else np.zeros(3)

    with pytest.raises(ValueError, match="returned shape"):
        bootstrap_ci(bad, np.ones(10), n_boot=20)
