"""Implement-and-check exercises for the five notebooks (ARENA-style checkers, nbgrader-style cells).

Use from a notebook::

    from toolkit.course import check, exercise, list_exercises
    print(exercise("ece").stub)      # the code cell to fill in (signature, docstring, NotImplementedError)
    check("ece", ece)                # runs your ece on every case and compares with toolkit.metrics.calibration.ece

``check`` returns a result shown as a green "all N cases passed", or raises :class:`ExerciseFailed`
(an AssertionError that Jupyter shows without a traceback) naming the case and its inputs, the
expected and received values, and the exercise's hint.

Adding an exercise:

1. Pick the notebook's module (``importance_exercises``, ``pruning_exercises``,
   ``faithfulness_exercises``, ``calibration_exercises``, ``study_exercises``) and write an
   :class:`Exercise`: ``name`` (the function the student writes), ``notebook``, ``title``,
   ``difficulty`` and ``importance`` (1-3), ``minutes``, ``signature`` (``def`` line plus a
   docstring that states the formula and its source), ``hint`` (markdown).
2. ``cases``: a function returning :class:`Case` s, each a name saying what it tests (typical,
   ties, empty bins, k = 0, one element ...) and the arguments. Seed all randomness; build a
   model with ``pruning_exercises.tiny_llama`` and cache it (each case gets deep copies).
3. ``reference``: the toolkit's own, tested function wrapped to the student's signature. If the
   toolkit has no array-level function for it, add a public one to the metric module and make
   the module's own code use it (one home), rather than a second implementation here.
4. ``compare``: one of ``scalar``, ``floats``, ``scalar_or_array``, ``exact_int``, ``exact_ints``, ``boolean``,
   ``fields`` with a tolerance, and say in ``tolerance`` where it comes from.
5. Append it to the module's ``EXERCISES`` and add a correct solution and at least two plausible
   wrong ones to ``tests/course_answers.py`` (``SOLUTIONS`` / ``MUTANTS``): the test fails for an
   exercise without them.

This package sits above the metric modules: it imports them, nothing in ``toolkit`` imports it.
"""

from .checking import NOTEBOOKS, Case, CheckResult, Exercise, ExerciseFailed, Mismatch
from .exercises import EXERCISES, check, exercise, list_exercises, register_exercise

__all__ = [
    "EXERCISES",
    "NOTEBOOKS",
    "Case",
    "CheckResult",
    "Exercise",
    "ExerciseFailed",
    "Mismatch",
    "check",
    "exercise",
    "list_exercises",
    "register_exercise",
]
