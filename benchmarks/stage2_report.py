"""Stage 2 of the two-stage design (issue 28): the confirmation at k*, on the test split, as committed tables.

    # each stage-2 study (resumable; benchmarks/results/two_stage/stage2/*.json, written by the sweep)
    .venv/bin/python -m toolkit study --config benchmarks/results/two_stage/stage2/<study>.json
    .venv/bin/python benchmarks/stage2_report.py [--results results] [--out benchmarks/results/two_stage]

Reads every finished stage-2 study (a study with unfinished cells is an error; ``--allow-missing``
reports the finished studies and lists the rest), rebuilds each study's audit table from its cell
records with this checkout's code (:func:`toolkit.study.audit_table`) and writes to --out:

- ``stage2_audit.csv``: every test's inputs and verdict, one row per (pruned cell, metric), a
  ``study`` column naming the config. Each study is its own pair of families (the plan sized each
  study at its own m, before the run); ``python -m toolkit verdicts stage2_audit.csv`` recomputes
  every verdict from the table's inputs. ``p_adj_all`` / ``rejected_all`` / ``m_all``: the primary
  claims once more, Holm over every stage-2 study together (the stricter reading);
- ``stage2_cells.csv``: one row per pruned cell: the gate (accuracy change, non-inferiority bound at
  the three margins, collapse) and, per primary claim, effect [95% CI], p, adjusted p (per study
  and over all) and the verdict;
- ``stage2_controls.csv``: each importance selection against its pooled random-layer draws at
  the same k (:func:`toolkit.study.random_control`; exploratory, two-sided, BH over the table);
- ``stage2_rom.csv``: per cell, the soft metrics of the method and of its permuted baseline as
  ratios of means over the sentences (:func:`toolkit.metrics.faithfulness.soft_ratio_of_means`), and the room;
- ``stage2_heatmap.png``: the verdict of every selection at k*;
- ``stage2_effects.png``: the primary claims' paired changes at k* with their 95% CIs, beside the
  random draws' mean change;
- ``stage2.md``: all of it in words, with n, the cost and what the design could not resolve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from toolkit.metrics.calibration import brier_decomposition  # noqa: E402
from toolkit.decisions import NONINFERIORITY_MARGINS, gated_family  # noqa: E402
from toolkit.metrics.faithfulness import soft_ratio_of_means  # noqa: E402
from toolkit.metrics.registry import get_metric  # noqa: E402
from toolkit.study.plots import verdict_heatmap  # noqa: E402
from toolkit.study import StudyConfig, audit_table, claim_metrics, load_results, random_control, recompute  # noqa: E402
from toolkit.study import study_cells  # noqa: E402
from toolkit.study.decide import is_control  # noqa: E402
from toolkit.study.verdicts import OUTCOMES  # noqa: E402

STAGE2 = Path("benchmarks/results/two_stage/stage2")
_OUTCOME_OF = {"collapsed": OUTCOMES[3], "not shown": OUTCOMES[2]}


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3g")


def _primary(config: StudyConfig) -> list[str]:
    return [m.name for m in claim_metrics(config.claims) if m.test != "noninferiority"]


def load_studies(configs: list[Path], results: str | None, allow_missing: bool):
    """The finished studies: (name, config, records); the unfinished ones by name."""
    done, missing = [], []
    for path in configs:
        config = StudyConfig.from_file(path)
        if results:
            config = config.with_overrides(output_dir=results)
        cells = list(study_cells(config))
        records = load_results(config)
        if len(records) < len(cells):
            if not allow_missing:
                raise SystemExit(f"{path.stem}: {len(records)} of {len(cells)} cells finished in {config.run_dir()}; "
                                 f"run: python -m toolkit study --config {path}")
            missing.append((path.stem, len(records), len(cells)))
            continue
        done.append((path.stem, config, records))
    return done, missing


def stage2_audit(studies) -> pd.DataFrame:
    """The stacked audit tables (one ``study`` each), and the primary claims once more over all studies."""
    parts = []
    for name, config, records in studies:
        table = audit_table(records, margin=config.margin, alpha=config.alpha, primary=_primary(config),
                            n_boot=config.n_boot, seed=config.seed)
        parts.append(table.assign(study=name))
    audit = recompute(pd.concat(parts, ignore_index=True))
    tests = audit[audit.metric != "accuracy"]
    alpha = float(audit["alpha"].iloc[0])
    pooled = gated_family(tests[["p", "primary_claim", "gate", "test", "n", "alternative", "n_resamples"]], alpha=alpha)
    primary = pooled.family == "primary"
    audit["m_all"] = np.nan
    audit["p_adj_all"] = np.nan
    audit["rejected_all"] = False
    audit.loc[pooled.index[primary], "m_all"] = pooled.loc[primary, "m"]
    audit.loc[pooled.index[primary], "p_adj_all"] = pooled.loc[primary, "p_adj"]
    audit.loc[pooled.index[primary], "rejected_all"] = pooled.loc[primary, "rejected"]
    audit["control"] = audit.selection.map(is_control).astype(bool)
    return audit


def cells_table(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per pruned cell: the gate and each primary claim's effect, CI, p and adjusted p."""
    keys = ["study", "model", "dataset", "shots", "selection", "k", "layers"]
    rows = []
    for key, g in audit.groupby(keys, sort=False):
        acc = g[g.metric == "accuracy"].iloc[0]
        row = dict(zip(keys, key)) | {"n": int(acc.n), "d_accuracy": acc.estimate, "ni_low": acc.ci_low}
        row |= {f"keeps_{m:g}": bool(acc[f"keeps_accuracy_{m:g}"]) for m in NONINFERIORITY_MARGINS}
        row |= {"collapsed": bool(acc.collapsed), "control": bool(acc.control)}
        for _, t in g[g.primary_claim.astype(bool)].iterrows():
            s = t.metric.split(":", 1)[0]
            row |= {f"d_{s}": t.estimate, f"{s}_low": t.ci_low, f"{s}_high": t.ci_high, f"{s}_n": int(t.n),
                    f"{s}_p": t.p, f"{s}_p_adj": t.p_adj, f"{s}_p_adj_all": t.p_adj_all,
                    f"{s}_degrades": bool(t.rejected and t.family == "primary")}
        row["verdict"] = acc.verdict
        rows.append(row)
    return pd.DataFrame(rows)


def heatmap_frame(audit: pd.DataFrame) -> pd.DataFrame:
    """The importance selections at k*, in the shape :func:`toolkit.study.plots.verdict_heatmap` draws."""
    out = []
    for (study, selection), g in audit.groupby(["study", "selection"], sort=False):
        if is_control(selection):
            continue
        acc = g[g.metric == "accuracy"].iloc[0]
        verdict = str(acc.verdict)
        outcome = next((o for key, o in _OUTCOME_OF.items() if verdict.startswith(key)), None)
        if outcome is None:
            outcome = OUTCOMES[1] if "degrades" in verdict else OUTCOMES[0]
        row = dict(model=acc.model, dataset=f"{acc.dataset}, {int(acc.shots)}-shot", selection=selection, k=int(acc.k),
                   d_accuracy=acc.estimate, outcome=outcome)
        marks = {}
        for _, t in g[g.primary_claim.astype(bool)].iterrows():
            name = t.metric.split(":", 1)[0]
            marks[name] = ("worse" if t.family == "primary" else "worse?") if t.rejected else ""
        row |= marks
        row["degraded"] = ", ".join(get_metric(n).label for n, v in marks.items() if v)
        out.append(row)
    return pd.DataFrame(out).sort_values(["model", "dataset", "selection"]).reset_index(drop=True)


def effects_figure(audit: pd.DataFrame, path: Path) -> list[str]:
    """Per primary claim: each selection's paired change at k* with its 95% CI, and (x) the random
    draws' mean change at the same k. Returns the claims drawn (audit metric names)."""
    claims = list(dict.fromkeys(audit[audit.primary_claim.astype(bool)].metric))
    keys = ["study", "selection", "k"]
    cells = audit[audit.metric == "accuracy"]
    sel = cells[~cells.control].sort_values(["model", "dataset", "shots", "selection"])
    labels = [f"{r.model.split('-')[0]} {r.dataset} {int(r.shots)}-shot {r.selection} k={r.k}" for r in sel.itertuples()]
    colour = np.where(sel.collapsed, "0.6", np.where(sel["keeps_accuracy_0.05"], "C0", "C3"))
    fig, axes = plt.subplots(1, len(claims), figsize=(2.6 * len(claims) + 3.0, 0.3 * len(sel) + 1.4), sharey=True,
                             squeeze=False)
    y = np.arange(len(sel))
    for ax, claim in zip(axes[0], claims):
        rows = audit[audit.metric == claim].set_index(keys)
        draws = audit[(audit.metric == claim) & audit.control].groupby(["study", "k"]).estimate
        mean_draw = draws.mean()
        for i, r in enumerate(sel.itertuples()):
            key = (r.study, r.selection, r.k)
            if key in rows.index:
                t = rows.loc[key]
                ax.errorbar(t.estimate, i, xerr=[[t.estimate - t.ci_low], [t.ci_high - t.estimate]], fmt="o", ms=3,
                            color=colour[i], lw=1)
            if (r.study, r.k) in mean_draw.index:
                ax.plot(mean_draw.loc[(r.study, r.k)], i, "x", color="k", ms=4)
        ax.axvline(0, color="k", lw=0.6)
        name = claim.split(":", 1)
        ax.set_title(get_metric(name[0]).label + ("\n(over permuted)" if len(name) > 1 and "permuted" in name[1] else ""),
                     fontsize="small")
        ax.tick_params(labelsize=7)
    axes[0, 0].set_yticks(y, labels, fontsize=7)
    axes[0, 0].invert_yaxis()
    height = fig.get_size_inches()[1]
    fig.suptitle("Stage 2 (test split): paired change pruned - unpruned at k*, 95% CI (unadjusted)\nblue: keeps accuracy "
                 "(margin 0.05); red: not shown to keep; grey: collapsed; x: mean of the 3 random-layer draws at that k",
                 fontsize="small", y=1 + 0.2 / height)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return claims


def rom_table(studies) -> pd.DataFrame:
    """Per cell and ranking (the method, its permuted baseline): the soft metrics as ratios of means
    over the explained sentences (:func:`toolkit.metrics.faithfulness.soft_ratio_of_means`, bootstrap CI), and the room."""
    rows = []
    for name, config, records in studies:
        for r in records:
            per = pd.DataFrame(r.get("faithfulness", []))
            if per.empty or "room" not in per:
                continue
            per = per[~per.method.str.endswith("_minus_permuted") & (per.method != "random")]
            rom = soft_ratio_of_means(per, n_boot=config.n_boot, seed=config.seed)
            rows.append(rom.assign(study=name, selection=r["selection"], k=r["k"]))
    if not rows:
        return pd.DataFrame()
    out = pd.concat(rows, ignore_index=True)
    return out[["study", "selection", "k", *[c for c in out.columns if c not in ("study", "selection", "k")]]]


def glance(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per importance selection at k*: the gate and each primary claim's change, for the README."""
    rows = []
    for (study, selection, k), g in audit[~audit.control].groupby(["study", "selection", "k"], sort=False):
        acc = g[g.metric == "accuracy"].iloc[0]
        row = {"model": acc.model, "dataset": acc.dataset, "shots": int(acc.shots), "selection": selection, "k*": k,
               "n": int(acc.n), "Δ accuracy (bound)": f"{acc.estimate:+.3f} ({acc.ci_low:+.3f})"}
        for _, t in g[g.primary_claim.astype(bool)].iterrows():
            name = get_metric(t.metric.split(":", 1)[0]).label
            mark = "*" if t.rejected and t.family == "primary" else ""
            row[name] = _ci(t.estimate, t.ci_low, t.ci_high) + mark
        row["verdict"] = acc.verdict
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "dataset", "shots", "selection"])


def murphy_table(studies) -> pd.DataFrame:
    """Per importance selection at k*: the Brier change split into Murphy's reliability and resolution
    changes (15 equal-width bins, :func:`toolkit.metrics.calibration.brier_decomposition`; descriptive). A
    Brier rise with no reliability rise is lost discrimination, not lost calibration."""
    rows = []
    for name, _, records in studies:
        ref = next(r for r in records if r["k"] == 0)
        y = np.asarray(ref["labels"], dtype=int)
        base = brier_decomposition(np.asarray(ref["probs"], dtype=float), y, n_bins=15)
        for r in records:
            if r["k"] == 0 or is_control(r["selection"]):
                continue
            d = brier_decomposition(np.asarray(r["probs"], dtype=float), y, n_bins=15)
            rows.append({"study": name, "selection": r["selection"], "k": r["k"],
                         "Δ Brier": d.brier - base.brier, "Δ reliability": d.reliability - base.reliability,
                         "Δ resolution": d.resolution - base.resolution,
                         "Δ residual": d.residual - base.residual})
    return pd.DataFrame(rows)


def _ci(est: float, lo: float, hi: float) -> str:
    return f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(est) else "-"


def report(studies, missing, audit: pd.DataFrame, controls: pd.DataFrame, rom: pd.DataFrame, claims: list[str],
           wall: float | None) -> str:
    records = [r for _, _, recs in studies for r in recs]
    seconds = sum(r["seconds"] for r in records)
    manifest = next((r.get("manifest") for r in records if r.get("manifest")), {}) or {}
    config = studies[0][1]
    acc = audit[audit.metric == "accuracy"]
    sel, draws = acc[~acc.control], acc[acc.control]
    tests = audit[audit.primary_claim.astype(bool) & (audit.family == "primary")]
    m_all = int(tests.m_all.dropna().iloc[0]) if tests.m_all.notna().any() else 0
    lines = [
        "# Stage 2: the confirmation at k* (test split)", "",
        f"{len(studies)} studies, {len(records)} cells; `python benchmarks/stage2_report.py` wrote this file from "
        f"their records. {seconds / 60:.0f} min of cell compute" + (f", {wall / 60:.0f} min wall" if wall else "")
        + f" on 2 CPU cores (two studies at a time, one thread each); torch {manifest.get('torch')}, transformers "
        f"{manifest.get('transformers')}, toolkit code {str(manifest.get('toolkit_sha256'))[:12]} "
        f"(git {str(manifest.get('git_commit'))[:7]}).", "",
        "Design (fixed before the run, `benchmarks/studies/two_stage.yaml`): per (model, dataset, shots) with some "
        "k* >= 1 on validation, one study on the test split: the unpruned model, each selection at its own k*, and 3 "
        "random-layer draws at each of those k, all on the same sentences. The gate: the one-sided "
        f"{1 - config.alpha:.0%} Tango bound of the paired accuracy change above -{config.margin:g}, and not collapsed. "
        "Primary claims (one-sided, 'degrades'): "
        + ", ".join(dict.fromkeys(get_metric(c.split(':')[0]).label + (" over its permuted baseline" if "permuted" in c
                                                                       else "") for c in claims))
        + " - in gated cells of an importance selection; Holm within each study (the plan sized each study at its own "
        f"m), and once more over all {m_all} primary tests together (`p_adj_all`). Everything else is exploratory "
        "(BH). Faithfulness is the method's score minus the mean of 3 permutations of its own scores (the same "
        "masking amount; the same permutations in the pruned and the unpruned model).", ""]
    lines += ["## At a glance: each selection at its k*", "",
              "Paired change pruned - unpruned on the test split [95% CI]; `*` marks a claim shown to degrade "
              "(Holm within its study); faithfulness is input x gradient over its permuted baseline.", "",
              _md(glance(audit)), ""]
    if missing:
        lines += ["**Not finished** (not in any table here): "
                  + ", ".join(f"{n} ({d} of {t} cells)" for n, d, t in missing) + ".", ""]
    gate = sel.assign(**{"Δ accuracy": [f"{e:+.3f}" for e in sel.estimate], "bound": sel.ci_low.round(3)})
    lines += ["## Does accuracy hold at k* on the test split?", "",
              f"{int(sel['keeps_accuracy_0.05'].sum())} of {len(sel)} selection cells keep accuracy at margin "
              f"{config.margin:g} ({int(sel['keeps_accuracy_0.02'].sum())} at 0.02, "
              f"{int(sel['keeps_accuracy_0.1'].sum())} at 0.10); {int(sel.collapsed.sum())} collapsed. "
              "k* was chosen on validation: a cell that fails here is the confirmation failing.", "",
              _md(gate[["study", "selection", "k", "n", "Δ accuracy", "bound", "keeps_accuracy_0.02",
                        "keeps_accuracy_0.05", "keeps_accuracy_0.1", "collapsed", "verdict"]]), ""]
    show = audit[audit.primary_claim.astype(bool)].copy()
    pooled_refused = int((tests.p.notna() & ~tests.refused.astype(bool) & tests.p_adj_all.isna()).sum())
    show["effect [95% CI]"] = [_ci(e, lo, hi) for e, lo, hi in zip(show.estimate, show.ci_low, show.ci_high)]
    show["claim"] = [m.replace("input_x_gradient_minus_permuted", "IxG over permuted") for m in show.metric]
    lines += ["## Do calibration and faithfulness degrade where accuracy holds?", "",
              f"{int(tests.rejected.sum())} of {len(tests)} primary tests reject within their study (Holm); "
              f"{int(tests.rejected_all.sum())} over all {m_all} (Holm). "
              f"{int(show.refused.sum())} primary-claim tests were refused within their study, "
              f"{pooled_refused} more over all (their smallest attainable p exceeds alpha/m: they could not reject at "
              "their n; the exact sign-flip test on 8 NAOPC pairs bottoms out at 1/256). Rows of cells outside the "
              "gate are exploratory.", "",
              _md(show[["study", "selection", "k", "claim", "n", "effect [95% CI]", "test", "p", "family", "p_adj",
                        "p_adj_all", "rejected", "refused"]]), ""]
    lines += ["## The random-layer draws at the same k", "",
              f"{len(draws)} draws: {int(draws['keeps_accuracy_0.05'].sum())} keep accuracy at {config.margin:g}, "
              f"{int(draws.collapsed.sum())} collapsed.", "",
              _md(draws.groupby(["study", "k"]).agg(draws=("selection", "size"),
                                                    keep=("keeps_accuracy_0.05", "sum"),
                                                    collapsed=("collapsed", "sum"),
                                                    mean_d_accuracy=("estimate", "mean")).reset_index()), ""]
    if len(controls):
        c = controls.copy()
        c["difference [95% CI]"] = [_ci(e, lo, hi) for e, lo, hi in zip(c.difference, c.ci_low, c.ci_high)]
        c["metric"] = [m.replace("input_x_gradient_minus_permuted", "IxG over permuted") for m in c.metric]
        lines += ["## Selection against the pooled random draws (exploratory, two-sided, BH)", "",
                  "difference = metric(selection) - mean over the draws of metric(draw), paired on the same sentences "
                  "(`toolkit.study.random_control`). A collapsed draw counts: it is what dropping k random layers did.",
                  "", f"{int(c.rejected.sum())} of {int((~c.refused & c.p.notna()).sum())} comparisons reject (BH); "
                  f"{int(c.refused.sum())} refused.", "",
                  _md(c[["study", "selection", "k", "draws", "draws_collapsed", "metric", "n", "difference [95% CI]",
                         "test", "p", "p_adj", "rejected"]]), ""]
    split = murphy_table(studies)
    if len(split):
        lines += ["## Brier's change, split (descriptive)", "",
                  "Brier = reliability - resolution + uncertainty (+ the within-bin residual; Murphy 1973, 15 "
                  "equal-width bins). Uncertainty is the data's and does not move; a Brier rise with reliability flat "
                  "and resolution down is lost discrimination at kept accuracy, not miscalibration.", "",
                  _md(split), ""]
    if len(rom):
        r = rom[(rom.k == 0) | ~rom.selection.map(is_control)].copy()
        for col in ("soft_comprehensiveness_rom", "soft_sufficiency_rom"):
            r[col.replace("soft_", "").replace("_rom", " (RoM) [95% CI]")] = [
                _ci(e, lo, hi).lstrip("+") for e, lo, hi in zip(r[col], r[f"{col}_low"], r[f"{col}_high"])]
        lines += ["## Soft metrics normalised as ratios of means (descriptive)", "",
                  "NC = mean comprehensiveness / mean room, NS = mean (sufficiency - 1 + room) / mean room, room = "
                  "p(y^|x) - p(y^|0) per sentence (`toolkit.metrics.faithfulness.soft_ratio_of_means`); the method beside its "
                  "permuted baseline (the same masking amount) in the unpruned cell and at each selection's k*. A pruned "
                  "model with less room moves both alike: the separation of the method from its permutations is the "
                  "explanation's share.", "",
                  _md(r[["study", "selection", "k", "method", "n_examples", "room", "comprehensiveness (RoM) [95% CI]",
                         "sufficiency (RoM) [95% CI]"]]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=str(STAGE2), help="the folder of stage-2 study configs")
    parser.add_argument("--results", default=None, help="the studies' output_dir (default: each config's)")
    parser.add_argument("--out", default="benchmarks/results/two_stage")
    parser.add_argument("--wall", type=float, default=None, help="the run's wall time in s, to state in stage2.md")
    parser.add_argument("--allow-missing", action="store_true", help="report the finished studies, list the rest")
    args = parser.parse_args(argv)
    configs = sorted(Path(args.configs).glob("*.json"))
    if not configs:
        raise SystemExit(f"no study configs (*.json) in {args.configs}")
    studies, missing = load_studies(configs, args.results, args.allow_missing)
    if not studies:
        raise SystemExit("no finished stage-2 study")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audit = stage2_audit(studies)
    audit.to_csv(out / "stage2_audit.csv", index=False)
    cells_table(audit).to_csv(out / "stage2_cells.csv", index=False)
    # one call over every study's records: one BH family over all the comparisons (each study is one
    # (model, dataset, shots), the key random_control groups by)
    config = studies[0][1]
    study_of = {(r["model"], r["dataset"], r.get("shots", 0)): name for name, _, recs in studies for r in recs}
    controls = random_control([r for _, _, recs in studies for r in recs], n_boot=config.n_boot, seed=config.seed)
    if len(controls):
        controls.insert(0, "study", [study_of[k] for k in zip(controls.model, controls.dataset, controls.shots)])
    controls.to_csv(out / "stage2_controls.csv", index=False)
    frame = heatmap_frame(audit)
    ax = verdict_heatmap(frame)
    ax.set_title("Stage 2 (test split): each importance selection at its k*", fontsize="small")
    ax.figure.savefig(out / "stage2_heatmap.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    claims = effects_figure(audit, out / "stage2_effects.png")
    rom = rom_table(studies)
    rom.to_csv(out / "stage2_rom.csv", index=False)
    (out / "stage2.md").write_text(report(studies, missing, audit, controls, rom, claims, args.wall))
    print(f"wrote {out}/stage2_audit.csv, stage2_cells.csv, stage2_controls.csv, stage2_rom.csv, stage2.md, stage2_heatmap.png, "
          f"stage2_effects.png ({len(studies)} studies" + (f"; {len(missing)} unfinished" if missing else "") + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
