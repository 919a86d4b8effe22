"""The class server: JupyterHub (deploy/jupyterhub_config.py) + nbgitpuller, driven in headless Chromium.

A hub on 127.0.0.1 from this venv, with the dummy authenticator, SimpleLocalProcessSpawner (every
student's server runs as the test's user, homes in a temporary folder) and configurable-http-proxy
from npm (`make hub-proxy` puts it in build/node; or $CLASS_HUB_PROXY, or on PATH). A student logs
in, opens an nbgitpuller link to a course repo served offline as a `file://` URL (a local git
repository: nbgitpuller clones it with `git clone --depth 1`, which works on file:// URLs), lands
in the pulled notebook in JupyterLab, and runs its checker cell: `check(...)` must say all cases
passed. Then a second pull (the instructor pushed a fix) merges into the student's copy.

Outside CI the test is skipped when Chromium, playwright or the proxy is missing; with CI=true it
fails instead.
"""

from __future__ import annotations

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
from lab_server import REPO, free_port
from servers import contained_env, server, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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


def _course_repo(root: Path) -> Path:
    """A course repository with one notebook whose checker cell passes (exercise 5.3, solved)."""
    repo = root / "course-2027"
    repo.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Lab 0 · check your set-up"),
        nbformat.v4.new_code_cell("import os\nfrom toolkit.course import check\n"
                                  "print('profile', os.environ.get('TOOLKIT_PROFILE'))"),
        nbformat.v4.new_code_cell("def expected_false_flags(m, alpha):\n    return float(m * alpha)\n\n"
                                  "check(\"expected_false_flags\", expected_false_flags)"),
    ]
    nbformat.write(nb, repo / "lab0_check.ipynb")
    (repo / "README.md").write_text("Course notebooks\n")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "lab 0", cwd=repo)
    return repo


def pull_link(hub_url: str, repo_url: str, branch: str, path: str) -> str:
    """nbgitpuller's link: /hub/user-redirect/git-pull?repo=...&branch=...&urlpath=lab/tree/<clone>/<path>."""
    clone = repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    query = urllib.parse.urlencode({"repo": repo_url, "branch": branch, "urlpath": f"lab/tree/{clone}/{path}"})
    return f"{hub_url}/hub/user-redirect/git-pull?{query}"


def _run_all(page) -> None:
    page.wait_for_selector(f"{NB} .jp-Cell", timeout=TIMEOUT_MS)
    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=3000)
        page.locator(".jp-Dialog .jp-mod-accept").click()
    except Exception:
        pass
    page.wait_for_selector(f"{NB} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=TIMEOUT_MS)
    for attempt in range(3):  # a freshly started JupyterLab can lose the first menu command
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click(timeout=10_000)
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click(timeout=10_000)
            page.wait_for_function(
                f"() => /^\\[(\\*|\\d+)\\]:$/.test(document.querySelector(`{NB} .jp-CodeCell .jp-InputPrompt`)"
                ".textContent.trim())", timeout=20_000)
            break
        except Exception:
            if attempt == 2:
                raise
    page.wait_for_function(
        f"""() => {{
            const prompts = [...document.querySelectorAll(`{NB} .jp-CodeCell .jp-InputPrompt`)].map(p => p.textContent.trim());
            const ind = document.querySelector(`{NB} .jp-Notebook-ExecutionIndicator`);
            return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p))
                && ind && ind.getAttribute('data-status') === 'idle';
        }}""", timeout=TIMEOUT_MS, polling=500)


def test_student_pulls_and_checks(tmp_path, capsys):
    require_browser()
    proxy = _require_proxy()
    started = time.monotonic()
    repo = _course_repo(tmp_path)
    homes = tmp_path / "homes"
    homes.mkdir()
    port = free_port()
    env = contained_env(tmp_path / "hubhome", {
        "CLASS_HUB_IP": "127.0.0.1", "CLASS_HUB_PORT": str(port), "CLASS_HUB_STATE": str(tmp_path / "state"),
        "CLASS_HUB_AUTH": "dummy", "CLASS_HUB_PASSWORD": PASSWORD, "CLASS_HUB_SPAWNER": "simple",
        "CLASS_HUB_HOMES": str(homes), "CLASS_HUB_PROXY": proxy, "CLASS_HUB_PROFILE": "ci",
        "CLASS_HUB_HUB_PORT": str(free_port()), "CLASS_HUB_PROXY_API_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    })
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "jupyterhub.log"
    with server([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=tmp_path, env=env, log=log) as proc, \
            chromium() as browser:
        wait_http(f"{url}/hub/api", proc, log, timeout=120)
        t_hub = time.monotonic() - started
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/hub/login", timeout=60_000)
            page.fill("#username_input", STUDENT)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(re.compile(r"/(hub/(home|spawn|spawn-pending)|user/)"), timeout=TIMEOUT_MS)

            t0 = time.monotonic()
            page.goto(pull_link(url, repo.as_uri(), "main", "lab0_check.ipynb"), timeout=TIMEOUT_MS)
            page.wait_for_url(re.compile(rf"/user/{STUDENT}/lab/tree/course-2027/lab0_check\.ipynb"),
                              timeout=TIMEOUT_MS)
            t_pull = time.monotonic() - t0
            pulled = homes / STUDENT / "course-2027" / "lab0_check.ipynb"
            assert pulled.exists(), sorted(p.name for p in (homes / STUDENT).iterdir())
            _run_all(page)
            out = page.locator(f"{NB} .jp-OutputArea-output").all_inner_texts()
            text = "\n".join(out)
            assert "profile ci" in text, text
            assert re.search(r"expected_false_flags: all \d+ cases passed", text), text
            assert "Traceback" not in text, text
            page.screenshot(path=str(SHOTS / "hub_checker.png"))

            # The instructor pushes a fix; the same link pulls it into the student's copy (a merge,
            # the student's own changes kept: nbgitpuller's rule), without touching lab0_check.ipynb.
            (repo / "README.md").write_text("Course notebooks (lab 1 next week)\n")
            _git("commit", "-qam", "readme", cwd=repo)
            page.goto(pull_link(url, repo.as_uri(), "main", "lab0_check.ipynb"), timeout=TIMEOUT_MS)
            page.wait_for_url(re.compile(r"/lab/tree/course-2027/lab0_check\.ipynb"), timeout=TIMEOUT_MS)
            assert "lab 1 next week" in (homes / STUDENT / "course-2027" / "README.md").read_text()
        except Exception:
            page.screenshot(path=str(SHOTS / "hub_failure.png"))
            print(log.read_text()[-6000:])
            raise
        finally:
            page.close()
    with capsys.disabled():
        print(f"\n[hub] hub up {t_hub:.1f} s; login + spawn + pull to notebook {t_pull:.1f} s; "
              f"test {time.monotonic() - started:.1f} s", end="")
