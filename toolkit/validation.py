"""Argument checks shared by every module: one test and one wording for each kind of mistake.

Errors name the bad value and what is allowed (``ValueError("batch_size must be an integer >= 1,
got 0")``). An integer is an ``int`` or a numpy integer, never a ``bool`` (``True >= 1`` would
otherwise pass as a batch size).
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["check_choice", "check_int", "check_layers", "check_probability", "check_texts", "is_int"]

T = TypeVar("T")


def is_int(value: Any) -> bool:
    """True for ``int`` and numpy integers, False for ``bool`` and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int = 0, maximum: int | None = None, *, keyword: bool = False) -> int:
    """``value`` as an ``int`` if it is an integer in [minimum, maximum], else a ValueError naming it.

    ``keyword=True`` words the error as a keyword option (``n_boot=0 is invalid; expected an
    integer >= 1``), the form the statistics, calibration and faithfulness options use.
    """
    if keyword:
        if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
            allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise ValueError(f"{name}={value!r} is invalid; expected an integer {allowed}")
    elif maximum is None:
        if not is_int(value) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    elif not is_int(value) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def check_choice(value: T, name: str, allowed: Collection[Any]) -> T:
    """``value`` if it is one of ``allowed``, else ``ValueError("unknown <name> ...; expected one of [...]")``."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")
    return value


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float if it is a real number in the open interval (0, 1) (a level such as alpha)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is invalid; expected a float in the open interval (0, 1)")
    return float(value)


def check_texts(texts: Sequence[str]) -> list[str]:
    """A non-empty list of texts; a single string (which would be read as characters) is refused."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; pass at least one text")
    return texts


def check_layers(layers: Iterable[int], n_layers: int, name: str = "layers") -> list[int]:
    """Layer indices as ints, in the given order (duplicates kept), each in [0, n_layers)."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise ValueError(f"{name} must be a sequence of integers in [0, {n_layers}), got {layers!r}")
    out = []
    for layer in layers:
        if not is_int(layer):
            raise ValueError(f"{name} must be integers in [0, {n_layers}), got {layer!r} ({type(layer).__name__})")
        if not 0 <= layer < n_layers:
            raise ValueError(
                f"layer index {layer} is out of range: {name} holds {layer}; allowed: integers in [0, {n_layers}) "
                f"(the model has {n_layers} layers: 0..{n_layers - 1})"
            )
        out.append(int(layer))
    return out
