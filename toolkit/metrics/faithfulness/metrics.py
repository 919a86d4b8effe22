"""The metric engine and the erasure metrics: ERASER comprehensiveness and sufficiency, AOPC,
normalised AOPC, decision flip and a random-ranking baseline.

Every metric takes a :data:`~toolkit.metrics.faithfulness.erasure.Scorer`; conventions (``words``,
``attributions``, k, erasure, batching): :mod:`toolkit.metrics.faithfulness`. The engine is a list of
parts (:class:`EnginePart`: ``curves``, ``bounds``, ``flips``, ``soft``; a new one is one
:func:`register_engine_part` call): :func:`evaluate` lets each part it runs queue its variants,
scores them in one scorer call (plus one per beam step) and lets each read its rows. A part runs
when a registered metric needs it (``Metric.needs``) and the call's
:class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions` switch it on (:func:`engine_parts`); :func:`metric_table` and :func:`average_rankings` turn them into per-ranking and
per-example metric rows, one column per registered faithfulness metric (:mod:`toolkit.metrics.registry`;
the built-in entries are registered here; :mod:`toolkit.metrics.faithfulness.report` uses them).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..._core.registry import Registry
from .. import registry as metric_registry
from ..registry import Metric, list_metrics, metric_names, register_metric
from ..._core.validation import InputError, check_int, short_repr
from .bounds import FLAT_BOUNDS_TOL, Beam, ExactBounds, naopc_from_bounds
from .erasure import (
    BEAM_WIDTH,
    EXACT_MAX_WORDS,
    FRACTIONS,
    SOFT_SAMPLES,
    ErasureOptions,
    Examples,
    Pool,
    Scorer,
    Variant,
    check_attributions,
    check_words,
    k_for_fraction,
    ranking,
)
from .soft import Masked, keep_probabilities, mask_seed

__all__ = [
    "ENGINE",
    "RANDOM",
    "EnginePart",
    "EngineRun",
    "aopc",
    "aopc_bounds",
    "average_rankings",
    "comprehensiveness",
    "decision_flip",
    "engine_parts",
    "erasure_curves",
    "list_engine_parts",
    "measures",
    "missing_part",
    "evaluate",
    "jobs_for",
    "metric_table",
    "naopc",
    "random_baseline",
    "permutation",
    "permuted_jobs",
    "permuted_name",
    "random_jobs",
    "register_engine_part",
    "soft_erasure",
    "sufficiency",
    "unregister_engine_part",
]

RANDOM = "random"

@dataclass(frozen=True)
class _Job:
    """One ranking of one example's words to evaluate."""

    example: int
    method: str
    ranking: int  # index of a random ranking; -1 for a given attribution
    order: np.ndarray
    scores: np.ndarray  # the word scores behind ``order`` (the soft metrics' keep probabilities)


# ----------------------------------------------------------------------------- engine


_KEYS = ["example", "method", "ranking"]
_BOUND_COLS = ["bound_method", "comprehensiveness_lower", "comprehensiveness_upper",
               "sufficiency_lower", "sufficiency_upper"]


def _bounded(opts: ErasureOptions, n_words: int) -> bool:
    """A text of ``n_words`` words is within ``naopc_max_words`` (its bounds are searched)."""
    return opts.naopc_max_words is None or n_words <= opts.naopc_max_words


@dataclass(frozen=True)
class _Full:
    """What the unerased texts say: y^ per example, p(y^|x), and the rows' leading columns."""

    labels: np.ndarray
    p_y: np.ndarray
    base: list[dict[str, Any]]

    @staticmethod
    def read(pool: Pool, ids: list[int], words: list[Variant]) -> _Full:
        p_full = np.stack([pool[i] for i in ids])
        labels = p_full.argmax(axis=1)
        p_y = p_full[np.arange(len(words)), labels]
        base = [{"example": i, "n_words": len(w), "label": int(labels[i]), "p_full": float(p_y[i])}
                for i, w in enumerate(words)]
        return _Full(labels, p_y, base)

    def row(self, job: _Job) -> dict[str, Any]:
        return {**self.base[job.example], "method": job.method, "ranking": job.ranking}


def _curve_rows(pool: Pool, full: _Full, jobs: list[_Job], ids: list, fractions: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for job, job_ids in zip(jobs, ids):
        y, p = full.labels[job.example], full.p_y[job.example]
        for f, (k, comp_id, suff_id) in zip(fractions, job_ids):
            p_comp = math.nan if comp_id is None else pool[comp_id][y]
            p_suff = math.nan if suff_id is None else pool[suff_id][y]
            rows.append({**full.row(job), "fraction": f, "k": k, "p_comp": p_comp, "p_suff": p_suff,
                         "comprehensiveness": p - p_comp, "sufficiency": p - p_suff})
    return pd.DataFrame(rows)


def _flip_rows(pool: Pool, full: _Full, jobs: list[_Job], ids: list) -> pd.DataFrame:
    rows = []
    for job, job_ids in zip(jobs, ids):
        y = full.labels[job.example]
        hit = next((k for k, idx in enumerate(job_ids, start=1) if pool[idx].argmax() != y), None)
        rows.append({**full.row(job), "flipped": hit is not None,
                     "k": math.nan if hit is None else float(hit),
                     "fraction": math.nan if hit is None else hit / len(job_ids)})
    return pd.DataFrame(rows)


def _bound_rows(pool: Pool, full: _Full, words: list[Variant], exact: dict[int, ExactBounds],
                opts: ErasureOptions) -> pd.DataFrame:
    """Exact bounds from the scored subsets; beam searches for the rest, all examples in step."""
    found = {i: {"bound_method": "exact", **b.bounds(pool, full.p_y[i], full.labels[i])} for i, b in exact.items()}
    for i, w in enumerate(words):
        if i not in exact and not _bounded(opts, len(w)):  # not searched: NAOPC NaN
            found[i] = {"bound_method": "none", **{c: math.nan for c in _BOUND_COLS[1:]}}
    beams = {
        i: {f"{m}_{side}": Beam(w, opts, m, sign, full.p_y[i], full.labels[i])
            for m in ("comprehensiveness", "sufficiency") for side, sign in (("lower", -1), ("upper", 1))}
        for i, w in enumerate(words) if i not in found
    }
    searches = [s for group in beams.values() for s in group.values()]
    while live := [s for s in searches if not s.done]:
        for s in live:
            s.request(pool)
        pool.flush()
        for s in live:
            s.advance(pool)
    for i, group in beams.items():
        found[i] = {"bound_method": "beam", **{name: s.value for name, s in group.items()}}
    return pd.DataFrame([{**full.base[i], **found[i]} for i in range(len(words))])


def _soft_rows(pool: Pool, full: _Full, jobs: list[_Job], ids: list, zero_ids: list[int]) -> pd.DataFrame:
    """Per ranking, soft comprehensiveness and sufficiency, raw and normalised (:mod:`toolkit.metrics.faithfulness.soft`)."""
    rows = []
    for job, job_ids in zip(jobs, ids):
        y, p = full.labels[job.example], full.p_y[job.example]
        room = max(0.0, p - pool[zero_ids[job.example]][y])  # 1 - S(0)
        comp = float(np.mean([max(0.0, p - pool[c][y]) for c, _ in job_ids]))
        suff = float(np.mean([1.0 - max(0.0, p - pool[s][y]) for _, s in job_ids]))
        ok = room > FLAT_BOUNDS_TOL
        rows.append({"example": job.example, "method": job.method, "ranking": job.ranking,
                     "soft_comp": comp, "soft_suff": suff, "soft_room": room,
                     "soft_comp_norm": comp / room if ok else math.nan,
                     "soft_suff_norm": (suff - (1.0 - room)) / room if ok else math.nan})
    return pd.DataFrame(rows, columns=[*_KEYS, *_SOFT_COLS])


_SOFT_COLS = ["soft_comp", "soft_suff", "soft_room", "soft_comp_norm", "soft_suff_norm"]


@dataclass
class EngineRun:
    """One call of the engine (:func:`evaluate`), as an engine part's ``queue`` and ``read`` see it.

    Attributes:
        scorer: the scorer of the call.
        pool: the deduplicating queue: ``pool.add(variant)`` -> an id; after the flush ``pool[id]``
            is the variant's class probabilities (a part that searches may add and ``pool.flush()``
            again in its ``read``).
        words: the examples, one :class:`~toolkit.metrics.faithfulness.erasure.Variant` each.
        jobs: the rankings to evaluate; each has ``example`` (index into ``words``), ``method``,
            ``ranking`` (-1 for a given attribution), ``order`` (word indices, most important first)
            and ``scores`` (the word scores behind the order).
        options: the :class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions` of the call
            (``options.eraser.apply(words, erased)`` erases as the call asks).
        curve_metrics: the curves whose erased variants the ``curves`` part scores.
        full: after the first flush, what the unerased texts say: ``labels`` (y^ per example),
            ``p_y`` (p(y^|x) per example) and ``row(job)`` (a job's leading columns).
    """

    scorer: Scorer
    pool: Pool
    words: list[Variant]
    jobs: list[_Job]
    options: ErasureOptions
    curve_metrics: tuple[str, ...] = ("comprehensiveness", "sufficiency")
    full: _Full | None = None


@dataclass(frozen=True)
class EnginePart:
    """One part of the erasure engine: the variants it queues and the rows it reads from their scores.

    Metrics declare the parts they read (``Metric.needs``); the engine runs a part only when a
    registered faithfulness metric needs it and its ``switch`` is on in the call's options
    (:func:`engine_parts`).

    Attributes:
        name: the name metrics' ``needs`` use.
        queue: ``queue(run)`` adds the part's variants to ``run.pool`` (before the one flush) and
            returns whatever ``read`` needs (its ids).
        read: ``read(run, queued)`` -> a DataFrame: per ranking (columns example, method, ranking
            and ``columns``), or whatever ``merge`` takes.
        columns: the columns of its frame that join the per-ranking table (the metrics read them).
        switch: the :class:`ErasureOptions` switch that turns it on (``naopc``, ``soft``, or a key of
            ``part_options``); None: on whenever a registered metric needs it.
        what: how a message names it (``the bound search``).
        merge: ``merge(table, frame)`` -> the per-ranking table with the part's columns (default: a
            left join on example, method, ranking).
        kept: columns that stay in the per-ranking and per-example tables (the others are dropped
            once the metrics are computed), with their value when the part did not run.
    """

    name: str
    queue: Callable[[EngineRun], Any]
    read: Callable[[EngineRun, Any], pd.DataFrame]
    columns: tuple[str, ...] = ()
    switch: str | None = None
    what: str = ""
    merge: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame] | None = None
    kept: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InputError(f"engine part name {short_repr(self.name)} is invalid; expected an identifier")
        for attr in ("queue", "read"):
            if not callable(getattr(self, attr)):
                raise InputError(f"engine part {self.name!r}: {attr} is not callable")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "what", self.what or f"the engine part {self.name!r}")
        object.__setattr__(self, "kept", dict(self.kept))


ENGINE: Registry[EnginePart] = Registry("engine part")
"""The erasure engine's parts by name, in registration order (the order they queue and join the table)."""
metric_registry.ALLOWED_NEEDS["faithfulness"] = ENGINE.names  # a faithfulness metric needs registered parts


def register_engine_part(name: str, queue: Callable[[EngineRun], Any], read: Callable[[EngineRun, Any], pd.DataFrame],
                         *, replace: bool = False, **fields: Any) -> EnginePart:
    """Add a part to the erasure engine (``fields``: those of :class:`EnginePart`) and return it; a
    name already registered is refused unless ``replace=True``.

    After it, a faithfulness metric may name it in ``needs`` (``register_metric(..., needs={name})``)
    and every engine call (:func:`faithfulness_report`, :func:`model_faithfulness`, a study's cells)
    runs it when such a metric is registered and its switch is on. ``with ENGINE.restored(): ...``
    undoes the registration.
    """
    return ENGINE.register(name, EnginePart(name, queue, read, **fields), replace=replace)


def unregister_engine_part(name: str) -> EnginePart:
    """Remove an engine part and return it; refused while a registered metric needs it."""
    part = ENGINE.get(name)
    users = [m.name for m in list_metrics("faithfulness") if name in m.needs]
    if users:
        raise InputError(f"engine part {name!r} is needed by the registered metrics {users}; unregister them first")
    ENGINE.unregister(name)
    return part


def list_engine_parts() -> tuple[EnginePart, ...]:
    """The registered engine parts, in registration order (the order their columns join the table)."""
    return ENGINE.values()


def engine_parts(options: ErasureOptions | None = None) -> tuple[str, ...]:
    """The parts an engine call with ``options`` runs: ``curves`` (always: the per-ranking rows come
    from it), and each other part that a registered faithfulness metric needs and whose switch is on."""
    options = ErasureOptions.of(options)
    needs = set().union(*(m.needs for m in list_metrics("faithfulness")))
    return tuple(p.name for p in ENGINE.values()
                 if p.name == "curves" or (p.name in needs and options.enabled(p.switch)))


def missing_part(metric: Metric, options: ErasureOptions | None = None) -> EnginePart | None:
    """The first engine part ``metric`` needs that ``options`` leave off (None: it is measured)."""
    options = ErasureOptions.of(options)
    for name in sorted(metric.needs):
        if name not in ENGINE:
            raise InputError(f"metric {metric.name!r} needs the engine part {name!r}, which is not registered")
        if not options.enabled(ENGINE.get(name).switch):
            return ENGINE.get(name)
    return None


def measures(metric: Metric, options: ErasureOptions | None = None) -> bool:
    """Whether an engine call with ``options`` measures ``metric`` (every part it needs runs; other
    families' metrics: True)."""
    return missing_part(metric, options) is None


def evaluate(
    scorer: Scorer, words: list[Variant], jobs: list[_Job], opts: ErasureOptions, parts: Collection[str] = ("curves",),
    *, curve_metrics: tuple[str, ...] = ("comprehensiveness", "sufficiency"),
) -> dict[str, pd.DataFrame]:
    """Queue every variant the ``parts`` ask for, score them in one call (+ a part's own steps), read their rows.

    ``curve_metrics``: the curves whose variants are scored (the other's columns are NaN).

    Returns:
        Engine part name -> its rows, for each of ``parts``.
    """
    unknown = [p for p in parts if p not in ENGINE]
    if unknown:
        raise InputError(f"unknown engine part(s) {unknown}; registered: {list(ENGINE.names())}")
    pool = Pool(scorer)
    run = EngineRun(scorer, pool, words, list(jobs), opts, tuple(curve_metrics))
    full_ids = [pool.add(w) for w in words]
    queued = {p.name: p.queue(run) for p in ENGINE.values() if p.name in parts}
    pool.flush()
    run.full = _Full.read(pool, full_ids, words)
    return {name: ENGINE.get(name).read(run, state) for name, state in queued.items()}


# ----------------------------------------------------------------------------- the built-in parts


def _queue_curves(run: EngineRun) -> list:
    comp, suff = "comprehensiveness" in run.curve_metrics, "sufficiency" in run.curve_metrics
    erasure, ids = run.options.eraser, []
    for job in run.jobs:
        w, order = run.words[job.example], job.order
        ks = [k_for_fraction(f, len(w)) for f in run.options.fractions]
        ids.append([(k, run.pool.add(erasure.apply(w, order[:k])) if comp else None,
                     run.pool.add(erasure.keep(w, order[:k])) if suff else None) for k in ks])
    return ids


def _queue_flips(run: EngineRun) -> list:
    erasure = run.options.eraser
    return [[run.pool.add(erasure.apply(run.words[job.example], job.order[:k]))
             for k in range(1, len(run.words[job.example]) + 1)] for job in run.jobs]


def _queue_bounds(run: EngineRun) -> dict[int, ExactBounds]:
    opts = run.options
    return {i: ExactBounds(run.pool, w, opts) for i, w in enumerate(run.words)
            if len(w) <= opts.exact_max_words and _bounded(opts, len(w))}


def _queue_soft(run: EngineRun) -> tuple[list, list[int]]:
    if not getattr(run.scorer, "accepts_masks", False):
        raise InputError("the soft faithfulness metrics mask token embeddings, and this scorer scores texts only "
                         "(it has no accepts_masks = True); use toolkit.metrics.faithfulness.model_scorer, or soft=False")
    opts, pool = run.options, run.pool
    zero_ids = [pool.add(Masked(w, np.zeros(len(w)), ())) for w in run.words]
    soft_ids = []
    for job in run.jobs:
        w, q = run.words[job.example], keep_probabilities(job.scores)
        seeds = [mask_seed(opts.soft_seed, w.text, s) for s in range(opts.soft_samples)]
        soft_ids.append([(pool.add(Masked(w, 1.0 - q, seed)), pool.add(Masked(w, q, seed))) for seed in seeds])
    return soft_ids, zero_ids


register_engine_part("curves", _queue_curves,
                     lambda run, ids: _curve_rows(run.pool, run.full, run.jobs, ids, run.options.fractions),
                     what="the erasure curves")
register_engine_part("bounds", _queue_bounds,
                     lambda run, exact: _bound_rows(run.pool, run.full, run.words, exact, run.options),
                     columns=tuple(_BOUND_COLS), switch="naopc", what="the bound search",
                     merge=lambda table, frame: _widen(table, frame),
                     kept={c: "none" if c == "bound_method" else math.nan for c in _BOUND_COLS})
register_engine_part("flips", _queue_flips, lambda run, ids: _flip_rows(run.pool, run.full, run.jobs, ids),
                     columns=("flipped", "fraction"), what="the decision flip")
register_engine_part("soft", _queue_soft, lambda run, ids: _soft_rows(run.pool, run.full, run.jobs, *ids),
                     columns=tuple(_SOFT_COLS), switch="soft", what="soft erasure")


def jobs_for(attributions: Sequence[np.ndarray], method: str) -> list[_Job]:
    """One job per example: its words ranked by the given attribution (ranking index -1)."""
    return [_Job(i, method, -1, ranking(a), np.asarray(a, dtype=float)) for i, a in enumerate(attributions)]


def random_jobs(words: list[Variant], n_rankings: int, seed: int) -> list[_Job]:
    """R seeded random rankings per example; example i uses rng([seed, i]), independent of the others.

    A ranking's word scores (the soft metrics' keep probabilities) fall linearly with its rank:
    n for the first word, 1 for the last.
    """
    jobs = []
    for i, w in enumerate(words):
        rng = np.random.default_rng([seed, i])
        for r in range(n_rankings):
            order = rng.permutation(len(w))
            scores = np.empty(len(w))
            scores[order] = np.arange(len(w), 0, -1, dtype=float)
            jobs.append(_Job(i, RANDOM, r, order, scores))
    return jobs


def permuted_name(method: str) -> str:
    """The method name of ``method``'s permuted baseline: ``permuted(<method>)``."""
    return f"permuted({method})"


def permutation(seed: int, text: str, draw: int, n_words: int) -> np.ndarray:
    """Permutation ``draw`` of an ``n_words``-word text: ``default_rng([seed, crc32(text), draw]).permutation(n)``.

    Seeded by the text, not its position, so every model state (a pruned cell and its unpruned
    reference) and every method sees the same permutations of the same sentence.
    """
    return np.random.default_rng([int(seed), zlib.crc32(text.encode("utf-8")), int(draw)]).permutation(n_words)


def permuted_jobs(words: list[Variant], attributions: Sequence[np.ndarray], method: str, n_permutations: int,
                  seed: int) -> list[_Job]:
    """``n_permutations`` permuted baselines of one method per example: its own scores permuted over the words.

    Draw r of example i scores word j with ``scores[pi_r(j)]`` (pi_r = :func:`permutation`): the
    same multiset of scores, hence the same erased amount at every fraction (hard erasure) and the
    same keep probabilities (soft erasure: the min-max normalisation of a permuted array is the
    permuted normalisation), on words the method did not choose.
    """
    jobs = []
    for i, (w, a) in enumerate(zip(words, attributions)):
        a = np.asarray(a, dtype=float)
        for r in range(n_permutations):
            scores = a[permutation(seed, w.text, r, len(w))]
            jobs.append(_Job(i, permuted_name(method), r, ranking(scores), scores))
    return jobs




def _aopc_table(curves: pd.DataFrame) -> pd.DataFrame:
    """AOPC = mean of the curve over the fractions, per ranking."""
    out = curves.groupby(_KEYS, sort=False).agg(
        n_words=("n_words", "first"), label=("label", "first"), p_full=("p_full", "first"),
        aopc_comprehensiveness=("comprehensiveness", "mean"), aopc_sufficiency=("sufficiency", "mean"),
    )
    return out.reset_index()


def _widen(aopc: pd.DataFrame, bounds: pd.DataFrame) -> pd.DataFrame:
    """The per-ranking rows with their example's AOPC bounds; searched (beam) bounds widened to every
    ranking evaluated with them (NAOPC itself is a registered metric: :func:`_naopc`)."""
    out = aopc.merge(bounds[["example", *_BOUND_COLS]], on="example", how="left")
    searched = out["bound_method"] == "beam"
    for m in ("comprehensiveness", "sufficiency"):
        seen = out.groupby("example")[f"aopc_{m}"]
        out[f"{m}_lower"] = out[f"{m}_lower"].where(~searched, np.minimum(out[f"{m}_lower"], seen.transform("min")))
        out[f"{m}_upper"] = out[f"{m}_upper"].where(~searched, np.maximum(out[f"{m}_upper"], seen.transform("max")))
    return out


# ----------------------------------------------------------------------------- the registry's entries
# The faithfulness family of the metric registry (:mod:`toolkit.metrics.registry`): each entry computes one
# value per ranking from the engine's per-ranking rows (:func:`metric_table`): the AOPC curve means
# (``aopc_comprehensiveness``, ``aopc_sufficiency``; engine part ``curves``), the example's bounds
# (``comprehensiveness_lower`` ...; ``bounds``) and the decision flip (``flipped``, ``fraction``;
# ``flips``). A new faithfulness metric is one entry (here, or a register_metric call anywhere): it
# becomes a column of every per-example table and aggregate, and a row of the study's table. The
# order is the study table's row order.
def _curve_mean(metric: str):
    def aopc_metric(table: pd.DataFrame) -> pd.Series:
        return table[f"aopc_{metric}"]

    aopc_metric.__name__ = f"aopc_{metric}"
    return aopc_metric


def _naopc(metric: str):
    def naopc_metric(table: pd.DataFrame) -> pd.Series:
        return naopc_from_bounds(table[f"aopc_{metric}"], table[f"{metric}_lower"], table[f"{metric}_upper"])

    naopc_metric.__name__ = f"naopc_{metric}"
    return naopc_metric


def _fraction_flip(table: pd.DataFrame) -> pd.Series:
    return table["fraction"]


def _flip_rate(table: pd.DataFrame) -> pd.Series:
    return table["flipped"].astype(float)


def _soft(column: str):
    def soft_metric(table: pd.DataFrame) -> pd.Series:
        return table[column]

    soft_metric.__name__ = {"soft_comp": "soft_comprehensiveness", "soft_suff": "soft_sufficiency",
                            "soft_room": "room"}[column]
    return soft_metric


register_metric(Metric("aopc_comprehensiveness", _curve_mean("comprehensiveness"), "faithfulness",
                       higher_is_better=True, test="paired_t", headline=True, label="AOPC", short="aopc", plot=True,
                       needs={"curves"}))
register_metric(Metric("aopc_sufficiency", _curve_mean("sufficiency"), "faithfulness", higher_is_better=False,
                       test="paired_t", label="AOPC sufficiency", needs={"curves"}))
register_metric(Metric("naopc_comprehensiveness", _naopc("comprehensiveness"), "faithfulness", higher_is_better=True,
                       test="paired_t", headline=True, label="NAOPC", short="naopc", plot=True,
                       needs={"curves", "bounds"}))
register_metric(Metric("naopc_sufficiency", _naopc("sufficiency"), "faithfulness", higher_is_better=False,
                       test="paired_t", label="NAOPC sufficiency", needs={"curves", "bounds"}))
register_metric(Metric("fraction_flip", _fraction_flip, "faithfulness", higher_is_better=False, test="paired_t",
                       label="fraction erased to flip", needs={"flips"}))
register_metric(Metric("flip_rate", _flip_rate, "faithfulness", higher_is_better=True, test="paired_t",
                       label="decision flip rate", needs={"flips"}))
register_metric(Metric("soft_comprehensiveness", _soft("soft_comp"), "faithfulness", higher_is_better=True,
                       test="paired_t", label="soft comprehensiveness", short="soft_comp", needs={"soft"}))
register_metric(Metric("soft_sufficiency", _soft("soft_suff"), "faithfulness", higher_is_better=True,
                       test="paired_t", label="soft sufficiency", short="soft_suff", needs={"soft"}))
# The room p(y^|x) - p(y^|0) (every example embedding zeroed; clipped at 0): how much erasing the
# whole input can lower p(y^) at all. A model that ignores its input has no room, and then low soft
# comprehensiveness and high soft sufficiency for any ranking: report it beside them (issue 28).
register_metric(Metric("room", _soft("soft_room"), "faithfulness", higher_is_better=True, test="paired_t",
                       label="room p - p(0)", short="room", needs={"soft"}))


# ----------------------------------------------------------------------------- public metrics


def erasure_curves(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Comprehensiveness and sufficiency of the top-k attributed words at each fraction.

    comp_k = p(y^ | x) - p(y^ | x without r_k),   suff_k = p(y^ | x) - p(y^ | r_k only),
    r_k = the k top-ranked words. DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
    Rationalized NLP Models", https://arxiv.org/abs/1911.03429. Conventions: module docstring.

    Args:
        scorer: word sequences -> class probabilities (n, C).
        words: one word list per example.
        attributions: one score per word per example.
        fractions: fractions of the words in (0, 1]; default ERASER's (1, 5, 10, 20, 50)%.
        erasure: "delete" or "replace".
        replacement: the token put in place of an erased word when erasure="replace".

    Returns:
        One row per (example, fraction): example, n_words, label (y^), fraction, k, p_full,
        p_comp, p_suff, comprehensiveness, sufficiency.
    """
    words = check_words(words)
    attributions = check_attributions(attributions, words, "attributions")
    opts = ErasureOptions(fractions, erasure, replacement)
    curves = evaluate(scorer, words, jobs_for(attributions, ""), opts, ("curves",))["curves"]
    return curves.drop(columns=["method", "ranking"]).reset_index(drop=True)


def aopc(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Area over the perturbation curve: the mean of comp_k (or suff_k) over the fractions.

    AOPC_comp = 1/|B| sum_{f in B} comp_{k(f)}, the same for sufficiency (higher comp, lower suff
    = more faithful). ERASER (DeYoung et al. 2020) prints a 1/(|B|+1) sum over k = 0..|B|
    normalisation; its released scorer (rationale_benchmark/metrics.py, ``_instances_aopc``)
    averages over the |B| thresholds with ``np.average``, and so do we. Counting a 0% bin (whose
    comp is 0) would scale our value by |B|/(|B|+1). Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, aopc_comprehensiveness, aopc_sufficiency.
    """
    curves = erasure_curves(scorer, words, attributions, fractions=fractions, erasure=erasure, replacement=replacement)
    out = curves.assign(method="", ranking=-1)
    return _aopc_table(out).drop(columns=["method", "ranking"])


def _one_metric(
    metric: str, scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    fractions: Sequence[float], erasure: str, replacement: str,
) -> pd.DataFrame:
    """One metric's curve and AOPC; only that metric's erased variants are scored (half of erasure_curves')."""
    words = check_words(words)
    attributions = check_attributions(attributions, words, "attributions")
    opts = ErasureOptions(fractions, erasure, replacement)
    curves = evaluate(scorer, words, jobs_for(attributions, ""), opts, ("curves",), curve_metrics=(metric,))["curves"]
    wide = curves.pivot_table(index="example", columns="fraction", values=metric, sort=False)
    wide.columns = [f"{metric}@{f:g}" for f in wide.columns]
    head = curves.groupby("example", sort=False)[["n_words", "label", "p_full"]].first()
    out = head.join(wide)
    out[f"aopc_{metric}"] = wide.mean(axis=1)
    return out.reset_index()


def comprehensiveness(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """ERASER comprehensiveness at each fraction and its AOPC (higher = more faithful).

    comp_f = p(y^ | x) - p(y^ | x without its top-k(f) words); AOPC_comp = mean over the fractions
    (:func:`aopc`). Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, ``comprehensiveness@<f>`` for each
        fraction f, aopc_comprehensiveness.
    """
    return _one_metric("comprehensiveness", scorer, words, attributions, fractions, erasure, replacement)


def sufficiency(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """ERASER sufficiency at each fraction and its AOPC (lower = more faithful).

    suff_f = p(y^ | x) - p(y^ | only the top-k(f) words of x); AOPC_suff = mean over the fractions.
    Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, ``sufficiency@<f>`` for each
        fraction f, aopc_sufficiency.
    """
    return _one_metric("sufficiency", scorer, words, attributions, fractions, erasure, replacement)


def aopc_bounds(
    scorer: Scorer, words: Examples,
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> pd.DataFrame:
    """Lower and upper bound of each example's AOPC over all orderings of its words.

    lower = min_pi AOPC(pi), upper = max_pi AOPC(pi), for comprehensiveness and for sufficiency
    (Edin et al. 2025, "Normalized AOPC: Fixing Misleading Faithfulness Metrics for Feature
    Attribution Explainability", https://arxiv.org/abs/2408.08137). On the fraction grid the AOPC
    of an ordering depends only on its nested top-k sets for the distinct k's, so texts of
    <= ``exact_max_words`` words are solved exactly: each subset of a needed size is scored once
    and a DP over chains takes the min and max. Longer texts use a beam search (as the paper's
    NAOPC_beam): its bounds are attained by real orderings, so lower >= exact lower and
    upper <= exact upper (equal when greedy is optimal, e.g. an additive logit model).

    Args:
        exact_max_words: longest text solved exactly (scores sum_k C(n, k) subsets).
        beam_width: chains kept per step of the beam search (1 = greedy); it costs one scorer
            call per word up to the largest k, each with about 4 * beam_width * n variants per
            example - the dominant cost of the metrics on long texts.
        Others: as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, bound_method ("exact" | "beam"),
        comprehensiveness_lower, comprehensiveness_upper, sufficiency_lower, sufficiency_upper.
    """
    words = check_words(words)
    opts = ErasureOptions(fractions, erasure, replacement, exact_max_words=exact_max_words, beam_width=beam_width)
    return evaluate(scorer, words, [], opts, ("bounds",))["bounds"]


def naopc(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, fractions: Sequence[float] = FRACTIONS, erasure: str = "delete", replacement: str = "...",
    exact_max_words: int = EXACT_MAX_WORDS, beam_width: int = BEAM_WIDTH,
) -> pd.DataFrame:
    """AOPC min-max normalised per example between its bounds over orderings (Edin et al. 2025).

    NAOPC = (AOPC - lower) / (upper - lower), for comprehensiveness (1 = the most comprehensive
    ordering; higher is better) and for sufficiency (0 = the most sufficient ordering; lower is
    better), each with its own bounds (:func:`aopc_bounds`). When upper - lower <=
    FLAT_BOUNDS_TOL (1e-12) no ordering is better than another and NAOPC is NaN. Searched (beam)
    bounds are widened to the AOPCs of the rankings evaluated in the same call (each is a real
    ordering, so the bounds stay attained and inside the exact ones), which keeps NAOPC in [0, 1];
    the bound columns hold the bounds used. Arguments as :func:`erasure_curves` and
    :func:`aopc_bounds`.

    Returns:
        One row per example: example, n_words, label, p_full, aopc_comprehensiveness,
        aopc_sufficiency, bound_method, comprehensiveness_lower, comprehensiveness_upper,
        sufficiency_lower, sufficiency_upper, naopc_comprehensiveness, naopc_sufficiency.
    """
    words = check_words(words)
    attributions = check_attributions(attributions, words, "attributions")
    opts = ErasureOptions(fractions, erasure, replacement, exact_max_words=exact_max_words, beam_width=beam_width)
    res = evaluate(scorer, words, jobs_for(attributions, ""), opts, ("curves", "bounds"))
    table = _widen(_aopc_table(res["curves"]), res["bounds"])
    table = table.assign(naopc_comprehensiveness=_naopc("comprehensiveness")(table),
                         naopc_sufficiency=_naopc("sufficiency")(table))
    return table.drop(columns=["method", "ranking"])


def decision_flip(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, erasure: str = "delete", replacement: str = "...",
) -> pd.DataFrame:
    """Smallest number of top-ranked words whose erasure changes the predicted label.

    k_flip = min {k in 1..n : argmax p(. | x without r_k) != y^}, or "never" (NaN, flipped=False).
    Every k is tried (not only the fraction grid), in one batched call. Ties in argmax go to the
    lower class index (numpy). Cf. the "decision flip" of Chrysostomou & Aletras 2021 and
    ERASER's "tokens_to_flip". Arguments as :func:`erasure_curves`.

    Returns:
        One row per example: example, n_words, label, p_full, flipped (bool), k (float, NaN if
        never), fraction (k / n_words, NaN if never).
    """
    words = check_words(words)
    attributions = check_attributions(attributions, words, "attributions")
    opts = ErasureOptions(FRACTIONS, erasure, replacement)
    flips = evaluate(scorer, words, jobs_for(attributions, ""), opts, ("flips",))["flips"]
    return flips.drop(columns=["method", "ranking"])


def soft_erasure(
    scorer: Scorer, words: Examples, attributions: Sequence[np.ndarray],
    *, n_samples: int = SOFT_SAMPLES, seed: int = 0,
) -> pd.DataFrame:
    """Soft comprehensiveness and sufficiency of each example's attribution (Zhao & Aletras 2023).

    Each word's token embeddings are masked element-wise at random, kept with probability 1 - q
    (comprehensiveness) or q (sufficiency), q the example's scores min-max normalised.
    Definitions, seeding and the scorer contract: :mod:`toolkit.metrics.faithfulness.soft`. Higher is
    more faithful for all four columns.

    Args:
        scorer: a scorer that accepts masked variants (``accepts_masks``), e.g. :func:`model_scorer`.
        n_samples: Monte Carlo mask draws per example and metric.
        seed: seed of the mask draws (with each text's crc32 and the sample index).

    Returns:
        One row per example: example, n_words, label, p_full, soft_comprehensiveness,
        soft_sufficiency (raw, in [0, 1]: the registered metrics), room = max(0, p(y^|x) - p(y^|0)),
        and the same normalised by the
        all-masked input as Zhao & Aletras report them (``*_normalised``; NaN where masking every
        word does not lower p(y^)).
    """
    words = check_words(words)
    attributions = check_attributions(attributions, words, "attributions")
    opts = ErasureOptions(soft=True, soft_samples=n_samples, soft_seed=seed)
    res = evaluate(scorer, words, jobs_for(attributions, ""), opts, ("curves", "soft"), curve_metrics=())
    table = _aopc_table(res["curves"]).merge(res["soft"], on=_KEYS, how="left")
    names = ["soft_comprehensiveness", "soft_sufficiency", "room", "soft_comprehensiveness_normalised",
             "soft_sufficiency_normalised"]
    table = table.rename(columns=dict(zip(_SOFT_COLS, names)))
    return table[["example", "n_words", "label", "p_full", *names]]


def metric_table(res: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-ranking rows: the engine's columns, then one column per registered faithfulness metric.

    Args:
        res: :func:`evaluate`'s rows per engine part (``curves`` among them).

    Returns:
        One row per (example, method, ranking): n_words, label, p_full, each part's ``kept``
        columns (the bound columns: bound_method "none" and NaN bounds without the bound search),
        then each registered faithfulness metric in registry order (NaN where an engine part it
        needs did not run).
    """
    table = _aopc_table(res["curves"])
    ran, engine_columns = {"curves"}, []
    for part in ENGINE.values():
        if part.name == "curves":
            continue
        if part.name not in res:
            table = table.assign(**part.kept)
            continue
        frame = res[part.name]
        table = (part.merge(table, frame) if part.merge is not None
                 else table.merge(frame[_KEYS + list(part.columns)], on=_KEYS, how="left"))
        engine_columns += [c for c in part.columns if c not in part.kept]
        ran.add(part.name)
    for metric in list_metrics("faithfulness"):
        table[metric.name] = metric.fn(table) if metric.needs <= ran else math.nan
    return table.drop(columns=[c for c in engine_columns if c not in metric_names("faithfulness")])


def average_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over a method's rankings per example (fraction_flip over the rankings that flipped)."""
    first = ["n_words", "label", "p_full", *(c for part in ENGINE.values() for c in part.kept)]
    agg = {c: (c, "first") for c in first} | {m: (m, "mean") for m in metric_names("faithfulness") if m in table}
    out = table.groupby(["example", "method"], sort=False).agg(**agg, n_rankings=("ranking", "size"))
    return out.reset_index()


def random_baseline(
    scorer: Scorer, words: Examples, options: ErasureOptions | None = None,
    *, n_rankings: int = 10, seed: int = 0, per_ranking: bool = False, **erasure_options: Any,
) -> pd.DataFrame:
    """The metrics of R seeded random rankings, the chance level to read a method's scores against.

    Example i draws its R rankings from ``np.random.default_rng([seed, i])``.

    Args:
        options: the engine's options (:class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions`;
            default: its defaults); ``naopc=False`` skips the bound search (the dominant cost): the
            NAOPC columns are NaN and bound_method is "none".
        n_rankings: R, random rankings per example.
        seed: seed of the rankings.
        per_ranking: return one row per (example, ranking) instead of the per-example mean.
        erasure_options: ErasureOptions fields (``naopc=False``, ``fractions=...``), each replacing
            that of ``options``.

    Returns:
        One row per example (or per (example, ranking)): example, method ("random"), n_words,
        label, p_full, bound columns as :func:`aopc_bounds`, aopc_comprehensiveness,
        aopc_sufficiency, naopc_comprehensiveness, naopc_sufficiency, flip_rate (share of the
        rankings whose erasure flips the label), fraction_flip (mean over those that flip, NaN if
        none), n_rankings (or ranking).
    """
    words = check_words(words)
    n_rankings = check_int(n_rankings, "n_rankings", 1)
    opts = ErasureOptions.of(options, **erasure_options)
    jobs = random_jobs(words, n_rankings, seed)
    table = metric_table(evaluate(scorer, words, jobs, opts, engine_parts(opts)))
    return table if per_ranking else average_rankings(table)
