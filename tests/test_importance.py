"""Attention importance against a brute-force, hook-free computation."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from tiny import tiny_model, tiny_tokenizer
from toolkit import attention_importance, choose_layers, drop_attention, select_layers
from toolkit.models.adapters import decoder_layers

TEXTS = ["the movie was very good .", "i hated the food", "service was not bad and the plot great !"]


def brute_force(model, tok, texts, layer):
    """Per text, unpadded: X from output_hidden_states; Y = the layer's output with its MLP zeroed."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        decoder_layers(ref)[layer].mlp.down_proj.weight.zero_()
    cos_attn, cos_block, ang, count = 0.0, 0.0, 0.0, 0
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
            hs_ref = ref(ids, output_hidden_states=True).hidden_states
        x, out, y = hs[layer][0], hs[layer + 1][0], hs_ref[layer + 1][0]
        c = torch.nn.functional.cosine_similarity(x, y, dim=-1)
        cos_attn += c.sum().item()
        ang += torch.arccos(c.clamp(-1, 1)).sum().item()
        cos_block += torch.nn.functional.cosine_similarity(x, out, dim=-1).sum().item()
        count += ids.shape[1]
    return {"cosine": 1 - cos_attn / count, "angular": ang / count / np.pi, "block_influence": 1 - cos_block / count}


@pytest.mark.parametrize("metric", ["cosine", "angular", "block_influence"])
def test_similarity_metrics_match_brute_force(metric):
    model, tok = tiny_model(), tiny_tokenizer()
    scores = attention_importance(model, tok, TEXTS, metric=metric, batch_size=2)
    assert isinstance(scores, pd.Series) and scores.name == metric and len(scores) == 4
    # hidden_states[-1] is after the final norm, so the last layer is checked through the others.
    for layer in range(3):
        expected = brute_force(model, tok, TEXTS, layer)[metric]
        assert scores[layer] == pytest.approx(expected, abs=1e-5)  # fp32 sums; observed ~1e-7


def test_padding_does_not_change_scores():
    model, tok = tiny_model(), tiny_tokenizer()
    one_by_one = attention_importance(model, tok, TEXTS, batch_size=1)
    batched = attention_importance(model, tok, TEXTS, batch_size=3)
    np.testing.assert_allclose(batched.to_numpy(), one_by_one.to_numpy(), atol=1e-6)


def test_hooks_are_removed_even_after_an_error(monkeypatch):
    model, tok = tiny_model(), tiny_tokenizer()

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(decoder_layers(model)[2].mlp, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        attention_importance(model, tok, TEXTS)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_loss_delta_matches_zeroed_projection():
    model, tok = tiny_model(), tiny_tokenizer()
    scores = attention_importance(model, tok, TEXTS, metric="loss_delta")

    def lm_loss(m):
        total, n = 0.0, 0
        for text in TEXTS:
            ids = tok(text, return_tensors="pt").input_ids
            with torch.no_grad():
                out = m(ids, labels=ids)
            total += out.loss.item() * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
        return total / n

    base = lm_loss(model)
    for layer in (0, 3):
        ref = copy.deepcopy(model)
        with torch.no_grad():
            decoder_layers(ref)[layer].self_attn.o_proj.weight.zero_()
        assert scores[layer] == pytest.approx(lm_loss(ref) - base, abs=1e-5)


def test_random_is_seeded():
    model, tok = tiny_model(), tiny_tokenizer()
    a = attention_importance(model, tok, TEXTS, metric="random", seed=1)
    b = attention_importance(model, tok, TEXTS, metric="random", seed=1)
    c = attention_importance(model, tok, TEXTS, metric="random", seed=2)
    assert a.equals(b) and not a.equals(c)


def test_select_layers_takes_the_lowest():
    s = pd.Series([0.5, 0.1, np.nan, 0.3, 0.1])
    assert select_layers(s, 0) == []
    assert select_layers(s, 2) == [1, 4]
    assert select_layers(s, 3) == [1, 3, 4]
    with pytest.raises(ValueError, match="k=5 is larger than the 4 layers"):
        select_layers(s, 5)
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        select_layers(s, -1)


def test_iterative_selection_recomputes_on_the_pruned_model():
    model, tok = tiny_model(), tiny_tokenizer()
    one_shot_scores = attention_importance(model, tok, TEXTS)
    chosen = choose_layers(model, tok, TEXTS, 2, strategy="iterative")
    first = int(one_shot_scores.idxmin())
    assert first in chosen
    with drop_attention(model, [first]):
        again = attention_importance(model, tok, TEXTS, exclude=[first])
    assert sorted([first, int(again.idxmin())]) == chosen
    assert np.isnan(again[first])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(metric="cosin"), "unknown importance metric 'cosin'.*'cosine'"),
        (dict(texts=[]), "texts is empty"),
        (dict(texts="one string"), "single string"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_input(kwargs, match):
    model, tok = tiny_model(), tiny_tokenizer()
    texts = kwargs.pop("texts", TEXTS)
    with pytest.raises(ValueError, match=match):
        attention_importance(model, tok, texts, **kwargs)


def test_choose_layers_bad_input():
    model, tok = tiny_model(), tiny_tokenizer()
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 4\], got 5"):
        choose_layers(model, tok, TEXTS, 5)
    with pytest.raises(ValueError, match="unknown selection strategy 'greedy'"):
        choose_layers(model, tok, TEXTS, 1, strategy="greedy")


def test_array_level_scores_by_hand():
    """cos = 0, -1, 1 on three tokens: importance 1 - 0 = 1, angles (1/2 + 1 + 0) / 3 = 1/2."""
    from toolkit.pruning.importance import angular_distance, cosine_importance
    from toolkit._core.validation import InputError

    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])
    assert cosine_importance(x, y) == pytest.approx(1.0, abs=1e-7)
    assert angular_distance(x, y) == pytest.approx(0.5, abs=1e-7)
    assert cosine_importance(x.numpy(), 3 * x.numpy()) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(InputError, match="expected the same shape"):
        cosine_importance(x, y[:2])


def test_array_level_scores_equal_the_hooked_scores_on_one_text():
    """The public array functions and attention_importance's hooks compute the same number (one home)."""
    from toolkit.pruning.importance import angular_distance, cosine_importance

    model, tok = tiny_model(), tiny_tokenizer()
    text, layer = TEXTS[2], 1
    ref = copy.deepcopy(model)
    with torch.no_grad():
        decoder_layers(ref)[layer].mlp.down_proj.weight.zero_()  # the layer's output is then X + Attn(LN(X))
        ids = tok(text, return_tensors="pt").input_ids
        x = model(ids, output_hidden_states=True).hidden_states[layer][0]
        y = ref(ids, output_hidden_states=True).hidden_states[layer + 1][0]
    for metric, fn, atol in (("cosine", cosine_importance, 1e-6), ("angular", angular_distance, 5e-4)):
        hooked = attention_importance(model, tok, [text], metric=metric)[layer]
        assert fn(x, y) == pytest.approx(hooked, abs=atol), metric  # fp32; arccos near 1 amplifies rounding
