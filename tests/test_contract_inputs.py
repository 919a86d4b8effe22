"""The input contract: a bad input is refused with a known type and a message naming the bad value.

The one home of the bad-input tests. One table per area (importance, scoring, study config, study
pre-flight, report, command line, model loading). Every case asserts the exception type and, with
``re.escape`` or a fragment, the words that name the value and what is allowed. Command-line cases
assert exit status 2 and one ``error:`` line on stderr, and that nothing heavy (the model) was loaded
first. Then the pruned-checkpoint proofs (edited pruning.json, edited weights, old checkpoints without a
checksum), the whole-folder overwrite and the hub check. Tiny random models only (saved to tmp_path);
no network.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tiny import sentiment_task, tiny_model, tiny_tokenizer
from toolkit import attention_importance, load_model, n_parameters, predict, prune_attention, save_pruned, select_layers
from toolkit.data.task import Example
from toolkit.models.adapters import attention_modules
from toolkit.models.pruned_arch import PrunedAttention
from toolkit.models.scoring import label_probs
from toolkit.__main__ import main
from toolkit.models.checkpoints import PRUNING_SPEC
from toolkit.pruning.attention import read_pruning_spec
from toolkit.study.report import MAX_TAG, artifact_tag, write_report
from toolkit.study import StudyConfig, StudyIncomplete, Summary, run_study
from toolkit._core.folders import write_folder
from toolkit._core.validation import InputError, InputTypeError

TASK = sentiment_task("tiny")
TEXTS = ["the movie was very good .", "i hated the food"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(), tiny_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved tiny model (4 layers): its depth is readable from config.json."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_model().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


# ---- importance -----------------------------------------------------------------------------------
IMPORTANCE_CASES = [
    ([""], {}, InputError, "texts[0] is empty or only whitespace ('')"),
    (["good", " \n"], {}, InputError, "texts[1] is empty or only whitespace (' \\n')"),
    ([1], {}, InputTypeError, "texts[0] is 1 (int), not a str"),
    (None, {}, InputTypeError, "texts must be a list of strings, got None (NoneType)"),
    (TEXTS, dict(max_length=0), InputError, "max_length=0 is invalid; expected an integer >= 1"),
    (TEXTS, dict(max_length=2.5), InputError, "max_length=2.5 is invalid"),
    (["good " * 200], dict(max_length=150), InputError,
     "is 150 tokens (cut to max_length=150), longer than the model's context of 128 tokens"),
    (["good " * 200], {}, InputError,
     "is 200 tokens, longer than the model's context of 128 tokens; shorten it, or pass max_length=<n <= 128>"),
    (["good " * 200], dict(metric="loss_delta"), InputError, "is 200 tokens, longer than the model's context"),
    (TEXTS, dict(batch_size="2"), InputError, "batch_size must be an integer >= 1, got '2'"),
    (TEXTS, dict(metric="cosin"), InputError, "unknown importance metric 'cosin'; expected one of ['cosine'"),
    (TEXTS, dict(metric="loss_delta", task=TASK, labels=[0, 5]), InputError,
     "labels[1] is 5, not a class of task 'tiny'; allowed: class ids 0..1 (0=negative, 1=positive)"),
    (TEXTS, dict(metric="loss_delta", task=TASK, labels=[-1, 0]), InputError, "labels[0] is -1, not a class"),
    (TEXTS, dict(metric="loss_delta", task=TASK, labels=[0]), InputError, "labels has 1 entries but texts has 2"),
]


@pytest.mark.parametrize("texts, kwargs, error, message", IMPORTANCE_CASES)
def test_importance_refuses(tiny, texts, kwargs, error, message):
    model, tok = tiny
    with pytest.raises(error, match=re.escape(message)):
        attention_importance(model, tok, texts, **kwargs)


def test_select_layers_refuses_a_plain_list():
    with pytest.raises(InputTypeError, match=re.escape("importance must be a pandas Series indexed by layer")):
        select_layers([0.3, 0.1, 0.2], 1)
    with pytest.raises(TypeError, match=re.escape("got a list; wrap plain scores as pd.Series(scores)")):
        select_layers([0.3, 0.1, 0.2], 1)


def test_explicit_max_length_cuts_and_says_how_much(tiny):
    model, tok = tiny
    texts = ["the movie was very good .", "bad"]  # 6 and 1 tokens (no BOS)
    with pytest.warns(UserWarning, match=re.escape("max_length=3 dropped 3 tokens from 1 of 2 texts")):
        cut = attention_importance(model, tok, texts, max_length=3)
    # Cutting is exactly scoring the first 3 tokens of each text.
    expected = attention_importance(model, tok, ["the movie was", "bad"])
    np.testing.assert_allclose(cut.to_numpy(), expected.to_numpy(), atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing cut: no warning
        attention_importance(model, tok, texts, max_length=6)


# ---- scoring --------------------------------------------------------------------------------------
PREDICT_CASES = [
    ([Example("a", "", 0)], InputError, "example 'a' has no text to score (text '')"),
    ([Example("b", "good", 1), Example("w", " \t", 0)], InputError, "example 'w' has no text to score (text ' \\t')"),
    ([Example("c", "good", 5)], InputError,
     "example 'c' has label 5, not a class of task 'tiny'; allowed: class ids 0..1 (0=negative, 1=positive)"),
    ([Example("d", "good", -1)], InputError, "example 'd' has label -1, not a class of task 'tiny'"),
    ([Example("e", "good", "positive")], InputError, "example 'e' has label 'positive', not a class"),
    (["good movie"], InputTypeError,
     "data[0] is 'good movie' (str), not a toolkit.Example; pass Example(id, text, label) objects or a Dataset "
     "(for unlabeled texts use toolkit.label_probs(model, tokenizer, task, texts))"),
    ("good movie", InputTypeError, "got a str; for unlabeled texts use toolkit.label_probs"),
    (Example("f", "good", 0), InputTypeError, "got a single Example; wrap it in a list"),
]


@pytest.mark.parametrize("data, error, message", PREDICT_CASES)
def test_predict_refuses(tiny, data, error, message):
    model, tok = tiny
    with pytest.raises(error, match=re.escape(message)):
        predict(model, tok, data, task=TASK, progress=False)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, t: predict(m, t, [Example("a", "good", 0)], task="tiny"), InputTypeError,
         "task must be a toolkit.Task, got a str ('tiny')"),
        (lambda m, t: predict(m, t, [Example("a", "good", 0)], task=TASK, batch_size=0), InputError,
         "batch_size must be an integer >= 1, got 0"),
        (lambda m, t: label_probs(m, t, TASK, ["good", None]), InputTypeError, "texts[1] is None (NoneType), not a str"),
        (lambda m, t: label_probs(m, t, TASK, "good"), InputError, "texts must be a list of strings, got a single"),
    ],
)
def test_scoring_arguments(tiny, call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call(*tiny)


# ---- study config -----------------------------------------------------------------------------------
CONFIG_FILES = [
    ("empty.yaml", "", "is empty (no settings), which would run the full default study"),
    ("comments.yaml", "# levels: [0, 2]\n", "is empty (no settings)"),
    ("empty.toml", "", "is empty (no settings)"),
    ("empty.json", "{}", "is empty (no settings)"),
    ("list.yaml", "- levels\n- models\n", "holds ['levels', 'models'] (list) at the top level; expected a mapping"),
    ("scalar.yaml", "3\n", "holds 3 (int) at the top level; expected a mapping"),
    ("bad.yaml", "levels: [0, 2\nmodels: x\n", "is not valid YAML: expected ',' or ']', but got ':' at line 2"),
    ("bad.json", '{"levels": [0, 2,]}', "is not valid JSON: Expecting value at line 1, column 18"),
    ("bad.toml", "levels = [0, 2\n", "is not valid TOML: "),
    ("unknown.yaml", "levelz: [0, 2]\n", "unknown study option(s) ['levelz']; allowed: ['alpha'"),
    ("level0.yaml", "levels: [0]\n", "StudyConfig.levels=[0] has no pruned level"),
    ("resources.yaml", "resources: {gpu: 1}\n", "StudyConfig.resources has unknown field(s) ['gpu']; allowed: ["),
    ("seed.yaml", "seed: abc\n", "StudyConfig.seed='abc' is invalid; expected an integer"),
    ("models.yaml", "models: [1]\n", "StudyConfig.models[0] is 1; expected a model name"),
    ("options.yaml", "models: [m]\nmodel_options: {m: 5}\n", "model_options['m']=5; expected a mapping"),
    ("config.txt", "levels: [0, 2]\n", "must end in .json, .yaml, .yml or .toml"),
]


@pytest.mark.parametrize("name, text, message", CONFIG_FILES)
def test_config_file_refused_with_its_name(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(f"config file {str(path)!r}") + ".*" + re.escape(message)):
        StudyConfig.from_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"config file {str(tmp_path / 'nope.yaml')!r} does not exist")):
        StudyConfig.from_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=(0,)), "StudyConfig.levels=[0] has no pruned level"),
        (dict(resources={"gpu": 1}), "StudyConfig.resources has unknown field(s) ['gpu']"),
        (dict(models=(1,)), "StudyConfig.models[0] is 1; expected a model name, folder or hub id"),
        (dict(datasets=("",)), "StudyConfig.datasets[0] is ''; expected a dataset name"),
        (dict(seed="0"), "StudyConfig.seed='0' is invalid; expected an integer"),
        (dict(n_random=-1), "StudyConfig.n_random must be an integer >= 0, got -1"),
        (dict(output_dir=5), "StudyConfig.output_dir=5; expected a folder path"),
        (dict(dtype=16), "StudyConfig.dtype=16; expected a str or None"),
    ],
)
def test_config_fields_refused(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        StudyConfig(**kwargs)


def test_from_dict_needs_a_mapping():
    with pytest.raises(InputTypeError, match=re.escape("a study config is a mapping of StudyConfig fields, got a list")):
        StudyConfig.from_dict([{"levels": [0, 2]}])


def test_path_like_model_and_output_dir_become_str(model_dir):
    config = StudyConfig(models=model_dir, output_dir=model_dir)
    assert config.models == (str(model_dir),) and config.output_dir == str(model_dir)
    assert config.digest()  # JSON-serialisable


# ---- study pre-flight: before any model loads ----------------------------------------------------------
PREFLIGHT_CASES = [
    (dict(levels=(0, 100)), "StudyConfig.levels [100] ask(s) for more attention layers than model {model} has (4); "
                            "allowed: integers 0..4 or fractions of the depth in (0, 1)"),
    (dict(datasets=("nope",)), "unknown dataset 'nope'; expected one of ["),
    (dict(methods=("lime",)), "method 'lime' has no fast backend"),
    (dict(methods=("salency",)), "unknown method 'salency'; expected one of ["),
    (dict(models=("smollm3",)), "unknown model 'smollm3': not a built-in model and no such folder"),
    (dict(models=("/no/such/model",)), "model folder '/no/such/model' does not exist"),
]


@pytest.mark.parametrize("overrides, message", PREFLIGHT_CASES)
def test_run_study_refuses_before_loading(tmp_path, model_dir, monkeypatch, overrides, message):
    import toolkit.study.run

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(toolkit.study.run, "load_model", no_load)
    config = StudyConfig.profile("ci", **{"models": (str(model_dir),), "output_dir": str(tmp_path / "out"), **overrides})
    with pytest.raises(ValueError, match=re.escape(message.format(model=repr(str(model_dir))))):
        run_study(config, progress=False)
    assert not (tmp_path / "out").exists()  # nothing written either


def test_levels_checked_after_load_when_the_depth_is_not_at_hand(tmp_path, model_dir, monkeypatch):
    """A model whose config.json cannot be read first (e.g. a hub id not cached): checked after load, before any cell."""
    import toolkit.study.run

    monkeypatch.setattr(toolkit.study.run, "model_depth", lambda *a, **k: None)
    config = StudyConfig.profile("ci", models=(str(model_dir),), levels=(0, 100), output_dir=str(tmp_path))
    with pytest.raises(StudyIncomplete, match=re.escape("StudyConfig.levels [100] ask(s) for more attention layers")):
        run_study(config, progress=False)
    assert not list(tmp_path.glob("*/cells/*.json"))  # no cell computed


# ---- report ---------------------------------------------------------------------------------------------
def _table(model: str, levels=(0, 2)) -> pd.DataFrame:
    rows = []
    for k in levels:
        for metric in ("accuracy", "ece", "brier"):
            rows.append(dict(model=model, dataset="uci_yelp", selection="none" if k == 0 else "cosine", level=k, k=k,
                             layers="", metric=metric, value=0.5 + k / 10, low=0.4, high=0.7))
    return pd.DataFrame(rows)


def _summary() -> Summary:
    return Summary(pd.DataFrame({"k": [0]}), method="saliency")


def test_report_with_a_long_model_path(tmp_path):
    model = "/models/" + "m" * 255  # a folder name at the file system's limit: 263 characters in all
    cells = {(model, "uci_yelp"): {"importance": {"cosine": [0.1, 0.3, 0.2, 0.4]}}}
    path = write_report(tmp_path, _table(model), _summary(), cells, digest="abc")
    names = [p.name for p in tmp_path.glob("*.png")]
    assert len(names) == 2 and all(len(n) <= MAX_TAG + len("importance_.png") for n in names)
    assert all(n in path.read_text() for n in names)


def test_artifact_tags_stay_readable_short_and_distinct():
    assert artifact_tag("smollm2-135m", "uci_yelp") == "smollm2-135m_uci_yelp"
    assert artifact_tag("org/model", "d") == "org_model_d"
    a, b = artifact_tag("/x" * 200, "uci_yelp"), artifact_tag("/y" + "/x" * 199, "uci_yelp")
    assert len(a) == len(b) == MAX_TAG and a != b and a.endswith("uci_yelp")


def test_report_without_a_pruned_level_draws_the_reference(tmp_path):
    path = write_report(tmp_path, _table("m", levels=(0,)), _summary(), {}, digest="abc")
    assert (tmp_path / "metrics_m_uci_yelp.png").exists() and path.exists()


# ---- command line -----------------------------------------------------------------------------------------
def _config(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


CLI_CASES = [
    (lambda t, m: ["study", "--config", _config(t, "e.yaml", "")], "is empty (no settings)"),
    (lambda t, m: ["study", "--config", _config(t, "l.yaml", "- a\n")], "holds ['a'] (list) at the top level"),
    (lambda t, m: ["study", "--config", _config(t, "b.yaml", "levels: [0\n")], "is not valid YAML"),
    (lambda t, m: ["study", "--config", str(t / "missing.yaml")], "missing.yaml' does not exist"),
    (lambda t, m: ["study", "--config", _config(t, "k.yaml", "levelz: [0, 2]\n")], "unknown study option(s) ['levelz']"),
    (lambda t, m: ["study", "--config", _config(t, "z.yaml", "levels: [0]\n")], "StudyConfig.levels=[0] has no pruned"),
    (lambda t, m: ["study", "--config", _config(t, "d.yaml", f"models: ['{m}']\nlevels: [0, 100]\n"), "--dry-run"],
     "StudyConfig.levels [100] ask(s) for more attention layers than model"),
    (lambda t, m: ["study", "--profile", "ci", "--model", "smollm3", "--plan"], "unknown model 'smollm3'"),
    (lambda t, m: ["study", "--profile", "ci", "--dataset", "nope", "--dry-run"], "unknown dataset 'nope'"),
    (lambda t, m: ["study", "--profile", "ci", "--margin", "2", "--dry-run"], "StudyConfig.margin must be a float in (0, 1), got 2.0"),
    (lambda t, m: ["study", "--bogus"], "unrecognized arguments: --bogus (see python -m toolkit --help)"),
    (lambda t, m: ["study", "--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
    (lambda t, m: ["importance", "--metric", "cosin"], "unknown importance metric 'cosin'"),
    (lambda t, m: ["importance", "--plot", str(t / "no" / "x.png")], "/no' does not exist; create it first"),
    (lambda t, m: ["importance", "--plot", str(t / "x.xyz")], "unknown image format 'xyz'; expected one of ["),
    (lambda t, m: ["importance", "--plot", str(t)], "is a folder; expected a file name"),
    (lambda t, m: ["importance", "--dataset", "nope"], "unknown dataset 'nope'"),
    (lambda t, m: ["importance", "--n", "0"], "n must be an integer >= 1, got 0"),
    (lambda t, m: ["importance", "--n", "x"], "argument --n: invalid int value: 'x'"),
    (lambda t, m: ["manifest", str(t)], "has no manifest.json and no study cells"),
    (lambda t, m: ["manifest", str(t / "nothing")], "nothing' is not a folder; expected a checkpoint or study folder"),
    (lambda t, m: ["manifest"], "the following arguments are required: folder"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES)
def test_cli_one_line_exit_2_before_loading(tmp_path, model_dir, monkeypatch, capsys, argv, message):
    import toolkit
    import toolkit.study.run

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(toolkit, "load_model", no_load)
    monkeypatch.setattr(toolkit.study.run, "load_model", no_load)
    monkeypatch.chdir(tmp_path)  # a study that did start would write here, not into the repository
    assert main(argv(tmp_path, model_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch):
    import toolkit

    def bug(*args, **kwargs):
        raise KeyError("not a user mistake")

    monkeypatch.setattr(toolkit, "load_dataset", bug)
    with pytest.raises(KeyError, match="not a user mistake"):
        main(["importance"])

# ==================================================================================================
# Model loading and pruned checkpoints (was tests/test_contract_models.py)
# ==================================================================================================
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
