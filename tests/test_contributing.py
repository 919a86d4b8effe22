"""Recipes for contributors: how to add a dataset, an architecture, an exercise and a metric.

Each test is one recipe that the contributor page quotes: it uses only public names, and it
registers inside ``with <REGISTRY>.restored():`` so the registry is exactly as before when the
block ends (every registry is a :class:`toolkit._core.registry.Registry`, with one policy: a
name already registered is refused unless ``replace=True``). One test function per recipe.
"""

from __future__ import annotations

import numpy as np


def test_recipe_metric_with_a_new_engine_part():
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
