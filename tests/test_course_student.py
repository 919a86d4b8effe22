"""The student build runs cell by cell: every exercise checker fails with its own ExerciseFailed, nothing crashes.

Needs the checker package (``toolkit.course.check``, from the exercises branch): skipped with a
reason when it is missing. Each student notebook runs under TOOLKIT_PROFILE=ci with nbclient's
``allow_errors`` (a checker's failure must not stop the later cells), so a crash anywhere else -
an exercise used by a later cell, a stub that fails at definition time - shows up as a second error.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tools.course.build import build_student

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))


def _checker_package():
    try:
        from toolkit.course import check  # noqa: F401
    except ImportError as err:
        pytest.skip(f"toolkit.course.check is missing ({err}); it comes with the exercises branch")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebook_fails_only_in_its_checkers(path, tmp_path, monkeypatch):
    _checker_package()
    from nbclient import NotebookClient

    monkeypatch.setenv("TOOLKIT_PROFILE", "ci")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    student = build_student(path.parent, tmp_path / "student")[NOTEBOOKS.index(path)]
    nb = nbformat.read(student, as_version=4)
    # run from notebooks/ so that 05's ../results is the checkout's results folder, as under nbmake
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    checkers, failures, crashes = 0, [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "checker" in cell.metadata.get("tags", []):
            checkers += 1
            name = cell.source.split('"')[1]
            if len(errors) != 1 or errors[0].ename != "ExerciseFailed" or not errors[0].evalue.strip():
                failures.append(f"cell {i} ({name}): {[(e.ename, e.evalue[:200]) for e in errors]}")
        elif errors:
            crashes.append(f"cell {i}: {errors[0].ename}: {errors[0].evalue[:300]}")
    assert checkers >= 3
    assert not failures, "checker cells that did not fail with ExerciseFailed:\n" + "\n".join(failures)
    assert not crashes, "cells other than checkers raised:\n" + "\n".join(crashes)
