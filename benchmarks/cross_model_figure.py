"""The cross-model study's figure: accuracy, ECE and NAOPC (saliency) against the fraction of
attention layers dropped, one row per model, one line per selection, 95% CI bands.

Usage: python benchmarks/cross_model_figure.py RUN_DIR [OUT.png]
RUN_DIR is the study's folder (`results/<hash>` of benchmarks/studies/cross_model.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from toolkit.models.manifest import folder_manifests, group_manifests, write_result_manifest
from toolkit.study.plots import metric_vs_pruning
from toolkit.study.report import per_selection


def main() -> None:
    run_dir = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("benchmarks/results/cross_model_metrics.png")
    table = pd.read_csv(run_dir / "table.csv")
    metrics = ["accuracy", "ece", "naopc_comprehensiveness:saliency"]
    models = list(dict.fromkeys(table.model))
    fig = Figure(figsize=(4.4 * len(metrics), 3.2 * len(models)))
    axes = fig.subplots(len(models), len(metrics), squeeze=False)
    for row, model in zip(axes, models):
        wide = per_selection(table[table.model == model]).sort_values(["selection", "level"], kind="stable")
        depth = {"smollm2-135m": 30, "gemma3-270m": 18}.get(model)
        for ax, metric in zip(row, metrics):
            metric_vs_pruning(wide, metric, x="level", hue="selection", ax=ax)
            name = metric.replace("naopc_comprehensiveness:saliency", "NAOPC comp. (saliency)")
            ax.set_title(f"{model}{f' ({depth} layers)' if depth else ''}: {name}", fontsize=9)
            ax.set_xlabel("fraction of attention layers dropped")
            ax.set_ylabel(name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    # the manifests the study's cells were computed under (one per distinct manifest)
    cells = folder_manifests(run_dir)
    groups = group_manifests(cells)["groups"]
    write_result_manifest(out, [cells[g["keys"][0]] for g in groups])
    print(out)


if __name__ == "__main__":
    main()
