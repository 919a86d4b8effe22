"""The per-cell audit table (toolkit.study.audit) and `python -m toolkit verdicts`, on hand-built records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from toolkit.__main__ import main
from toolkit.decisions import noninferiority_from_counts
from toolkit.study import INPUT_COLUMNS, audit_table, cell_verdicts, recompute
from toolkit._core.validation import InputError

N = 400


def _record(selection, k, probs, labels, *, faith_shift=0.0, mass=0.3, seed=0):
    rng = np.random.default_rng(seed)
    faith = [{"example": i, "method": method, "naopc_comprehensiveness": 0.6 + faith_shift + 0.05 * rng.normal(),
              "soft_comprehensiveness": 0.3 + 0.02 * rng.normal(), "flip_rate": float(i % 2),
              "aopc_sufficiency": np.nan if i < 10 else 0.1}
             for method in ("input_x_gradient", "random") for i in range(12)]
    return {"cell": f"m/d/{selection}/{k}", "model": "m", "dataset": "d", "selection": selection, "level": k, "k": k,
            "shots": 0, "layers": list(range(k)), "ids": [f"s{i}" for i in range(N)], "labels": labels.tolist(),
            "probs": probs.tolist(), "label_names": ["negative", "positive"], "label_mass": [mass] * N,
            "faithfulness": faith}


def _records():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(N // 2, int), np.ones(N // 2, int)]
    right = rng.random(N) < 0.85
    pred = np.where(right, labels, 1 - labels)
    conf = 0.55 + 0.1 * rng.random(N)  # underconfident at 85% accuracy
    ref = np.where(pred[:, None] == np.arange(2), conf[:, None], 1 - conf[:, None])
    # kept: 6 predictions flip to right, 4 to wrong; confidence shrinks towards 0.5 (ECE rises)
    kept_pred = pred.copy()
    wrong, ok = np.flatnonzero(~right)[:6], np.flatnonzero(right)[:4]
    kept_pred[wrong], kept_pred[ok] = labels[wrong], 1 - labels[ok]
    kconf = 0.52 + 0.03 * rng.random(N)
    kept = np.where(kept_pred[:, None] == np.arange(2), kconf[:, None], 1 - kconf[:, None])
    constant = np.tile([0.7, 0.3], (N, 1))  # always "negative"
    lost_pred = np.where(rng.random(N) < 0.65, labels, 1 - labels)
    lost = np.where(lost_pred[:, None] == np.arange(2), 0.6, 0.4)
    return [_record("none", 0, ref, labels), _record("cosine", 2, kept, labels, faith_shift=-0.2, seed=1),
            _record("random", 2, constant, labels, seed=2), _record("loss_delta", 2, lost, labels, seed=3)], \
        (pred == labels), (kept_pred == labels)


def test_audit_table_holds_every_input_and_the_verdicts_follow():
    records, ref_ok, kept_ok = _records()
    table = audit_table(records, n_boot=200)
    assert list(table.columns[: len(INPUT_COLUMNS)]) == list(INPUT_COLUMNS)
    acc = table[table.metric == "accuracy"].set_index("selection")
    g, l_ = int(np.sum(~ref_ok & kept_ok)), int(np.sum(ref_ok & ~kept_ok))
    assert (acc.loc["cosine", "gains"], acc.loc["cosine", "losses"]) == (g, l_) == (6, 4)
    assert acc.loc["cosine", "ci_low"] == pytest.approx(noninferiority_from_counts(g, l_, N).low)
    v = cell_verdicts(table).set_index("selection")["verdict"]
    assert v["random"] == "collapsed (one class, chance)"
    assert v["loss_delta"] == "not shown to keep accuracy (margin 0.05)"
    assert v["cosine"].startswith("keeps accuracy; degrades:") and "ece" in v["cosine"]
    assert "naopc_comprehensiveness:input_x_gradient" in v["cosine"]  # 12 pairs, one-sided: 1/4096 can pass
    # the kept cell's primary claims are the Holm family; the random ranking's and other cells' rows are exploratory
    rows = table[table.selection == "cosine"].set_index("metric")
    assert rows.loc["ece", "family"] == "primary" and rows.loc["naopc_comprehensiveness:random", "family"] == "exploratory"
    assert (table[table.selection != "cosine"].query("metric != 'accuracy'").family == "exploratory").all()
    # no change at all: p = 1; fewer than 2 pairs (aopc_sufficiency on 2 sentences passes, on 1 it would not)
    assert rows.loc["flip_rate:input_x_gradient", "p"] == 1.0
    assert rows.loc["aopc_sufficiency:input_x_gradient", "n"] == 2
    # Brier: a paired t on per-example terms, one-sided "rises"
    p_ref, p_kept = np.asarray(records[0]["probs"]), np.asarray(records[1]["probs"])
    y = np.eye(2)[np.asarray(records[0]["labels"])]
    t = stats.ttest_rel(((p_kept - y) ** 2).sum(1), ((p_ref - y) ** 2).sum(1), alternative="greater")
    assert rows.loc["brier", "p"] == pytest.approx(t.pvalue, rel=1e-10)


def test_verdicts_recomputed_from_the_csv_alone_equal_the_report(tmp_path, capsys):
    records, _, _ = _records()
    table = audit_table(records, n_boot=200)
    path = tmp_path / "audit.csv"
    table.to_csv(path, index=False)
    again = recompute(pd.read_csv(path))
    assert again["verdict"].tolist() == table["verdict"].tolist()
    np.testing.assert_allclose(again["p_adj"].to_numpy(float), table["p_adj"].to_numpy(float), rtol=1e-12)
    assert main(["verdicts", str(path)]) == 0
    out = capsys.readouterr().out
    assert "every stored verdict equals the one recomputed" in out and "collapsed (one class, chance)" in out
    tampered = pd.read_csv(path)
    tampered.loc[tampered.selection == "loss_delta", "verdict"] = "keeps accuracy; no degradation shown"
    tampered.to_csv(path, index=False)
    assert main(["verdicts", str(path)]) == 1
    assert main(["verdicts", str(tmp_path / "missing.csv")]) == 2


def test_recompute_refuses_a_table_without_its_inputs():
    records, _, _ = _records()
    table = audit_table(records, n_boot=200)
    with pytest.raises(InputError, match="lacks columns"):
        recompute(table.drop(columns="gains"))


def test_the_study_summary_and_the_audit_reach_the_same_verdicts_from_the_same_p_values():
    """One decision path: the study table's p (toolkit.study.decide), gated in summary() and in recompute()."""
    from toolkit.study import StudyConfig, summary, tidy_table

    records, _, _ = _records()
    records = [dict(r, ece_scaled=0.1, temperature=1.0) for r in records]
    config = StudyConfig(n_boot=200, seed=0, margin=0.05, alpha=0.05)
    table = tidy_table(records, config)
    head = summary(table, alpha=0.05)
    audit = audit_table(records, n_boot=200, seed=0)
    by_cell = cell_verdicts(audit).set_index("selection").verdict
    mine = head.table[head.table.k > 0].set_index("selection").verdict
    assert mine.to_dict() == by_cell.to_dict()
    assert by_cell["cosine"].startswith("keeps accuracy") and by_cell["random"].startswith("collapsed")
    for metric in ("ece", "naopc_comprehensiveness:input_x_gradient"):  # the same one-sided p on both
        a = audit[(audit.metric == metric)].set_index("selection").p
        t = table[(table.metric == metric) & (table.k > 0)].set_index("selection").p
        np.testing.assert_allclose(t.sort_index().to_numpy(float), a.sort_index().to_numpy(float), rtol=1e-12)
    primary = audit[(audit.family == "primary")].set_index("metric").p_adj
    tests = head.tests[head.tests.family == "primary"].set_index("metric").p_adj
    np.testing.assert_allclose(tests.sort_index().to_numpy(float), primary.sort_index().to_numpy(float), rtol=1e-12)
