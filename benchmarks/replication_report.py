"""The replication's report (issue 22): a verdict per cell, their counts, the heatmap, what the design resolves.

    .venv/bin/python -m toolkit study --config benchmarks/studies/replication.yaml   # run (resumable)
    .venv/bin/python benchmarks/replication_report.py [--config ...] [--out benchmarks/results/replication]

Reads the finished cells of the config (an unfinished study is an error naming the missing
cells), builds the study's table and summary with the config's claims (Holm over every change
test of the replication), and writes to --out:

- ``verdicts.csv``: one row per (model, dataset, selection, level): equivalent, which claim moved
  and in which direction, misaligned, outcome (:func:`toolkit.study.verdicts`);
- ``counts.md``: verdict counts by model, dataset, selection and claim; the statement of the tests;
  the resolution of each claim (:func:`toolkit.study.plan` with the spread of these cells); the
  shots per pair; faithfulness per length bucket; the cost per cell;
- ``verdict_heatmap.png``: every verdict (:func:`toolkit.study.plots.verdict_heatmap`);
- ``by_length.csv``: :func:`toolkit.study.faithfulness_by_length`;
- ``audit.csv``: one row per (pruned cell, metric) with every test's inputs (effect, CI, one-sided
  p, n, discordant counts, collapse statistics) and the gated verdicts derived from them
  (:func:`toolkit.study.audit_table`); ``python -m toolkit verdicts audit.csv`` recomputes every
  verdict from the file alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from toolkit.metrics.registry import get_metric  # noqa: E402
from toolkit.study.plots import verdict_heatmap  # noqa: E402
from toolkit.study import (  # noqa: E402
    StudyConfig,
    audit_table,
    cell_verdicts,
    faithfulness_by_length,
    load_results,
    plan,
    study_cells,
    study_shots,
    summary,
    tidy_table,
    verdict_counts,
    verdicts,
)


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3g")


def _length_table(by_length: pd.DataFrame, claims: list[str], method: str) -> pd.DataFrame:
    """Per faithfulness metric and bucket, over the pruned cells: the mean paired change and how many
    cells' per-bucket 95% bootstrap intervals lie above / below 0 (descriptive, not corrected)."""
    pruned = by_length[(by_length.k > 0) & (by_length.method == method) & by_length.metric.isin(claims)]
    rows = []
    for (metric, bucket), g in pruned.groupby(["metric", "length_bucket"], sort=False):
        g = g.dropna(subset=["delta"])
        g = g[g.n_paired >= 2]  # a bootstrap interval of one sentence is that sentence
        rows.append({"metric": get_metric(metric).label, "length": bucket, "cells": len(g),
                     "sentences per cell": int(g.n_paired.median()) if len(g) else 0,
                     "mean change": g.delta.mean(), "CI above 0": int((g.delta_low > 0).sum()),
                     "CI below 0": int((g.delta_high < 0).sum())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="benchmarks/studies/replication.yaml")
    parser.add_argument("--out", default="benchmarks/results/replication")
    args = parser.parse_args()
    config = StudyConfig.from_file(args.config)
    records = load_results(config)
    missing = [c.key for c in study_cells(config) if c.key not in {r["cell"] for r in records}]
    if missing:
        raise SystemExit(f"{len(missing)} cells are not finished (e.g. {missing[:3]}); run the study first: "
                         f"python -m toolkit study --config {args.config}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = tidy_table(records, config)
    head = summary(table, correction=config.correction, alpha=config.alpha, claims=config.claims)
    v = verdicts(head)
    v.to_csv(out / "verdicts.csv", index=False)
    # every test's inputs and the verdicts derived from them; `python -m toolkit verdicts audit.csv` recomputes them
    audit = audit_table(records, margin=config.margin, alpha=config.alpha, n_boot=config.n_boot, seed=config.seed)
    audit.to_csv(out / "audit.csv", index=False)  # full precision: recomputing reads exactly these numbers
    change = [c for c in head.claims if get_metric(c).test != "tost"]
    parts = [f"# Does the claim replicate? ({config.digest()})", "", f"{head.statement}", ""]
    for by in ("model", "dataset", "selection"):
        keys = [by] if by == "model" else ["model", by] if by == "dataset" else [by]
        parts += [f"## Verdicts by {by}", "", _md(verdict_counts(v, keys)), ""]
    per_claim = pd.DataFrame([{"claim": get_metric(c).label, "cells": len(v), "moved up": int((v[c] == "up").sum()),
                               "moved down": int((v[c] == "down").sum())} for c in change])
    parts += ["## Verdicts by claim", "", _md(per_claim), ""]
    outcomes = v.outcome.value_counts().rename_axis("outcome").reset_index(name="cells")
    parts += ["## Outcomes", "", _md(outcomes), ""]
    gated = cell_verdicts(audit).verdict.value_counts().rename_axis("verdict").reset_index(name="cells")
    parts += ["## Gated verdicts (non-inferiority gate, collapsed cells apart, directional primary claims, Holm; "
              "audit.csv)", "", _md(gated), ""]
    resolution = plan(config)
    parts += ["## What the design resolves (power 0.8; change tests at alpha / m)", "",
              _md(resolution.drop(columns=["alpha", "power"], errors="ignore")), ""]
    shots = pd.DataFrame([{"model": m, "dataset": d, "shots": k} for (m, d), k in study_shots(config).items()])
    parts += ["## Demonstrations per pair (shots: auto)", "", _md(shots), ""]
    by_length = faithfulness_by_length(records, n_boot=config.n_boot, alpha=config.alpha, seed=config.seed)
    by_length.to_csv(out / "by_length.csv", index=False)
    faith = [c for c in change if get_metric(c).family == "faithfulness"] + ["aopc_comprehensiveness"]
    parts += ["## Faithfulness by sentence length (pruned minus unpruned, per cell; uncorrected 95% CIs)", "",
              _md(_length_table(by_length, faith, head.method)), ""]
    seconds = pd.DataFrame([{"model": r["model"], "seconds": r["seconds"]} for r in records])
    cost = seconds.groupby("model").seconds.agg(cells="size", median="median", max="max", total="sum").reset_index()
    parts += ["## Cost per cell (seconds, as each cell measured itself)", "", _md(cost),
              "", f"Total: {seconds.seconds.sum() / 60:.1f} min of cell time.", ""]
    (out / "counts.md").write_text("\n".join(parts))
    fig, ax = plt.subplots(figsize=(10, 0.5 * v.groupby(["model", "dataset"]).ngroups + 1.8))
    verdict_heatmap(v, ax=ax)
    fig.savefig(out / "verdict_heatmap.png", dpi=120, bbox_inches="tight")
    print("\n".join(parts))
    print(f"wrote {out}/verdicts.csv, audit.csv, counts.md, by_length.csv, verdict_heatmap.png")
    print(f"misaligned: {int(v.misaligned.sum())} of {len(v)}; equivalent: {int(v.equivalent.sum())}; "
          f"expected false flags without correction: {head.expected_false_flags:.1f}")


if __name__ == "__main__":
    main()
