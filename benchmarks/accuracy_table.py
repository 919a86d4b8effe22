"""Zero-shot accuracy and calibration of a model on every bundled dataset, chat template vs plain prompt.

Usage: python benchmarks/accuracy_table.py [--model smollm2-135m] [--n 100] [--split test]
Prints one row per (dataset, prompt): accuracy, mean label mass, share predicted as class 0, ECE.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from toolkit import list_datasets, load_dataset, load_model, predict


def ece15(df: pd.DataFrame) -> float:
    """Guo et al. 2017, 15 equal-width bins (inline so this script has no other dependency)."""
    conf, correct = df.confidence.to_numpy(), df.correct.to_numpy()
    bins = np.minimum((conf * 15).astype(int), 14)
    return float(sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
                     for b in range(15) if (bins == b).any()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--prompts", nargs="*", default=["chat", "plain"], choices=["chat", "plain"])
    args = ap.parse_args()
    model, tok = load_model(args.model)
    rows = []
    for name in args.datasets or list_datasets().name:
        ds = load_dataset(name, n=args.n, split=args.split)
        for chat in [p == "chat" for p in args.prompts]:
            task = dataclasses.replace(ds.task, use_chat_template=chat)
            t0 = time.perf_counter()
            df = predict(model, tok, ds, task=task, progress=False)
            rows.append(dict(dataset=name, prompt="chat" if chat else "plain", n=len(df),
                             accuracy=df.correct.mean(), majority=np.bincount(df.label).max() / len(df),
                             label_mass=df.label_mass.mean(), pred_class0=(df.pred == 0).mean(),
                             ece=ece15(df), seconds=time.perf_counter() - t0))
            print(pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1, index=False), flush=True)
    table = pd.DataFrame(rows)
    print(table.round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
