"""Run the cells of a study on this process, a Ray cluster or SLURM (via submitit).

The engines schedule; this module only decides what one task is and what happens around it:

- a *group* is the cells that share an expensive set-up (a study groups by model, so a model is
  loaded once per task); ``work(group, cells, store)`` does the set-up and computes the cells,
  each through :meth:`CellStore.run_cell` (claim, heartbeat, record or failure, release);
- ``local`` runs one task per group in this process, one after another (today's behaviour);
- ``ray`` and ``slurm`` start ``min(workers, cells left)`` tasks per group. Every task of a group
  walks all its cells, starting at a different offset, and computes those it can claim: the claims
  balance the load (a fast task takes more cells) and a cell is computed once however many tasks
  try it. A task that finds every cell taken returns without computing;
- a cell that raises is recorded with its traceback and the others go on; an exception in ``work``
  outside a cell (the model does not load) marks that group's unclaimed cells failed; a worker that
  dies leaves its claim, which a rerun (or an engine retry, ``Resources.retries``) takes over.

Resuming works across executors because the state is the store's folder, not the engine's.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._core.store import CellStore, Owner
from .._core.validation import InputError, InputTypeError, check_float, check_int

__all__ = ["EXECUTORS", "Resources", "RunReport", "run_cells"]

EXECUTORS = ("local", "ray", "slurm")
SUBMITIT_CLUSTERS = ("slurm", "local", "debug")


class HasKey(Protocol):
    @property
    def key(self) -> str: ...


CellLike = str | HasKey
Work = Callable[[str, list, CellStore], Any]


@dataclass(frozen=True)
class Resources:
    """What each task asks of the engine. Per task, not per study.

    Attributes:
        workers: tasks started per group (ray, slurm); on ray also the CPUs of a local runtime
            this module starts (``workers * cpus``). Ignored by ``local``.
        cpus: CPU cores per task (ray ``num_cpus``, SLURM ``cpus_per_task``).
        gpus: GPUs per task (ray ``num_gpus``, SLURM ``gpus_per_node``).
        memory_gb: memory per task in GiB (ray ``memory``, SLURM ``mem_gb``); None: engine default.
        partition: SLURM partition; None: the cluster's default.
        time_min: SLURM time limit per job, minutes.
        ray_address: an existing Ray cluster (``"auto"``, ``"ray://host:10001"``); None: use the
            runtime already initialised in this process, else start a local one.
        retries: times Ray reruns a task whose worker died (claims make the rerun skip done cells).
        cluster: submitit cluster for ``executor="slurm"``: ``"slurm"``; ``"local"`` runs the jobs as
            local processes (tests, one machine); ``"debug"`` runs them in this process.
        folder: submitit's log folder; None: ``<run_dir>/submitit``.
    """

    workers: int = 2
    cpus: int = 1
    gpus: int = 0
    memory_gb: float | None = None
    partition: str | None = None
    time_min: int = 60
    ray_address: str | None = None
    retries: int = 0
    cluster: str = "slurm"
    folder: str | None = None

    def __post_init__(self) -> None:
        check_int(self.workers, "Resources.workers", 1)
        check_int(self.cpus, "Resources.cpus", 1)
        check_int(self.gpus, "Resources.gpus", 0)
        check_int(self.time_min, "Resources.time_min", 1)
        check_int(self.retries, "Resources.retries", 0)
        if self.memory_gb is not None:
            check_float(self.memory_gb, "Resources.memory_gb", 0.0, math.inf)
        for name in ("partition", "ray_address", "folder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"Resources.{name}={value!r}; expected a non-empty string or None")
        if self.cluster not in SUBMITIT_CLUSTERS:
            raise InputError(f"Resources.cluster={self.cluster!r}; expected one of {list(SUBMITIT_CLUSTERS)}")


@dataclass(frozen=True)
class RunReport:
    """The state of the requested cells after :func:`run_cells`, read back from the store.

    Attributes:
        done: finished cells (in this run or before), in the order given.
        failed: cell key -> error line, for cells whose last attempt raised (traceback in the store).
        missing: neither finished nor failed: a worker died holding them, or another live run holds
            them now. Rerun to finish them.
        errors: task-level errors the engine reported (a dead worker, a job that did not finish).
        seconds: wall time of the call.
    """

    done: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every requested cell is finished: the table can be built."""
        return not self.failed and not self.missing


def _key(cell: Any) -> str:
    key = cell if isinstance(cell, str) else getattr(cell, "key", None)
    if not isinstance(key, str) or not key:
        raise InputTypeError(f"cell {cell!r} has no key; expected a non-empty str or an object with a str .key")
    return key


def run_cells(
    groups: Sequence[tuple[str, Sequence[CellLike]]],
    work: Work,
    *,
    store: CellStore,
    executor: str = "local",
    resources: Resources = Resources(),
    progress: bool = True,
) -> RunReport:
    """Compute every unfinished cell of ``groups`` with ``executor`` and report what is finished.

    Args:
        groups: ``(group, cells)`` pairs; a group shares one set-up (a study: the model name).
            A cell is a str key or an object with a ``.key`` str (a study ``Cell``); keys are unique.
        work: ``work(group, cells, store)``, a top-level (picklable) function, or a
            ``functools.partial`` of one, that sets up the group once and calls
            ``store.run_cell(cell.key, compute)`` for each cell. It gets only unfinished cells.
        store: where finished cells, claims and failures live.
        executor: one of ``EXECUTORS``.
        resources: per-task engine resources (ignored by ``local``).
        progress: show a progress bar over finished cells (all executors; polls the store).

    Returns:
        A RunReport; ``report.complete`` says whether the table can be built.

    Raises:
        InputError: unknown executor, duplicate cell keys, a group that is not a (name, cells) pair.
    """
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; expected one of {list(EXECUTORS)}")
    if not isinstance(store, CellStore):
        raise InputTypeError(f"store is a {type(store).__name__}; expected a CellStore")
    if not isinstance(resources, Resources):
        raise InputTypeError(f"resources is a {type(resources).__name__}; expected a Resources")
    t0 = time.perf_counter()
    keyed: list[tuple[str, list, list[str]]] = []
    seen: set[str] = set()
    for item in groups:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise InputError(f"group {item!r}; expected a (name, cells) pair")
        name, cells = item
        keys = [_key(c) for c in cells]
        dup = seen.intersection(keys) or {k for k in keys if keys.count(k) > 1}
        if dup:
            raise InputError(f"cell key(s) {sorted(dup)} appear more than once")
        seen.update(keys)
        keyed.append((name, list(cells), keys))
    all_keys = [k for _, _, keys in keyed for k in keys]
    finished = store.done_keys(all_keys)
    todo = [(name, [c for c, k in zip(cells, keys) if k not in finished], [k for k in keys if k not in finished])
            for name, cells, keys in keyed]
    todo = [t for t in todo if t[2]]

    bar = _Progress(store, all_keys, enabled=progress)
    try:
        if executor == "local":
            errors = _run_local(todo, work, store)
        elif executor == "ray":
            errors = _run_ray(todo, work, store, resources)
        else:
            errors = _run_submitit(todo, work, store, resources)
    finally:
        bar.close()
    finished = store.done_keys(all_keys)
    failures = store.failures()
    failed = {k: failures[k]["error"] for k in all_keys if k not in finished and k in failures}
    return RunReport(
        done=tuple(k for k in all_keys if k in finished),
        failed=failed,
        missing=tuple(k for k in all_keys if k not in finished and k not in failed),
        errors=tuple(errors),
        seconds=time.perf_counter() - t0,
    )


# ---- one task, wherever it runs --------------------------------------------------------------------
def run_group_task(work: Work, group: str, cells: list, keys: list[str], store: CellStore, offset: int = 0) -> dict:
    """One task: ``work`` on the group's unfinished cells, rotated to start at ``offset``.

    An exception from ``work`` itself (outside ``run_cell``) is recorded as the failure of every
    cell of the group that is neither finished nor held by a live worker. Returns counts.
    """
    n = len(cells)
    order = [(offset + i) % n for i in range(n)] if n else []
    cells = [cells[i] for i in order]
    keys = [keys[i] for i in order]
    left = [(c, k) for c, k in zip(cells, keys) if not store.done(k)]
    if not left:
        return {"group": group, "pid": os.getpid(), "ran": False}
    try:
        work(group, [c for c, _ in left], store)
    except Exception as exc:  # noqa: BLE001 - recorded per cell; the other groups go on
        owner = Owner.current()
        for _, key in left:
            if store.claim(key, owner):  # only cells nobody is computing and nobody finished
                try:
                    store.fail(key, exc, owner)
                finally:
                    store.release(key, owner)
        return {"group": group, "pid": os.getpid(), "ran": True, "error": f"{type(exc).__name__}: {exc}"}
    return {"group": group, "pid": os.getpid(), "ran": True}


def _task_plan(todo: list[tuple[str, list, list[str]]], workers: int) -> list[tuple[str, list, list[str], int]]:
    plan = []
    for name, cells, keys in todo:
        n_tasks = min(workers, len(keys))
        plan.extend((name, cells, keys, (i * len(keys)) // n_tasks) for i in range(n_tasks))
    return plan


def _run_local(todo, work: Work, store: CellStore) -> list[str]:
    errors = []
    for name, cells, keys in todo:
        result = run_group_task(work, name, cells, keys, store)
        if "error" in result:
            errors.append(f"group {name!r}: {result['error']}")
    return errors


def _run_ray(todo, work: Work, store: CellStore, res: Resources) -> list[str]:
    import ray

    started = False
    if res.ray_address is not None or not ray.is_initialized():
        if ray.is_initialized():
            raise RuntimeError(
                f"Ray is already initialised in this process; Resources.ray_address={res.ray_address!r} "
                "cannot reconnect it (drop ray_address, or call ray.shutdown() first)")
        if res.ray_address is None:
            ray.init(num_cpus=res.workers * res.cpus, num_gpus=res.gpus * res.workers or None,
                     include_dashboard=False)
        else:
            ray.init(address=res.ray_address)
        started = True
    try:
        options: dict[str, Any] = dict(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=res.retries)
        if res.memory_gb is not None:
            options["memory"] = int(res.memory_gb * 2**30)
        task = ray.remote(run_group_task).options(**options)
        pending = {task.remote(work, name, cells, keys, store, offset): name
                   for name, cells, keys, offset in _task_plan(todo, res.workers)}
        errors = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                name = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # a dead worker, a task that could not run
                    errors.append(f"group {name!r}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
                else:
                    if "error" in result:
                        errors.append(f"group {name!r}: {result['error']}")
        return errors
    finally:
        if started:
            ray.shutdown()


def _run_submitit(todo, work: Work, store: CellStore, res: Resources) -> list[str]:
    import submitit

    if res.cluster == "slurm" and shutil.which("sbatch") is None:
        raise RuntimeError(
            "executor='slurm' needs a SLURM cluster, and 'sbatch' is not on PATH here; "
            "Resources(cluster='local') runs the same jobs as local processes")
    folder = Path(res.folder) if res.folder else store.run_dir / "submitit"
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=res.cluster)
    params: dict[str, Any] = dict(timeout_min=res.time_min, cpus_per_task=res.cpus, name="toolkit-cells",
                                  slurm_partition=res.partition, slurm_array_parallelism=res.workers)
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if res.memory_gb is not None:
        params["mem_gb"] = res.memory_gb
    ex.update_parameters(**params)
    plan = _task_plan(todo, res.workers)
    with ex.batch():
        jobs = [ex.submit(run_group_task, work, name, cells, keys, store, offset)
                for name, cells, keys, offset in plan]
    names = {job: name for job, (name, *_rest) in zip(jobs, plan)}
    errors = []
    pending = list(jobs)
    while pending:
        still = []
        for job in pending:
            if not job.done():
                still.append(job)
                continue
            try:
                result = job.result()
            except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError, ...
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                errors.append(f"group {names[job]!r}: job {job.job_id}: {type(exc).__name__}: {first}")
            else:
                if "error" in result:
                    errors.append(f"group {names[job]!r}: {result['error']}")
        pending = still
        if pending:
            time.sleep(0.5)
    return errors


# ---- progress over finished cells -------------------------------------------------------------------
class _Progress:
    """A tqdm bar over finished cells (failed ones in the postfix), polled from the store by a thread,
    so it moves for every engine, the in-process one included."""

    def __init__(self, store: CellStore, keys: list[str], *, enabled: bool, every: float = 1.0) -> None:
        self.store, self.keys, self.every = store, keys, every
        self.bar = None
        self._stop = threading.Event()
        self._thread = None
        if enabled and keys:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(keys), desc="cells", file=sys.stderr)
            self.poll()
            self._thread = threading.Thread(target=self._loop, name="cell progress", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def poll(self) -> None:
        if self.bar is None:
            return
        try:
            done = self.store.done_keys(self.keys)
            failed = len(set(self.store.failures()) & (set(self.keys) - done))
        except OSError:  # a shared filesystem hiccup must not stop the run
            return
        self.bar.n = len(done)
        self.bar.set_postfix(failed=failed, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.poll()
            self.bar.close()
