"""Faithfulness of five attribution methods on SmolLM2-135M, unpruned vs 10 cosine-chosen attention layers dropped.

    .venv/bin/python benchmarks/faithfulness_table.py [--n 100] [--k 10] [--max-words 16]
        [--methods saliency input_x_gradient integrated_gradients attention occlusion]
        [--n-random 3] [--ig-steps 20] [--chunk 10] [--out results/faithfulness_table.jsonl]

The n sentences are the first test sentences of at most `--max-words` words of uci_amazon,
uci_imdb and uci_yelp (n/3 each, in the datasets' seeded order): the NAOPC bound search costs
grow with the square of the length. The k layers are the one-shot cosine choice on 64 training
sentences (the three sets pooled). For each state (unpruned, k dropped) every method explains
the model's own prediction *in that state* (inside `drop_attention`), and
`faithfulness_report` measures AOPC comprehensiveness/sufficiency, NAOPC (exact bounds for
<= 8 words, beam search above) and the decision flip, beside `--n-random` seeded random rankings.

Per-example rows are appended to `--out` chunk by chunk; a rerun skips finished chunks (a
killed run loses at most one chunk). The final tables: per state and method, the mean over
examples with a bootstrap 95% CI; then the paired change (pruned - unpruned) per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from toolkit import (
    attention_importance,
    attribute,
    drop_attention,
    faithfulness_report,
    load_dataset,
    load_model,
    select_layers,
)
from toolkit.metrics.faithfulness import aggregate, model_scorer
from toolkit.metrics.registry import metric_names
from toolkit.models.manifest import build_manifest, manifest_diff, read_result_manifests, write_result_manifest
from toolkit.decisions.stats import paired_bootstrap
from toolkit.pruning.timing import Clock

DATASETS = ("uci_amazon", "uci_imdb", "uci_yelp")
FAST = {"saliency", "input_x_gradient", "integrated_gradients"}


def _examples(n: int, max_words: int) -> list:
    per = [n // len(DATASETS) + (i < n % len(DATASETS)) for i in range(len(DATASETS))]
    out = []
    for name, m in zip(DATASETS, per):
        short = [e for e in load_dataset(name, split="test") if len(e.text.split()) <= max_words]
        out += [(name, e) for e in short[:m]]
    return out


def _done(path: Path) -> dict[str, list[dict]]:
    done: dict[str, list[dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a killed write
                continue
            done.setdefault(rec["chunk"], rec["rows"])
    return done


def _record_manifest(out: Path, manifest) -> None:
    """Add this run's manifest beside ``out`` (chunks of earlier runs keep theirs: the file is appended to)."""
    try:
        known = read_result_manifests(out)
    except ValueError:
        known = []
    if not known or manifest_diff(known[-1], manifest):
        write_result_manifest(out, known + [manifest])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-words", type=int, default=16)
    ap.add_argument("--methods", nargs="+",
                    default=["saliency", "input_x_gradient", "integrated_gradients", "attention", "occlusion"])
    ap.add_argument("--n-random", type=int, default=3)
    ap.add_argument("--ig-steps", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/faithfulness_table.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)

    model, tok = load_model(args.model)
    _record_manifest(out, build_manifest(model, tok, model_id=args.model))  # seeds: each chunk's start index
    texts = [t for name in DATASETS for t in load_dataset(name, n=64 // len(DATASETS) + 1, split="train").texts]
    dropped = select_layers(attention_importance(model, tok, texts, metric="cosine"), args.k)
    print(f"cosine choice of {args.k} layers: {dropped}", flush=True)
    examples = _examples(args.n, args.max_words)
    print(f"{len(examples)} sentences, {np.mean([len(e.text.split()) for _, e in examples]):.1f} words on average")

    for state, layers in (("unpruned", []), (f"cosine{args.k}", dropped)):
        for name in DATASETS:
            exs = [e for d, e in examples if d == name]
            task = load_dataset(name, n=1, split="test").task
            for start in range(0, len(exs), args.chunk):
                key = f"{state}|{name}|{start}|{args.n_random}|{args.ig_steps}|{','.join(args.methods)}"
                if key in done:
                    continue
                with Clock() as clock:
                    batch = exs[start : start + args.chunk]
                    with drop_attention(model, layers):
                        attrs = {}
                        for m in args.methods:
                            kw = {"n_steps": args.ig_steps} if m == "integrated_gradients" else {}
                            attrs[m] = attribute(model, tok, task, batch, method=m,
                                                 backend="fast" if m in FAST else "inseq", **kw)
                        words = [a.words for a in attrs[args.methods[0]]]
                        for m, a in attrs.items():
                            assert [x.words for x in a] == words, f"{m} split the words differently"
                        per_example, _ = faithfulness_report(
                            model_scorer(model, tok, task), words, {m: [x.scores for x in a] for m, a in attrs.items()},
                            n_random=args.n_random, seed=start, n_boot=10,
                        )
                    per_example["example"] = [batch[i].id for i in per_example["example"]]
                    rows = json.loads(per_example.assign(state=state, dataset=name).to_json(orient="records"))
                    with out.open("a") as f:
                        f.write(json.dumps({"chunk": key, "rows": rows}) + "\n")
                    done[key] = rows
                print(f"{state:>9} {name:<10} {start:>3}+{len(batch)}: {clock.wall:6.1f} s", flush=True)

    suffix = f"|{args.n_random}|{args.ig_steps}|{','.join(args.methods)}"
    table = pd.DataFrame([r for k, rows in done.items() if k.endswith(suffix) for r in rows])  # file order: CIs repeat
    stats = aggregate(table, n_boot=args.n_boot, by=("state", "method"))
    result = stats[["state", "method", "n_examples"]].copy()
    for m in metric_names("faithfulness"):
        result[m] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if v == v else "n/a"
                     for v, lo, hi in zip(stats[m], stats[f"{m}_low"], stats[f"{m}_high"])]
    result["n_flipped"] = stats["n_fraction_flip"]
    order = {m: i for i, m in enumerate([*args.methods, "random"])}
    result = result.sort_values(["state", "method"], key=lambda s: s.map(order) if s.name == "method" else s != "unpruned")
    print(f"\nmean over examples [95% bootstrap CI]; bounds: {table.bound_method.value_counts().to_dict()}\n")
    print(result.to_markdown(index=False))
    pruned = f"cosine{args.k}"
    if {"unpruned", pruned} <= set(table.state):
        print(f"\n{pruned} - unpruned, paired over the same sentences [95% paired bootstrap CI]:\n")
        print(paired_deltas(table, "unpruned", pruned, n_boot=args.n_boot).to_markdown(index=False))


def paired_deltas(table: pd.DataFrame, ref: str, other: str, *, n_boot: int) -> pd.DataFrame:
    """Per method and metric: mean(other) - mean(ref) over the examples both have a value for."""
    rows = []
    for method in table.method.unique():
        a = table[(table.state == ref) & (table.method == method)].set_index("example")
        b = table[(table.state == other) & (table.method == method)].set_index("example")
        row = {"method": method}
        for m in metric_names("faithfulness"):
            both = pd.concat([a[m], b[m]], axis=1, keys=["a", "b"]).dropna()
            if len(both) == 0:
                row[m] = "n/a"
                continue
            d = paired_bootstrap(np.mean, (both.a.to_numpy(),), (both.b.to_numpy(),), n_boot=n_boot)
            row[m] = f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] (n={len(both)})"
        rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
