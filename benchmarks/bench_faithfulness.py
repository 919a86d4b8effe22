"""Batched faithfulness metrics vs one scorer call per erased variant, on the real model.

    .venv/bin/python benchmarks/bench_faithfulness.py [--n 16] [--bounds] [--beam-width 1]

On n UCI Yelp sentences with SmolLM2-135M, computes ERASER comprehensiveness/sufficiency curves
(AOPC) and the decision flip (every k) - and with --bounds also the NAOPC bounds (exact for
<= 8 words, beam search beyond; the beam dominates the cost) in two modes, in one process: with
the batched model scorer (each function's variants deduplicated and scored in batches) and with
a scorer that runs one forward per variant (batch size 1). The modes run interleaved over chunks
of examples so both see the same background load on a shared machine; wall and CPU time are
printed with their ratios (target >= 3x). The attributions are seeded random scores: which words
are erased does not change the cost.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import torch

from toolkit.metrics import faithfulness as F
from toolkit.metrics.faithfulness.erasure import Pool
from toolkit.data.datasets import get_task, load_dataset
from toolkit.models.loading import load_model
from toolkit.pruning.timing import time_interleaved


BOUNDS = ["bound_method", "comprehensiveness_lower", "comprehensiveness_upper",
          "sufficiency_lower", "sufficiency_upper"]


class Counting:
    """Scorer wrapper counting calls and scored variants."""

    def __init__(self, scorer: F.Scorer) -> None:
        self.scorer, self.calls, self.variants = scorer, 0, 0

    def __call__(self, variants):
        self.calls += 1
        self.variants += len(variants)
        return self.scorer(variants)


def one_per_variant(scorer: F.Scorer) -> F.Scorer:
    """The unbatched baseline: one scorer (model) call for each variant."""
    return lambda variants: np.concatenate([scorer([v]) for v in variants])


def count_requested(run) -> tuple[object, int]:
    """Run `run()` counting the variants the metrics ask for before deduplication."""
    add, seen = Pool.add, [0]

    def counting_add(self, variant):
        seen[0] += 1
        return add(self, variant)

    Pool.add = counting_add
    try:
        return run(), seen[0]
    finally:
        Pool.add = add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--bounds", action="store_true", help="also time the NAOPC bounds")
    parser.add_argument("--beam-width", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=4, help="interleaving chunks of examples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_model("smollm2-135m")
    data = load_dataset("uci_yelp", n=args.n)
    task = get_task("uci_yelp")
    words = [F.split_words(e.text) for e in data.examples]
    rng = np.random.default_rng(0)
    attr = [rng.normal(size=len(w)) for w in words]
    lengths = np.array([len(w) for w in words])
    print(f"{len(words)} sentences, words: mean {lengths.mean():.1f}, max {lengths.max()}, "
          f"<= {F.EXACT_MAX_WORDS} words (exact bounds): {(lengths <= F.EXACT_MAX_WORDS).sum()}")

    batched = F.model_scorer(model, tokenizer, task, batch_size=args.batch_size)

    def workload(scorer: F.Scorer, idx: np.ndarray) -> pd.DataFrame:
        w, a = [words[i] for i in idx], [attr[i] for i in idx]
        table = F.aopc(scorer, w, a).merge(F.decision_flip(scorer, w, a)[["example", "flipped", "k"]], on="example")
        if args.bounds:
            table = table.merge(F.aopc_bounds(scorer, w, beam_width=args.beam_width)[["example", *BOUNDS]],
                                on="example")
        return table.assign(example=idx[table["example"].to_numpy()])

    # The machine is shared: run the two modes interleaved, chunk by chunk (alternating which goes
    # first), so both see the same background load, and report CPU time beside wall time.
    names = ("batched", "one per variant")
    wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    calls, variants, requested = dict.fromkeys(names, 0), dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    for c, idx in enumerate(np.array_split(np.arange(len(words)), args.chunks)):
        for name in names if c % 2 == 0 else names[::-1]:
            counting = Counting(batched)  # counts model (label_probs) calls
            scorer = counting if name == "batched" else one_per_variant(counting)
            out: dict[str, tuple[pd.DataFrame, int]] = {}

            def run(scorer: F.Scorer = scorer, idx: np.ndarray = idx) -> None:
                out["run"] = count_requested(lambda: workload(scorer, idx))

            raw = time_interleaved({name: run}, repeats=1, warmup=0)  # the chunk loop interleaves the modes
            table, asked = out["run"]
            wall[name] += float(raw.seconds.iloc[0])
            cpu[name] += float(raw.cpu_seconds.iloc[0])
            tables[name].append(table)
            calls[name] += counting.calls
            variants[name] += counting.variants
            requested[name] += asked
    print(f"load average (1 min) before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name in names:
        print(f"{name:>16}: wall {wall[name]:7.1f} s, CPU {cpu[name]:7.1f} s, {calls[name]} model calls, "
              f"{variants[name]} unique variants ({requested[name]} requested before dedup), "
              f"{variants[name] / wall[name]:.2f} variants/s")

    results = {name: pd.concat(tables[name], ignore_index=True) for name in names}
    cols = ["aopc_comprehensiveness", "aopc_sufficiency", *(BOUNDS[1:] if args.bounds else [])]
    diff = np.abs(results["batched"][cols].to_numpy() - results["one per variant"][cols].to_numpy()).max()
    same_flips = results["batched"]["k"].equals(results["one per variant"]["k"])
    print(f"max |difference| between the modes: {diff:.2e} (fp32; padding differs by batch); same flips: {same_flips}")
    print(f"speed-up batched vs one forward per variant: wall {wall[names[1]] / wall[names[0]]:.2f}x, "
          f"CPU {cpu[names[1]] / cpu[names[0]]:.2f}x (target >= 3x)")

if __name__ == "__main__":
    main()
