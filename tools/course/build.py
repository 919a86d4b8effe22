"""Course builds from the solution notebooks: the student version, executed copies, slides, the answer key.

One source, several builds (the nbgrader markup, without nbgrader):

- ``### BEGIN SOLUTION`` / ``### END SOLUTION`` in a code cell: the region becomes a stub that raises
  ``NotImplementedError`` (indented like the ``BEGIN`` line); in a markdown cell it becomes
  "YOUR ANSWER HERE".
- ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``: removed from the student version (instructor
  checks, e.g. a solution against the toolkit on the real model).
- A cell tagged ``answer-key``: removed from the student version; its text, with ``{{name}}`` or
  ``{{name.key:.3f}}`` placeholders filled from what the executed notebook recorded, is the answer key.
- A cell tagged ``record``: prints one JSON object of measured values (n, estimates, CIs) on its last
  line of output; the answer key reads it.

nbgrader (0.9.6) reads the same markers (plus per-cell metadata, which :mod:`toolkit.course.grading`
derives from the tags); this module needs only nbformat, nbclient and nbconvert (installed with
JupyterLab), so ``make student`` works without nbgrader.

Command line (the Makefile's ``student``, ``executed``, ``slides`` and ``answer-key`` targets)::

    python -m tools.course.build student OUT [--notebooks DIR]
    python -m tools.course.build execute OUT [--notebooks DIR] [--profile classroom]
    python -m tools.course.build slides EXECUTED OUT [--offline]
    python -m tools.course.build answer-key EXECUTED OUT [--study-table CSV]

nbgrader's metadata, the nbgrader course folder and the student release build on this module:
``python -m toolkit.course.grading annotate|nbgrader|release`` (:mod:`toolkit.course.grading`).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from toolkit._core.validation import InputError
from .vendor import vendor_web_libraries

__all__ = [
    "HIDDEN_MARKERS",
    "SOLUTION_MARKERS",
    "STUB",
    "answer_key",
    "build_slides",
    "build_student",
    "cell_tags",
    "execute_notebooks",
    "fill_placeholders",
    "instructor_free",
    "link_live_explorer",
    "numbered_notebooks",
    "read_record",
    "strip_regions",
    "student_notebook",
    "study_facts",
]

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise not done yet: replace this line with your code")')
MARKDOWN_STUB = "YOUR ANSWER HERE"
ANSWER_TAG, RECORD_TAG, ASSERTS_TAG = "answer-key", "record", "asserts"
PROFILES = ("ci", "classroom", "full")
STUDENT_PROFILE = "classroom"
_PROFILE_DEFAULT = re.compile(r'os\.environ\.get\("TOOLKIT_PROFILE", "full"\)')
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*(?::([^}]*))?\}\}")


def strip_regions(source: str, markers: tuple[str, str], replacement: Sequence[str] | None, where: str) -> str:
    """Replace each region between ``markers`` (marker lines included) by ``replacement`` lines, or drop it.

    Replacement lines get the indentation of the ``BEGIN`` line. A ``BEGIN`` without its ``END`` (or
    the reverse, or a nested ``BEGIN``) raises ``InputError`` naming ``where``.
    """
    begin, end = markers
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise InputError(f"{where}: '{begin}' inside an open region; close it with '{end}' first")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + r for r in (replacement or ()))
        elif stripped == end:
            if not inside:
                raise InputError(f"{where}: '{end}' without a '{begin}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise InputError(f"{where}: '{begin}' has no matching '{end}'")
    return "\n".join(out)


def cell_tags(cell: Mapping[str, Any]) -> list[str]:
    """A cell's tags (empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def instructor_free(nb: nbformat.NotebookNode, *, profile: str = STUDENT_PROFILE) -> nbformat.NotebookNode:
    """A copy without what only the instructor may see, and with ``profile`` as the default profile.

    Removed: cells tagged ``answer-key`` (the answer key's templates) and ``record`` (they print the
    values the closing questions ask for), the ``assert`` lines of cells tagged ``asserts`` (CI's checks;
    one answers a predict-then-run prompt; the cell goes when nothing else is left), every output.
    The parameters cell falls back to ``profile`` instead of ``full`` when ``TOOLKIT_PROFILE`` is unset.
    """
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        tags = cell_tags(cell)
        if ANSWER_TAG in tags or RECORD_TAG in tags:
            continue
        if ASSERTS_TAG in tags:
            kept = [ln for ln in cell.source.splitlines()
                    if not ln.lstrip().startswith(("assert ", "# Cheap checks"))]
            if not "".join(kept).strip():
                continue
            cell.source = "\n".join(kept).strip("\n")
            cell.metadata["tags"] = [t for t in tags if t != ASSERTS_TAG]
        if "parameters" in tags:
            cell.source = _PROFILE_DEFAULT.sub(f'os.environ.get("TOOLKIT_PROFILE", "{profile}")', cell.source)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cells.append(cell)
    out.cells = cells
    return out


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (a copy; ``nb`` is unchanged).

    Solution regions become stubs, hidden tests are removed, and so is everything
    :func:`instructor_free` removes (answer-key and record cells, asserts, outputs); the default
    profile is ``classroom``.
    """
    out = instructor_free(nb)
    cells = []
    for i, cell in enumerate(out.cells):
        where = f"{name}, cell {i}"
        stub = STUB if cell.cell_type == "code" else (MARKDOWN_STUB,)
        src = strip_regions(cell.source, SOLUTION_MARKERS, stub, where)
        cell.source = strip_regions(src, HIDDEN_MARKERS, None, where).rstrip("\n")
        cells.append(cell)  # outputs, counts and timings already went with instructor_free
    out.cells = cells
    return out


def numbered_notebooks(notebooks: Path) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of a folder, in order."""
    paths = sorted(Path(notebooks).glob("[0-9]*.ipynb"))
    if not paths:
        raise InputError(f"no numbered notebooks (NN_name.ipynb) in {notebooks}")
    return paths


def build_student(notebooks: Path, out: Path) -> list[Path]:
    """Write the student version of every numbered notebook of ``notebooks`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in numbered_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(student_notebook(nb, path.name), target)
        written.append(target)
    return written


def execute_notebooks(notebooks: Path, out: Path, *, profile: str = "classroom", timeout: int = 1800,
                      only: Sequence[str] = ()) -> dict[str, float]:
    """Execute the solution notebooks under ``TOOLKIT_PROFILE=profile`` into ``out``; return wall seconds each.

    Each runs in its own folder (so ``../results`` is the checkout's results folder, as under nbmake).
    The wall times are merged into ``out/timings.json`` as ``{notebook: {profile: seconds}}``, with the
    kernel's CPU seconds as ``<profile>_kernel_cpu`` where they can be read.
    """
    import os

    from nbclient import NotebookClient

    if profile not in PROFILES:
        raise InputError(f"profile {profile!r} is not one of {list(PROFILES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    seconds: dict[str, float] = {}
    previous = os.environ.get("TOOLKIT_PROFILE")
    os.environ["TOOLKIT_PROFILE"] = profile  # the kernel inherits it
    try:
        for path in numbered_notebooks(notebooks):
            if only and not any(path.name.startswith(o) for o in only):
                continue
            nb = nbformat.read(path, as_version=4)
            cpu: dict[str, float] = {}
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent.resolve())}})
            # after each cell (the kernel is gone by on_notebook_complete); the last cell's reading stands
            client.on_cell_executed = lambda c=client, cpu=cpu, **_: cpu.update(_kernel_cpu(c))
            start = time.perf_counter()
            client.execute()
            seconds[path.name] = time.perf_counter() - start
            nbformat.write(nb, out / path.name)
            timings.setdefault(path.stem[:2], {})[profile] = round(seconds[path.name], 1)
            if cpu:
                timings[path.stem[:2]][f"{profile}_kernel_cpu"] = round(cpu["seconds"], 1)
            timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
    finally:
        if previous is None:
            os.environ.pop("TOOLKIT_PROFILE", None)
        else:
            os.environ["TOOLKIT_PROFILE"] = previous
    return seconds


def _kernel_cpu(client: Any) -> dict[str, float]:
    """CPU seconds (user + system, children included) the kernel process used; {} when unknown.

    On a shared machine the wall time includes waiting for the CPU; the kernel's CPU time does not,
    so it bounds what the notebook costs on an idle machine (wall >= CPU / cores used).
    """
    try:
        import psutil

        t = psutil.Process(client.km.provisioner.process.pid).cpu_times()
        return {"seconds": t.user + t.system + t.children_user + t.children_system}
    except Exception:  # no psutil, a remote provisioner, a kernel already gone: the wall time still stands
        return {}


def read_record(nb: nbformat.NotebookNode, name: str = "notebook") -> dict[str, Any]:
    """The JSON object the ``record``-tagged cell of an executed notebook printed last."""
    cells = [c for c in nb.cells if RECORD_TAG in cell_tags(c)]
    if len(cells) != 1:
        raise InputError(f"{name} has {len(cells)} cells tagged {RECORD_TAG!r}; expected exactly one")
    text = "".join(o.get("text", "") for o in cells[0].get("outputs", []) if o.get("output_type") == "stream")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{name}: the {RECORD_TAG!r} cell has no output; execute the notebook first "
                         "(make executed)")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise InputError(f"{name}: the {RECORD_TAG!r} cell's last line is not JSON ({err.msg})") from None


def _lookup(values: Mapping[str, Any], dotted: str, where: str) -> Any:
    value: Any = values
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise InputError(f"{where}: placeholder {{{{{dotted}}}}} has no value; recorded keys: "
                             f"{sorted(values)}")
        value = value[part]
    return value


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]" if value else "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def fill_placeholders(template: str, values: Mapping[str, Any], where: str = "template") -> str:
    """Replace ``{{name}}``, ``{{name.key}}`` and ``{{name:.3f}}`` by recorded values (InputError if missing)."""

    def one(match: re.Match) -> str:
        value = _lookup(values, match.group(1), where)
        spec = match.group(2)
        return format(value, spec) if spec else _plain(value)

    return _PLACEHOLDER.sub(one, template)


def study_facts(table_csv: Path, config: Path | None = None, model: str = "smollm2-135m",
                dataset: str = "uci_yelp") -> dict[str, Any]:
    """What a committed study table says about one model and dataset (for notebook 05's answer key).

    Returns ``n`` (``n_eval`` of the study config, when given), ``equivalent_k`` (cells whose accuracy
    TOST showed equivalence), ``ece_changed`` (ECE cells whose paired 95% CI excludes 0, unadjusted)
    and ``accuracy`` (each cell's paired accuracy change with its 95% CI), from the table's
    ``equivalent``, ``delta``, ``delta_low`` and ``delta_high`` columns.
    """
    import pandas as pd

    table = pd.read_csv(table_csv)
    rows = table[(table.model == model) & (table.dataset == dataset) & (table.k > 0)]
    if rows.empty:
        raise InputError(f"{table_csv} has no rows for model={model!r}, dataset={dataset!r} with k > 0")
    acc = rows[rows.metric == "accuracy"]
    ece = rows[rows.metric == "ece"]
    eq = acc[acc.equivalent.astype(str).str.lower() == "true"]
    moved = ece[(ece.delta_low > 0) | (ece.delta_high < 0)]
    n: Any = "?"
    if config is not None:
        import yaml

        n = (yaml.safe_load(Path(config).read_text()) or {}).get("n_eval", "?")
    return {
        "n": n,
        "equivalent_k": [f"{s} k={k}" for s, k in zip(eq.selection, eq.k)],
        "ece_changed": [f"{s} k={k} ({d:+.3f})" for s, k, d in zip(moved.selection, moved.k, moved.delta)],
        "accuracy": [f"{s} k={k}: {d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                     for s, k, d, lo, hi in zip(acc.selection, acc.k, acc.delta, acc.delta_low, acc.delta_high)],
    }


def _questions_text(nb: nbformat.NotebookNode) -> str:
    cells = [c for c in nb.cells if "questions" in cell_tags(c)]
    return cells[0].source if cells else ""


def answer_key(executed: Path, out: Path, *, study_table: Path | None = None,
               study_config: Path | None = None, mathjax_url: str | None = None) -> Path:
    """Write the instructor guide ``out/answer_key.md`` (and ``.html``) from executed solution notebooks.

    For each notebook: its questions (with hints) and the ``answer-key`` cell filled with the values
    its ``record`` cell printed in that run (n, estimates, CIs), plus the measured compute times.
    ``mathjax_url``: MathJax 2 for the HTML's formulas (``$...$``, ``$$...$$``), a link relative to
    ``out`` (the CLI's ``--offline`` copies it next to the page, as for the slides); without it the
    HTML shows the TeX source.
    """
    executed, out = Path(executed), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = executed / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    extra: dict[str, Any] = {}
    if study_table is not None:
        extra["study"] = study_facts(study_table, study_config)
    parts = ["# Answer key and instructor guide",
             "",
             "Built by `make answer-key` from the solution notebooks executed by `make executed` (profile in each "
             "section). Every number below was measured in that run and is quoted with its n; rerun to refresh. "
             "Not for students.",
             ""]
    for path in numbered_notebooks(executed):
        nb = nbformat.read(path, as_version=4)
        record = {**extra, **read_record(nb, path.name)}
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"), path.stem)
        parts += [f"## {title}", ""]
        times = timings.get(path.stem[:2], {})
        measured = [f"{p} {times[p]:.0f} s" + (f" (kernel CPU {times[p + '_kernel_cpu']:.0f} s)"
                                              if p + "_kernel_cpu" in times else "")
                    for p in PROFILES if p in times]
        if measured:
            parts += ["Measured compute (wall): " + ", ".join(measured), ""]
        parts += [_questions_text(nb).replace("## Questions", "### Questions"), ""]
        rubrics = [c for c in nb.cells if "answer" in cell_tags(c)]
        if rubrics:
            parts += ["### Model answers and rubrics (the answer cells' mark scheme)", ""]
            for cell in rubrics:
                head, _, rest = cell.source.partition(SOLUTION_MARKERS[0])
                parts += [head.strip(), "", rest.replace(SOLUTION_MARKERS[1], "").strip(), ""]
        keys = [c for c in nb.cells if ANSWER_TAG in cell_tags(c)]
        for cell in keys:
            parts += ["### What to look for", "", fill_placeholders(cell.source, record, path.name), ""]
    text = "\n".join(parts)
    md_path = out / "answer_key.md"
    md_path.write_text(text)
    from nbconvert.filters import markdown2html

    head = "<!doctype html><meta charset='utf-8'><title>Answer key</title>"
    if mathjax_url:
        head += ("<script type='text/x-mathjax-config'>MathJax.Hub.Config({tex2jax: {inlineMath: "
                 "[['$','$'], ['\\\\(','\\\\)']], processEscapes: true}});</script>"
                 f"<script src='{mathjax_url}'></script>")
    (out / "answer_key.html").write_text(
        head + "<body style='max-width: 60em; margin: auto; font-family: sans-serif'>" + markdown2html(text) + "</body>"
    )
    return md_path


EXPLORER_URL = "http://127.0.0.1:8866/"  # `make explorer` (apps/explorer.ipynb under Voila)


def link_live_explorer(nb: nbformat.NotebookNode, url: str = EXPLORER_URL) -> nbformat.NotebookNode:
    """Before each cell that builds the explorer, a slide saying the picture is frozen and where the live app runs.

    Slides freeze the widget into its last rendering; in a lecture the live explorer (a Voila app,
    ``make explorer``) lets the room choose layers. Returns a copy; the notebook is not changed.
    """
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "PruningExplorer(" in cell.source:
            cells.append(nbformat.v4.new_markdown_cell(
                f"**Live explorer:** the widget below is a frozen picture. Run `make explorer` on the "
                f"projecting machine and open [{url}]({url}): the same explorer as an app, no code on screen; "
                f"choose layers with the room and press evaluate.",
                metadata={"slideshow": {"slide_type": "fragment"}}))
        cells.append(cell)
    nb.cells = cells
    return nb


def build_slides(executed: Path, out: Path, *, offline: bool = False) -> list[Path]:
    """reveal.js slides (nbconvert's slides exporter) of every executed notebook, input of code cells hidden.

    Cells carry ``slideshow.slide_type`` metadata (parameters, asserts, record and answer-key cells are
    ``skip``). By default reveal.js, require.js, jQuery and MathJax load from their CDNs when the slides
    are opened; ``offline=True`` copies them into ``out/vendor/`` first (:func:`vendor_web_libraries`,
    needs npm once) so the folder works without a network.
    """
    from nbconvert import SlidesExporter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    links = vendor_web_libraries(out) if offline else {}
    exporter = SlidesExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                               reveal_scroll=True, **links)  # scroll: a long primer slide stays readable
    written = []
    for path in numbered_notebooks(executed):
        nb = nbformat.read(path, as_version=4)
        if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            raise InputError(f"{path} has no outputs: slides are built from executed notebooks (make executed)")
        nb.cells = [c for c in nb.cells if ANSWER_TAG not in cell_tags(c)]
        body, _ = exporter.from_notebook_node(link_live_explorer(nb))
        target = out / f"{path.stem}.slides.html"
        target.write_text(body)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(prog="python -m tools.course.build", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("student", help="write the student notebooks")
    s.add_argument("out", type=Path)
    s.add_argument("--notebooks", type=Path, default=repo / "notebooks")
    e = sub.add_parser("execute", help="execute the solution notebooks under a profile, with wall times")
    e.add_argument("out", type=Path)
    e.add_argument("--notebooks", type=Path, default=repo / "notebooks")
    e.add_argument("--profile", choices=PROFILES, default="classroom")
    e.add_argument("--only", nargs="*", default=(), help="notebook number prefixes, e.g. 01 04")
    sl = sub.add_parser("slides", help="reveal.js slides from executed notebooks")
    sl.add_argument("executed", type=Path)
    sl.add_argument("out", type=Path)
    sl.add_argument("--offline", action="store_true",
                    help="copy reveal.js, require.js, jQuery and MathJax next to the slides (npm, once)")
    a = sub.add_parser("answer-key", help="the instructor guide from executed notebooks")
    a.add_argument("executed", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--study-table", type=Path, default=repo / "benchmarks" / "results" / "cross_model_table.csv")
    a.add_argument("--study-config", type=Path, default=repo / "benchmarks" / "studies" / "cross_model.yaml")
    a.add_argument("--offline", action="store_true",
                   help="copy MathJax next to the answer key so its formulas render without a network (npm, once)")
    args = p.parse_args(argv)
    if args.command == "student":
        for path in build_student(args.notebooks, args.out):
            print(path)
    elif args.command == "execute":
        for name, sec in execute_notebooks(args.notebooks, args.out, profile=args.profile, only=args.only).items():
            print(f"{name}: {sec:.1f} s under TOOLKIT_PROFILE={args.profile}")
    elif args.command == "slides":
        for path in build_slides(args.executed, args.out, offline=args.offline):
            print(path)
    else:
        mathjax = vendor_web_libraries(args.out)["mathjax_url"] if args.offline else None
        print(answer_key(args.executed, args.out, study_table=args.study_table, study_config=args.study_config,
                         mathjax_url=mathjax))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
