"""Per-example attribution time on SmolLM2-135M: inseq backend vs the batched fast path.

16 UCI sentences (uci_imdb, test split), chat-template prompts, CPU. For each of saliency,
input_x_gradient and integrated_gradients (20 Gauss-Legendre steps on both backends), the two
backends are timed alternately, ``--repeats`` times each, so that load from other processes hits
both alike; the table reports the median per-example wall time, the ratio inseq / fast (target
>= 5x) and the largest difference between the two backends' word scores.

    python benchmarks/bench_attribution.py [--n 16] [--batch-size 16] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from toolkit import load_dataset, load_model
from toolkit.attribution import attribute

METHODS = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 20},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="number of sentences")
    parser.add_argument("--batch-size", type=int, default=16, help="fast-backend batch size")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per backend and method")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--dataset", default="uci_imdb")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_model("smollm2-135m")
    data = load_dataset(args.dataset, n=args.n, seed=0, split="test")
    task = data.task
    # Warm-up: builds the inseq wrappers and touches every code path once (not timed).
    for method in METHODS:
        for backend in ("inseq", "fast"):
            attribute(model, tokenizer, task, data[:2], method=method, backend=backend, batch_size=args.batch_size, n_steps=4) \
                if method == "integrated_gradients" else \
                attribute(model, tokenizer, task, data[:2], method=method, backend=backend, batch_size=args.batch_size)

    rows = []
    for method, kwargs in METHODS.items():
        times: dict[str, list[float]] = {"inseq": [], "fast": []}
        results = {}
        for _ in range(args.repeats):
            for backend in ("inseq", "fast"):  # interleaved
                t0 = time.perf_counter()
                results[backend] = attribute(
                    model, tokenizer, task, data, method=method, backend=backend, batch_size=args.batch_size, **kwargs
                )
                times[backend].append((time.perf_counter() - t0) / len(data))
        diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(results["inseq"], results["fast"]))
        scale = max(float(np.abs(a.scores).max()) for a in results["inseq"])
        t_inseq, t_fast = statistics.median(times["inseq"]), statistics.median(times["fast"])
        rows.append((method, t_inseq, t_fast, t_inseq / t_fast, diff, scale))

    print(f"SmolLM2-135M, {len(data)} x {args.dataset}, batch {args.batch_size}, {args.threads} threads, "
          f"median of {args.repeats} interleaved runs (s per example, whole attribute() call)")
    print(f"{'method':<22}{'inseq s/ex':>12}{'fast s/ex':>12}{'speed-up':>10}{'max |diff|':>12}{'max score':>12}")
    for method, t_inseq, t_fast, ratio, diff, scale in rows:
        print(f"{method:<22}{t_inseq:>12.3f}{t_fast:>12.3f}{ratio:>9.1f}x{diff:>12.1e}{scale:>12.1e}")


if __name__ == "__main__":
    main()
