"""Accuracy of the bundled models on every bundled dataset, zero-shot and with k demonstrations.

Usage: python benchmarks/accuracy_table.py [--models smollm2-135m gemma3-270m] [--n 100] [--shots 0 4]
                                            [--write data/bundled_accuracy.csv]

One row per (model, dataset, shots): accuracy on the first n test examples (a stratified sample)
with a 95% Wilson interval (scipy.stats.binomtest), the majority-class rate of those examples, and
whether accuracy is above chance: the interval's lower end above the majority rate. Prompts are
the datasets' own (the plain prompt; k demonstrations drawn label-balanced from the train split).
`--write` saves the table that `toolkit.list_datasets()` reads to say where a bundled model is at
chance.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from toolkit import list_datasets, load_dataset, load_model, predict
from toolkit.models.manifest import build_manifest, read_result_manifests, write_result_manifest
from toolkit.pruning.timing import Clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--shots", nargs="*", type=int, default=[0, 4])
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--write", default=None, help="CSV to save the rows to (e.g. data/bundled_accuracy.csv); rows "
                    "already there for other (model, dataset, shots) are kept, so partial runs add up")
    args = ap.parse_args()
    rows, manifests = [], []
    for model_name in args.models:
        model, tok = load_model(model_name)
        manifests.append(build_manifest(model, tok, model_id=model_name, batch_size=args.batch_size))
        for name in args.datasets or list_datasets().name:
            ds = load_dataset(name, n=args.n, split="test")
            for shots in args.shots:
                task = dataclasses.replace(ds.task, n_shot=shots)
                with Clock() as clock:
                    df = predict(model, tok, ds, task=task, batch_size=args.batch_size, progress=False)
                hits = int(df.correct.sum())
                ci = binomtest(hits, len(df)).proportion_ci(confidence_level=0.95, method="wilson")
                majority = np.bincount(df.label).max() / len(df)
                rows.append(dict(model=model_name, dataset=name, shots=shots, n=len(df), accuracy=hits / len(df),
                                 low=ci.low, high=ci.high, majority=majority, above_chance=bool(ci.low > majority),
                                 label_mass=df.label_mass.mean(), seconds=clock.wall))
                print(pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1, index=False), flush=True)
        del model
    table = pd.DataFrame(rows)
    if args.write:
        keys = ["model", "dataset", "shots"]
        if Path(args.write).exists():
            old = pd.read_csv(args.write)
            new_keys = set(map(tuple, table[keys].to_numpy().tolist()))
            old = old[[tuple(k) not in new_keys for k in old[keys].to_numpy().tolist()]]
            table = pd.concat([old, table], ignore_index=True)
        table.round(4).to_csv(args.write, index=False)
        try:  # rows of models not rerun keep their manifests
            kept = [m for m in read_result_manifests(args.write) if m.model not in args.models]
        except ValueError:
            kept = []
        write_result_manifest(args.write, kept + manifests)
    wide = table.assign(cell=[f"{a:.2f} [{lo:.2f}, {hi:.2f}]{'' if ok else ' ·'}"
                              for a, lo, hi, ok in zip(table.accuracy, table.low, table.high, table.above_chance)])
    wide = wide.pivot_table(index=["dataset"], columns=["model", "shots"], values="cell", aggfunc="first", sort=False)
    majority = table.groupby("dataset", sort=False).majority.first()
    wide.insert(0, "majority", majority.round(2))
    wide.columns = ["majority"] + [f"{m} {s}-shot" for m, s in wide.columns[1:]]
    print()
    print(wide.to_markdown())
    print("\n· = not above chance (95% Wilson interval reaches the majority-class rate)")


if __name__ == "__main__":
    main()
