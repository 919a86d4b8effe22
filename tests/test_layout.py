"""The package's layering: arrows point down only, private names stay in their module, imports change nothing.

Parses every module of ``toolkit/`` (ast, no import) and collects the edges of relative and
absolute ``toolkit`` imports, including those inside function bodies: a late import that closes
a cycle is still a cycle. Importing ``toolkit.a.b`` from outside ``toolkit.a`` also runs
``toolkit/a/__init__.py``, so that is an edge too. ``from .x import _name`` across modules is a
private name that has become shared and needs a public name and one home.

The rooms (the folders of ``toolkit/``) have floors, drawn in docs/architecture.md: a room imports
only rooms on lower floors, and the page's tree is the package's tree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = f
    return mods


def _from_target(module: str | None, f: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` names, seen from ``module`` (file ``f``); None for a
    relative import outside the package."""
    if not node.level:
        return node.module or ""
    if module is None:
        return None
    pkg = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Import edges between toolkit modules, and the private names imported across modules."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for name, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names if a.name.split(".")[0] == "toolkit"]
            elif isinstance(node, ast.ImportFrom):
                target = _from_target(name, f, node)
                if target.split(".")[0] != "toolkit":
                    continue
                targets = [(target, a.name) for a in node.names]
            else:
                continue
            for target, imported in targets:
                sub = f"{target}.{imported}" if imported else None
                if sub in mods:  # `from . import x` / `from .pkg import module`
                    edges[name].add(sub)
                    continue
                if imported and imported.startswith("_") and not imported.startswith("__") and target != name:
                    private.append(f"{name} imports {target}.{imported}")
                # importing a package's own submodule from inside it is not an edge to the package
                if target in mods and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    for name, targets in edges.items():  # importing toolkit.a.b runs toolkit/a/__init__.py first
        for target in list(targets):
            parts = target.split(".")
            for n in range(2, len(parts)):
                parent = ".".join(parts[:n])
                if parent in mods and not name.startswith(parent + ".") and name != parent:
                    targets.add(parent)
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[str]:
    cycles, state, stack = [], {}, []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif not state.get(v):
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m)
    return cycles


def test_the_checker_sees_cycles_and_private_imports():
    edges = {"toolkit.a": {"toolkit.b"}, "toolkit.b": {"toolkit.c"}, "toolkit.c": {"toolkit.a"}, "toolkit.d": set()}
    assert _cycles(edges) == ["toolkit.a -> toolkit.b -> toolkit.c -> toolkit.a"]
    assert _cycles({"toolkit.a": {"toolkit.b"}, "toolkit.b": set()}) == []


def test_no_import_cycle():
    edges, _ = _imports(_modules())
    assert edges["toolkit.pruning.attention"] >= {"toolkit.models.loading", "toolkit.models.adapters"}  # real edges
    assert _cycles(edges) == []


def _floors() -> dict[str, int]:
    """Room -> floor, from the numbered list of docs/architecture.md ("1. `_core/` - ...")."""
    floors = {}
    for line in ARCHITECTURE.read_text().splitlines():
        m = re.match(r"(\d+)\. (.*?) - ", line)
        if m:
            for room in re.findall(r"`([\w.]+)/?`", m.group(2)):
                floors[room.removesuffix(".py")] = int(m.group(1))
    return floors


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _arrows_up(edges: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    return sorted(
        f"{a} -> {b}" for a, targets in edges.items() for b in targets
        if _room(a) != _room(b) and floors[_room(a)] <= floors[_room(b)]
    )


def test_rooms_import_only_lower_floors():
    floors = _floors()
    rooms = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert set(floors) == rooms, "docs/architecture.md's floors list every room of toolkit/ once"
    edges, _ = _imports(_modules())
    assert _arrows_up(edges, floors) == []
    # the checker sees an arrow up
    assert _arrows_up({"toolkit.models.loading": {"toolkit.study.run"}}, floors) == ["toolkit.models.loading -> toolkit.study.run"]


def _drawn_tree() -> set[str]:
    """The paths the page's ``text`` tree block draws, relative to toolkit/."""
    block = ARCHITECTURE.read_text().split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0] == "toolkit/"
    paths, stack = set(), []
    for line in block[1:]:
        m = re.match(r"^((?:│   |    )*)(?:├── |└── )(\S+)", line)
        assert m, f"not a tree line: {line!r}"
        depth = len(m.group(1)) // 4
        stack[depth:] = [m.group(2).rstrip("/")]
        paths.add("/".join(stack))
    return paths


def test_architecture_page_draws_the_tree():
    actual = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if "__pycache__" not in p.parts and (p.is_dir() or p.suffix == ".py")
        and not (p.name == "__init__.py" and p.parent != PACKAGE)
    }
    drawn = _drawn_tree()
    assert sorted(actual - drawn) == [], "in toolkit/ but not drawn in docs/architecture.md"
    assert sorted(drawn - actual) == [], "drawn in docs/architecture.md but not in toolkit/"


def test_top_level_has_at_most_twelve_entries():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 12, entries


def test_no_private_name_imported_across_modules():
    _, private = _imports(_modules())
    assert private == []


def test_importing_toolkit_imports_no_inseq_and_sets_no_matplotlib_backend():
    code = (
        "import sys, matplotlib\n"
        "calls = []\n"
        "matplotlib.use = lambda *a, **k: calls.append(a)\n"
        "import toolkit, toolkit.study.report, toolkit.attribution, toolkit.study\n"
        "assert 'inseq' not in sys.modules, 'importing toolkit imported inseq'\n"
        "assert calls == [], f'matplotlib.use called at import: {calls}'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


# A room whose test file keeps an older name while another change edits it: room -> that file. Each
# entry must still exist; rename it to tests/test_<room>_<topic>.py and drop the entry when that lands.
TESTS_AWAITING_A_ROOM_NAME: dict[str, str] = {}  # room -> a test file not yet named after it (none)


def test_every_room_and_package_has_a_test_file_named_after_it():
    """toolkit/<room>/ (and toolkit/metrics/<package>/) has tests/test_<name>.py or tests/test_<name>_<topic>.py
    (`_core` -> test_core*.py)."""
    tests = PACKAGE.parent / "tests"
    names = {p.name for p in tests.glob("test_*.py")}
    missing = []
    for init in sorted(PACKAGE.glob("**/__init__.py")):
        if init.parent == PACKAGE or "__pycache__" in init.parts:
            continue
        name = init.parent.name.lstrip("_")
        if f"test_{name}.py" in names or any(n.startswith(f"test_{name}_") for n in names):
            continue
        if TESTS_AWAITING_A_ROOM_NAME.get(name) in names:
            continue
        missing.append(f"{init.parent.relative_to(PACKAGE.parent)}: tests/test_{name}.py or tests/test_{name}_<topic>.py")
    assert missing == [], missing
    named = [room for room in TESTS_AWAITING_A_ROOM_NAME if f"test_{room}.py" in names
             or any(n.startswith(f"test_{room}_") for n in names)]
    assert named == [], f"drop {named} from TESTS_AWAITING_A_ROOM_NAME: the room has its own test file now"


def _defined(tree: ast.Module) -> set[str]:
    """Names a module defines at top level (not those it imports), plus those its ``__all__`` lists."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            names.add(node.name)
    for node in tree.body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            if isinstance(sub, (ast.FunctionDef, ast.ClassDef)) and not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(sub.name)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            names |= {ast.literal_eval(e) for e in node.value.elts}
    return names


def _alias_imports(files: list[Path], mods: dict[str, Path]) -> list[str]:
    """``from toolkit.x import n`` where x neither defines n, lists it in __all__, nor has a submodule n."""
    defined = {m: _defined(ast.parse(f.read_text())) for m, f in mods.items()}
    name_of = {f: m for m, f in mods.items()}
    found = []
    for f in files:
        here = name_of.get(f)
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not isinstance(node, ast.ImportFrom) or (target := _from_target(here, f, node)) is None:
                continue
            for alias in node.names:
                if target in defined and alias.name not in defined[target] \
                        and f"{target}.{alias.name}" not in mods and alias.name != "*":
                    found.append(f"{f.name}:{node.lineno}: {target}.{alias.name}")
    return found


def test_names_import_from_their_home_not_through_an_alias(tmp_path):
    """A moved name has one path (CHANGELOG.md): the package, tests, benchmarks and tools import it from the module
    that defines it (or lists it in ``__all__``), never through another module that happens to import it."""
    root = PACKAGE.parent
    files = [p for d in ("toolkit", "tests", "benchmarks", "tools") for p in sorted((root / d).rglob("*.py"))]
    mods = _modules()
    assert _alias_imports(files, mods) == []
    probe = tmp_path / "probe.py"  # the checker sees an alias: scoring imports Task, data.task defines it
    probe.write_text("from toolkit.models.scoring import Task, predict\nfrom toolkit.data.task import Task\n")
    assert _alias_imports([probe], mods) == ["probe.py:1: toolkit.models.scoring.Task"]
