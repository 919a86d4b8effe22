"""toolkit.explorer.faithfulness against independent computations on a tiny model.

References: a by-hand erasure (delete the top-k words, score the shortened texts with
`toolkit.models.scoring.label_probs`), `toolkit.metrics.faithfulness` called directly with a memo-free scorer,
and `toolkit.decisions.stats.paired_bootstrap` with a plain (index-resampling) mean.

Tolerance: the same float32 forwards in batches of different composition (left padding) differ
by rounding only; observed < 1e-6 on probabilities, so atol=1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiny import sentiment_task, tiny_model, tiny_tokenizer
from toolkit import drop_attention
from toolkit.data.datasets import dataset_from_records
from toolkit.models.adapters import dropped_layers
from toolkit.attribution import attribute
from toolkit.metrics.faithfulness import FRACTIONS, comprehensiveness, model_scorer, naopc
from toolkit.explorer.faithfulness import (
    compare_comprehensiveness,
    sentence_comprehensiveness,
    set_comprehensiveness,
)
from toolkit.models.scoring import label_probs
from toolkit.decisions.stats import paired_bootstrap
from toolkit._core.validation import InputError

TASK = sentiment_task("tiny_pf")
RECORDS = [
    {"id": f"pf-{i}", "text": t, "label": y}
    for i, (t, y) in enumerate([("the movie was really good fun", 1), ("i hated the food", 0), ("great plot", 1),
                                ("awful service and rude staff", 0), ("not bad", 1), ("very bad movie", 0)])
]
ATOL = 1e-5  # see the module docstring


@pytest.fixture(scope="module")
def setup():
    return tiny_model(), tiny_tokenizer(), dataset_from_records("tiny_pf", RECORDS, TASK)


def _by_hand_aopc(model, tok, text: str, scores: np.ndarray) -> tuple[float, list[float], int]:
    """ERASER comprehensiveness from scratch: rank, delete the top k words, score, subtract."""
    words = text.split()
    full = label_probs(model, tok, TASK, [text], progress=False)[0]
    y = int(np.argmax(full))
    order = sorted(range(len(words)), key=lambda i: (-scores[i], i))  # descending, ties by position
    curve = []
    for f in FRACTIONS:
        k = max(1, math.ceil(round(f * len(words), 9)))
        kept = " ".join(w for i, w in enumerate(words) if i not in set(order[:k]))
        p = label_probs(model, tok, TASK, [kept], progress=False)[0][y]
        curve.append(float(full[y] - p))
    return float(np.mean(curve)), curve, y


@pytest.mark.parametrize("layers", [(), (1, 2)])
def test_sentence_comprehensiveness_equals_a_by_hand_erasure(setup, layers):
    model, tok, data = setup
    ex = data.examples[0]
    with drop_attention(model, layers):
        (attr,) = attribute(model, tok, TASK, [ex], method="saliency", backend="fast")
        aopc, curve, y = _by_hand_aopc(model, tok, ex.text, attr.scores)
    got = sentence_comprehensiveness(model, tok, TASK, ex.text, attr, layers)
    assert dropped_layers(model) == ()  # the drop was undone
    assert got.layers == layers and got.label == y == attr.label
    assert got.aopc == pytest.approx(aopc, abs=ATOL) and got.curve == pytest.approx(curve, abs=ATOL)
    assert got.ks == (1, 1, 1, 2, 3)  # 6 words: ceil(.01*6)=1, ..., ceil(.2*6)=2, ceil(.5*6)=3
    assert got.aopc == pytest.approx(np.mean(got.curve))


def test_the_drop_changes_the_sentence_comprehensiveness(setup):
    model, tok, data = setup
    ex = data.examples[3]
    before = sentence_comprehensiveness(model, tok, TASK, ex.text,
                                        attribute(model, tok, TASK, [ex], backend="fast")[0])
    with drop_attention(model, [0, 1]):
        attr = attribute(model, tok, TASK, [ex], backend="fast")[0]
    after = sentence_comprehensiveness(model, tok, TASK, ex.text, attr, [1, 0])
    assert after.layers == (0, 1) and after.aopc != pytest.approx(before.aopc, abs=1e-9)


def test_sentence_comprehensiveness_refuses_another_sentences_attribution(setup):
    model, tok, data = setup
    attr = attribute(model, tok, TASK, [data.examples[1]], backend="fast")[0]
    with pytest.raises(InputError, match="has words .* but the text has"):
        sentence_comprehensiveness(model, tok, TASK, data.examples[0].text, attr)


@pytest.mark.parametrize("metric", ["aopc", "naopc"])
def test_set_comprehensiveness_equals_toolkit_faithfulness_called_directly(setup, metric):
    model, tok, data = setup
    texts = [e.text for e in data.examples]
    seen = []
    got = set_comprehensiveness(model, tok, data, [2], method="input_x_gradient", metric=metric,
                                on_progress=lambda f, w: seen.append(f))
    with drop_attention(model, [2]):
        attrs = attribute(model, tok, TASK, data.examples, method="input_x_gradient", backend="fast")
        scorer = model_scorer(model, tok, TASK, memo=False)
        fn = comprehensiveness if metric == "aopc" else naopc
        direct = fn(scorer, texts, [a.scores for a in attrs])
    column = f"{metric}_comprehensiveness"
    np.testing.assert_allclose(got.value, direct[column], atol=ATOL)
    assert list(got.example) == list(range(6)) and seen == sorted(seen) and seen[-1] == 1.0
    if metric == "aopc":  # the per-sentence function gives the same number
        one = sentence_comprehensiveness(model, tok, TASK, texts[4], attrs[4], [2])
        assert got.value[4] == pytest.approx(one.aopc, abs=ATOL)
    else:
        assert set(got.bound_method) == {"exact"}  # every sentence has <= 8 words: exact bounds
        assert ((got.value >= -1e-9) & (got.value <= 1 + 1e-9) | got.value.isna()).all()
    with pytest.raises(InputError, match="unknown faithfulness metric 'eraser'"):
        set_comprehensiveness(model, tok, data, metric="eraser")


def test_compare_comprehensiveness_is_a_paired_bootstrap_of_the_mean():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 0.3, 20)
    pruned = ref - 0.05 + rng.normal(0, 0.02, 20)
    table = compare_comprehensiveness(pruned, ref, n_boot=500, seed=4)
    row = table.loc["AOPC comprehensiveness"]
    direct = paired_bootstrap(lambda x: float(np.mean(x)), (ref,), (pruned,), n_boot=500, seed=4)
    assert row.delta == pytest.approx(pruned.mean() - ref.mean()) == pytest.approx(direct.estimate)
    assert (row.low, row.high) == pytest.approx((direct.low, direct.high))
    assert row.high < 0 and row.better == "higher" and row.n == row.n_total == 20
    assert (row.value, row.reference) == pytest.approx((pruned.mean(), ref.mean()))


def test_compare_comprehensiveness_leaves_out_flat_sentences_and_checks_shapes():
    ref = np.array([0.2, np.nan, 0.5, 0.1])
    pruned = np.array([0.1, 0.3, np.nan, 0.3])
    row = compare_comprehensiveness(pruned, ref, metric="naopc", n_boot=200).loc["NAOPC comprehensiveness"]
    assert row.n == 2 and row.n_total == 4
    assert row.delta == pytest.approx(np.mean([0.1, 0.3]) - np.mean([0.2, 0.1]))
    empty = compare_comprehensiveness([np.nan], [0.1]).iloc[0]
    assert empty.n == 0 and np.isnan(empty.delta) and np.isnan(empty.value)
    with pytest.raises(InputError, match="must be 1-D over the same sentences"):
        compare_comprehensiveness([0.1, 0.2], [0.1])
