"""The permuted baseline, the room p - p(0) and the ratio-of-means soft normalisation (issue 28, item 6),
on transparent scorers whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.metrics import faithfulness as F
from toolkit.metrics.faithfulness.erasure import check_words
from toolkit.metrics.faithfulness.metrics import permuted_jobs
from toolkit.metrics.faithfulness.soft import keep_probabilities
from toolkit._core.validation import InputError

TEXTS = ["the food was great", "not very good service and the plot was awful", "i hated it", "fine"]
METRICS = ["aopc_comprehensiveness", "aopc_sufficiency", "flip_rate", "soft_comprehensiveness", "soft_sufficiency"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _count_scorer(variants):
    """Input sensitivity only: p(pos) grows with how much of the input is left, whichever words they are.

    A plain variant: its number of words. A masked one: the sum of its keep probabilities.
    """
    out = []
    for v in variants:
        amount = float(np.sum(v.keep)) if isinstance(v, F.Masked) else float(len(v))
        p = _sigmoid(0.8 * amount - 1.0)
        out.append([1 - p, p])
    return np.array(out)


_count_scorer.accepts_masks = True

WEIGHTS = {"great": 2.0, "good": 1.5, "fine": 1.0, "awful": -2.0, "hated": -2.5, "not": -0.5}


def _word_scorer(variants):
    """Which words matter: a logistic model on word weights (masked words count by their keep probability)."""
    out = []
    for v in variants:
        keep = v.keep if isinstance(v, F.Masked) else np.ones(len(v))
        z = 0.3 + sum(WEIGHTS.get(w, 0.0) * q for w, q in zip(v, keep))
        p = _sigmoid(z)
        out.append([1 - p, p])
    return np.array(out)


_word_scorer.accepts_masks = True


def _attributions(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=len(t.split())) for t in TEXTS]


def test_a_permutation_masks_exactly_as_much_as_the_method():
    words = check_words(TEXTS)
    attr = _attributions()
    jobs = permuted_jobs(words, attr, "m", 5, seed=7)
    assert len(jobs) == 5 * len(TEXTS)
    for job in jobs:
        own = attr[job.example]
        np.testing.assert_array_equal(np.sort(job.scores), np.sort(own))  # the same scores, other words
        # soft: the same keep probabilities as a multiset, so the same expected masked amount
        assert keep_probabilities(job.scores).sum() == pytest.approx(keep_probabilities(own).sum(), abs=1e-12)
        np.testing.assert_array_equal(job.order, np.argsort(-job.scores, kind="stable"))
    # at least one permutation of the longer texts differs from the method's own order
    assert any(not np.array_equal(j.scores, attr[j.example]) for j in jobs)


def test_a_model_that_only_counts_words_scores_method_and_permutation_alike():
    """Input sensitivity without word preference: every metric over its permuted baseline is 0 exactly."""
    per_example, _ = F.faithfulness_report(_count_scorer, TEXTS, {"m": _attributions()}, n_random=2, naopc=False,
                                           soft=True, soft_samples=2, n_permutations=3, n_boot=50)
    minus = per_example[per_example.method == "m_minus_permuted"].set_index("example")
    own = per_example[per_example.method == "m"].set_index("example")
    for metric in ["aopc_comprehensiveness", "aopc_sufficiency", "soft_comprehensiveness", "soft_sufficiency"]:
        np.testing.assert_allclose(minus[metric], 0.0, atol=1e-12, err_msg=metric)
        assert (own[metric].abs() > 1e-6).any(), metric  # the method itself does move p(y^)
    assert (minus.n_rankings == 3).all()
    # the linear-rank random baseline masks another amount: its soft metrics differ from the method's
    rand = per_example[per_example.method == "random"].set_index("example")
    assert not np.allclose(rand["soft_comprehensiveness"], own["soft_comprehensiveness"])


def test_minus_permuted_by_hand_and_room():
    attr = _attributions(1)
    per_example, agg = F.faithfulness_report(_word_scorer, TEXTS, {"m": attr}, n_random=1, naopc=False, soft=True,
                                             soft_samples=2, n_permutations=4, permutation_seed=3, n_boot=50)
    own = per_example[per_example.method == "m"].set_index("example")
    perm = per_example[per_example.method == "permuted(m)"].set_index("example")
    minus = per_example[per_example.method == "m_minus_permuted"].set_index("example")
    for metric in METRICS:
        np.testing.assert_allclose(minus[metric], own[metric] - perm[metric], equal_nan=True, err_msg=metric)
    # the permuted baseline is the mean over the 4 permutations, each scored as an attribution of its own
    words = check_words(TEXTS)
    for i, w in enumerate(words):
        perms = [attr[i][F.permutation(3, w.text, r, len(w))] for r in range(4)]
        by_hand = [F.faithfulness_report(_word_scorer, [TEXTS[i]], {"x": [p]}, n_random=0, naopc=False,
                                         n_boot=10)[0].aopc_comprehensiveness.item() for p in perms]
        assert perm.loc[i, "aopc_comprehensiveness"] == pytest.approx(np.mean(by_hand), abs=1e-12)
    # room = max(0, p(y^|x) - p(y^|0)): all keep probabilities 0 means z = 0.3
    for i, w in enumerate(words):
        p_full = _word_scorer([w])[0]
        y = int(np.argmax(p_full))
        p0 = np.array([1 - _sigmoid(0.3), _sigmoid(0.3)])[y]
        assert own.loc[i, "room"] == pytest.approx(max(0.0, p_full[y] - p0), abs=1e-12)
    assert set(agg.method) == {"m", "permuted(m)", "m_minus_permuted", "random"}
    assert "room" in agg.columns


def test_permutations_follow_the_text_not_its_position():
    """The same sentence gets the same permutations wherever it stands (pruned and unpruned cells pair)."""
    attr = _attributions(2)
    a, _ = F.faithfulness_report(_word_scorer, TEXTS, {"m": attr}, n_random=0, naopc=False, n_permutations=3,
                                 n_boot=10)
    order = [2, 0, 3, 1]
    b, _ = F.faithfulness_report(_word_scorer, [TEXTS[i] for i in order], {"m": [attr[i] for i in order]},
                                 n_random=0, naopc=False, n_permutations=3, n_boot=10)
    pa = a[a.method == "permuted(m)"].set_index("example")
    pb = b[b.method == "permuted(m)"].set_index("example")
    for new, old in enumerate(order):
        assert pb.loc[new, "aopc_comprehensiveness"] == pytest.approx(pa.loc[old, "aopc_comprehensiveness"], abs=0)


def test_no_permutations_leaves_the_report_as_before():
    a, agg = F.faithfulness_report(_word_scorer, TEXTS, {"m": _attributions()}, n_random=1, naopc=False, n_boot=10)
    assert set(a.method) == {"m", "random"} and a["room"].isna().all()
    with pytest.raises(ValueError, match="n_permutations"):
        F.faithfulness_report(_word_scorer, TEXTS, {"m": _attributions()}, n_permutations=-1)


def test_soft_ratio_of_means_by_hand():
    rng = np.random.default_rng(0)
    n = 25
    frame = pd.DataFrame({"method": ["a"] * n + ["b"] * n, "soft_comprehensiveness": rng.uniform(0, 0.3, 2 * n),
                          "soft_sufficiency": rng.uniform(0.7, 1.0, 2 * n), "room": rng.uniform(0, 0.5, 2 * n)})
    out = F.soft_ratio_of_means(frame, n_boot=200, seed=1).set_index("method")
    for m, g in frame.groupby("method"):
        nc = g.soft_comprehensiveness.sum() / g.room.sum()
        ns = (g.soft_sufficiency - 1 + g.room).sum() / g.room.sum()
        assert out.loc[m, "soft_comprehensiveness_rom"] == pytest.approx(nc)
        assert out.loc[m, "soft_sufficiency_rom"] == pytest.approx(ns)
        assert out.loc[m, "soft_comprehensiveness_rom_low"] <= nc <= out.loc[m, "soft_comprehensiveness_rom_high"]
        # not the mean of the per-example ratios
        assert nc != pytest.approx(np.mean(g.soft_comprehensiveness / g.room))
    zero = frame.assign(room=0.0)
    assert F.soft_ratio_of_means(zero, n_boot=10).soft_comprehensiveness_rom.isna().all()
    with pytest.raises(InputError, match="room"):
        F.soft_ratio_of_means(frame.drop(columns="room"))


def test_a_study_with_permutations_reports_the_claim_and_room(tmp_path):
    """soft + n_permutations in a tiny study: the table has room and <method>_minus_permuted rows, each
    with a paired change against the unpruned cell (the same sentences, the same permutations)."""
    import json

    import torch

    from tiny import tiny_model, tiny_tokenizer
    from toolkit import Task, register_dataset
    from toolkit.study import StudyConfig, run_study

    torch.set_num_threads(1)
    model_dir = tmp_path / "model"
    tiny_model(seed=2).save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    words = "good bad great awful movie food service plot liked hated not very".split()
    rng = np.random.default_rng(0)
    lines = [json.dumps({"id": f"t-{i}", "text": " ".join(list(rng.choice(words, size=4)) + ["good" if i % 2 else "bad"]),
                         "label": i % 2, "split": ["train", "validation", "test"][i % 3]}) for i in range(36)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    register_dataset("tiny_perm", tmp_path / "d.jsonl", Task(
        name="tiny_perm", instruction="sentiment of this review ?", label_names=("negative", "positive"),
        verbalizers=("negative", "positive"), input_name="review", use_chat_template=False))
    config = StudyConfig(models=(str(model_dir),), datasets=("tiny_perm",), levels=(0, 1), selections=("cosine",),
                         methods=("saliency",), n_eval=6, n_validation=6, n_importance=4, n_faithfulness=3,
                         n_random=1, n_boot=20, batch_size=4, naopc=False, soft=True, soft_samples=2, soft_seed=5,
                         n_permutations=3, output_dir=str(tmp_path / "out"))
    table = run_study(config, progress=False, report=False)
    pruned = table[table.k == 1].set_index("metric")
    for metric in ("room:saliency", "aopc_comprehensiveness:saliency_minus_permuted",
                   "soft_comprehensiveness:saliency_minus_permuted", "aopc_comprehensiveness:permuted(saliency)"):
        assert metric in pruned.index, metric
        assert np.isfinite(pruned.loc[metric, "delta"]), metric
    ref = table[table.k == 0].set_index("metric")
    own, perm = (ref.loc[f"soft_comprehensiveness:{m}", "value"] for m in ("saliency", "permuted(saliency)"))
    assert ref.loc["soft_comprehensiveness:saliency_minus_permuted", "value"] == pytest.approx(own - perm)
    # the faithfulness claim is the method over its permuted baseline: only those rows are primary
    import pandas as pd

    from toolkit.study import summary
    audit = pd.read_csv(config.run_dir() / "audit.csv")
    faith = audit[audit.metric.str.contains(":")]
    primary = set(faith[faith.primary_claim].metric)
    assert primary and all(m.endswith(":saliency_minus_permuted") for m in primary), primary
    assert {"aopc_comprehensiveness:saliency", "aopc_comprehensiveness:permuted(saliency)"} <= set(faith.metric)
    tests = summary(table).tests
    assert set(tests[tests.primary_claim & tests.metric.str.contains(":")].metric) <= primary
    assert summary(table).method == "saliency_minus_permuted"


def test_claim_methods_pick_the_method_over_its_permuted_baseline():
    from toolkit.study.decide import claim_methods

    assert claim_methods(["ig", "permuted(ig)", "ig_minus_permuted", "random", "saliency"]) == [
        "ig_minus_permuted", "saliency"]
    assert claim_methods(["saliency", "random"]) == ["saliency"]
    assert claim_methods(["random"]) == []
