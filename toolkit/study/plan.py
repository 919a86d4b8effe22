"""Before anything runs: which cells are done, what the rest will cost, and what the config can detect."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..decisions import power_table, smallest_p
from ..metrics.faithfulness.metrics import engine_parts, measures
from ..metrics.registry import family_metric, list_metrics, metric_names
from .._core.store import CellStore
from .._core.validation import InputError
from .cells import Cell, study_cells, study_shots
from .config import StudyConfig, claim_metrics
from .decide import is_control
from .table import load_results, record_frame, tidy_table

__all__ = ["PILOT_ASSUMPTIONS", "plan", "planned_metrics", "status"]

# Seconds per cell on 2 idle CPU cores for a model of SmolLM2-135M's size (measured idle: predict
# ~0.034 s per UCI sentence, saliency ~0.29 s per sentence and method, one erased variant ~0.02 s;
# a sentence of <= 8 words (5.2 on average) needs ~4.4 variants per ranking for the curves and the
# decision flip and ~33 for its NAOPC bounds; both scaled here to 10 words and by words^2; the
# loss_delta ranking ~0.11 s per layer and labelled sentence, once per model and dataset).
# A finished cell's own time replaces the model: the median per model of the cells already done.
_SECONDS_PER_SENTENCE = 0.034
_SECONDS_PER_ATTRIBUTION = 0.29
_SECONDS_PER_ERASURE_RANKING = 0.14
_SECONDS_PER_BOUNDS = 1.0
_SECONDS_PER_LOSS_DELTA = 0.11
_ASSUMED_LAYERS = 30
# Paired spread assumed when no pilot cell exists (the default study's SmolLM2 cells): share of
# sentences whose correctness flips, and sd of the per-example NAOPC difference.
PILOT_ASSUMPTIONS = {"p_disc": 0.10, "sd_naopc": 0.25, "sd_ece": 0.6}
# The assumed sd of a change metric without its own ``sd_<short>`` above: its family's.
_ASSUMED_SD = {"calibration": "sd_ece", "faithfulness": "sd_naopc"}


def _cell_cost(cell: Cell, config: StudyConfig, shots: int = 0) -> float:
    """Seconds of one cell by the cost model above (rough).

    Length buckets: n_faithfulness sentences per bucket, each bucket's at its bound's length.
    Shots: every forward pass reads the demonstrations too; a prompt without them is taken to be
    about two sentences long, so each demonstration adds about half its cost.
    """
    if config.length_buckets:  # sentences x (words / 10)^2, summed over the buckets
        n_sentences = config.n_faithfulness * len(config.length_buckets)
        words = sum((b / 10) ** 2 for b in config.length_buckets) / len(config.length_buckets)
    else:
        n_sentences, words = config.n_faithfulness, (config.max_words / 10) ** 2
    seconds = _SECONDS_PER_SENTENCE * (config.n_eval + config.n_validation)
    seconds += _SECONDS_PER_ATTRIBUTION * n_sentences * len(config.methods)
    seconds += _SECONDS_PER_ERASURE_RANKING * n_sentences * words * (len(config.methods) + config.n_random)
    if "bounds" in engine_parts(config.erasure):
        seconds += _SECONDS_PER_BOUNDS * n_sentences * words
    return seconds * (1 + shots / 2)


def status(config: StudyConfig) -> pd.DataFrame:
    """Every cell of ``config`` with its state and (estimated) cost, without running anything.

    Returns:
        One row per cell in grid order: model, dataset, selection, level, state (``done``,
        ``failed``, ``running`` - claimed by a live worker - or ``todo``), seconds (measured for done
        cells, else estimated: the median of the model's done cells, or the stated cost model),
        estimated (bool), holder (who holds a running cell).
    """
    store = CellStore(config.run_dir())
    records, failures = store.records(), store.failures()
    measured: dict[str, list[float]] = {}
    for rec in records.values():
        measured.setdefault(rec["model"], []).append(float(rec.get("seconds", np.nan)))
    rows = []
    shots = study_shots(config)
    for cell in study_cells(config):
        holder = store.holder(cell.key) if cell.key not in records else None
        state = "done" if cell.key in records else "failed" if cell.key in failures else "running" if holder else "todo"
        if state == "done":
            seconds, estimated = float(records[cell.key].get("seconds", np.nan)), False
        else:
            seen = [s for s in measured.get(cell.model, []) if np.isfinite(s)]
            cost = _cell_cost(cell, config, shots[(cell.model, cell.dataset)])
            seconds, estimated = (float(np.median(seen)) if seen else cost), True
        rows.append(dict(model=cell.model, dataset=cell.dataset, selection=cell.selection, level=cell.level,
                         state=state, seconds=seconds, estimated=estimated,
                         holder="" if not holder else f"{holder.get('host')}:{holder.get('pid')}"))
    out = pd.DataFrame(rows)
    if any("labels" in family_metric(s, "importance").needs for s in config.selections):  # loss_delta's ranking,
        # once per model and dataset
        out.attrs["ranking_seconds"] = (_SECONDS_PER_LOSS_DELTA * _ASSUMED_LAYERS * config.n_importance
                                        * sum(1 + k / 2 for k in shots.values()))
    return out


def plan(config: StudyConfig, *, power: float = 0.8, pilot: dict[str, float] | None = None,
         pilot_source: str = "given") -> pd.DataFrame:
    """What the config can detect: minimal detectable paired differences and CI half-widths.

    One row per claim of the study (``config.claims``, by default the registry's headline metrics,
    :func:`toolkit.study.claim_metrics`): the equivalence claim (accuracy) and each change claim
    (ECE, NAOPC or AOPC, and any registered one).
    Uses :func:`toolkit.decisions.power_table` with n = ``n_eval`` (accuracy, calibration) and
    ``n_faithfulness`` (faithfulness; times the number of ``length_buckets`` when given). The spread comes from a pilot: the finished cells of this config
    (share of sentences whose correctness flips against the unpruned cell; sd of the per-example
    NAOPC difference; ECE's paired-bootstrap se times sqrt(n)), else ``pilot`` (keys as
    :data:`PILOT_ASSUMPTIONS`, e.g. the dose-response sweep's spread at k*:
    :func:`toolkit.study.sweep.stage2_pilot`; keys it lacks are assumed), else :data:`PILOT_ASSUMPTIONS`.
    Change tests are one-sided ("degrades") and sized at alpha / m (Bonferroni, the conservative
    end of Holm) with m the largest primary family the study can have: every pruned cell of a
    non-control selection passing the accuracy gate, one test per calibration change claim and one
    per faithfulness change claim and attribution method (the random-layer control's draws are
    exploratory and do not count).

    Returns:
        :func:`toolkit.decisions.power_table`'s columns (change rows one-sided at test_alpha: mde and
        ci_halfwidth, the distance from the estimate to its one-sided bound, come from the two-sided
        formulas at 2 * test_alpha) plus ``test_alpha``, ``smallest_p`` (change
        rows: the smallest p an exact one-sided sign-flip test on n pairs can give, 1 / 2^n), ``can_reject``
        (False where smallest_p > test_alpha: that claim cannot be shown at this n) and ``source``
        (pilot or assumed).
    """
    records = load_results(config)
    measured = planned_metrics(config)
    claims = claim_metrics(config.claims, measured=measured)
    equivalence = next(m for m in claims if m.test == "noninferiority")
    changes = [m for m in claims if m.test != "noninferiority"]
    given = dict(pilot or {})
    unknown = sorted(set(given) - {"p_disc"} - {f"sd_{m.short}" for m in changes})
    if unknown:
        raise InputError(f"pilot names {unknown}; expected p_disc and sd_<claim> for the claims "
                         f"{[m.short for m in changes]}")
    assumed = {**PILOT_ASSUMPTIONS, **given}
    sd = {m.name: assumed.get(f"sd_{m.short}", PILOT_ASSUMPTIONS[_ASSUMED_SD[m.family]]) for m in changes}
    p_disc = assumed["p_disc"]
    source = f"{pilot_source} ({', '.join(sorted(given))}; the rest assumed)" if given else "assumed"
    if any(r["k"] > 0 for r in records):
        table = tidy_table(records, config)
        refs = {(r["model"], r["dataset"]): record_frame(r) for r in records if r["k"] == 0}
        flips = [float(np.mean(record_frame(r).correct.to_numpy() != refs[(r["model"], r["dataset"])].correct.to_numpy()))
                 for r in records if r["k"] > 0 and (r["model"], r["dataset"]) in refs]
        if flips:
            p_disc = max(float(np.mean(flips)), 1e-3)
            source = f"pilot ({len(flips)} pruned cells)"
        for m in changes:
            if m.family == "faithfulness":  # every method's rows (the random baseline's too); paired t: se * sqrt(n)
                rows = table[table.metric.str.startswith(f"{m.name}:") & (table.k > 0)]
                if rows.delta_se.notna().any():
                    sd[m.name] = float(np.nanmedian(rows.delta_se * np.sqrt(rows.delta_df + 1)))
            else:  # the paired-bootstrap se times sqrt(n)
                rows = table[(table.metric == m.name) & (table.k > 0)]
                if rows.delta_se.notna().any():
                    sd[m.name] = float(np.nanmedian(rows.delta_se) * np.sqrt(config.n_eval))
    n_pruned = sum(1 for c in study_cells(config) if c.level != 0 and not is_control(c.selection))
    per_cell = sum(len(config.methods) if m.family == "faithfulness" else 1 for m in changes)
    m_tests = max(1, n_pruned * per_cell)
    test_alpha = config.alpha / m_tests
    n_faith = config.n_faithfulness * max(1, len(config.length_buckets))  # pooled claims: every bucket's sentences
    n_bounded = n_faith  # NAOPC: only the buckets that hold sentences whose bounds are searched
    if config.length_buckets:
        lowest = (1,) + tuple(b + 1 for b in config.length_buckets[:-1])
        n_bounded = config.n_faithfulness * sum(config.erasure.searches_bounds(lo) for lo in lowest)
    acc = power_table(pd.DataFrame([{"metric": equivalence.short, "n": config.n_eval, "p_disc": p_disc}]),
                      alpha=config.alpha, power=power, margin=config.margin)
    wanted = pd.DataFrame([
        {"metric": m.short, "sd": sd[m.name],
         "n": config.n_eval if m.family != "faithfulness" else n_bounded if "bounds" in m.needs else n_faith}
        for m in changes
    ])
    testable = wanted[wanted.n >= 2]  # a paired t-test needs two sentences: fewer resolve nothing (NaN row)
    # one-sided at test_alpha: the two-sided formulas at 2 * test_alpha have the same critical value
    change = (power_table(testable, alpha=2 * test_alpha, power=power, margin=config.margin).assign(alpha=test_alpha)
              if len(testable) else None)
    untestable = wanted[wanted.n < 2].assign(mde=np.nan, ci_halfwidth=np.nan)
    parts = [acc.assign(test_alpha=config.alpha)] + [
        f.assign(test_alpha=test_alpha) for f in (change, untestable) if f is not None and len(f)]
    out = pd.concat(parts, ignore_index=True)
    order = {m.short: i for i, m in enumerate(changes)}
    out = out.sort_values("metric", key=lambda c: c.map(lambda x: -1 if x == equivalence.short else order.get(x, 0)),
                          kind="stable").reset_index(drop=True)
    # an exact one-sided paired test on n pairs cannot give p below 1 / 2^n: where that exceeds alpha / m the
    # claim cannot be shown to change at this n, whatever the data (the row says so)
    exact = [np.nan if metric == equivalence.short or not n >= 1 else smallest_p("sign_flip", int(n), "greater")
             for metric, n in zip(out["metric"], out["n"])]
    out["smallest_p"] = exact
    out["can_reject"] = [True if np.isnan(p) else bool(p <= a) for p, a in zip(exact, out["test_alpha"])]
    out["source"] = source
    out.attrs.update(m=m_tests, margin=config.margin)
    return out


def planned_metrics(config: StudyConfig) -> set[str]:
    """The registered metrics a study of ``config`` measures: every calibration metric, and the
    faithfulness metrics its engine computes with ``config.erasure`` (:func:`~toolkit.metrics.faithfulness.measures`:
    none that needs the bound search when ``naopc=False``, none of the soft metrics unless ``soft``)."""
    faithfulness = {m.name for m in list_metrics("faithfulness") if measures(m, config.erasure)}
    return set(metric_names("calibration")) | faithfulness
