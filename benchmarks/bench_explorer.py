"""The pruning explorer's responsiveness: click-to-result, first visual feedback, cached re-pick,
and the set-level faithfulness request.

    .venv/bin/python benchmarks/bench_explorer.py [--sizes 16,24] [--repeats 7] [--threads 0]
        [--faith-repeats 3] [--faithfulness aopc|naopc]

SmolLM2-135M, CPU, float32, UCI Yelp test sentences, as notebook 02 builds the explorer. What a click
on "evaluate" runs in the kernel (`PruningExplorer.update`) is timed for `--repeats` different
3-layer sets never evaluated before (so nothing comes from the cache), at each evaluation size;
the median gets a percentile bootstrap 95% CI (`toolkit.decisions.stats.bootstrap_ci`). First visual
feedback is the time from the click handler's start to the button turning disabled ("evaluating...");
cached re-pick is toggling back to a set evaluated before until its result is shown. The browser
adds a comm round trip on top (tests/browser prints what a real click in Chromium took).
Click-to-result includes the shown sentence's comprehensiveness (AOPC over the ERASER fractions,
unpruned and pruned; `sentence_comprehensiveness_s` is that step alone, timed on a fresh sentence).
The faithfulness button (`PruningExplorer.update_faithfulness`) is timed for the first request
(explains and erases every sentence for the unpruned model and the set) and for later sets (the
unpruned half comes from the cache), `--faith-repeats` fresh sets each.

Targets (issue 14, 2 cores): median click-to-result <= 3 s at the notebook's default size
(N_EXPLORE in notebook 02), first feedback <= 0.2 s, cached re-pick <= 0.1 s. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from toolkit import attention_importance, load_dataset, load_model
from toolkit.decisions.stats import bootstrap_ci
from toolkit.explorer.faithfulness import sentence_comprehensiveness
from toolkit.explorer.widgets import PruningExplorer
from toolkit.explorer.steps import explain_example

TARGETS = {"click_to_result_s": 3.0, "first_feedback_s": 0.2, "cached_repick_s": 0.1}
# On request (a button): no interactivity target, reported as measured.
UNTARGETED = ("sentence_comprehensiveness_s", "faithfulness_first_s", "faithfulness_s")


def _median(values) -> float:
    return float(np.median(values))


def _summary(name: str, values: list[float]) -> str:
    if len(values) == 1:
        return f"{name:>28}: {values[0]:.4f} s, n=1"
    ci = bootstrap_ci(_median, np.asarray(values), n_boot=2000, seed=0)
    target = TARGETS.get(name)
    against = f", target <= {target} s -> {ci.estimate / target:.2f}x of target" if target else ", no target"
    return f"{name:>28}: median {ci.estimate:.4f} s [95% CI {ci.low:.4f}, {ci.high:.4f}], n={len(values)}{against}"


def measure(explorer: PruningExplorer, n_layers: int, repeats: int, rng: np.random.Generator,
            faith_repeats: int = 0) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in (*TARGETS, *UNTARGETED)}
    seen: set[tuple[int, ...]] = set()
    feedback: list[float] = []
    t_click = [0.0]
    explorer.button.observe(lambda ch: feedback.append(time.perf_counter() - t_click[0]) if ch["new"] else None,
                            names="disabled")
    # one untimed warm-up click (first calls allocate)
    explorer.update(sorted(rng.choice(np.arange(2, n_layers), 3, replace=False).tolist()))
    seen.add(explorer.result.layers)
    while len(out["click_to_result_s"]) < repeats:
        layers = tuple(sorted(rng.choice(np.arange(2, n_layers), 3, replace=False).tolist()))
        if layers in seen:
            continue
        seen.add(layers)
        feedback.clear()
        explorer.picker.value = layers  # toggles mark the result out of date, as in the browser
        t_click[0] = time.perf_counter()
        explorer.update()
        out["click_to_result_s"].append(time.perf_counter() - t_click[0])
        out["first_feedback_s"].append(feedback[0])
        previous = explorer.result.layers
        explorer.picker.value = []  # back to the unpruned set ...
        t0 = time.perf_counter()
        explorer.picker.value = previous  # ... and re-pick: shown from the cache on the last toggle
        out["cached_repick_s"].append(time.perf_counter() - t0)
        assert explorer.result.layers == previous
        if len(out["faithfulness_first_s"]) + len(out["faithfulness_s"]) < faith_repeats:
            t0 = time.perf_counter()
            assert explorer.update_faithfulness() is not None, explorer.faith_status.value
            key = "faithfulness_s" if out["faithfulness_first_s"] else "faithfulness_first_s"
            out[key].append(time.perf_counter() - t0)
    # the sentence step alone, on sentences and sets not seen before (nothing memoised)
    for example in range(1, min(repeats, len(explorer.dataset) - 1) + 1):
        layers = explorer.result.layers
        attribution = explain_example(explorer.model, explorer.tokenizer, explorer.dataset, layers, example,
                                      method=explorer.method)
        t0 = time.perf_counter()
        sentence_comprehensiveness(explorer.model, explorer.tokenizer, explorer.dataset.task,
                                   explorer.dataset.examples[example].text, attribution, layers)
        out["sentence_comprehensiveness_s"].append(time.perf_counter() - t0)
    return {k: v for k, v in out.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sizes", default="16,24", help="evaluation sizes (sentences); notebook 02: 16 (ci), 24 (full)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default (as a kernel)")
    ap.add_argument("--faith-repeats", type=int, default=3, help="faithfulness-button requests per size (fresh sets)")
    ap.add_argument("--faithfulness", default="aopc", choices=["aopc", "naopc"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} "
          "(timings are only meaningful on an otherwise idle machine)")
    model, tok = load_model(args.model)
    texts = load_dataset("uci_yelp", n=8, split="train", seed=0).texts
    cosine = attention_importance(model, tok, texts, metric="cosine")
    n_layers = len(cosine)
    for size in (int(s) for s in args.sizes.split(",")):
        data = load_dataset("uci_yelp", n=size, split="test", seed=0)
        t0 = time.perf_counter()
        explorer = PruningExplorer(model, tok, data, cosine, faithfulness=args.faithfulness)
        print(f"\n{size} sentences: explorer built (unpruned reference) in {time.perf_counter() - t0:.2f} s")
        results = measure(explorer, n_layers, args.repeats, np.random.default_rng(size), args.faith_repeats)
        for name, values in results.items():
            print(_summary(name, values))


if __name__ == "__main__":
    main()
