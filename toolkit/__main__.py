"""Command line: `python -m toolkit {study,sweep,importance,prune,manifest,verdicts,list}`; `--help` on each.

A mistake the user can fix (a bad flag, config file, model, dataset or path) prints one line
``error: ...`` to stderr and exits with status 2, before anything is computed where it can be
known; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .study.config import PROFILES
from ._core.validation import InputError

__all__ = ["main"]

# The errors a user causes and can fix: the toolkit's InputError (with its subclasses
# InputTypeError, InputFileNotFoundError, InputFileExistsError, MixedManifestError). Each prints
# one ``error:`` line and exits with 2. Anything else is a bug: its traceback stays.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError,)


class _UsageError(Exception):
    """A command line argparse refuses (an unknown flag, a bad choice, a missing argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake reaches `main` (one ``error:`` line) instead of exiting from inside."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from err


def _study_config(args: argparse.Namespace):
    """The config a `study` command means: a file or a profile, then the flags that were given."""
    from .study import StudyConfig

    overrides = {
        "output_dir": args.output_dir,
        "models": tuple(args.model) if args.model else None,
        "datasets": tuple(args.dataset) if args.dataset else None,
        "executor": args.executor,
        "margin": args.margin,
        "correction": args.correction,
    }
    if args.workers is not None:
        overrides["resources"] = {"workers": args.workers}
    if args.config:
        config = StudyConfig.from_file(Path(args.config))
    else:
        config = StudyConfig.profile("quick" if args.quick else args.profile)
    if "resources" in overrides:
        overrides["resources"] = {**config.to_dict()["resources"], **overrides["resources"]}
    return config.with_overrides(**overrides)


def _cmd_study(args: argparse.Namespace) -> int:
    import pandas as pd

    from .study import StudyIncomplete, check_study, plan, run_study, status, summary

    config = _study_config(args)
    check_study(config)  # datasets, methods, levels vs. model depth: before anything loads or runs
    print(f"study {config.digest()} -> {config.run_dir()} (executor {config.executor})", flush=True)
    if args.dry_run or args.plan:
        cells = status(config)
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            if args.dry_run:
                print(cells.to_string(index=False))
            counts = cells.state.value_counts().to_dict()
            todo = cells[cells.state != "done"].seconds.sum() + cells.attrs.get("ranking_seconds", 0.0)
            print(f"\n{len(cells)} cells: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f"; about {todo / 60:.0f} min left on 2 CPU cores (estimated: the stated cost model or the "
                  "median of finished cells; scale for other machines and models)")
            if args.plan:
                table = plan(config)
                print(f"\nwhat it can detect (power 0.8; one-sided 'degrades' tests at alpha / m, m = {table.attrs['m']} "
                      f"= the largest primary family; accuracy non-inferiority margin {config.margin}):")
                print(table.round(4).to_string(index=False))
                hopeless = table.loc[~table["can_reject"].astype(bool), "metric"].tolist()
                if hopeless:
                    print(f"cannot be shown at this n (an exact one-sided test's smallest p, 1 / 2^n, exceeds alpha / m): "
                          f"{', '.join(hopeless)}; give them more sentences or leave them out of the claims")
        return 0
    start = time.perf_counter()
    try:
        table = run_study(config, progress=not args.no_progress, allow_mixed=args.allow_mixed)
    except StudyIncomplete as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    head = summary(table, correction=config.correction, alpha=config.alpha, claims=config.claims)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(head.table.round(3).to_string(index=False))
    print("\n" + head.statement)
    print(f"\nreport: {config.run_dir() / 'report.md'}")
    print(f"wall time {time.perf_counter() - start:.0f} s (cells already in {config.run_dir()} are not recomputed)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Stage 1 (the dose-response sweep on validation), k*, and the stage-2 study configs."""
    import pandas as pd

    from .study.sweep import SweepConfig, k_star, run_sweep, stage2_configs, stage2_plan

    config = SweepConfig.from_file(Path(args.config))
    if args.output_dir:
        config = SweepConfig(**{**config.to_dict(), "output_dir": args.output_dir})
    print(f"sweep {config.digest()} -> {config.run_dir()} (k* rule {config.kstar_rule}, margin {config.margin})",
          flush=True)
    if args.dry_run:
        from ._core.store import CellStore
        from .study import model_depth
        from .study.sweep import sweep_cells

        depth = {m: model_depth(m) for m in config.models}
        unknown = [m for m, d in depth.items() if d is None]
        if unknown:
            raise InputError(f"the depth of {unknown} is not at hand without loading (no local config.json); "
                             "run once without --dry-run, or convert the model first")
        cells = list(sweep_cells(config, depth))
        done = CellStore(config.run_dir()).done_keys(c.key for c in cells) if config.run_dir().is_dir() else set()
        frame = pd.DataFrame([dict(model=c.model, dataset=c.dataset, shots=c.shots, selection=c.selection, k=c.k,
                                   done=c.key in done) for c in cells])
        counts = frame.groupby(["model", "dataset", "shots"], sort=False).agg(cells=("k", "size"), done=("done", "sum"))
        print(counts.reset_index().to_string(index=False))
        print(f"{len(cells)} cells, {int(frame.done.sum())} done; each scores up to n_eval={config.n_eval} "
              "validation sentences")
        return 0
    start = time.perf_counter()
    table = run_sweep(config, progress=not args.no_progress, allow_mixed=args.allow_mixed)
    kstar = k_star(table, margin=config.margin, rule=config.kstar_rule)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(kstar.to_string(index=False))
    if args.plot:
        import matplotlib.pyplot as plt

        from .study.plots import sweep_curves

        axes = sweep_curves(table, kstar=kstar)
        axes.flat[0].figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        plt.close(axes.flat[0].figure)
        print(f"figure: {args.plot}")
    folder = config.run_dir() / "stage2"
    folder.mkdir(exist_ok=True)
    for stale in [*folder.glob("*.json"), folder / "plan.csv"]:  # k* decides which studies exist: no leftovers
        stale.unlink(missing_ok=True)
    from .study import StudyConfig

    defaults = StudyConfig().to_dict()
    studies = stage2_configs(config, kstar)
    for study in studies:
        data = {k: v for k, v in study.to_dict().items()
                if v != defaults[k] or k in ("models", "datasets", "levels", "selections")}
        path = folder / f"{study.models[0].replace('/', '_')}-{study.datasets[0]}-{study.shots}shot.json"
        path.write_text(json.dumps(data, indent=1, default=str))
        print(f"stage 2: python -m toolkit study --config {path}")
    sized = stage2_plan(table, kstar, studies)
    if len(sized):  # what each stage-2 study can detect, from stage 1's spread at k*
        sized.to_csv(folder / "plan.csv", index=False)
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print("stage 2 plan (n = min(n_eval, n_test); mde at power 0.8):")
            print(sized[["model", "dataset", "shots", "metric", "n", "n_test", "mde", "n_noninferiority",
                         "can_reject", "source"]].round(4).to_string(index=False))
    print(f"table: {config.run_dir() / 'sweep.csv'}; wall time {time.perf_counter() - start:.0f} s")
    return 0


def _cmd_importance(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import attention_importance, load_dataset, load_model
    from .pruning.importance import importance_metric

    for metric in args.metric:
        importance_metric(metric)
    if args.plot:
        _check_plot_path(args.plot)
    ds = load_dataset(args.dataset, n=args.n, split="train")
    model, tok = load_model(args.model)
    columns = {}
    for metric in args.metric:
        kwargs = dict(task=ds.task, labels=ds.labels) if "labels" in importance_metric(metric).needs else {}
        columns[metric] = attention_importance(model, tok, ds.texts, metric=metric, progress=True, **kwargs)
    table = pd.DataFrame(columns)
    print(table.round(4).to_string())
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from .study.plots import importance_profile

        ax = importance_profile(table)
        ax.figure.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"saved {args.plot}")
    return 0


def _check_plot_path(plot: str) -> None:
    """``--plot`` names a file matplotlib can write into an existing folder (checked before computing)."""
    from matplotlib.figure import Figure

    path = Path(plot).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"--plot {plot!r}: folder {str(folder)!r} does not exist; create it first or choose another path")
    if path.is_dir():
        raise InputError(f"--plot {plot!r} is a folder; expected a file name such as importance.png")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--plot {plot!r}: folder {str(folder)!r} is not writable")
    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix and suffix not in formats:
        raise InputError(f"--plot {plot!r}: unknown image format {suffix!r}; expected one of {sorted(formats)}")


def _cmd_prune(args: argparse.Namespace) -> int:
    from . import choose_layers, export_zeroed, load_dataset, load_model, n_parameters, prune_attention, save_pruned
    from .models.checkpoints import check_output_folder

    check_output_folder(args.output, overwrite=args.overwrite)  # before loading and choosing, which take minutes
    model, tok = load_model(args.model)
    before = n_parameters(model)
    if args.layers is not None:
        layers = args.layers
        selection = {"model": args.model, "layers": "given on the command line (--layers)"}
    else:
        ds = load_dataset(args.dataset, n=args.n, split="train")
        layers = choose_layers(model, tok, ds.texts, args.k, metric=args.metric)
        selection = {"model": args.model, "k": args.k, "metric": args.metric, "strategy": "one_shot",
                     "dataset": args.dataset, "split": "train", "n": args.n, "chosen_by": "toolkit.choose_layers"}
    if args.format == "transformers":
        path = export_zeroed(model, layers, args.output, tokenizer=tok, selection=selection, overwrite=args.overwrite)
        print(f"dropped attention in layers {sorted(layers)} by zeroing their output projections "
              f"(standard checkpoint, {before:,} parameters: no compute saved)")
        print(f"saved to {path} (loads anywhere: AutoModelForCausalLM.from_pretrained({str(path)!r}), lm-eval, vLLM)")
        return 0
    prune_attention(model, layers)
    path = save_pruned(model, args.output, tokenizer=tok, overwrite=args.overwrite)
    print(f"dropped attention in layers {sorted(layers)}; parameters {before:,} -> {n_parameters(model):,}")
    print(f"saved to {path} (load with toolkit.load_model({str(path)!r}))")
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    from .models.manifest import folder_manifests, group_manifests

    found = folder_manifests(args.folder)
    if list(found) == [""]:  # a checkpoint
        print(f"{args.folder}: checkpoint manifest")
        _print_fields(found[""].to_dict())
        return 0
    view = group_manifests(found)
    groups = view["groups"]
    print(f"{args.folder}: {len(found)} cells under {len(groups)} manifest{'s' * (len(groups) != 1)}"
          + (f", {len(view['without'])} without one" if view["without"] else ""))
    if groups:
        print("shared by all cells:" if len(groups) > 1 else "manifest:")
        _print_fields(view["shared"])
    for i, group in enumerate(groups if len(groups) > 1 else [], start=1):
        print(f"manifest {i} ({len(group['keys'])} cells, created {group['created'][0]} .. {group['created'][1]}):")
        _print_fields(group["fields"])
        print("    cells: " + ", ".join(group["keys"]))
    if view["without"]:
        print("without a manifest (computed before manifests were recorded): " + ", ".join(view["without"]))
    return 0


def _print_fields(fields: dict) -> None:
    width = max((len(k) for k in fields), default=0)
    for name, value in fields.items():
        if name == "format":
            continue
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        print(f"    {name:<{width}}  {value}")


def _cmd_verdicts(args: argparse.Namespace) -> int:
    import pandas as pd

    from .study.audit import cell_verdicts, recompute

    path = Path(args.table)
    if not path.is_file():
        raise InputError(f"no file {str(path)!r}; expected an audit table CSV (toolkit.study.audit_table)")
    stored = pd.read_csv(path, keep_default_na=True)
    again = recompute(stored)
    cells = cell_verdicts(again)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(cells.to_string(index=False))
    if "verdict" not in stored:
        print(f"\n{len(cells)} cells; the table stores no verdicts to compare")
        return 0
    differ = (stored["verdict"].fillna("").astype(str) != again["verdict"].astype(str)).to_numpy()
    if differ.any():
        rows = stored.loc[differ, ["model", "dataset", "selection", "k", "metric", "verdict"]]
        print(f"\n{int(differ.sum())} rows: the stored verdict differs from the recomputed one:\n{rows.to_string(index=False)}")
        return 1
    print(f"\n{len(cells)} cells: every stored verdict equals the one recomputed from the table's inputs")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import list_datasets, list_models
    from .attribution import list_attribution_methods
    from .metrics.registry import FAMILIES, list_metrics, metric_names
    from .study.config import STAND_INS

    print("models:", ", ".join(list_models()), "(or any HF id / local folder)")
    print("importance metrics:", ", ".join(metric_names("importance")))
    print("attribution methods:", ", ".join(list_attribution_methods()))
    for family in FAMILIES[1:]:  # importance above, as the study's selections
        shown = [m.name + (f" (headline{f' where {STAND_INS[m.name]} is not measured' if m.name in STAND_INS else ''})"
                           if m.headline else "") for m in list_metrics(family)]
        print(f"{family} metrics:", ", ".join(shown))
    print("\ndatasets:")
    print(list_datasets()[["name", "n", "n_classes", "labels", "licence"]].to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m toolkit",
        description="What does pruning attention layers do to accuracy, faithfulness and calibration?",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("study", help="run (or resume) a study and print its summary")
    p.add_argument("--config", help="JSON/YAML/TOML file with StudyConfig fields")
    p.add_argument("--profile", choices=list(PROFILES), default=os.environ.get("TOOLKIT_PROFILE", "full"),
                   help="size preset (default: $TOOLKIT_PROFILE or full; classroom = quick, the notebooks' word)")
    p.add_argument("--quick", action="store_true", help="same as --profile classroom")
    p.add_argument("--model", action="append", help="model name/path (repeatable; default smollm2-135m)")
    p.add_argument("--dataset", action="append", help="dataset name (repeatable)")
    p.add_argument("--output-dir", default=None, help="where results go (default: the config's output_dir, results)")
    p.add_argument("--executor", choices=["local", "ray", "slurm"], default=None,
                   help="where cells run (default: the config's executor, local)")
    p.add_argument("--workers", type=int, default=None, help="worker tasks per model for ray/slurm")
    p.add_argument("--margin", type=float, default=None, help="accuracy equivalence margin (default 0.05)")
    p.add_argument("--correction", choices=["holm", "bh"], default=None, help="multiplicity correction (default holm)")
    p.add_argument("--dry-run", action="store_true", help="list the cells, what is done and what is left, and stop")
    p.add_argument("--plan", action="store_true",
                   help="print the estimated cost and what the config can detect (power), and stop")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-mixed", action="store_true",
                   help="resume even when finished cells were computed under another manifest (library versions, "
                        "toolkit code, weights, tokenizer, prompt, batch size, seeds); it says what differs")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("sweep", help="stage 1: accuracy and calibration at every k on validation; k* and "
                                     "the stage-2 study configs")
    p.add_argument("config", help="YAML/JSON file with SweepConfig fields")
    p.add_argument("--output-dir", default=None, help="where results go (default: the config's output_dir)")
    p.add_argument("--plot", help="save the metric-vs-k figure to this PNG")
    p.add_argument("--dry-run", action="store_true", help="count the cells (and those done) per model, dataset and "
                                                          "shots, and stop")
    p.add_argument("--allow-mixed", action="store_true",
                   help="resume even when finished cells were computed under another manifest (library versions, "
                        "toolkit code, weights, tokenizer, prompt, batch size, seed); it says what differs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("importance", help="print (and plot) a model's attention-layer importances")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--dataset", default="uci_yelp")
    p.add_argument("--n", type=int, default=64, help="texts from the train split")
    p.add_argument("--metric", action="append", default=None, help="metric (repeatable; default cosine)")
    p.add_argument("--plot", help="save the profile to this PNG")
    p.set_defaults(func=_cmd_importance)

    p = sub.add_parser("prune", help="drop attention layers structurally and save the smaller model")
    p.add_argument("output", help="folder to write (new or empty, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder OUTPUT whole")
    p.add_argument("--model", default="smollm2-135m")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--layers", type=_int_list, help="explicit layer indices, e.g. 3,7,12")
    group.add_argument("--k", type=int, help="number of layers, chosen by --metric")
    p.add_argument("--metric", default="cosine")
    p.add_argument("--dataset", default="uci_yelp")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--format", choices=["toolkit", "transformers"], default="toolkit",
                   help="toolkit (default): attention removed, smaller and faster, loads with toolkit.load_model; "
                        "transformers: standard checkpoint with the dropped attention's output projection zeroed, "
                        "loads anywhere (transformers, lm-eval, vLLM), saves no compute")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("manifest", help="print how a study's cells or a saved checkpoint were made")
    p.add_argument("folder", help="a study folder (<output_dir> or <output_dir>/<digest>) or a save_pruned checkpoint")
    p.set_defaults(func=_cmd_manifest)

    p = sub.add_parser("verdicts", help="recompute every verdict of an audit table CSV from its inputs and print them")
    p.add_argument("table", help="a CSV written from toolkit.study.audit_table (several studies stacked with a "
                                 "'study' column: each study is its own family, e.g. the two-stage run's "
                                 "stage2_audit.csv)")
    p.set_defaults(func=_cmd_verdicts)

    p = sub.add_parser("list", help="list built-in models, datasets, metrics and methods")
    p.set_defaults(func=_cmd_list)
    return parser


def _error(message: object) -> int:
    """Print ``error: <message>`` as one line to stderr; the exit status of a user's mistake (2)."""
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"error: {text}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user's mistake (see ``USER_ERRORS``) prints one ``error:`` line and returns 2."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as err:
        return _error(err)
    if getattr(args, "metric", None) is None and args.command == "importance":
        args.metric = ["cosine"]
    try:
        return args.func(args)
    except USER_ERRORS as err:
        return _error(err)


if __name__ == "__main__":
    sys.exit(main())
