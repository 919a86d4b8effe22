"""The browser test: JupyterLab from this venv, driven by headless Debian Chromium through playwright."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: runs the notebooks through JupyterLab in headless Chromium (make test-browser)"
    )
