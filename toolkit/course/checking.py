"""The checking machinery: exercise records, their cases, comparisons, and what a student sees.

An :class:`Exercise` holds the text a notebook shows (signature with docstring, hint) and how to
check a student's function: its :class:`Case` s, a ``reference`` (the toolkit's own, already
tested function, wrapped to the student's signature), a ``compare`` that raises :class:`Mismatch`,
and optionally a ``run`` for exercises that need more than one call (a hook, then its removal).
:func:`run_checks` runs every case and returns a :class:`CheckResult`, or raises
:class:`ExerciseFailed` naming the case, its inputs, the expected and received values and the hint.
Nothing here knows a particular exercise; ``toolkit.course.exercises`` keeps the registry.
"""

from __future__ import annotations

import ast
import copy
import html
import math
import os
import signal
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._core.validation import InputError, InputTypeError, check_int, is_int

__all__ = [
    "NOTEBOOKS",
    "Case",
    "CheckResult",
    "Exercise",
    "ExerciseFailed",
    "Mismatch",
    "boolean",
    "case_time_limit",
    "describe",
    "exact_int",
    "exact_ints",
    "fields",
    "floats",
    "run_checks",
    "scalar",
    "scalar_or_array",
    "student_code",
]

NOTEBOOKS = ("01_layer_importance", "02_pruning", "03_faithfulness", "04_calibration", "05_study")

_TOOLKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # toolkit/
_LIBRARY_DIRS = tuple(
    os.path.abspath(p) for p in {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")} if p
)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Case:
    """One call of the student's function: a name that says what it tests, and its arguments.

    Attributes:
        name: what the case tests ("a confidence of exactly 1.0").
        args, kwargs: the arguments; each call gets deep copies, so a function that changes its
            inputs cannot change the expected value or the next case.
        inputs: how to show the inputs in a failure message; empty = summarised from the
            arguments and the parameter names of the exercise's signature.
    """

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    inputs: str = ""


def _default_run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@dataclass(frozen=True)
class Exercise:
    """An implement-and-check exercise (see the package docstring for how to add one).

    Attributes:
        name: the function the student writes (also the registry key).
        notebook: one of ``NOTEBOOKS``.
        title: one line for tables of contents.
        difficulty, importance: 1 (low) .. 3 (high).
        minutes: expected time to solve.
        signature: the stub's ``def`` line and docstring (the formula and its source).
        hint: markdown shown under a failure.
        cases: builds the cases (called on each check; cache expensive inputs in the builder).
        reference: the toolkit's answer for a case's arguments.
        compare: ``compare(received, expected)``; raises :class:`Mismatch` when they differ.
        run: ``run(student_fn, *args, **kwargs) -> received``; default calls the function once.
        compared_with: the toolkit function the reference wraps, for instructors (``exercise(name)``); a
            failure message does not name it, since calling it would answer the exercise.
        tolerance: the tolerance and where it comes from.
    """

    name: str
    notebook: str
    title: str
    difficulty: int
    importance: int
    minutes: int
    signature: str
    hint: str
    cases: Callable[[], Sequence[Case]]
    reference: Callable[..., Any]
    compare: Callable[[Any, Any], None]
    compared_with: str
    tolerance: str
    run: Callable[..., Any] = _default_run

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise InputError(f"exercise name {self.name!r} is not a Python identifier")
        if self.notebook not in NOTEBOOKS:
            raise InputError(f"exercise {self.name!r}: notebook {self.notebook!r}; expected one of {list(NOTEBOOKS)}")
        for attr in ("difficulty", "importance"):
            check_int(getattr(self, attr), f"exercise {self.name!r}: {attr}", 1, 3)
        check_int(self.minutes, f"exercise {self.name!r}: minutes", 1)
        if not self.hint.strip() or not self.title.strip():
            raise InputError(f"exercise {self.name!r} needs a title and a hint")
        tree = ast.parse(self.stub)
        fn = tree.body[0] if tree.body else None
        if not isinstance(fn, ast.FunctionDef) or fn.name != self.name or ast.get_docstring(fn) is None:
            raise InputError(
                f"exercise {self.name!r}: signature must be 'def {self.name}(...):' followed by a docstring"
            )

    @property
    def stub(self) -> str:
        """The code cell a notebook gives the student: the signature and ``raise NotImplementedError``."""
        return self.signature.rstrip() + "\n    raise NotImplementedError\n"

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameter names of the signature, in order."""
        fn = ast.parse(self.stub).body[0]
        return tuple(a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs)

    @property
    def docstring(self) -> str:
        """The docstring of the signature (the formula the student implements)."""
        return ast.get_docstring(ast.parse(self.stub).body[0]) or ""


@dataclass(frozen=True)
class CheckResult:
    """All cases of an exercise passed. Shown green in Jupyter (``_repr_html_``).

    Attributes:
        exercise: the exercise's name.
        cases: the names of the cases that passed, in the order they ran.
    """

    exercise: str
    cases: tuple[str, ...]

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    @property
    def passed(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"\u2714 {self.exercise}: all {self.n_cases} cases passed"

    def _repr_html_(self) -> str:
        names = html.escape(", ".join(self.cases))
        return (
            '<div style="color:#1a7f37;font-weight:600" title="' + names + '">'
            f"\u2714 {html.escape(self.exercise)}: all {self.n_cases} cases passed</div>"
        )


class ExerciseFailed(AssertionError):
    """A student's function failed a case; the message says which, how, and gives the hint.

    Jupyter calls ``_render_traceback_`` and shows only the message: no traceback through the
    checker or the toolkit.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        lines = self.message.splitlines()
        return ["\x1b[1;31mExerciseFailed\x1b[0m: " + lines[0], *lines[1:]]


class Mismatch(Exception):
    """The received value differs from the expected one; the message says how (from a comparison)."""


class _StudentRaised(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


@contextmanager
def student_code() -> Iterator[None]:
    """Attribute any exception inside the block to the student's code (e.g. a forward with their hook)."""
    try:
        yield
    except (Mismatch, _StudentRaised):
        raise
    except Exception as error:  # noqa: BLE001 - every student error is reported, none swallowed
        raise _StudentRaised(error) from error


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with student_code():
            return fn(*args, **kwargs)

    return call


# ----------------------------------------------------------------------------- describing values


def _fmt_float(v: float) -> str:
    """Six significant digits; a whole float keeps its ".0" so it does not read as an int."""
    text = f"{v:.6g}"
    return text + ".0" if text.lstrip("-").isdigit() else text


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def describe(value: Any, limit: int = 8) -> str:
    """A short, one-line description of a value for messages (arrays by shape and first entries)."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return f"tensor({_fmt_float(float(value))})"
        return f"tensor of shape {tuple(value.shape)} ({str(value.dtype).replace('torch.', '')})"
    if isinstance(value, torch.nn.Module):
        n_layers = getattr(getattr(value, "config", None), "num_hidden_layers", None)
        return f"a tiny random {type(value).__name__}" + (f" ({n_layers} layers)" if n_layers else "")
    if isinstance(value, pd.Series):
        return "Series " + describe(value.to_numpy(), limit)
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if is_int(value):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _fmt_float(float(value))
    if isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and value and
                                         all(isinstance(v, (int, float, np.number, bool)) for v in value)):
        arr = np.asarray(value)
        kind = type(value).__name__
        if arr.ndim == 1 and arr.size <= limit:
            body = ", ".join(describe(v) for v in arr.tolist())
            return f"[{body}]" if kind != "tuple" else f"({body})"
        if arr.ndim == 1:
            head = ", ".join(describe(v) for v in arr[:6].tolist())
            return f"{kind} of length {arr.size}: [{head}, ...]"
        if arr.size <= limit:
            return np.array2string(arr, precision=4, separator=", ").replace("\n", "")
        return f"{kind} of shape {arr.shape}"
    if hasattr(value, "model_type") and hasattr(value, "to_dict"):  # a transformers config
        keys = ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "attention_bias")
        shown = ", ".join(f"{k}={getattr(value, k)}" for k in keys if hasattr(value, k))
        return f"{type(value).__name__}({shown})"
    if value is None:
        return "None"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _summary(exercise: Exercise, case: Case) -> str:
    if case.inputs:
        return case.inputs
    names = exercise.parameters
    parts = [f"{names[i] if i < len(names) else f'arg{i}'}={describe(a)}" for i, a in enumerate(case.args)]
    parts += [f"{k}={describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- comparisons


def _as_scalar(received: Any, what: str) -> float:
    if isinstance(received, (bool, np.bool_)):
        raise Mismatch(f"expected {what}, received a bool ({received})")
    if isinstance(received, torch.Tensor):
        if received.ndim != 0:
            raise Mismatch(f"expected {what}, received a tensor of shape {tuple(received.shape)}")
        return float(received)
    if isinstance(received, np.ndarray):
        if received.ndim != 0:
            raise Mismatch(f"expected {what}, received an array of shape {received.shape}")
        received = received[()]
    if isinstance(received, (int, float, np.integer, np.floating)):
        return float(received)
    raise Mismatch(f"expected {what}, received {type(received).__name__}: {describe(received)}")


def _close(r: float, e: float, atol: float, rtol: float) -> bool:
    if math.isnan(e) or math.isnan(r):
        return math.isnan(e) and math.isnan(r)
    if math.isinf(e) or math.isinf(r):
        return r == e
    return abs(r - e) <= atol + rtol * abs(e)


FLOAT32_ADVICE = (
    "your value is float32 (about 7 significant digits); compute in float64, e.g. "
    "`np.asarray(x, dtype=np.float64)` or `t.double()`, before comparing"
)


def _is_float32(value: Any) -> bool:
    """Whether a received value carries float32 (or a narrower float) precision."""
    dtype = getattr(value, "dtype", None)
    if isinstance(value, torch.Tensor):
        return value.dtype in (torch.float32, torch.float16, torch.bfloat16)
    if dtype is not None:
        try:
            return np.issubdtype(dtype, np.floating) and np.dtype(dtype).itemsize <= 4
        except TypeError:
            return False
    return False


def _fmt_diff(d: float) -> str:
    return f"{d:+.3g}"


def scalar(atol: float = 0.0, rtol: float = 0.0) -> Callable[[Any, Any], None]:
    """Compare one number: |received - expected| <= atol + rtol |expected|; NaN only matches NaN.

    The message shows the difference (two numbers that print alike can differ in the 8th digit) and
    suggests float64 when the received value is float32.
    """

    def compare(received: Any, expected: Any) -> None:
        r, e = _as_scalar(received, "a single number (a float)"), float(expected)
        if not _close(r, e, atol, rtol):
            advice = f"\n{FLOAT32_ADVICE}" if _is_float32(received) else ""
            raise Mismatch(f"expected {_fmt_float(e)}, received {_fmt_float(r)} "
                           f"(difference {_fmt_diff(r - e)}; allowed {_fmt_float(atol + rtol * abs(e))}){advice}")

    return compare


def _as_array(received: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if isinstance(received, torch.Tensor):
        received = received.detach().cpu().numpy()
    if isinstance(received, (str, bytes, Mapping)) or received is None:
        raise Mismatch(f"expected {what} of shape {shape}, received {type(received).__name__}: {describe(received)}")
    try:
        arr = np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        raise Mismatch(f"expected {what} of shape {shape}, received {describe(received)}") from None
    if arr.shape != shape:
        raise Mismatch(f"expected {what} of shape {shape}, received shape {arr.shape}: {describe(received)}")
    return arr


def floats(atol: float = 0.0, rtol: float = 0.0, what: str = "an array") -> Callable[[Any, Any], None]:
    """Compare an array elementwise (shape first); NaN only matches NaN.

    The message names the entry with the largest difference and the difference itself, and suggests
    float64 when the received array is float32.
    """

    def compare(received: Any, expected: Any) -> None:
        narrow = _is_float32(received)
        e = np.asarray(expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else expected,
                       dtype=np.float64)
        r = _as_array(received, e.shape, what)
        nan_e, nan_r = np.isnan(e), np.isnan(r)
        if (nan_e != nan_r).any():
            i = tuple(int(j) for j in np.argwhere(nan_e != nan_r)[0])
            raise Mismatch(
                f"at index {_fmt_index(i)}: expected {_fmt_float(e[i])}, received {_fmt_float(r[i])}"
                + (f"\n  expected: {describe(e)}\n  received: {describe(r)}" if e.size <= 8 else "")
            )
        with np.errstate(invalid="ignore"):
            bad = ~nan_e & ~((r == e) | (np.abs(r - e) <= atol + rtol * np.abs(e)))
        if bad.any():
            diff = np.where(bad, np.abs(r - e), -np.inf)
            i = tuple(int(j) for j in np.unravel_index(int(np.nanargmax(np.nan_to_num(diff, nan=np.inf))), e.shape))
            detail = f"\n  expected: {describe(e)}\n  received: {describe(r)}" if e.size <= 8 else ""
            advice = f"\n{FLOAT32_ADVICE}" if narrow else ""
            raise Mismatch(
                f"{int(bad.sum())} of {e.size} entries differ; the largest difference is at index {_fmt_index(i)}: "
                f"expected {_fmt_float(e[i])}, received {_fmt_float(r[i])} (difference {_fmt_diff(r[i] - e[i])}; "
                f"allowed {_fmt_float(atol + rtol * abs(e[i]))}){detail}{advice}"
            )

    return compare


def scalar_or_array(atol: float = 0.0, rtol: float = 0.0) -> Callable[[Any, Any], None]:
    """``scalar`` where the expected value is a float (float inputs), ``floats`` where it is an array."""
    one, many = scalar(atol, rtol), floats(atol, rtol, what="a float array")

    def compare(received: Any, expected: Any) -> None:
        (one if isinstance(expected, float) else many)(received, expected)

    return compare


def exact_int() -> Callable[[Any, Any], None]:
    """Compare one integer exactly (a Python or numpy integer; a float is the wrong type)."""

    def compare(received: Any, expected: Any) -> None:
        if not is_int(received):
            kind = type(received).__name__
            raise Mismatch(f"expected an int ({int(expected)}), received {kind} {describe(received)}")
        if int(received) != int(expected):
            raise Mismatch(f"expected {int(expected)}, received {int(received)}")

    return compare


def exact_ints(what: str = "a list of ints") -> Callable[[Any, Any], None]:
    """Compare a sequence of integers exactly, order included."""

    def compare(received: Any, expected: Any) -> None:
        exp = [int(v) for v in expected]
        if isinstance(received, torch.Tensor):
            received = received.detach().cpu().numpy()
        if isinstance(received, np.ndarray):
            if received.ndim != 1 or not (np.issubdtype(received.dtype, np.integer) or received.size == 0):
                raise Mismatch(f"expected {what}, received an array of shape {received.shape}, dtype {received.dtype}")
            got = [int(v) for v in received]
        elif isinstance(received, (list, tuple)) and all(is_int(v) for v in received):
            got = [int(v) for v in received]
        else:
            raise Mismatch(f"expected {what} such as {exp}, received {type(received).__name__}: {describe(received)}")
        if got != exp:
            raise Mismatch(f"expected {exp}, received {got}")

    return compare


def boolean() -> Callable[[Any, Any], None]:
    """Compare a truth value (bool or numpy bool)."""

    def compare(received: Any, expected: Any) -> None:
        if not isinstance(received, (bool, np.bool_)):
            kind = type(received).__name__
            raise Mismatch(f"expected a bool ({bool(expected)}), received {kind} {describe(received)}")
        if bool(received) != bool(expected):
            raise Mismatch(f"expected {bool(expected)}, received {bool(received)}")

    return compare


def fields(*parts: tuple[str, Callable[[Any, Any], None]]) -> Callable[[Any, Any], None]:
    """Compare a tuple (or a 1-D array) field by field; the message names the field that differs."""
    names = [n for n, _ in parts]

    def compare(received: Any, expected: Any) -> None:
        if isinstance(received, np.ndarray) and received.ndim == 1:  # e.g. np.quantile(x, [q1, q2])
            received = tuple(received)
        if not isinstance(received, (tuple, list)) or len(received) != len(parts):
            raise Mismatch(
                f"expected a tuple ({', '.join(names)}), received {type(received).__name__}: {describe(received)}"
            )
        for (name, cmp), r, e in zip(parts, received, expected):
            try:
                cmp(r, e)
            except Mismatch as m:
                raise Mismatch(f"{name}: {m}") from None

    return compare


# ----------------------------------------------------------------------------- running


def _student_frames(error: BaseException, keep: int = 3) -> str:
    """The last frames of the traceback that lie in the student's code (not the toolkit, not libraries)."""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__)
        if not os.path.abspath(f.filename).startswith(_TOOLKIT_DIR + os.sep)
        and not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)
    ]
    return "".join(traceback.format_list(frames[-keep:]))


CASE_TIME_LIMIT_ENV = "TOOLKIT_CHECK_TIME_LIMIT"
DEFAULT_CASE_TIME_LIMIT = 120.0
"""Seconds one case may run (the student's call and the comparison) before the check stops it;
``$TOOLKIT_CHECK_TIME_LIMIT`` overrides it, 0 turns it off. Every built-in case takes well under a second."""


class _CaseTimeout(BaseException):
    """Raised in the main thread when a case runs past its limit (a BaseException: a student's
    ``except Exception`` cannot swallow it)."""


def case_time_limit() -> float:
    """The per-case limit in seconds (0 = none), from ``$TOOLKIT_CHECK_TIME_LIMIT`` or the default."""
    text = os.environ.get(CASE_TIME_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_CASE_TIME_LIMIT
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{CASE_TIME_LIMIT_ENV}={text!r} is not a number of seconds (0 = no limit)") from None
    if not value >= 0:
        raise InputError(f"{CASE_TIME_LIMIT_ENV}={text!r}; expected seconds >= 0 (0 = no limit)")
    return value


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_CaseTimeout` after ``seconds`` (SIGALRM; only where it exists, in the main thread)."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _CaseTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def run_checks(exercise: Exercise, fn: Callable[..., Any]) -> CheckResult:
    """Run ``fn`` on every case of ``exercise`` and compare it with the reference.

    Raises:
        ExerciseFailed: on the first case that fails (not implemented, an exception in the
            student's code, a wrong type, shape or value).
        InputTypeError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise InputTypeError(
            f"check({exercise.name!r}, fn) needs your function {exercise.name}, got {type(fn).__name__} {describe(fn)}"
        )
    passed = []
    limit = case_time_limit()
    where = f"(compared with the toolkit's own implementation; {exercise.tolerance})"  # unnamed: it is an answer
    hint = f"hint: {exercise.hint.strip()}"
    for case in exercise.cases():
        head = f"{exercise.name}: case '{case.name}' failed\n  inputs: {_summary(exercise, case)}"
        try:
            with _time_limit(limit):
                expected = exercise.reference(*copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs)))
                received = exercise.run(_guarded(fn), *copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs)))
                exercise.compare(received, expected)
        except KeyboardInterrupt:
            raise ExerciseFailed(
                f"{exercise.name}: interrupted in case '{case.name}' (Ctrl-C or the kernel's stop button); "
                f"{len(passed)} of the cases before it passed\n  inputs: {_summary(exercise, case)}\n"
                "A loop that never ends, or one over far more items than the inputs hold? Run your function on "
                "these inputs alone to see."
            ) from None
        except _CaseTimeout:
            raise ExerciseFailed(
                f"{exercise.name}: interrupted in case '{case.name}': it ran past the time limit of {limit:g} s "
                f"(${CASE_TIME_LIMIT_ENV} changes it; 0 = none)\n  inputs: {_summary(exercise, case)}\n"
                "The reference takes well under a second on these inputs: look for a loop that never ends, or one "
                "over far more items than the inputs hold."
            ) from None
        except _StudentRaised as raised:
            error = raised.error
            if isinstance(error, NotImplementedError):
                raise ExerciseFailed(
                    f"{exercise.name}: not implemented yet: replace `raise NotImplementedError` in "
                    f"{_fn_name(fn)} with your code\n{hint}"
                ) from None
            frames = _student_frames(error)
            raise ExerciseFailed(
                f"{head}\n  your function raised {type(error).__name__}: {error}\n"
                + (f"  where, in your code:\n{frames}" if frames else "")
                + hint
            ) from None
        except Mismatch as mismatch:
            text = str(mismatch).replace("\n", "\n  ")
            raise ExerciseFailed(f"{head}\n  {text}\n  {where}\n{hint}") from None
        passed.append(case.name)
    return CheckResult(exercise.name, tuple(passed))

