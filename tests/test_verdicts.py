"""Verdicts per pruned cell and their counts (toolkit.study.verdicts), on a hand-written summary."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from toolkit.study.plots import verdict_heatmap
from toolkit.study import OUTCOMES, Summary, verdict_counts, verdicts
from toolkit._core.validation import InputError, InputTypeError


def _summary() -> Summary:
    keys = dict(model=["a", "a", "a", "b", "b", "b"], dataset=["x", "x", "x", "y", "y", "y"],
                selection=["none", "cosine", "random", "cosine", "random", "loss_delta"], k=[0, 2, 2, 3, 3, 3],
                layers=["", "1 2", "0 3", "1 2 4", "0 1 5", "2 3 4"])
    table = pd.DataFrame({
        **keys,
        "accuracy": [0.8, 0.79, 0.6, 0.7, 0.5, 0.5], "d_accuracy": [0.0, -0.01, -0.2, 0.0, -0.2, -0.2],
        "ni_low": [None, -0.03, -0.25, -0.02, -0.3, -0.3], "keeps_accuracy": [None, True, False, True, False, False],
        "collapsed": [None, False, False, False, False, True],
        "ece": [0.1, 0.05, 0.2, 0.1, 0.1, 0.1], "d_ece": [0.0, 0.05, 0.1, 0.0, 0.0, 0.1],
        "ece_low": [None] * 6, "ece_high": [None] * 6, "ece_p_adj": [None] * 6,
        "ece_degrades": [None, True, True, False, False, False],
        "naopc": [0.5] * 6, "d_naopc": [0.0, 0.01, -0.2, 0.0, 0.0, 0.0],
        "naopc_low": [None] * 6, "naopc_high": [None] * 6, "naopc_p_adj": [None] * 6,
        "naopc_degrades": [None, False, True, False, False, False],
        "misaligned": [False, True, False, False, False, False], "verdict": [""] * 6,
    })
    return Summary(table=table, method="saliency", faithfulness_metric="naopc_comprehensiveness",
                   claims=("accuracy", "ece", "naopc_comprehensiveness"), m=4, margin=0.05)


def test_verdicts_by_hand():
    v = verdicts(_summary())
    assert v.k.tolist() == [2, 2, 3, 3, 3]  # the reference is no verdict
    assert v.ece.tolist() == ["worse", "worse?", "", "", ""]  # a reject outside the gate is exploratory
    assert v.naopc_comprehensiveness.tolist() == ["", "worse?", "", "", ""]
    assert v.degraded.tolist() == ["ECE worse", "ECE worse?, NAOPC worse?", "", "", ""]
    assert v.outcome.tolist() == [OUTCOMES[1], OUTCOMES[2], OUTCOMES[0], OUTCOMES[2], OUTCOMES[3]]
    assert v.misaligned.tolist() == [True, False, False, False, False]
    assert v.collapsed.tolist() == [False, False, False, False, True]


def test_counts_by_model_and_selection():
    v = verdicts(_summary())
    by_model = verdict_counts(v, "model").set_index("model")
    assert by_model.loc["a", ["cells", "keeps accuracy", "misaligned", "ece worse", "ece worse?",
                              "naopc_comprehensiveness worse?"]].tolist() == [2, 1, 1, 1, 1, 1]
    assert by_model.loc["b", ["cells", "keeps accuracy", "collapsed", "misaligned", "ece worse"]].tolist() == [
        3, 1, 1, 0, 0]
    by_selection = verdict_counts(v, ["selection"]).set_index("selection")
    assert by_selection.loc["random", "keeps accuracy"] == 0 and by_selection.loc["cosine", "keeps accuracy"] == 2
    with pytest.raises(InputError, match="no column"):
        verdict_counts(v, "metric")


def test_heatmap_draws_one_cell_per_verdict():
    ax = verdict_heatmap(verdicts(_summary()))
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 5 and "k=2, \u0394acc -0.01\nECE\u2193" in texts
    assert "k=2, \u0394acc -0.20\nECE\u2193? NAOPC\u2193?" in texts and "k=3, \u0394acc +0.00" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a / x", "b / y"]


def test_bad_inputs():
    with pytest.raises(InputTypeError, match="Summary"):
        verdicts(pd.DataFrame())
    with pytest.raises(InputError, match="columns"):
        verdict_heatmap(pd.DataFrame({"model": []}))


def test_keeps_accuracy_is_one_sided_and_a_gain_passes():
    s = _summary()
    s.table.loc[4, ["d_accuracy", "ni_low", "keeps_accuracy"]] = [0.12, 0.07, True]  # a gain
    v = verdicts(s)
    # lower bounds -0.03, -0.25, -0.02, +0.07, -0.3; a bound exactly at -margin does not pass (strict)
    assert v["keeps_accuracy_0.02"].tolist() == [False, False, False, True, False]
    assert v["keeps_accuracy_0.05"].tolist() == [True, False, True, True, False]
    assert v["keeps_accuracy_0.1"].tolist() == [True, False, True, True, False]
    counts = verdict_counts(v, "model").set_index("model")
    assert counts.loc["b", ["keeps accuracy 0.02", "keeps accuracy 0.05", "keeps accuracy 0.1"]].tolist() == [1, 2, 2]
