"""Percentile bootstrap confidence intervals for any per-sample statistic.

Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13 (percentile interval):
resample the n examples with replacement B times, recompute the statistic on each resample
theta*_1..theta*_B, and report [q_{alpha/2}(theta*), q_{1-alpha/2}(theta*)] around the
full-sample estimate theta^.

A resample is equivalent to integer *counts* w_i = #{times example i was drawn}, distributed
Multinomial(n, (1/n, ..., 1/n)). A metric that accepts ``weights=`` of shape (B, n) (counts,
one row per resample) and returns B values is evaluated for a whole chunk of resamples at
once (no Python loop over examples or resamples); any other metric is evaluated resample by
resample on ``np.take``-resampled arrays. Both paths use the same random draws, so for a given
seed they give the same interval.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.validation import InputError, check_int, check_probability

__all__ = ["Interval", "bootstrap_ci", "mean_ci", "paired_bootstrap", "resample_counts"]

MetricFn = Callable[..., float]

# Upper bound on the number of entries of one chunk of resample counts (B_chunk x n): 8M float64
# entries = 64 MiB, whatever n and n_boot are.
_CHUNK_ENTRIES = 1 << 23


@dataclass(frozen=True)
class Interval:
    """A full-sample estimate plus a percentile bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the full sample.
        low: the alpha/2 quantile of the bootstrap distribution.
        high: the 1 - alpha/2 quantile of the bootstrap distribution.
        alpha: 1 - the nominal coverage of [low, high].
        n_boot: number of bootstrap resamples.
    """

    estimate: float
    low: float
    high: float
    alpha: float
    n_boot: int


def _check_options(n_boot: int, alpha: float) -> None:
    check_int(n_boot, "n_boot", 1)
    check_probability(alpha, "alpha")


def _check_arrays(arrays: Sequence[ArrayLike], what: str = "arrays") -> tuple[NDArray, ...]:
    if len(arrays) == 0:
        raise InputError(f"no {what} given; expected at least one array with one row per example")
    out = tuple(np.asarray(a) for a in arrays)
    for i, a in enumerate(out):
        if a.ndim == 0:
            raise InputError(f"{what}[{i}] is a scalar; expected an array with one row per example")
    lengths = [a.shape[0] for a in out]
    if len(set(lengths)) != 1:
        raise InputError(f"{what} have mismatched lengths {lengths}; all must have the same number of examples")
    if lengths[0] < 1:
        raise InputError(f"{what} are empty (n=0); expected n >= 1 examples")
    return out


def _accepts_weights(metric_fn: Callable[..., object]) -> bool:
    """True when ``metric_fn`` has a parameter named ``weights`` (the vectorised path)."""
    try:
        return "weights" in inspect.signature(metric_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def _index_chunks(n: int, n_boot: int, seed: int) -> Iterator[NDArray[np.int64]]:
    """Yield (B_chunk, n) arrays of resample indices; the chunks together hold n_boot rows."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ENTRIES // n)
    done = 0
    while done < n_boot:
        b = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(b, n), dtype=np.int32 if n < 2**31 else np.int64)
        done += b


def resample_counts(indices: NDArray[np.integer], n: int) -> NDArray[np.float64]:
    """Turn resample indices (B, m) into counts (B, n): counts[b, i] = #{j : indices[b, j] == i}.

    Args:
        indices: integer array (B, m) of example indices in [0, n).
        n: number of examples.

    Returns:
        float64 array (B, n) whose rows sum to m.
    """
    indices = np.asarray(indices)
    b = indices.shape[0]
    flat = (indices + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()  # row b -> [b n, (b+1) n)
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _as_float(value: object, name: str) -> float:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 0:
        raise InputError(f"{name} returned an array of shape {arr.shape} on the full sample; expected a float")
    return float(arr)


def _replicates(
    stat: Callable[[NDArray[np.integer] | None, NDArray[np.float64] | None], NDArray[np.float64] | float],
    vectorised: bool,
    n: int,
    n_boot: int,
    seed: int,
) -> NDArray[np.float64]:
    """Bootstrap replicates of ``stat``: by counts (vectorised) or by explicit indices (loop)."""
    out = np.empty(n_boot, dtype=np.float64)
    done = 0
    for idx in _index_chunks(n, n_boot, seed):
        b = idx.shape[0]
        if vectorised:
            vals = np.asarray(stat(None, resample_counts(idx, n)), dtype=np.float64)
            if vals.shape != (b,):
                raise InputError(
                    f"metric_fn(..., weights=<({b}, {n}) counts>) returned shape {vals.shape}; expected ({b},)"
                )
            out[done : done + b] = vals
        else:
            # Fallback for metrics without `weights=`: one call per resample (a Python loop).
            for j in range(b):
                out[done + j] = float(stat(idx[j], None))
        done += b
    return out


def _interval(estimate: float, reps: NDArray[np.float64], alpha: float, n_boot: int) -> Interval:
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(estimate=estimate, low=float(low), high=float(high), alpha=float(alpha), n_boot=int(n_boot))


def bootstrap_ci(
    metric_fn: MetricFn,
    *arrays: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of ``metric_fn(*arrays)`` (Efron & Tibshirani 1993, ch. 13).

    theta^ = f(x_1..x_n);  theta*_b = f(x_{I_b1}..x_{I_bn}), I_bj ~ Uniform{1..n} i.i.d.;
    CI = [q_{alpha/2}(theta*), q_{1-alpha/2}(theta*)].

    Args:
        metric_fn: ``f(*arrays) -> float``. If it has a ``weights`` parameter it must also accept
            ``weights`` of shape (B, n) (resample counts) and return an array of shape (B,);
            replicates are then computed in chunks of resamples at once. Otherwise it is called
            once per resample on ``np.take``-resampled arrays (a Python loop: slow for large
            n_boot, but it works for any metric).
        *arrays: one or more arrays whose first axis indexes the same n examples; they are
            resampled together (rows stay aligned).
        n_boot: number of resamples B (>= 1).
        alpha: the interval has nominal coverage 1 - alpha.
        seed: seed of ``numpy.random.default_rng``; same seed and n give the same resamples.

    Returns:
        ``Interval(estimate, low, high, alpha, n_boot)``.

    Raises:
        InputError: no arrays, mismatched lengths, n = 0, n_boot < 1, alpha outside (0, 1).
    """
    _check_options(n_boot, alpha)
    data = _check_arrays(arrays)
    n = data[0].shape[0]
    vectorised = _accepts_weights(metric_fn)
    estimate = _as_float(metric_fn(*data), "metric_fn")

    def stat(idx: NDArray[np.integer] | None, w: NDArray[np.float64] | None) -> NDArray[np.float64] | float:
        if w is not None:
            return metric_fn(*data, weights=w)
        return metric_fn(*(np.take(a, idx, axis=0) for a in data))

    reps = _replicates(stat, vectorised, n, n_boot, seed)
    return _interval(estimate, reps, alpha, n_boot)


def paired_bootstrap(
    metric_fn: MetricFn,
    arrays_a: tuple[ArrayLike, ...],
    arrays_b: tuple[ArrayLike, ...],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Paired percentile bootstrap CI of the difference ``metric_fn(*b) - metric_fn(*a)``.

    delta^ = f(b) - f(a);  delta*_k = f(b_{I_k}) - f(a_{I_k}) with the SAME resampled indices I_k
    for a and b, because a and b score the same examples (e.g. unpruned vs pruned model). Pairing
    removes the between-example variance both share, so the interval is much narrower than
    combining two independent intervals. An interval excluding 0 means the change is significant
    at level alpha (Efron & Tibshirani 1993, ch. 13; Koehn 2004 for paired bootstrap in NLP).

    Args:
        metric_fn: as in :func:`bootstrap_ci`.
        arrays_a: the arrays of model a (e.g. ``(probs_a, labels)``), rows = the n examples.
        arrays_b: the arrays of model b, rows aligned with ``arrays_a``.
        n_boot, alpha, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``Interval`` of f(b) - f(a).

    Raises:
        InputError: as in :func:`bootstrap_ci`, or a and b with different numbers of examples.
    """
    _check_options(n_boot, alpha)
    if not isinstance(arrays_a, tuple) or not isinstance(arrays_b, tuple):
        raise InputError(
            f"arrays_a and arrays_b must be tuples of arrays, got {type(arrays_a).__name__} and "
            f"{type(arrays_b).__name__}; wrap a single array as (x,)"
        )
    data_a = _check_arrays(arrays_a, "arrays_a")
    data_b = _check_arrays(arrays_b, "arrays_b")
    n_a, n_b = data_a[0].shape[0], data_b[0].shape[0]
    if n_a != n_b:
        raise InputError(
            f"arrays_a has n={n_a} examples but arrays_b has n={n_b}; a paired bootstrap needs the same examples"
        )
    vectorised = _accepts_weights(metric_fn)
    estimate = _as_float(metric_fn(*data_b), "metric_fn") - _as_float(metric_fn(*data_a), "metric_fn")

    def stat(idx: NDArray[np.integer] | None, w: NDArray[np.float64] | None) -> NDArray[np.float64] | float:
        if w is not None:
            return np.asarray(metric_fn(*data_b, weights=w)) - np.asarray(metric_fn(*data_a, weights=w))
        fb = metric_fn(*(np.take(x, idx, axis=0) for x in data_b))
        fa = metric_fn(*(np.take(x, idx, axis=0) for x in data_a))
        return float(fb) - float(fa)

    reps = _replicates(stat, vectorised, n_a, n_boot, seed)
    return _interval(estimate, reps, alpha, n_boot)


def _weighted_mean(values: ArrayLike, *, weights: ArrayLike | None = None) -> float | NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64)
    if weights is None:
        return float(v.mean())
    w = np.asarray(weights, dtype=np.float64)
    return (w @ v) / w.sum(axis=-1)


def mean_ci(values: ArrayLike, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of the mean of per-example scores (vectorised).

    mean = (1/n) sum_i v_i;  mean*_b = sum_i w_bi v_i / sum_i w_bi with multinomial counts w_b.

    Args:
        values: 1-D array of per-example scores (finite).
        n_boot, alpha, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``Interval`` of the mean.

    Raises:
        InputError: not 1-D, empty, or non-finite values (NaN/inf).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise InputError(f"values has shape {v.shape}; expected a 1-D array of per-example scores")
    if v.size and not np.all(np.isfinite(v)):
        bad = np.flatnonzero(~np.isfinite(v))
        raise InputError(
            f"values contain non-finite entries (first at index {bad[0]}: {float(v[bad[0]])}); expected finite scores"
        )
    return bootstrap_ci(_weighted_mean, v, n_boot=n_boot, alpha=alpha, seed=seed)
