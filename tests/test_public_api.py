"""The public API: the top-level names, every module's ``__all__``, and one error vocabulary.

- ``toolkit.__all__`` is the one list of the top-level API (at most 30 names, each public in its home module); every other name imports
  from its module, and every module of ``toolkit/`` says what it exports in ``__all__``.
- A user-fixable error is an :class:`toolkit.InputError` (a ``ValueError``): the source holds no
  new ``raise ValueError(``, and the command line turns exactly InputError into one line.
- Tests import public names where one exists (a private helper tested directly has no public face).

Modules are read with ``ast`` (no import) except where a name must be resolved.
"""

from __future__ import annotations

import ast
import collections
import importlib
from pathlib import Path

import pytest

import toolkit
from toolkit.__main__ import main
from toolkit._core.validation import InputError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolkit"

# `raise ValueError(` allowed where a function's error is not the user's to fix (function -> count). One:
# NoKVLayer.crop answers transformers' cache API (a positive count breaks transformers' contract, and
# DynamicLayer.crop raises ValueError there too); toolkit.models.pruned_arch imports no toolkit module, since
# checkpoints carry it verbatim. A new `raise ValueError(` anywhere else fails the test below.
PENDING_VALUE_ERRORS: dict[str, int] = {"NoKVLayer.crop": 1}

# Modules allowed without __all__ (none).
PENDING_ALL: set[str] = set()

# Private helpers that tests exercise directly because no public function exposes them alone.
# A private import with a public alias (the same object under a public name) fails regardless.
PRIVATE_TESTED = {
    "_pack_rows": "attribution.fast: row packing of the batched gradient path",
    "_shared_prefix": "attribution.fast: the prompt prefix shared by a batch",
    "_CACHE_ATTR": "attribution.inseq_backend: where the wrapper cache lives on a model",
    "_shim_ipython_display": "attribution.inseq_backend: inseq's IPython import shim",
    "_hub_unreachable": "models: the offline branch of load_model",
    "_input_ids": "efficiency: input checks shared by the timing functions",
    "_median_times": "efficiency: the median over timing repeats",
    "_model_depth": "study: the depth check run before any cell",
    "_tidy": "study: one cell's record as tidy rows",
    "_cells": "study: the grid of cells a config expands to",
}


def _module_files() -> dict[str, Path]:
    mods = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = f
    return mods


def _bindings(body: list[ast.stmt]) -> set[str]:
    """Names a module body binds at top level (definitions, assignments, imports; inside if/try too)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                names |= _bindings(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                names |= _bindings(handler.body)
    return names


def _dunder_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            return [ast.literal_eval(e) if not isinstance(e, ast.Starred) else "*" for e in node.value.elts]
    return None


# ---- the top-level API ------------------------------------------------------------------------------
def test_the_public_api_is_small_and_each_name_has_one_home():
    """``toolkit.__all__`` is the one list (at most 30 names): each re-exports a public name of the module defining it."""
    api = toolkit.__all__
    assert len(api) <= 30 and len(set(api)) == len(api)
    for name in api:
        obj = getattr(toolkit, name)
        home = importlib.import_module(obj.__module__)
        assert obj.__module__.startswith("toolkit.") and name in home.__all__, f"toolkit.{name} is not public in {obj.__module__}"


def test_every_public_name_resolves_and_says_what_it_is():
    for name in toolkit.__all__:
        obj = getattr(toolkit, name)
        assert obj.__doc__, f"toolkit.{name} has no docstring"


def test_dropped_names_still_import_from_their_modules():
    from toolkit.models.adapters import register_adapter
    from toolkit.metrics.calibration import brier
    from toolkit.metrics.faithfulness import naopc
    from toolkit.models.scoring import label_probs

    assert all(callable(f) for f in (register_adapter, brier, naopc, label_probs))
    with pytest.raises(AttributeError, match="has no attribute 'brier'"):
        toolkit.brier  # noqa: B018


# ---- __all__ in every module ----------------------------------------------------------------------------
def test_every_module_lists_its_exports_and_each_exists():
    missing, unbound = [], []
    for name, f in _module_files().items():
        tree = ast.parse(f.read_text(), str(f))
        exported = _dunder_all(tree)
        if exported is None:
            if name not in PENDING_ALL:
                missing.append(name)
            continue
        bound = _bindings(tree.body)
        lazy = {"*"}
        if name == "toolkit":
            lazy |= {n for n in exported if hasattr(toolkit, n)}  # resolved by the module's __getattr__
        unbound += [f"{name}.{n}" for n in exported if n not in bound and n not in lazy]
    assert not missing, f"modules without __all__: {missing}"
    assert not unbound, f"names in __all__ that the module does not define: {unbound}"


# ---- one error vocabulary -----------------------------------------------------------------------------
def _value_error_sites() -> list[tuple[str, int, str]]:
    """(file, line, enclosing function) of every `raise ValueError(...)` in toolkit/."""
    out = []
    for f in _module_files().values():
        def visit(node: ast.AST, scope: str) -> None:
            for child in ast.iter_child_nodes(node):
                inner = scope
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = f"{scope}.{child.name}" if scope else child.name
                if (isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call)
                        and isinstance(child.exc.func, ast.Name) and child.exc.func.id == "ValueError"):
                    out.append((str(f.relative_to(ROOT)), child.lineno, scope or "<module>"))
                visit(child, inner)

        visit(ast.parse(f.read_text(), str(f)), "")
    return out


def test_no_new_plain_value_error():
    counts = collections.Counter(scope for _, _, scope in _value_error_sites())
    new = {scope: n for scope, n in counts.items() if n > PENDING_VALUE_ERRORS.get(scope, 0)}
    where = [f"{f}:{line} in {scope}" for f, line, scope in _value_error_sites() if scope in new]
    assert not new, (
        "raise InputError (toolkit._core.validation) for a mistake the user can fix, not ValueError: " + ", ".join(where)
    )


def test_input_error_is_a_value_error_with_typed_kinds():
    from toolkit.models.manifest import MixedManifestError
    from toolkit._core.validation import InputFileExistsError, InputFileNotFoundError, InputTypeError

    assert issubclass(InputError, ValueError)
    for kind, builtin in ((InputTypeError, TypeError), (InputFileNotFoundError, FileNotFoundError),
                          (InputFileExistsError, FileExistsError), (MixedManifestError, ValueError)):
        assert issubclass(kind, InputError) and issubclass(kind, builtin)


def test_the_argument_checks_speak_one_wording():
    from toolkit._core.validation import check_choice, check_float, check_int, check_probability

    cases = [
        (lambda: check_int(0, "batch_size", 1), "batch_size must be an integer >= 1, got 0"),
        (lambda: check_int(True, "n", 1), "n must be an integer >= 1, got True"),
        (lambda: check_int(5, "k", 0, 4), "k must be an integer in [0, 4], got 5"),
        (lambda: check_float(0.5, "alpha", 0.0, 0.5), "alpha must be a float in (0, 0.5), got 0.5"),
        (lambda: check_float(float("nan"), "sd", 0.0, float("inf")), "sd must be a float in (0, inf), got nan"),
        (lambda: check_float("x", "p", 0.0, 1.0, closed="high"), "p must be a float in (0, 1], got 'x'"),
        (lambda: check_probability(1.0, "alpha"), "alpha must be a float in (0, 1), got 1.0"),
        (lambda: check_choice("z", "method", ("t", "normal")), "unknown method 'z'; expected one of ['t', 'normal']"),
    ]
    for call, message in cases:
        with pytest.raises(InputError) as err:
            call()
        assert str(err.value) == message


def test_the_old_private_int_checks_are_gone():
    sources = {name: f.read_text() for name, f in _module_files().items()}
    assert [n for n, s in sources.items() if "def _check_int(" in s] == []


def test_cli_prints_one_line_naming_the_bad_value(capsys):
    assert main(["importance", "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: n must be an integer >= 1, got 0\n"


def test_cli_keeps_the_traceback_of_a_plain_value_error(monkeypatch):
    """A ValueError that is not an InputError is a bug in the toolkit, not a user's mistake."""

    def bug(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(toolkit, "load_dataset", bug)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        main(["importance"])


# ---- tests use public names -----------------------------------------------------------------------------
def test_tests_import_public_names_where_one_exists():
    aliased, unlisted = [], []
    for f in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] == "toolkit"):
                continue
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                where = f"{f.relative_to(ROOT)}: from {node.module} import {name}"
                module = importlib.import_module(node.module)
                obj = getattr(module, name)
                homes = {node.module, getattr(obj, "__module__", node.module) or node.module}
                public = [f"{h}.{p}" for h in homes if h.startswith("toolkit")
                          for p in getattr(importlib.import_module(h), "__all__", []) if getattr(importlib.import_module(h), p, None) is obj]
                if public:
                    aliased.append(f"{where} (public: {public[0]})")
                elif name not in PRIVATE_TESTED:
                    unlisted.append(where)
    assert not aliased, f"use the public name: {aliased}"
    assert not unlisted, f"a private helper imported by a test: give it a public name or add it to PRIVATE_TESTED: {unlisted}"


def test_notebooks_use_names_that_exist():
    """Every ``tk.<name>[.<name>]`` a notebook's code reads resolves (notebooks run only in the `notebook` tier)."""
    import json
    import re

    import toolkit as tk

    missing = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            for chain in re.findall(r"\btk((?:\.[A-Za-z_]\w*)+)", "".join(cell["source"])):
                obj = tk
                for part in chain.strip(".").split("."):
                    if not hasattr(obj, part):
                        missing.append(f"{nb.name} cell {i}: tk{chain}")
                        break
                    obj = getattr(obj, part)
                    if not isinstance(obj, type(tk)):
                        break  # a function or class: its own attributes are not the API's business
    assert not missing, missing
