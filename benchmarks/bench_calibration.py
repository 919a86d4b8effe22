"""Calibration metrics and their bootstrap CIs on a large synthetic set: is it vectorised?

Issue #4's target: ECE and a percentile bootstrap on 100k examples x 1000 resamples with no
Python loop over examples or resamples. Metrics that accept ``weights=`` get the resamples as a
(B, n) matrix of multinomial counts, drawn in chunks of <= 8M entries (64 MiB). The table
reports the wall time of one metric call and the wall and CPU time of ``bootstrap_ci`` (draws
included), the median of ``--repeats`` runs, with BLAS limited to ``--threads`` threads (on a loaded 2-core machine
one thread is often faster: OpenBLAS spins). Smooth ECE runs on ``--n-smooth`` examples (its
bootstrap solves a fixed point per resample, vectorised over resamples).

    python benchmarks/bench_calibration.py [--n 100000] [--n-boot 1000] [--classes 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import resource
from collections.abc import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from toolkit.metrics.calibration import accuracy, brier, classwise_ece, debiased_l2_ce, ece, nll, smooth_ece
from toolkit.decisions.stats import bootstrap_ci
from toolkit.pruning.timing import time_interleaved


def _synthetic(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident softmax outputs: labels drawn from softmax(z / 1.5), probabilities softmax(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    q = np.exp(z / 1.5 - (z / 1.5).max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    y = (q.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return p, y


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall time and median CPU time of this process (CPU time is robust to other load)."""
    out: list[object] = []
    raw = time_interleaved({"run": lambda: out.append(fn())}, repeats=repeats, warmup=0)
    return float(raw.seconds.median()), float(raw.cpu_seconds.median()), out[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--n-smooth", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    p, y = _synthetic(args.n, args.classes, seed=0)
    ps, ys = p[: args.n_smooth], y[: args.n_smooth]
    metrics: list[tuple[str, Callable, np.ndarray, np.ndarray]] = [
        ("ece (15 width bins, l1)", ece, p, y),
        ("mce (width, max)", lambda a, b, weights=None: ece(a, b, norm="max", weights=weights), p, y),
        ("adaptive ece (15 mass bins)", lambda a, b, weights=None: ece(a, b, binning="mass", weights=weights), p, y),
        ("classwise ece", classwise_ece, p, y),
        ("debiased l2 (Kumar)", debiased_l2_ce, p, y),
        ("brier", brier, p, y),
        ("nll", nll, p, y),
        ("accuracy", accuracy, p, y),
        (f"smooth ece (n={args.n_smooth})", smooth_ece, ps, ys),
    ]
    rows = []
    with threadpool_limits(args.threads):
        for name, fn, a, b in metrics:
            t_one, _, value = _time(lambda: fn(a, b), args.repeats)
            t_boot, cpu_boot, iv = _time(lambda: bootstrap_ci(fn, a, b, n_boot=args.n_boot, seed=0), args.repeats)
            rows.append({"metric": name, "n": len(b), "value": value, "low": iv.low, "high": iv.high,
                         "one call [s]": t_one, f"bootstrap x{args.n_boot} wall [s]": t_boot,
                         "cpu [s]": cpu_boot})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, "
          f"BLAS threads {args.threads}, C={args.classes}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
