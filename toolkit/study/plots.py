"""Figures: tidy DataFrame (or arrays) in, matplotlib Axes out.

Every function draws on ``ax`` when given, else on a new figure; none changes global
matplotlib state (no rcParams, style or theme calls). Numbers come from the compute modules
(e.g. :func:`toolkit.metrics.calibration.reliability_table`); this module only draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from ..metrics.calibration.binned import BINNINGS, Binning
from ..metrics.calibration import ece, probs_labels, reliability_table
from ..metrics.calibration.inputs import check_probs
from .._core.validation import InputError, InputTypeError, as_bool

__all__ = ["claims_plot", "importance_profile", "metric_vs_pruning", "reliability_diagram", "sweep_curves",
           "verdict_heatmap"]

_GAP_COLOR = "#d62728"


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _models(data: object, labels: ArrayLike | None, by: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Normalise the accepted inputs to {name: (probs, labels)} (one entry for a single model)."""
    if isinstance(data, Mapping):
        if labels is not None or by is not None:
            raise InputError("labels and by must be None when data is a dict {name: predict() DataFrame}")
        if not data:
            raise InputError("data is an empty dict; expected at least one {name: predict() DataFrame}")
        out = {}
        for name, df in data.items():
            if not isinstance(df, pd.DataFrame):
                raise InputError(f"data[{name!r}] is a {type(df).__name__}; expected a predict() DataFrame")
            out[str(name)] = probs_labels(df)
        return out
    if isinstance(data, pd.DataFrame):
        if labels is not None:
            raise InputError("labels must be None when data is a DataFrame (its 'label' column is used)")
        if by is None:
            return {"model": probs_labels(data)}
        if by not in data.columns:
            raise InputError(f"by={by!r} is not a column; columns are {list(data.columns)}")
        out = {}
        for key, group in data.groupby(by, sort=True):
            group = group.copy()
            group.attrs = dict(data.attrs)
            out[str(key)] = probs_labels(group)
        return out
    if by is not None:
        raise InputError("by needs a long DataFrame holding a column of that name")
    if labels is None:
        raise InputError("labels is required when data is a probability array")
    return {"model": check_probs(np.asarray(data), labels)}


def reliability_diagram(
    data: ArrayLike | pd.DataFrame | Mapping[str, pd.DataFrame],
    labels: ArrayLike | None = None,
    *,
    by: str | None = None,
    n_bins: int = 15,
    binning: Binning = "width",
    ax: Axes | None = None,
) -> Axes:
    """Reliability diagram: per-bin accuracy vs mean confidence of the top label, with the
    diagonal, the calibration gap shaded, and bin counts in a small histogram underneath.

    One model draws Guo et al. (2017) style bars (accuracy, and the gap up or down to the bin's
    mean confidence, hatched). Several models (e.g. pruning levels) are overlaid as lines of
    (confidence, accuracy) per non-empty bin, each with its gap to the diagonal shaded; the
    legend gives each model's ECE. Numbers come from
    :func:`toolkit.metrics.calibration.reliability_table`.

    Args:
        data: probabilities (n, C) with ``labels``; a predict() DataFrame; a dict
            {name: predict() DataFrame}; or a long DataFrame of several models with a ``by`` column.
        labels: integer labels for array input, else None.
        by: column of a long DataFrame naming the model of each row (e.g. "k").
        n_bins: number of bins.
        binning: "width" or "mass" (as :func:`toolkit.metrics.calibration.ece`).
        ax: Axes to draw on; None creates a figure. The histogram is an inset below ``ax``
            (``ax.child_axes[0]``).

    Returns:
        The main Axes.
    """
    if binning not in BINNINGS:
        raise InputError(f"unknown binning {binning!r}; expected one of {list(BINNINGS)}")
    models = _models(data, labels, by)
    ax = _new_axes(ax, (4.8, 5.6))
    hist = ax.inset_axes((0.0, -0.36, 1.0, 0.24), sharex=ax)
    colors = sns.color_palette(n_colors=max(len(models), 1))
    if len(models) == 1:
        (probs, y), = models.values()
        table = reliability_table(probs, y, n_bins=n_bins, binning=binning)
        full = table[table["count"] > 0]
        width = full["upper"] - full["lower"]
        score = ece(probs, y, n_bins=n_bins, binning=binning)
        ax.bar(full["lower"], full["accuracy"], width=width, align="edge", color=colors[0],
               edgecolor="white", label=f"accuracy (ECE {score:.3f})")
        ax.bar(full["lower"], full["gap"], bottom=full["accuracy"], width=width, align="edge",
               color=_GAP_COLOR, alpha=0.3, hatch="//", edgecolor=_GAP_COLOR, label="gap")
        hist.bar(full["lower"], full["count"] / table["count"].sum(), width=width, align="edge",
                 color=colors[0], edgecolor="white")
    else:
        for (name, (probs, y)), color in zip(models.items(), colors):
            table = reliability_table(probs, y, n_bins=n_bins, binning=binning)
            full = table[table["count"] > 0]
            label = f"{name} (ECE {ece(probs, y, n_bins=n_bins, binning=binning):.3f})"
            sns.lineplot(x=full["confidence"].to_numpy(), y=full["accuracy"].to_numpy(), color=color, label=label,
                         marker="o", errorbar=None, sort=True, ax=ax)
            ax.fill_between(full["confidence"], full["accuracy"], full["confidence"], color=color, alpha=0.15,
                            linewidth=0)
            centers = (full["lower"] + full["upper"]) / 2.0
            hist.plot(centers, full["count"] / table["count"].sum(), marker=".", color=color)
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("")
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", fontsize="small", title=by)
    hist.set_xlabel("confidence (top label)")
    hist.set_ylabel("fraction")
    return ax


def metric_vs_pruning(
    table: pd.DataFrame,
    metric: str,
    *,
    x: str = "k",
    hue: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A metric against the pruning level, one line per ``hue`` group, with its CI as a band.

    Args:
        table: tidy DataFrame with columns ``x`` (default ``k``: number of pruned layers),
            ``metric``, ``value``, ``low``, ``high`` (e.g. from ``stats.Interval``), and ``hue``
            if given (e.g. ``selection``). One row per (hue, x) for this metric.
        metric: which rows of ``table["metric"]`` to draw.
        x: the column on the horizontal axis.
        hue: optional grouping column; one line and band per value.
        ax: Axes to draw on; None creates a figure.

    Returns:
        The Axes.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputTypeError(f"table must be a tidy pandas DataFrame (a study's table), got a {type(table).__name__}")
    needed = [x, "metric", "value", "low", "high"] + ([hue] if hue is not None else [])
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"table lacks columns {missing}; expected {needed}, got {list(table.columns)}")
    sub = table[table["metric"] == metric]
    if sub.empty:
        raise InputError(f"unknown metric {metric!r}; expected one of {sorted(map(str, table['metric'].unique()))}")
    keys = [x] + ([hue] if hue is not None else [])
    dup = sub.duplicated(keys)
    if dup.any():
        first = sub.loc[dup, keys].iloc[0].tolist()
        raise InputError(f"several rows for the same {keys} (first: {first}); aggregate first")
    ax = _new_axes(ax, (5.0, 3.6))
    groups = [(None, sub)] if hue is None else list(sub.groupby(hue, sort=True))
    colors = sns.color_palette(n_colors=len(groups))
    for (name, g), color in zip(groups, colors):
        g = g.sort_values(x)
        sns.lineplot(x=g[x].to_numpy(), y=g["value"].to_numpy(), color=color, label=None if hue is None else str(name),
                     marker="o", errorbar=None, sort=True, ax=ax)
        ax.fill_between(g[x], g["low"], g["high"], color=color, alpha=0.2, linewidth=0)
    if hue is not None:
        ax.legend(title=hue, fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    return ax


def claims_plot(summary, *, axes: Sequence[Axes] | None = None) -> np.ndarray:
    """The study's claims against the pruning level: each paired difference with the interval its test uses.

    One panel per claim of the summary (the registry's headline metrics, :mod:`toolkit.metrics.registry`),
    in order: Δ accuracy with its one-sided (1 - alpha) lower bound drawn down from the point and
    the -margin line it must stay above (filled marker: keeps accuracy); Δ ECE and Δ NAOPC (or Δ
    AOPC in an AOPC-only study), and any other registered change claim, with their paired 95%
    intervals (filled: shown to degrade in its family, after the family's adjustment). A
    collapsed cell is drawn with an x, a misaligned cell is ringed in red on every panel. One
    colour per selection; the unpruned reference is the zero line.

    Args:
        summary: the :class:`toolkit.study.Summary` that :func:`toolkit.study.summary` returns (its
            fields name the claims, the margin, the correction and the attribution method).
        axes: one Axes per claim to draw on; None creates a figure.

    Returns:
        The Axes, one per claim.
    """
    if not (hasattr(summary, "claim_columns") and isinstance(getattr(summary, "table", None), pd.DataFrame)):
        raise InputTypeError(f"summary must be the Summary toolkit.study.summary returns, got {type(summary).__name__}")
    table = summary.table
    claims = summary.claim_columns()
    needed = ["selection", "k", "misaligned"] + [c for claim in claims for c in
                                                 (claim.delta, claim.low, claim.high, claim.shown) if c]
    missing = [c for c in needed if c not in table.columns]
    if missing or not claims:
        raise InputError(f"summary lacks columns {missing or 'of any claim'}: pass toolkit.study.summary(table) of a "
                         "study with a pruned level")
    if axes is None:
        _, axes = plt.subplots(1, len(claims), figsize=(4.5 * len(claims), 3.6))
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(claims):
        names = ", ".join(claim.metric.label for claim in claims)
        raise InputError(f"axes has {len(axes)} Axes; expected {len(claims)} ({names})")
    pruned = table[table.k > 0]
    margin = summary.margin
    alpha = summary.alpha
    panels = []
    for claim in claims:
        metric = claim.metric
        if metric.test == "noninferiority":
            title = f"Δ {metric.label}, one-sided {1 - alpha:.0%} bound"
        elif metric.family == "faithfulness":
            title = f"Δ {metric.label} ({summary.method}), 95% CI"
        else:
            title = f"Δ {metric.label}, 95% CI"
        panels.append((claim.delta, claim.low, claim.high, claim.shown, title, metric.test == "noninferiority"))
    selections = sorted(pruned.selection.unique())
    colors = dict(zip(selections, sns.color_palette(n_colors=max(1, len(selections)))))
    width = 0.5 / max(1, len(selections))
    for ax, (col, low, high, shown, title, premise) in zip(axes, panels):
        ringed = False  # one "misaligned" legend entry, and none when no cell is
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        if premise and margin is not None:
            ax.axhline(-margin, color="0.5", linestyle="--", linewidth=1.0, label=f"-{margin:g} margin")
        for i, sel in enumerate(selections):
            g = pruned[pruned.selection == sel].sort_values("k")
            x = g.k.to_numpy(dtype=float) + (i - (len(selections) - 1) / 2) * width
            y = g[col].to_numpy(dtype=float)
            upper = np.zeros_like(y) if premise else g[high].to_numpy(dtype=float) - y  # one-sided: no upper arm
            err = np.vstack([y - g[low].to_numpy(dtype=float), upper])
            ax.errorbar(x, y, yerr=err, fmt="none", ecolor=colors[sel], capsize=3, label=sel)
            filled = as_bool(g[shown]).to_numpy()
            broken = as_bool(g["collapsed"]).to_numpy() if "collapsed" in g else np.zeros(len(g), dtype=bool)
            ax.scatter(x[filled & ~broken], y[filled & ~broken], color=colors[sel], zorder=3)
            ax.scatter(x[~filled & ~broken], y[~filled & ~broken], facecolor="white", edgecolor=colors[sel], zorder=3)
            ax.scatter(x[broken], y[broken], marker="x", color=colors[sel], zorder=3,
                       label="collapsed" if broken.any() and sel == selections[0] else None)
            bad = g.misaligned.astype(bool).to_numpy()
            ax.scatter(x[bad], y[bad], s=160, facecolor="none", edgecolor="#d62728", linewidth=1.5, zorder=4,
                       label="misaligned" if bad.any() and not ringed else None)
            ringed |= bool(bad.any())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("k (attention layers dropped)")
        ax.set_xticks(sorted(pruned.k.unique()))
    axes[0].legend(fontsize="small", loc="best")
    return axes


def importance_profile(importance: pd.DataFrame | pd.Series, *, ax: Axes | None = None) -> Axes:
    """Attention importance per layer, one bar group (or line) per metric; low = first to drop.

    Args:
        importance: a Series indexed by layer (from `attention_importance`) or a DataFrame with
            one column per metric.
        ax: Axes to draw on; None creates a figure.

    Returns:
        The Axes.
    """
    if not isinstance(importance, (pd.Series, pd.DataFrame)):
        raise InputTypeError(
            f"importance must be a pandas Series or DataFrame indexed by layer (attention_importance's result), got a "
            f"{type(importance).__name__}; wrap plain scores as pd.Series(scores)"
        )
    frame = importance.to_frame() if isinstance(importance, pd.Series) else importance
    if frame.empty:
        raise InputError("importance is empty; expected one score per layer")
    ax = _new_axes(ax, (max(6.0, 0.3 * len(frame)), 3.0))
    long = frame.rename_axis("layer").reset_index().melt(id_vars="layer", var_name="metric", value_name="importance")
    if frame.shape[1] == 1:
        sns.barplot(long, x="layer", y="importance", color="C0", ax=ax)
    else:
        sns.lineplot(long, x="layer", y="importance", hue="metric", marker="o", ax=ax)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel(str(frame.columns[0]) if frame.shape[1] == 1 else "importance")
    return ax


def _tag(metric) -> str:
    """A metric's name in a heatmap cell: its label when short (ECE, Brier), else its short name."""
    return metric.label if len(metric.label) <= 10 else metric.short


_OUTCOME_COLOURS = ("#c7e9c0", "#fdae6b", "#9ecae1", "#d9d9d9")
_MARKS = {"worse": "\u2193", "worse?": "\u2193?"}


def verdict_heatmap(verdicts: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Every pruned cell's verdict at once: one row per (model, dataset), one column per selection
    (and level), coloured by outcome, annotated with k, the accuracy change and the claims shown
    to degrade (\u2193: primary family; \u2193?: exploratory).

    Args:
        verdicts: the table :func:`toolkit.study.verdicts` returns.
        ax: Axes to draw on; None creates a figure.

    Returns:
        The Axes.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from ..metrics.registry import get_metric
    from .verdicts import OUTCOMES

    needed = ["model", "dataset", "selection", "k", "outcome", "degraded"]
    if not isinstance(verdicts, pd.DataFrame) or any(c not in verdicts for c in needed):
        raise InputError(f"verdicts must be the table toolkit.study.verdicts returns (columns {needed})")
    frame = verdicts.copy()
    level = "level" if "level" in frame and frame["level"].nunique() > 1 else None
    frame["row"] = frame.model + " / " + frame.dataset
    frame["column"] = frame.selection if level is None else frame.selection + " @ " + frame[level].astype(str)
    rows = list(dict.fromkeys(frame.row))
    columns = list(dict.fromkeys(frame.column))
    grid = np.full((len(rows), len(columns)), np.nan)
    claims = [c for c in frame.columns if c not in needed + ["row", "column", "level", "shots", "layers"]
              and frame[c].isin(list(_MARKS) + [""]).all()]
    ax = _new_axes(ax, (1.9 * len(columns) + 3.0, 0.55 * len(rows) + 1.6))
    for _, r in frame.iterrows():
        i, j = rows.index(r.row), columns.index(r.column)
        grid[i, j] = OUTCOMES.index(r.outcome)
        marks = [f"{_tag(get_metric(c))}{_MARKS[r[c]]}" for c in claims if r[c] in _MARKS]
        head = f"k={r.k}" + (f", \u0394acc {r.d_accuracy:+.2f}" if "d_accuracy" in frame and pd.notna(r.d_accuracy) else "")
        text = head + ("\n" + " ".join(marks) if marks else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.imshow(grid, cmap=ListedColormap(_OUTCOME_COLOURS), vmin=-0.5, vmax=len(OUTCOMES) - 0.5, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(np.arange(-0.5, len(columns)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.legend(handles=[Patch(color=c, label=o) for c, o in zip(_OUTCOME_COLOURS, OUTCOMES)],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title("verdict per pruned cell (\u2193: a claim shown to degrade; \u2193?: exploratory)", fontsize=9)
    return ax


def sweep_curves(table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "calibration_gap", "ece",
                 "ece_temperature_scaled", "brier", "positive_rate"), *, change: bool = True,
                 kstar: pd.DataFrame | None = None, axes: np.ndarray | None = None) -> np.ndarray:
    """The dose-response sweep: each metric against k with its CI, a row per (model, dataset), a column per metric.

    One line per (selection, shots), marked at every swept k and joined in k order, so a curve
    that goes down and up again is drawn as it is (nothing is smoothed or made monotone). The k = 0
    reference (selection ``none``) starts every line. ``change`` draws the paired change against
    k = 0 (delta, delta_low, delta_high) instead of the value (on accuracy also the one-sided
    non-inferiority bound ``lower`` as triangles, and -margin dashed); with ``kstar``
    (:func:`toolkit.study.sweep.k_star`) each line's k* is marked with a vertical tick.

    Args:
        table: :func:`toolkit.study.sweep.sweep_table`.
        metrics: rows of ``table.metric`` to draw.
        axes: a (pairs x metrics) array of Axes; None creates a figure.

    Returns:
        The array of Axes.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputTypeError(f"table must be a sweep table (DataFrame), got a {type(table).__name__}")
    needed = ["model", "dataset", "selection", "shots", "k", "metric", "value", "low", "high"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"table lacks columns {missing}; expected a sweep table with {needed}")
    unknown = [m for m in metrics if m not in set(table.metric)]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; expected some of {sorted(map(str, set(table.metric)))}")
    cols = ("delta", "delta_low", "delta_high") if change else ("value", "low", "high")
    pairs = list(dict.fromkeys(zip(table.model, table.dataset)))
    if axes is None:
        _, axes = plt.subplots(len(pairs), len(metrics), figsize=(3.2 * len(metrics), 2.6 * len(pairs)),
                               squeeze=False)
    axes = np.asarray(axes).reshape(len(pairs), len(metrics))
    lines = list(dict.fromkeys(
        (s, sh) for s, sh in zip(table.selection, table.shots) if s != "none"))
    colors = dict(zip(lines, sns.color_palette(n_colors=max(1, len(lines)))))
    for i, (model, dataset) in enumerate(pairs):
        pair = table[(table.model == model) & (table.dataset == dataset)]
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            rows = pair[pair.metric == metric]
            for sel, shots in lines:
                ref = rows[(rows.selection == "none") & (rows.shots == shots)]
                g = pd.concat([ref, rows[(rows.selection == sel) & (rows.shots == shots)]]).sort_values("k")
                if g.empty or g[(g.k > 0)].empty:
                    continue
                y, lo, hi = (g[c].fillna(0.0 if change else np.nan).to_numpy(float) for c in cols)
                color = colors[(sel, shots)]
                ax.plot(g.k, y, marker="o", markersize=3, color=color, label=f"{sel}, {shots}-shot")
                ax.fill_between(g.k, lo, hi, color=color, alpha=0.15, linewidth=0)
                if change and metric == "accuracy" and "lower" in g and g["lower"].notna().any():
                    ax.plot(g.k, g["lower"], linestyle="none", marker="v", markersize=3, color=color)
                if kstar is not None:
                    hit = kstar[(kstar.model == model) & (kstar.dataset == dataset) & (kstar.selection == sel)
                                & (kstar.shots == shots)]
                    if len(hit) and int(hit.k_star.iloc[0]) > 0:
                        ax.axvline(int(hit.k_star.iloc[0]), color=color, linestyle=":", linewidth=1)
            if change:
                ax.axhline(0.0, color="grey", linewidth=0.6)
                if metric == "accuracy" and "margin" in rows and rows["margin"].notna().any():
                    ax.axhline(-float(rows["margin"].dropna().iloc[0]), color="grey", linestyle="--", linewidth=0.6)
            if i == 0:
                ax.set_title(f"{metric} change" if change else metric, fontsize="small")
            ax.set_ylabel(f"{model}\n{dataset}" if j == 0 else "", fontsize="small")
            ax.set_xlabel("k (attention layers dropped)" if i == len(pairs) - 1 else "", fontsize="small")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if lines:  # every (selection, shots) line, even one the first row does not have
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colors[key], marker="o", markersize=3, label=f"{key[0]}, {key[1]}-shot")
                   for key in lines]
        axes[0, -1].legend(handles=handles, fontsize="x-small")
    return axes
