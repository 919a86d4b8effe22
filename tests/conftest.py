"""Shared fixtures: tiny random models for unit tests, the bundled SmolLM2 for a few slow ones."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2():
    """The bundled real model (SmolLM2-135M-Instruct), loaded once per test session."""
    from toolkit import load_model

    return load_model("smollm2-135m")

# Unit tests use tiny models: one intra-op thread avoids thread hand-off overhead (and, on a busy
# 2-core machine, oversubscription that made tiny matmuls 100x slower).
import torch  # noqa: E402

torch.set_num_threads(1)
