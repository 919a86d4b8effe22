"""The course builds: the student converter (markup, stubs, hidden tests), record reading, placeholders.

The student build of the real notebooks must keep no solution text: every line between the solution
markers of the source is checked to be absent (lines that also occur outside any solution region,
e.g. a bare ``return``, are excluded since they legitimately stay).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from tools.course.build import (
    HIDDEN_MARKERS,
    SOLUTION_MARKERS,
    answer_key,
    link_live_explorer,
    build_student,
    fill_placeholders,
    read_record,
    strip_regions,
    student_notebook,
    study_facts,
)
from toolkit._core.validation import InputError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))

SOLUTION_CELL = '''def double(x):
    """Twice x."""
    y = x
    ### BEGIN SOLUTION
    secret = 2 * y
    return secret
    ### END SOLUTION'''

CHECKER_CELL = '''check("double", double)
### BEGIN HIDDEN TESTS
assert double(21) == 42  # hidden
### END HIDDEN TESTS'''


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    ran = nbformat.v4.new_code_cell(SOLUTION_CELL, execution_count=3)
    ran.outputs = [nbformat.v4.new_output("stream", name="stdout", text="secret output\n")]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        ran,
        nbformat.v4.new_code_cell(CHECKER_CELL),
        nbformat.v4.new_markdown_cell("Answer: ### BEGIN SOLUTION\n### BEGIN SOLUTION\nforty-two\n### END SOLUTION"),
        nbformat.v4.new_markdown_cell("the key: {{x}}", metadata={"tags": ["answer-key"]}),
    ]
    return nb


def _run_stub(source: str) -> None:
    namespace: dict = {}
    exec(source, namespace)  # defines double()
    namespace["double"](1)


def test_solution_region_becomes_an_indented_stub_that_raises():
    student = student_notebook(_notebook())
    src = student.cells[1].source
    assert "secret" not in src and "BEGIN SOLUTION" not in src and "END SOLUTION" not in src
    assert '    """Twice x."""\n    y = x\n    # YOUR CODE HERE\n    raise NotImplementedError(' in src
    with pytest.raises(NotImplementedError, match="exercise not done yet"):
        _run_stub(src)


def test_hidden_tests_answer_cells_and_outputs_are_removed():
    nb = _notebook()
    student = student_notebook(nb)
    assert student.cells[2].source == 'check("double", double)'
    assert all("answer-key" not in c.metadata.get("tags", []) for c in student.cells)
    assert len(student.cells) == len(nb.cells) - 1
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert nb.cells[1].outputs and "secret" in nb.cells[1].source  # the source notebook is untouched


def test_markdown_solution_becomes_your_answer_here():
    md = student_notebook(_notebook()).cells[3].source
    assert md == "Answer: ### BEGIN SOLUTION\nYOUR ANSWER HERE"  # a marker mid-line is text, not markup


@pytest.mark.parametrize("source, message", [
    ("a\n### BEGIN SOLUTION\nb", "has no matching"),
    ("a\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside an open region"),
])
def test_unbalanced_markers_are_an_input_error_naming_the_cell(source, message):
    with pytest.raises(InputError, match=f"nb.ipynb, cell 0: .*{message}"):
        strip_regions(source, SOLUTION_MARKERS, ("stub",), "nb.ipynb, cell 0")


def _solution_lines(source: str) -> set[str]:
    """Lines inside solution or hidden-test regions (a line scan, independent of the converter)."""
    inside, on = set(), False
    for line in source.splitlines():
        s = line.strip()
        if s in SOLUTION_MARKERS or s in HIDDEN_MARKERS:
            on = s in (SOLUTION_MARKERS[0], HIDDEN_MARKERS[0])
        elif on:
            inside.add(s)
    return inside


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_build_of_each_notebook_keeps_no_solution(path, tmp_path):
    source = nbformat.read(path, as_version=4)
    student = nbformat.read(build_student(path.parent, tmp_path)[NOTEBOOKS.index(path)], as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "Instructor notes" not in text
    regions = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n.*?### END (SOLUTION|HIDDEN TESTS)", re.S)
    public = "\n".join(regions.sub("", c.source) for c in source.cells if "answer-key" not in c.metadata.get("tags", []))
    secret = {s for c in source.cells for s in _solution_lines(c.source) if len(s) > 8}
    assert secret, "the notebook should hold at least one solution"
    # a solution line may also be public text on purpose (a task that names the call to use): not a leak
    leaked = [s for s in secret if s in text and s not in public]
    assert not leaked
    stubs = [c for c in student.cells if "raise NotImplementedError" in c.source]
    exercises = [c for c in source.cells if "### BEGIN SOLUTION" in c.source and c.cell_type == "code"]
    assert len(stubs) == len(exercises) >= 3
    answers = [c for c in student.cells if "answer" in c.metadata.get("tags", [])]
    assert len(answers) == 3 and all(c.source.endswith("\n\nYOUR ANSWER HERE") for c in answers)
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_exercise_has_task_solution_checker_and_hint(path):
    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        if "### BEGIN SOLUTION" not in cell.source or cell.cell_type != "code":  # markdown: an answer cell
            continue
        name = cell.source.split("def ", 1)[1].split("(", 1)[0]
        assert "exercise" in cells[i - 1].metadata.get("tags", []) and "Difficulty" in cells[i - 1].source
        assert cells[i + 1].source.startswith(f'check("{name}", {name})')
        assert "<details>" in cells[i + 2].source and name in cells[i + 2].source


def test_record_and_placeholders():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)", metadata={"tags": ["record"]})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text='noise\n{"n": 80, "ci": {"low": -0.0412}}\n')]
    nb.cells = [cell]
    rec = read_record(nb)
    assert rec == {"n": 80, "ci": {"low": -0.0412}}
    assert fill_placeholders("n = {{n}}, low {{ ci.low :+.2f}}", rec) == "n = 80, low -0.04"
    with pytest.raises(InputError, match=r"placeholder \{\{ci.high\}\} has no value"):
        fill_placeholders("{{ci.high}}", rec, "nb")
    cell.outputs = []
    with pytest.raises(InputError, match="no output; execute the notebook first"):
        read_record(nb)


def test_answer_key_fills_questions_from_the_record(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 09 · A test notebook"),
                nbformat.v4.new_markdown_cell("## Questions\n1. Why?", metadata={"tags": ["questions"]}),
                nbformat.v4.new_code_cell("", metadata={"tags": ["record"]}),
                nbformat.v4.new_markdown_cell("delta {{d:.2f}} at n = {{n}}", metadata={"tags": ["answer-key"]})]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text=json.dumps({"d": 0.123, "n": 40}))]
    (tmp_path / "ex").mkdir()
    nbformat.write(nb, tmp_path / "ex" / "09_test.ipynb")
    (tmp_path / "ex" / "timings.json").write_text('{"09": {"ci": 12.3}}')
    text = answer_key(tmp_path / "ex", tmp_path / "out").read_text()
    assert "## 09 · A test notebook" in text and "### Questions\n1. Why?" in text
    assert "delta 0.12 at n = 40" in text and "ci 12 s" in text
    html = (tmp_path / "out" / "answer_key.html").read_text()
    assert html.count("<h2") == 1 and "MathJax" not in html


def test_answer_key_html_loads_mathjax_for_its_formulas(tmp_path):
    """With a MathJax link the page configures $...$ and loads it; the TeX reaches the page intact."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 09 · A test notebook"),
                nbformat.v4.new_markdown_cell("## Questions\n1. Is $\\mathrm{ECE} = \\sum_b w_b |a_b - c_b|$?",
                                              metadata={"tags": ["questions"]}),
                nbformat.v4.new_code_cell("", metadata={"tags": ["record"]})]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="{}")]
    (tmp_path / "ex").mkdir()
    nbformat.write(nb, tmp_path / "ex" / "09_test.ipynb")
    answer_key(tmp_path / "ex", tmp_path / "out", mathjax_url="vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full")
    html = (tmp_path / "out" / "answer_key.html").read_text()
    assert "<script src='vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full'></script>" in html
    assert "inlineMath: [['$','$']" in html
    assert "$\\mathrm{ECE} = \\sum_b w_b |a_b - c_b|$" in html


def test_study_facts_reads_the_committed_table():
    facts = study_facts(REPO / "benchmarks" / "results" / "cross_model_table.csv",
                        REPO / "benchmarks" / "studies" / "cross_model.yaml")
    assert set(facts) == {"n", "equivalent_k", "ece_changed", "accuracy"} and facts["n"] == 100
    assert all(" k=" in s for s in facts["equivalent_k"] + facts["ece_changed"] + facts["accuracy"])
    # SmolLM2 on yelp, random k=3: -0.19 [-0.28, -0.09] in the committed table
    assert "random k=3: -0.19 [-0.28, -0.09]" in facts["accuracy"]


def test_offline_slides_name_what_is_missing_without_npm(tmp_path, monkeypatch):
    from tools.course.vendor import vendor_web_libraries

    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(InputError, match="need npm"):
        vendor_web_libraries(tmp_path / "slides")


def test_vendored_tarball_keeps_only_the_listed_members(tmp_path):
    import io
    import tarfile

    from tools.course.vendor import extract_package

    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name in ["package/dist/reveal.js", "package/plugin/notes/notes.js", "package/test/x.js", "other/y.js"]:
            data = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert extract_package(tgz, tmp_path / "out", ("dist/", "plugin/notes/")) == 2
    kept = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert kept == ["dist/reveal.js", "plugin/notes/notes.js"]
    assert (tmp_path / "out" / "dist" / "reveal.js").read_text() == "package/dist/reveal.js"


def test_slides_point_to_the_live_explorer_before_the_frozen_one():
    nb = nbformat.read(REPO / "notebooks" / "02_pruning.ipynb", as_version=4)
    linked = link_live_explorer(nb)
    i = next(i for i, c in enumerate(linked.cells) if c.cell_type == "code" and "PruningExplorer(" in c.source)
    assert "make explorer" in linked.cells[i - 1].source and "http://127.0.0.1:8866/" in linked.cells[i - 1].source
    assert len(linked.cells) == len(nb.cells) + 1  # one link, and the notebook itself untouched
    assert not any("Live explorer" in c.source for c in nb.cells)
