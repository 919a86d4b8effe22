"""The documentation site in a real browser: build it, open the results page, find its first figure.

The site is built as `make docs` builds it (`mkdocs build --strict`, here into a temporary folder)
and served by a local http.server on 127.0.0.1. Headless Chromium opens the results page, which
must show its title and the committed figures: the first <img> of the article must be the
cross-model figure, decoded (`naturalWidth > 0`), not a broken image. The screenshot
(`results/browser/docs_results.png`) shows the figure in the page.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chromium import SHOTS, chromium
from lab_server import REPO

pytestmark = [pytest.mark.browser]

FIRST_FIGURE = "benchmarks/results/replication/verdict_heatmap.png"  # the first image of docs/results.md


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The documentation site, built strictly from this checkout."""
    try:
        import mkdocstrings  # noqa: F401
        import material  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the docs cannot be built: {err} (pip install -e '.[docs]')")
        pytest.skip(f"docs extra not installed ({err}): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A static file server for `folder` on 127.0.0.1 (a free port), stopped on exit; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def test_results_page_shows_its_first_figure(site):
    assert (site / "results.html").is_file()
    with serve(site) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            response = page.goto(f"{url}/results.html")
            assert response is not None and response.ok, response
            title = page.locator("article h1").first.text_content()
            assert title.strip().startswith("Results"), title
            figure = page.locator("article img").first
            figure.wait_for(state="attached", timeout=30_000)
            assert figure.get_attribute("src") == FIRST_FIGURE
            figure.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete", arg=figure.element_handle(), timeout=30_000)
            width, height = figure.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 100 and height > 100, (width, height)  # a decoded PNG, not a broken image
            shown = figure.bounding_box()
            assert shown and shown["width"] > 300, shown  # laid out at a readable size in the article
            page.screenshot(path=str(SHOTS / "docs_results.png"))
        finally:
            page.close()
