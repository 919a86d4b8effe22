"""The lab plan's arithmetic: each notebook header's student time adds up (docs/guide/labs.md plans from it).

A header states ``**Student time.** About T min (exercises E min, <the rest> R min).``; the
exercises state their minutes in the registry (``toolkit.course.list_exercises``, the one source)
and again in each exercise cell (``about N min``). The test keeps T = E + R and E = the registry's
sum for that notebook, so the plan in docs/guide/labs.md cannot drift from the notebooks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from toolkit.course import NOTEBOOKS, list_exercises

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(
    r"\*\*Student time\.\*\* About (?P<total>\d+) min \(exercises (?P<exercises>\d+) min, "
    r"(?P<rest_label>[^()]*?) (?P<rest>\d+) min\)\.")
CELL_MINUTES = re.compile(r"^### Exercise .*?^> .*?about (?P<minutes>\d+) min", re.DOTALL | re.MULTILINE)
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](?P<name>\w+)["']""")


def _cells(notebook: str) -> list[dict]:
    return json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]


def _header(notebook: str) -> re.Match:
    first = "".join(_cells(notebook)[0]["source"])
    match = HEADER.search(first)
    assert match, f"{notebook}: the first cell has no 'Student time. About T min (exercises E min, ... R min).' line"
    return match


def _cell_minutes(notebook: str) -> dict[str, int]:
    """Each exercise cell's stated minutes, by the exercise name its first following check(...) names."""
    cells, stated = _cells(notebook), {}
    for i, cell in enumerate(cells):
        match = CELL_MINUTES.search("".join(cell["source"])) if cell["cell_type"] == "markdown" else None
        if not match:
            continue
        name = next((m.group("name") for c in cells[i + 1:] if c["cell_type"] == "code"
                     for m in [CHECK_CALL.search("".join(c["source"]))] if m), None)
        assert name, f"{notebook}: exercise cell {i} is followed by no check(...) cell"
        stated[name] = int(match.group("minutes"))
    return stated


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_header_total_is_exercises_plus_the_rest(notebook):
    m = _header(notebook)
    assert int(m.group("total")) == int(m.group("exercises")) + int(m.group("rest")), (
        f"{notebook}: About {m.group('total')} min != exercises {m.group('exercises')} + "
        f"{m.group('rest_label')} {m.group('rest')}")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_header_exercise_minutes_are_the_registry_sum(notebook):
    table = list_exercises(notebook)
    assert len(table), f"{notebook} has no registered exercises"
    registry = int(table["minutes"].sum())
    stated = int(_header(notebook).group("exercises"))
    assert stated == registry, (
        f"{notebook}: header says exercises {stated} min, the registry's exercises add up to {registry} min "
        f"({dict(zip(table['name'], table['minutes']))})")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_exercise_cells_state_the_registry_minutes(notebook):
    table = list_exercises(notebook)
    registry = dict(zip(table["name"], table["minutes"].astype(int)))
    stated = _cell_minutes(notebook)
    assert set(stated) == set(registry), f"{notebook}: exercise cells {sorted(stated)} vs registry {sorted(registry)}"
    assert stated == registry, f"{notebook}: cells {stated} vs registry {registry}"
