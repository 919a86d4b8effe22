"""The input contract: a bad input is refused with a known type and a message naming the bad value.

One table per area (importance, scoring, study config, study pre-flight, report, command line).
Every case asserts the exception type and, with ``re.escape``, the exact words that name the value
and what is allowed. Command-line cases assert exit status 2 and one ``error:`` line on stderr,
and that nothing heavy (the model) was loaded first. Tiny random models only.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny import sentiment_task, tiny_model, tiny_tokenizer
from toolkit import attention_importance, predict, select_layers
from toolkit.data.task import Example
from toolkit.models.scoring import label_probs
from toolkit.__main__ import main
from toolkit.study.report import MAX_TAG, artifact_tag, write_report
from toolkit.study import StudyConfig, StudyIncomplete, Summary, run_study
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
