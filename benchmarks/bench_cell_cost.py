"""Where a study cell's time goes, per stage and sentence length, and what the replication's sizing saves.

    .venv/bin/python benchmarks/bench_cell_cost.py [--model smollm2-135m] [--dataset uci_yelp] [--shots 0]
                                                   [--per-bucket 4] [--skip-long-naopc]

One cell's work on the unpruned model, stage by stage, in one process: ``predict`` of --n-eval test
sentences (+ 50 validation); then per length bucket (<= 8, 9-16, 17-32 words; the first
--per-bucket test sentences of each) the attributions (saliency and input x gradient, fast backend)
and four faithfulness workloads on the same sentences and attributions, each on a fresh scorer
(no memo, so none reuses another's forwards), with 1 random ranking:

- ``AOPC+flip``: the hard-erasure curves and the decision flip (``naopc=False``);
- ``NAOPC``: the same plus the AOPC bounds (exact to 8 words, beam search beyond);
- ``soft``: AOPC+flip plus the soft metrics (8 mask draws), no bounds;
- ``duplicates``: the forwards the cell spends re-scoring the explained sentences (predict scores
  them, the attribution's own prediction again, the scorer's unerased variant a third time).

Printed: seconds and scored variants per stage and bucket, and the ratio of NAOPC's cost to
AOPC+flip's. Time it on an idle machine (load average < 1): on 2 shared cores, torch's two-thread
kernels slow down 5-25x (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from toolkit.metrics import faithfulness as F
from toolkit.attribution import attribute
from toolkit.data.datasets import load_dataset
from toolkit.models.loading import load_model
from toolkit.models.scoring import predict

BUCKETS = {"<=8": (1, 8), "9-16": (9, 16), "17-32": (17, 32)}
METHODS = ("saliency", "input_x_gradient")


def _counting(scorer):
    calls: list[int] = []

    def score(variants):
        calls.append(len(variants))
        return scorer(variants)

    score.accepts_masks = True
    score.calls = calls
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="uci_yelp")
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--n-eval", type=int, default=400)
    parser.add_argument("--per-bucket", type=int, default=4)
    parser.add_argument("--skip-long-naopc", action="store_true", help="no NAOPC on 17-32 words (~5 min with SmolLM2)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (idle < 1); {args.model} on {args.dataset}, {args.shots}-shot")
    model, tok = load_model(args.model)
    data = load_dataset(args.dataset, n=args.n_eval, split="test")
    task = dataclasses.replace(data.task, n_shot=args.shots)
    data = dataclasses.replace(data, task=task)
    val = dataclasses.replace(load_dataset(args.dataset, n=50, split="validation"), task=task)
    t = time.perf_counter()
    predict(model, tok, data, batch_size=16, progress=False)
    predict(model, tok, val, batch_size=16, progress=False)
    print(f"predict {args.n_eval} test + 50 validation: {time.perf_counter() - t:.1f} s")
    print("bucket | words | attributions s | AOPC+flip s (variants) | NAOPC s (variants) | soft s (variants) | "
          "NAOPC / AOPC+flip")
    for bucket, (lo, hi) in BUCKETS.items():
        examples = [e for e in data.examples if lo <= len(F.split_words(e.text)) <= hi][: args.per_bucket]
        words = [e.text for e in examples]
        t = time.perf_counter()
        attributions = {m: [a.scores for a in attribute(model, tok, task, examples, method=m, batch_size=16)]
                        for m in METHODS}
        t_attr = time.perf_counter() - t
        cost = {}
        for label, options in (("aopc", dict(naopc=False)), ("naopc", dict(naopc=True)),
                               ("soft", dict(naopc=False, soft=True))):
            if label == "naopc" and bucket == "17-32" and args.skip_long_naopc:
                cost[label] = (np.nan, 0)
                continue
            scorer = _counting(F.model_scorer(model, tok, task, batch_size=16, memo=False))
            t = time.perf_counter()
            F.faithfulness_report(scorer, words, attributions, n_random=1, n_boot=50, **options)
            cost[label] = (time.perf_counter() - t, sum(scorer.calls))
        mean_words = np.mean([len(F.split_words(w)) for w in words])
        print(f"{bucket} | {mean_words:.1f} | {t_attr:.1f} | {cost['aopc'][0]:.1f} ({cost['aopc'][1]}) | "
              f"{cost['naopc'][0]:.1f} ({cost['naopc'][1]}) | {cost['soft'][0]:.1f} ({cost['soft'][1]}) | "
              f"{cost['naopc'][0] / cost['aopc'][0]:.1f}x")
        print(f"  duplicates: {2 * len(words)} re-scored unerased sentences of {cost['aopc'][1]} AOPC+flip variants "
              f"({200 * len(words) / cost['aopc'][1]:.1f}%)")


if __name__ == "__main__":
    main()
