"""The work the faithfulness memo saves: forwards and seconds per sentence, before and after.

    .venv/bin/python benchmarks/bench_faithfulness_memo.py [--model smollm2-135m] [--n 24]

One study cell's faithfulness on n UCI Yelp test sentences of <= --max-words words (the study's
selection), with the study's defaults (2 attribution methods, R random rankings, NAOPC bounds),
computed four ways in one process, interleaved chunk by chunk (rotating which goes first) so all
see the same background load:

- ``separate``: the metrics called one by one, as a user composes them - per method ``naopc`` and
  ``decision_flip``, then ``random_baseline`` - each scoring its own variants (``memo=False``):
  the bounds are searched once per call, shared variants scored again;
- ``separate+memo``: the same calls on one :class:`toolkit.metrics.faithfulness.ScoreMemo` (the default
  of ``model_scorer``): a variant is scored once per model state, whichever call asks first;
- ``report``: one ``faithfulness_report`` call (what the study runs): one deduplicated pool;
- ``report, AOPC only``: the same with ``naopc=False`` (no bound search).

Printed per way: model forwards (variants the model scored), variants the metric calls asked the
scorer for (each call deduplicates its own),
wall and CPU seconds per sentence, and ratios against ``separate``; then the largest difference
of the AOPC columns between ``separate`` and ``separate+memo`` (fp32 batch noise only). The
attributions are seeded random scores: which words are erased does not change the cost.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import torch

from toolkit.metrics import faithfulness as F
from toolkit.data.datasets import load_dataset
from toolkit.models.loading import load_model
from toolkit.pruning.timing import Clock

WAYS = ("separate", "separate+memo", "report", "report, AOPC only")
METHODS = ("saliency", "input_x_gradient")


class Counting:
    """Scorer wrapper counting the variants the model scores."""

    def __init__(self, scorer: F.Scorer) -> None:
        self.scorer, self.variants = scorer, 0

    def __call__(self, variants):
        self.variants += len(variants)
        return self.scorer(variants)


def separate(scorer: F.Scorer, texts: list[str], attrs: dict, n_random: int) -> pd.DataFrame:
    """The metrics one call each; the AOPC columns of every ranking, for the equality check."""
    rows = []
    for method, a in attrs.items():
        rows.append(F.naopc(scorer, texts, a).assign(method=method))
        F.decision_flip(scorer, texts, a)
    rows.append(F.random_baseline(scorer, texts, n_rankings=n_random))
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=24, help="sentences")
    parser.add_argument("--max-words", type=int, default=10)
    parser.add_argument("--n-random", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=4, help="interleaving chunks of sentences")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = load_model(args.model)
    data = load_dataset("uci_yelp", n=500, split="test")
    texts = [e.text for e in data.examples if len(F.split_words(e.text)) <= args.max_words][: args.n]
    lengths = np.array([len(F.split_words(t)) for t in texts])
    print(f"{args.model}: {len(texts)} uci_yelp test sentences of <= {args.max_words} words "
          f"(mean {lengths.mean():.1f}; <= {F.EXACT_MAX_WORDS} words, exact bounds: {(lengths <= F.EXACT_MAX_WORDS).sum()}), "
          f"{len(METHODS)} methods + {args.n_random} random rankings, batch {args.batch_size}, {args.threads} threads")
    rng = np.random.default_rng(0)
    attrs = {m: [rng.normal(size=n) for n in lengths] for m in METHODS}

    wall, cpu = dict.fromkeys(WAYS, 0.0), dict.fromkeys(WAYS, 0.0)
    forwards, requested = dict.fromkeys(WAYS, 0), dict.fromkeys(WAYS, 0)
    aopc_cols = ["aopc_comprehensiveness", "aopc_sufficiency"]
    tables: dict[str, list[pd.DataFrame]] = {"separate": [], "separate+memo": []}
    load_before = os.getloadavg()[0]
    for c, idx in enumerate(np.array_split(np.arange(len(texts)), args.chunks)):
        chunk = [texts[i] for i in idx]
        chunk_attrs = {m: [a[i] for i in idx] for m, a in attrs.items()}
        for way in WAYS[c % len(WAYS):] + WAYS[: c % len(WAYS)]:
            counting = Counting(F.model_scorer(model, tok, data.task, batch_size=args.batch_size, memo=False))
            memo = F.ScoreMemo()
            scorer = F.memoize(counting, memo) if way == "separate+memo" else counting
            asking = Counting(scorer)  # what the metrics ask of the scorer (each call's pool deduplicated)
            with Clock() as clock:
                if way.startswith("separate"):
                    tables[way].append(separate(asking, chunk, chunk_attrs, args.n_random))
                else:
                    F.faithfulness_report(asking, chunk, chunk_attrs, n_random=args.n_random, n_boot=10,
                                          naopc=way == "report")
            wall[way] += clock.wall
            cpu[way] += clock.cpu
            forwards[way] += counting.variants
            requested[way] += asking.variants
    print(f"load average (1 min) before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    n = len(texts)
    base = "separate"
    print(f"{'way':>18} | {'forwards':>8} | {'requested':>9} | {'wall s/sent':>11} | {'CPU s/sent':>10} | "
          f"forwards saved | wall speed-up")
    for way in WAYS:
        print(f"{way:>18} | {forwards[way]:8d} | {requested[way]:9d} | {wall[way] / n:11.2f} | {cpu[way] / n:10.2f} | "
              f"{1 - forwards[way] / forwards[base]:13.1%} | {wall[base] / wall[way]:12.2f}x")
    a, b = (pd.concat(tables[w], ignore_index=True)[aopc_cols].to_numpy() for w in ("separate", "separate+memo"))
    print(f"max |AOPC difference| separate vs separate+memo: {np.abs(a - b).max():.2e} (fp32 batch composition)")


if __name__ == "__main__":
    main()
