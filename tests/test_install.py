"""The install lock (tools/lock.py, requirements/lock.txt) and the environment the suite runs in.

The lock is checked against an independent source of truth twice: the pyproject's own specifiers
(read with `packaging`, as pip reads them) and, where the suite runs in the locked venv
(TOOLKIT_LOCKED=1, set by `make test`), the installed distributions themselves.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def _report(tmp_path: Path) -> Path:
    wheel = tmp_path / "demo_pkg-1.2.3-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    report = {
        "version": "1", "environment": {"python_version": "3.11"},
        "install": [
            {"metadata": {"name": "Demo_Pkg", "version": "1.2.3"},
             "download_info": {"url": wheel.as_uri(), "archive_info": {}}},  # no hash: hashed from the file
            {"metadata": {"name": "other.pkg", "version": "0.1"},
             "download_info": {"url": "https://example.invalid/o.whl",
                               "archive_info": {"hashes": {"sha256": "ab" * 32}}}},
            {"metadata": {"name": "attn-prune-toolkit", "version": "0.1.0"},
             "download_info": {"url": ROOT.as_uri(), "dir_info": {"editable": True}}},
        ],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    return path


def test_write_then_read_round_trips_names_versions_and_hashes(tmp_path):
    out = tmp_path / "lock.txt"
    pins = lock.write([_report(tmp_path)], out, note="test")
    assert pins == {"demo-pkg": "1.2.3", "other-pkg": "0.1"}  # the editable project is not locked
    text = out.read_text()
    digest = hashlib.sha256(b"not really a wheel").hexdigest()
    assert f"demo-pkg==1.2.3 \\\n    --hash=sha256:{digest}" in text
    assert "other-pkg==0.1 \\\n    --hash=sha256:" + "ab" * 32 in text
    header, read_pins = lock.read(out)
    assert read_pins == pins
    assert header["python"] == f"cpython{sys.version_info.major}.{sys.version_info.minor}"


def test_check_names_the_interpreter_that_does_not_fit(tmp_path):
    other = tmp_path / "lock.txt"
    other.write_text("# python: cpython3.99\n# platform: linux-x86_64\nsix==1.0 \\\n    --hash=sha256:00\n")
    with pytest.raises(SystemExit, match=r"the lock has 'cpython3.99', this interpreter is 'cpython3\.\d+'.*LOCK="):
        lock.check(other)


def test_diff_lists_each_differing_version_and_what_is_outside(tmp_path):
    out = tmp_path / "lock.txt"
    lock.write([_report(tmp_path)], out, note="")
    rows = lock.diff(out, {"demo-pkg": "1.2.4", "other-pkg": "0.1", "extra": "9"})
    assert rows == ["demo-pkg: lock 1.2.3, here 1.2.4", "not in the lock: extra 9"]


def test_manifest_versions_compared_with_the_lock():
    """A committed result's manifest recorded transformers 5.24.0: the comparison says it differs."""
    manifest = ROOT / "benchmarks" / "results" / "batch_invariance.csv.manifest.json"
    rows = lock.manifest(manifest, LOCK)
    _, pins = lock.read(LOCK)
    recorded = {m["transformers"] for m in json.loads(manifest.read_text())["manifests"]}
    want = "same" if recorded == {pins["transformers"]} else "DIFFERS"
    assert rows[1].startswith("transformers: manifest ") and rows[1].endswith(want)


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("test", "ray", "slurm", "lmeval", "docs", "course", "hub"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_the_lock_satisfies_every_pyproject_range():
    header, pins = lock.read(LOCK)
    assert header["python"] == "cpython3.11" and header["platform"] == "linux-x86_64"
    for req in _pyproject_requirements():
        name = lock.canonical(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in {LOCK.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside the pyproject's {req.name}{req.specifier}")


def test_every_lock_line_has_a_hash():
    lines = LOCK.read_text().splitlines()
    pins = [i for i, line in enumerate(lines) if "==" in line and not line.startswith("#")]
    assert pins and all(lines[i + 1].strip().startswith("--hash=sha256:") for i in pins)


def test_pip_check_is_clean_but_for_the_model_packages():
    """`pip check` itself (not the tool's filter) lists nothing but the --no-deps model packages."""
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    complaints = [line for line in done.stdout.splitlines() if line.strip() and "No broken requirements" not in line]
    others = [line for line in complaints if not line.startswith(tuple(f"{n} " for n in lock.NO_DEPS))]
    assert others == [], done.stdout + done.stderr
    assert lock.pip_check() == others


def test_installed_ignores_vendored_copies_on_sys_path(tmp_path, monkeypatch):
    """setuptools appends its _vendor folder (with dist-info of its own) to sys.path once imported."""
    vendored = tmp_path / "_vendor" / "packaging-0.0.1.dist-info"
    vendored.mkdir(parents=True)
    (vendored / "METADATA").write_text("Metadata-Version: 2.1\nName: packaging\nVersion: 0.0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "_vendor"))
    assert importlib.metadata.version("packaging") == "0.0.1"  # what a sys.path scan sees first
    assert lock.installed()["packaging"] != "0.0.1"


@pytest.mark.skipif(os.environ.get("TOOLKIT_LOCKED") != "1", reason="runs in the locked venv (make test sets TOOLKIT_LOCKED=1)")
def test_the_installed_tree_is_the_lock():
    rows = [r for r in lock.diff(LOCK, lock.installed()) if not r.startswith("not in the lock")]
    assert rows == [], "installed versions differ from requirements/lock.txt (make install, or make lock)"
