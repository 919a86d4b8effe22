"""Timing that a shared machine can trust: interleaved runs, two clocks, paired savings.

Configurations are interleaved (ABCABC..., never AAABBB) after discarded warm-up rounds, so slow
drifts in the machine's load hit all of them alike. Two clocks are read: wall time
(`time.perf_counter`) and this process's CPU time (`time.process_time`). A saving compares each
call with its partner call of the other configuration made moments apart (same round, phase and
index) and takes the median of the ratios, which ignores pairs where one call lost its core.
Every benchmark times with :func:`time_interleaved`; `toolkit.pruning.efficiency` builds its latency
tables on these pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..decisions.stats import Interval, bootstrap_ci
from .._core.validation import InputError, check_int

__all__ = ["Clock", "paired_ratios", "paired_saving", "paired_saving_ci", "time_interleaved"]


class Clock:
    """Wall and process-CPU seconds of the block: `with Clock() as c: ...; c.wall, c.cpu`."""

    def __enter__(self) -> Clock:
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._t, time.process_time() - self._c


def time_interleaved(
    runs: Mapping[str, Callable[[], Any]], *, repeats: int = 3, warmup: int = 1
) -> pd.DataFrame:
    """Wall-clock and CPU time of each callable, interleaved ABCABC... after `warmup` discarded rounds.

    Returns:
        Long DataFrame with columns `name`, `repeat`, `seconds` (wall), `cpu_seconds` (this
        process), one row per timed call; `df.attrs["threads"]` is `torch.get_num_threads()`.
        Take medians per name.
    """
    repeats = check_int(repeats, "repeats", 1)
    warmup = check_int(warmup, "warmup", 0)
    if not runs:
        raise InputError("runs is empty; pass at least one named callable")
    rows = []
    for r in range(warmup + repeats):
        for name, fn in runs.items():
            with Clock() as clock:
                fn()
            if r >= warmup:
                rows.append({"name": name, "repeat": r - warmup, "seconds": clock.wall, "cpu_seconds": clock.cpu})
    df = pd.DataFrame(rows)
    df.attrs["threads"] = torch.get_num_threads()
    return df


def paired_ratios(samples: pd.DataFrame, name: str, reference: str, phase: str, column: str) -> np.ndarray:
    """t_name[j] / t_reference[j] for every pair j of partner calls (same round, phase and index)."""
    names = sorted(set(samples["name"]))
    for n in (name, reference):
        if n not in names:
            raise InputError(f"no timings named {n!r}; expected one of {names}")
    if phase not in ("prefill", "decode"):
        raise InputError(f"unknown phase {phase!r}; expected one of ['prefill', 'decode']")
    wide = samples[samples["phase"] == phase].pivot_table(index=["round", "index"], columns="name", values=column)
    return (wide[name] / wide[reference]).to_numpy(dtype=np.float64)


def paired_saving(samples: pd.DataFrame, name: str, reference: str, phase: str, column: str) -> float:
    """Time saved by `name` against `reference`, from calls made moments apart.

    saving = 1 - median_j ( t_name[j] / t_reference[j] ),  j over (round, index) of `phase`

    Pairing each call with its partner of the same round and pass (or decode step) cancels the
    load drift that both saw; the median ignores pairs where one call lost its core.
    """
    return 1.0 - float(np.median(paired_ratios(samples, name, reference, phase, column)))


def paired_saving_ci(
    timings: pd.DataFrame,
    name: str,
    reference: str = "baseline",
    *,
    phase: str = "prefill",
    clock: str = "wall",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """The paired saving of one configuration against another, with a percentile bootstrap CI.

    saving = 1 - median_j ( t_name[j] / t_reference[j] )   (as in `efficiency_table`), and the
    pairs j are resampled (Efron & Tibshirani 1993, via `toolkit.decisions.stats.bootstrap_ci`). Decode
    steps of one round are treated as independent pairs, which they nearly are once paired.

    Args:
        timings: `efficiency_table(...).attrs["timings"]`.
        name, reference: configuration names in it, e.g. "reversible/10" and "structural/10".
        phase: "prefill" or "decode"; clock: "wall" or "cpu".

    Returns:
        `toolkit.decisions.stats.Interval(estimate, low, high, alpha, n_boot)`.
    """
    if clock not in ("wall", "cpu"):
        raise InputError(f"unknown clock {clock!r}; expected one of ['wall', 'cpu']")
    ratios = paired_ratios(timings, name, reference, phase, "seconds" if clock == "wall" else "cpu_seconds")
    return bootstrap_ci(lambda r: 1.0 - float(np.median(r)), ratios, n_boot=n_boot, alpha=alpha, seed=seed)
