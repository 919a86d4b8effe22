"""The faithfulness report: every attribution method beside the random baseline, per example and
aggregated over examples with bootstrap intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..validation import InputError, check_int
from .erasure import (
    BEAM_WIDTH,
    EXACT_MAX_WORDS,
    FRACTIONS,
    Examples,
    Scorer,
    check_attributions,
    check_flag,
    check_words,
    options,
)
from ..metrics import metric_names
from .soft import SOFT_SAMPLES
from .metrics import RANDOM, average_rankings, engine_parts, evaluate, jobs_for, metric_table, random_jobs

__all__ = [
    "aggregate",
    "faithfulness_report",
]


def faithfulness_report(
    scorer: Scorer, words: Examples, attributions: Mapping[str, Sequence[np.ndarray]],
    *, n_random: int = 10, seed: int = 0, n_boot: int = 1000, alpha: float = 0.05, naopc: bool = True,
    fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
    soft: bool = False, soft_samples: int = SOFT_SAMPLES, soft_seed: int = 0, naopc_max_words: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AOPC, NAOPC and decision flip of each attribution method beside a random baseline.

    All methods, the R random rankings and the bound search share one deduplicated batch of
    erased variants, and an example's NAOPC bounds are shared by all its rankings (searched bounds
    widened to all of them, see :func:`naopc`). The aggregate gives, per method, the mean over examples of each metric with
    a seeded percentile-bootstrap CI over examples (``toolkit.stats.mean_ci``); NaN values
    (flat bounds, never-flipped examples for fraction_flip) are left out and counted in
    ``n_<metric>``.

    Args:
        attributions: method name -> one score array per example ("random" is reserved).
        n_random: random rankings per example (0 leaves the baseline out).
        seed: seed of the random rankings and of the bootstrap.
        n_boot: bootstrap resamples.
        alpha: 1 - confidence level of the intervals.
        naopc: compute the NAOPC bounds (shared by all rankings of a sentence); False is the
            cheaper AOPC-only run: no bound search, NAOPC columns NaN, bound_method "none".
        soft: also the soft comprehensiveness and sufficiency (:mod:`toolkit.faithfulness.soft`;
            the scorer must accept masked embeddings, as :func:`model_scorer`'s does), each a Monte
            Carlo mean over ``soft_samples`` mask draws seeded by ``soft_seed`` and the text.
        naopc_max_words: search the bounds only of texts of at most this many words (None: every
            text); a longer text's NAOPC is NaN (bound_method "none"). The beam search costs
            about 1.5 n^2 variants per text of n words, scored in n / 2 sequential steps: 3200
            variants, 326 s on 2 idle CPU cores with SmolLM2, for 4 texts of ~22 words.
        Others: as :func:`erasure_curves` and :func:`aopc_bounds`.

    Returns:
        (per_example, aggregate). per_example: one row per (example, method) with the columns of
        :func:`random_baseline` (n_rankings = 1 for a method). aggregate: one row per method:
        method, n_examples, and for each registered faithfulness metric (:mod:`toolkit.metrics`):
        <metric>, <metric>_low,
        <metric>_high, n_<metric>.
    """
    words = check_words(words)
    if not isinstance(attributions, Mapping) or not attributions:
        raise InputError("attributions must be a non-empty mapping: method name -> one score array per example")
    if RANDOM in attributions:
        raise InputError(f"method name {RANDOM!r} is reserved for the random baseline; rename it")
    n_random = check_int(n_random, "n_random", 0)
    opts = options(fractions, erasure, replacement, exact_max_words, beam_width, soft_samples, soft_seed,
                   naopc_max_words)
    jobs = []
    for name, attr in attributions.items():
        jobs += jobs_for(check_attributions(attr, words, f"attributions[{name!r}]"), str(name))
    jobs += random_jobs(words, n_random, seed)
    table = metric_table(evaluate(scorer, words, jobs, opts, **engine_parts(check_flag(naopc), check_flag(soft, "soft"))))
    per_example = average_rankings(table)

    return per_example, aggregate(per_example, n_boot=n_boot, alpha=alpha, seed=seed)


def aggregate(per_example: pd.DataFrame, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
              by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Mean of each registered faithfulness metric per group of rows, with a percentile-bootstrap CI over rows.

    NaN values (flat bounds, never-flipped rankings for fraction_flip) are left out and counted in
    ``n_<metric>``. Used by :func:`faithfulness_report`; also for per-example rows gathered over
    several calls (e.g. chunks of a long run), grouped by ``by``.

    Returns:
        One row per group: the ``by`` columns, n_examples, and for each metric: <metric>,
        <metric>_low, <metric>_high, n_<metric>.
    """
    from toolkit.stats import mean_ci  # a sibling module; imported where it is needed

    by = list(by)
    rows = []
    for key, group in per_example.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key)) | {"n_examples": len(group)}
        for m in [name for name in metric_names("faithfulness") if name in per_example]:
            values = group[m].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if len(values):
                ci = mean_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
                row |= {m: ci.estimate, f"{m}_low": ci.low, f"{m}_high": ci.high}
            else:
                row |= {m: math.nan, f"{m}_low": math.nan, f"{m}_high": math.nan}
            row[f"n_{m}"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)
