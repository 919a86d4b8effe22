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
from toolkit._core.store import CellStore
from toolkit.study import StudyConfig, plan, status, study_cells, summary

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
    executor = sys.argv[4] if len(sys.argv) > 4 else "local"
    register_dataset("tiny_sent", data, Task(name="tiny_sent", instruction="sentiment of this review ?",
                     label_names=("negative", "positive"), verbalizers=("negative", "positive"),
                     input_name="review", use_chat_template=False))
    config = StudyConfig(models=(model_dir,), datasets=("tiny_sent",), levels=(0, 1, 2, 3),
                         selections=("cosine", "random"), methods=("saliency",), n_eval=8, n_validation=6,
                         n_importance=4, n_faithfulness=3, n_random=2, n_boot=50, batch_size=4, output_dir=out,
                         executor=executor, resources=dict(workers=2, cluster="local", time_min=10))
    table = run_study(config, progress=False, report=False)
    table.to_csv(out + "/final.csv", index=False)
    print(config.run_dir())
    """
)


def run_driver(tmp: Path, out: Path, *, kill_after_cells: int | None = None, executor: str = "local"):
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    model_dir, data = tmp / "model", tmp / "tiny.jsonl"
    cmd = [sys.executable, str(script), str(model_dir), str(data), str(out), executor]
    # One torch thread in the driver and in every worker (Ray sets OMP_NUM_THREADS=num_cpus=1 in its
    # workers; submitit's processes inherit this): float32 sums then run in the same order everywhere.
    # PYTHONPATH: the driver (and its workers) import this checkout's toolkit, not an installed one.
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    if kill_after_cells is None:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline:
        if len(list(out.glob("*/cells/*.json"))) >= kill_after_cells:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc
        if proc.poll() is not None:
            raise AssertionError("the study finished before it could be killed: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the first cells")


@pytest.fixture(scope="session")
def local_study(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny study run once per test session on the local engine: (fixture folder, its run dir).

    The reference table (``<run dir>/../final.csv``) of the resume test and of every engine test;
    other runs of the same study must use this folder's model and data (their paths are in the
    config hash and in the table).
    """
    tmp = tmp_path_factory.mktemp("tiny_study")
    write_fixture(tmp)
    return tmp, Path(run_driver(tmp, tmp / "local"))


def test_sigkill_and_resume_gives_the_uninterrupted_table(tmp_path, local_study):
    fixture, clean = local_study
    killed_out = tmp_path / "killed"
    run_driver(fixture, killed_out, kill_after_cells=2)
    run_dir = next(killed_out.glob("*/cells")).parent
    n_before = len(list((run_dir / "cells").glob("*.json")))
    assert 2 <= n_before < 7, n_before  # really interrupted mid-study
    (run_dir / "cells" / ".tmp-half-written").write_text('{"cell": "half-written')  # as if killed mid-write
    resumed = Path(run_driver(fixture, killed_out))
    assert resumed.name == clean.name  # same config hash; output_dir is not part of it
    a = pd.read_csv(clean.parent / "final.csv")
    b = pd.read_csv(killed_out / "final.csv")
    pd.testing.assert_frame_equal(a, b)
    records = CellStore(run_dir).records()
    assert len(records) == 7  # 1 unpruned + 2 selections x 3 levels: no duplicate, none missing
    assert set(a.k) == {0, 1, 2, 3}
    assert (a[(a.k == 0) & (a.metric == "accuracy")].delta.abs() < 1e-12).all()  # unpruned vs itself


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
    keys = [c.key for c in study_cells(StudyConfig(levels=(0, 2, 4), selections=("cosine", "random")))]
    assert keys[0].endswith("|none|0") and sum(k.endswith("|0") for k in keys) == 1 and len(keys) == 5


def _table_row(k, metric, **values):
    return dict(model="m", dataset="d", selection="none" if k == 0 else "cosine", level=k, k=k, layers="",
                metric=metric, value=0.5, low=0.4, high=0.6, **values)


def test_summary_gates_the_claims_and_adjusts_each_family_against_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rows = []
    # (k, selection, keeps accuracy?, collapsed?, one-sided p of ECE, of NAOPC)
    cells = [(2, "cosine", True, False, 0.001, 0.2),   # gated: ECE degrades after Holm over the primary family
             (4, "cosine", False, False, 0.001, 0.2),  # the same ECE p, accuracy not kept: exploratory
             (6, "cosine", True, False, 0.03, 0.04),   # gated, p = 0.03 alone: not shown once m counts
             (8, "cosine", True, True, 0.0001, 0.2),   # keeps accuracy but collapsed: exploratory
             (2, "random", True, False, 0.0001, 0.2)]  # a control selection: exploratory whatever its gate
    rows += [_table_row(0, "accuracy"), _table_row(0, "ece"), _table_row(0, "naopc_comprehensiveness:saliency")]
    for k, sel, keeps, broken, p_ece, p_naopc in cells:
        base = dict(_table_row(k, "accuracy"), selection=sel)
        rows.append(dict(base, delta=-0.01, ni_low=-0.03 if keeps else -0.08, noninferior=keeps, margin=0.05,
                         collapsed=broken, collapse_reasons="one class" if broken else "", n=200))
        for metric, p in (("ece", p_ece), ("naopc_comprehensiveness:saliency", p_naopc)):
            rows.append(dict(base, metric=metric, delta=0.1, delta_low=0.0, delta_high=0.2, p=p, n=200,
                             test="normal" if metric == "ece" else "t", alternative="greater" if metric == "ece"
                             else "less"))
    table = pd.DataFrame(rows)
    head = summary(table, correction="holm")
    s = head.table.set_index(["selection", "k"])
    primary = [(2, 0.001), (2, 0.2), (6, 0.03), (6, 0.04)]  # cosine cells 2 and 6: ECE, NAOPC
    holm = multipletests([p for _, p in primary], alpha=0.05, method="holm")[1]
    assert head.m == 4 and s.loc[("cosine", 2), "ece_p_adj"] == pytest.approx(holm[0])
    assert s.loc[("cosine", 6), "ece_p_adj"] == pytest.approx(holm[2])
    exploratory = [0.001, 0.2, 0.0001, 0.2, 0.0001, 0.2]  # cosine 4, cosine 8, random 2
    bh = multipletests(exploratory, alpha=0.05, method="fdr_bh")[1]
    assert head.m_exploratory == 6 and s.loc[("cosine", 4), "ece_p_adj"] == pytest.approx(bh[0])
    assert s.loc[("cosine", 2), "ece_degrades"] and not s.loc[("cosine", 6), "ece_degrades"]
    assert s.loc[("cosine", 2), "misaligned"] and s.loc[("cosine", 2), "verdict"] == "keeps accuracy; degrades: ece"
    assert not s.loc[("cosine", 4), "misaligned"] and s.loc[("cosine", 4), "ece_degrades"]  # exploratory reject
    assert s.loc[("cosine", 4), "verdict"] == "not shown to keep accuracy (margin 0.05)"
    assert s.loc[("cosine", 8), "verdict"] == "collapsed (one class)" and not s.loc[("cosine", 8), "misaligned"]
    assert not s.loc[("random", 2), "misaligned"] and s.loc[("cosine", 6), "verdict"] == (
        "keeps accuracy; no degradation shown")
    assert s.misaligned.dtype == bool and not s.loc[("none", 0), "misaligned"]  # the reference is no claim
    assert s.loc[("none", 0), "verdict"] == "reference (unpruned)" and int(s.misaligned.sum()) == 1
    assert "Holm" in head.statement and "3 of 5 pruned cells" not in head.statement
    assert "in 4 of 5 pruned cells" in head.statement and "1 collapsed" in head.statement
    assert head.expected_false_flags == pytest.approx(0.2) and head.margin == 0.05 and head.correction == "holm"
    assert len(head.tests) == 10 and set(head.tests.family) == {"primary", "exploratory"}
    with pytest.raises(ValueError, match="correction"):
        summary(table, correction="bonf")
    old = table.drop(columns=["noninferior", "ni_low", "collapsed", "collapse_reasons"])
    with pytest.raises(ValueError, match="predates"):
        summary(old.assign(noninferior=np.nan, collapsed=np.nan))


def test_digest_of_older_configs_is_unchanged():
    # Fields that change no cell (margin, executor, resources, ...) stay out of the hash, and options
    # added later enter it only when set away from their old behaviour (naopc=True, no device), so
    # results computed before they existed are found again. full_grid.yaml is the default study of
    # issues 6-10 (22 cells), whose hash was 06e39b53264c.
    old = StudyConfig.from_file(Path(__file__).parents[1] / "benchmarks" / "studies" / "full_grid.yaml")
    assert old.digest() == "06e39b53264c"
    assert old.with_overrides(margin=0.1, executor="ray", resources={"workers": 4}).digest() == "06e39b53264c"
    assert old.with_overrides(dtype="bfloat16").digest() != "06e39b53264c"
    assert old.with_overrides(naopc=False).digest() != "06e39b53264c"


def test_status_and_plan_before_anything_runs(tmp_path):
    config = StudyConfig.profile("ci", output_dir=str(tmp_path))
    cells = status(config)
    assert list(cells.state.unique()) == ["todo"] and len(cells) == 5 and cells.estimated.all()
    table = plan(config).set_index("metric")
    # m: the largest primary family, 2 cosine cells x 2 claims (the random-layer control is exploratory)
    assert table.loc["accuracy", "source"] == "assumed" and table.attrs["m"] == 2 * 2
    assert table.loc["naopc", "mde"] > table.loc["naopc", "ci_halfwidth"] > 0
    # exact one-sided sign-flip floor 1 / 2^n against alpha / m: n_faithfulness pairs of the ci profile
    n_faith = int(table.loc["naopc", "n"])
    assert table.loc["naopc", "smallest_p"] == 1 / 2 ** n_faith
    assert table.loc["naopc", "can_reject"] == (1 / 2 ** n_faith <= 0.05 / 4)
    assert np.isnan(table.loc["accuracy", "smallest_p"]) and table.loc["accuracy", "can_reject"]
    with pytest.raises(ValueError, match="Resources.workers"):
        StudyConfig(resources={"workers": 0})
    with pytest.raises(ValueError, match="executor"):
        StudyConfig(executor="dask")
    with pytest.raises(ValueError, match="model_options names 'other'"):
        StudyConfig(model_options={"other": {"dtype": "bfloat16"}})


@pytest.mark.parametrize("executor", ["ray", "slurm"])
def test_study_on_a_cluster_engine_gives_the_local_table(tmp_path, executor, local_study):
    """Ray (a local runtime, 2 workers) and SLURM (submitit's local executor: jobs as local processes)."""
    pytest.importorskip({"ray": "ray", "slurm": "submitit"}[executor])
    fixture, local_run = local_study
    run_driver(fixture, tmp_path / executor, executor=executor)
    local = pd.read_csv(local_run.parent / "final.csv")
    remote = pd.read_csv(tmp_path / executor / "final.csv")
    # Exact: the same cells computed with the same thread count give the same bits. (With 2 threads
    # in the driver and 1 in Ray's workers, AOPC differed by 5e-5 relative and a bootstrap bound by
    # 8e-4: a tolerance would have to guess how far a percentile can move.)
    pd.testing.assert_frame_equal(local, remote)


def test_aopc_only_study_tests_aopc_and_skips_the_bounds(tmp_path):
    """naopc=False: no bound search in any cell, the change tests on AOPC comprehensiveness."""
    from toolkit import Task, register_dataset
    from toolkit.study import run_study

    model_dir, data = write_fixture(tmp_path)
    register_dataset("tiny_aopc", data, Task(name="tiny_aopc", instruction="sentiment of this review ?",
                     label_names=("negative", "positive"), verbalizers=("negative", "positive"),
                     input_name="review", use_chat_template=False))
    config = StudyConfig(models=(str(model_dir),), datasets=("tiny_aopc",), levels=(0, 1), selections=("cosine",),
                         methods=("saliency",), n_eval=8, n_validation=6, n_importance=4, n_faithfulness=3,
                         n_random=1, n_boot=50, batch_size=4, naopc=False, output_dir=str(tmp_path / "out"))
    table = run_study(config, progress=False, report=False)
    assert not table.metric.str.startswith("naopc").any()
    assert table.metric.str.startswith("aopc_comprehensiveness:saliency").any()
    records = CellStore(config.run_dir()).records().values()
    assert all(row["bound_method"] == "none" for r in records for row in r["faithfulness"])
    head = summary(table)
    assert {"aopc", "d_aopc", "aopc_low", "aopc_high", "aopc_p_adj", "aopc_degrades"} <= set(head.table.columns)
    assert head.faithfulness_metric == "aopc_comprehensiveness"
    assert "aopc_comprehensiveness:saliency" in set(head.tests.metric) and set(head.tests.metric) <= {
        "ece", "aopc_comprehensiveness:saliency"}  # ECE's test is not run when its bootstrap interval has no width
    assert head.m + head.m_exploratory + int(head.tests.refused.sum()) == len(head.tests)
    assert plan(config).metric.tolist() == ["accuracy", "ece", "aopc"]
    with pytest.raises(ValueError, match="StudyConfig.naopc='no'; expected true or false"):
        StudyConfig(naopc="no")
