"""Argument checks shared by every module: one test and one wording for each kind of mistake.

Errors name the bad value and what is allowed (``ValueError("batch_size must be an integer >= 1,
got 0")``). An integer is an ``int`` or a numpy integer, never a ``bool`` (``True >= 1`` would
otherwise pass as a batch size).

Every check raises :class:`InputError` (a ``ValueError``) or, for a value of the wrong kind,
:class:`InputTypeError` (both a ``TypeError`` and an ``InputError``): code that catches
``ValueError`` keeps working, and the command line turns exactly these into one ``error:`` line.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Iterable, Sequence
from typing import Any, TypeVar

__all__ = [
    "InputError",
    "InputTypeError",
    "check_choice",
    "check_int",
    "check_layers",
    "check_probability",
    "check_text_list",
    "check_texts",
    "is_int",
    "short_repr",
]

T = TypeVar("T")


class InputError(ValueError):
    """A bad argument, file or setting the user can fix; the message names the value and what is allowed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind (a list where a Series is expected, str where Examples are)."""


def is_int(value: Any) -> bool:
    """True for ``int`` and numpy integers, False for ``bool`` and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters (``'...'`` marks the cut), for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(value: Any, name: str, minimum: int = 0, maximum: int | None = None, *, keyword: bool = False) -> int:
    """``value`` as an ``int`` if it is an integer in [minimum, maximum], else a ValueError naming it.

    ``keyword=True`` words the error as a keyword option (``n_boot=0 is invalid; expected an
    integer >= 1``), the form the statistics, calibration and faithfulness options use.
    """
    if keyword:
        if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
            allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise InputError(f"{name}={value!r} is invalid; expected an integer {allowed}")
    elif maximum is None:
        if not is_int(value) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    elif not is_int(value) or not minimum <= value <= maximum:
        raise InputError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def check_choice(value: T, name: str, allowed: Collection[Any]) -> T:
    """``value`` if it is one of ``allowed``, else ``ValueError("unknown <name> ...; expected one of [...]")``."""
    if value not in allowed:
        raise InputError(f"unknown {name} {value!r}; expected one of {list(allowed)}")
    return value


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float if it is a real number in the open interval (0, 1) (a level such as alpha)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{name}={value!r} is invalid; expected a float in the open interval (0, 1)")
    return float(value)


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
