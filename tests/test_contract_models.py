"""The input contract of model loading and pruned checkpoints: every bad input is a clear error.

One table of bad inputs -> (error type, a fragment of the message that names the bad value), then
the pruned-checkpoint proofs (edited pruning.json, edited weights, old checkpoints without a
checksum) and the whole-folder overwrite. Tiny random models saved to tmp_path; no network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tiny import tiny_model, tiny_tokenizer
from toolkit import load_model, n_parameters, prune_attention, save_pruned
from toolkit.models.adapters import attention_modules
from toolkit.__main__ import main
from toolkit._core.folders import write_folder
from toolkit.pruning.attention import PRUNING_SPEC, read_pruning_spec
from toolkit.models.pruned_arch import PrunedAttention

PRUNED = [1, 3]


def plain_folder(root: Path, tokenizer=None) -> Path:
    """A tiny Llama saved with save_pretrained (4 layers, 128 embedding rows)."""
    path = root / "plain"
    tiny_model().save_pretrained(path)
    (tokenizer or tiny_tokenizer()).save_pretrained(path)
    return path


def pruned_folder(root: Path, tokenizer=True) -> Path:
    """A tiny Llama with the attention of layers 1 and 3 removed, written by save_pruned."""
    path = root / "pruned"
    model = prune_attention(tiny_model(), PRUNED)
    if tokenizer:
        return save_pruned(model, path, tokenizer=tiny_tokenizer())
    with pytest.warns(UserWarning, match=re.escape(f"saving {path} without a tokenizer")):
        return save_pruned(model, path)


def edit_spec(path: Path, **changes) -> Path:
    spec = json.loads((path / PRUNING_SPEC).read_text())
    spec.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del spec[key]
    (path / PRUNING_SPEC).write_text(json.dumps(spec))
    return path


def write(path: Path, name: str, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(text)
    return path


def without_weights(path: Path) -> Path:
    (path / "model.safetensors").unlink()
    return path


def sparse_tokenizer():
    """4 tokens, but one of them has id 500: past a 128-row embedding although len() is 4."""
    vocab = {"<unk>": 0, "<pad>": 1, "a": 2, "far": 500}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<pad>")


def big_tokenizer():
    tok = tiny_tokenizer()
    tok.add_tokens([f"extra{i}" for i in range(128)])
    return tok


def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def no_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def hub_down(monkeypatch):
    monkeypatch.setattr("toolkit.models.loading._hub_unreachable", lambda timeout=3.0: "no connection (test)")
    monkeypatch.setattr("toolkit.models.loading.try_to_load_from_cache", lambda *a, **k: None)


def hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("toolkit.models.loading.try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(httpx, "head", lambda *a, **k: pytest.fail("the hub was contacted in offline mode"))


# Each case: build(tmp_path) -> the path or name to load; extra load_model keywords; a patch; the
# expected error type; the message fragment ({p}: the built path) that names the bad value.
LOAD_CASES = {
    "int instead of a name": (lambda t: 123, {}, None, TypeError, "got 123 (int)"),
    "None instead of a name": (lambda t: None, {}, None, TypeError, "got None (NoneType)"),
    "empty folder": (lambda t: t, {}, None, ValueError, "folder '{p}' is empty"),
    "folder without config.json": (
        lambda t: write(t / "notes", "readme.txt", "hi"), {}, None, ValueError,
        "folder '{p}' has no config.json, so it is not a model folder (it holds readme.txt)",
    ),
    "corrupt config.json": (
        lambda t: write(t / "m", "config.json", "{"), {}, None, ValueError, "{p}/config.json is not valid JSON",
    ),
    "unknown model_type": (
        lambda t: write(t / "m", "config.json", '{"model_type": "nonsense"}'), {}, None, ValueError,
        "unknown model_type 'nonsense' in {p}/config.json",
    ),
    "not a causal LM": (
        lambda t: write(t / "m", "config.json", '{"model_type": "t5"}'), {}, None, ValueError,
        "model_type 't5' in {p}/config.json is not a causal (decoder-only) language model; expected one of [",
    ),
    "causal LM without an adapter": (
        lambda t: write(t / "m", "config.json", '{"model_type": "bert"}'), {}, None, ValueError,
        "model_type 'bert' in {p}/config.json loads as BertLMHeadModel, which the toolkit has no adapter for",
    ),
    "no safetensors weights": (
        lambda t: without_weights(plain_folder(t)), {}, None, ValueError, "folder '{p}' has no *.safetensors weights",
    ),
    "pruned folder without its tokenizer": (
        lambda t: pruned_folder(t, tokenizer=False), {}, None, ValueError,
        "folder '{p}' has no tokenizer (none of tokenizer.json",
    ),
    "tokenizer larger than the embedding": (
        lambda t: plain_folder(t, big_tokenizer()), {}, None, ValueError,
        f"the tokenizer has {len(big_tokenizer())} tokens (ids up to {len(big_tokenizer()) - 1}) but the model's "
        "embedding has 128 rows",
    ),
    "tokenizer id past the embedding": (
        lambda t: plain_folder(t, sparse_tokenizer()), {}, None, ValueError,
        "the tokenizer has 4 tokens (ids up to 500) but the model's embedding has 128 rows",
    ),
    "cuda without CUDA": (
        plain_folder, {"device": "cuda"}, no_cuda, ValueError, "device='cuda' but CUDA is not available",
    ),
    "cuda index without CUDA": (
        plain_folder, {"device": "cuda:1"}, no_cuda, ValueError, "device='cuda:1' but CUDA is not available",
    ),
    "mps without MPS": (
        plain_folder, {"device": "mps"}, no_mps, ValueError, "device='mps' but MPS (Apple GPU) is not available",
    ),
    "device_map cuda without CUDA": (
        plain_folder, {"device_map": "cuda"}, no_cuda, ValueError, "device_map='cuda' but CUDA is not available",
    ),
    "unknown device": (plain_folder, {"device": "gpu"}, None, ValueError, "unknown device 'gpu'"),
    "device of a wrong type": (plain_folder, {"device": 1.5}, None, TypeError, "got 1.5"),
    "trust_remote_code not a bool": (
        plain_folder, {"trust_remote_code": "no"}, None, TypeError, "trust_remote_code must be True or False, got 'no'",
    ),
    "unknown dtype": (plain_folder, {"dtype": "float33"}, None, ValueError, "unknown dtype 'float33'"),
    "hub id, hub unreachable": (
        lambda t: "org/missing-model", {}, hub_down, ValueError,
        "'org/missing-model' is not a built-in model (list: ['gemma3-270m', 'smollm2-135m']), not a local folder, "
        "and the Hugging Face hub is unreachable (no connection (test))",
    ),
    "hub id with a dot, hub unreachable": (
        lambda t: "org/Model-1.7B", {}, hub_down, ValueError,
        "'org/Model-1.7B' is not a built-in model",
    ),
    "hub id, HF_HUB_OFFLINE=1": (
        lambda t: "org/missing-model", {}, hub_offline, ValueError,
        "the Hugging Face hub is unreachable (HF_HUB_OFFLINE=1 is set)",
    ),
    # pruning.json: corrupt, empty, wrong shape, inconsistent with the weights
    "empty pruning.json": (
        lambda t: write(pruned_folder(t), PRUNING_SPEC, ""), {}, None, ValueError,
        "{p}/pruning.json is empty; expected a JSON object",
    ),
    "corrupt pruning.json": (
        lambda t: write(pruned_folder(t), PRUNING_SPEC, '{"format": '), {}, None, ValueError,
        "{p}/pruning.json is not valid JSON",
    ),
    "pruning.json holds a list": (
        lambda t: write(pruned_folder(t), PRUNING_SPEC, "[1, 3]"), {}, None, ValueError,
        "{p}/pruning.json holds a JSON list, not an object",
    ),
    "pruning.json of another format": (
        lambda t: edit_spec(pruned_folder(t), format="other/2"), {}, None, ValueError,
        "{p}/pruning.json is not a toolkit pruning spec (format 'other/2')",
    ),
    "pruning.json without layers": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers=None), {}, None, ValueError,
        "{p}/pruning.json: pruned_attention_layers is None; expected a list of layer indices",
    ),
    "pruning.json layers as a string": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers="1,3"), {}, None, ValueError,
        "{p}/pruning.json: pruned_attention_layers is '1,3'",
    ),
    "pruning.json layer twice": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers=[1, 3, 3]), {}, None, ValueError,
        "pruned_attention_layers [1, 3, 3] lists a layer twice",
    ),
    "pruning.json layer out of range": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers=[1, 9]), {}, None, ValueError,
        "layer index 9 is out of range: pruned_attention_layers in {p}/pruning.json holds 9",
    ),
    "pruning.json n_layers disagrees": (
        lambda t: edit_spec(pruned_folder(t), n_layers=5), {}, None, ValueError,
        "{p}/pruning.json records n_layers=5 but {p}/config.json has 4 layers",
    ),
    "pruning.json architecture disagrees": (
        lambda t: edit_spec(pruned_folder(t), architecture="GPT2LMHeadModel"), {}, None, ValueError,
        "{p}/pruning.json was written for GPT2LMHeadModel but {p}/config.json builds LlamaForCausalLM",
    ),
    "pruning.json checksum of a wrong shape": (
        lambda t: edit_spec(pruned_folder(t), weights_sha256="abc"), {}, None, ValueError,
        "{p}/pruning.json: weights_sha256 is 'abc'",
    ),
    "pruning.json lists fewer layers": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers=[1]), {}, None, ValueError,
        "the weights lack the attention of layers [3] (e.g. model.layers.3.input_layernorm.weight",
    ),
    "pruning.json lists more layers": (
        lambda t: edit_spec(pruned_folder(t), pruned_attention_layers=[0, 1, 3]), {}, None, ValueError,
        "{p}/pruning.json lists layers [0] as pruned but the weights hold their attention",
    ),
}


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_bad_input_is_a_clear_error(case, tmp_path, monkeypatch):
    build, kwargs, patch, error, fragment = LOAD_CASES[case]
    target = build(tmp_path)
    if patch is not None:
        patch(monkeypatch)
    with pytest.raises(error, match=re.escape(fragment.format(p=target))):
        load_model(target, **kwargs)


# --------------------------------------------------------------------------------------------------
# A pruned checkpoint proves it is what it claims
# --------------------------------------------------------------------------------------------------
def test_pruned_checkpoint_records_its_weights_and_reloads_exactly(tmp_path):
    model = prune_attention(tiny_model(), PRUNED)
    path = save_pruned(model, tmp_path / "out", tokenizer=tiny_tokenizer())
    spec = read_pruning_spec(path)
    assert spec["pruned_attention_layers"] == PRUNED
    assert set(spec["weights_sha256"]) == {"model.safetensors"}
    assert re.fullmatch(r"[0-9a-f]{64}", spec["weights_sha256"]["model.safetensors"])
    reloaded, _ = load_model(path)
    assert [isinstance(a, PrunedAttention) for a in attention_modules(reloaded)] == [False, True, False, True]
    x = torch.randint(3, 100, (2, 7))
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)


def test_edited_pruning_json_with_fewer_layers_is_rejected(tmp_path):
    """Before: layer 3's attention came back with random weights and the warning was muted."""
    path = edit_spec(pruned_folder(tmp_path), pruned_attention_layers=[1])
    with pytest.raises(ValueError, match=re.escape("lists only [1] as pruned")) as err:
        load_model(path)
    assert "would re-create that attention with random weights" in str(err.value)


def test_modified_weight_file_is_rejected(tmp_path):
    path = pruned_folder(tmp_path)
    weights = load_file(path / "model.safetensors")
    weights["model.layers.0.mlp.up_proj.weight"][0, 0] += 1.0
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    expected = f"the weights in {path} changed since pruning: model.safetensors has sha256"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_model(path)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda p: (p / "model.safetensors").rename(p / "weights.safetensors"), "model.safetensors is missing"),
        (lambda p: save_file({"x": torch.zeros(1)}, p / "extra.safetensors"), "extra.safetensors was not saved"),
    ],
)
def test_renamed_or_added_weight_files_are_rejected(tmp_path, change, fragment):
    path = pruned_folder(tmp_path)
    change(path)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        load_model(path)


def test_checkpoint_without_checksum_warns_and_is_still_checked(tmp_path):
    """Checkpoints of older toolkits have no weights_sha256: they load with a warning saying how to
    re-save; the layer check still runs, so a wrong layer list is still refused."""
    path = edit_spec(pruned_folder(tmp_path), weights_sha256=None)
    with pytest.warns(UserWarning, match=re.escape(f"{path / PRUNING_SPEC} records no weights checksum")):
        model, tok = load_model(path)
    assert n_parameters(model) == n_parameters(prune_attention(tiny_model(), PRUNED))
    save_pruned(model, path, tok, overwrite=True)  # the re-save the warning suggests
    assert "weights_sha256" in read_pruning_spec(path)
    edit_spec(path, weights_sha256=None, pruned_attention_layers=[3])
    with pytest.warns(UserWarning, match="no weights checksum"), pytest.raises(ValueError, match=r"layers \[1\]"):
        load_model(path)


# --------------------------------------------------------------------------------------------------
# Saving into an existing folder
# --------------------------------------------------------------------------------------------------
def test_save_into_a_non_empty_folder_is_refused_and_changes_nothing(tmp_path):
    path = pruned_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    expected = f"folder '{path}' exists and is not empty (README.md, config.json"
    with pytest.raises(FileExistsError, match=re.escape(expected)) as err:
        save_pruned(prune_attention(tiny_model(seed=1), [0]), path, tokenizer=tiny_tokenizer())
    assert "overwrite=True" in str(err.value)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_overwrite_replaces_the_folder_whole(tmp_path):
    path = pruned_folder(tmp_path)
    (path / "stray.txt").write_text("from an earlier run")
    save_pruned(prune_attention(tiny_model(seed=1), [0]), path, tokenizer=tiny_tokenizer(), overwrite=True)
    assert not (path / "stray.txt").exists()
    assert read_pruning_spec(path)["pruned_attention_layers"] == [0]
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]  # no temporary or set-aside folder left
    load_model(path)


@pytest.mark.parametrize(
    "make, kwargs, error, fragment",
    [
        (lambda t: write(t, "f", "x") / "f", {}, FileExistsError, "cannot save to '{p}': it is a file"),
        (lambda t: write(t / "home", "thesis.tex", "x"), {"overwrite": True}, FileExistsError,
         "refusing to overwrite '{p}': it holds no config.json"),
        (lambda t: t, {"overwrite": "yes"}, TypeError, "overwrite must be True or False, got 'yes'"),
    ],
)
def test_bad_save_targets(tmp_path, make, kwargs, error, fragment):
    target = make(tmp_path)
    with pytest.raises(error, match=re.escape(fragment.format(p=target))):
        save_pruned(prune_attention(tiny_model(), [0]), target, **kwargs)


def test_failed_overwrite_keeps_the_old_folder(tmp_path):
    path = pruned_folder(tmp_path)
    before = sorted(p.name for p in path.iterdir())

    def broken(tmp):
        (tmp / "half.safetensors").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder(path, broken, replace=True)
    assert sorted(p.name for p in path.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]


def test_prune_command_refuses_an_existing_folder_before_loading(tmp_path, monkeypatch, capsys):
    model_dir = plain_folder(tmp_path)
    out = write(tmp_path / "out", "config.json", "{}")
    (out / "stray.txt").write_text("x")
    monkeypatch.setattr("toolkit.load_model", lambda *a, **k: pytest.fail("loaded the model before checking OUT"))
    assert main(["prune", str(out), "--model", str(model_dir), "--layers", "1"]) == 2
    assert f"folder '{out}' exists and is not empty" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["prune", str(out), "--model", str(model_dir), "--layers", "1", "--overwrite"]) == 0
    written = ["README.md", "config.json", "generation_config.json", "manifest.json", "model.safetensors",
               "modeling_toolkit_pruned.py", PRUNING_SPEC, "tokenizer.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, "tokenizer_config.json"])
    assert read_pruning_spec(out)["pruned_attention_layers"] == [1]


# --------------------------------------------------------------------------------------------------
# The hub: one quick reachability check, the local cache when it is down
# --------------------------------------------------------------------------------------------------
def test_hub_check_is_one_quick_request(monkeypatch):
    from toolkit.models.loading import _hub_unreachable

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    calls = []

    def head(url, timeout):
        calls.append((url, timeout))
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(httpx, "head", head)
    assert "Name or service not known" in _hub_unreachable()
    assert len(calls) == 1 and calls[0][1] <= 5
    monkeypatch.setattr(httpx, "head", lambda url, timeout: httpx.Response(200))
    assert _hub_unreachable() is None


def test_unreachable_hub_reads_a_cached_model_locally(monkeypatch):
    seen = {}

    def config(source, **kwargs):
        seen.update(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr("toolkit.models.loading._hub_unreachable", lambda timeout=3.0: "test")
    monkeypatch.setattr("toolkit.models.loading.try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    monkeypatch.setattr("toolkit.models.loading.AutoConfig.from_pretrained", config)
    with pytest.raises(ValueError, match="stop here"):
        load_model("org/cached-model")
    assert seen["local_files_only"] is True and seen["trust_remote_code"] is False


def test_device_is_checked_before_the_model_is_loaded(tmp_path, monkeypatch):
    path = plain_folder(tmp_path)
    no_cuda(monkeypatch)
    monkeypatch.setattr("toolkit.models.loading.AutoTokenizer.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    monkeypatch.setattr("toolkit.models.loading.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model(path, device="cuda")
