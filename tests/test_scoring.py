"""Label scoring: prompts, verbalizers, batching, against unbatched hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tiny import tiny_model, tiny_tokenizer
from toolkit import Task, predict
from toolkit.data.task import Example
from toolkit.models.scoring import label_probs
from toolkit.data.prompts import render_prompt, verbalizer_ids
from toolkit.models.scoring import encode_prompts

EXAMPLES = [
    Example("a", "the movie was very good .", 1),
    Example("b", "i hated the food", 0),
    Example("c", "service was not bad and the plot great !", 1),
    Example("d", "awful", 0),
    Example("e", "the food was bad , the service was bad and the movie was awful .", 0),
]


@pytest.mark.parametrize("chat", [False, True])
def test_prompt_span_points_at_the_text(chat, tiny_task):
    tok = tiny_tokenizer(chat=chat)
    task = Task(**{**tiny_task.__dict__, "use_chat_template": "auto"})
    demos = [Example("x", "good movie", 1)]
    p = render_prompt(task, tok, "the food was bad", demos=demos)
    assert p.chat is chat
    assert p.text[p.span[0] : p.span[1]] == "the food was bad"
    assert p.text.count("good movie") == 1
    if chat:
        assert p.text.endswith("<|assistant|> ")


def reference_probs(model, tok, task, text):
    """Unbatched, unpadded: softmax over the verbalizer tokens' logits at the last position."""
    ids = tok(render_prompt(task, tok, text).text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    label_tok = [v[0] for v in verbalizer_ids(task, tok)]
    return torch.softmax(logits[label_tok], dim=-1).numpy()


def test_label_probs_match_hand_computation_and_batching(tiny_task):
    model, tok = tiny_model(), tiny_tokenizer()
    texts = [e.text for e in EXAMPLES]
    batched = label_probs(model, tok, tiny_task, texts, batch_size=4)
    single = np.stack([label_probs(model, tok, tiny_task, [t], batch_size=1)[0] for t in texts])
    expected = np.stack([reference_probs(model, tok, tiny_task, t) for t in texts])
    np.testing.assert_allclose(batched, expected, atol=1e-5)  # fp32; observed ~1e-7
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-12)


def test_predict_frame(tiny_task):
    model, tok = tiny_model(), tiny_tokenizer()
    df = predict(model, tok, EXAMPLES, task=tiny_task, batch_size=2, progress=False)
    assert list(df.columns) == ["id", "label", "pred", "p_negative", "p_positive", "label_mass", "confidence", "correct"]
    assert df.attrs["label_names"] == ("negative", "positive")
    probs = df[["p_negative", "p_positive"]].to_numpy()
    np.testing.assert_array_equal(df.pred, probs.argmax(1))
    np.testing.assert_allclose(df.confidence, probs.max(1))
    np.testing.assert_array_equal(df.correct, df.pred == df.label)
    # label_mass: the full-vocabulary probability of the two label tokens, recomputed by hand
    ids = tok(render_prompt(tiny_task, tok, EXAMPLES[0].text).text, return_tensors="pt").input_ids
    with torch.no_grad():
        p = torch.softmax(model(ids).logits[0, -1], -1)
    lt = [v[0] for v in verbalizer_ids(tiny_task, tok)]
    assert df.label_mass[0] == pytest.approx(p[lt].sum().item(), abs=1e-6)


def test_multi_token_verbalizers_use_summed_loglik(tiny_task):
    model, tok = tiny_model(), tiny_tokenizer()
    task = Task(**{**tiny_task.__dict__, "verbalizers": ("very bad", "very good")})
    ids = verbalizer_ids(task, tok)
    assert all(len(v) == 2 for v in ids)
    probs = label_probs(model, tok, task, [EXAMPLES[0].text, EXAMPLES[3].text], batch_size=2)
    # by hand: log p(very | prompt) + log p(bad|good | prompt + very), one text at a time
    for row, text in zip(probs, [EXAMPLES[0].text, EXAMPLES[3].text]):
        prompt = tok(render_prompt(task, tok, text).text, return_tensors="pt", add_special_tokens=False).input_ids
        ll = []
        for seq in ids:
            full = torch.cat([prompt, torch.tensor([seq])], dim=1)
            with torch.no_grad():
                logp = torch.log_softmax(model(full).logits[0], -1)
            n = prompt.shape[1]
            ll.append(logp[n - 1, seq[0]].item() + logp[n, seq[1]].item())
        expected = np.exp(ll) / np.exp(ll).sum()
        np.testing.assert_allclose(row, expected, atol=1e-5)


def test_encode_prompts_positions_start_at_first_real_token():
    tok = tiny_tokenizer()
    enc = encode_prompts(tok, [tok.encode("good"), tok.encode("the movie was good")])
    assert enc["input_ids"][0, 0].item() == tok.pad_token_id
    assert enc["position_ids"][0].tolist() == [0, 0, 0, 0]
    assert enc["position_ids"][1].tolist() == [0, 1, 2, 3]


def test_colliding_verbalizers_are_refused(tiny_task):
    tok = tiny_tokenizer()
    # both words are outside the tiny vocabulary, so both encode to <unk>
    task = Task(**{**tiny_task.__dict__, "verbalizers": ("meh", "nope")})
    with pytest.raises(ValueError, match="verbalizers 'meh' and 'nope' .* encode to the same tokens"):
        verbalizer_ids(task, tok)


def test_empty_inputs_are_refused(tiny_task):
    model, tok = tiny_model(), tiny_tokenizer()
    with pytest.raises(ValueError, match="example list is empty"):
        predict(model, tok, [], task=tiny_task)
    with pytest.raises(ValueError, match="texts is empty"):
        label_probs(model, tok, tiny_task, [])
    with pytest.raises(ValueError, match="task is required"):
        predict(model, tok, EXAMPLES)


@pytest.mark.model
def test_smollm2_batched_equals_single_and_beats_chance(smollm2):
    from toolkit import load_dataset

    model, tok = smollm2
    ds = load_dataset("uci_yelp", n=24, split="validation")
    batched = predict(model, tok, ds, batch_size=8, progress=False)
    single = predict(model, tok, ds.examples[:4], task=ds.task, batch_size=1, progress=False)
    cols = [f"p_{n}" for n in ds.task.label_names]
    np.testing.assert_allclose(batched[cols].to_numpy()[:4], single[cols].to_numpy(), atol=1e-5)
    assert batched.correct.mean() >= 0.6  # measured 0.85 on 48 validation sentences; chance is 0.5


# ---- batch invariance: the probabilities do not depend on the batch size ---------------------------
MIXED = [Example(f"m{i}", " ".join(("the food was good and the service was bad ." * 4).split()[: 1 + (7 * i) % 23]),
                 i % 2) for i in range(20)]  # 1 to 23 words: every batch of 4 or 16 pads


def _teacher_forced(model, tok, task, text):
    """Unbatched, unpadded: log p(each verbalizer's tokens | prompt), softmaxed over the labels."""
    prompt = tok(render_prompt(task, tok, text).text, add_special_tokens=False).input_ids
    scores = []
    for seq in verbalizer_ids(task, tok):
        ids = torch.tensor([prompt + seq])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        scores.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(seq)))
    return torch.softmax(torch.tensor(scores), dim=0).numpy()


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Gemma3ForCausalLM"])  # Gemma3: sliding window of 4 tokens
@pytest.mark.parametrize("verbalizers", [("negative", "positive"), ("negative review", "positive review")])
def test_probabilities_do_not_depend_on_the_batch_size(arch, verbalizers, tiny_task):
    """One-token verbalizers: shared-prefix cache + right padding; two-token: left padding with position ids."""
    model, tok = tiny_model(arch), tiny_tokenizer()
    task = Task(**{**tiny_task.__dict__, "verbalizers": verbalizers})
    frames = {bs: predict(model, tok, MIXED, task=task, batch_size=bs, progress=False) for bs in (1, 4, 16)}
    cols = ["p_negative", "p_positive"]
    expected = np.stack([_teacher_forced(model, tok, task, e.text) for e in MIXED])
    for bs, frame in frames.items():
        # fp32 forward passes; observed max 2.7e-7 against the unpadded reference, 2.4e-7 between batch sizes
        np.testing.assert_allclose(frame[cols].to_numpy(), expected, atol=1e-5, err_msg=f"batch size {bs}")
        np.testing.assert_allclose(frame[cols].to_numpy(), frames[1][cols].to_numpy(), atol=1e-5)
    assert np.ptp(expected[:, 1]) > 1e-3  # the examples are not all scored alike (a constant would pass)


def _mixed_length_yelp(n: int = 24):
    """``n`` uci_yelp test sentences evenly spread over the split's length order (1 to ~32 words)."""
    from toolkit import load_dataset

    ds = load_dataset("uci_yelp", split="test")
    order = sorted(range(len(ds)), key=lambda i: (len(ds.examples[i].text.split()), ds.examples[i].id))
    picks = sorted({order[int(round(j))] for j in np.linspace(0, len(order) - 1, n)})
    return ds.task, [ds.examples[i] for i in picks]


def _check_batch_invariance(model, tok):
    task, examples = _mixed_length_yelp()
    assert len(examples) == 24 and len({len(e.text.split()) for e in examples}) >= 12
    multi = Task(**{**task.__dict__, "verbalizers": tuple(f"{v} review" for v in task.verbalizers)})
    for t in (task, multi):
        frames = {bs: predict(model, tok, examples, task=t, batch_size=bs, progress=False) for bs in (1, 4, 16)}
        cols = [f"p_{n}" for n in t.label_names]
        for bs in (4, 16):
            # fp32; measured max |diff| against batch size 1 (benchmarks/batch_invariance.py): one-token path
            # 2.4e-6 (SmolLM2) and 1.9e-6 (Gemma-3), equal for 4 and 16; two-token path 0
            np.testing.assert_allclose(frames[bs][cols].to_numpy(), frames[1][cols].to_numpy(), atol=1e-5, rtol=0,
                                       err_msg=f"batch size {bs}, verbalizers {t.verbalizers}")
    one = predict(model, tok, examples[:3], task=task, batch_size=1, progress=False)
    ref = []
    for e in examples[:3]:  # independent of the scoring path: the tokenizer's own special tokens (Gemma's <bos>)
        ids = tok(render_prompt(task, tok, e.text).text).input_ids
        assert ids[-1] != tok.eos_token_id
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        ref.append(torch.softmax(logits[[v[0] for v in verbalizer_ids(task, tok)]], dim=-1).numpy())
    np.testing.assert_allclose(one[[f"p_{n}" for n in task.label_names]].to_numpy(), ref, atol=1e-5)


@pytest.mark.model
def test_smollm2_probabilities_do_not_depend_on_the_batch_size(smollm2):
    _check_batch_invariance(*smollm2)


@pytest.mark.model
def test_gemma3_probabilities_do_not_depend_on_the_batch_size(gemma3):
    _check_batch_invariance(*gemma3)
