"""Tests for toolkit.study.plots (Agg backend): Axes out, the right artists, no global state changed."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from toolkit.metrics.calibration import reliability_table  # noqa: E402
from toolkit.study import plots  # noqa: E402
from toolkit.study.plots import metric_vs_pruning, reliability_diagram  # noqa: E402
from toolkit.study import Summary  # noqa: E402


def _predict_df(n: int, temp: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)) * 2
    p = np.exp(z / temp)
    p /= p.sum(axis=1, keepdims=True)
    q = np.exp(z)
    q /= q.sum(axis=1, keepdims=True)
    y = (rng.uniform(size=n) < q[:, 1]).astype(int)
    df = pd.DataFrame({"id": np.arange(n), "label": y, "pred": p.argmax(1)})
    df["p_negative"], df["p_positive"] = p[:, 0], p[:, 1]
    df["confidence"] = p.max(axis=1)
    df["correct"] = df["pred"] == df["label"]
    df.attrs["label_names"] = ("negative", "positive")
    return df


@pytest.fixture(autouse=True)
def _rc_unchanged():
    before = dict(mpl.rcParams)
    yield
    after = dict(mpl.rcParams)
    assert before == after, [k for k in before if before[k] != after[k]]
    plt.close("all")


def _data_lines(ax: Axes) -> list:
    return [line for line in ax.lines if len(line.get_xdata()) > 0]


def test_reliability_diagram_single_model_bars():
    df = _predict_df(500, temp=0.5, seed=0)
    ax = reliability_diagram(df, n_bins=10)
    assert isinstance(ax, Axes)
    filled = int((reliability_table(df, n_bins=10)["count"] > 0).sum())
    assert len(ax.patches) == 2 * filled  # accuracy bar + gap bar per non-empty bin
    assert len(_data_lines(ax)) == 1  # the diagonal
    (hist,) = ax.child_axes
    assert len(hist.patches) == filled
    heights = sorted(p.get_height() for p in hist.patches)
    assert sum(heights) == pytest.approx(1.0)  # fractions of examples


def test_reliability_diagram_from_arrays_and_given_ax():
    df = _predict_df(300, temp=1.0, seed=1)
    fig, axes = plt.subplots(1, 2)
    out = reliability_diagram(df[["p_negative", "p_positive"]].to_numpy(), df["label"].to_numpy(), ax=axes[1],
                              binning="mass", n_bins=5)
    assert out is axes[1]
    assert len(out.patches) == 10  # 5 equal-mass bins, all non-empty
    assert len(fig.axes) == 2 and len(out.child_axes) == 1  # the histogram is an inset of ax
    assert len(axes[0].patches) == 0 and not axes[0].child_axes  # the other subplot is untouched


def test_reliability_diagram_overlays_dict_and_long_frame():
    models = {"k=0": _predict_df(400, 1.0, 2), "k=4": _predict_df(400, 0.5, 3), "k=8": _predict_df(400, 0.3, 4)}
    ax = reliability_diagram(models)
    assert len(_data_lines(ax)) == 3 + 1  # one line per model + diagonal
    assert len(ax.collections) == 3  # gap shading per model
    assert len(_data_lines(ax.child_axes[0])) == 3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("k=0 (ECE ") and "perfect calibration" in labels

    long = pd.concat([df.assign(k=k) for k, df in zip([0, 4, 8], models.values())], ignore_index=True)
    long.attrs = dict(models["k=0"].attrs)
    ax2 = reliability_diagram(long, by="k")
    assert len(_data_lines(ax2)) == 4
    # same points as the dict version, model by model
    for l1, l2 in zip(_data_lines(ax)[:3], _data_lines(ax2)[:3]):
        np.testing.assert_allclose(l1.get_xydata(), l2.get_xydata())


def test_reliability_diagram_errors():
    df = _predict_df(50, 1.0, 5)
    with pytest.raises(ValueError, match="by='level' is not a column"):
        reliability_diagram(df, by="level")
    with pytest.raises(ValueError, match="unknown binning 'quantile'"):
        reliability_diagram(df, binning="quantile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels is required"):
        reliability_diagram(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="empty dict"):
        reliability_diagram({})


def _table() -> pd.DataFrame:
    rows = []
    for sel, slope in (("importance", 0.01), ("random", 0.02)):
        for k in (0, 2, 4, 8):
            for metric, base in (("ece", 0.05), ("accuracy", 0.8)):
                v = base + slope * k
                rows.append({"k": k, "selection": sel, "metric": metric, "value": v, "low": v - 0.01, "high": v + 0.02})
    return pd.DataFrame(rows)


def test_metric_vs_pruning_lines_and_bands():
    table = _table()
    ax = metric_vs_pruning(table, "ece", hue="selection")
    lines = _data_lines(ax)
    assert len(lines) == 2 and len(ax.collections) == 2  # a line and a CI band per selection
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 2, 4, 8])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.05, 0.07, 0.09, 0.13])
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.04) and band[:, 1].max() == pytest.approx(0.15)
    assert ax.get_ylabel() == "ece" and ax.get_xlabel() == "k"
    one = metric_vs_pruning(table[table["selection"] == "random"], "accuracy")
    assert len(_data_lines(one)) == 1 and len(one.collections) == 1


def test_metric_vs_pruning_errors():
    table = _table()
    with pytest.raises(ValueError, match=r"unknown metric 'ECE'; expected one of \['accuracy', 'ece'\]"):
        metric_vs_pruning(table, "ECE")
    with pytest.raises(ValueError, match="several rows"):
        metric_vs_pruning(table, "ece")  # two selections per k without hue
    with pytest.raises(ValueError, match=r"lacks columns \['low'\]"):
        metric_vs_pruning(table.drop(columns="low"), "ece")


def test_importance_profile_draws_one_bar_per_layer_and_one_line_per_metric():
    import matplotlib
    import numpy as np
    import pandas as pd

    from toolkit.study.plots import importance_profile

    before = dict(matplotlib.rcParams)
    ax = importance_profile(pd.Series(np.linspace(0, 1, 7), name="cosine"))
    assert len(ax.patches) == 7 and ax.get_ylabel() == "cosine"
    ax = importance_profile(pd.DataFrame({"cosine": np.arange(7.0), "angular": np.ones(7)}))
    assert len([l for l in ax.lines if len(l.get_xdata()) == 7]) == 2
    assert dict(matplotlib.rcParams) == before
    with pytest.raises(ValueError, match="importance is empty"):
        importance_profile(pd.DataFrame())


def _claims_summary():
    rows = [
        dict(selection="none", k=0, misaligned=False),
        dict(selection="cosine", k=1, d_accuracy=-0.02, ni_low=-0.04, keeps_accuracy=True, collapsed=False,
             d_ece=0.03, ece_low=0.002, ece_high=0.06, ece_degrades=True, d_naopc=0.01, naopc_low=-0.05,
             naopc_high=0.07, naopc_degrades=False, misaligned=True),
        dict(selection="cosine", k=2, d_accuracy=-0.13, ni_low=-0.16, keeps_accuracy=False, collapsed=False,
             d_ece=0.1, ece_low=0.05, ece_high=0.2, ece_degrades=True, d_naopc=-0.02, naopc_low=-0.1,
             naopc_high=0.08, naopc_degrades=False, misaligned=False),
        dict(selection="cosine", k=3, d_accuracy=-0.3, ni_low=-0.35, keeps_accuracy=False, collapsed=True,
             d_ece=0.0, ece_low=-0.1, ece_high=0.1, ece_degrades=False, d_naopc=-0.3, naopc_low=-0.4,
             naopc_high=-0.2, naopc_degrades=False, misaligned=False),
        dict(selection="random", k=2, d_accuracy=0.01, ni_low=-0.02, keeps_accuracy=True, collapsed=False,
             d_ece=0.0, ece_low=-0.03, ece_high=0.03, ece_degrades=False, d_naopc=-0.2, naopc_low=-0.35,
             naopc_high=-0.05, naopc_degrades=True, misaligned=True),
    ]
    return Summary(pd.DataFrame(rows), margin=0.05, alpha=0.05, correction="holm", method="saliency",
                   claims=("accuracy", "ece", "naopc_comprehensiveness"))


def test_claims_plot_draws_each_interval_and_marks_what_was_shown():
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    s = _claims_summary()
    axes = plots.claims_plot(s)
    pruned = s.table[s.table.k > 0]
    for ax, (lo, hi, shown) in zip(axes, [("ni_low", "d_accuracy", "keeps_accuracy"),
                                         ("ece_low", "ece_high", "ece_degrades"),
                                         ("naopc_low", "naopc_high", "naopc_degrades")]):
        bars = [c for c in ax.collections if isinstance(c, LineCollection)]
        spans = sorted((round(min(seg[:, 1]), 6), round(max(seg[:, 1]), 6)) for b in bars for seg in b.get_segments()
                       if np.ptp(seg[:, 1]) > 0)  # accuracy: one-sided, from the bound up to the point
        assert spans == sorted(zip(pruned[lo].round(6), pruned[hi].round(6)))  # the intervals, not bootstrap bands
        points = [c for c in ax.collections if not isinstance(c, LineCollection)]
        crosses = [c for c in points if c.get_label() == "collapsed"]
        assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 1  # the collapsed cell, drawn as an x
        filled = sum(len(c.get_offsets()) for c in points
                     if len(c.get_offsets()) and c.get_facecolor().size and c.get_facecolor()[0][:3].tolist() != [1, 1, 1]
                     and c.get_sizes()[0] < 100 and c not in crosses)
        rings = sum(len(c.get_offsets()) for c in points if len(c.get_offsets()) and c.get_sizes()[0] >= 100)
        assert filled == (pruned[shown].astype(bool) & ~pruned.collapsed.astype(bool)).sum()
        assert rings == pruned.misaligned.sum() == 2
    assert axes[0].get_title() == "Δ accuracy, one-sided 95% bound" and "95% CI" in axes[1].get_title()
    assert "NAOPC (saliency)" in axes[2].get_title()
    plt.close("all")
    with pytest.raises(ValueError, match=r"summary lacks columns \['d_accuracy'"):
        plots.claims_plot(dataclasses.replace(s, table=s.table.drop(columns=["d_accuracy"])))
