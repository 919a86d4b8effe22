"""Tests for toolkit._core.registry: the one Registry every registry of the toolkit is (one duplicate policy, one undo)."""

from __future__ import annotations

import pytest

from toolkit._core.registry import Registry
from toolkit._core.validation import InputError, InputTypeError
from toolkit.metrics.registry import METRICS


def _letters() -> Registry[int]:
    return Registry("letter", {"a": 1, "b": 2})


def test_registry_refuses_a_duplicate_and_says_how_to_replace():
    letters = _letters()
    with pytest.raises(InputError, match=r"^letter 'a' is already registered; pass replace=True to replace it$"):
        letters.register("a", 10)
    assert letters.get("a") == 1
    assert letters.register("a", 10, replace=True) == 10
    assert letters.get("a") == 10 and letters.names() == ("a", "b")  # a replacement keeps its place
    with pytest.raises(InputTypeError, match="a letter name must be a non-empty str"):
        letters.register("", 3)


def test_registry_get_of_an_unknown_name_lists_the_registered_ones():
    letters = _letters()
    with pytest.raises(InputError, match=r"^unknown letter 'c'; expected one of \['a', 'b'\]$"):
        letters.get("c")
    with pytest.raises(InputError, match=r"unknown letter \['a'\]"):
        letters.get(["a"])  # not hashable: the same error, not a TypeError
    with pytest.raises(InputError, match="unknown letter 'c'"):
        letters.unregister("c")


def test_registry_reads_in_registration_order():
    letters = _letters()
    letters.register("0", 0)
    assert letters.names() == ("a", "b", "0") and list(letters) == ["a", "b", "0"] and len(letters) == 3
    assert letters.items() == (("a", 1), ("b", 2), ("0", 0)) and letters.values() == (1, 2, 0)
    assert "a" in letters and "z" not in letters and 1 not in letters
    assert letters.unregister("a") == 1 and letters.names() == ("b", "0")
    assert "letter" in repr(letters)


def test_registry_restored_undoes_everything_in_the_block():
    letters = _letters()
    with letters.restored() as same:
        assert same is letters
        letters.register("a", 10, replace=True)  # a replaced entry
        letters.unregister("b")  # a removed one
        letters.register("c", 3)  # a new one
        assert letters.items() == (("a", 10), ("c", 3))
    assert letters.items() == (("a", 1), ("b", 2))  # the exact previous state, order included
    with pytest.raises(RuntimeError), letters.restored():
        letters.register("d", 4)
        raise RuntimeError("a failing block")
    assert letters.names() == ("a", "b")  # undone on an error too


def test_every_registry_of_the_toolkit_is_one_registry():
    from toolkit.attribution.registry import ATTRIBUTION_METHODS
    from toolkit.course.exercises import EXERCISES
    from toolkit.data.datasets import DATASETS
    from toolkit.models.adapters import ADAPTERS
    from toolkit.models.loading import FOLDER_LOADERS
    from toolkit.models.checkpoints import PRUNING_SPEC

    registries = {"dataset": DATASETS, "metric": METRICS, "architecture": ADAPTERS,
                  "attribution method": ATTRIBUTION_METHODS, "exercise": EXERCISES, "folder format": FOLDER_LOADERS}
    for kind, registry in registries.items():
        assert isinstance(registry, Registry) and registry.kind == kind and len(registry) > 0
        with pytest.raises(InputError, match=f"unknown {kind} 'nope'; expected one of"):
            registry.get("nope")
        first = registry.names()[0]
        with pytest.raises(InputError, match=f"{kind} '{first}' is already registered; pass replace=True"):
            registry.register(first, registry.get(first))
    assert PRUNING_SPEC in FOLDER_LOADERS
