"""Figures and a markdown report for a finished study (`results/<hash>/report.md`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # no display needed; a notebook's inline backend is left alone
import matplotlib.pyplot as plt
import pandas as pd

from .plots import importance_profile, metric_vs_pruning, reliability_diagram

__all__ = ["per_selection", "write_report"]


def per_selection(table: pd.DataFrame) -> pd.DataFrame:
    """Copy the unpruned (k = 0, selection 'none') rows into every selection, so lines start at k = 0."""
    selections = sorted(set(table.selection) - {"none"})
    ref = table[table.selection == "none"]
    parts = [table[table.selection != "none"]] + [ref.assign(selection=s) for s in selections]
    return pd.concat(parts, ignore_index=True).sort_values(["selection", "k"], kind="stable")


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_report(table: pd.DataFrame, records: list[dict], config) -> Path:
    """Draw the study's figures (PNG) and write `report.md` beside them; return the report path."""
    from .study import _pred_frame, summary

    out = config.run_dir()
    figures: list[tuple[str, str]] = []
    lines = ["# Attention-pruning study", "", f"Config hash `{config.digest()}`.", ""]
    for (model, dataset), sub in table.groupby(["model", "dataset"], sort=False):
        tag = f"{model}_{dataset}".replace("/", "_")
        wide = per_selection(sub)
        metrics = ["accuracy", "ece", "brier"]
        naopc = sorted(m for m in sub.metric.unique() if m.startswith("naopc_comprehensiveness:"))
        metrics += naopc[:3]
        ncols = min(3, len(metrics))
        nrows = -(-len(metrics) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            metric_vs_pruning(wide, metric, hue="selection", ax=ax)
            ax.set_title(metric.replace(":", ": "), fontsize=10)
            ax.set_ylabel(metric.split(":")[0])
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        figures.append((f"{model} / {dataset}: metrics vs pruning level", _save(fig, out / f"metrics_{tag}.png")))

        recs = [r for r in records if r["model"] == model and r["dataset"] == dataset]
        first_sel = next((r["selection"] for r in recs if r["k"] > 0), None)
        chosen = {f"k={r['k']}": _pred_frame(r) for r in recs if r["k"] == 0 or r["selection"] == first_sel}
        if chosen:
            fig, ax = plt.subplots(figsize=(5, 5))
            reliability_diagram(chosen, ax=ax)
            ax.set_title(f"reliability ({first_sel or 'unpruned'})", fontsize=9)
            figures.append((f"{model} / {dataset}: reliability by level", _save(fig, out / f"reliability_{tag}.png")))
        profiles = {r["selection"]: r["importance"] for r in recs if r.get("importance") and r["selection"] != "random"}
        if profiles:
            fig, ax = plt.subplots(figsize=(8, 3))
            importance_profile(pd.DataFrame(profiles), ax=ax)
            figures.append((f"{model} / {dataset}: attention importance", _save(fig, out / f"importance_{tag}.png")))

    head = summary(table)
    lines += ["## Summary", "", f"NAOPC is for `{head.attrs['method']}`. Deltas are against the unpruned model on the "
              "same examples (paired bootstrap); `misaligned`: accuracy's paired CI contains 0 while ECE's or "
              "NAOPC's does not.", "", head.round(3).to_markdown(index=False), ""]
    lines += ["## Figures", ""] + [f"### {title}\n\n![{title}]({name})\n" for title, name in figures]
    lines += ["## Full table", "", "`table.csv` beside this file: one row per (cell, metric) with bootstrap CIs.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
