"""Registry[T]: one register / get / names / unregister for every registry of the toolkit.

Datasets, metrics, architecture adapters, attribution methods, exercises and the folder formats
``load_model`` reads are each one :class:`Registry` of named entries (lm-evaluation-harness keeps
one generic registry the same way). One duplicate policy for all: a name already registered is
refused with an :class:`~toolkit._core.validation.InputError` unless ``replace=True``; an unknown
name is an InputError listing the registered names. One way to undo registrations (in a test, a
notebook cell): ``with registry.restored(): ...`` puts back exactly what was there before the block,
a replaced entry included.

    >>> letters = Registry("letter", {"a": 1})
    >>> letters.register("b", 2)
    2
    >>> with letters.restored():
    ...     _ = letters.register("a", 10, replace=True)
    ...     _ = letters.unregister("b")
    >>> letters.get("a"), letters.names()
    (1, ('a', 'b'))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

from .validation import InputError, InputTypeError, check_choice, short_repr

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what an entry is, as messages name it (``"dataset"``, ``"metric"``).
        entries: the built-in entries (a mapping or ``(name, entry)`` pairs), registered in order.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | Iterable[tuple[str, T]] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries.items() if isinstance(entries, Mapping) else entries:
            self.register(name, entry)

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name`` and return it.

        Raises:
            InputError: ``name`` is already registered and ``replace`` is False (the message says
                that ``replace=True`` replaces it); InputTypeError: ``name`` is not a non-empty str.
        """
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"a {self.kind} name must be a non-empty str, got {short_repr(name)}")
        if name in self._entries and not replace:
            raise InputError(f"{self.kind} {name!r} is already registered; pass replace=True to replace it")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            InputError: ``unknown <kind> '<name>'; expected one of [...]`` (the registered names).
        """
        if not (isinstance(name, str) and name in self._entries):
            check_choice(name, self.kind, sorted(self._entries))  # raises: the name is not registered
        return self._entries[name]

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (an unknown name is the InputError of :meth:`get`)."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        """``(name, entry)`` pairs, in registration order."""
        return tuple(self._entries.items())

    def values(self) -> tuple[T, ...]:
        """The entries, in registration order."""
        return tuple(self._entries.values())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries: {short_repr(list(self._entries))})"

    @contextmanager
    def restored(self) -> Iterator[Registry[T]]:
        """The registry as it is now, put back when the ``with`` block ends (also on an error).

        Whatever the block registers, replaces or unregisters is undone: names, entries and order
        are exactly those before the block.
        """
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)
