"""The student release installs and runs with nothing from the instructor's repository.

`make release` writes a folder a student downloads; this test builds it in a temporary folder,
runs its own `install.sh` into a fresh virtual environment (its pinned requirements, the toolkit
wheel it carries, the model package), and executes a student notebook in that environment up to
its first checker cell: the student's first `check(...)` is reached without an error. The
repository is not on the kernel's path (the kernel runs from the release's folder, with PYTHONPATH
cleared), so a file the release forgot would fail here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.course.grading import build_release

REPO = Path(__file__).resolve().parents[1]

RUN_TO_FIRST_CHECKER = r"""
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
first = next(i for i, c in enumerate(nb.cells) if "checker" in c.get("metadata", {}).get("tags", []))
nb.cells = nb.cells[:first]
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
import toolkit
print("ran", first, "cells; toolkit from", toolkit.__file__)
"""


@pytest.mark.notebook
def test_a_fresh_venv_from_the_release_alone_reaches_the_first_checker(tmp_path):
    out = build_release(REPO / "notebooks", tmp_path / "attn-prune-course", archive=False)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)  # a plain interpreter, not this venv
    env["TOOLKIT_PROFILE"] = "ci"
    done = subprocess.run(["sh", "install.sh"], cwd=out, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    python = out / ".venv" / "bin" / "python"
    notebook = out / "notebooks" / "01_layer_importance.ipynb"
    ran = subprocess.run([str(python), "-c", RUN_TO_FIRST_CHECKER, str(notebook), str(notebook.parent)],
                         cwd=out, env=env, capture_output=True, text=True, timeout=1200)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert str(out / ".venv") in ran.stdout  # the release's own toolkit, not the repository's
