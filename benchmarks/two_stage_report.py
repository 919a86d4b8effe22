"""Stage 1 of the two-stage design (issue 28): the committed tables, figures and summary of the sweep.

    .venv/bin/python -m toolkit sweep benchmarks/studies/two_stage.yaml     # run (resumable)
    .venv/bin/python benchmarks/two_stage_report.py [--config ...] [--out benchmarks/results/two_stage]

Reads the finished sweep cells of the config (an unfinished sweep is an error), rebuilds the sweep
table with this checkout's code (:func:`toolkit.study.sweep.sweep_table`: the cells hold every
prediction, so a table column added later needs no rerun), and writes to --out:

- ``stage1.csv``: one row per (sweep cell, metric): value with its CI, the paired change against
  k = 0 with its CI, and on accuracy rows the one-sided non-inferiority bound, the verdict at the
  margin, the discordant share and the collapse flag;
- ``kstar.csv``: k* per (model, dataset, selection, shots) by the config's rule;
  ``toolkit.study.sweep.k_star(pd.read_csv("stage1.csv"), margin=..., rule=...)`` reproduces it
  (tests/test_two_stage_results.py checks that on the committed files);
- ``stage1_<model>.png``: every metric's paired change against k, with CIs and k* marked;
- ``stage1.md``: k* per group with the accuracy change at k*, the calibration changes at k*
  (validation, descriptive), how the ECE change moves over k, the collapsed cells, the cost;
- ``stage2/``: the stage-2 study configs and their plan (n, MDE) from stage 1's spread.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from toolkit.study.plots import sweep_curves  # noqa: E402
from toolkit._core.store import CellStore  # noqa: E402
from toolkit.study.run import model_depth  # noqa: E402
from toolkit.study.sweep import SweepConfig, k_star, sweep_cells, sweep_table  # noqa: E402

METRICS = ("accuracy", "calibration_gap", "ece", "ece_temperature_scaled", "brier_reliability", "positive_rate")


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3g")


def _ci(row: pd.Series) -> str:
    return f"{row.delta:+.3f} [{row.delta_low:+.3f}, {row.delta_high:+.3f}]"


def kstar_table(table: pd.DataFrame, kstar: pd.DataFrame) -> pd.DataFrame:
    """Per group: the unpruned accuracy, k*, the passing k's, and at k* the changes of accuracy and calibration."""
    rows = []
    for _, g in kstar.iterrows():
        sub = table[(table.model == g.model) & (table.dataset == g.dataset) & (table.shots == g.shots)]
        ref = sub[(sub.k == 0) & (sub.metric == "accuracy")].iloc[0]
        row = {"model": g.model, "dataset": g.dataset, "shots": g.shots, "selection": g.selection,
               "accuracy (k=0)": ref.value, "k*": int(g.k_star), "of": int(g.swept),
               "passing k": g.passing or "-"}
        if g.k_star > 0:
            at = sub[(sub.selection == g.selection) & (sub.k == g.k_star)].set_index("metric")
            row |= {"Δ accuracy at k* [95% CI]": _ci(at.loc["accuracy"]), "lower bound": at.loc["accuracy", "lower"],
                    "Δ ECE": _ci(at.loc["ece"]), "Δ gap (conf - acc)": _ci(at.loc["calibration_gap"]),
                    "Δ ECE after T": _ci(at.loc["ece_temperature_scaled"])}
        rows.append(row)
    return pd.DataFrame(rows)


def fluctuation(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, shots, selection): how the ECE change moves over k = 1..k_max (validation).

    Columns: the range of the ECE change, how many k's have a paired 95% CI above / below 0
    (unadjusted, descriptive), and how often the change's sign flips between consecutive k.
    """
    rows = []
    ece = table[(table.metric == "ece") & (table.k > 0)]
    for (model, dataset, shots, sel), g in ece.groupby(["model", "dataset", "shots", "selection"], sort=False):
        g = g.sort_values("k")
        d = g.delta.to_numpy(float)
        signs = np.sign(d[d != 0])
        rows.append({"model": model, "dataset": dataset, "shots": shots, "selection": sel,
                     "Δ ECE min": d.min(), "Δ ECE max": d.max(), "k with CI > 0": int((g.delta_low > 0).sum()),
                     "k with CI < 0": int((g.delta_high < 0).sum()),
                     "sign flips": int(np.sum(signs[1:] != signs[:-1])), "k swept": len(g)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="benchmarks/studies/two_stage.yaml")
    parser.add_argument("--out", default="benchmarks/results/two_stage")
    parser.add_argument("--results", default=None, help="the sweep's output_dir (default: the config's)")
    parser.add_argument("--wall", type=float, default=None, help="the sweep's wall time in s, to state in stage1.md")
    args = parser.parse_args(argv)
    config = SweepConfig.from_file(args.config)
    if args.results:
        config = SweepConfig(**{**config.to_dict(), "output_dir": args.results})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    depth = {m: model_depth(m) for m in config.models}
    cells = list(sweep_cells(config, depth))
    records = CellStore(config.run_dir()).records()
    missing = [c.key for c in cells if c.key not in records]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(cells)} sweep cells are not finished, e.g. {missing[:3]}; "
                         f"run: python -m toolkit sweep {args.config}")
    recs = [records[c.key] for c in cells]
    table = sweep_table(recs, config)
    table.to_csv(out / "stage1.csv", index=False)
    kstar = k_star(table, margin=config.margin, rule=config.kstar_rule)
    kstar.to_csv(out / "kstar.csv", index=False)
    for model in config.models:
        sub = table[table.model == model]
        if sub.empty:
            continue
        axes = sweep_curves(sub, metrics=METRICS, kstar=kstar)
        fig = axes.flat[0].figure
        fig.suptitle(f"{model}: paired change against the unpruned model vs k, validation split "
                     f"(n per cell: {', '.join(map(str, sorted(set(sub.n))))}); shaded: 95% CI; "
                     f"triangles: one-sided 95% non-inferiority bound; dashed: -{config.margin:g}; dotted: k*",
                     fontsize="small")
        fig.savefig(out / f"stage1_{model}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    acc = table[table.metric == "accuracy"]
    collapsed = acc[acc.collapsed.astype(bool)]
    seconds = sum(r["seconds"] for r in recs)
    manifest = next((r.get("manifest") for r in recs if r.get("manifest")), {}) or {}
    lines = ["# Stage 1: the dose-response sweep (validation split)", "",
             f"`python -m toolkit sweep {args.config}`, sweep `{config.digest()}`; this file: "
             "`python benchmarks/two_stage_report.py`. Every k from 1 to floor(L/3) per (model, dataset, "
             "shots, selection), accuracy and calibration only, on the validation split; layers chosen on "
             "the train split. k* = the largest k whose paired accuracy change passes non-inferiority "
             f"(one-sided {1 - config.alpha:.0%} Tango score bound above -{config.margin:g}) with every smaller "
             f"k passing too (rule `{config.kstar_rule}`, fixed in the config before the run), and not collapsed.",
             "",
             f"{len(cells)} cells; {seconds / 60:.1f} min of cell compute"
             + (f", {args.wall / 60:.1f} min wall" if args.wall else "")
             + f" on 2 CPU cores; torch {manifest.get('torch')}, transformers {manifest.get('transformers')}, "
             f"toolkit code {str(manifest.get('toolkit_sha256'))[:12]}.", "",
             "## k* per group, and the changes at k* (validation; descriptive, not the confirmation)", "",
             _md(kstar_table(table, kstar)), "",
             "## How the ECE change moves with k (validation; unadjusted 95% CIs, descriptive)", "",
             _md(fluctuation(table)), "",
             f"## Collapsed cells ({len(collapsed)} of {len(acc)})", "",
             "More than 95% of predictions in one class, or balanced accuracy at most chance + 0.05 "
             "(`toolkit.decisions.collapse`). A label-mass floor (1%, then 0.1%) was a third rule until this run "
             "showed working Gemma zero-shot cells, the unpruned reference among them, under it; see that module's "
             "docstring.", ""]
    if len(collapsed):
        lines += [_md(collapsed[["model", "dataset", "shots", "selection", "k", "value", "collapse_reasons"]]
                      .rename(columns={"value": "accuracy"})), ""]
    stage2 = config.run_dir() / "stage2"
    if stage2.is_dir():
        shutil.rmtree(out / "stage2", ignore_errors=True)
        shutil.copytree(stage2, out / "stage2")
        if (stage2 / "plan.csv").is_file():
            sized = pd.read_csv(stage2 / "plan.csv")
            lines += ["## Stage 2: what each confirmation study can detect (from stage 1's spread at k*)", "",
                      _md(sized[["model", "dataset", "shots", "metric", "n", "p_disc", "sd", "mde",
                                 "n_noninferiority", "test_alpha", "can_reject"]]), "",
                      "Configs: `stage2/*.json` (run each with `python -m toolkit study --config FILE`).", ""]
    (out / "stage1.md").write_text("\n".join(lines))
    (out / "sweep_config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
    print(f"wrote {out}/stage1.csv, kstar.csv, stage1.md, stage1_<model>.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
