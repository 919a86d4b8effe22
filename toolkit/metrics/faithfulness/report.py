"""The faithfulness report: every attribution method beside the random baseline, per example and
aggregated over examples with bootstrap intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..._core.validation import InputError, check_int
from .erasure import ErasureOptions, Examples, Scorer, check_attributions, check_words
from ..registry import metric_names
from ...decisions.stats import bootstrap_ci
from .metrics import (
    RANDOM,
    average_rankings,
    engine_parts,
    evaluate,
    jobs_for,
    metric_table,
    permuted_jobs,
    permuted_name,
    random_jobs,
)

__all__ = [
    "aggregate",
    "faithfulness_report",
    "minus_permuted",
    "minus_permuted_name",
    "soft_ratio_of_means",
]


def faithfulness_report(
    scorer: Scorer, words: Examples, attributions: Mapping[str, Sequence[np.ndarray]],
    options: ErasureOptions | None = None,
    *, n_random: int = 10, seed: int = 0, n_boot: int = 1000, alpha: float = 0.05,
    n_permutations: int = 0, permutation_seed: int = 0, **erasure_options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AOPC, NAOPC and decision flip of each attribution method beside a random baseline.

    All methods, the R random rankings and the bound search share one deduplicated batch of
    erased variants, and an example's NAOPC bounds are shared by all its rankings (searched bounds
    widened to all of them, see :func:`naopc`). The aggregate gives, per method, the mean over examples of each metric with
    a seeded percentile-bootstrap CI over examples (``toolkit.decisions.stats.mean_ci``); NaN values
    (flat bounds, never-flipped examples for fraction_flip) are left out and counted in
    ``n_<metric>``.

    Args:
        attributions: method name -> one score array per example ("random" is reserved).
        options: how the engine erases and which of its parts run
            (:class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions`; default: its defaults).
            ``naopc``: compute the NAOPC bounds (shared by all rankings of a sentence); False is the
            cheaper AOPC-only run: no bound search, NAOPC columns NaN, bound_method "none".
            ``soft``: also the soft comprehensiveness and sufficiency
            (:mod:`toolkit.metrics.faithfulness.soft`; the scorer must accept masked embeddings, as
            :func:`model_scorer`'s does), each a Monte Carlo mean over ``soft_samples`` mask draws
            seeded by ``soft_seed`` and the text. ``naopc_max_words``: search the bounds only of
            texts of at most this many words (None: every text); a longer text's NAOPC is NaN
            (bound_method "none"). The beam search costs about 1.5 n^2 variants per text of n
            words, scored in n / 2 sequential steps: 3200 variants, 326 s on 2 idle CPU cores with
            SmolLM2, for 4 texts of ~22 words.
        n_random: random rankings per example (0 leaves the baseline out).
        seed: seed of the random rankings and of the bootstrap.
        n_boot: bootstrap resamples.
        alpha: 1 - confidence level of the intervals.
        n_permutations: permuted baselines per method (0: none): each permutes the method's own
            scores over the words (:func:`~toolkit.metrics.faithfulness.metrics.permuted_jobs`), so it erases
            and masks exactly as much as the method. Adds per example the method
            ``permuted(<method>)`` (mean over the permutations) and ``<method>_minus_permuted``
            (:func:`minus_permuted`: the method's metric minus its permuted baseline's).
        permutation_seed: seed of the permutations (with each text's crc32).
        erasure_options: ErasureOptions fields as keywords (``naopc=False``, ``soft=True``), each
            replacing that of ``options``.

    Returns:
        (per_example, aggregate). per_example: one row per (example, method) with the columns of
        :func:`random_baseline` (n_rankings = 1 for a method). aggregate: one row per method:
        method, n_examples, and for each registered faithfulness metric (:mod:`toolkit.metrics.registry`):
        <metric>, <metric>_low,
        <metric>_high, n_<metric>.
    """
    words = check_words(words)
    if not isinstance(attributions, Mapping) or not attributions:
        raise InputError("attributions must be a non-empty mapping: method name -> one score array per example")
    if RANDOM in attributions:
        raise InputError(f"method name {RANDOM!r} is reserved for the random baseline; rename it")
    n_random = check_int(n_random, "n_random", 0)
    opts = ErasureOptions.of(options, **erasure_options)
    n_permutations = check_int(n_permutations, "n_permutations", 0)
    permutation_seed = check_int(permutation_seed, "permutation_seed", 0)
    jobs = []
    for name, attr in attributions.items():
        checked = check_attributions(attr, words, f"attributions[{name!r}]")
        jobs += jobs_for(checked, str(name))
        jobs += permuted_jobs(words, checked, str(name), n_permutations, permutation_seed)
    jobs += random_jobs(words, n_random, seed)
    table = metric_table(evaluate(scorer, words, jobs, opts, engine_parts(opts)))
    per_example = average_rankings(table)
    if n_permutations:
        per_example = pd.concat([per_example, *(minus_permuted(per_example, str(m)) for m in attributions)],
                                ignore_index=True)

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
    from ...decisions.stats import mean_ci  # a sibling module; imported where it is needed

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


def minus_permuted_name(method: str) -> str:
    """The method name of a method's score over its permuted baseline: ``<method>_minus_permuted``."""
    return f"{method}_minus_permuted"


def minus_permuted(per_example: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per example, each faithfulness metric of ``method`` minus that of its permuted baseline.

    d_i = m(method, x_i) - mean_r m(permuted_r(method), x_i): the faithfulness claim separated from
    input sensitivity (a model that ignores its input scores the method and its permutations alike,
    d = 0). Rows keep the method's leading columns; method is ``<method>_minus_permuted``;
    n_rankings is the number of permutations. Metrics NaN for either side stay NaN.
    """
    metrics = [m for m in metric_names("faithfulness") if m in per_example]
    own = per_example[per_example["method"] == method].set_index("example")
    perm = per_example[per_example["method"] == permuted_name(method)].set_index("example")
    if own.empty or perm.empty:
        raise InputError(f"minus_permuted: no rows of method {method!r} and of {permuted_name(method)!r}")
    out = own.copy()
    out[metrics] = own[metrics] - perm.loc[own.index, metrics]
    out["method"] = minus_permuted_name(method)
    out["n_rankings"] = perm.loc[own.index, "n_rankings"]
    return out.reset_index()[per_example.columns]


def soft_ratio_of_means(per_example: pd.DataFrame, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                        by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Normalised soft metrics as ratios of means over examples, with a percentile-bootstrap CI.

    NC = mean_i(comp_i) / mean_i(room_i),   NS = mean_i(suff_i - 1 + room_i) / mean_i(room_i),

    room_i = max(0, p(y^|x_i) - p(y^|0)) (the ``room`` column). Zhao & Aletras 2023 normalise per
    example (comp_i / room_i); a sentence with almost no room then dominates the mean (values of 8
    on a tiny model), so the ratio of means is used: each sentence weighs by its room. NaN when
    mean room <= 1e-12. Examples are resampled (numerator and denominator together).

    Returns:
        One row per group: the ``by`` columns, n_examples, room, soft_comprehensiveness_rom,
        soft_comprehensiveness_rom_low, _high, soft_sufficiency_rom, soft_sufficiency_rom_low, _high.
    """
    need = ["soft_comprehensiveness", "soft_sufficiency", "room"]
    missing = [c for c in [*by, *need] if c not in per_example]
    if missing:
        raise InputError(f"soft_ratio_of_means needs columns {missing} (a soft=True report)")

    def ratio(num, den):
        d = float(np.mean(den))
        return float(np.mean(num)) / d if d > 1e-12 else math.nan

    rows = []
    for key, g in per_example.groupby(list(by), sort=False):
        g = g.dropna(subset=need)
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key)) | {"n_examples": len(g), "room": float(g["room"].mean())}
        room = g["room"].to_numpy(float)
        for name, num in (("soft_comprehensiveness_rom", g["soft_comprehensiveness"].to_numpy(float)),
                          ("soft_sufficiency_rom", g["soft_sufficiency"].to_numpy(float) - 1.0 + room)):
            if len(g) and room.mean() > 1e-12:
                iv = bootstrap_ci(ratio, num, room, n_boot=n_boot, alpha=alpha, seed=seed)
                row |= {name: iv.estimate, f"{name}_low": iv.low, f"{name}_high": iv.high}
            else:
                row |= {name: math.nan, f"{name}_low": math.nan, f"{name}_high": math.nan}
        rows.append(row)
    return pd.DataFrame(rows)
