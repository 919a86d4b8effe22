"""The registry of exercises: ``check``, ``exercise``, ``list_exercises``, ``register_exercise``.

The built-in exercises live in one module per notebook (``importance_exercises`` ..
``study_exercises``); they are registered here in notebook order. ``EXERCISES`` is a
:class:`toolkit._core.registry.Registry`: it refuses to replace an exercise silently (pass
``replace=True`` to mean it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from .._core.registry import Registry
from .._core.validation import InputError, InputTypeError
from . import calibration_exercises, faithfulness_exercises, importance_exercises, pruning_exercises, study_exercises
from .checking import NOTEBOOKS, CheckResult, Exercise, run_checks

__all__ = ["EXERCISES", "check", "exercise", "list_exercises", "register_exercise"]

EXERCISES: Registry[Exercise] = Registry("exercise")
"""Every registered exercise by name, in registration order."""

LIST_COLUMNS = ("name", "notebook", "title", "difficulty", "importance", "minutes", "signature")


def register_exercise(record: Exercise, *, replace: bool = False) -> Exercise:
    """Add an exercise to the registry; an existing name is an error unless ``replace=True``."""
    if not isinstance(record, Exercise):
        raise InputTypeError(f"register_exercise needs an Exercise record, got {type(record).__name__}")
    return EXERCISES.register(record.name, record, replace=replace)


def exercise(name: str) -> Exercise:
    """The :class:`Exercise` record registered under ``name``."""
    return EXERCISES.get(name)


def list_exercises(notebook: str | None = None) -> pd.DataFrame:
    """The exercises as a table, in notebook order.

    Args:
        notebook: only this notebook's (one of ``NOTEBOOKS``); None = all.

    Returns:
        DataFrame with columns name, notebook, title, difficulty (1-3), importance (1-3),
        minutes, signature.
    """
    if notebook is not None and notebook not in NOTEBOOKS:
        raise InputError(f"unknown notebook {notebook!r}; expected one of {list(NOTEBOOKS)} or None")
    rows = [
        {c: getattr(e, c) for c in LIST_COLUMNS}
        for e in sorted(EXERCISES.values(), key=lambda e: NOTEBOOKS.index(e.notebook))
        if notebook is None or e.notebook == notebook
    ]
    return pd.DataFrame(rows, columns=list(LIST_COLUMNS))


def check(name: str, fn: Callable[..., Any]) -> CheckResult:
    """Run the student's ``fn`` on every case of exercise ``name`` and compare with the toolkit.

    Returns:
        A :class:`CheckResult` (shown as a green "all N cases passed").

    Raises:
        ExerciseFailed: the first failing case: its name and inputs, expected vs received, the hint.
        InputError: an unknown exercise name.
    """
    return run_checks(exercise(name), fn)


for _module in (importance_exercises, pruning_exercises, faithfulness_exercises, calibration_exercises,
                study_exercises):
    for _record in _module.EXERCISES:
        register_exercise(_record)
