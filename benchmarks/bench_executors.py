"""Wall time of a 12-cell toy study: `local` vs `ray` with 2 workers, and what each engine adds per cell.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_executors.py [--repeats 2] [--cell-seconds 1.0]

The toy study: 2 "models" (a tiny 2-layer transformer encoder, d_model 64, seeded by the model
name, built once per task) x 6 cells; a cell runs forward passes on a seeded batch for about
`--cell-seconds` of one core (the pass count is calibrated here, 1 torch thread, before timing).
`local` runs the cells one after another in this process; `ray` starts 2 tasks per model on a local
Ray runtime with 2 CPUs (started once, before timing; its start-up is reported on its own line).
The two are timed interleaved (local, ray, local, ray, ...) after one discarded warm-up round of
both, and every run's records must equal the first local run's.

Overhead: the same 12 cells with no work at all (the work function returns at once) on each engine;
(wall time) / 12 is what the engine plus the store add per cell (for submitit's local executor,
jobs are fresh processes: most of it is Python + torch + toolkit import per job).
On a shared machine wall time includes waiting for a core: the load average is printed beside.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
import zlib

import torch

from toolkit.study.executors import Resources, run_cells
from toolkit._core.store import CellStore

MODELS = ("tiny-a", "tiny-b")
KEYS = [f"{m}|toy|sel|{k}" for m in MODELS for k in range(6)]
GROUPS = [(m, [k for k in KEYS if k.startswith(m + "|")]) for m in MODELS]


def tiny_model(name: str) -> torch.nn.Module:
    torch.manual_seed(zlib.crc32(name.encode()))
    layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True, dropout=0.0)
    return torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()


def cell_value(model: torch.nn.Module, key: str, passes: int) -> float:
    x = torch.randn(8, 32, 64, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    with torch.inference_mode():
        total = 0.0
        for _ in range(passes):
            total += float(model(x).sum())
    return round(total / passes, 6)


def toy_work(group: str, cells: list, store: CellStore, *, passes: int) -> None:
    torch.set_num_threads(1)
    model = tiny_model(group) if passes else None
    for key in cells:
        store.run_cell(key, functools.partial(lambda k: {"value": cell_value(model, k, passes) if passes else 0.0}, key))


def calibrate(seconds: float) -> int:
    torch.set_num_threads(1)
    model = tiny_model("calibration")
    cell_value(model, "warm", 3)
    t0 = time.perf_counter()
    cell_value(model, "x", 20)
    per_pass = (time.perf_counter() - t0) / 20
    return max(1, round(seconds / per_pass))


def timed_run(executor: str, passes: int, resources: Resources) -> tuple[float, dict]:
    folder = tempfile.mkdtemp(prefix=f"bench-{executor}-")
    try:
        store = CellStore(folder)
        t0 = time.perf_counter()
        report = run_cells(GROUPS, functools.partial(toy_work, passes=passes), store=store, executor=executor,
                           resources=resources, progress=False)
        wall = time.perf_counter() - t0
        if not report.complete:
            raise RuntimeError(f"{executor}: incomplete run: {report}")
        records = {k: v["value"] for k, v in store.records().items()}
        return wall, records
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cell-seconds", type=float, default=1.0)
    ap.add_argument("--no-submitit", action="store_true")
    args = ap.parse_args()

    import ray

    passes = calibrate(args.cell_seconds)
    print(f"calibrated: {passes} forward passes per cell (~{args.cell_seconds} s on one core); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - t0
    ray_res = Resources(workers=2)

    rows: dict[str, list[float]] = {"local": [], "ray": []}
    reference = None
    for r in range(1 + args.repeats):  # round 0 is a warm-up (Ray workers import torch + toolkit)
        for name in ("local", "ray"):
            wall, records = timed_run(name, passes, ray_res)
            reference = reference or records
            if records != reference:
                raise AssertionError(f"{name} records differ from the first local run")
            if r > 0:
                rows[name].append(wall)
            print(f"  round {r} {name:5s} {wall:6.2f} s  (load {os.getloadavg()[0]:.1f})", flush=True)

    zero: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(1 + args.repeats):
        for name in ("local", "ray"):
            wall, _ = timed_run(name, 0, ray_res)
            if r > 0:
                zero[name].append(wall)
    ray.shutdown()
    if not args.no_submitit:
        zero["slurm (submitit local, 2 jobs/model)"] = [
            timed_run("slurm", 0, Resources(workers=2, cluster="local", time_min=5))[0]]

    med = {k: statistics.median(v) for k, v in rows.items()}
    print()
    print(f"| measure | local | ray (2 workers) |")
    print(f"|---|---|---|")
    print(f"| 12 toy cells, wall s (median of {args.repeats}) | {med['local']:.2f} | {med['ray']:.2f} |")
    print(f"| all repeats, s | {', '.join(f'{x:.2f}' for x in rows['local'])} | "
          f"{', '.join(f'{x:.2f}' for x in rows['ray'])} |")
    print(f"| speed-up local/ray | | {med['local'] / med['ray']:.2f}x |")
    print(f"| ray.init (once per driver) | | {ray_init:.1f} s |")
    print()
    print("| engine, 12 no-work cells | wall s | per cell, ms |")
    print("|---|---|---|")
    for k, v in zero.items():
        m = statistics.median(v)
        print(f"| {k} | {m:.3f} | {1000 * m / len(KEYS):.1f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
