"""Stage 1 of the two-stage design (toolkit.study.sweep): the sweep table against by-hand numbers,
the k* rules, cross-fitted temperature against scipy, stage-2 configs and a tiny-model sweep that
scores only the validation split and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from tiny import tiny_model, tiny_tokenizer
from toolkit import Task, register_dataset
from toolkit.study import StudyConfig, study_cells
from toolkit.study.sweep import (
    SweepCell,
    SweepConfig,
    cross_fitted_temperature,
    k_star,
    run_sweep,
    stage2_configs,
    stage2_pilot,
    sweep_cells,
    sweep_table,
)
from toolkit._core.validation import InputError

WORDS = "good bad great awful movie food service plot liked hated not very".split()


# ---- k* ----------------------------------------------------------------------------------------
def _frame(lowers, margin=0.05):
    return pd.DataFrame({"model": "m", "dataset": "d", "selection": "cosine", "shots": 0,
                         "k": list(range(1, len(lowers) + 1)), "lower": lowers, "metric": "accuracy"})


def test_k_star_rules_on_a_non_monotone_curve():
    # k = 1 passes, k = 2 fails, k = 3 and 4 pass, k = 5 fails (the shape FACTS.md reports for SmolLM2)
    frame = _frame([-0.01, -0.09, -0.02, -0.049, -0.2])
    strict = k_star(frame, margin=0.05, rule="all_smaller").iloc[0]
    loose = k_star(frame, margin=0.05, rule="largest").iloc[0]
    assert strict.k_star == 1 and loose.k_star == 4
    assert strict.passing == "1 3 4" and strict.swept == 5


def test_k_star_is_zero_when_nothing_passes_and_the_margin_is_strict():
    assert k_star(_frame([-0.06, -0.01]), margin=0.05).iloc[0].k_star == 0
    assert k_star(_frame([-0.05]), margin=0.05).iloc[0].k_star == 0  # lower > -margin, strictly
    assert k_star(_frame([-0.06, -0.01]), margin=0.05, rule="largest").iloc[0].k_star == 2


def test_k_star_refuses_a_frame_without_lower_and_an_unknown_rule():
    with pytest.raises(InputError, match="lower"):
        k_star(_frame([0.0]).drop(columns="lower"), margin=0.05)
    with pytest.raises(ValueError, match="rule"):
        k_star(_frame([0.0]), margin=0.05, rule="any")


# ---- the table against by-hand numbers -----------------------------------------------------------
def _record(k, probs, labels, scaled, mass, selection="cosine"):
    return {"cell": SweepCell("m", "d", selection if k else "none", 0, k).key, "model": "m", "dataset": "d",
            "selection": selection if k else "none", "shots": 0, "k": k, "layers": list(range(k)),
            "ids": [f"i{j}" for j in range(len(labels))], "labels": list(labels), "probs": probs.tolist(),
            "probs_scaled": scaled.tolist(), "label_mass": list(mass), "label_names": ["neg", "pos"]}


def _by_hand_ece(p, y, bins=15):
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs(np.mean(conf[idx == b]) - np.mean(pred[idx == b] == y[idx == b])) * np.mean(idx == b)
               for b in range(bins) if np.any(idx == b))


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(3)
    n = 40
    y = rng.integers(0, 2, n)
    p1 = rng.uniform(0.05, 0.95, n)
    ref = np.c_[1 - p1, p1]
    p2 = np.clip(p1 + rng.normal(0, 0.3, n), 0.01, 0.99)
    pruned = np.c_[1 - p2, p2]
    s1, s2 = np.clip(p1 * 0.9 + 0.05, 0, 1), np.clip(p2 * 0.8 + 0.1, 0, 1)
    m1, m2 = rng.uniform(0.2, 0.9, n), rng.uniform(0.1, 0.5, n)
    records = [_record(0, ref, y, np.c_[1 - s1, s1], m1), _record(1, pruned, y, np.c_[1 - s2, s2], m2),
               _record(2, ref.copy(), y, np.c_[1 - s1, s1], m1)]  # k = 2: the same predictions as the reference
    table = sweep_table(records, SweepConfig(models=("m",), datasets=("d",), n_boot=200))
    return table, y, ref, pruned, (s1, s2), (m1, m2)


def _row(table, k, metric):
    sel = table[(table.k == k) & (table.metric == metric)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_sweep_table_values_and_changes_by_hand(synthetic):
    table, y, ref, pruned, (s1, s2), (m1, m2) = synthetic
    acc = lambda p: np.mean(p.argmax(1) == y)  # noqa: E731
    assert _row(table, 1, "accuracy").value == pytest.approx(acc(pruned))
    assert _row(table, 1, "accuracy").delta == pytest.approx(acc(pruned) - acc(ref))
    gap = lambda p: np.mean(p.max(1)) - acc(p)  # noqa: E731
    assert _row(table, 0, "calibration_gap").value == pytest.approx(gap(ref))
    assert _row(table, 1, "calibration_gap").delta == pytest.approx(gap(pruned) - gap(ref))
    assert _row(table, 1, "positive_rate").value == pytest.approx(np.mean(pruned.argmax(1) == 1))
    assert _row(table, 1, "label_mass").delta == pytest.approx(m2.mean() - m1.mean())
    assert _row(table, 1, "ece").value == pytest.approx(_by_hand_ece(pruned, y), abs=1e-12)
    scaled = np.c_[1 - s2, s2]
    assert _row(table, 1, "ece_temperature_scaled").value == pytest.approx(_by_hand_ece(scaled, y), abs=1e-12)
    brier = np.mean(np.sum((pruned - np.eye(2)[y]) ** 2, axis=1))
    assert _row(table, 1, "brier").value == pytest.approx(brier)
    # ECE of p(positive), binned by hand: 15 equal-width bins of p_1, |mean label - mean p_1| weighted by bin size
    q = pruned[:, 1]
    idx = np.minimum((q * 15).astype(int), 14)
    by_hand = sum(np.mean(idx == b) * abs(np.mean(y[idx == b]) - np.mean(q[idx == b])) for b in range(15)
                  if np.any(idx == b))
    assert _row(table, 1, "positive_ece").value == pytest.approx(by_hand, abs=1e-12)
    # Murphy, binned by hand (15 equal-width bins per class): REL = sum_k n_k/n (f_k - o_k)^2, RES = sum_k
    # n_k/n (o_k - o)^2; BS = REL - RES + UNC up to the within-bin terms, UNC = sum_c o_c (1 - o_c)
    rel_hand = res_hand = 0.0
    for c in (0, 1):
        f, o = pruned[:, c], (y == c).astype(float)
        key = np.minimum((f * 15).astype(int), 14)
        for b in np.unique(key):
            inside = key == b
            rel_hand += inside.mean() * (f[inside].mean() - o[inside].mean()) ** 2
            res_hand += inside.mean() * (o[inside].mean() - o.mean()) ** 2
    base = np.mean(y)
    unc = 2 * base * (1 - base)
    rel, res = _row(table, 1, "brier_reliability").value, _row(table, 1, "brier_resolution").value
    assert rel == pytest.approx(rel_hand, abs=1e-12) and res == pytest.approx(res_hand, abs=1e-12)
    assert rel - res + unc == pytest.approx(brier, abs=0.02)
    # the split splits: with every forecast its own group, REL would be the Brier score itself
    assert rel < brier - 0.05 and res < unc
    for metric in ("accuracy", "calibration_gap", "ece", "smooth_ece", "ece_temperature_scaled", "brier",
                   "brier_reliability", "brier_resolution", "positive_ece", "positive_rate", "label_mass"):
        row = _row(table, 1, metric)
        assert row.low <= row.value <= row.high and row.delta_low <= row.delta <= row.delta_high, metric


def test_a_collapsed_cell_is_flagged_and_never_passes_k_star():
    rng = np.random.default_rng(5)
    n = 60
    y = rng.integers(0, 2, n)
    ref = np.where(y[:, None] == np.arange(2), 0.6, 0.4)  # right everywhere, underconfident
    constant = np.tile([0.45, 0.55], (n, 1))  # always class 1
    mass = np.full(n, 0.5)
    records = [_record(0, ref, y, ref, mass), _record(1, ref.copy(), y, ref, mass),
               _record(2, constant, y, constant, mass)]
    table = sweep_table(records, SweepConfig(models=("m",), datasets=("d",), n_boot=50, margin=0.9))
    acc = table[table.metric == "accuracy"].set_index("k")
    assert not acc.loc[1, "collapsed"] and acc.loc[2, "collapsed"]
    assert acc.loc[2, "collapse_reasons"] == "one class, chance" and acc.loc[2, "lower"] > -0.9  # passes the margin
    kstar = k_star(table, margin=0.9, rule="largest")
    assert kstar.k_star.tolist() == [1] and kstar.passing.tolist() == ["1"]  # the collapsed k = 2 does not pass
    # a collapsed unpruned model: nothing in its group passes
    broken = table.copy()
    broken.loc[(broken.k == 0) & (broken.metric == "accuracy"), "collapsed"] = True
    assert k_star(broken, margin=0.9, rule="largest").k_star.tolist() == [0]


def test_stage2_pilot_reads_the_spread_at_k_star_by_hand(synthetic):
    table, y, ref, pruned = synthetic[:4]
    kstar = pd.DataFrame([dict(model="m", dataset="d", selection="cosine", shots=0, k_star=1)])
    pilot = stage2_pilot(table, kstar, "m", "d", 0)
    assert pilot["p_disc"] == pytest.approx(np.mean((ref.argmax(1) == y) != (pruned.argmax(1) == y)))
    e = _row(table, 1, "ece")
    assert pilot["sd_ece"] == pytest.approx((e.delta_high - e.delta_low) / (2 * stats.norm.ppf(0.975)) * np.sqrt(40))
    assert stage2_pilot(table, kstar.assign(k_star=0), "m", "d", 0) == {}
    assert set(pilot) == {"p_disc", "sd_ece", "sd_smooth_ece", "sd_brier"}
    from toolkit.study import plan

    sized = plan(StudyConfig(n_eval=40, n_faithfulness=8), pilot={k: pilot[k] for k in ("p_disc", "sd_ece")},
                 pilot_source="stage 1").set_index("metric")
    assert sized.loc["accuracy", "p_disc"] == pytest.approx(pilot["p_disc"])
    assert sized.loc["ece", "sd"] == pytest.approx(pilot["sd_ece"]) and sized.source.iloc[0].startswith("stage 1")
    with pytest.raises(InputError, match=r"pilot names \['sd_nope'\]"):
        plan(StudyConfig(), pilot={"sd_nope": 1.0})


def test_noninferiority_bound_with_no_discordant_pair_by_hand(synthetic):
    """g = l = 0: Tango's score interval's one-sided lower limit is -z^2 / (n + z^2), z = z_{1-alpha}."""
    table = synthetic[0]
    row = _row(table, 2, "accuracy")
    z, n = stats.norm.ppf(0.95), 40
    assert row.delta == 0.0
    assert row.lower == pytest.approx(-z**2 / (n + z**2), rel=1e-6)
    assert bool(row.noninferior) == (row.lower > -0.05)
    assert np.isnan(_row(table, 0, "accuracy").lower)  # the reference has no change


def test_cross_fitted_temperature_matches_scipy_and_never_uses_the_scored_fold():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (30, 2))
    y = (z[:, 1] - z[:, 0] + rng.normal(0, 3, 30) > 0).astype(int)
    probs, (t_even, t_odd) = cross_fitted_temperature(z, y)

    def fit(rows):
        nll = lambda log_t: -np.mean(stats.norm.logpdf(0) * 0 + (  # noqa: E731
            z[rows, y[rows]] / np.exp(log_t) - np.log(np.sum(np.exp(z[rows] / np.exp(log_t)), axis=1))))
        return float(np.exp(optimize.minimize_scalar(nll, bounds=(-4, 4), method="bounded").x))

    even, odd = np.arange(0, 30, 2), np.arange(1, 30, 2)
    assert t_even == pytest.approx(fit(even), rel=1e-3) and t_odd == pytest.approx(fit(odd), rel=1e-3)
    expected_odd = np.exp(z[odd] / t_even) / np.exp(z[odd] / t_even).sum(1, keepdims=True)
    np.testing.assert_allclose(probs[odd], expected_odd, rtol=1e-3)
    # changing the labels of the odd fold cannot change the probabilities scored on it
    y2 = y.copy()
    y2[odd] = 1 - y2[odd]
    np.testing.assert_allclose(cross_fitted_temperature(z, y2)[0][odd], probs[odd])


# ---- configs -----------------------------------------------------------------------------------
def test_sweep_config_checks_and_digest():
    with pytest.raises(InputError, match="control"):
        SweepConfig(selections=("random",))
    with pytest.raises(ValueError, match="random_draws"):
        SweepConfig(random_draws=2)
    with pytest.raises(InputError, match="decides"):
        SweepConfig(stage2={"levels": [0, 3]})
    with pytest.raises(ValueError, match="kstar_rule"):
        SweepConfig(kstar_rule="first")
    base = SweepConfig()
    # a larger grid or another rule reuses the cells; another sample size does not
    assert SweepConfig(models=("a", "b"), k_max=9, margin=0.1, kstar_rule="largest").digest() == base.digest()
    assert SweepConfig(n_eval=100).digest() != base.digest()


def test_sweep_cells_every_k_to_a_third_of_the_depth():
    config = SweepConfig(models=("m",), datasets=("d",), selections=("cosine", "loss_delta"), shots=(0, 2, 0))
    cells = list(sweep_cells(config, {"m": 30}))
    assert [c.shots for c in cells if c.k == 0] == [0, 2]
    assert [c.k for c in cells if c.selection == "cosine" and c.shots == 0] == list(range(1, 11))
    assert len(cells) == 2 * (1 + 2 * 10)


def test_stage2_configs_from_k_star():
    kstar = pd.DataFrame({"model": ["m", "m", "m", "m"], "dataset": "d", "selection": ["cosine", "loss_delta"] * 2,
                          "shots": [0, 0, 4, 4], "k_star": [3, 5, 0, 0]})
    sweep = SweepConfig(models=("m",), datasets=("d",), stage2={"n_eval": 300, "soft": True, "n_permutations": 3})
    (config,) = stage2_configs(sweep, kstar)  # shots 4: nothing keeps accuracy, no study
    assert config.levels == (0, 3, 5) and config.shots == 0 and config.n_eval == 300
    assert config.levels_by_selection == {"cosine": (3,), "loss_delta": (5,)}
    keys = [(c.selection, c.level) for c in study_cells(config)]
    assert keys == [("none", 0), ("cosine", 3), ("loss_delta", 5),
                    ("random", 3), ("random#2", 3), ("random#3", 3), ("random", 5), ("random#2", 5), ("random#3", 5)]
    assert len({c.seed(0) for c in study_cells(config)}) == len(keys)  # independent draws


def test_new_study_options_enter_the_digest_only_when_set():
    base = StudyConfig()
    assert StudyConfig(soft_seed=None, n_permutations=0, random_draws=1, levels_by_selection={}).digest() == \
        base.digest()
    for change in (dict(soft_seed=0), dict(n_permutations=3), dict(random_draws=3),
                   dict(levels_by_selection={"cosine": (2,)})):
        assert StudyConfig(**change).digest() != base.digest(), change
    with pytest.raises(InputError, match="at least 3"):
        StudyConfig(n_permutations=2)
    with pytest.raises(InputError, match="levels_by_selection"):
        StudyConfig(levels_by_selection={"cosine": (3,)})  # 3 is not in levels
    assert StudyConfig.from_dict(json.loads(json.dumps(StudyConfig(levels_by_selection={"cosine": (2,)}).to_dict()))
                                 ).digest() == StudyConfig(levels_by_selection={"cosine": (2,)}).digest()


# ---- a tiny-model sweep ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        label = i % 2
        words = list(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + ["good" if label else "bad"]
        lines.append(json.dumps({"id": f"t-{i}", "text": " ".join(words), "label": label,
                                 "split": ["train", "validation", "test"][i % 3]}))
    (tmp / "tiny.jsonl").write_text("\n".join(lines) + "\n")
    register_dataset("tiny_sweep", tmp / "tiny.jsonl", Task(
        name="tiny_sweep", instruction="sentiment of this review ?", label_names=("negative", "positive"),
        verbalizers=("negative", "positive"), input_name="review", use_chat_template=False))
    loads = []

    def loader(name):
        loads.append(name)
        return tiny_model(), tiny_tokenizer()

    config = SweepConfig(models=("tiny",), datasets=("tiny_sweep",), selections=("cosine", "loss_delta"),
                         shots=(0, 1), k_max=2, n_eval=12, n_importance=4, n_boot=50, batch_size=4,
                         output_dir=str(tmp / "out"))
    table = run_sweep(config, progress=False, model_loader=loader)
    return config, table, loader, loads, lines


def test_tiny_sweep_scores_only_validation_examples(tiny_sweep):
    config, table, _, _, lines = tiny_sweep
    validation = {json.loads(x)["id"] for x in lines if json.loads(x)["split"] == "validation"}
    from toolkit._core.store import CellStore

    records = CellStore(config.run_dir()).records()
    assert len(records) == 2 * (1 + 2 * 2)
    for r in records.values():
        assert set(r["ids"]) <= validation and len(r["ids"]) == 12 and r["split"] == "validation"
    assert set(table.shots) == {0, 1} and set(table.k) == {0, 1, 2}
    assert table[table.metric == "accuracy"].query("k > 0").lower.notna().all()
    kstar = pd.read_csv(config.run_dir() / "kstar.csv")
    assert len(kstar) == 4 and set(kstar.rule) == {"all_smaller"}


def test_tiny_sweep_layers_are_nested_and_accuracy_matches_the_records(tiny_sweep):
    config, table, *_ = tiny_sweep
    from toolkit._core.store import CellStore

    records = CellStore(config.run_dir()).records()
    for (sel, shots) in [("cosine", 0), ("loss_delta", 1)]:
        one = records[SweepCell("tiny", "tiny_sweep", sel, shots, 1).key]["layers"]
        two = records[SweepCell("tiny", "tiny_sweep", sel, shots, 2).key]["layers"]
        assert len(two) == 2 and set(one) <= set(two)  # one-shot: the k least important
    r = records[SweepCell("tiny", "tiny_sweep", "cosine", 0, 2).key]
    acc = np.mean(np.argmax(r["probs"], axis=1) == np.asarray(r["labels"]))
    row = table[(table.selection == "cosine") & (table.shots == 0) & (table.k == 2) & (table.metric == "accuracy")]
    assert row.value.item() == pytest.approx(acc)


def test_tiny_sweep_resumes_without_recomputing(tiny_sweep):
    config, table, loader, loads, _ = tiny_sweep
    before = {p.name: p.stat().st_mtime_ns for p in (config.run_dir() / "cells").iterdir()}
    again = run_sweep(config, progress=False, model_loader=loader)
    after = {p.name: p.stat().st_mtime_ns for p in (config.run_dir() / "cells").iterdir()}
    assert before == after
    pd.testing.assert_frame_equal(again, table)


def test_tiny_sweep_records_carry_manifests_and_a_mixed_resume_is_refused(tiny_sweep):
    from toolkit.models.manifest import MixedManifestError
    from toolkit._core.store import CellStore

    config, table, loader, _, _ = tiny_sweep
    store = CellStore(config.run_dir())
    records = store.records()
    for r in records.values():  # each group's cells share one manifest: its prompt says its shots
        assert r["manifest"]["config_digest"] == config.digest() and r["manifest"]["model"] == "tiny"
        assert r["manifest"]["prompt"].endswith("1-shot") == (r["shots"] == 1)
    # a finished cell computed under another transformers, and one cell left to compute
    old = SweepCell("tiny", "tiny_sweep", "none", 0, 0).key
    todo = SweepCell("tiny", "tiny_sweep", "cosine", 1, 2).key
    kept = records[todo]
    record = dict(records[old], manifest=dict(records[old]["manifest"], transformers="4.0.0"))
    store.put(old, record)
    store._cell_path(todo).unlink()
    try:
        with pytest.raises(MixedManifestError, match=r"transformers: 4\.0\.0 ->"):
            run_sweep(config, progress=False, model_loader=loader)
        assert not store.done(todo)  # refused before computing anything
        with pytest.warns(RuntimeWarning, match="transformers"):
            again = run_sweep(config, progress=False, model_loader=loader, allow_mixed=True)
        assert store.done(todo)
        pd.testing.assert_frame_equal(again, table)  # same code: the recomputed cell is the same
    finally:
        store.put(old, records[old])
        store.put(todo, kept)


# ---- the figure and the command line -------------------------------------------------------------
def test_sweep_curves_draw_the_curve_as_measured(synthetic, tmp_path):

    import matplotlib.pyplot as plt

    from toolkit.study.plots import sweep_curves

    table = synthetic[0]
    axes = sweep_curves(table, metrics=("accuracy", "ece"))
    assert axes.shape == (1, 2)
    (line,) = axes[0, 0].get_lines()[:1]
    acc = table[table.metric == "accuracy"].sort_values("k")
    np.testing.assert_allclose(line.get_xdata(), acc.k)  # k = 0, 1, 2: down, then back up, not smoothed
    np.testing.assert_allclose(line.get_ydata(), acc.delta.fillna(0.0))
    plt.close(axes[0, 0].figure)
    with pytest.raises(InputError, match="unknown metric"):
        sweep_curves(table, metrics=("accuracy", "nope"))


def test_cli_sweep_writes_table_kstar_figure_and_stage2_configs(tiny_sweep, tmp_path, capsys):
    from toolkit.__main__ import main

    config = tiny_sweep[0]
    model_dir = tmp_path / "tiny"
    tiny_model().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    path = tmp_path / "sweep.yaml"
    path.write_text(f"models: [{model_dir}]\ndatasets: [tiny_sweep]\nselections: [cosine]\nshots: [0]\nk_max: 2\n"
                    f"n_eval: 12\nn_importance: 4\nn_boot: 50\nbatch_size: 4\nmargin: 0.5\n"
                    f"stage2: {{n_eval: 12, n_validation: 6, n_faithfulness: 2, n_permutations: 3}}\n"
                    f"output_dir: {tmp_path / 'out'}\n")
    png = tmp_path / "sweep.png"
    assert main(["sweep", str(path), "--plot", str(png), "--no-progress"]) == 0
    out = capsys.readouterr().out
    run_dir = next((tmp_path / "out").iterdir())
    assert png.is_file() and (run_dir / "sweep.csv").is_file() and (run_dir / "kstar.csv").is_file()
    kstar = pd.read_csv(run_dir / "kstar.csv")
    for file in (run_dir / "stage2").glob("*.json"):
        study = StudyConfig.from_file(file)
        assert study.random_draws == 3 and study.n_permutations == 3 and study.shots == 0
        assert study.levels_by_selection == {"cosine": (int(kstar.k_star.iloc[0]),)}
        assert f"--config {file}" in out
    assert len(list((run_dir / "stage2").glob("*.json"))) == int(kstar.k_star.iloc[0] > 0)
    if kstar.k_star.iloc[0] > 0:  # each stage-2 study sized from stage 1's spread at k*
        sized = pd.read_csv(run_dir / "stage2" / "plan.csv")
        assert sized.source.str.startswith("stage 1 at k*").all() and "stage 2 plan" in out
        assert (sized.n_test == 20).all() and (sized.n[sized.metric == "accuracy"] == 12).all()
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "3 cells, 3 done" in capsys.readouterr().out  # k = 0, 1, 2 of a 4-layer model (k_max 2)
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
