"""Per-example attribution time on SmolLM2-135M: inseq backend vs the batched fast path.

16 UCI sentences (uci_imdb, test split), CPU. For each of saliency, input_x_gradient and
integrated_gradients (20 Gauss-Legendre steps on both backends), the two backends are timed
alternately, ``--repeats`` times each, so that load from other processes hits both alike. The
table reports the median per-example wall time and process CPU time of a whole ``attribute()``
call (prediction included), the ratio inseq / fast (target >= 5x) and the largest difference
between the two backends' word scores.

    python benchmarks/bench_attribution.py [--n 16] [--batch-size 16] [--repeats 2] [--threads 2] [--chat]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

import numpy as np
import torch

from toolkit import load_dataset, load_model
from toolkit.attribution import attribute
from toolkit.pruning.timing import time_interleaved

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
    parser.add_argument("--chat", action="store_true", help="use the chat template whatever the task's default")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_model("smollm2-135m")
    data = load_dataset(args.dataset, n=args.n, seed=0, split="test")
    task = dataclasses.replace(data.task, use_chat_template=True) if args.chat else data.task
    for backend in ("inseq", "fast"):  # warm-up (not timed): builds the inseq wrapper, touches every path
        attribute(model, tokenizer, task, data[:2], method="saliency", backend=backend)

    load_before = os.getloadavg()[0]
    rows = []
    for method in args.methods:
        kwargs = METHODS[method]
        results = {}

        def run(backend: str, method: str = method, kwargs: dict = kwargs) -> Callable[[], None]:
            def go() -> None:
                results[backend] = attribute(
                    model, tokenizer, task, data, method=method, backend=backend, batch_size=args.batch_size, **kwargs
                )

            return go

        raw = time_interleaved({b: run(b) for b in ("inseq", "fast")}, repeats=args.repeats, warmup=0)  # interleaved
        per_example = raw.groupby("name")[["seconds", "cpu_seconds"]].median() / len(data)
        diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(results["inseq"], results["fast"]))
        scale = max(float(np.abs(a.scores).max()) for a in results["inseq"])
        med = {k: (float(per_example.loc[k, "seconds"]), float(per_example.loc[k, "cpu_seconds"])) for k in results}
        rows.append((method, med, diff, scale))

    print(f"SmolLM2-135M, {len(data)} x {args.dataset} ({'chat template' if task.use_chat_template else 'plain prompt'}), "
          f"batch {args.batch_size}, {args.threads} threads, median of {args.repeats} interleaved runs; "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method':<22}{'inseq wall':>11}{'fast wall':>11}{'ratio':>7}{'inseq cpu':>11}{'fast cpu':>10}{'ratio':>7}"
          f"{'max|diff|':>11}{'max score':>11}")
    for method, med, diff, scale in rows:
        (wi, ci), (wf, cf) = med["inseq"], med["fast"]
        print(f"{method:<22}{wi:>10.3f}s{wf:>10.3f}s{wi / wf:>6.1f}x{ci:>10.3f}s{cf:>9.3f}s{ci / cf:>6.1f}x"
              f"{diff:>11.1e}{scale:>11.1e}")


if __name__ == "__main__":
    main()
