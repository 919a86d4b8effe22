"""The live explorer for lectures: `apps/explorer.ipynb` served by Voila, driven in headless Chromium.

Voila runs on 127.0.0.1 with a token, as `make explorer` runs it (sources stripped), under
TOOLKIT_PROFILE (ci here: 8 sentences). The test checks that no code reaches the page, then picks
the 3 cosine-least-important layers, presses evaluate and sees the numbers change against the
unpruned result; then toggles one layer by hand and evaluates again. Screenshots: results/browser/.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time

import pytest
from chromium import SHOTS, chromium, require_browser
from lab_server import REPO
from servers import contained_env, free_port, serving

pytestmark = [pytest.mark.browser]

APP = REPO / "apps" / "explorer.ipynb"
# The model loads and the importance and the unpruned result are computed while the page renders:
# seconds on an idle 2-core machine, minutes on a loaded one.
RENDER_TIMEOUT_MS = int(float(os.environ.get("BROWSER_RUN_TIMEOUT_S", "600")) * 1000)
RESULT = ".tk-explorer .tk-result"
NUMBER = re.compile(r"-?\d+\.\d{3}")


def _voila(workdir, profile: str):
    token = secrets.token_hex(16)
    port = free_port()
    env = contained_env(workdir / "home", {
        "TOOLKIT_PROFILE": profile, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    cmd = [sys.executable, "-m", "voila", str(APP), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
           "--Voila.port_retries=0", f"--token={token}"]
    # Voila has no cheap status URL (its page renders the whole app): ready when the port accepts
    return serving(cmd, cwd=REPO / "apps", env=env, log=workdir / "voila.log", ready=port, timeout=120), port, token


def _numbers(text: str) -> list[str]:
    """The metric table's numbers (accuracy, ECE: value, unpruned, change and CI)."""
    table = text.split("n = ")[0]
    return NUMBER.findall(table)


def test_voila_explorer(tmp_path, capsys):
    require_browser()
    started = time.monotonic()
    context, port, token = _voila(tmp_path, os.environ.get("TOOLKIT_PROFILE", "ci"))
    url = f"http://127.0.0.1:{port}"
    with context, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{url}/?token={token}", timeout=RENDER_TIMEOUT_MS)
            page.wait_for_selector(RESULT, timeout=RENDER_TIMEOUT_MS)
            page.wait_for_function(f"() => /dropped: none/.test(document.querySelector('{RESULT}').innerText)",
                                   timeout=RENDER_TIMEOUT_MS)
            t_ready = time.monotonic() - started
            body = page.locator("body").inner_text()
            # No code on screen: Voila strips the inputs; nothing of the notebook's source shows.
            for code in ("import toolkit", "PruningExplorer(", "TOOLKIT_PROFILE\", \"classroom\")", "SIZES = {"):
                assert code not in body, f"code on screen: {code!r}"
            assert not page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, .cm-editor, .jp-InputArea-editor").count()
            assert not re.search(r"Traceback|Error", body), body[:2000]
            assert "Loading weights" not in body, "loading progress bars on screen"
            ex = page.locator(".tk-explorer")
            before = page.locator(RESULT).inner_text()
            assert "unpruned" in before and "accuracy" in before, before
            page.screenshot(path=str(SHOTS / "voila_explorer_initial.png"), full_page=True)

            # Choose layers: the 3 least important by cosine (the default metric and k), then evaluate.
            ex.locator("button", has_text="select k least important").click()
            page.wait_for_function("() => document.querySelectorAll('.tk-explorer .tk-layer.mod-active').length === 3",
                                   timeout=30_000)
            chosen = [int(t) for t in ex.locator(".tk-layer.mod-active").all_inner_texts()]
            t0 = time.monotonic()
            ex.locator(".tk-evaluate button, button.tk-evaluate").first.click()
            shown = re.escape(str(sorted(chosen)))
            page.wait_for_function(
                "([sel, pat]) => new RegExp('dropped:\\\\s*' + pat).test(document.querySelector(sel).innerText)",
                arg=[RESULT, shown], timeout=RENDER_TIMEOUT_MS, polling=100)
            t_eval = time.monotonic() - t0
            after = page.locator(RESULT).inner_text()
            assert f"({len(chosen)} of " in after and "vs unpruned" in after, after
            # The numbers change: the pruned set's table is not the unpruned one's (whose change is all 0).
            assert _numbers(after) != _numbers(before), (before, after)
            assert "Error" not in ex.locator(".tk-status").inner_text()
            page.screenshot(path=str(SHOTS / "voila_explorer_pruned.png"), full_page=True)

            # Toggle one more layer by hand (the first not chosen) and evaluate again.
            extra = next(i for i in range(ex.locator(".tk-layer").count()) if i not in chosen)
            ex.locator(".tk-layer", has_text=re.compile(rf"^{extra}$")).click()
            ex.locator(".tk-evaluate button, button.tk-evaluate").first.click()
            page.wait_for_function(
                "([sel, pat]) => new RegExp('dropped:\\\\s*' + pat).test(document.querySelector(sel).innerText)",
                arg=[RESULT, re.escape(str(sorted(chosen + [extra])))], timeout=RENDER_TIMEOUT_MS, polling=100)
            assert _numbers(page.locator(RESULT).inner_text()) != _numbers(before)
        except Exception:
            page.screenshot(path=str(SHOTS / "voila_explorer_failure.png"), full_page=True)
            raise
        finally:
            page.close()
    with capsys.disabled():
        print(f"\n[voila] page ready {t_ready:.1f} s after start; first evaluate {t_eval:.1f} s; "
              f"test {time.monotonic() - started:.1f} s", end="")
