"""The README is a newcomer's first page: short, its two set-up commands intact, every link alive.

Links are checked as GitHub renders them: a relative path must exist (relative to the file that
links it), and an anchor (`#section`, or `file.md#section`) must be the GitHub slug of a heading
in that file. The same check runs over the documentation pages in docs/, so a moved or renamed
page shows up here without building the site (`make docs` checks them again, strictly).
External (http) links are not fetched: the test runs offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250
DOCS = sorted((ROOT / "docs").rglob("*.md"))

# [text](target) and ![alt](target); the target ends at the first space (a title may follow).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    out, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            out.append((number, INLINE_CODE.sub("``", line)))
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation removed, spaces -> '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, duplicates numbered as GitHub does (-1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            out.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return out


def broken_links(path: Path) -> list[str]:
    """Every link in `path` whose file or anchor does not exist, as 'line N: target (why)'."""
    problems = []
    for number, line in _prose_lines(path.read_text()):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: - not fetched offline
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"line {number}: {target} (no file {linked})")
                continue
            if anchor:
                if linked.suffix != ".md":
                    problems.append(f"line {number}: {target} (an anchor into a file that is not Markdown)")
                elif anchor not in anchors(linked):
                    problems.append(f"line {number}: {target} (no heading with anchor #{anchor} in {linked.name})")
    return problems


def test_github_slug_matches_githubs_rules():
    assert github_slug("The default study (`make study`)") == "the-default-study-make-study"
    assert github_slug("Cross-model study: SmolLM2-135M vs Gemma-3-270M") == "cross-model-study-smollm2-135m-vs-gemma-3-270m"
    assert github_slug("Bundled model and data") == "bundled-model-and-data"
    assert github_slug("The full-size grid (`benchmarks/studies/full_grid.yaml`)") == "the-full-size-grid-benchmarksstudiesfull_gridyaml"


def test_the_checker_finds_a_broken_file_and_a_broken_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page.write_text(
        "# Page\n\n[ok](other.md#a-section) [self](#page) [web](https://example.org)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) `[in code](missing2.md)`\n"
        "```\n[in a fence](missing3.md)\n```\n"
    )
    found = broken_links(page)
    assert len(found) == 2, found
    assert "missing.md" in found[0] and "#nope" in found[1]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; at most {MAX_LINES} (move the rest into docs/)"


def test_readme_keeps_the_two_commands():
    """`make study` and `make test` stay the README's set-up, as commands in a shell block (CI runs `make test`)."""
    text = README.read_text()
    section = text.split("## Two commands", 1)
    assert len(section) == 2, "the README lost its '## Two commands' section"
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    assert block, "no ```bash block under '## Two commands'"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["make study", "make test"], commands
    makefile = (ROOT / "Makefile").read_text()
    for target in ("study", "test", "docs"):
        assert re.search(rf"^{target}:", makefile, re.M), f"the Makefile has no '{target}' target"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(path):
    assert broken_links(path) == []


def test_install_text_is_written_once():
    """The set-up text lives in the README (between its --8<-- install markers); docs include it, never copy it."""
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- --8<-- [start:install] -->", "<!-- --8<-- [end:install] -->"
    assert readme.count(start) == readme.count(end) == 1
    section = readme.split(start)[1].split(end)[0]
    assert "make study" in section and "make test" in section
    assert "](" not in section, "a link in the shared install text would break where the docs include it"
    assert '--8<-- "README.md:install"' in (ROOT / "docs" / "guide" / "getting-started.md").read_text()
    signature = "Both create `.venv/` if missing"
    copies = [p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md") if signature in p.read_text()]
    assert copies == [], f"install text copied instead of included: {copies}"
