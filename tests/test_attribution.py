"""Tests of toolkit.attribution.

Independent references: inseq itself for the fast path; plain autograd on one unpadded sequence
(saliency), attention weights read from ``output_attentions`` (attention), one forward per
replaced token (occlusion), captum's quadrature tables and exact polynomial integrals (IG rule),
the structurally pruned copy of a model (attribution inside ``drop_attention``).

Tolerances: the two backends compute the same float32 sums in a different order and batch
layout; observed relative differences are <= 5e-6 of the example's largest word score, so
``rtol=1e-4`` of that scale. The tiny random models give probabilities near 1/vocab and hence
scores near 1e-6, which is why the tests compare relative to the largest score.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from tiny import tiny_config, tiny_tokenizer

from toolkit import attribution as A
from toolkit.attribution.fast import _pack_rows, _shared_prefix
from toolkit.attribution.inseq_backend import _CACHE_ATTR, _shim_ipython_display
from toolkit.attribution.prepare import prepare_items
from toolkit.attribution.results import words_from_tokens
from toolkit.data.task import Example, Task
from toolkit.data.datasets import dataset_from_records, get_task
from toolkit.pruning.attention import drop_attention, prune_attention
from toolkit.models.scoring import label_probs
from toolkit.data.prompts import render_prompt

SMOLLM2_VOCAB = 49152
EXAMPLES = [
    Example("a", "A great movie, truly.", 1),
    Example("b", "Awful.", 0),
    Example("c", "A plot  thin but the acting <b>superb</b>", 1),  # starts like "a": the shared prefix must stop before it
]


def rel_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> bool:
    scale = max(float(np.abs(b).max()), 1e-30)
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= rtol * scale


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and other test processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer):
    """The real SmolLM2 tokenizer (tests/conftest.py): a test using it is a `model` test."""
    return smollm2_tokenizer


def smol_tiny(layers: int = 3, seed: int = 0) -> torch.nn.Module:
    """A tiny random Llama over SmolLM2's vocabulary, so the real tokenizer can drive it."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=SMOLLM2_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def model():
    return smol_tiny()


@pytest.fixture(scope="module")
def task():
    """Chat-template prompts: the longest template, the most tokens that must not be ranked."""
    return dataclasses.replace(get_task("uci_imdb"), use_chat_template=True)


def no_hooks_left(model: torch.nn.Module) -> bool:
    """No hook and no patched forward, except transformers' own permanent output-capturing hooks."""
    def ours(hooks: dict) -> list:
        return [h for h in hooks.values() if getattr(h, "__name__", "") != "output_capturing_hook"]

    return all(
        not ours(m._forward_hooks) and not ours(m._forward_pre_hooks) and not m._backward_hooks
        and "forward" not in m.__dict__
        for m in model.modules()
    )


# ----------------------------------------------------------------------------- words and tokens
def test_split_words_spans_and_agreement_with_faithfulness():
    from toolkit.metrics.faithfulness import split_words as words_only

    text = "  A great\tmovie,\n truly.  日本 "
    got = A.split_words(text)
    assert got == [("A", 2, 3), ("great", 4, 9), ("movie,", 10, 16), ("truly.", 18, 24), ("日本", 26, 28)]
    assert all(text[s:e] == w for w, s, e in got)
    assert [w for w, _, _ in got] == words_only(text)
    assert A.split_words(" \n ") == []


@pytest.mark.parametrize("chat", [True, False])
def test_tokens_map_to_example_words_only(tok, task, model, chat):
    text = "positive review: the plot  was thin, negative?"
    t = dataclasses.replace(task, use_chat_template=chat)
    (item,) = prepare_items(model, tok, t, [Example("x", text, 0)], batch_size=4, progress=False)
    prompt = render_prompt(t, tok, text)
    assert item.encoded.prompt == prompt and item.encoded.words == tuple(text.split())
    ids = tok(prompt.text)["input_ids"]  # SmolLM2 adds no special token, and the chat template writes none twice
    assert list(item.ids) == ids
    # Every word gets exactly the tokens that spell it (after the leading space is stripped).
    for w, word in enumerate(item.encoded.words):
        pieces = [tok.decode([ids[i]]) for i in np.flatnonzero(item.token_word == w)]
        assert "".join(pieces).strip() == word
    # Nothing outside the example text is ranked (not the instruction's "positive"/"negative"), and
    # nothing inside is missed: the unranked tokens before/after spell the prompt around the text.
    ranked = np.flatnonzero(item.token_word >= 0)
    start, end = prompt.span
    assert tok.decode(ids[: ranked[0]]).rstrip() == prompt.text[:start].rstrip()
    assert tok.decode(ids[ranked[-1] + 1 :]) == prompt.text[end:]
    between = [i for i in range(ranked[0], ranked[-1]) if item.token_word[i] < 0]
    assert all(not tok.decode([ids[i]]).strip() for i in between)  # only the "  " whitespace token
    assert "positive" in prompt.text[:start] and "negative" in prompt.text[:start]


def test_demonstrations_are_not_ranked(tok, task, model):
    t = dataclasses.replace(task, n_shot=2)
    (item,) = prepare_items(model, tok, t, [Example("x", "a fine film", 1)], batch_size=4, progress=False)
    assert item.encoded.prompt.text.count("Review:") == 3  # two demonstrations + the example
    assert sorted(set(item.token_word[item.token_word >= 0])) == [0, 1, 2]
    ranked = np.flatnonzero(item.token_word >= 0)
    assert ranked.size == 3  # "Ġa", "Ġfine", "Ġfilm"
    prompt = item.encoded.prompt
    assert tok.decode(list(item.ids[: ranked[0]])).rstrip() == prompt.text[: prompt.span[0]].rstrip()


# ----------------------------------------------------------------------------- fast path vs inseq
@pytest.mark.parametrize(
    "method, kwargs, chat",
    [
        ("saliency", {}, True),
        ("saliency", {}, False),
        ("input_x_gradient", {}, True),
        ("integrated_gradients", {"n_steps": 6}, True),
        ("input_x_gradient_signed", {}, True),
        ("integrated_gradients_signed", {"n_steps": 6}, False),
    ],
)
def test_fast_equals_inseq(model, tok, task, method, kwargs, chat):
    task = dataclasses.replace(task, use_chat_template=chat)
    slow = A.attribute(model, tok, task, EXAMPLES, method=method, **kwargs)
    fast = A.attribute(model, tok, task, EXAMPLES, method=method, backend="fast", batch_size=2, **kwargs)
    for s, f, ex in zip(slow, fast, EXAMPLES):
        assert (s.example_id, s.words, s.spans, s.label) == (f.example_id, f.words, f.spans, f.label)
        assert s.example_id == ex.id and s.words == tuple(ex.text.split())
        if A.is_signed(method):  # inseq's raw per-dimension attributions summed: the same sign as ours
            assert (s.scores != 0).all() and rel_close(f.scores, s.scores), (s.scores, f.scores)
        else:
            assert (s.scores > 0).all() and rel_close(f.scores, s.scores), (s.scores, f.scores)
        assert (s.backend, f.backend, s.method) == ("inseq", "fast", method)


def test_saliency_equals_plain_autograd(model, tok, task):
    """Independent reference: d softmax(logits)[t] / d embeddings on the unpadded prompt, L2 norm, word sums."""
    ex = EXAMPLES[0]
    (attr,) = A.attribute(model, tok, task, [ex], method="saliency", backend="fast")
    label = int(label_probs(model, tok, task, [ex.text]).argmax())
    assert attr.label == label and attr.label_name == task.label_names[label]
    prompt = render_prompt(task, tok, ex.text)
    ids = torch.tensor([tok(prompt.text, add_special_tokens=False)["input_ids"]])
    assert task.use_chat_template  # the answer follows "<|im_start|>assistant\n": no leading space
    target = tok.encode(task.verbalizers[label], add_special_tokens=False)[0]
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    p = torch.softmax(model(inputs_embeds=emb).logits[0, -1], -1)[target]
    (grad,) = torch.autograd.grad(p, emb)
    token = grad[0].norm(dim=-1).numpy()
    offsets = tok(prompt.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    start = prompt.span[0]
    expected = np.zeros(len(attr.words))
    for i, (s, e) in enumerate(offsets):
        c = s + len(prompt.text[s:e]) - len(prompt.text[s:e].lstrip())
        for w, (ws, we) in enumerate(attr.spans):
            if start + ws <= c < start + we:
                expected[w] += token[i]
    assert rel_close(attr.scores, expected, 1e-5)


def _word_probability(model, tok, task, ex, label, scale_word=None, factor=1.0):
    """p(label's first verbalizer token) at the answer position, with word `scale_word`'s token
    embeddings multiplied by `factor` (plain autograd-free forward on the unpadded prompt)."""
    prompt = render_prompt(task, tok, ex.text)
    enc = tok(prompt.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    target = tok.encode(task.verbalizers[label], add_special_tokens=False)[0]
    emb = model.get_input_embeddings()(ids).detach().clone()
    if scale_word is not None:
        ws, we = [(s, e) for _, s, e in A.split_words(ex.text)][scale_word]
        for i, (s, e) in enumerate(enc["offset_mapping"]):
            c = s + len(prompt.text[s:e]) - len(prompt.text[s:e].lstrip())
            if prompt.span[0] + ws <= c < prompt.span[0] + we:
                emb[0, i] *= factor
    with torch.no_grad():
        return float(torch.softmax(model(inputs_embeds=emb).logits[0, -1].double(), -1)[target])


def test_signed_input_x_gradient_is_the_first_order_change_of_the_predicted_label(model, tok, task):
    """Sign convention, checked by finite differences: a word's signed input x gradient is
    d p(y^) / d s at s = 1 when the word's embeddings are scaled by s, so a positive score means
    shrinking the word lowers p(y^) (it pushes towards the prediction), a negative one raises it."""
    ex = EXAMPLES[2]  # its word "but" pushes against the prediction on this model, the others towards it
    (attr,) = A.attribute(model, tok, task, [ex], method="input_x_gradient_signed", backend="fast")
    eps = 1e-3
    fd = np.array([
        (_word_probability(model, tok, task, ex, attr.label, w, 1 + eps)
         - _word_probability(model, tok, task, ex, attr.label, w, 1 - eps)) / (2 * eps)
        for w in range(len(attr.words))
    ])
    # central difference: error O(eps^2) ~ 1e-6 relative; float32 forwards add ~1e-7 / eps of p
    # (p ~ 1/vocab here), observed max relative difference 3e-3 of the largest score
    assert np.sign(fd).tolist() == np.sign(attr.scores).tolist()
    assert rel_close(attr.scores, fd, 2e-2), (attr.scores, fd)
    assert (attr.scores < 0).any() and (attr.scores > 0).any()  # both directions occur on this example
    assert A.is_signed("input_x_gradient_signed") and not A.is_signed("saliency")


ARCHS = ["LlamaForCausalLM", "Qwen3ForCausalLM", "Gemma3ForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM", "OPTForCausalLM"]


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_equals_inseq_across_architectures(arch):
    """The prefix KV cache, right padding and position ids hold for every adapter family (vocab-128 models)."""
    torch.manual_seed(0)
    config = tiny_config(arch)
    if arch == "Gemma3ForCausalLM":
        config.sliding_window = 8  # sliding layers only; 8 lets the answer position see part of the text
    m = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    t = tiny_tokenizer(chat=True)
    task = Task("uci_imdb", "is the sentiment of this review positive or negative ?", ("negative", "positive"),
                ("negative", "positive"), input_name="review")
    exs = [Example("1", "i liked the movie , it was great", 1), Example("2", "awful food", 0),
           Example("3", "not very good service and the food was bad", 0)]
    for layers in ([], [1]):
        with drop_attention(m, layers):
            slow = A.attribute(m, t, task, exs, method="saliency")
            fast = A.attribute(m, t, task, exs, method="saliency", backend="fast", batch_size=2)
        for s, f in zip(slow, fast):
            assert s.scores.max() > 0 and rel_close(f.scores, s.scores)


def test_shared_prefix_stops_before_the_first_ranked_token(model, tok, task):
    items = prepare_items(model, tok, task, [EXAMPLES[0], EXAMPLES[2]], batch_size=4, progress=False)
    first = [int(np.flatnonzero(it.token_word >= 0)[0]) for it in items]
    assert items[0].ids[first[0]] == items[1].ids[first[1]]  # both texts start with the token "ĠA"
    assert _shared_prefix(items) == first[0] == first[1]
    short = prepare_items(model, tok, task, [Example("s", "x", 0)], batch_size=4, progress=False)
    assert _shared_prefix(short) == int(np.flatnonzero(short[0].token_word >= 0)[0])


def test_pack_rows_groups_similar_lengths_within_the_budget():
    groups = _pack_rows([5, 30, 6, 29, 7, 100], budget=60)
    assert groups == [[5], [1, 3], [4, 2, 0]]  # 100 alone (over budget), 2 x 30, 3 x 7
    assert sorted(r for g in groups for r in g) == list(range(6))
    assert _pack_rows([4] * 10, budget=16) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_fast_ig_rules_converge_to_the_same_integral(model, tok, task):
    gauss = A.attribute(model, tok, task, EXAMPLES[:1], method="integrated_gradients", backend="fast", n_steps=12)
    middle = A.attribute(model, tok, task, EXAMPLES[:1], method="integrated_gradients", backend="fast",
                         n_steps=48, rule="riemann_middle")
    left = A.attribute(model, tok, task, EXAMPLES[:1], method="integrated_gradients", backend="fast",
                       n_steps=4, rule="riemann_left")
    assert rel_close(middle[0].scores, gauss[0].scores, 1e-3)  # midpoint error ~ 1/n^2
    assert not rel_close(left[0].scores, gauss[0].scores, 1e-3)  # the rule is really used


def test_ig_quadrature_matches_captum_and_integrates_polynomials():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for rule in A.IG_RULES:
        step_sizes, alphas = approximation_parameters(rule)
        a, w = A.ig_quadrature(7, rule)
        np.testing.assert_allclose(a, alphas(7), atol=1e-7)
        np.testing.assert_allclose(w, step_sizes(7), atol=1e-12)
    a, w = A.ig_quadrature(4, "gausslegendre")  # exact up to degree 2n - 1 = 7
    assert np.isclose((w * a**7).sum(), 1 / 8) and np.isclose(w.sum(), 1.0)
    a, w = A.ig_quadrature(1000, "riemann_middle")
    assert np.isclose((w * 3 * a**2).sum(), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown integration rule 'simpson'"):
        A.ig_quadrature(5, "simpson")
    with pytest.raises(ValueError, match="n_steps must be an integer >= 2"):
        A.ig_quadrature(1, "riemann_left")


# ----------------------------------------------------------------------------- other inseq methods
def test_attention_is_mean_attention_from_the_answer_position(model, tok, task):
    ex = EXAMPLES[0]
    prompt = render_prompt(task, tok, ex.text)
    enc = tok(prompt.text, add_special_tokens=False, return_tensors="pt")
    for layers in ([], [1]):
        with drop_attention(model, layers):
            (attr,) = A.attribute(model, tok, task, [ex], method="attention")
            with torch.no_grad():
                att = model(**enc, output_attentions=True).attentions  # kept layers only
        assert len(att) == 3 - len(layers)
        token = torch.stack(att)[:, 0, :, -1, :].mean(dim=(0, 1)).double().numpy()
        (item,) = prepare_items(model, tok, task, [ex], batch_size=4, progress=False)
        assert rel_close(attr.scores, words_from_tokens(token, item.token_word, len(attr.words)), 1e-5)


def test_occlusion_equals_one_forward_per_replaced_token(model, tok, task):
    """|p(t | x) - p(t | x with token i's embedding replaced by the unk embedding)|, summed per word."""
    ex, plain = EXAMPLES[1], dataclasses.replace(task, use_chat_template=False)  # shorter prompt
    (attr,) = A.attribute(model, tok, plain, [ex], method="occlusion")
    (item,) = prepare_items(model, tok, plain, [ex], batch_size=4, progress=False)
    ids = torch.tensor([item.ids])
    embed = model.get_input_embeddings()
    with torch.no_grad():
        emb = embed(ids)
        base = embed(torch.tensor([tok.unk_token_id]))[0]

        def prob(e):
            return torch.softmax(model(inputs_embeds=e).logits[0, -1], -1)[item.target_id].item()

        full = prob(emb)
        token = np.zeros(len(item.ids))
        for i in np.flatnonzero(item.token_word >= 0):
            e = emb.clone()
            e[0, i] = base
            token[i] = abs(full - prob(e))
    # Occlusion differences (~1e-7) of float32 probabilities (~2e-5) cancel: observed relative error 2e-4.
    assert attr.scores.max() > 0 and rel_close(attr.scores, words_from_tokens(token, item.token_word, 1), 1e-3)


def test_lime_is_seeded(model, tok, task):
    ex = EXAMPLES[:1]
    a = A.attribute(model, tok, task, ex, method="lime", n_samples=8)[0].scores
    b = A.attribute(model, tok, task, ex, method="lime", n_samples=8)[0].scores
    c = A.attribute(model, tok, task, ex, method="lime", n_samples=8, seed=1)[0].scores
    assert np.array_equal(a, b) and not np.array_equal(a, c) and (a >= 0).all()


def test_value_zeroing_runs_on_transformers_5_and_skips_dropped_layers(model, tok, task):
    plain = dataclasses.replace(task, use_chat_template=False)  # shorter prompt: one forward per token
    ex = EXAMPLES[1:2]
    full = A.attribute(model, tok, plain, ex, method="value_zeroing")[0].scores
    with drop_attention(model, [1]):
        dropped = A.attribute(model, tok, plain, ex, method="value_zeroing")[0].scores
    pruned = A.attribute(prune_attention(copy.deepcopy(model), [1]), tok, plain, ex, method="value_zeroing")[0].scores
    assert np.isfinite(full).all() and (full > 0).all() and not np.allclose(full, dropped)
    np.testing.assert_allclose(dropped, pruned, rtol=1e-6)
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- pruning
@pytest.mark.parametrize("backend", ["inseq", "fast"])
def test_inside_drop_attention_matches_the_pruned_model(model, tok, task, backend):
    kwargs = {"method": "integrated_gradients", "n_steps": 4, "backend": backend}
    exs = EXAMPLES[:2]
    wrapper = A.inseq_model(model, tok, "integrated_gradients")
    before = A.attribute(model, tok, task, exs, **kwargs)
    with drop_attention(model, [0, 2]):
        inside = A.attribute(model, tok, task, exs, **kwargs)
    after = A.attribute(model, tok, task, exs, **kwargs)
    pruned = A.attribute(prune_attention(copy.deepcopy(model), [0, 2]), tok, task, exs, **kwargs)
    assert A.inseq_model(model, tok, "integrated_gradients") is wrapper  # the cached wrapper saw the drop
    for b, i, a, p in zip(before, inside, after, pruned):
        assert np.array_equal(a.scores, b.scores)
        assert not rel_close(i.scores, b.scores, 1e-2)
        assert rel_close(i.scores, p.scores, 1e-5)
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- API, errors, hygiene
def test_inputs_outputs_and_frame(model, tok, task):
    data = dataset_from_records("uci_imdb", [{"id": e.id, "text": e.text, "label": e.label} for e in EXAMPLES], task)
    attrs = A.attribute(model, tok, task, data, method="saliency", backend="fast", batch_size=1)
    assert [a.example_id for a in attrs] == [e.id for e in EXAMPLES]  # input order despite length sorting
    probs = label_probs(model, tok, task, [e.text for e in EXAMPLES])
    assert [a.label for a in attrs] == list(probs.argmax(1))
    a = attrs[2]
    assert a.words[-1] == "<b>superb</b>" and all(EXAMPLES[2].text[s:e] == w for w, (s, e) in zip(a.words, a.spans))
    with pytest.raises(ValueError):
        a.scores[0] = 1.0  # read-only
    df = A.attributions_frame(attrs)
    assert list(df.columns) == ["example_id", "method", "backend", "label", "label_name", "probability",
                                "word_index", "word", "start", "end", "score"]
    np.testing.assert_allclose([x.probability for x in attrs], probs.max(1), rtol=0, atol=1e-12)
    assert len(df) == sum(len(x.words) for x in attrs)
    pd.testing.assert_frame_equal(df[df.example_id == "c"].reset_index(drop=True), a.to_frame())
    np.testing.assert_array_equal(df.score.to_numpy(), np.concatenate([x.scores for x in attrs]))
    assert A.attributions_frame([]).empty


def test_errors_name_the_bad_value(model, tok, task):
    with pytest.raises(ValueError, match=r"unknown method 'salience'; expected one of \['attention', "):
        A.attribute(model, tok, task, EXAMPLES, method="salience")
    with pytest.raises(ValueError, match=r"unknown backend 'captum'; expected one of \['inseq', 'fast'\]"):
        A.attribute(model, tok, task, EXAMPLES, backend="captum")
    with pytest.raises(ValueError, match=r"method 'attention' has no fast backend.*'integrated_gradients'"):
        A.attribute(model, tok, task, EXAMPLES, method="attention", backend="fast")
    with pytest.raises(ValueError, match=r"takes no argument 'n_step'; it accepts \['internal_batch_size', 'n_steps'\]"):
        A.attribute(model, tok, task, EXAMPLES, method="integrated_gradients", n_step=5)
    with pytest.raises(ValueError, match=r"backend 'fast'\) takes no argument 'internal_batch_size'; it accepts \['n_steps', 'rule'\]"):
        A.attribute(model, tok, task, EXAMPLES, method="integrated_gradients", backend="fast", internal_batch_size=4)
    with pytest.raises(ValueError, match=r"takes no argument 'abs'; it accepts \[\]"):
        A.attribute(model, tok, task, EXAMPLES, backend="fast", abs=True)
    with pytest.raises(ValueError, match=r"example 'empty' has no words"):
        A.attribute(model, tok, task, [EXAMPLES[0], Example("empty", "  \n", 0)])
    with pytest.raises(ValueError, match="the example list is empty"):
        A.attribute(model, tok, task, [])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        A.attribute(model, tok, task, EXAMPLES, batch_size=0)
    with pytest.raises(ValueError, match="single Example"):
        A.attribute(model, tok, task, EXAMPLES[0])
    with pytest.raises(ValueError, match="unknown integration rule 'gauss'"):
        A.attribute(model, tok, task, EXAMPLES, method="integrated_gradients", backend="fast", rule="gauss")
    shared = dataclasses.replace(task, verbalizers=("very bad", "very good"))
    with pytest.raises(ValueError, match="share a first token"):
        A.attribute(model, tok, shared, EXAMPLES)
    sdpa = copy.deepcopy(model)
    sdpa.config._attn_implementation = "sdpa"
    with pytest.raises(ValueError, match="needs eager attention, the model uses 'sdpa'"):
        A.attribute(sdpa, tok, task, EXAMPLES)
    with pytest.raises(ValueError, match="already registered"):
        A.register_attribution_method("saliency", A.ATTRIBUTION_METHODS.get("saliency"))


def test_a_failing_inseq_call_leaves_model_and_wrapper_clean(model, tok, task):
    wrapper = A.inseq_model(model, tok, "value_zeroing")
    pad = wrapper.pad_token
    with pytest.raises(Exception):
        A.attribute(model, tok, task, EXAMPLES[:1], method="value_zeroing", similarity_metric="manhattan")
    assert wrapper.pad_token == pad and no_hooks_left(model)
    with pytest.raises(Exception):
        A.attribute(model, tok, task, EXAMPLES[:1], method="integrated_gradients", n_steps=0, backend="fast")
    assert no_hooks_left(model)


def test_wrapper_cache_is_per_model_and_not_copied(model, tok):
    w = A.inseq_model(model, tok, "saliency")
    assert A.inseq_model(model, tok, "saliency") is w and A.inseq_model(model, tok, "attention") is not w
    clone = copy.deepcopy(model)
    assert not clone.__dict__.get(_CACHE_ATTR) and A.inseq_model(clone, tok, "saliency") is not w
    with pytest.raises(ValueError, match="unknown inseq method 'nope'"):
        A.inseq_model(model, tok, "nope")


def test_list_methods():
    assert {"saliency", "input_x_gradient", "integrated_gradients", "attention", "occlusion", "lime",
            "value_zeroing"} <= set(A.list_attribution_methods())
    assert A.list_attribution_methods("fast") == ["input_x_gradient", "input_x_gradient_signed", "integrated_gradients",
                                                  "integrated_gradients_signed", "saliency"]
    signed = {n for n, m in A.ATTRIBUTION_METHODS.items() if m.signed}
    assert signed == {"input_x_gradient_signed", "integrated_gradients_signed"}
    with pytest.raises(ValueError, match="reduce 'l2' gives scores >= 0"):
        A.register_attribution_method("x", A.AttributionMethod("saliency", "l2", signed=True))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        A.is_signed("nope")
    import inseq

    assert {m.inseq_name for m in A.ATTRIBUTION_METHODS.values()} <= set(inseq.list_feature_attribution_methods())


# ----------------------------------------------------------------------------- display
def make_attr(words, scores, example_id="ex<1>", method="saliency"):
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return A.Attribution(example_id, tuple(words), tuple(spans), np.array(scores), 1, "posi&tive", method, "fast")


def test_html_heat_view_escapes_and_shows_every_word():
    from IPython.display import HTML

    attrs = [make_attr(["<script>", "a&b", "plain"], [2.0, 1.0, 0.0]),
             make_attr(["neg", "x"], [-1.0, 0.5], "e2", "input_x_gradient_signed")]
    out = A.attributions_html(attrs)
    for word in ["&lt;script&gt;", "a&amp;b", "plain", "neg", "posi&amp;tive", "ex&lt;1&gt;", "saliency (fast)"]:
        assert word in out
    assert "<script>" not in out and out.count("<span style=\"background-color: rgba(") == 5
    # saliency (unsigned): one amber scale, max 0.75 at the largest score, 0 at zero
    assert "rgba(217, 119, 6, 0.750)" in out and "rgba(217, 119, 6, 0.000)" in out
    assert "rgba(220, 38, 38, 0.375)" in out  # signed +0.5 of max |1.0|: red, half depth
    assert "rgba(37, 99, 235, 0.750)" in out  # signed -1.0: blue, full depth
    assert out.count("tk-attribution-legend") == 2  # one legend per kind of score shown
    shown = A.show_attributions(attrs)
    assert isinstance(shown, HTML) and shown.data == out
    assert "tk-attribution-legend" not in A.attributions_html(attrs, legend=False)
    with pytest.raises(ValueError, match="2 words but scores of shape"):
        make_attr(["a", "b"], [1.0])


def test_legend_text_per_kind_of_method():
    """Unsigned methods: one scale, "no direction"; signed: which colour pushes towards the
    predicted label and which against. Chosen from the registry's `signed` field."""
    unsigned = A.attributions_html([make_attr(["good", "film"], [0.9, 0.1])])
    assert "larger = more important to the prediction, no direction" in unsigned
    assert "pushes towards" not in unsigned and 'data-signed="false"' in unsigned
    assert "rgba(37, 99, 235" not in unsigned  # no second colour for a magnitude
    signed = A.attributions_html([make_attr(["good", "film"], [0.9, 0.1], method="integrated_gradients_signed")])
    assert "red</span> = pushes towards the predicted label" in signed
    assert "blue</span> = pushes against it" in signed and "no direction" not in signed
    # an unregistered method falls back on its scores: any negative score makes it signed
    assert A.scores_are_signed(make_attr(["a"], [-0.1], method="custom"))
    assert not A.scores_are_signed(make_attr(["a"], [0.1], method="custom"))
    for name, spec in A.ATTRIBUTION_METHODS.items():
        legend = A.attributions_html([make_attr(["a"], [1.0], method=name)])
        assert ("pushes towards" in legend) == spec.signed and ("no direction" in legend) != spec.signed


def test_inseq_show_works_under_ipython_9(monkeypatch, model, tok, task):
    import IPython.core.display as core_display
    import inseq.data.viz

    monkeypatch.delattr(core_display, "display", raising=False)  # as in IPython 9
    with pytest.raises(ImportError):
        from IPython.core.display import display  # noqa: F401
    _shim_ipython_display()
    from IPython.core.display import display  # noqa: F401, F811 - the import inseq's show() does

    prompt = render_prompt(task, tok, EXAMPLES[1].text).text
    out = A.inseq_model(model, tok, "saliency").attribute(prompt, prompt + "positive", show_progress=False)
    shown = []
    monkeypatch.setattr(core_display, "display", lambda *args, **kwargs: shown.append(args))
    monkeypatch.setattr(inseq.data.viz, "isnotebook", lambda: True)
    html_out = out.show(display=True, return_html=True)
    assert len(shown) == 1 and type(shown[0][0]).__name__ == "HTML"
    assert isinstance(html_out, str) and "Aw" in html_out and "positive" in html_out


# ----------------------------------------------------------------------------- the real model
@pytest.mark.model
def test_smollm2_fast_equals_inseq_and_excludes_the_template(smollm2):
    real, tokenizer = smollm2
    task = get_task("uci_imdb")
    exs = [Example("s1", "The acting was wooden and the plot dull.", 0), Example("s2", "I loved it!", 1)]
    results = {}
    for method, kwargs in [("saliency", {}), ("integrated_gradients", {"n_steps": 5})]:
        slow = A.attribute(real, tokenizer, task, exs, method=method, **kwargs)
        fast = A.attribute(real, tokenizer, task, exs, method=method, backend="fast", **kwargs)
        for s, f, ex in zip(slow, fast, exs):
            assert s.words == tuple(ex.text.split()) and len(s.scores) == len(s.words)
            assert all(ex.text[a:b] == w for w, (a, b) in zip(s.words, s.spans))
            np.testing.assert_allclose(f.scores, s.scores, atol=1e-4, rtol=1e-4)
            assert (s.scores > 0).all() and s.label == f.label
        results[method] = fast
    with drop_attention(real, [3, 7]):
        dropped = A.attribute(real, tokenizer, task, exs, method="saliency", backend="fast")
    assert not np.allclose(dropped[0].scores, results["saliency"][0].scores, rtol=1e-3)
