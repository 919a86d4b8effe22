"""The committed stage-1 results (benchmarks/results/two_stage/) recompute from the committed table alone.

A reader with ``stage1.csv`` and no cell records can check every non-inferiority bound (from the
paired counts the table implies: g - l = n * delta, g + l = n * discordant) and every k* (from the
bounds and the collapse flags, by the rule the config fixed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.decisions import noninferiority_from_counts
from toolkit.study.sweep import k_star

OUT = Path(os.environ.get("TWO_STAGE_RESULTS", Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "two_stage"))


@pytest.fixture(scope="module")
def committed():
    table = pd.read_csv(OUT / "stage1.csv")
    kstar = pd.read_csv(OUT / "kstar.csv").fillna({"passing": ""})
    config = json.loads((OUT / "sweep_config.json").read_text())
    return table, kstar, config


def test_every_noninferiority_bound_follows_from_the_counts_the_table_implies(committed):
    table, _, config = committed
    acc = table[(table.metric == "accuracy") & (table.k > 0)]
    assert len(acc) > 0
    for row in acc.itertuples():
        diff, disc = round(row.n * row.delta), round(row.n * row.discordant)
        g, l_ = (disc + diff) // 2, (disc - diff) // 2
        assert g + l_ == disc and g - l_ == diff and min(g, l_) >= 0, row
        ni = noninferiority_from_counts(g, l_, int(row.n), config["margin"], config["alpha"])
        assert ni.low == pytest.approx(row.lower, abs=1e-9)
        assert bool(ni.noninferior) == bool(row.noninferior)


def test_k_star_recomputes_from_the_committed_table(committed):
    table, kstar, config = committed
    again = k_star(table, margin=config["margin"], rule=config["kstar_rule"]).fillna({"passing": ""})
    pd.testing.assert_frame_equal(again.reset_index(drop=True), kstar.reset_index(drop=True), check_dtype=False)
    assert set(kstar.rule) == {config["kstar_rule"]} and np.all(kstar.k_star <= kstar.swept)


def test_the_sweep_is_on_the_validation_split_and_complete(committed):
    table, kstar, config = committed
    cells = table.drop_duplicates(["model", "dataset", "selection", "shots", "k"])
    per_group = cells[cells.k > 0].groupby(["model", "dataset", "selection", "shots"]).k.nunique()
    assert (per_group == kstar.set_index(["model", "dataset", "selection", "shots"]).swept.reindex(
        per_group.index)).all()
    assert config["n_eval"] >= cells.n.max()  # n_eval caps at the validation split's size


# --- stage 2 (benchmarks/stage2_report.py): every verdict recomputes from stage2_audit.csv alone ---

@pytest.fixture(scope="module")
def stage2():
    audit = pd.read_csv(OUT / "stage2_audit.csv", keep_default_na=True)
    cells = pd.read_csv(OUT / "stage2_cells.csv")
    controls = pd.read_csv(OUT / "stage2_controls.csv")
    return audit, cells, controls


def test_stage2_verdicts_recompute_per_study(stage2):
    from toolkit.study import recompute

    audit, cells, _ = stage2
    again = recompute(audit)  # each study its own pair of families, as the plan sized them
    assert (again.verdict.astype(str) == audit.verdict.astype(str)).all()
    assert np.allclose(again.p_adj.to_numpy(float), audit.p_adj.to_numpy(float), equal_nan=True)
    assert audit.study.nunique() == len(list((OUT / "stage2").glob("*.json")))  # every planned study is in it
    by_cell = audit[audit.metric == "accuracy"].set_index(["study", "selection", "k"]).verdict
    assert (cells.set_index(["study", "selection", "k"]).verdict == by_cell.reindex(
        cells.set_index(["study", "selection", "k"]).index)).all()


def test_stage2_pooled_holm_is_holm_over_every_primary_test(stage2):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    audit, _, _ = stage2
    primary = audit[(audit.family == "primary") & ~audit.refused.astype(bool) & audit.p.notna()]
    pooled = primary[primary.m_all.notna()]
    # the pooled family may refuse tests the per-study families kept (a smaller alpha / m): count what it kept
    m_all = int(pooled.m_all.iloc[0])
    kept = pooled[pooled.p_adj_all.notna()]
    assert len(kept) == m_all
    reject, p_adj, *_ = multipletests(kept.p, alpha=float(audit.alpha.iloc[0]), method="holm")
    assert np.allclose(kept.p_adj_all, p_adj) and (kept.rejected_all.astype(bool).to_numpy() == reject).all()


def test_stage2_controls_bh_over_the_table(stage2):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    _, _, controls = stage2
    kept = controls[~controls.refused.astype(bool) & controls.p.notna()]
    reject, p_adj, *_ = multipletests(kept.p, alpha=0.05, method="fdr_bh")
    assert np.allclose(kept.p_adj, p_adj) and (kept.rejected.astype(bool).to_numpy() == reject).all()
    assert (controls.family == "exploratory").all()
