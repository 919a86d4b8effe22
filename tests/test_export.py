"""Checkpoints that load anywhere, never silently wrong.

* The zeroed format (`export_zeroed`), loaded by plain transformers in a fresh process with no
  toolkit import, equals `drop_attention` on the original (logits to 1e-5, 20 greedy tokens) for
  every adapter architecture, with no missing or unexpected weight and tied embeddings still tied.
* The structural format (`save_pruned`): plain `from_pretrained` fails asking for
  trust_remote_code; with it, the shipped class equals `toolkit.load_model` to 1e-6; old toolkit
  folders (stock model_type, no auto_map) still load through the toolkit.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from plain_hf_load import in_fresh_process
from tiny import CONFIGS, tiny_model, tiny_tokenizer
from toolkit import drop_attention, export_zeroed, load_model, prune_attention, save_pruned
from toolkit.models.adapters import ADAPTERS, decoder_layers, register_adapter
from toolkit.models.checkpoints import BASE_MODEL_TYPE_KEY
from toolkit.__main__ import main
from toolkit.pruning.export import ZEROED_KEY, zeroed_parameters
from toolkit.models.checkpoints import PRUNING_SPEC
from toolkit._core.validation import InputError, InputTypeError

# fp32. Exported vs drop: the same sums except attention (+0 vs skipped) and transformers' default
# attention kernel (sdpa) in the fresh process vs eager here; observed max 1.5e-7 on the tiny models.
ATOL_EXPORT = 1e-5
# Opt-in class vs toolkit.load_model: identical modules, sdpa vs eager kernels; observed max 1.8e-7.
ATOL_REMOTE = 1e-6
N_NEW = 20
LAYERS = [1, 3]
# Variants whose residual wiring differs from the defaults: OPT normalising after the residual add
# (OPT-350m), GPT-NeoX without the parallel residual (the tiny default has it).
VARIANTS = {
    **{arch: (arch, {}) for arch in CONFIGS},
    "OPTForCausalLM-postnorm": ("OPTForCausalLM", {"do_layer_norm_before": False}),
    "GPTNeoXForCausalLM-sequential": ("GPTNeoXForCausalLM", {"use_parallel_residual": False}),
}


def randomise_biases_and_norms(model, seed: int = 0):
    """transformers initialises biases (and some norm gains) to constants: make them random, so that
    leaving a bias unzeroed, or a norm that does not map zero to zero, would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def variant_model(name: str, seed: int = 0):
    arch, extra = VARIANTS[name]
    torch.manual_seed(seed)
    config = CONFIGS[arch](bos_token_id=1, eos_token_id=2, pad_token_id=0, **extra)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    assert type(model).__name__ == arch
    return randomise_biases_and_norms(model, seed)


def inputs(seed=0, batch=2, length=9):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, length), generator=g)


@torch.no_grad()
def greedy(model, x, n=N_NEW):
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=0)
    return out[:, x.shape[1]:]


def test_zeroed_and_structural_folders_in_plain_transformers(tmp_path):
    """All architectures, both formats, one fresh process."""
    x = inputs()
    jobs, expected = [], {}
    for name in VARIANTS:
        model = variant_model(name)
        with torch.no_grad(), drop_attention(model, LAYERS):
            dropped, gen = model(x).logits, greedy(model, x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        zeroed = export_zeroed(model, LAYERS, tmp_path / f"{name}-zeroed", tokenizer=tiny_tokenizer())
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the model is untouched
        structural = save_pruned(prune_attention(copy.deepcopy(model), LAYERS), tmp_path / f"{name}-structural",
                                 tokenizer=tiny_tokenizer())
        toolkit_model, _ = load_model(structural)
        with torch.no_grad():
            toolkit_logits = toolkit_model(x).logits
        expected[name] = dict(dropped=dropped, gen=gen, toolkit=toolkit_logits,
                              tied=bool(model.config.tie_word_embeddings))
        common = dict(input_ids=x.tolist(), new_tokens=N_NEW)
        jobs += [
            dict(name=f"{name}/zeroed", path=str(zeroed), mode="plain", **common),
            dict(name=f"{name}/remote", path=str(structural), mode="remote", **common),
            dict(name=f"{name}/refuse", path=str(structural), mode="refuse", **common),
        ]
    results = in_fresh_process(jobs, tmp_path)
    worst = {}
    for name, exp in expected.items():
        z, r, refused = results[f"{name}/zeroed"], results[f"{name}/remote"], results[f"{name}/refuse"]
        arch = VARIANTS[name][0]
        assert z["class"] == arch and z["info"] == {}, (name, z["info"])  # nothing missing, unexpected, re-initialised
        torch.testing.assert_close(z["logits"], exp["dropped"], atol=ATOL_EXPORT, rtol=0)
        assert torch.equal(z["generated"], exp["gen"]), name
        assert z["tied"] == exp["tied"], name  # tied embeddings stay tied
        assert r["class"] == f"Pruned{arch}" and r["info"] == {}, (name, r["info"])
        torch.testing.assert_close(r["logits"], exp["toolkit"], atol=ATOL_REMOTE, rtol=0)
        assert torch.equal(r["generated"], exp["gen"]), name
        assert refused["error"] is not None and "trust_remote_code=True" in refused["error"], (name, refused)
        worst[name] = ((z["logits"] - exp["dropped"]).abs().max().item(), (r["logits"] - exp["toolkit"]).abs().max().item())
    print("max |logit diff| (zeroed export vs drop_attention, opt-in class vs toolkit.load_model):", worst)


def test_zeroed_folder_is_the_stock_checkpoint_with_zero_projections(tmp_path):
    model = randomise_biases_and_norms(tiny_model("GPT2LMHeadModel"))  # c_proj is a Conv1D with a bias
    path = export_zeroed(model, [2], tmp_path / "out", tokenizer=tiny_tokenizer(), selection={"metric": "cosine", "k": 1})
    names = sorted(p.name for p in path.iterdir())
    assert PRUNING_SPEC not in names and not any(n.endswith(".py") for n in names) and "model.safetensors" in names
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config and config[ZEROED_KEY] == [2]
    reloaded = AutoModelForCausalLM.from_pretrained(path)
    zeroed = {"transformer.h.2.attn.c_proj.weight", "transformer.h.2.attn.c_proj.bias"}
    assert set(zeroed_parameters(model, [2])) == zeroed
    original, state = model.state_dict(), reloaded.state_dict()
    for key, value in state.items():
        if key in zeroed:
            assert not value.any() and original[key].any(), key
        else:
            assert torch.equal(value, original[key]), key
    card = (path / "README.md").read_text()
    for needle in ("layers [2] (of 4)", "saves no compute", "--format toolkit", '"metric": "cosine"',
                   "transformer.h.2.attn.c_proj.bias", "library_name: transformers"):
        assert needle in card, needle


def test_post_attention_rmsnorm_maps_zero_to_zero():
    """Gemma 2/3 normalise the attention output before the residual add: RMSNorm(0) = 0, so zeroing is exact."""
    for arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM"):
        layer = decoder_layers(tiny_model(arch))[0]
        norm = layer.post_attention_layernorm
        with torch.no_grad():
            norm.weight.normal_()  # any gain: g * 0 / sqrt(0 + eps) = 0
            out = norm(torch.zeros(2, 5, norm.weight.shape[0]))
        assert torch.equal(out, torch.zeros_like(out)), arch


def test_empty_layer_list_exports_an_unmodified_copy(tmp_path):
    model = tiny_model("Qwen2ForCausalLM")
    path = export_zeroed(model, [], tmp_path / "copy")
    reloaded = AutoModelForCausalLM.from_pretrained(path)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reloaded.state_dict().items())
    assert ZEROED_KEY not in json.loads((path / "config.json").read_text())


def test_export_refuses_what_it_cannot_write_exactly(tmp_path):
    model = tiny_model()
    with pytest.raises(RuntimeError, match="needs the unpruned model"):
        export_zeroed(prune_attention(tiny_model(), [0]), [0], tmp_path / "a")
    with drop_attention(model, [0]), pytest.raises(RuntimeError, match="inside drop_attention"):
        export_zeroed(model, [0], tmp_path / "b")
    with pytest.raises(InputTypeError, match="selection must be a mapping"):
        export_zeroed(model, [0], tmp_path / "c", selection=[("k", 1)])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_zeroed(model, [0], tmp_path / "d")
    llama = ADAPTERS.get("LlamaForCausalLM")
    with ADAPTERS.restored():
        register_adapter("LlamaForCausalLM", dataclasses.replace(llama, out_proj=None), replace=True)
        with pytest.raises(InputError, match="cannot export LlamaForCausalLM in the zeroed format"):
            export_zeroed(model, [0], tmp_path / "e")
        # An adapter row naming the wrong projection: the self-check against drop_attention refuses it.
        register_adapter("LlamaForCausalLM", dataclasses.replace(llama, out_proj="q_proj"), replace=True)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(InputError, match="does not equal dropping its attention"):
            export_zeroed(model, [0], tmp_path / "f")
    assert ADAPTERS.get("LlamaForCausalLM") is llama
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # restored after the failure
    assert not any(p.name.startswith(("e", "f", ".f")) for p in tmp_path.iterdir())  # nothing written


def test_prune_command_writes_either_format(tmp_path):
    source = tmp_path / "model"
    tiny_model().save_pretrained(source)
    tiny_tokenizer().save_pretrained(source)
    assert main(["prune", str(tmp_path / "hf"), "--model", str(source), "--layers", "1,2",
                 "--format", "transformers"]) == 0
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values())
    assert "given on the command line" in (tmp_path / "hf" / "README.md").read_text()
    assert main(["prune", str(tmp_path / "tk"), "--model", str(source), "--layers", "1,2"]) == 0  # default: toolkit
    config = json.loads((tmp_path / "tk" / "config.json").read_text())
    assert config["model_type"] == "toolkit_pruned_llama" and config[BASE_MODEL_TYPE_KEY] == "llama"
    assert main(["prune", str(tmp_path / "x"), "--model", str(source), "--layers", "1", "--format", "gguf"]) == 2


def test_structural_folder_names_the_toolkit_loader(tmp_path):
    path = save_pruned(prune_attention(tiny_model(), LAYERS), tmp_path / "p", tokenizer=tiny_tokenizer())
    config = json.loads((path / "config.json").read_text())
    assert "toolkit.load_model" in config["toolkit_loader"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_toolkit_pruned.PrunedLlamaForCausalLM"
    card = (path / "README.md").read_text()
    assert "toolkit.load_model(path)" in card and "trust_remote_code=True" in card and "--format transformers" in card
    with pytest.raises(ValueError, match="trust_remote_code=True"):  # in-process too (stdin is not a terminal)
        AutoModelForCausalLM.from_pretrained(path)


def test_old_structural_folder_still_loads(tmp_path):
    """A folder of an older toolkit: stock model_type, no auto_map, no code, no card."""
    model = prune_attention(tiny_model("Gemma3ForCausalLM"), LAYERS)
    path = save_pruned(model, tmp_path / "old", tokenizer=tiny_tokenizer())
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = config.pop(BASE_MODEL_TYPE_KEY)
    for key in ("auto_map", "toolkit_layers", "toolkit_attention", "toolkit_attn_norms", "toolkit_loader"):
        del config[key]
    (path / "config.json").write_text(json.dumps(config))
    (path / "modeling_toolkit_pruned.py").unlink()
    (path / "README.md").unlink()
    reloaded, _ = load_model(path)
    x = inputs()
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)
    # the checksum check still guards it
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="changed since pruning"):
        load_model(path)


def test_study_reads_the_depth_of_a_structural_folder(tmp_path):
    """The study's depth check reads the stock config, never asking transformers (which would offer remote code)."""
    from toolkit.study import model_depth

    path = save_pruned(prune_attention(tiny_model(), LAYERS), tmp_path / "p", tokenizer=tiny_tokenizer())
    assert model_depth(str(path)) == 4
