"""Start a server process for a browser test on 127.0.0.1, wait until it answers, and always stop it.

One shape for every server the browser tests start (JupyterLab in `lab_server.py`, Voila, JupyterHub):
`serving(cmd, ready=...)` starts the command in its own process group, logging to a file, waits for a
URL to answer (or a port to accept) and fails with the log's tail if the process exits first or the
wait runs out; on exit the group is terminated, then killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["contained_env", "free_port", "server", "serving", "wait_http", "wait_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contained_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ with Jupyter's, IPython's and matplotlib's per-user folders moved under `home`."""
    env = {**os.environ,
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "IPYTHONDIR": str(home / "ipython"),
           "MPLCONFIGDIR": str(home / "mpl")}  # the model cache (TOOLKIT_CACHE, ~/.cache) stays shared
    env.update(extra or {})
    return env


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, ok=(200,)) -> None:
    """Poll `url` until it answers with a status in `ok`; fail with the log's tail if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status in ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
            time.sleep(0.3)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port` (a server with no cheap status URL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@contextmanager
def server(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run `cmd` in its own process group (so its children stop with it), logging to `log`."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def serving(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path, ready: str | int,
            timeout: float) -> Iterator[subprocess.Popen]:
    """`server`, then wait until it is ready: `ready` is a URL that must answer 200, or a port that must accept."""
    with server(cmd, cwd=cwd, env=env, log=log) as proc:
        if isinstance(ready, str):
            wait_http(ready, proc, log, timeout)
        else:
            wait_port(ready, proc, log, timeout)
        yield proc
