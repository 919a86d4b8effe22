"""Batched faithfulness metrics vs one scorer call per erased variant, on the real model.

    .venv/bin/python benchmarks/bench_faithfulness.py [--n 16] [--bounds] [--beam-width 1]

On n UCI Yelp sentences with SmolLM2-135M, computes ERASER comprehensiveness/sufficiency curves
(AOPC) and the decision flip (every k) - and with --bounds also the NAOPC bounds (exact for
<= 8 words, beam search beyond; the beam dominates the cost) - twice in one process: with the
batched model scorer (each function's variants deduplicated and scored in batches) and with a
scorer that runs one forward per variant (batch size 1). Prints both times and the ratio
(target >= 3x). The attributions are seeded random scores: which words are erased does not
change the cost. On the shared 2-core machine both runs are compute-bound (~60-token prompts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from toolkit import faithfulness as F
from toolkit.data import get_task, load_dataset
from toolkit.models import load_model


BOUNDS = ["bound_method", "comprehensiveness_lower", "comprehensiveness_upper", "sufficiency_lower", "sufficiency_upper"]


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
    add, seen = F._Pool.add, [0]

    def counting_add(self, variant):
        seen[0] += 1
        return add(self, variant)

    F._Pool.add = counting_add
    try:
        return run(), seen[0]
    finally:
        F._Pool.add = add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--bounds", action="store_true", help="also time the NAOPC bounds")
    parser.add_argument("--beam-width", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
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

    def workload(scorer: F.Scorer) -> pd.DataFrame:
        table = F.aopc(scorer, words, attr).merge(
            F.decision_flip(scorer, words, attr)[["example", "flipped", "k"]], on="example")
        if args.bounds:
            table = table.merge(F.aopc_bounds(scorer, words, beam_width=args.beam_width)[["example", *BOUNDS]], on="example")
        return table

    times, results = {}, {}
    for name in ("batched", "one per variant"):
        counting = Counting(batched)  # counts model (label_probs) calls
        scorer = counting if name == "batched" else one_per_variant(counting)
        start = time.perf_counter()
        results[name], requested = count_requested(lambda: workload(scorer))
        times[name] = time.perf_counter() - start
        print(f"{name:>16}: {times[name]:7.1f} s, {counting.calls} scorer calls, {counting.variants} unique variants "
              f"({requested} requested before dedup), {counting.variants / times[name]:.2f} variants/s", flush=True)

    cols = ["aopc_comprehensiveness", "aopc_sufficiency", *(BOUNDS[1:] if args.bounds else [])]
    diff = np.abs(results["batched"][cols].to_numpy() - results["one per variant"][cols].to_numpy()).max()
    same_flips = results["batched"]["k"].equals(results["one per variant"]["k"])
    print(f"max |difference| between the runs: {diff:.2e} (fp32; padding differs by batch); same flips: {same_flips}")
    print(f"speed-up batched vs one forward per variant: {times['one per variant'] / times['batched']:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
