"""Start JupyterLab from this venv on 127.0.0.1 with a token, in a throw-away home, for the browser test."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import free_port, serving

__all__ = ["REPO", "SETTINGS", "Lab", "free_port", "jupyter_lab"]

REPO = Path(__file__).resolve().parents[2]

# JupyterLab user settings for a quiet, deterministic page: no news toast, every cell in the DOM
# (the default windowing would leave off-screen cells unrendered and unsearchable).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        """The notebook alone in its own workspace (no tabs restored from an earlier page)."""
        workspace = "".join(ch if ch.isalnum() else "-" for ch in name)
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"


@contextmanager
def jupyter_lab(notebooks: list[Path], workdir: Path, env: dict[str, str] | None = None,
                timeout: float = 90) -> Iterator[Lab]:
    """Serve copies of `notebooks` (so the committed files never receive outputs) from `workdir/notebooks`.

    `workdir/results` links to the checkout's git-ignored `results/`, so a notebook's `../results`
    is the same folder as under nbmake: notebook 05 then loads the study cells the other run saved
    (its "rerun resumes or loads" path) instead of computing the whole grid twice in one `make test`.
    """
    root = workdir / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    (REPO / "results").mkdir(exist_ok=True)
    if not (workdir / "results").exists():
        (workdir / "results").symlink_to(REPO / "results", target_is_directory=True)
    for nb in notebooks:
        shutil.copy(nb, root / nb.name)
    home = workdir / "home"
    settings = home / "lab-settings"
    for name, value in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    token = secrets.token_hex(16)
    port = free_port()
    full_env = {
        **os.environ,
        # The kernel imports this checkout's toolkit, whatever is installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "mpl"),
        **(env or {}),
    }
    log = workdir / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--allow-root", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    url = f"http://127.0.0.1:{port}"
    with serving(cmd, cwd=root, env=full_env, log=log, ready=f"{url}/api/status?token={token}", timeout=timeout):
        yield Lab(url=url, token=token, root=root, log=log)
