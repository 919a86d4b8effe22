"""Verdicts per pruned cell and their counts (toolkit.study.verdicts), on a hand-written summary."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from toolkit.plots import verdict_heatmap
from toolkit.study import OUTCOMES, Summary, verdict_counts, verdicts
from toolkit.validation import InputError, InputTypeError


def _summary() -> Summary:
    keys = dict(model=["a", "a", "a", "b", "b"], dataset=["x", "x", "x", "y", "y"],
                selection=["none", "cosine", "random", "cosine", "random"], k=[0, 2, 2, 3, 3],
                layers=["", "1 2", "0 3", "1 2 4", "0 1 5"])
    table = pd.DataFrame({
        **keys,
        "accuracy": [0.8, 0.79, 0.6, 0.7, 0.5], "d_accuracy": [0.0, -0.01, -0.2, 0.0, -0.2],
        "tost_low": [None, -0.03, -0.25, -0.02, -0.3], "tost_high": [None, 0.01, -0.15, 0.02, -0.1],
        "equivalent": [None, True, False, True, False],
        "ece": [0.1, 0.05, 0.2, 0.1, 0.1], "d_ece": [0.0, -0.05, 0.1, 0.0, 0.0],
        "ece_low": [None] * 5, "ece_high": [None] * 5, "ece_changed": [None, True, True, False, False],
        "naopc": [0.5] * 5, "d_naopc": [0.0, 0.01, -0.2, 0.0, 0.0],
        "naopc_low": [None] * 5, "naopc_high": [None] * 5, "naopc_changed": [None, False, True, False, False],
        "misaligned": [False, True, False, False, False], "verdict": [""] * 5,
    })
    return Summary(table=table, method="saliency", faithfulness_metric="naopc_comprehensiveness",
                   claims=("accuracy", "ece", "naopc_comprehensiveness"), m=8, margin=0.05)


def test_verdicts_by_hand():
    v = verdicts(_summary())
    assert v.k.tolist() == [2, 2, 3, 3]  # the reference is no verdict
    assert v.ece.tolist() == ["down", "up", "", ""]
    assert v.naopc_comprehensiveness.tolist() == ["", "down", "", ""]
    assert v.moved.tolist() == ["ECE down", "ECE up, NAOPC down", "", ""]
    assert v.outcome.tolist() == [OUTCOMES[1], OUTCOMES[2], OUTCOMES[0], OUTCOMES[3]]
    assert v.misaligned.tolist() == [True, False, False, False]


def test_counts_by_model_and_selection():
    v = verdicts(_summary())
    by_model = verdict_counts(v, "model").set_index("model")
    assert by_model.loc["a", ["cells", "equivalent", "misaligned", "ece down", "ece up", "naopc_comprehensiveness down"]
                        ].tolist() == [2, 1, 1, 1, 1, 1]
    assert by_model.loc["b", ["cells", "equivalent", "misaligned", "ece down", "ece up"]].tolist() == [2, 1, 0, 0, 0]
    by_selection = verdict_counts(v, ["selection"]).set_index("selection")
    assert by_selection.loc["random", "equivalent"] == 0 and by_selection.loc["cosine", "equivalent"] == 2
    with pytest.raises(InputError, match="no column"):
        verdict_counts(v, "metric")


def test_heatmap_draws_one_cell_per_verdict():
    ax = verdict_heatmap(verdicts(_summary()))
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 4 and "k=2, \u0394acc -0.01\nECE\u2193" in texts
    assert "k=2, \u0394acc -0.20\nECE\u2191 NAOPC\u2193" in texts and "k=3, \u0394acc +0.00" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a / x", "b / y"]


def test_bad_inputs():
    with pytest.raises(InputTypeError, match="Summary"):
        verdicts(pd.DataFrame())
    with pytest.raises(InputError, match="columns"):
        verdict_heatmap(pd.DataFrame({"model": []}))


def test_keeps_accuracy_is_one_sided_and_a_gain_passes():
    s = _summary()
    s.table.loc[4, ["d_accuracy", "tost_low", "tost_high", "equivalent"]] = [0.12, 0.07, 0.17, False]  # a gain
    v = verdicts(s)
    # lower limits -0.03, -0.25, -0.02, +0.07; a bound exactly at -margin does not pass (strict)
    assert v["keeps_accuracy_0.02"].tolist() == [False, False, False, True]
    assert v["keeps_accuracy_0.05"].tolist() == [True, False, True, True]
    assert v["keeps_accuracy_0.1"].tolist() == [True, False, True, True]
    assert not v.equivalent.iloc[3] and v["keeps_accuracy_0.05"].iloc[3]  # TOST fails the gain, non-inferiority not
    counts = verdict_counts(v, "model").set_index("model")
    assert counts.loc["b", ["keeps accuracy 0.02", "keeps accuracy 0.05", "keeps accuracy 0.1"]].tolist() == [1, 2, 2]
