"""A cell store that many workers, on one machine or over a shared filesystem, can write at once.

Layout under ``run_dir``::

    cells/<id>.json     one finished cell: its record, with the cell key under "cell"
    claims/<id>.claim   a cell being computed: owner (host, pid, token) and time; mtime = heartbeat
    failed/<id>.json    the last failure of a cell: its traceback (removed when the cell succeeds)
    cells.jsonl         read only: the log older versions appended to (first record per key wins)

``<id>`` is the first 32 hex digits of the SHA-256 of the cell key, so any key (a long model path)
gives a short, safe file name.

Why it is safe with many writers:

- A record is written to a temporary name in ``cells/`` and ``os.replace``d into place: a rename
  within one folder is atomic on POSIX filesystems and on NFS, so a reader sees the whole record or
  nothing. A worker killed mid-write leaves at most a ``.tmp-*`` file, which readers ignore.
- A claim is created with ``O_CREAT | O_EXCL``: of many workers, exactly one creates it.
- While a cell runs, a heartbeat thread touches its claim every ``heartbeat_every`` seconds. A
  claim is *stale* when its heartbeat is older than ``stale_after`` seconds, or when its owner ran on
  this host and that pid is gone (a SIGKILLed worker is noticed at once). A stale claim is taken
  over: the taker first wins an ``O_EXCL`` ticket named after that claim's token (one taker per stale
  claim), renames the claim aside, checks that what it moved is the claim it judged stale (else puts
  it back), then creates its own claim with ``O_EXCL``.
- After winning a claim, the worker checks again that the cell is not finished, so a cell finished
  between the first check and the claim is not recomputed.

Clocks: staleness compares the claim's mtime with this machine's clock; over NFS the mtime is the
server's. Keep the machines' clocks within a small fraction of ``stale_after`` (NTP does).
The one race left needs a live worker whose heartbeat stalled for ``stale_after`` to release its
claim within the microseconds between a taker's rename and its put-back, while a third worker
claims; it costs a duplicated computation, never a lost or torn record (records are written whole).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .validation import InputError, InputTypeError, check_float

__all__ = ["CellStore", "Owner", "cell_id", "read_cells_jsonl"]



def cell_id(key: str) -> str:
    """The file stem of a cell: 32 hex digits of SHA-256(key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: host name, process id, pid namespace and a token unique to this process.

    The pid namespace matters because containers can share a host name (``docker --network host``)
    while their pids mean different processes: a pid is only checked for liveness when host *and*
    namespace match ours.
    """

    host: str
    pid: int
    token: str
    pidns: str = ""

    @classmethod
    def current(cls) -> Owner:
        """This process's owner (a new token after a fork, since the pid changes)."""
        global _OWNER
        if _OWNER is None or _OWNER.pid != os.getpid():
            _OWNER = cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, _pid_namespace())
        return _OWNER


_OWNER: Owner | None = None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:  # not Linux: the host name alone decides
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _positive(value: Any, name: str) -> float:
    return check_float(value, f"CellStore.{name} (seconds)", 0.0, math.inf)


class CellStore:
    """Finished cells, claims and failures of one study run, safe for concurrent writers.

    Args:
        run_dir: the study's run folder (created if missing).
        stale_after: seconds without a heartbeat after which a claim is taken over.
        heartbeat_every: seconds between heartbeats; default ``stale_after / 20``. Must be below
            ``stale_after / 2`` so one late beat does not make a live claim look stale.

    The store holds only paths and numbers: it pickles, so Ray tasks and SLURM jobs get it as is.
    """

    def __init__(self, run_dir: str | os.PathLike, *, stale_after: float = 600.0,
                 heartbeat_every: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.stale_after = _positive(stale_after, "stale_after")
        self.heartbeat_every = _positive(
            self.stale_after / 20 if heartbeat_every is None else heartbeat_every, "heartbeat_every")
        if self.heartbeat_every >= self.stale_after / 2:
            raise InputError(
                f"CellStore.heartbeat_every={self.heartbeat_every!r}; expected < stale_after / 2 "
                f"= {self.stale_after / 2!r}, or a live claim may look stale")
        for sub in ("cells", "claims", "failed"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._legacy_cache: tuple[tuple[int, int], dict[str, dict]] | None = None

    def __repr__(self) -> str:
        return f"CellStore({str(self.run_dir)!r}, stale_after={self.stale_after})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_legacy_cache": None}

    # ---- paths ---------------------------------------------------------------------------------
    def _cell_path(self, key: str) -> Path:
        return self.run_dir / "cells" / f"{cell_id(key)}.json"

    def _claim_path(self, key: str) -> Path:
        return self.run_dir / "claims" / f"{cell_id(key)}.claim"

    def _failed_path(self, key: str) -> Path:
        return self.run_dir / "failed" / f"{cell_id(key)}.json"

    # ---- finished cells ------------------------------------------------------------------------
    def done(self, key: str) -> bool:
        """Whether the cell is finished (a per-cell file, or a record in the old ``cells.jsonl``)."""
        return self._cell_path(key).exists() or key in self._legacy()

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        """The finished ones among ``keys``, from one listing of ``cells/`` (cheap enough to poll)."""
        names = {n[:-5] for n in os.listdir(self.run_dir / "cells") if n.endswith(".json") and not n.startswith(".")}
        legacy = self._legacy()
        return {k for k in keys if cell_id(k) in names or k in legacy}

    def put(self, key: str, record: dict) -> None:
        """Write a finished cell atomically (temporary file, fsync, rename) and clear its failure.

        The record is stored with ``record["cell"] = key``; a record naming another cell is refused.
        """
        if not isinstance(key, str) or not key:
            raise InputError(f"cell key {key!r}; expected a non-empty string")
        if not isinstance(record, dict):
            raise InputTypeError(f"record for cell {key!r} is a {type(record).__name__}; expected a dict")
        if record.get("cell", key) != key:
            raise InputError(f"record names cell {record['cell']!r} but is stored as {key!r}")
        _write_atomic(self._cell_path(key), {**record, "cell": key})
        self._failed_path(key).unlink(missing_ok=True)

    def get(self, key: str) -> dict | None:
        """The record of a finished cell, or None (an unreadable file warns and counts as missing)."""
        path = self._cell_path(key)
        if path.exists():
            return _read_record(path, expect_id=cell_id(key))
        return self._legacy().get(key)

    def records(self) -> dict[str, dict]:
        """Every finished cell by key: the old ``cells.jsonl`` first (first record per key wins), then
        the per-cell files. An unreadable, foreign (not a record, or named for another key) or
        misplaced file is skipped with a warning naming it; it never raises."""
        out = dict(self._legacy())
        for path in sorted((self.run_dir / "cells").iterdir()):
            if path.name.startswith(".") or not path.name.endswith(".json"):
                continue  # temporary files of writers (or of killed writers)
            record = _read_record(path, expect_id=path.name[:-5])
            if record is not None:
                out.setdefault(record["cell"], record)
        return out

    def _legacy(self) -> dict[str, dict]:
        path = self.run_dir / "cells.jsonl"
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._legacy_cache is None or self._legacy_cache[0] != stamp:
            self._legacy_cache = (stamp, read_cells_jsonl(path))
        return self._legacy_cache[1]

    # ---- claims --------------------------------------------------------------------------------
    def claim(self, key: str, owner: Owner | None = None) -> bool:
        """Try to claim a cell for ``owner`` (default: this process). True when it is now ours.

        False when another live worker holds it or the cell is already finished. A stale claim
        (see the module docstring) is taken over.
        """
        owner = owner or Owner.current()
        path = self._claim_path(key)
        for _ in range(3):
            if _create_claim(path, key, owner):
                if self.done(key):  # finished between the caller's check and our claim
                    self.release(key, owner)
                    return False
                return True
            state = self._claim_state(path)
            if state is None:  # released meanwhile: try to create again
                continue
            info, stale = state
            if not stale:
                return False
            if not self._take_over(path, info, owner):
                return False
        return False

    def _claim_state(self, path: Path) -> tuple[dict | None, bool] | None:
        """(claim content or None if unreadable yet, stale?) or None when the claim is gone."""
        try:
            mtime = path.stat().st_mtime
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
            if not isinstance(info, dict):
                info = None
        except json.JSONDecodeError:  # just created, content not written yet (or torn)
            info = None
        if info is not None:
            info["_mtime"] = mtime
        stale = time.time() - mtime > self.stale_after
        here = Owner.current()
        if not stale and info is not None and (info.get("host"), info.get("pidns", "")) == (here.host, here.pidns):
            pid = info.get("pid")
            stale = isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)
        return info, stale

    def _take_over(self, path: Path, info: dict | None, owner: Owner) -> bool:
        """Remove the stale claim ``info`` if we are its one taker; True when it is gone."""
        ident = info.get("token") if info else None
        if not isinstance(ident, str) or not ident.isalnum():
            ident = "unreadable"
        ticket = path.with_name(f"{path.stem}.{ident}.takeover")
        try:
            os.close(os.open(ticket, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False  # another worker is taking this claim over
        aside = path.with_name(f"{path.stem}.{ident}.{owner.token}.dead")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # released meanwhile
        moved = self._claim_state(aside)
        moved_token = moved[0].get("token") if moved and moved[0] else None
        if ident != "unreadable" and moved_token != ident:
            # We moved a newer, live claim (the stale one was released and replaced): put it back.
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        if info:
            warnings.warn(
                f"took over the stale claim of {info.get('host')}:{info.get('pid')} on cell {info.get('cell')!r} "
                f"(heartbeat {time.time() - info['_mtime']:.0f} s old)", RuntimeWarning, stacklevel=3)
        return True

    def release(self, key: str, owner: Owner | None = None) -> None:
        """Drop ``owner``'s claim on a cell (a claim another worker has taken over is left alone)."""
        owner = owner or Owner.current()
        path = self._claim_path(key)
        state = self._claim_state(path)
        if state is not None and state[0] is not None and state[0].get("token") == owner.token:
            path.unlink(missing_ok=True)
        for ticket in path.parent.glob(f"{path.stem}.*.takeover"):
            ticket.unlink(missing_ok=True)

    def holder(self, key: str) -> dict | None:
        """The current claim on a cell (host, pid, token, time, stale) or None."""
        state = self._claim_state(self._claim_path(key))
        if state is None or state[0] is None:
            return None
        info, stale = state
        return {k: v for k, v in info.items() if not k.startswith("_")} | {"stale": stale}

    @contextmanager
    def heartbeat(self, key: str, owner: Owner | None = None) -> Iterator[threading.Event]:
        """Touch the claim every ``heartbeat_every`` s while the block runs.

        Yields an Event that is set if the claim was lost (taken over or removed) meanwhile.
        """
        owner = owner or Owner.current()
        path = self._claim_path(key)
        stop, lost = threading.Event(), threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_every):
                state = self._claim_state(path)
                if state is None or state[0] is None or state[0].get("token") != owner.token:
                    lost.set()
                    return
                try:
                    os.utime(path)
                except FileNotFoundError:
                    lost.set()
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat {cell_id(key)[:8]}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    # ---- failures ------------------------------------------------------------------------------
    def fail(self, key: str, error: BaseException | str, owner: Owner | None = None) -> None:
        """Record a failed cell with its traceback (``failed/<id>.json``); a later run retries it."""
        owner = owner or Owner.current()
        if isinstance(error, BaseException):
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            message = f"{type(error).__name__}: {error}"
        else:
            tb = str(error)
            message = tb.strip().splitlines()[-1] if tb.strip() else "unknown error"
        _write_atomic(self._failed_path(key), {"cell": key, "error": message, "traceback": tb,
                                               "time": time.time(), **asdict(owner)})

    def failures(self) -> dict[str, dict]:
        """Failed cells that have not succeeded since, by key: error, traceback, host, pid, time."""
        out = {}
        for path in sorted((self.run_dir / "failed").iterdir()):
            if path.name.startswith(".") or not path.name.endswith(".json"):
                continue
            record = _read_record(path, expect_id=path.name[:-5])
            if record is not None and not self.done(record["cell"]):
                out[record["cell"]] = record
        return out

    # ---- one cell, start to end ----------------------------------------------------------------
    def run_cell(self, key: str, compute: Callable[[], dict], owner: Owner | None = None) -> str:
        """Claim a cell, compute it under a heartbeat, store the record or the failure, release.

        Returns:
            "done" (computed and stored here), "failed" (``compute`` raised an Exception: recorded
            with its traceback, claim released) or "skipped" (finished already, or another live
            worker holds it). A BaseException (KeyboardInterrupt, SystemExit) releases the claim
            and propagates, recording nothing.
        """
        owner = owner or Owner.current()
        if self.done(key) or not self.claim(key, owner):
            return "skipped"
        try:
            with self.heartbeat(key, owner):
                try:
                    record = compute()
                except Exception as exc:  # noqa: BLE001 - recorded, the other cells go on
                    self.fail(key, exc, owner)
                    return "failed"
            self.put(key, record)
            return "done"
        finally:
            self.release(key, owner)


# ---- files --------------------------------------------------------------------------------------
def _create_claim(path: Path, key: str, owner: Owner) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"cell": key, "time": time.time(), **asdict(owner)}, f)
        f.flush()
        os.fsync(f.fileno())
    return True


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex}")
    try:
        with tmp.open("w") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_record(path: Path, *, expect_id: str) -> dict | None:
    """A stored record, or None with a warning naming the file when it is unreadable or foreign."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"skipping unreadable cell file {str(path)!r}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if not isinstance(record, dict) or not isinstance(record.get("cell"), str):
        warnings.warn(f"skipping foreign file {str(path)!r}: not a record with a 'cell' key", RuntimeWarning,
                      stacklevel=3)
        return None
    if cell_id(record["cell"]) != expect_id:
        warnings.warn(f"skipping misplaced file {str(path)!r}: it holds cell {record['cell']!r}, whose file "
                      f"would be {cell_id(record['cell'])}.json", RuntimeWarning, stacklevel=3)
        return None
    return record


def read_cells_jsonl(path: str | os.PathLike) -> dict[str, dict]:
    """Records of the old one-file log by key; first record per key wins.

    A line that is not JSON (a write torn by a kill), not an object, or has no string 'cell' (a
    ``{}`` line) is skipped with a warning naming the file and line number.
    """
    path = Path(path)
    done: dict[str, dict] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                warnings.warn(f"skipping unreadable line {number} of {str(path)!r}: {exc}", RuntimeWarning,
                              stacklevel=4)
                continue
            if not isinstance(record, dict) or not isinstance(record.get("cell"), str):
                warnings.warn(f"skipping line {number} of {str(path)!r}: not a record with a 'cell' key",
                              RuntimeWarning, stacklevel=4)
                continue
            done.setdefault(record["cell"], record)
    return done
