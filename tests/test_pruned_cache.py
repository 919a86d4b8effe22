"""The KV cache of a model with dropped attention layers (`toolkit.models.pruned_arch.NoKVLayer`).

The reference is a forward with no cache at all: decoding step by step through the cache must give
the logits of one uncached forward over the whole sequence, whichever layers are dropped (layer 0 and
the last included: transformers 5.25 reads the cache's length from layer 0), on every architecture,
reversibly and structurally. Beam search (reorder / repeat / select), crop and reset are checked the
same way. `NoKVLayer` subclasses `transformers.cache_utils.DummyLayer`, a name outside transformers'
top-level API: `test_transformers_still_has_the_names_we_use` fails first if a release moves it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from tiny import CONFIGS, tiny_model
from toolkit import drop_attention, prune_attention
from toolkit.models.pruned_arch import NoKVLayer

# fp32 on 32-wide tiny models; the cached and uncached routes sum the same terms in another order
# (observed max difference 2e-7).
ATOL = 1e-5
L = 4  # layers of every tiny model
DROPS = ([0], [L - 1], [0, L - 1], [1, 2])


def tokens(length=10, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, length), generator=g)


def stepwise_logits(model, x, chunks=(6, 1, 2, 1)):
    """Prefill the first chunk, then continue with the returned cache chunk by chunk; logits of every position."""
    out, cache, start, lengths = [], None, 0, []
    for n in chunks:
        ids = x[:, start:start + n]
        res = model(input_ids=ids, cache=cache, use_cache=True)
        cache = res.past_key_values
        out.append(res.logits)
        start += n
        lengths.append(cache.get_seq_length())
    return torch.cat(out, dim=1), cache, lengths


def layers_of(cache):
    return getattr(cache, "self_attention_cache", cache).layers


@pytest.mark.parametrize("drop", DROPS, ids=str)
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_cached_decoding_equals_one_uncached_forward(arch, drop):
    model = tiny_model(arch)
    x = tokens()
    with torch.no_grad(), drop_attention(model, drop):
        expected = model(input_ids=x, use_cache=False).logits
        got, cache, lengths = stepwise_logits(model, x)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert lengths == [6, 7, 9, 10]  # the cache's length, whichever layer holds no KV
    slots = layers_of(cache)
    assert [i for i, s in enumerate(slots) if isinstance(s, NoKVLayer)] == drop


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Gemma3ForCausalLM", "OPTForCausalLM", "GPT2LMHeadModel"])
def test_structural_pruning_decodes_like_an_uncached_forward(arch):
    model = tiny_model(arch)
    prune_attention(model, [0, L - 1])
    x = tokens(seed=1)
    with torch.no_grad():
        expected = model(input_ids=x, use_cache=False).logits
        got, _, lengths = stepwise_logits(model, x)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert lengths == [6, 7, 9, 10]


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM"])
def test_a_slot_without_kv_answers_as_the_layer_it_replaced(arch):
    """Length and mask sizes of each dropped slot equal those the unpruned model's own layer gives."""
    model = tiny_model(arch)
    x = tokens(length=9)  # longer than the tiny sliding window (4): the window arithmetic matters
    with torch.no_grad():
        _, full, _ = stepwise_logits(model, x, chunks=(6, 1, 2))
        with drop_attention(model, list(range(L))):
            _, none_kept, _ = stepwise_logits(model, x, chunks=(6, 1, 2))
    for i, (ref, slot) in enumerate(zip(layers_of(full), layers_of(none_kept))):
        assert isinstance(ref, (DynamicLayer, DynamicSlidingWindowLayer)) and isinstance(slot, NoKVLayer), i
        assert slot.sliding_window == (ref.sliding_window if ref.is_sliding else None), i
        assert not slot.is_sliding  # masks are read from kept layers (see NoKVLayer.__init__)
        assert slot.get_seq_length() == ref.get_seq_length() == 9, i
        for q in (1, 3, 7):
            assert slot.get_mask_sizes(q) == ref.get_mask_sizes(q), (i, q)


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Gemma3ForCausalLM", "OPTForCausalLM"])
def test_beam_search_with_layer_0_dropped_matches_the_zeroed_projection(arch):
    """Beam search reorders, repeats and selects cache rows: the dropped slots must follow."""
    from test_pruning import zeroed_reference

    model = tiny_model(arch)
    x = tokens(length=5)
    ref = zeroed_reference(model, [0])
    kwargs = dict(attention_mask=torch.ones_like(x), max_new_tokens=5, do_sample=False, num_beams=3,
                  num_return_sequences=2, pad_token_id=0)
    with torch.no_grad():
        expected = ref.generate(x, **kwargs)
        with drop_attention(model, [0]):
            got = model.generate(x, **kwargs)
    assert torch.equal(got, expected)


def test_crop_and_reset_keep_the_length_right():
    model = tiny_model("LlamaForCausalLM")
    x = tokens(length=10)
    with torch.no_grad(), drop_attention(model, [0]):
        _, cache, _ = stepwise_logits(model, x, chunks=(8,))
        cache.crop(-3)  # back to 5 tokens
        assert cache.get_seq_length() == 5
        cropped = model(input_ids=x[:, 5:6], cache=cache, use_cache=True).logits
        expected = model(input_ids=x[:, :6], use_cache=False).logits[:, -1:]
        torch.testing.assert_close(cropped, expected, atol=ATOL, rtol=0)
        cache.reset()
        assert cache.get_seq_length() == 0
    slot = NoKVLayer(seen=4)
    with pytest.raises(ValueError, match="negative number of tokens"):
        slot.crop(2)


def test_a_copied_cache_counts_on_its_own():
    """The scoring path deep-copies a prefix cache per batch: copies must not share a counter."""
    model = tiny_model("LlamaForCausalLM")
    x = tokens(length=6)
    with torch.no_grad(), drop_attention(model, [0]):
        cache = model(input_ids=x, use_cache=True).past_key_values
        twin = copy.deepcopy(cache)
        model(input_ids=x[:, :2], cache=twin, use_cache=True)
    assert cache.get_seq_length() == 6 and twin.get_seq_length() == 8


def test_transformers_still_has_the_names_we_use():
    """`DummyLayer` is how transformers marks KV-less slots (`Cache.is_dummy`); we subclass it."""
    from transformers.cache_utils import Cache, DummyLayer

    assert issubclass(NoKVLayer, DummyLayer)
    assert hasattr(Cache, "is_dummy") or hasattr(Cache, "get_mask_sizes")
    for name in ("get_seq_length", "get_mask_sizes", "crop", "reset", "reorder_cache",
                 "batch_repeat_interleave", "batch_select_indices"):
        assert callable(getattr(NoKVLayer(), name)), name


@pytest.mark.model
def test_bundled_model_generates_the_same_with_and_without_the_cache(smollm2):
    """SmolLM2 with attention layers 0 and 29 (first and last) dropped: greedy decoding through the KV
    cache gives the tokens of decoding with no cache (each step one full forward)."""
    model, tokenizer = smollm2
    x = tokenizer("Review: the food was cold and the service slow.\nAnswer:", return_tensors="pt")
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    with torch.no_grad(), drop_attention(model, [0, model.config.num_hidden_layers - 1]):
        cached = model.generate(**x, use_cache=True, **kwargs)
        uncached = model.generate(**x, use_cache=False, **kwargs)
        full = model(input_ids=cached[:, :-1], use_cache=False).logits
        steps, cache, _ = stepwise_logits(model, cached[:, :-1], chunks=(x["input_ids"].shape[1], 2, 1, 1, 1))
    assert torch.equal(cached, uncached)
    assert cache.get_seq_length() == cached.shape[1] - 1
    assert isinstance(layers_of(cache)[0], NoKVLayer) and isinstance(layers_of(cache)[-1], NoKVLayer)
    # fp32, 30 layers, logits of magnitude ~20, summed in another order: observed max difference 2.2e-4
    torch.testing.assert_close(steps, full, atol=1e-3, rtol=0)
