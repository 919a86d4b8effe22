"""Tests of toolkit.data.prompts: the one encoding path, and that every consumer feeds the model its ids.

Conformance: for every supported architecture (tiny random configs) x a tokenizer that adds a BOS
and one that does not x plain, chat-template and k-shot prompts, the token ids that ``predict``,
both attribution backends and the faithfulness scorer (no word erased) feed the model are read off
the embedding layer and must be identical; the probability an attribution records must equal
``predict``'s and an independent unpadded forward on the ids (atol 1e-5: float32, observed <= 1e-7).
The same on the bundled SmolLM2 (no BOS) and Gemma-3-270M (BOS) in the `model` tests.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tiny import CONFIGS, tiny_model, tiny_tokenizer

from toolkit import attribution as A
from toolkit.metrics import faithfulness as F
from toolkit.data.task import Example, Task
from toolkit.data.datasets import get_task
from toolkit.metrics.faithfulness.erasure import check_words
from toolkit.data.prompts import (
    encode_example,
    encode_text,
    erase_words,
    render_prompt,
    special_prefix,
    split_words,
    task_demos,
    verbalizer_ids,
    word_spans,
)
from toolkit.models.scoring import predict

TINY_TASK = Task("tiny", "is the review good or bad ?", ("negative", "positive"), ("bad", "good"),
                 input_name="review", use_chat_template=False)
EXAMPLES = [Example("a", "the movie was good", 1), Example("b", "awful  service ,\nthe food was bad", 0),
            Example("c", "not very good", 1)]


# ----------------------------------------------------------------------------- words and erasure
def test_words_and_spans():
    text = "  A great\tmovie,\n truly.  日本 "
    assert split_words(text) == ["A", "great", "movie,", "truly.", "日本"]
    assert [text[s:e] for s, e in word_spans(text)] == split_words(text)
    assert split_words(" \n ") == [] and word_spans("") == []


@pytest.mark.parametrize(
    "erased, erasure, expected",
    [
        ((), "delete", "a  b\nc d"),  # nothing erased: the text itself, byte for byte
        ((1,), "delete", "a\nc d"),  # each remaining word keeps the whitespace before it
        ((3,), "delete", "a  b\nc"),  # the last word takes the space before it
        ((2, 3), "delete", "a  b"),
        ((0, 1, 2, 3), "delete", ""),
        ((0,), "delete", "b\nc d"),
        ((1, 3), "replace", "a  ...\nc ..."),
    ],
)
def test_erase_words_by_hand(erased, erasure, expected):
    assert erase_words("a  b\nc d", erased, erasure=erasure) == expected


def test_erase_words_keeps_leading_and_trailing_whitespace():
    assert erase_words(" a b\n", [0]) == " b\n"
    assert erase_words(" a b\n", [0, 1]) == " \n"


def test_erase_words_deleted_words_are_gone_and_the_rest_stay():
    rng = np.random.default_rng(0)
    text = "one two  three\tfour five\nsix seven"
    words = split_words(text)
    for _ in range(50):
        gone = set(rng.choice(len(words), size=rng.integers(0, len(words) + 1), replace=False).tolist())
        out = erase_words(text, gone)
        assert split_words(out) == [w for i, w in enumerate(words) if i not in gone]


def test_erase_words_rejects_bad_input():
    with pytest.raises(ValueError, match=r"word indices \[5\] out of range for a text of 2 words"):
        erase_words("a b", [5])
    with pytest.raises(ValueError, match="unknown erasure 'drop'"):
        erase_words("a b", [0], erasure="drop")


# ----------------------------------------------------------------------------- special tokens
def test_special_prefix_follows_the_tokenizer():
    assert special_prefix(tiny_tokenizer()) == ()
    bos = tiny_tokenizer(bos=True)
    assert special_prefix(bos) == (bos.bos_token_id,)
    assert encode_text(bos, "good movie") == bos("good movie")["input_ids"]


@pytest.mark.parametrize("bos", [False, True])
def test_plain_prompt_gets_what_the_tokenizer_adds(bos):
    tok = tiny_tokenizer(bos=bos)
    enc = encode_example(tok, TINY_TASK, "the movie was good")
    assert list(enc.ids) == tok(enc.prompt.text)["input_ids"]
    assert (enc.ids[0] == tok.bos_token_id) is bos


@pytest.mark.parametrize("bos", [False, True])
def test_chat_prompt_never_gets_a_second_bos(bos):
    tok = tiny_tokenizer(chat=True, bos=bos)
    tok.chat_template = "{{ bos_token }}" + tok.chat_template  # a template that writes its own BOS, as Gemma's
    task = dataclasses.replace(TINY_TASK, use_chat_template=True)
    enc = encode_example(tok, task, "the movie was good")
    assert enc.prompt.chat and enc.prompt.text.startswith("<s>")
    assert enc.ids[0] == tok.bos_token_id and enc.ids[1] != tok.bos_token_id


def test_token_word_maps_only_the_example_words():
    tok = tiny_tokenizer(bos=True)
    enc = encode_example(tok, TINY_TASK, "awful  service ,\nthe food")
    assert enc.words == ("awful", "service", ",", "the", "food")
    ranked = enc.token_word[enc.token_word >= 0]
    assert ranked.tolist() == [0, 1, 2, 3, 4]
    assert enc.token_word[0] == -1  # the BOS is not a word
    with pytest.raises(ValueError):
        enc.token_word[0] = 3  # read-only


def test_erased_encoding_is_the_encoding_of_the_erased_text():
    tok = tiny_tokenizer(bos=True)
    text = "awful  service ,\nthe food was bad"
    enc = encode_example(tok, TINY_TASK, text, erase=[1, 3])
    assert enc.ids == encode_example(tok, TINY_TASK, "awful  ,\nfood was bad").ids
    assert enc.words == ("awful", ",", "food", "was", "bad")


def test_bad_input_is_named():
    tok = tiny_tokenizer()  # no chat template
    with pytest.raises(ValueError, match="asks for the chat template .* has none"):
        encode_example(tok, dataclasses.replace(TINY_TASK, use_chat_template=True), "good")
    assert not encode_example(tok, dataclasses.replace(TINY_TASK, use_chat_template="auto"), "good").prompt.chat
    with pytest.raises(ValueError, match="use_chat_template must be 'auto', True or False, got 'yes'"):
        dataclasses.replace(TINY_TASK, use_chat_template="yes")
    demos = [Example(str(i), "the movie was good and the food was good", 1) for i in range(12)]
    with pytest.raises(ValueError, match=r"is \d+ tokens, longer than the model's context of 64 tokens \(12 demonstrations"):
        encode_example(tok, TINY_TASK, "good", demos=demos, max_length=64)
    with pytest.raises(ValueError, match="an example text must be a str, got int"):
        encode_example(tok, TINY_TASK, 5)


def test_demonstrations_too_long_for_the_model_fail_in_predict():
    model, tok = tiny_model(), tiny_tokenizer()  # 128 positions
    demos = [Example(str(i), " ".join(["good"] * 30), 1) for i in range(6)]
    with pytest.raises(ValueError, match="longer than the model's context of 128 tokens"):
        predict(model, tok, EXAMPLES[:1], task=TINY_TASK, demos=demos, progress=False)


# ----------------------------------------------------------------------------- conformance
@contextmanager
def fed_ids(model):
    """Collect every id tensor the model's input embedding layer is called on."""
    seen: list[torch.Tensor] = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()


def _prefix_and_rows(seen: list[torch.Tensor]) -> list[tuple[int, ...]]:
    """Sequences fed by batch-size-1 scoring: one shared-prefix pass, then each row's own tokens."""
    if len(seen) == 1:
        return [tuple(seen[0][0].tolist())]
    prefix = seen[0][0].tolist()
    return [tuple(prefix + row[0].tolist()) for row in seen[1:]]


def _reference_probability(model, tok, task, ids, label):
    """One unpadded forward on the ids: softmax over the verbalizers' first tokens at the last position."""
    with torch.no_grad():
        logits = model(torch.tensor([list(ids)])).logits[0, -1].double()
    firsts = [v[0] for v in verbalizer_ids(task, tok)]
    return torch.softmax(logits[firsts], dim=-1)[label].item()


def check_conformance(model, tok, task, examples, *, inseq: bool = True, atol: float = 1e-5):
    expected = [encode_example(tok, task, e.text).ids for e in examples]
    # predict: a shared-prefix pass, then each row (batch size 1: no padding to strip)
    with fed_ids(model) as seen:
        pred = predict(model, tok, examples, task=task, batch_size=1, progress=False)
    assert sorted(_prefix_and_rows(seen)) == sorted(expected)
    # the faithfulness scorer, no word erased, on the examples' texts
    (variants,) = [check_words([e.text for e in examples])]
    with fed_ids(model) as seen:
        scored = F.model_scorer(model, tok, task, batch_size=1)(variants)
    assert sorted(_prefix_and_rows(seen)) == sorted(expected)
    probs = pred[[f"p_{n}" for n in task.label_names]].to_numpy()
    np.testing.assert_allclose(scored, probs, rtol=0, atol=atol)
    # the fast backend embeds each example's full ids (one 1-D call per example)
    with fed_ids(model) as seen:
        fast = A.attribute(model, tok, task, examples, method="saliency", backend="fast", batch_size=4)
    assert sorted(tuple(t.tolist()) for t in seen if t.ndim == 1) == sorted(expected)
    backends = [fast]
    if inseq:  # inseq re-tokenises the prompt text; attribute() checks its ids equal ours or raises
        backends.append(A.attribute(model, tok, task, examples, method="saliency", backend="inseq"))
    for attrs in backends:
        for a, e, ids, row in zip(attrs, examples, expected, probs):
            assert a.input_ids == ids
            assert a.label == int(row.argmax())
            assert a.probability == pytest.approx(row[a.label], abs=atol)
            ref = _reference_probability(model, tok, task, ids, a.label)
            assert a.probability == pytest.approx(ref, abs=atol)
            assert a.words == tuple(split_words(e.text))


PROMPTS = {
    "plain": lambda: TINY_TASK,
    "chat": lambda: dataclasses.replace(TINY_TASK, use_chat_template=True),
    # k-shot needs a registered dataset's train split: the bundled uci_yelp (its words are mostly unk here)
    "kshot": lambda: dataclasses.replace(get_task("uci_yelp"), n_shot=2, use_chat_template=False),
}


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
@pytest.mark.parametrize("bos", [False, True], ids=["no-bos", "bos"])
@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_every_consumer_feeds_the_same_ids(architecture, bos, prompt):
    model, tok = tiny_model(architecture), tiny_tokenizer(chat=prompt == "chat", bos=bos)
    if bos and prompt == "chat":  # the chat templates of BOS-adding families (Llama, Mistral, Gemma) write it
        tok.chat_template = "{{ bos_token }}" + tok.chat_template
    task = PROMPTS[prompt]()
    if prompt == "kshot":
        assert len(task_demos(task)) == 2
    check_conformance(model, tok, task, EXAMPLES, inseq=architecture in ("LlamaForCausalLM", "GPT2LMHeadModel"))


@pytest.mark.model
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
@pytest.mark.parametrize("prompt", ["plain", "chat", "kshot"])
def test_bundled_models_feed_the_same_ids(name, prompt, request):
    model, tok = request.getfixturevalue("smollm2" if name == "smollm2-135m" else "gemma3")
    task = get_task("uci_yelp")
    task = dataclasses.replace(task, use_chat_template=prompt == "chat", n_shot=4 if prompt == "kshot" else 0)
    examples = [Example("x", "The food was  cold and\nthe service slow.", 0), Example("y", "Loved it!", 1)]
    if prompt == "chat" and not tok.chat_template:
        pytest.skip(f"{name}'s tokenizer has no chat template")
    prompt_ids = encode_example(tok, task, examples[0].text).ids
    if prompt != "chat":  # Gemma needs its <bos>; SmolLM2 adds none (its chat template's <|im_start|> is its "BOS")
        assert (prompt_ids[0] == tok.bos_token_id) is (name == "gemma3-270m")
    assert not prompt_ids[0] == prompt_ids[1] == tok.bos_token_id  # never a second BOS
    check_conformance(model, tok, task, examples, atol=1e-5)
