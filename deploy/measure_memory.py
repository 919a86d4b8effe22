"""Peak memory of one student's kernel per notebook and profile: what a class server must give each student.

    python deploy/measure_memory.py [--profiles ci,classroom] [--notebooks 01,02] [--out FILE.json]

Each notebook runs top to bottom once (nbclient, as `make executed` runs it) in a fresh kernel, in a
scratch copy (a fresh `results/`, so notebook 05 computes its study rather than loading a saved one),
one at a time. The kernel is a child of the one process per notebook this script starts, so that
process's `getrusage(RUSAGE_CHILDREN).ru_maxrss` is the kernel's peak resident set size (Linux: KiB).
Run it on the image the class will use, with nothing else running; it prints one JSON line per run
(profile, notebook, peak RSS in MiB, wall seconds, load average at the start).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
t0 = time.monotonic()
NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(__import__("pathlib").Path(path).parent)}}).execute()
print(json.dumps({"wall_s": round(time.monotonic() - t0, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))
"""


def measure(notebook: Path, profile: str, threads: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="mem-") as tmp:
        work = Path(tmp) / "notebooks"
        work.mkdir()
        (Path(tmp) / "results").mkdir()
        shutil.copy(notebook, work / notebook.name)
        env = {**os.environ, "TOOLKIT_PROFILE": profile, "OMP_NUM_THREADS": threads,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "MPLCONFIGDIR": str(Path(tmp) / "mpl"), "IPYTHONDIR": str(Path(tmp) / "ipython")}
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, "-c", CHILD, str(work / notebook.name)], env=env, cwd=work,
                             capture_output=True, text=True, check=True)
        return {"profile": profile, "notebook": notebook.stem, "omp_threads": threads, "load_at_start": round(load, 2),
                **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="ci,classroom")
    ap.add_argument("--notebooks", default="01,02,03,04,05")
    ap.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "1"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for profile in args.profiles.split(","):
        for prefix in args.notebooks.split(","):
            (notebook,) = sorted((REPO / "notebooks").glob(f"{prefix}_*.ipynb"))
            rows.append(measure(notebook, profile, args.threads))
            print(json.dumps(rows[-1]), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
