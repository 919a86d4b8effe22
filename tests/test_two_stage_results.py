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
