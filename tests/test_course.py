"""The course's exercise checkers: correct solutions pass, stubs and plausible wrong solutions fail clearly.

SOLUTIONS (tests/course_answers.py) are written independently of the toolkit (what a student would write), so a
passing check means two implementations agree, not that the toolkit agrees with itself.
MUTANTS are plausible mistakes; each must be rejected with a message that names the case, the
expected and the received value. Every registered exercise needs a solution and >= 2 mutants.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from course_answers import MUTANTS, SOLUTIONS, hook_never_removed, unpaired_ci, drop_with_hook, ece, holm
from course_answers import paired_accuracy_ci
from toolkit.course import NOTEBOOKS, Case, CheckResult, Exercise, ExerciseFailed, check, exercise, list_exercises
from toolkit.course import register_exercise
from toolkit.course.checking import scalar
from toolkit._core.validation import InputError

NAMES = list(list_exercises()["name"])
MUTANT_CASES = [(name, label, fn) for name, rows in MUTANTS.items() for label, fn in rows]


# ----------------------------------------------------------------------------- tests


def test_every_exercise_has_a_solution_and_at_least_two_mutants():
    assert set(SOLUTIONS) == set(NAMES)
    assert set(MUTANTS) == set(NAMES)
    assert all(len(MUTANTS[name]) >= 2 for name in NAMES), {n: len(MUTANTS[n]) for n in NAMES}


def test_list_exercises_table():
    table = list_exercises()
    assert list(table.columns) == ["name", "notebook", "title", "difficulty", "importance", "minutes", "signature"]
    assert len(table) >= 17
    assert table["name"].is_unique
    counts = table.groupby("notebook").size()
    assert set(counts.index) == set(NOTEBOOKS) and (counts >= 3).all()
    assert table["difficulty"].between(1, 3).all() and table["importance"].between(1, 3).all()
    assert (table["minutes"] >= 1).all()
    assert list(list_exercises("04_calibration")["name"]) == ["ece", "brier", "nll", "fit_temperature"]
    for sig, name in zip(table["signature"], table["name"]):
        assert sig.startswith(f"def {name}(")
    with pytest.raises(InputError, match="unknown notebook"):
        list_exercises("06_nothing")


@pytest.mark.parametrize("name", NAMES)
def test_record_and_stub(name):
    record = exercise(name)
    assert isinstance(record, Exercise) and record.name == name
    assert record.hint.strip() and record.tolerance and record.compared_with
    assert len(record.docstring) > 80  # states the formula, not just a title
    assert len(record.cases()) >= 3
    assert len({c.name for c in record.cases()}) == len(record.cases())


@pytest.mark.parametrize("name", NAMES)
def test_the_solution_passes(name):
    result = check(name, SOLUTIONS[name])
    assert isinstance(result, CheckResult)
    assert result.n_cases == len(exercise(name).cases()) >= 3
    assert repr(result) == f"\u2714 {name}: all {result.n_cases} cases passed"
    assert f"all {result.n_cases} cases passed" in result._repr_html_() and "color:#1a7f37" in result._repr_html_()


@pytest.mark.parametrize("name", NAMES)
def test_the_stub_is_not_implemented_yet(name):
    namespace = {}
    exec(exercise(name).stub, namespace)
    with pytest.raises(ExerciseFailed) as info:
        check(name, namespace[name])
    message = str(info.value)
    assert f"not implemented yet: replace `raise NotImplementedError` in {name} with your code" in message
    assert "hint:" in message
    assert isinstance(info.value, AssertionError)


@pytest.mark.parametrize("name,label,mutant", MUTANT_CASES, ids=[f"{n}-{lab}" for n, lab, _ in MUTANT_CASES])
def test_a_mutant_is_rejected_with_case_expected_received(name, label, mutant):
    with pytest.raises(ExerciseFailed) as info:
        check(name, mutant)
    message = str(info.value)
    case_names = [c.name for c in exercise(name).cases()]
    head = re.fullmatch(rf"{name}: case '(.+)' failed", message.splitlines()[0])
    assert head and head.group(1) in case_names, message
    assert "\n  inputs: " in message
    assert ("expected" in message and "received" in message), message
    assert "hint: " in message
    assert "Traceback" not in message


def test_failure_rendering_has_no_toolkit_paths():
    def wrong_ece(confidence, correct, n_bins=15):
        return 0.5

    with pytest.raises(ExerciseFailed) as info:
        check("ece", wrong_ece)
    lines = info.value._render_traceback_()
    assert isinstance(lines, list) and all(isinstance(x, str) for x in lines)
    text = "\n".join(lines)
    assert "toolkit/" not in text and "site-packages" not in text
    assert "expected 0.0" in text or "expected " in text
    assert "received 0.5" in text
    assert "hint:" in text


def test_a_student_exception_is_named_with_the_students_frames_only():
    def broken_brier(probs, labels):
        onehot = np.eye(probs.shape[1])[labels]
        return float(((probs - onehot.T) ** 2).sum())  # shapes (n, C) and (C, n) do not broadcast

    with pytest.raises(ExerciseFailed) as info:
        check("brier", broken_brier)
    text = "\n".join(info.value._render_traceback_())
    assert "case 'typical: 50 examples, 3 classes' failed" in text
    assert "your function raised ValueError: operands could not be broadcast" in text
    assert "broken_brier" in text and "test_course.py" in text  # the student's frame
    assert "toolkit/" not in text and "checking.py" not in text


def test_an_exception_inside_the_students_hook_is_the_students():
    def bad_hook(model, layer):
        def hook(module, args, output):
            return torch.zeros(3)  # not the (attn_output, attn_weights) tuple the layer unpacks

        return model.model.layers[layer].self_attn.register_forward_hook(hook)

    with pytest.raises(ExerciseFailed) as info:
        check("drop_with_hook", bad_hook)
    text = "\n".join(info.value._render_traceback_())
    assert "your function raised" in text and "case 'layer 0' failed" in text
    assert "toolkit/" not in text


@pytest.mark.parametrize(
    "name,fn,needle",
    [
        ("ece", lambda f, c, n_bins=15: [0.1], "expected a single number (a float), received list"),
        ("cosine_importance", lambda x, y: torch.ones(2),
         "expected a single number (a float), received a tensor of shape (2,)"),
        ("comprehensiveness", lambda p, q: np.reshape(np.subtract(p, q), (-1, 1)),
         "expected a single number (a float), received an array of shape (1, 1)"),
        ("holm", lambda p: np.asarray(p).reshape(1, -1), "expected a float array of shape (5,), received shape (1, 5)"),
        ("k_least_important", lambda s, k: "0,3", "expected a list of layer indices such as"),
        ("paired_accuracy_ci", lambda a, b, n, s: 0.0, "expected a tuple (low, high), received float"),
        ("paired_tost", lambda a, b, m, alpha=0.05: (True, 0.5), "expected a tuple (low, high, p), received tuple"),
        ("paired_tost", lambda a, b, m, alpha=0.05: (True, 0.5, 0.1),
         "low: expected a single number (a float), received a bool"),
        ("drop_with_hook", lambda model, layer: None, "expected the handle that register_forward_hook returns"),
    ],
)
def test_a_wrong_type_or_shape_says_what_was_expected(name, fn, needle):
    with pytest.raises(ExerciseFailed) as info:
        check(name, fn)
    assert needle in str(info.value), str(info.value)


def test_a_pair_may_come_as_an_array():
    def as_array(correct_a, correct_b, n_boot, seed):
        return np.array(paired_accuracy_ci(correct_a, correct_b, n_boot, seed))

    assert check("paired_accuracy_ci", as_array).n_cases == 3


def test_inputs_are_copied_so_a_mutating_solution_cannot_change_the_expected_value():
    def sorts_in_place(pvalues):
        out = holm(pvalues)
        pvalues.sort()
        return out

    assert check("holm", sorts_in_place).n_cases == len(exercise("holm").cases())


def test_the_hook_exercise_leaves_the_cached_model_clean():
    from toolkit.course.pruning_exercises import cached_tiny_llama

    with pytest.raises(ExerciseFailed, match="after handle.remove"):
        check("drop_with_hook", hook_never_removed)
    assert all(not m._forward_hooks for m in cached_tiny_llama().modules())
    assert check("drop_with_hook", drop_with_hook).n_cases == 3  # a left-behind hook reached no later case


def test_nothing_in_toolkit_imports_the_course():
    """The course sits above the metric modules: no toolkit module outside it imports it."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "toolkit"
    for path in package.rglob("*.py"):
        if "course" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any(n == "course" or n.endswith(".course") or ".course." in n for n in names), path


def test_registry_refuses_silent_overwrite_and_unknown_names():
    with pytest.raises(InputError, match="already registered"):
        register_exercise(exercise("ece"))
    with pytest.raises(InputError, match="unknown exercise 'eec'"):
        check("eec", ece)
    with pytest.raises(InputError, match="needs your function"):
        check("ece", 3)


def test_a_malformed_record_is_refused():
    common = dict(notebook="04_calibration", title="t", difficulty=1, importance=1, minutes=1, hint="h",
                  cases=lambda: [Case("c", (1,))], reference=lambda x: x, compare=scalar(), compared_with="x",
                  tolerance="exact")
    with pytest.raises(InputError, match="signature must be"):
        Exercise(name="f", signature="def g(x):\n    '''doc'''", **common)
    with pytest.raises(InputError, match=re.escape("difficulty must be an integer in [1, 3], got 4")):
        Exercise(name="f", signature="def f(x):\n    '''doc'''", **{**common, "difficulty": 4})
    with pytest.raises(InputError, match="notebook"):
        Exercise(name="f", signature="def f(x):\n    '''doc'''", **{**common, "notebook": "07"})


def test_paired_ci_tolerance_covers_monte_carlo_error_but_not_unpairing():
    """The stated CI_ATOL: seeds of a correct paired bootstrap stay inside it, an unpaired one does not."""
    from toolkit.course.pruning_exercises import CI_ATOL

    record = exercise("paired_accuracy_ci")
    for case in record.cases():
        a, b, n_boot, _ = case.args
        ref = np.array(record.reference(*case.args))
        worst = max(np.abs(np.array(paired_accuracy_ci(a, b, n_boot, seed)) - ref).max() for seed in range(20))
        assert worst <= CI_ATOL / 2, (case.name, worst)  # observed 0.0025, one step of 1/n
        gap = np.abs(np.array(unpaired_ci(a, b, n_boot, 0)) - ref).max()
        assert gap >= 2 * CI_ATOL, (case.name, gap)  # observed 0.0375 .. 0.055


IPYTHON_SESSION = r'''
import contextlib, io
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    failed = ip.run_cell("from toolkit.course import check\ndef brier(p, y):\n    return 1 / 0\ncheck('brier', brier)")
    passed = ip.run_cell("check('expected_false_flags', lambda m, alpha: alpha * m)")
print(out.getvalue())
print("RESULT", failed.success, passed.success, type(passed.result).__name__)
'''


def test_ipython_shows_only_the_message(tmp_path):
    """In an IPython shell (what Jupyter runs) a failed check prints the message, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "IPYTHONDIR": str(tmp_path), "PYTHONPATH": str(root), "MPLCONFIGDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", IPYTHON_SESSION], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    text = run.stdout
    assert "RESULT False True CheckResult" in text, run.stdout + run.stderr
    assert "ExerciseFailed" in text and "brier: case 'typical: 50 examples, 3 classes' failed" in text
    assert "your function raised ZeroDivisionError: division by zero" in text and "return 1 / 0" in text
    assert "Traceback" not in text and "toolkit/" not in text and "checking.py" not in text
    assert "\u2714 expected_false_flags: all 5 cases passed" in text


def test_comparators_directly():
    from toolkit.course.checking import Mismatch, boolean, exact_int, floats, scalar

    scalar(atol=1e-9)(np.float32(0.5), 0.5)
    scalar()(float("nan"), float("nan"))
    with pytest.raises(Mismatch, match="expected nan, received 0.0"):
        scalar()(0.0, float("nan"))
    with pytest.raises(Mismatch, match="expected 2.0, received inf"):
        scalar(atol=1.0)(math.inf, 2.0)
    boolean()(np.True_, True)
    with pytest.raises(Mismatch, match=r"expected a bool \(True\), received int 1"):
        boolean()(1, True)
    with pytest.raises(Mismatch, match=r"expected an int \(3\), received float 3.0"):
        exact_int()(3.0, 3)
    with pytest.raises(Mismatch, match=r"1 of 3 entries differ; the largest difference is at index \[2\]"):
        floats(atol=1e-6)([1.0, 2.0, 3.5], np.array([1.0, 2.0, 3.0]))


# ----------------------------------------------------------------------------- precision, interrupts, time limits


def _toy_exercise(**overrides):
    fields_ = dict(name="double", notebook="04_calibration", title="t", difficulty=1, importance=1, minutes=1,
                   hint="multiply by two", signature="def double(x):\n    '''Twice x: 2 x (a float).'''",
                   cases=lambda: [Case("one", (1.0,)), Case("two", (2.0,)), Case("three", (3.0,))],
                   reference=lambda x: 2 * x, compare=scalar(atol=1e-12), compared_with="2 x", tolerance="exact")
    return Exercise(**{**fields_, **overrides})


def test_a_float32_answer_shows_the_difference_and_suggests_float64():
    from toolkit.course.checking import Mismatch, floats

    # the case: 0.09 in float32 prints as 0.09, like the float64 value it misses
    with pytest.raises(Mismatch) as info:
        scalar(atol=1e-9)(np.float32(0.09), 0.09)
    text = str(info.value)
    assert "expected 0.09, received 0.09 (difference +3.58e-09; allowed 1e-09)" in text, text
    assert "float32" in text and "float64" in text
    with pytest.raises(Mismatch) as info:
        floats(atol=1e-9)(np.array([0.5, 0.09], dtype=np.float32), np.array([0.5, 0.09]))
    text = str(info.value)
    assert "largest difference is at index [1]" in text and "difference +3.58e-09" in text and "float64" in text
    with pytest.raises(Mismatch) as info:
        floats(atol=1e-9)(torch.tensor([0.5, 0.09]), np.array([0.5, 0.09]))  # torch's default dtype
    assert "float64" in str(info.value)
    with pytest.raises(Mismatch) as info:  # a float64 answer that is simply wrong gets no dtype advice
        floats(atol=1e-9)(np.array([0.5, 0.1]), np.array([0.5, 0.09]))
    assert "float32" not in str(info.value) and "difference +0.01" in str(info.value)


def test_ctrl_c_in_a_case_ends_the_check_naming_the_case():
    from toolkit.course.checking import run_checks

    def interrupted(x):
        if x == 2.0:
            raise KeyboardInterrupt
        return 2 * x

    with pytest.raises(ExerciseFailed) as info:
        run_checks(_toy_exercise(), interrupted)
    assert str(info.value).startswith("double: interrupted in case 'two'")
    assert info.value.__suppress_context__ and info.value.__cause__ is None  # no traceback chained to it
    assert "checking.py" not in "".join(info.value._render_traceback_())


def test_a_case_past_its_time_limit_ends_the_check_naming_the_case(monkeypatch):
    import signal
    import time

    from toolkit.course.checking import run_checks

    def slow(x):
        if x == 3.0:
            while True:  # a loop that never ends
                time.sleep(0.01)
        return 2 * x

    before = signal.getsignal(signal.SIGALRM)
    monkeypatch.setenv("TOOLKIT_CHECK_TIME_LIMIT", "0.3")
    start = time.perf_counter()
    with pytest.raises(ExerciseFailed, match=r"double: interrupted in case 'three': it ran past the time limit "
                                              r"of 0.3 s"):
        run_checks(_toy_exercise(), slow)
    assert time.perf_counter() - start < 5
    assert signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    def swallows(x):  # a student's `except Exception` cannot hide the limit
        try:
            while True:
                time.sleep(0.01)
        except Exception:
            return 2 * x

    with pytest.raises(ExerciseFailed, match="interrupted in case 'one'"):
        run_checks(_toy_exercise(), swallows)
    monkeypatch.setenv("TOOLKIT_CHECK_TIME_LIMIT", "0")  # 0 = no limit: a fast solution still passes
    assert run_checks(_toy_exercise(), lambda x: 2 * x).n_cases == 3
    monkeypatch.setenv("TOOLKIT_CHECK_TIME_LIMIT", "soon")
    with pytest.raises(InputError, match="TOOLKIT_CHECK_TIME_LIMIT='soon'"):
        run_checks(_toy_exercise(), lambda x: 2 * x)
