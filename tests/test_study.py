"""The study runner: persistence, resume after SIGKILL, determinism, summary; on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny import tiny_model, tiny_tokenizer
from toolkit.study import StudyConfig, _append_cell, _cells, _read_cells, summary

WORDS = "good bad great awful movie food service plot liked hated not very".split()


def write_fixture(tmp: Path) -> tuple[Path, Path]:
    """A tiny model folder and a JSONL dataset in the tiny tokenizer's vocabulary."""
    model_dir = tmp / "model"
    tiny_model().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        label = i % 2
        words = list(rng.choice(WORDS, size=int(rng.integers(3, 9))))
        words.append("good" if label else "bad")
        split = ["train", "validation", "test"][i % 3]
        lines.append(json.dumps({"id": f"t-{i}", "text": " ".join(words), "label": label, "split": split}))
    data = tmp / "tiny.jsonl"
    data.write_text("\n".join(lines) + "\n")
    return model_dir, data


DRIVER = textwrap.dedent(
    """
    import sys
    from toolkit import Task, register_dataset
    from toolkit.study import StudyConfig, run_study
    model_dir, data, out = sys.argv[1:4]
    register_dataset("tiny_sent", data, Task(name="tiny_sent", instruction="sentiment of this review ?",
                     label_names=("negative", "positive"), verbalizers=("negative", "positive"),
                     input_name="review", use_chat_template=False))
    config = StudyConfig(models=(model_dir,), datasets=("tiny_sent",), levels=(0, 1, 2, 3),
                         selections=("cosine", "random"), methods=("saliency",), n_eval=8, n_validation=6,
                         n_importance=4, n_faithfulness=3, n_random=2, n_boot=50, batch_size=4, output_dir=out)
    table = run_study(config, progress=False, report=False)
    table.to_csv(out + "/final.csv", index=False)
    print(config.run_dir())
    """
)


def run_driver(tmp: Path, out: Path, *, kill_after_cells: int | None = None) -> subprocess.Popen | str:
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    model_dir, data = tmp / "model", tmp / "tiny.jsonl"
    cmd = [sys.executable, str(script), str(model_dir), str(data), str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if kill_after_cells is None:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline:
        logs = list(out.glob("*/cells.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= kill_after_cells:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc
        if proc.poll() is not None:
            raise AssertionError("the study finished before it could be killed: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the first cells")


def test_sigkill_and_resume_gives_the_uninterrupted_table(tmp_path):
    write_fixture(tmp_path)
    clean = Path(run_driver(tmp_path, tmp_path / "clean"))
    killed_out = tmp_path / "killed"
    run_driver(tmp_path, killed_out, kill_after_cells=2)
    log = next(killed_out.glob("*/cells.jsonl"))
    n_before = len(log.read_text().splitlines())
    assert 2 <= n_before < 7, n_before  # really interrupted mid-study
    with log.open("a") as f:  # and as if the kill had landed in the middle of a write
        f.write('{"cell": "half-written')
    resumed = Path(run_driver(tmp_path, killed_out))
    assert resumed.name == clean.name  # same config hash; output_dir is not part of it
    a = pd.read_csv(clean.parent / "final.csv")
    b = pd.read_csv(killed_out / "final.csv")
    pd.testing.assert_frame_equal(a, b)
    records = _read_cells(log)
    assert len(records) == 7  # 1 unpruned + 2 selections x 3 levels: no duplicate, none missing
    assert set(a.k) == {0, 1, 2, 3}
    assert (a[(a.k == 0) & (a.metric == "accuracy")].delta.abs() < 1e-12).all()  # unpruned vs itself


def test_cell_log_skips_truncated_lines_and_keeps_first(tmp_path):
    path = tmp_path / "cells.jsonl"
    _append_cell(path, {"cell": "a", "v": 1})
    with path.open("a") as f:
        f.write('{"cell": "b", "v"')  # killed mid-write
    _append_cell(path, {"cell": "a", "v": 2})
    _append_cell(path, {"cell": "c", "v": 3})
    done = _read_cells(path)
    assert {k: v["v"] for k, v in done.items()} == {"a": 1, "c": 3}


def test_config_validation_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown selection 'cosin'"):
        StudyConfig(selections=("cosin",))
    with pytest.raises(ValueError, match="levels must be integers k >= 0 .* got -1"):
        StudyConfig(levels=(0, -1))
    with pytest.raises(ValueError, match="unknown study option.*'n_evals'"):
        StudyConfig.from_dict({"n_evals": 3})
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        StudyConfig.profile("tiny")
    cfg = StudyConfig.profile("ci")
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "c.yaml").write_text("levels: [0, 2, 6]\nselections: [cosine, random]\nmethods: [saliency]\n"
                                     "n_eval: 16\nn_validation: 12\nn_importance: 4\nn_faithfulness: 2\n"
                                     "n_random: 1\nn_boot: 50\nmax_words: 8\n")
    assert StudyConfig.from_file(tmp_path / "c.json") == cfg
    assert StudyConfig.from_file(tmp_path / "c.yaml").digest() == cfg.digest()
    assert StudyConfig(output_dir="x").digest() == StudyConfig(output_dir="y").digest()
    assert StudyConfig(seed=1).digest() != StudyConfig().digest()


def test_cells_run_unpruned_first_once():
    keys = [c.key for c in _cells(StudyConfig(levels=(0, 2, 4), selections=("cosine", "random")))]
    assert keys[0].endswith("|none|0") and sum(k.endswith("|0") for k in keys) == 1 and len(keys) == 5


def test_summary_flags_misalignment():
    rows = []
    for k, acc_ci, ece_ci in [(0, (0, 0), (0, 0)), (2, (-0.05, 0.02), (0.01, 0.08)), (4, (-0.3, -0.1), (0.0, 0.2))]:
        for metric, ci in [("accuracy", acc_ci), ("ece", ece_ci), ("naopc_comprehensiveness:saliency", (-0.1, 0.1))]:
            rows.append(dict(model="m", dataset="d", selection="none" if k == 0 else "cosine", k=k, layers="",
                             metric=metric, value=0.5, low=0.4, high=0.6, delta=sum(ci) / 2,
                             delta_low=ci[0], delta_high=ci[1]))
    s = summary(pd.DataFrame(rows)).set_index("k")
    assert s.loc[2, "accuracy_holds"] and s.loc[2, "misaligned"]  # accuracy CI has 0, ECE CI does not
    assert not s.loc[4, "accuracy_holds"] and not s.loc[4, "misaligned"]
    assert not s.loc[0, "misaligned"]
