"""The class server: JupyterHub (deploy/jupyterhub_config.py) + nbgitpuller, driven in headless Chromium.

A hub on 127.0.0.1 from this venv, with the dummy authenticator, SimpleLocalProcessSpawner (every
student's server runs as the test's user, homes in a temporary folder) and configurable-http-proxy
from npm (`make hub-proxy` puts it in build/node; or $CLASS_HUB_PROXY, or on PATH).

What the student pulls is the real student release: `build_release` (what `make release` runs,
without the toolkit wheel and the archive, which this test does not use; about 10 s), committed
into a local git repository served offline as a `file://` URL (nbgitpuller clones it with
`git clone --depth 1`, which works on file:// URLs). A student logs in, opens the nbgitpuller link,
lands in notebook 05 in JupyterLab, replaces the stub of its first exercise (paired_tost) with the
instructor's solution (read from notebooks/05_study.ipynb, markers dropped), runs the cells above
and the checker cell, and sees `check(...)` report all cases passed; the notebook is saved. Then
the instructor pushes a fix to the release repository and the same link merges it into the
student's copy, the student's solution kept.

The single-user servers and their kernels run in this test's venv (the toolkit from this checkout
via PYTHONPATH), not in a venv made by the release's install.sh: tests/test_course_release_install.py
covers that install; this test covers the hub, the pull and the release's notebook in the browser.

Outside CI the test is skipped when Chromium, playwright or the proxy is missing; with CI=true it
fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from chromium import SHOTS, chromium, require_browser
from lab_server import REPO, SETTINGS
from servers import contained_env, free_port, serving

pytestmark = [pytest.mark.browser]

CONFIG = REPO / "deploy" / "jupyterhub_config.py"
PASSWORD = "class-test"
STUDENT = "student1"
NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"
TIMEOUT_MS = int(float(os.environ.get("BROWSER_RUN_TIMEOUT_S", "300")) * 1000)


def _proxy() -> str | None:
    for candidate in (os.environ.get("CLASS_HUB_PROXY"),
                      str(REPO / "build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"),
                      shutil.which("configurable-http-proxy")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _require_proxy() -> str:
    proxy = _proxy()
    if proxy is None:
        why = "configurable-http-proxy not found (make hub-proxy, or CLASS_HUB_PROXY)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the hub test cannot run: {why}")
        pytest.skip(why)
    return proxy


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "Instructor", "GIT_AUTHOR_EMAIL": "i@example.org",
                        "GIT_COMMITTER_NAME": "Instructor", "GIT_COMMITTER_EMAIL": "i@example.org"})


RELEASE = "attn-prune-course"
NOTEBOOK = "05_study"
EXERCISE = "paired_tost"  # notebook 05's first exercise: its checker needs only the imports above it


def _release_repo(root: Path) -> Path:
    """The student release (`make release`'s build, no wheel or archive) committed as a git repository."""
    from toolkit.course.grading import build_release, release_leaks

    repo = build_release(REPO / "notebooks", root / RELEASE, wheel=False, archive=False)
    assert release_leaks(repo, REPO / "notebooks") == []  # what the student pulls holds no answer
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "release for this term", cwd=repo)
    return repo


def _solution(notebook: str, name: str) -> str:
    """The instructor's solution cell for exercise `name` (notebooks/<notebook>.ipynb), its markers dropped."""
    from tools.course.build import SOLUTION_MARKERS, cell_tags

    cells = nbformat.read(REPO / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
    found = [c.source for c in cells if "solution" in cell_tags(c) and f"def {name}(" in c.source]
    assert len(found) == 1, f"{notebook}: {len(found)} solution cells define {name}"
    return "\n".join(ln for ln in found[0].splitlines() if ln.strip() not in SOLUTION_MARKERS)


def _student_settings(home: Path) -> None:
    """The JupyterLab settings the other browser tests use (every cell in the DOM, no autosave, no news)."""
    for name, value in SETTINGS.items():
        path = home / ".jupyter" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def pull_link(hub_url: str, repo_url: str, branch: str, path: str) -> str:
    """nbgitpuller's link: /hub/user-redirect/git-pull?repo=...&branch=...&urlpath=lab/tree/<clone>/<path>."""
    clone = repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    query = urllib.parse.urlencode({"repo": repo_url, "branch": branch, "urlpath": f"lab/tree/{clone}/{path}"})
    return f"{hub_url}/hub/user-redirect/git-pull?{query}"


def _cell(page, text: str):
    """The code cell of the open notebook whose source contains `text` (exactly one)."""
    cell = page.locator(f"{NB} .jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=text))
    assert cell.count() == 1, f"{cell.count()} code cells contain {text!r}"
    return cell


def _menu(page, menu: str, item: str) -> None:
    """Click `menu` > `item` (a freshly started JupyterLab can lose the first menu command: retried)."""
    for attempt in range(3):
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click(timeout=10_000)
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{item}$")).click(timeout=10_000)
            return
        except Exception:
            page.keyboard.press("Escape")
            if attempt == 2:
                raise


def _idle(page) -> None:
    page.wait_for_selector(f"{NB} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=TIMEOUT_MS)


def _solve_and_check(page, solution: str) -> str:
    """Replace the stub with `solution`, run every cell above the checker, then the checker; its output."""
    page.wait_for_selector(f"{NB} .jp-Cell", timeout=TIMEOUT_MS)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=3000)  # a kernel choice, if asked
        page.locator(".jp-Dialog .jp-mod-accept").click()
    except PlaywrightTimeout:
        pass  # no dialog: the notebook's kernelspec was taken
    _idle(page)
    stub = _cell(page, f"def {EXERCISE}(")
    assert "raise NotImplementedError" in stub.inner_text()
    stub.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(solution)  # text as pasted: no auto-indent or bracket closing
    checker = _cell(page, f'check("{EXERCISE}"')
    checker.locator(".jp-InputPrompt").click()  # select the checker cell (command mode)
    _menu(page, "Run", "Run All Above Selected Cell")
    page.wait_for_function(  # every cell above ran: the stub's prompt shows a number
        "(el) => /^\\[\\d+\\]:$/.test(el.querySelector('.jp-InputPrompt').textContent.trim())",
        arg=stub.element_handle(), timeout=TIMEOUT_MS, polling=500)
    checker.locator(".jp-InputPrompt").click()
    _menu(page, "Run", "Run Selected Cells?")
    page.wait_for_function(
        "(el) => /^\\[\\d+\\]:$/.test(el.querySelector('.jp-InputPrompt').textContent.trim())"
        " && el.querySelector('.jp-OutputArea-output')",
        arg=checker.element_handle(), timeout=TIMEOUT_MS, polling=500)
    _idle(page)
    return "\n".join(checker.locator(".jp-OutputArea-output").all_inner_texts())


def test_student_pulls_the_release_and_checks(tmp_path, capsys):
    require_browser()
    proxy = _require_proxy()
    started = time.monotonic()
    repo = _release_repo(tmp_path)
    t_release = time.monotonic() - started
    solution = _solution(NOTEBOOK, EXERCISE)
    homes = tmp_path / "homes"
    _student_settings(homes / STUDENT)
    port = free_port()
    env = contained_env(tmp_path / "hubhome", {
        "CLASS_HUB_IP": "127.0.0.1", "CLASS_HUB_PORT": str(port), "CLASS_HUB_STATE": str(tmp_path / "state"),
        "CLASS_HUB_AUTH": "dummy", "CLASS_HUB_PASSWORD": PASSWORD, "CLASS_HUB_SPAWNER": "simple",
        "CLASS_HUB_HOMES": str(homes), "CLASS_HUB_PROXY": proxy, "CLASS_HUB_PROFILE": "ci",
        "CLASS_HUB_HUB_PORT": str(free_port()), "CLASS_HUB_PROXY_API_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    })
    url = f"http://127.0.0.1:{port}"
    path = f"notebooks/{NOTEBOOK}.ipynb"
    pulled = homes / STUDENT / RELEASE / path
    log = tmp_path / "jupyterhub.log"
    t0 = time.monotonic()
    with serving([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=tmp_path, env=env, log=log,
                 ready=f"{url}/hub/api", timeout=120), chromium() as browser:
        t_hub = time.monotonic() - t0
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/hub/login", timeout=60_000)
            page.fill("#username_input", STUDENT)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(re.compile(r"/(hub/(home|spawn|spawn-pending)|user/)"), timeout=TIMEOUT_MS)

            t0 = time.monotonic()
            page.goto(pull_link(url, repo.as_uri(), "main", path), timeout=TIMEOUT_MS)
            page.wait_for_url(re.compile(rf"/user/{STUDENT}/lab/tree/{RELEASE}/{re.escape(path)}"),
                              timeout=TIMEOUT_MS)
            t_pull = time.monotonic() - t0
            assert pulled.exists(), sorted(p.name for p in (homes / STUDENT).iterdir())
            assert (homes / STUDENT / RELEASE / "data" / "README.md").exists()  # the data beside the notebooks

            t0 = time.monotonic()
            text = _solve_and_check(page, solution)
            t_check = time.monotonic() - t0
            assert re.search(rf"{EXERCISE}: all \d+ cases passed", text), text
            assert "Traceback" not in text and "ExerciseFailed" not in text, text
            page.screenshot(path=str(SHOTS / "hub_checker.png"))
            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            while solution not in _sources(pulled) and time.monotonic() < deadline:
                time.sleep(0.3)
            assert solution in _sources(pulled), "the solved notebook was not saved"

            # The instructor pushes a fix to the release; the same link merges it into the student's copy
            # (nbgitpuller keeps the student's own changes): the fix arrives, the solution stays.
            (repo / "README.md").write_text((repo / "README.md").read_text() + "\nErratum: lab 2 starts at 10:15.\n")
            _git("commit", "-qam", "erratum", cwd=repo)
            page.goto(pull_link(url, repo.as_uri(), "main", path), timeout=TIMEOUT_MS)
            page.wait_for_url(re.compile(rf"/lab/tree/{RELEASE}/{re.escape(path)}"), timeout=TIMEOUT_MS)
            assert "Erratum: lab 2" in (homes / STUDENT / RELEASE / "README.md").read_text()
            assert solution in _sources(pulled), "the second pull lost the student's solution"
        except Exception:
            page.screenshot(path=str(SHOTS / "hub_failure.png"))
            print(log.read_text()[-6000:])
            raise
        finally:
            page.close()
    with capsys.disabled():
        print(f"\n[hub] release built and committed {t_release:.1f} s; hub up {t_hub:.1f} s; login + spawn + pull "
              f"to notebook {t_pull:.1f} s; solve + run to the checker {t_check:.1f} s; "
              f"test {time.monotonic() - started:.1f} s", end="")


def _sources(path: Path) -> str:
    """Every cell's source of the notebook at `path`, as one text."""
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
