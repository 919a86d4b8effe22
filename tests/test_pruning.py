"""Reversible and structural attention drops, against the zeroed-o_proj reference."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from tiny import CONFIGS, tiny_model, tiny_tokenizer
from toolkit import drop_attention, load_model, n_parameters, prune_attention, save_pruned
from toolkit.models.adapters import dropped_layers
from toolkit.models.adapters import attention_modules, decoder_layers
from toolkit.models.pruned_arch import PrunedAttention

# fp32; zeroing o_proj and skipping attention give the same residual stream, observed max diff 0.
ATOL = 1e-5
OUT_PROJ = ("o_proj", "c_proj", "dense", "out_proj")


def zeroed_reference(model, layers):
    """Independent route: the attention output projection (and bias) set to zero."""
    ref = copy.deepcopy(model)
    for i in layers:
        attn = attention_modules(ref)[i]
        proj = next(getattr(attn, n) for n in OUT_PROJ if hasattr(attn, n))
        with torch.no_grad():
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()
    return ref


def inputs(seed=0, batch=2, length=9):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, length), generator=g)


def generate(model, x, n=4):
    return model.generate(
        x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False, pad_token_id=0
    )


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_drop_matches_zeroed_out_projection_and_restores(arch):
    model = tiny_model(arch)
    x = inputs()
    with torch.no_grad():
        before = model(x).logits
        ref = zeroed_reference(model, [0, 2])
        expected = ref(x).logits
        with drop_attention(model, [0, 2]):
            dropped = model(x).logits
            gen_dropped = generate(model, x)
        after = model(x).logits
    torch.testing.assert_close(dropped, expected, atol=ATOL, rtol=0)
    assert not torch.allclose(dropped, before)
    assert torch.equal(before, after)
    # generate() with a KV cache (longer than Gemma's sliding window of 4) gives the reference's tokens
    assert torch.equal(gen_dropped, generate(ref, x))


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_structural_prune_matches_drop_and_saves_parameters(arch):
    model = tiny_model(arch)
    x = inputs(1)
    with torch.no_grad(), drop_attention(model, [1, 3]):
        dropped = model(x).logits
        gen = generate(model, x)
    n_before = n_parameters(model)
    prune_attention(model, [1, 3])
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, dropped, atol=ATOL, rtol=0)
    assert torch.equal(generate(model, x), gen)
    assert dropped_layers(model) == (1, 3)
    removed = n_before - n_parameters(model)
    assert removed > 0
    # exactly the attention (and attention-only norms) of two layers were removed
    fresh = tiny_model(arch)
    attn_params = sum(p.numel() for i in (1, 3) for p in attention_modules(fresh)[i].parameters())
    from toolkit.models.adapters import attn_norm_names

    norm_params = sum(
        p.numel() for i in (1, 3) for n in attn_norm_names(fresh) for p in getattr(decoder_layers(fresh)[i], n).parameters()
    )
    assert removed == attn_params + norm_params


def test_kv_cache_holds_only_kept_layers():
    model = tiny_model("LlamaForCausalLM")
    x = inputs(length=11)
    full = model(x, use_cache=True).past_key_values
    full_bytes = sum(l.keys.nbytes + l.values.nbytes for l in full.layers)
    prune_attention(model, [0, 3])
    cache = model(x, use_cache=True).past_key_values
    kinds = [type(l).__name__ for l in cache.layers]
    assert kinds == ["NoKVLayer", "DynamicLayer", "DynamicLayer", "NoKVLayer"]
    assert cache.is_dummy == [True, False, False, True]  # still transformers' DummyLayer: no KV to offload or move
    kept_bytes = sum(l.keys.nbytes + l.values.nbytes for l in cache.layers if l.keys is not None)
    assert kept_bytes * 4 == full_bytes * 2  # kept/L exactly
    assert cache.get_seq_length() == 11  # layer 0 keeps no KV, yet counts the tokens that passed it


def test_empty_drop_is_the_identity():
    model = tiny_model()
    x = inputs()
    before = model(x).logits
    with drop_attention(model, []):
        assert torch.equal(model(x).logits, before)


def test_exception_inside_block_restores_everything():
    model = tiny_model()
    x = inputs()
    before = model(x).logits
    with pytest.raises(RuntimeError, match="boom"):
        with drop_attention(model, [0, 1]):
            raise RuntimeError("boom")
    assert torch.equal(model(x).logits, before)
    for module in model.modules():
        assert "forward" not in module.__dict__
        assert not hasattr(module, "_toolkit_dropped")
    assert dropped_layers(model) == ()


def test_nested_blocks():
    model = tiny_model()
    x = inputs()
    with torch.no_grad():
        with drop_attention(model, [0, 1]):
            outer = model(x).logits
            with drop_attention(model, [1, 2]):
                assert dropped_layers(model) == (0, 1, 2)
                inner = model(x).logits
            assert dropped_layers(model) == (0, 1)
            assert torch.equal(model(x).logits, outer)
        torch.testing.assert_close(inner, zeroed_reference(model, [0, 1, 2])(x).logits, atol=ATOL, rtol=0)
    assert dropped_layers(model) == ()


def test_gradients_flow_through_kept_layers_only():
    model = tiny_model()
    x = inputs()
    with drop_attention(model, [2]):
        model(x).logits.sum().backward()
    attns = attention_modules(model)
    assert attns[2].q_proj.weight.grad is None
    assert attns[1].q_proj.weight.grad is not None and attns[1].q_proj.weight.grad.abs().sum() > 0


def test_output_attentions_skips_dropped_layers():
    model = tiny_model()
    with drop_attention(model, [1]):
        out = model(inputs(), output_attentions=True)
    assert len([a for a in out.attentions if a is not None]) == 3


def test_batched_left_padded_inputs():
    model = tiny_model()
    x = inputs(batch=3)
    mask = torch.ones_like(x)
    mask[0, :4] = 0
    with torch.no_grad(), drop_attention(model, [0]):
        batched = model(x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        single = model(x[:1, 4:]).logits
    torch.testing.assert_close(batched[0, 4:], single[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "layers, match",
    [
        ([4], "layer index 4 is out of range.*0..3"),
        ([-1], "layer index -1 is out of range"),
        ([1, 1], r"duplicate layer indices \[1\]"),
        ([1.0], "must be integers.*1.0"),
        ([True], "must be integers"),
        (["2"], "must be integers.*'2'"),
        ("01", "sequence of integers"),
        (3, "sequence of integers"),
    ],
)
def test_bad_layers(layers, match):
    model = tiny_model()
    with pytest.raises(ValueError, match=match):
        with drop_attention(model, layers):
            pass
    with pytest.raises(ValueError, match=match):
        prune_attention(model, layers)


def test_numpy_integers_are_accepted():
    model = tiny_model()
    with drop_attention(model, np.array([0, 2])):
        assert dropped_layers(model) == (0, 2)


def test_dropping_every_layer_warns_but_works():
    model = tiny_model()
    with pytest.warns(UserWarning, match="dropping all 4 attention layers"):
        with drop_attention(model, range(4)):
            logits = model(inputs()).logits
    assert torch.isfinite(logits).all()


def test_missing_attention_module_is_a_clear_error():
    model = tiny_model()
    del decoder_layers(model)[0].self_attn
    with pytest.raises(ValueError, match="cannot find the attention module 'self_attn' in layer 0"):
        attention_modules(model)


def test_save_and_reload_pruned(tmp_path):
    model = tiny_model("Qwen2ForCausalLM")
    prune_attention(model, [0, 2])
    x = inputs()
    save_pruned(model, tmp_path, tokenizer=tiny_tokenizer())
    reloaded, _ = load_model(tmp_path)
    assert isinstance(attention_modules(reloaded)[0], PrunedAttention)
    assert n_parameters(reloaded) == n_parameters(model) < n_parameters(tiny_model("Qwen2ForCausalLM"))
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)


def test_save_inside_drop_block_is_refused(tmp_path):
    model = tiny_model()
    with drop_attention(model, [0]), pytest.raises(RuntimeError, match="inside drop_attention"):
        save_pruned(model, tmp_path)


@pytest.mark.model
def test_smollm2_drop_matches_zeroed_projection_and_pruned_export(smollm2, tmp_path):
    model, tok = smollm2
    x = tok(["The food was great and the staff friendly."], return_tensors="pt").input_ids
    layers = [3, 10, 25]
    with torch.no_grad():
        before = model(x).logits
        with drop_attention(model, layers):
            dropped = model(x).logits
        ref = zeroed_reference(model, layers)(x).logits
        assert torch.equal(model(x).logits, before)
    torch.testing.assert_close(dropped, ref, atol=ATOL, rtol=0)
    pruned = prune_attention(copy.deepcopy(model), layers)
    save_pruned(pruned, tmp_path, tokenizer=tok)
    reloaded, _ = load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, pruned(x).logits)
    assert n_parameters(reloaded) < n_parameters(model)
