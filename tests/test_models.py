"""Model loading and the architecture adapter table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tiny import CONFIGS, tiny_model, tiny_tokenizer
from toolkit import ADAPTERS, Adapter, adapter_for, decoder_layers, list_models, load_model, register_adapter
from toolkit.models import _get, _write_atomically, attention_modules, attn_norm_names


def test_every_adapter_has_a_tiny_config():
    assert set(ADAPTERS) == set(CONFIGS)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_adapter_finds_every_part(arch):
    model = tiny_model(arch)
    adapter = adapter_for(model)
    layers = decoder_layers(model)
    assert len(layers) == model.config.num_hidden_layers == 4
    attns = attention_modules(model)
    # The attention module is the one that owns the query/key/value weights.
    for attn in attns:
        names = {n for n, _ in attn.named_parameters()}
        assert any(k in n for n in names for k in ("q_proj", "c_attn", "query_key_value", "qkv_proj")), names
    for name in attn_norm_names(model):
        assert isinstance(getattr(layers[0], name), nn.Module)
    final = _get(model, adapter.final_norm)
    embed = _get(model, adapter.embed)
    assert isinstance(embed, nn.Embedding) and embed.num_embeddings == 128
    # The final norm really is applied last: hooking it sees the last hidden state's shape.
    seen = []
    h = final.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        model(torch.randint(3, 100, (1, 5)))
    finally:
        h.remove()
    assert seen and seen[-1][-1] == model.config.hidden_size


def test_unsupported_architecture_lists_supported():
    class Mystery(nn.Module):
        pass

    with pytest.raises(ValueError, match="unsupported architecture 'Mystery'.*LlamaForCausalLM"):
        adapter_for(Mystery())


def test_register_adapter_refuses_overwrite():
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("LlamaForCausalLM", ADAPTERS["LlamaForCausalLM"])
    register_adapter("MyLM", Adapter(layers="a", attention="b", attn_norm=None, final_norm="c", embed="d"))
    try:
        assert "MyLM" in ADAPTERS
    finally:
        del ADAPTERS["MyLM"]


def test_opt_post_norm_variant_keeps_its_norm():
    model = tiny_model("OPTForCausalLM")
    assert attn_norm_names(model) == ("self_attn_layer_norm",)
    model.config.do_layer_norm_before = False
    assert attn_norm_names(model) == ()


@pytest.mark.parametrize(
    "name, match",
    [
        ("no-such-model", "unknown model 'no-such-model'.*smollm2-135m"),
        ("./missing/folder", "unknown model './missing/folder'"),
        ("weights.safetensors", "unknown model"),
    ],
)
def test_unknown_model_is_a_clear_error(name, match):
    with pytest.raises(ValueError, match=match):
        load_model(name)


def test_list_models():
    assert "smollm2-135m" in list_models()


def test_write_atomically_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model"

    def broken(tmp):
        (tmp / "half.safetensors").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write_atomically(target, broken)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    _write_atomically(target, lambda tmp: (tmp / "ok.txt").write_text("done"))
    assert (target / "ok.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_load_model_from_local_folder(tmp_path):
    model = tiny_model("LlamaForCausalLM")
    tok = tiny_tokenizer()
    tok.padding_side = "right"
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_model(tmp_path)
    assert loaded.config._attn_implementation == "eager"
    assert not loaded.training
    assert loaded.dtype == torch.float32
    assert ltok.padding_side == "left" and ltok.pad_token is not None
    x = torch.randint(3, 100, (2, 6))
    assert torch.equal(loaded(x).logits, model(x).logits)


def test_load_model_dtype_string_is_checked(tmp_path):
    model = tiny_model("LlamaForCausalLM")
    model.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        load_model(tmp_path, dtype="float33")
    half, _ = load_model(tmp_path, dtype="bfloat16")
    assert half.dtype == torch.bfloat16


@pytest.mark.slow
def test_bundled_smollm2(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(decoder_layers(model)) == 30
    n = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n < 135_000_000
    assert model.config._attn_implementation == "eager"
    assert tok.chat_template
