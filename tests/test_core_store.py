"""CellStore: concurrent writers, dead workers, torn and foreign files, failures (toolkit/_core/store.py)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import uuid
import warnings
from pathlib import Path

import pytest

from toolkit._core.store import CellStore, Owner, cell_id

FORK = mp.get_context("fork")  # fast start; the children only use the store and the stdlib
KEYS = [f"model|data|sel|{i}" for i in range(20)]


def _value(key: str) -> dict:
    return {"value": sum(map(ord, key)) % 97, "key_len": len(key)}


def _compute(key: str, marks: Path, sleep: float) -> dict:
    """A fake cell: marks that it started, sleeps, marks that it completed."""
    tag = f"{cell_id(key)}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    (marks / f"{tag}.started").touch()
    time.sleep(sleep)
    (marks / f"{tag}.completed").touch()
    return _value(key)


def _walk(run_dir: str, marks: str, offset: int, sleep: float, stale_after: float = 600.0) -> None:
    store = CellStore(run_dir, stale_after=stale_after)
    keys = KEYS[offset:] + KEYS[:offset]
    for key in keys:
        store.run_cell(key, lambda key=key: _compute(key, Path(marks), sleep))


def _marks(marks: Path, kind: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in marks.glob(f"*.{kind}"):
        counts[p.name.split(".")[0]] = counts.get(p.name.split(".")[0], 0) + 1
    return counts


def test_concurrent_writers_compute_each_cell_exactly_once(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    procs = [FORK.Process(target=_walk, args=(str(tmp_path / "run"), str(marks), 5 * i, 0.005)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = CellStore(tmp_path / "run")
    records = store.records()
    assert sorted(records) == sorted(KEYS)  # no loss
    assert all({k: v for k, v in records[k].items() if k != "cell"} == _value(k) for k in KEYS)
    assert _marks(marks, "completed") == {cell_id(k): 1 for k in KEYS}  # no duplicate
    assert _marks(marks, "started") == {cell_id(k): 1 for k in KEYS}
    assert sorted(os.listdir(tmp_path / "run" / "claims")) == []  # every claim released
    assert [n for n in os.listdir(tmp_path / "run" / "cells") if n.startswith(".")] == []  # no temp left


def _slow_first(run_dir: str, marks: str) -> None:
    store = CellStore(run_dir, stale_after=600)
    store.run_cell(KEYS[0], lambda: _compute(KEYS[0], Path(marks), 60))


def test_sigkilled_worker_claim_is_taken_over_and_cell_completes_once(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    run = tmp_path / "run"
    p = FORK.Process(target=_slow_first, args=(str(run), str(marks)))
    p.start()
    deadline = time.time() + 30
    while not _marks(marks, "started") and time.time() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    store = CellStore(run, stale_after=600)  # dead pid on this host: no need to wait for staleness
    holder = store.holder(KEYS[0])
    assert holder is not None and holder["pid"] == p.pid and holder["stale"]
    with pytest.warns(RuntimeWarning, match=f"took over the stale claim of .*:{p.pid}"):
        _walk(str(run), str(marks), 0, 0.0)
    assert sorted(store.records()) == sorted(KEYS)
    assert _marks(marks, "completed") == {cell_id(k): 1 for k in KEYS}
    assert _marks(marks, "started")[cell_id(KEYS[0])] == 2  # the killed attempt and the rerun


def _foreign_claim(store: CellStore, key: str, age: float = 0.0) -> Path:
    """A claim left by a worker on another host (its pid cannot be checked), `age` seconds old."""
    path = store.run_dir / "claims" / f"{cell_id(key)}.claim"
    path.write_text(json.dumps({"cell": key, "host": "elsewhere.invalid", "pid": 1, "token": uuid.uuid4().hex,
                                "time": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_claim_of_another_host_is_taken_over_only_after_stale_after(tmp_path):
    store = CellStore(tmp_path, stale_after=0.4, heartbeat_every=0.05)
    _foreign_claim(store, "a")
    assert not store.claim("a")  # fresh: the other host's worker may be alive
    time.sleep(0.5)
    with pytest.warns(RuntimeWarning, match="elsewhere.invalid:1"):
        assert store.claim("a")
    assert store.holder("a")["token"] == Owner.current().token
    store.release("a")
    assert store.holder("a") is None


def test_heartbeat_keeps_a_long_cell_claimed(tmp_path):
    store = CellStore(tmp_path, stale_after=0.3, heartbeat_every=0.05)
    other = Owner("elsewhere.invalid", 1, uuid.uuid4().hex)
    assert store.claim("a")
    with store.heartbeat("a") as lost:
        time.sleep(1.0)  # > 3 x stale_after
        assert not store.claim("a", other)
        assert not lost.is_set()
        (store.run_dir / "claims" / f"{cell_id('a')}.claim").unlink()  # someone removed our claim
        time.sleep(0.2)
        assert lost.is_set()


def _race_takeover(run_dir: str, key: str, barrier, results) -> None:
    store = CellStore(run_dir, stale_after=0.2, heartbeat_every=0.05)
    barrier.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results.put(store.claim(key))


@pytest.mark.parametrize("round_", range(3))
def test_many_takers_of_one_stale_claim_one_wins(tmp_path, round_):
    store = CellStore(tmp_path, stale_after=0.2, heartbeat_every=0.05)
    _foreign_claim(store, "a", age=10)
    barrier, results = FORK.Barrier(6), FORK.Queue()
    procs = [FORK.Process(target=_race_takeover, args=(str(tmp_path), "a", barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    won = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert sum(won) == 1


def test_torn_and_foreign_files_are_skipped_with_a_warning(tmp_path):
    store = CellStore(tmp_path)
    store.put("good", {"x": 1})
    cells = tmp_path / "cells"
    (cells / "0123456789abcdef0123456789abcdef.json").write_text('{"cell": "tor')  # torn
    (cells / "fedcba9876543210fedcba9876543210.json").write_text("[1, 2]")  # foreign
    (cells / f"{cell_id('elsewhere')}.json").write_text(json.dumps({"cell": "other", "x": 2}))  # misplaced
    (cells / f".tmp-{cell_id('x')}.json-123").write_text("{")  # a killed writer's temp file: silent
    (cells / "notes.txt").write_text("hello")  # not ours: silent
    with pytest.warns(RuntimeWarning) as caught:
        records = store.records()
    assert records == {"good": {"cell": "good", "x": 1}}
    text = "\n".join(str(w.message) for w in caught)
    assert "0123456789abcdef0123456789abcdef.json" in text and "unreadable" in text
    assert "fedcba9876543210fedcba9876543210.json" in text and "foreign" in text
    assert f"{cell_id('elsewhere')}.json" in text and "misplaced" in text
    assert len(caught) == 3


def test_old_cells_jsonl_is_read_first_record_wins(tmp_path):
    lines = [
        json.dumps({"cell": "a", "x": 1}),
        "{}",
        json.dumps({"cell": "b", "x": 2}),
        json.dumps({"cell": "a", "x": 99}),  # a second record of a: ignored
        '{"cell": "c", "x"',  # torn by a kill
    ]
    (tmp_path / "cells.jsonl").write_text("\n".join(lines))
    store = CellStore(tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        records = store.records()
    assert records == {"a": {"cell": "a", "x": 1}, "b": {"cell": "b", "x": 2}}
    text = "\n".join(str(w.message) for w in caught)
    assert "line 2 of" in text and "line 5 of" in text and "cells.jsonl" in text
    assert store.done("a") and store.done("b") and not store.done("c")
    assert store.done_keys(["a", "b", "c"]) == {"a", "b"}
    assert store.run_cell("a", lambda: pytest.fail("a finished cell was recomputed")) == "skipped"
    assert store.run_cell("c", lambda: {"x": 3}) == "done"
    assert store.records()["c"] == {"cell": "c", "x": 3}


def test_failing_cell_is_recorded_released_and_retried(tmp_path):
    store = CellStore(tmp_path)

    def boom() -> dict:
        raise ZeroDivisionError("cell blew up")

    assert store.run_cell("a", boom) == "failed"
    assert store.run_cell("b", lambda: {"x": 1}) == "done"  # the others go on
    failures = store.failures()
    assert list(failures) == ["a"]
    assert failures["a"]["error"] == "ZeroDivisionError: cell blew up"
    assert "Traceback" in failures["a"]["traceback"] and "def boom" not in failures["a"]["error"]
    assert "in boom" in failures["a"]["traceback"]
    assert store.holder("a") is None and not store.done("a")
    assert store.run_cell("a", lambda: {"x": 2}) == "done"  # a rerun retries it
    assert store.failures() == {} and not (tmp_path / "failed" / f"{cell_id('a')}.json").exists()


def test_interrupt_releases_the_claim_and_records_nothing(tmp_path):
    store = CellStore(tmp_path)

    def interrupted() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.run_cell("a", interrupted)
    assert store.holder("a") is None and store.failures() == {} and not store.done("a")


def test_claim_on_a_finished_cell_is_refused(tmp_path):
    store = CellStore(tmp_path)
    store.put("a", {"x": 1})
    assert not store.claim("a")
    assert store.holder("a") is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stale_after=0), r"CellStore.stale_after \(seconds\) must be a float in \(0, inf\), got 0"),
        (dict(stale_after="10"), r"CellStore.stale_after \(seconds\) must be a float in \(0, inf\), got '10'"),
        (dict(stale_after=10, heartbeat_every=6), r"CellStore.heartbeat_every=6.0; expected < stale_after / 2"),
        (dict(heartbeat_every=-1), r"CellStore.heartbeat_every \(seconds\) must be a float in \(0, inf\), got -1"),
    ],
)
def test_bad_settings_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CellStore(tmp_path, **kwargs)


def test_put_refuses_a_record_of_another_cell(tmp_path):
    store = CellStore(tmp_path)
    with pytest.raises(ValueError, match="record names cell 'b' but is stored as 'a'"):
        store.put("a", {"cell": "b"})
    with pytest.raises(TypeError, match="record for cell 'a' is a list"):
        store.put("a", [1])


def test_store_pickles_and_long_keys_give_short_names(tmp_path):
    import pickle

    store = CellStore(tmp_path, stale_after=5)
    key = "/very/long/model/path/" * 30 + "|data|sel|3"
    store.put(key, {"x": 1})
    again = pickle.loads(pickle.dumps(store))
    assert again.get(key) == {"cell": key, "x": 1} and again.stale_after == 5
    assert max(len(n) for n in os.listdir(tmp_path / "cells")) < 60


def test_dead_pid_in_another_pid_namespace_is_not_taken_as_dead(tmp_path):
    """A container sharing our host name: its pids are not ours to check; only staleness counts."""
    store = CellStore(tmp_path, stale_after=600)
    here = Owner.current()
    path = store.run_dir / "claims" / f"{cell_id('a')}.claim"
    path.write_text(json.dumps({"cell": "a", "host": here.host, "pid": 2**22 + 1, "token": uuid.uuid4().hex,
                                "pidns": "pid:[1]", "time": time.time()}))
    assert not store.claim("a")
    path.write_text(json.dumps({"cell": "a", "host": here.host, "pid": 2**22 + 1, "token": uuid.uuid4().hex,
                                "pidns": here.pidns, "time": time.time()}))
    with pytest.warns(RuntimeWarning, match="took over"):
        assert store.claim("a")  # same namespace, no such pid: dead, taken over at once
