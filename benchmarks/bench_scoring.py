"""Batched label scoring vs one example at a time: examples/s of `predict`, as a ratio from one run.

    .venv/bin/python benchmarks/bench_scoring.py [--n 256] [--batch 16] [--repeats 2] [--threads 1]

SmolLM2-135M, CPU, float32, UCI Yelp test sentences with the dataset's own (plain) prompt,
whose shared instruction prefix is computed once and cached. `predict` runs with batch size 1
and with batch size `--batch` (it sorts prompts by length so a batch pads little), interleaved after a small warm-up of both, medians over
`--repeats`. Wall time and this process's CPU time are both reported (on the shared machine wall
time also counts waiting for a core; CPU time, with one torch thread, counts only our work).
The two runs must agree: the largest class-probability difference is printed and checked.
Target (issue #2): batched >= 3x the examples/s of batch 1.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from toolkit.data.datasets import load_dataset
from toolkit.models.loading import load_model
from toolkit.models.scoring import predict
from toolkit.pruning.timing import time_interleaved

PROB_ATOL = 1e-4  # fp32; batched vs single rows differ only by padding-order rounding (observed ~1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup-n", type=int, default=16, help="examples in the (untimed) warm-up of each batch size")
    # 1 thread: with other jobs on the 2 cores, 2 torch threads ran ~10x slower (see bench_pruning.py).
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    model, tok = load_model(args.model)
    data = load_dataset("uci_yelp", n=args.n, split="test")
    print(f"{len(data)} UCI Yelp test sentences; batch 1 vs batch {args.batch}; {args.repeats} interleaved repeat(s)")

    warm = data[: args.warmup_n]
    for bs in (1, args.batch):
        predict(model, tok, warm, batch_size=bs, progress=False)

    results = {}

    def run(bs: int):
        def go() -> None:
            results[bs] = predict(model, tok, data, batch_size=bs, progress=False)

        return go

    raw = time_interleaved({"batch_1": run(1), f"batch_{args.batch}": run(args.batch)}, repeats=args.repeats, warmup=0)
    med = raw.groupby("name", sort=False)[["seconds", "cpu_seconds"]].median()
    med["examples_per_s"] = len(data) / med["seconds"]
    med["examples_per_cpu_s"] = len(data) / med["cpu_seconds"]
    print(f"({raw.seconds.sum():.0f} s)")
    print(med.round(3).to_string())

    cols = [f"p_{name}" for name in results[1].attrs["label_names"]]
    probs = [results[bs][cols].to_numpy() for bs in (1, args.batch)]
    diff = float(np.abs(probs[0] - probs[1]).max())
    same = bool((results[1].pred == results[args.batch].pred).all())
    print(f"max |p(batch 1) - p(batch {args.batch})| = {diff:.2e} (<= {PROB_ATOL}: {diff <= PROB_ATOL}); "
          f"same predictions: {same}; accuracy {results[args.batch].correct.mean():.3f}")
    wall = med["examples_per_s"].iloc[1] / med["examples_per_s"].iloc[0]
    cpu = med["examples_per_cpu_s"].iloc[1] / med["examples_per_cpu_s"].iloc[0]
    verdict = lambda r: "PASS" if r >= 3 else "MISS"  # noqa: E731
    print(f"speed-up batch {args.batch} / batch 1: wall {wall:.2f}x {verdict(wall)}, CPU time {cpu:.2f}x {verdict(cpu)} "
          "(target >= 3x)")


if __name__ == "__main__":
    main()
