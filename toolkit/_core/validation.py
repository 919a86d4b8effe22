"""Argument checks shared by every module: one test and one wording for each kind of mistake.

Errors name the bad value and what is allowed, in one wording per kind of check:
``batch_size must be an integer >= 1, got 0``, ``alpha must be a float in (0, 0.5), got 0.5``,
``unknown method 'exact'; expected one of ['score', 'wald', 't']``. An integer is an ``int`` or a
numpy integer, never a ``bool`` (``True >= 1`` would otherwise pass as a batch size).

Every user-fixable error in the toolkit is an :class:`InputError` (a ``ValueError``): code that
catches ``ValueError`` keeps working, and the command line turns exactly these into one
``error:`` line (anything else is a bug and keeps its traceback). Its subclasses also carry the
built-in kind a caller may already catch: :class:`InputTypeError` (a ``TypeError``),
:class:`InputFileNotFoundError` (a ``FileNotFoundError``) and :class:`InputFileExistsError`
(a ``FileExistsError``).
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "InputError",
    "InputFileExistsError",
    "InputFileNotFoundError",
    "InputTypeError",
    "check_choice",
    "check_float",
    "check_int",
    "check_layers",
    "check_probability",
    "check_text_list",
    "check_texts",
    "as_bool",
    "is_int",
    "short_repr",
]

T = TypeVar("T")


class InputError(ValueError):
    """A bad argument, file or setting the user can fix; the message names the value and what is allowed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind (a list where a Series is expected, str where Examples are)."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """A file or folder the user named that does not exist."""


class InputFileExistsError(InputError, FileExistsError):
    """A path the toolkit would write to that is taken (a file, or a folder it must not overwrite)."""


def as_bool(values: pd.Series) -> pd.Series:
    """A bool column as written (True/False) or read back from CSV ('True', 'true', 1); NaN is False."""
    return values.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def is_int(value: Any) -> bool:
    """True for ``int`` and numpy integers, False for ``bool`` and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters (``'...'`` marks the cut), for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(value: Any, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in [minimum, maximum], else an InputError naming it.

    The error reads ``<name> must be an integer >= <minimum>, got <value>`` (``in [minimum,
    maximum]`` when there is a maximum).
    """
    if maximum is None:
        if not is_int(value) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    elif not is_int(value) or not minimum <= value <= maximum:
        raise InputError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def check_float(value: Any, name: str, low: float, high: float, *, closed: str = "neither") -> float:
    """``value`` as a float if it is a real number in the interval (low, high), else an InputError naming it.

    ``closed`` in {'neither', 'low', 'high', 'both'} adds the endpoints (``(0, 1]`` is
    ``closed='high'``). NaN and ``bool`` are refused. The error reads ``<name> must be a float in
    (<low>, <high>), got <value>``.
    """
    ends = {"neither": (False, False), "low": (True, False), "high": (False, True), "both": (True, True)}
    check_choice(closed, "closed", ends)
    lo_ok, hi_ok = ends[closed]
    allowed = f"{'[' if lo_ok else '('}{low:g}, {high:g}{']' if hi_ok else ')'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a float in {allowed}, got {short_repr(value)}")
    v = float(value)  # NaN fails both comparisons below
    above = v > low or (lo_ok and v == low)
    below = v < high or (hi_ok and v == high)
    if not (above and below):
        raise InputError(f"{name} must be a float in {allowed}, got {value!r}")
    return v


def check_choice(value: T, name: str, allowed: Collection[Any]) -> T:
    """``value`` if it is one of ``allowed``, else ``InputError("unknown <name> <value>; expected one of [...]")``."""
    if value not in allowed:
        raise InputError(f"unknown {name} {value!r}; expected one of {list(allowed)}")
    return value


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float if it is a real number in the open interval (0, 1) (a level such as alpha)."""
    return check_float(value, name, 0.0, 1.0)


def check_texts(texts: Sequence[str]) -> list[str]:
    """A non-empty list of texts; a single string (which would be read as characters) is refused."""
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, got a single string")
    if not isinstance(texts, Iterable):
        raise InputTypeError(f"texts must be a list of strings, got {short_repr(texts)} ({type(texts).__name__})")
    texts = list(texts)
    if not texts:
        raise InputError("texts is empty; pass at least one text")
    return texts


def check_layers(layers: Iterable[int], n_layers: int, name: str = "layers") -> list[int]:
    """Layer indices as ints, in the given order (duplicates kept), each in [0, n_layers)."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise InputError(f"{name} must be a sequence of integers in [0, {n_layers}), got {layers!r}")
    out = []
    for layer in layers:
        if not is_int(layer):
            raise InputError(f"{name} must be integers in [0, {n_layers}), got {layer!r} ({type(layer).__name__})")
        if not 0 <= layer < n_layers:
            raise InputError(
                f"layer index {layer} is out of range: {name} holds {layer}; allowed: integers in [0, {n_layers}) "
                f"(the model has {n_layers} layers: 0..{n_layers - 1})"
            )
        out.append(int(layer))
    return out


def check_text_list(texts: Sequence[str], name: str = "texts", *, allow_blank: bool = False) -> list[str]:
    """:func:`check_texts`, and every item a ``str`` with at least one non-space character (any str if ``allow_blank``).

    Raises:
        InputTypeError: an item that is not a ``str`` (named by its index and type).
        InputError: an empty list, a single string, an empty or whitespace-only text (by index).
    """
    texts = check_texts(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputTypeError(
                f"{name}[{i}] is {short_repr(text)} ({type(text).__name__}), not a str; {name} must be a list of strings"
            )
        if not allow_blank and not text.strip():
            raise InputError(f"{name}[{i}] is empty or only whitespace ({text!r}); every text needs at least one word")
    return texts
