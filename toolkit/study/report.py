"""Figures and a markdown report for a finished study (`results/<hash>/report.md`).

`write_report` draws only what it is given (the tidy table, its summary, the prediction frames and
importance profiles per model and dataset); it knows nothing of how a study runs. Figures are
`matplotlib.figure.Figure` objects saved to PNG: no pyplot state and no backend switch, so
importing or calling this module leaves a notebook's plotting setup alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..metrics.registry import get_metric, list_metrics
from .config import claim_metrics
from .plots import claims_plot, importance_profile, metric_vs_pruning, reliability_diagram
from .._core.store import cell_id

__all__ = ["artifact_tag", "per_selection", "write_report"]

MAX_TAG = 64  # characters of a (model, dataset) tag in a figure's file name


def per_selection(table: pd.DataFrame) -> pd.DataFrame:
    """Copy the unpruned (k = 0, selection 'none') rows into every selection, so lines start at k = 0.

    A table with no pruned selection keeps its unpruned rows as they are (one point per metric).
    """
    selections = sorted(set(table.selection) - {"none"}) or ["none"]
    ref = table[table.selection == "none"]
    parts = [table[table.selection != "none"]] + [ref.assign(selection=s) for s in selections]
    return pd.concat(parts, ignore_index=True).sort_values(["selection", "k"], kind="stable")


def artifact_tag(model: str, dataset: str) -> str:
    """The (model, dataset) part of a figure's file name: safe characters only, at most ``MAX_TAG`` long.

    A short tag stays readable (``smollm2-135m_uci_yelp``; characters other than letters, digits,
    ``.``, ``_``, ``-`` become ``_``). A longer one (a long model path would exceed the file system's
    name limit) keeps its first and last characters around the model and dataset's
    :func:`toolkit._core.store.cell_id` hash, so distinct pairs keep distinct names.
    """
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}_{dataset}")
    if len(tag) <= MAX_TAG:
        return tag
    digest = cell_id(f"{model}|{dataset}")[:16]
    keep = (MAX_TAG - len(digest) - 2) // 2
    return f"{tag[:keep]}_{digest}_{tag[-keep:]}"


def _by_length_section(by_length: pd.DataFrame, metric: str, method: str) -> list[str]:
    """The report's "Faithfulness by sentence length" table: one metric and method, every cell and bucket."""
    rows = by_length[(by_length.metric == metric) & (by_length.method == method)]
    if not len(rows):
        return []
    shown = rows[["model", "dataset", "selection", "k", "length_bucket", "n", "mean", "delta", "delta_low",
                  "delta_high"]]
    return ["## Faithfulness by sentence length", "",
            f"{get_metric(metric).label} of `{method}` per length bucket (words): the mean over the bucket's "
            "sentences and its mean paired change (`delta`, with a bootstrap 95% interval) against the unpruned "
            "model on the same sentences. The claims above pool every bucket; "
            "`faithfulness_by_length.csv` holds every metric and method.", "",
            shown.round(3).to_markdown(index=False), ""]


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def write_report(
    out: str | Path,
    table: pd.DataFrame,
    summary,
    cells: Mapping[tuple[str, str], Mapping],
    *,
    digest: str,
    by_length: pd.DataFrame | None = None,
    shots: Mapping[tuple[str, str], int] | None = None,
) -> Path:
    """Draw the study's figures (PNG) and write `report.md` beside them in `out`; return the report path.

    Which metrics are drawn and which claims are stated comes from the metric registry
    (:mod:`toolkit.metrics.registry`): every metric registered with ``plot=True`` is a panel of the
    metrics-vs-pruning figure (faithfulness: the headline metric, up to three methods), and every
    claim of the summary is a panel of the claims figure and a column group of the summary table.

    Args:
        out: the run folder.
        table: the study's tidy table (one row per cell and metric).
        summary: its headline view, a :class:`toolkit.study.Summary` (`toolkit.study.summary(table)`;
            its ``method`` names the attribution method of the faithfulness columns).
        cells: per (model, dataset): ``frames`` (prediction frames by label, e.g. ``"k=2"``) for the
            reliability diagram, ``selection`` (the pruning selection they come from, or None) and
            ``importance`` (importance profile per selection).
        digest: the study config's hash, named in the report.
        by_length: faithfulness per sentence-length bucket (:func:`toolkit.study.faithfulness_by_length`);
            given, a "Faithfulness by sentence length" section shows the summary's faithfulness
            metric and method per bucket.
        shots: the k-shot demonstrations per (model, dataset) (:func:`toolkit.study.study_shots`),
            stated under the hash; None: not stated.
    """
    out = Path(out)
    head = summary.table
    figures: list[tuple[str, str]] = []
    lines = ["# Attention-pruning study", "", f"Config hash `{digest}`.", ""]
    if shots:
        lines += ["Demonstrations per prompt (shots): "
                  + "; ".join(f"{model} / {dataset}: {k}" for (model, dataset), k in shots.items()) + ".", ""]
    for (model, dataset), sub in table.groupby(["model", "dataset"], sort=False):
        tag = artifact_tag(model, dataset)
        wide = per_selection(sub)
        measured = {m.split(":", 1)[0] for m in sub.metric.unique()}
        metrics = [m.name for m in list_metrics("calibration") if m.plot and m.name in measured]
        for entry in claim_metrics(measured=measured):  # NAOPC, or AOPC in an AOPC-only study
            if entry.family == "faithfulness" and entry.plot:
                metrics += sorted(m for m in sub.metric.unique() if m.startswith(f"{entry.name}:"))[:3]
        ncols = min(3, len(metrics))
        nrows = -(-len(metrics) // ncols)
        fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            metric_vs_pruning(wide, metric, hue="selection", ax=ax)
            ax.set_title(metric.replace(":", ": "), fontsize=10)
            ax.set_ylabel(metric.split(":")[0])
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        figures.append((f"{model} / {dataset}: metrics vs pruning level", _save(fig, out / f"metrics_{tag}.png")))

        has_claims = {"model", "dataset", "k", "ni_low"} <= set(head)
        claims = head[(head.model == model) & (head.dataset == dataset)] if has_claims else None
        if claims is not None and (claims.k > 0).any():
            n_panels = len(summary.claim_columns())
            fig = Figure(figsize=(4.5 * n_panels, 3.6))
            claims_plot(dataclasses.replace(summary, table=claims), axes=fig.subplots(1, n_panels))
            figures.append((f"{model} / {dataset}: the claims, each with the interval its test uses",
                            _save(fig, out / f"claims_{tag}.png")))

        cell = cells.get((model, dataset), {})
        if cell.get("frames"):
            fig = Figure(figsize=(5, 5))
            ax = fig.subplots()
            reliability_diagram(cell["frames"], ax=ax)
            ax.set_title(f"reliability ({cell.get('selection') or 'unpruned'})", fontsize=9)
            figures.append((f"{model} / {dataset}: reliability by level", _save(fig, out / f"reliability_{tag}.png")))
        if cell.get("importance"):
            fig = Figure(figsize=(8, 3))
            ax = fig.subplots()
            importance_profile(pd.DataFrame(cell["importance"]), ax=ax)
            figures.append((f"{model} / {dataset}: attention importance", _save(fig, out / f"importance_{tag}.png")))

    shown = head.copy()
    for col in shown.columns:  # booleans as yes/no, not 1.0/0.0/nan
        if shown[col].dropna().map(type).isin([bool]).all() and shown[col].notna().any():
            shown[col] = shown[col].map({True: "yes", False: "no"}).fillna("")
    faith = get_metric(summary.faithfulness_metric) if summary.faithfulness_metric else next(
        m for m in claim_metrics() if m.family == "faithfulness")
    claimed = [get_metric(name) for name in summary.claims] or list(claim_metrics())
    degrades = ", ".join(f"`{m.short}_degrades`" for m in claimed if m.test != "noninferiority")
    lines += ["## Summary", "",
              f"{faith.label} is for `{summary.method or None}`. Deltas (`d_`) are paired differences against the "
              "unpruned model on the same examples. `keeps_accuracy`: the one-sided lower bound of the accuracy "
              f"change (`ni_low`) is above -margin (non-inferiority: a gain never fails it); `collapsed`: the pruned "
              "model predicts one class or is at chance (kept out of the claims); "
              f"{degrades}: the one-sided test that the metric got worse, rejected in its family (`_p_adj`; `_low`, "
              "`_high`: the unadjusted paired 95% interval). Primary family: cells that keep accuracy and are not "
              "collapsed; every other test is exploratory. `misaligned`: keeps accuracy and a primary claim "
              "degrades (the seed claim). Every test's inputs: `audit.csv`, recomputed by "
              "`python -m toolkit verdicts audit.csv`.", "",
              f"Tests: {summary.statement}", "",
              shown.round(3).to_markdown(index=False), ""]
    if by_length is not None and len(by_length):
        lines += _by_length_section(by_length, faith.name, summary.method)
    lines += ["## Figures", ""] + [f"### {title}\n\n![{title}]({name})\n" for title, name in figures]
    lines += ["## Full table", "", "`table.csv` beside this file: one row per (cell, metric) with bootstrap CIs.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
