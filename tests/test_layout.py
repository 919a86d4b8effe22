"""The package's layering: arrows point down only, private names stay in their module, imports change nothing.

Parses every module of ``toolkit/`` (ast, no import) and collects the edges of relative and
absolute ``toolkit`` imports, including those inside function bodies: a late import that closes
a cycle is still a cycle. ``from .x import _name`` across modules is a private name that has
become shared and needs a public name and one home.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        rel = f.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Import edges between toolkit modules, and the private names imported across modules."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for name, f in mods.items():
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names if a.name.split(".")[0] == "toolkit"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == "toolkit":
                    target = node.module
                else:
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
    assert edges["toolkit.models"] >= {"toolkit.pruning", "toolkit.adapters"}  # the parser sees real edges
    assert _cycles(edges) == []


def test_no_private_name_imported_across_modules():
    _, private = _imports(_modules())
    assert private == []


def test_importing_toolkit_imports_no_inseq_and_sets_no_matplotlib_backend():
    code = (
        "import sys, matplotlib\n"
        "calls = []\n"
        "matplotlib.use = lambda *a, **k: calls.append(a)\n"
        "import toolkit, toolkit.report, toolkit.attribution, toolkit.study\n"
        "assert 'inseq' not in sys.modules, 'importing toolkit imported inseq'\n"
        "assert calls == [], f'matplotlib.use called at import: {calls}'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
