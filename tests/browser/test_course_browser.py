"""The course in a real browser: one exercise round trip in the student build, and the slides' first figure.

1. JupyterLab (``lab_server.py``) serves the student build of notebook 04. Through the UI: run the
   parameters and import cells, the ``ece`` stub and its checker; the checker's failure must be
   rendered in the page as an error naming the exercise. Then the stub cell's text is replaced by
   the solution (from the source notebook) as typed input, both cells run again, and the checker
   must pass: no error output.
2. Notebook 04 executed under the ci profile, turned into reveal.js slides by
   ``tools.course.build.build_slides``; Chromium opens the HTML file and finds its first figure,
   a loaded PNG inside a slide section. The slides are built ``offline=True`` (reveal.js, require.js,
   jQuery and MathJax copied into the slides folder by npm), so the test also sees reveal.js start
   (``.reveal.ready``) and MathJax typeset the primer's formulas, from ``file://`` with no CDN.

Needs the checker package (``toolkit.course.check``) for part 1: skipped with a reason without it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from chromium import SHOTS, chromium
from lab_server import REPO, jupyter_lab

pytestmark = [pytest.mark.browser]

SOURCE = REPO / "notebooks" / "04_calibration.ipynb"
EXERCISE = "ece"
NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _cell_indices(nb: nbformat.NotebookNode) -> dict[str, int]:
    """DOM positions (= notebook cell positions) of the cells the round trip runs."""
    where: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags:
            where["parameters"] = i
        elif cell.cell_type == "code" and "from toolkit.course import check" in cell.source:
            where["imports"] = i
        elif "solution" in tags and f"def {EXERCISE}(" in cell.source:
            where["solution"] = i
        elif "checker" in tags and cell.source.startswith(f'check("{EXERCISE}"'):
            where["checker"] = i
    assert set(where) == {"parameters", "imports", "solution", "checker"}, where
    return where


def _run_cell(page, index: int) -> None:
    """Select cell `index` in the UI, press Shift+Enter, wait until it has run and the kernel is idle."""
    cell = page.locator(f"{NB} .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    before = cell.locator(".jp-InputPrompt").text_content().strip()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        """([sel, i, before]) => {
            const c = document.querySelectorAll(sel)[i];
            const p = c.querySelector('.jp-InputPrompt').textContent.trim();
            const ind = document.querySelector(sel.split(' ')[0] + ' .jp-Notebook-ExecutionIndicator');
            return /^\\[\\d+\\]:$/.test(p) && p !== before && ind && ind.getAttribute('data-status') === 'idle';
        }""",
        arg=[f"{NB} .jp-Cell", index, before], timeout=300_000, polling=300,
    )


def _errors(page, index: int) -> list[str]:
    cell = page.locator(f"{NB} .jp-Cell").nth(index)
    return [e.inner_text() for e in cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all()]


def test_exercise_round_trip_in_the_student_build(browser, tmp_path):
    try:
        from toolkit.course import check  # noqa: F401
    except ImportError as err:
        pytest.skip(f"toolkit.course.check is missing ({err}); it comes with the exercises branch")
    from tools.course.build import build_student

    student = next(p for p in build_student(SOURCE.parent, tmp_path / "student") if p.name == SOURCE.name)
    nb = nbformat.read(student, as_version=4)
    at = _cell_indices(nb)
    solution = nbformat.read(SOURCE, as_version=4).cells[at["solution"]].source
    assert "raise NotImplementedError" in nb.cells[at["solution"]].source
    env = {"TOOLKIT_PROFILE": "ci", "HF_HUB_OFFLINE": "1"}
    with jupyter_lab([student], tmp_path / "lab", env=env) as lab:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(lab.notebook_url(student.name))
            page.wait_for_selector(f"{NB} .jp-Cell", timeout=120_000)
            try:  # a fresh server may ask which kernel to start: accept its default (python3)
                page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=3000)
                page.locator(".jp-Dialog .jp-mod-accept").click()
            except Exception:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            for name in ("parameters", "imports", "solution", "checker"):
                _run_cell(page, at[name])
            failed = _errors(page, at["checker"])
            page.screenshot(path=str(SHOTS / "course_exercise_failed.png"), full_page=False)
            assert len(failed) == 1, f"the stub's checker should render one error, got {failed}"
            assert "ExerciseFailed" in failed[0] or EXERCISE in failed[0], failed[0][:500]
            assert not _errors(page, at["solution"])  # defining the stub is not an error

            # The student's fix: replace the stub cell's text by the solution, as typed input.
            editor = page.locator(f"{NB} .jp-Cell").nth(at["solution"]).locator(".cm-content")
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text(solution)  # text insertion: no auto-indent or bracket closing
            typed = editor.inner_text()
            assert "### BEGIN SOLUTION" in typed and "NotImplementedError" not in typed
            _run_cell(page, at["solution"])
            _run_cell(page, at["checker"])
            page.screenshot(path=str(SHOTS / "course_exercise_passed.png"), full_page=False)
            assert not _errors(page, at["solution"]) and not _errors(page, at["checker"])
        finally:
            page.close()


def test_slides_open_and_show_their_first_figure(browser, tmp_path, monkeypatch):
    from tools.course.build import build_slides, execute_notebooks

    try:
        from toolkit.course import check  # noqa: F401
    except ImportError as err:
        pytest.skip(f"toolkit.course.check is missing ({err}); the solution notebooks call it")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(SOURCE, notebooks / SOURCE.name)
    execute_notebooks(notebooks, tmp_path / "executed", profile="ci")
    if shutil.which("npm") is None and not os.environ.get("CI"):
        pytest.skip("offline slides need npm to fetch reveal.js, require.js, jQuery and MathJax once")
    slides = build_slides(tmp_path / "executed", tmp_path / "slides", offline=True)
    assert [p.name for p in slides] == ["04_calibration.slides.html"]
    html = slides[0].read_text()
    assert "Instructor notes" not in html and "BEGIN SOLUTION" not in html  # skipped / excluded cells
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(slides[0].as_uri())
        page.wait_for_selector(".reveal .slides section", state="attached", timeout=30_000)
        # reveal.js and MathJax came from vendor/ (file://, no network): reveal marks itself ready and
        # MathJax typesets the primer's formulas
        page.wait_for_selector(".reveal.ready", state="attached", timeout=30_000)
        page.wait_for_selector(".reveal .slides .MathJax_CHTML", state="attached", timeout=60_000)
        figure = page.locator(".reveal .slides section img").first
        figure.wait_for(state="attached", timeout=30_000)
        size = figure.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert size[0] and size[1] > 100 and size[2] > 100, size  # a decoded PNG, not a broken image
        title = page.locator(".reveal .slides section h1").first.text_content()
        assert re.search(r"04 . Is the model's confidence still calibrated", title), title
        page.screenshot(path=str(SHOTS / "course_slides.png"))
    finally:
        page.close()
