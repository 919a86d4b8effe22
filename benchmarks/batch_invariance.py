"""Do `predict`'s probabilities depend on the batch size? Max |difference| against batch size 1.

Usage: python benchmarks/batch_invariance.py [--models smollm2-135m gemma3-270m] [--n 24]
                                            [--batch-sizes 1 4 16] [--threads 1] [--write FILE.csv]

For each bundled model, `n` UCI Yelp test sentences of mixed length (evenly spaced in the
length order of the test split, 1-32 words) are scored with the dataset's own prompt at each
batch size, on both scoring paths of `toolkit.models.scoring`:

* ``single``: one-token verbalizers (the dataset's task): the shared prompt prefix is computed once
  as a KV cache and the rows are right-padded after it;
* ``multi``: two-token verbalizers (a task variant whose answers are "negative review" /
  "positive review"): teacher forcing on a left-padded batch with explicit position ids.

Printed and written (``--write``, with a manifest beside it): the largest absolute difference of
any class probability and of the label mass from batch size 1, per model, path and batch size.
lm-eval users report scores moving with batch size; the toolkit's tests require <= 1e-5.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pandas as pd
import torch

from toolkit.data.datasets import load_dataset
from toolkit.models.manifest import build_manifest, write_result_manifest
from toolkit.models.loading import load_model
from toolkit.models.scoring import frame_probs, predict


def mixed_length_sentences(n: int):
    """``n`` test sentences spread evenly over the length order of the uci_yelp test split."""
    ds = load_dataset("uci_yelp", split="test")
    order = sorted(range(len(ds)), key=lambda i: (len(ds.examples[i].text.split()), ds.examples[i].id))
    picks = sorted({order[int(round(j))] for j in np.linspace(0, len(order) - 1, n)})
    return ds, [ds.examples[i] for i in picks]


def measure(model, tok, task, examples, batch_sizes) -> list[dict]:
    frames = {bs: predict(model, tok, examples, task=task, batch_size=bs, progress=False) for bs in batch_sizes}
    ref = frames[batch_sizes[0]]
    rows = []
    for bs in batch_sizes[1:]:
        rows.append(dict(batch_size=bs,
                         max_abs_diff_prob=float(np.abs(frame_probs(frames[bs]) - frame_probs(ref)).max()),
                         max_abs_diff_label_mass=float(np.abs(frames[bs].label_mass - ref.label_mass).max()),
                         same_predictions=bool((frames[bs].pred == ref.pred).all())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 4, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", default=None, help="CSV to write the rows to (a manifest is written beside it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds, examples = mixed_length_sentences(args.n)
    words = [len(e.text.split()) for e in examples]
    print(f"{len(examples)} sentences, {min(words)}-{max(words)} words; batch sizes {args.batch_sizes}; "
          f"torch threads {torch.get_num_threads()}")
    rows, manifests = [], []
    for name in args.models:
        model, tok = load_model(name)
        multi = dataclasses.replace(ds.task, verbalizers=tuple(f"{v} review" for v in ds.task.verbalizers))
        for path, task in (("single", ds.task), ("multi", multi)):
            for row in measure(model, tok, task, examples, args.batch_sizes):
                rows.append(dict(model=name, path=path, **row))
                print(pd.DataFrame(rows[-1:]).to_string(header=len(rows) == 1, index=False), flush=True)
        manifests.append(build_manifest(model, tok, model_id=name, task=ds.task, batch_size=max(args.batch_sizes)))
        del model
    table = pd.DataFrame(rows)
    if args.write:
        table.to_csv(args.write, index=False)
        write_result_manifest(args.write, manifests)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
