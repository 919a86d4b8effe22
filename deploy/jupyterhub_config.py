"""JupyterHub for a class: students log in, an nbgitpuller link copies the course notebooks into
their home, and each gets a JupyterLab with the toolkit under the `classroom` profile.

docs/guide/class-server.md is the recipe this file belongs to. Start it with

    jupyterhub -f deploy/jupyterhub_config.py

Settings come from environment variables (defaults in brackets), so one file serves the class
server and the test that runs it (tests/browser/test_hub.py):

    CLASS_HUB_IP          [127.0.0.1]   where the proxy listens; put TLS (your reverse proxy) in front
                                        before you bind a public address
    CLASS_HUB_PORT        [8000]        the proxy's public port
    CLASS_HUB_STATE       [/srv/jupyterhub]  database, cookie secret, pid file
    CLASS_HUB_AUTH        [pam]         pam (the machine's accounts) | dummy (any name, the shared
                                        CLASS_HUB_PASSWORD; refused unless CLASS_HUB_IP is 127.0.0.1)
                                        | any authenticator class IT prefers (e.g. oauthenticator's)
    CLASS_HUB_PASSWORD    []            dummy only
    CLASS_HUB_SPAWNER     [localprocess]  localprocess (one system user per student) | simple (every
                                        server runs as the hub's user: tests only) | any spawner class
                                        (systemdspawner.SystemdSpawner enforces the memory limit)
    CLASS_HUB_HOMES       []            simple only: the folder that holds one home per student
    CLASS_HUB_MEM_LIMIT   [3G]          per student (notebook 02 peaks at 2.6 GiB); enforced by
                                        systemd/docker/kubernetes spawners only
    CLASS_HUB_PROFILE     [classroom]   TOOLKIT_PROFILE inside every student's kernel
    CLASS_HUB_PROXY       [configurable-http-proxy on PATH]  the proxy command (npm package)
    CLASS_HUB_HUB_PORT    [8081]        the hub's internal API port (127.0.0.1)
    CLASS_HUB_PROXY_API_PORT [8001]     the proxy's internal API port (127.0.0.1)
    CLASS_HUB_ADMINS      []            comma-separated instructor names (may open students' servers)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - JupyterHub's config loader provides it

env = os.environ.get
ip = env("CLASS_HUB_IP", "127.0.0.1")
state = Path(env("CLASS_HUB_STATE", "/srv/jupyterhub"))
state.mkdir(parents=True, exist_ok=True)
bin_dir = Path(sys.executable).parent  # the venv JupyterHub runs from: its jupyterhub-singleuser

# -- the public face: the proxy ----------------------------------------------------------------
c.JupyterHub.ip = ip
c.JupyterHub.port = int(env("CLASS_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("CLASS_HUB_HUB_PORT", "8081"))
proxy = env("CLASS_HUB_PROXY") or shutil.which("configurable-http-proxy")
if not proxy:
    raise SystemExit("configurable-http-proxy not found: `npm install configurable-http-proxy` (see "
                     "docs/guide/class-server.md) and put it on PATH or in CLASS_HUB_PROXY")
c.ConfigurableHTTPProxy.command = [proxy]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(env('CLASS_HUB_PROXY_API_PORT', '8001'))}"
c.ConfigurableHTTPProxy.should_start = True

# -- state -------------------------------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server
c.JupyterHub.cleanup_proxy = True

# -- who may log in ----------------------------------------------------------------------------
auth = env("CLASS_HUB_AUTH", "pam")
if auth == "dummy":
    if ip != "127.0.0.1":
        raise SystemExit("CLASS_HUB_AUTH=dummy lets anyone in: it is for a hub on 127.0.0.1 only (tests)")
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = env("CLASS_HUB_PASSWORD", "")
    c.Authenticator.allow_all = True
else:
    c.JupyterHub.authenticator_class = auth
    # With PAM every account on the machine could log in: list the class (or a group) instead.
    c.Authenticator.allow_all = False
roles = []
admins = {name for name in env("CLASS_HUB_ADMINS", "").split(",") if name}
if admins:
    c.Authenticator.admin_users = admins
    roles.append({"name": "instructors", "users": sorted(admins),
                  "scopes": ["admin:servers", "access:servers", "list:users", "read:users"]})

# -- what each student gets --------------------------------------------------------------------
spawner = env("CLASS_HUB_SPAWNER", "localprocess")
c.JupyterHub.spawner_class = spawner
if spawner == "simple":
    homes = env("CLASS_HUB_HOMES")
    if not homes:
        raise SystemExit("CLASS_HUB_SPAWNER=simple needs CLASS_HUB_HOMES (one folder per student under it)")
    c.SimpleLocalProcessSpawner.home_dir_template = str(Path(homes) / "{username}")
c.Spawner.cmd = [str(bin_dir / "jupyterhub-singleuser")]
if os.geteuid() == 0 and spawner == "simple":
    c.Spawner.args = ["--allow-root"]  # the servers run as the hub's user; root only in a test container
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "TOOLKIT_PROFILE": env("CLASS_HUB_PROFILE", "classroom"),
    # One torch thread per student: on a shared machine, two threads per kernel wait on each other
    # (docs/guide/teaching.md: 31 min instead of 80 s with 2 cores shared by eight processes).
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
if env("PYTHONPATH"):
    c.Spawner.environment["PYTHONPATH"] = env("PYTHONPATH")  # a checkout rather than an installed toolkit
if env("TOOLKIT_CACHE"):
    c.Spawner.environment["TOOLKIT_CACHE"] = env("TOOLKIT_CACHE")  # one converted model for everyone
c.Spawner.mem_limit = env("CLASS_HUB_MEM_LIMIT", "3G")  # docs/guide/class-server.md: measured peaks
c.Spawner.cpu_limit = 1.0
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
# Idle servers hold a model in memory each: cull them (jupyterhub-idle-culler, if installed).
try:
    import jupyterhub_idle_culler  # noqa: F401
except ImportError:
    pass
else:
    c.JupyterHub.services = [{"name": "idle-culler",
                              "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"]}]
    roles.append({"name": "idle-culler", "services": ["idle-culler"],
                  "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]})
if roles:
    c.JupyterHub.load_roles = roles
