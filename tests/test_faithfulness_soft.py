"""Soft comprehensiveness and sufficiency (toolkit.metrics.faithfulness.soft) against a by-hand Monte Carlo.

The reference below re-does every step in plain torch on a tiny random model: one unpadded,
uncached forward per mask draw, the masks drawn by the documented rule, the formulas of
Zhao & Aletras 2023 with Carton et al.'s normalisation written out. The toolkit batches, pads,
caches the prompt prefix and memoises; the numbers must agree to float precision.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from tiny import tiny_model, tiny_tokenizer
from toolkit.metrics import faithfulness as F
from toolkit.data.prompts import encode_example, verbalizer_ids
from toolkit._core.validation import InputError

TEXTS = ["the food was great", "not very good service and the plot was awful", "i hated it"]


@pytest.fixture(scope="module")
def setup():
    return tiny_model(seed=2), tiny_tokenizer()  # seed 2: masking every word lowers p(y^) on all three texts


def _by_hand_prob(model, tok, task, text, keep, seed):
    """p(. | x') for one mask draw, by hand: the documented rule, one plain forward."""
    enc = encode_example(tok, task, text)
    labels = [v[0] for v in verbalizer_ids(task, tok)]
    with torch.no_grad():
        x = model.get_input_embeddings()(torch.tensor([enc.ids]))[0].clone()
        mine = [t for t, w in enumerate(enc.token_word) if w >= 0]
        if seed is None:  # keep in {0, 1}: no draw
            m = np.array([[keep[enc.token_word[t]]] * x.shape[1] for t in mine])
        else:
            u = np.random.default_rng([seed[0], zlib.crc32(text.encode()), seed[1]]).random((len(mine), x.shape[1]))
            m = np.stack([u[i] < keep[enc.token_word[t]] for i, t in enumerate(mine)])
        for i, t in enumerate(mine):
            x[t] = x[t] * torch.tensor(m[i], dtype=x.dtype)
        logits = model(inputs_embeds=x[None]).logits[0, -1]
    return torch.softmax(logits[labels].double(), dim=0).numpy()


def _by_hand(model, tok, task, text, scores, n_samples, seed):
    p_full = _by_hand_prob(model, tok, task, text, np.ones(len(text.split())), None)
    y = int(np.argmax(p_full))
    s = np.asarray(scores, dtype=float)
    q = (s - s.min()) / (s.max() - s.min())
    p0 = _by_hand_prob(model, tok, task, text, np.zeros(len(s)), None)[y]
    comps, suffs = [], []
    for k in range(n_samples):
        p_comp = _by_hand_prob(model, tok, task, text, 1 - q, (seed, k))[y]
        p_suff = _by_hand_prob(model, tok, task, text, q, (seed, k))[y]
        comps.append(max(0.0, p_full[y] - p_comp))
        suffs.append(1.0 - max(0.0, p_full[y] - p_suff))
    s0 = 1.0 - max(0.0, p_full[y] - p0)
    comp, suff = np.mean(comps), np.mean(suffs)
    return comp, suff, comp / (1 - s0), (suff - s0) / (1 - s0)


def test_soft_metrics_match_a_by_hand_monte_carlo(setup, tiny_task):
    model, tok = setup
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=len(t.split())) for t in TEXTS]
    scorer = F.model_scorer(model, tok, tiny_task, batch_size=2, memo=False)
    got = F.soft_erasure(scorer, TEXTS, scores, n_samples=5, seed=7)
    for i, text in enumerate(TEXTS):
        comp, suff, comp_n, suff_n = _by_hand(model, tok, tiny_task, text, scores[i], 5, 7)
        assert got.soft_comprehensiveness[i] == pytest.approx(comp, abs=1e-6), (i, text)
        assert got.soft_sufficiency[i] == pytest.approx(suff, abs=1e-6), (i, text)
        # normalised = raw / (p - p(0)): the division amplifies fp32 batch noise (~1e-7 in p) to ~1e-5
        assert got.soft_comprehensiveness_normalised[i] == pytest.approx(comp_n, rel=1e-4), (i, text)
        assert got.soft_sufficiency_normalised[i] == pytest.approx(suff_n, rel=1e-4), (i, text)
    assert got.soft_comprehensiveness.between(0, 1).all() and got.soft_sufficiency.between(0, 1).all()


def test_keep_everything_and_keep_nothing_are_the_limits(setup, tiny_task):
    """q = 1 on every word (all scores equal except...) cannot be asked directly; instead the masked
    path at keep 1 reproduces label_probs (so comp of an all-kept draw is 0), and keep 0 is S(0)."""
    model, tok = setup
    words = F.Variant(TEXTS[0].split(), TEXTS[0], TEXTS[0])
    probs = F.masked_label_probs(model, tok, tiny_task, [F.Masked(words, [1.0] * 4, ()), F.Masked(words, [0.0] * 4, ())])
    from toolkit.models.scoring import label_probs

    assert probs[0] == pytest.approx(label_probs(model, tok, tiny_task, [TEXTS[0]])[0], abs=1e-6)
    assert probs[1] == pytest.approx(_by_hand_prob(model, tok, tiny_task, TEXTS[0], np.zeros(4), None), abs=1e-6)


def test_mask_keeps_elements_at_the_asked_rate():
    keep = np.array([0.0, 0.25, 0.9, 1.0])
    m = F.embedding_mask(np.repeat(keep, 1), 20_000, (1, 2, 3))
    assert m[0].sum() == 0 and m[3].sum() == 20_000
    # binomial(20000, q): 5 standard deviations
    for row, q in ((1, 0.25), (2, 0.9)):
        assert abs(m[row].mean() - q) < 5 * np.sqrt(q * (1 - q) / 20_000)


def test_keep_probabilities_min_max():
    assert F.keep_probabilities([2.0, -1.0, 0.5]).tolist() == [1.0, 0.0, 0.5]
    assert F.keep_probabilities([3.0, 3.0]).tolist() == [0.5, 0.5]


def test_seeded_memoised_and_shared_by_methods(setup, tiny_task):
    model, tok = setup
    memo = F.ScoreMemo()
    scorer = F.model_scorer(model, tok, tiny_task, memo=memo)
    scores = [np.arange(len(t.split()), dtype=float) for t in TEXTS]
    a = F.soft_erasure(scorer, TEXTS, scores, n_samples=3)
    scored = memo.scored
    b = F.soft_erasure(scorer, TEXTS, scores, n_samples=3)
    assert memo.scored == scored  # the second call is answered from the memo
    pd_equal = a.equals(b)
    assert pd_equal
    c = F.soft_erasure(F.model_scorer(model, tok, tiny_task, memo=False), TEXTS, scores, n_samples=3, seed=1)
    assert not np.allclose(c.soft_comprehensiveness, a.soft_comprehensiveness, equal_nan=True)


def test_report_has_soft_columns_for_methods_and_random(setup, tiny_task):
    model, tok = setup
    scorer = F.model_scorer(model, tok, tiny_task, memo=False)
    scores = {"m": [np.arange(len(t.split()), dtype=float)[::-1] for t in TEXTS]}
    per_example, agg = F.faithfulness_report(scorer, TEXTS, scores, n_random=2, n_boot=50, naopc=False, soft=True,
                                             soft_samples=2)
    assert set(per_example.method) == {"m", "random"}
    assert {"soft_comprehensiveness", "soft_sufficiency"} <= set(agg.columns)
    # without soft the columns are there but empty (the engine part did not run)
    per_example, _ = F.faithfulness_report(scorer, TEXTS, scores, n_random=1, n_boot=50, naopc=False)
    assert per_example.soft_comprehensiveness.isna().all()


def test_text_only_scorer_is_refused(tiny_task):
    def scorer(variants):
        return np.tile([0.3, 0.7], (len(variants), 1))

    with pytest.raises(InputError, match="accepts_masks"):
        F.soft_erasure(scorer, TEXTS, [np.ones(len(t.split())) for t in TEXTS])


@pytest.mark.model
@pytest.mark.parametrize("bundled", ["smollm2", "gemma3"])
@pytest.mark.parametrize("shots", [0, 4])
def test_masked_path_reproduces_label_probs_on_real_models(bundled, shots, request):
    """Kept whole (keep 1), the masked-embedding path gives label_probs' probabilities on each bundled
    model, its chat template and 4 demonstrations included; zeroing the words moves them; and
    the soft metrics of two sentences are bounded and move with the mask."""
    import dataclasses

    from toolkit.data.datasets import load_dataset
    from toolkit.models.scoring import label_probs

    model, tok = request.getfixturevalue(bundled)
    data = load_dataset("uci_yelp", n=20, split="test")
    task = dataclasses.replace(data.task, n_shot=shots)
    texts = [e.text for e in data.examples[:3]]
    variants = [F.Variant(t.split(), t, t) for t in texts]
    kept = F.masked_label_probs(model, tok, task, [F.Masked(v, [1.0] * len(v), ()) for v in variants], batch_size=2)
    np.testing.assert_allclose(kept, label_probs(model, tok, task, texts), atol=2e-4)
    zeroed = F.masked_label_probs(model, tok, task, [F.Masked(v, [0.0] * len(v), ()) for v in variants])
    assert np.abs(zeroed - kept).max() > 1e-3
    scorer = F.model_scorer(model, tok, task, memo=False)
    got = F.soft_erasure(scorer, texts[:2], [np.arange(len(v), dtype=float) for v in variants[:2]], n_samples=2)
    assert got.soft_comprehensiveness.between(0, 1).all() and got.soft_sufficiency.between(0, 1).all()
