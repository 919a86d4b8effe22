"""Accuracy on the UCI sentiment sets after dropping k attention layers chosen by cosine vs at random.

    .venv/bin/python benchmarks/pruning_accuracy.py [--ks 0 3 6 10] [--n 200] [--n-random 3]
        [--datasets uci_amazon uci_imdb uci_yelp] [--n-importance 64] [--threads 2]

The cosine choice is LLM-Drop's one-shot ranking on `--n-importance` training sentences of each
dataset; a random choice is `--n-random` seeded random layer sets per k (a fresh draw per seed,
averaged). Every configuration scores the same `--n` test sentences, so the change against k = 0
gets a paired bootstrap CI. Prints a markdown table: accuracy, its 95% CI, the paired delta and
its CI, the dropped layers (cosine) and the seconds spent.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from toolkit import attention_importance, drop_attention, load_dataset, load_model, predict, select_layers
from toolkit.decisions.stats import mean_ci, paired_bootstrap
from toolkit.pruning.timing import Clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--datasets", nargs="+", default=["uci_amazon", "uci_imdb", "uci_yelp"])
    ap.add_argument("--ks", nargs="+", type=int, default=[0, 3, 6, 10])
    ap.add_argument("--n", type=int, default=200, help="test sentences per dataset")
    ap.add_argument("--n-importance", type=int, default=64, help="training sentences for cosine importance")
    ap.add_argument("--n-random", type=int, default=3, help="random layer sets per k")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    n_layers = model.config.num_hidden_layers
    rows = []
    for name in args.datasets:
        test = load_dataset(name, n=args.n, split="test")
        texts = load_dataset(name, n=args.n_importance, split="train").texts
        cosine = attention_importance(model, tok, texts, metric="cosine")
        ref = None
        for k in args.ks:
            choices = [("cosine", select_layers(cosine, k))] if k else [("none", [])]
            if k:
                choices += [(f"random{s}", sorted(np.random.default_rng(s).choice(n_layers, k, replace=False).tolist()))
                            for s in range(args.n_random)]
            for selection, layers in choices:
                with Clock() as clock, drop_attention(model, layers):
                    correct = predict(model, tok, test, progress=False).correct.to_numpy(dtype=float)
                if ref is None:
                    ref = correct
                ci = mean_ci(correct, n_boot=args.n_boot)
                d = paired_bootstrap(np.mean, (ref,), (correct,), n_boot=args.n_boot)
                rows.append(dict(dataset=name, k=k, selection=selection, accuracy=ci.estimate,
                                 acc_low=ci.low, acc_high=ci.high, delta=d.estimate, delta_low=d.low,
                                 delta_high=d.high, layers=" ".join(map(str, layers)),
                                 seconds=clock.wall))
                print(pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1, index=False), flush=True)
    table = pd.DataFrame(rows)
    print("\nPer configuration:\n")
    print(table.round(3).to_markdown(index=False))
    print("\nAccuracy, cosine vs random choice (random: mean over its layer sets; k = 0 is the unpruned model):\n")
    print(cosine_vs_random(table).round(3).to_markdown())


def cosine_vs_random(table: pd.DataFrame) -> pd.DataFrame:
    """Rows k, columns (dataset, selection); the unpruned row appears under both selections."""
    group = table.selection.str.replace(r"\d+$", "", regex=True)
    parts = [table[group == "none"].assign(group=g) for g in ("cosine", "random")]
    parts.append(table[group != "none"].assign(group=group[group != "none"]))
    wide = pd.concat(parts).pivot_table(index="k", columns=["dataset", "group"], values="accuracy", aggfunc="mean")
    return wide.rename_axis(columns=["dataset", "selection"])


if __name__ == "__main__":
    main()
