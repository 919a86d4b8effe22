"""Recipes for contributors: how to add a dataset, an architecture, an exercise and a metric.

Each test is one recipe that the contributor page (docs/contributing.md) includes by its section
markers: it uses only public names, and it registers inside ``with <REGISTRY>.restored():`` so the registry is exactly as before when the
block ends (every registry is a :class:`toolkit._core.registry.Registry`, with one policy: a
name already registered is refused unless ``replace=True``). One test function per recipe.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import tiny_config, tiny_tokenizer
from transformers import LlamaForCausalLM


# --8<-- [start:dataset]
def test_add_a_dataset(tmp_path):
    from toolkit import Task, list_datasets, load_dataset, register_dataset
    from toolkit.data.datasets import DATASETS

    rows = [{"text": f"the food was {'good' if i % 2 else 'bad'}", "label": i % 2,
             "split": ("train", "validation", "test")[i % 3]} for i in range(12)]
    path = tmp_path / "my_reviews.jsonl"  # one JSON object per line: text, label, optional id / split
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = Task("my_reviews", "Is the sentiment of this review positive or negative?",
                label_names=("negative", "positive"), verbalizers=("negative", "positive"), input_name="Review")
    with DATASETS.restored():
        register_dataset("my_reviews", path, task, source="hand-made", licence="CC0")  # validated now
        test = load_dataset("my_reviews", split="test")
        assert len(test) == 4 and list(test.labels) == [0, 1, 0, 1]
        assert "my_reviews" in set(list_datasets().name)  # a StudyConfig(datasets=("my_reviews",)) can use it
    assert "my_reviews" not in DATASETS
# --8<-- [end:dataset]


# --8<-- [start:adapter]
def test_add_an_architecture():
    from toolkit import attention_importance, drop_attention
    from toolkit.models.adapters import ADAPTERS, adapter_for, register_adapter

    class MyLlamaForCausalLM(LlamaForCausalLM):  # a Llama under another class name (a fine-tune's own class)
        pass

    model = MyLlamaForCausalLM(tiny_config()).eval()
    with pytest.raises(ValueError, match="unsupported architecture 'MyLlamaForCausalLM'"):
        adapter_for(model)
    with ADAPTERS.restored():
        register_adapter("MyLlamaForCausalLM", ADAPTERS.get("LlamaForCausalLM"))  # its parts: as Llama
        scores = attention_importance(model, tiny_tokenizer(), ["good food", "bad plot"], metric="cosine")
        assert len(scores) == 4  # one score per decoder layer
        ids = torch.tensor([[5, 6, 7]])
        with torch.no_grad(), drop_attention(model, [0]):
            dropped = model(ids).logits
        assert not torch.equal(dropped, model(ids).logits)
    assert "MyLlamaForCausalLM" not in ADAPTERS
# --8<-- [end:adapter]


# --8<-- [start:exercise]
def test_add_an_exercise():
    from toolkit.course import (
        EXERCISES,
        Case,
        Exercise,
        ExerciseFailed,
        check,
        list_exercises,
        register_exercise,
    )
    from toolkit.course.checking import scalar

    mean_confidence = Exercise(
        name="mean_confidence", notebook="04_calibration", title="The mean top-label confidence",
        difficulty=1, importance=1, minutes=3,
        signature='def mean_confidence(probs):\n    """The mean over rows of max_c probs[i, c]."""',
        hint="Take the largest probability of each row, then their mean.",
        cases=lambda: [Case("three rows", (np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]),))],
        reference=lambda probs: float(probs.max(axis=1).mean()),
        compare=scalar(atol=1e-12), compared_with="numpy", tolerance="1e-12: one mean of three floats")
    with EXERCISES.restored():
        register_exercise(mean_confidence)
        assert "mean_confidence" in set(list_exercises("04_calibration").name)
        check("mean_confidence", lambda probs: probs.max(axis=1).mean())  # a right answer passes
        with pytest.raises(ExerciseFailed, match="three rows"):
            check("mean_confidence", lambda probs: probs.mean())  # a wrong one names the failing case
    assert "mean_confidence" not in EXERCISES
# --8<-- [end:exercise]


# --8<-- [start:metric]
def test_add_a_metric():
    from toolkit import calibration_report
    from toolkit.metrics.registry import METRICS, Metric, register_metric

    def overconfidence(probs, labels, *, weights=None):
        """Mean top-label confidence minus accuracy; ``weights`` (B, n): one value per bootstrap resample."""
        gap = probs.max(axis=1) - (probs.argmax(axis=1) == labels)
        return float(gap.mean()) if weights is None else (weights @ gap) / weights.sum(axis=1)

    probs, labels = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), np.array([0, 1, 1, 1])
    with METRICS.restored():
        register_metric(Metric("overconfidence", overconfidence, "calibration", higher_is_better=False,
                               test="paired_bootstrap", label="overconfidence"))
        row = calibration_report(probs, labels, n_boot=50).iloc[0]  # and a row of every study's table
        assert row["overconfidence"] == pytest.approx(0.75 - 0.5)  # mean confidence - accuracy
        assert row["overconfidence_low"] <= row["overconfidence"] <= row["overconfidence_high"]
    assert "overconfidence" not in METRICS
# --8<-- [end:metric]


# --8<-- [start:engine_part]
def test_add_a_metric_with_a_new_engine_part():
    """A faithfulness metric that needs a new part of the erasure engine: the part (what it queues, what
    it reads) and the metric are two register calls, switched on through ErasureOptions; no toolkit
    file changes. Here: p(y^) after erasing only each ranking's top k words, k an option of the part."""
    import pandas as pd

    from toolkit.metrics.faithfulness import (
        ENGINE,
        ErasureOptions,
        engine_parts,
        faithfulness_report,
        register_engine_part,
    )
    from toolkit.metrics.registry import METRICS, register_metric

    def queue(run):  # before the one scorer call: each ranking's text without its top k words
        k = run.options.part_options["top_k"]
        return [run.pool.add(run.options.eraser.apply(run.words[job.example], job.order[:k])) for job in run.jobs]

    def read(run, ids):  # after it: per ranking, p(y^) of its erased text
        return pd.DataFrame([{"example": job.example, "method": job.method, "ranking": job.ranking,
                              "p_top_k": run.pool[i][run.full.labels[job.example]]} for job, i in zip(run.jobs, ids)])

    weights = {"good": 2.0, "great": 1.5, "bad": -2.0, "awful": -1.0, "not": -0.5}

    def scorer(variants):  # a transparent logistic model of the words
        z = np.array([sum(weights.get(w, 0.0) for w in v) for v in variants])
        p = 1 / (1 + np.exp(-z))
        return np.stack([1 - p, p], axis=1)

    texts = ["the food was good and great", "an awful and bad plot", "not good not bad"]
    scores = {"mine": [np.array([0, 0, 0, 2, 0, 1.0]), np.array([0, 2, 0, 1, 0.0]), np.array([1, 3, 0, 2.0])]}
    on = ErasureOptions(naopc=False, part_options={"top_k": 2})
    with ENGINE.restored(), METRICS.restored():
        register_engine_part("top_k", queue, read, columns=("p_top_k",), switch="top_k",
                             what="the top-k erasure")
        register_metric("top_k_drop", lambda table: table["p_full"] - table["p_top_k"], family="faithfulness",
                        higher_is_better=True, test="paired_t", label="drop after erasing the top k", needs={"top_k"})
        assert "top_k" in engine_parts(on) and "top_k" not in engine_parts(ErasureOptions(naopc=False))
        per_example, aggregate = faithfulness_report(scorer, texts, scores, on, n_random=2, n_boot=50)
        off, _ = faithfulness_report(scorer, texts, scores, naopc=False, n_random=2, n_boot=50)
    assert "top_k" not in ENGINE and "top_k_drop" not in METRICS  # both registrations undone

    def by_hand(text, attribution, k=2):  # erase the k best-scored words (ties: earlier first), track y^
        words = text.split()
        full = scorer([words])[0]
        top = set(np.argsort(-attribution, kind="stable")[:k])
        erased = scorer([[w for i, w in enumerate(words) if i not in top]])[0]
        return full.max() - erased[full.argmax()]

    mine = per_example[per_example.method == "mine"].sort_values("example")
    np.testing.assert_allclose(mine.top_k_drop, [by_hand(t, a) for t, a in zip(texts, scores["mine"])], atol=1e-12)
    assert per_example[per_example.method == "random"].top_k_drop.notna().all()  # beside the random baseline
    assert {"top_k_drop", "top_k_drop_low", "top_k_drop_high"} <= set(aggregate.columns)
    assert "p_top_k" not in per_example  # the part's own column stays inside the engine
    assert off.top_k_drop.isna().all()  # switched off: the part did not run, the metric is NaN
# --8<-- [end:engine_part]


def test_the_contributor_page_includes_every_recipe():
    """docs/contributing.md shows each recipe by including its section of this file (so the page cannot drift)."""
    import re
    from pathlib import Path

    here = Path(__file__)
    page = (here.parents[1] / "docs" / "contributing.md").read_text()
    included = re.findall(r'^--8<-- "tests/test_contributing.py:(\w+)"$', page, re.M)
    text = here.read_text()
    sections = re.findall(r"^# --8<-- \[start:(\w+)\]$", text, re.M)
    assert sections == re.findall(r"^# --8<-- \[end:(\w+)\]$", text, re.M)
    assert sorted(included) == sorted(sections) and len(sections) == 5
    recipes = re.findall(r"^def (test_add_\w+)", text, re.M)
    assert len(recipes) == len(sections), "every recipe test sits in a section the page includes"
