"""Headless Debian Chromium driven by playwright: the one launcher the browser tests share.

Chromium is Debian's (`/usr/bin/chromium`, or $CHROMIUM): playwright's own browser download cannot
work here, so only its Python package is installed (a test extra). Outside CI a missing browser
skips the test with the reason; with CI=true it fails, since the browser tests must run there.
Screenshots go to the git-ignored `results/browser/`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lab_server import REPO

__all__ = ["CHROMIUM", "SHOTS", "chromium", "require_browser"]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = REPO / "results" / "browser"


def require_browser() -> None:
    """Skip (outside CI) or fail (CI=true) unless playwright and Chromium are both there."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        missing.append(f"playwright ({e})")
    if not shutil.which(CHROMIUM):
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        if in_ci:
            pytest.fail(f"CI=true but the browser test cannot run: missing {', '.join(missing)}")
        pytest.skip(f"browser test skipped (not in CI): missing {', '.join(missing)}")


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (a playwright `Browser`), closed on exit; `SHOTS` exists while it runs."""
    require_browser()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
