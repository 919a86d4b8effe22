"""The study's tidy table: one row per (cell, metric) from the persisted cells, and what the report draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics.calibration import calibration_report, compare_calibration, report_metrics
from ..decisions import accuracy_tost
from ..metrics.registry import get_metric, list_metrics, metric_names
from ..models.scoring import prediction_frame
from ..decisions.stats import mean_ci, paired_bootstrap
from .._core.store import CellStore
from .cells import Cell, study_cells
from .config import StudyConfig
from .decide import GATE_COLUMNS, TEST_COLUMNS, accuracy_gate, degrade_test, paired_values, se_from_interval
from .._core.validation import InputError, check_int

__all__ = ["faithfulness_by_length", "load_results", "record_frame", "report_frames", "tidy_table"]



def record_frame(record: dict) -> pd.DataFrame:
    """The prediction frame of one persisted cell (as :func:`toolkit.models.scoring.predict` returned it)."""
    return prediction_frame(record["ids"], record["labels"], record["probs"], record["label_names"], record["label_mass"])


def tidy_table(records: list[dict], config: StudyConfig) -> pd.DataFrame:
    """One row per (cell, metric): value, CI, and the paired difference against the unpruned cell.

    Rows per cell: each registered calibration metric of probabilities and labels
    (:mod:`toolkit.metrics.registry`, registry order; the ``tost`` metric - accuracy - with the TOST
    columns on pruned cells), then those that read the cell's record (``fn(record)``, without CI or
    test: ece_temperature_scaled, temperature, label_mass, registered in :mod:`toolkit.study.cells`),
    then ``<faithfulness metric>:<method>`` per attribution method (and
    ``random``) for each registered faithfulness metric the cells measured.

    Every verdict rests on columns of this table (:mod:`toolkit.study.decide`): a pruned cell's
    accuracy row holds the gate (gains, losses, ni_low = the one-sided (1 - alpha) non-inferiority
    bound of the accuracy change, noninferior at ``config.margin``, majority_share,
    balanced_accuracy, collapsed, collapse_reasons); each of its metric rows with a better
    direction holds a one-sided test that the metric degrades (test, alternative, p).
    :func:`toolkit.study.summary` forms the gated families from these columns alone.

    Returns:
        DataFrame with columns model, dataset, selection, level, k, layers, metric, value, low,
        high, n, delta, delta_low, delta_high, delta_se, delta_df, tost_low, tost_high, equivalent,
        margin, test, alternative, p, gains, losses, ni_low, noninferior, majority_share,
        balanced_accuracy, collapsed, collapse_reasons (see :func:`toolkit.study.run_study`); with
        ``config.shots`` set (not 0), ``shots`` (the cell's demonstrations) after ``k``.
    """
    rows: list[dict] = []
    faithfulness = [m.name for m in list_metrics("faithfulness")]
    prediction_metrics = report_metrics()  # functions of probabilities and labels: calibration_report's columns
    record_metrics = [m for m in list_metrics("calibration") if m.name not in prediction_metrics]
    refs = {(r["model"], r["dataset"]): r for r in records if r["k"] == 0}
    for r in records:
        level = r.get("level", r["k"])
        base = dict(model=r["model"], dataset=r["dataset"], selection=r["selection"], level=level, k=r["k"])
        if config.shots != 0:  # a column only where the option is set: the default study's table is as before
            base["shots"] = r.get("shots", 0)
        base["layers"] = " ".join(map(str, r["layers"]))
        seed = Cell(r["model"], r["dataset"], r["selection"], level).seed(config.seed)
        pred = record_frame(r)
        report = calibration_report(pred, n_boot=config.n_boot, seed=seed).iloc[0]
        ref = refs.get((r["model"], r["dataset"]))
        ref_pred = record_frame(ref) if ref is not None else None
        paired = (
            compare_calibration(ref_pred, pred, n_boot=config.n_boot, seed=seed).set_index("metric")
            if ref_pred is not None
            else None
        )
        pruned = ref is not None and r["k"] > 0
        for entry in list_metrics("calibration"):
            if entry.name not in prediction_metrics:
                continue
            metric = entry.name
            row = dict(base, metric=metric, value=float(report[metric]), low=float(report[f"{metric}_low"]),
                       high=float(report[f"{metric}_high"]), n=len(pred))
            if paired is not None and metric in paired.index:
                d = paired.loc[metric]
                # se of the difference from its 95% paired-bootstrap interval (normal approximation)
                row.update(delta=float(d["diff"]), delta_low=float(d["low"]), delta_high=float(d["high"]),
                           delta_se=se_from_interval(d["low"], d["high"]))
                if pruned and entry.test == "paired_bootstrap" and entry.higher_is_better is not None:
                    test = degrade_test(metric, estimate=row["delta"], low=row["delta_low"], high=row["delta_high"])
                    row.update({c: test[c] for c in TEST_COLUMNS})
            if entry.test == "noninferiority" and pruned:
                tost = accuracy_tost(ref_pred.correct.to_numpy(), pred.correct.to_numpy(),
                                     margin=config.margin, alpha=config.alpha)
                row.update(tost_low=tost.low, tost_high=tost.high, equivalent=tost.equivalent, margin=config.margin)
                gate = accuracy_gate(ref_pred.correct.to_numpy(), pred.correct.to_numpy(), pred.pred.to_numpy(),
                                     pred.label.to_numpy(), len(r["label_names"]), np.asarray(r["label_mass"]),
                                     margin=config.margin, alpha=config.alpha)
                row.update({c: gate[c] for c in GATE_COLUMNS})
            rows.append(row)
        for entry in record_metrics:  # what the cell persisted beside its predictions (temperature, ...)
            rows.append(dict(base, metric=entry.name, value=float(entry.fn(r)), low=np.nan, high=np.nan, n=len(pred)))
        faith = pd.DataFrame(r["faithfulness"])
        ref_faith = pd.DataFrame(ref["faithfulness"]) if ref is not None else None
        for method, group in faith.groupby("method", sort=True):
            for metric in faithfulness:
                if metric not in group:
                    continue
                values = group[metric].to_numpy(dtype=float)
                ok = ~np.isnan(values)
                if not ok.any():
                    continue
                ci = mean_ci(values[ok], n_boot=config.n_boot, seed=seed)
                row = dict(base, metric=f"{metric}:{method}", value=ci.estimate, low=ci.low, high=ci.high,
                           n=int(ok.sum()))
                if ref_faith is not None:
                    both = paired_values(ref_faith[ref_faith.method == method], group, metric)
                    if len(both) > 0:
                        d = paired_bootstrap(np.mean, (both.a.to_numpy(),), (both.b.to_numpy(),),
                                             n_boot=config.n_boot, seed=seed)
                        row.update(delta=d.estimate, delta_low=d.low, delta_high=d.high, n=len(both))
                    diff = both.b.to_numpy() - both.a.to_numpy()
                    if len(both) > 1:  # paired t: se of the mean difference, n - 1 degrees of freedom
                        row.update(delta_se=float(np.std(diff, ddof=1) / np.sqrt(len(diff))), delta_df=len(diff) - 1)
                    if r["k"] > 0 and len(both) > 0 and get_metric(metric).higher_is_better is not None:
                        test = degrade_test(f"{metric}:{method}", d=diff)
                        row.update({c: test[c] for c in TEST_COLUMNS})
                rows.append(row)
    columns = ["n", "delta", "delta_low", "delta_high", "delta_se", "delta_df", "tost_low", "tost_high", "equivalent",
               "margin", *TEST_COLUMNS, *GATE_COLUMNS]
    table = pd.DataFrame(rows)
    for col in columns:
        if col not in table:
            table[col] = np.nan
    first = [c for c in table.columns if c not in columns]
    return table[first[: first.index("high") + 1] + columns + first[first.index("high") + 1:]]


def faithfulness_by_length(records: list[dict] | StudyConfig, *, n_boot: int = 500, alpha: float = 0.05,
                           seed: int = 0) -> pd.DataFrame:
    """Faithfulness per sentence-length bucket: each cell's mean, and its paired change against the unpruned cell.

    For the cells of a study run with ``StudyConfig.length_buckets`` (each per-example faithfulness
    row labelled with its ``length_bucket``): per (model, dataset, selection, level, k, method,
    length_bucket, metric), the n sentences and their mean; for a pruned cell also the mean paired
    change against the unpruned cell of the same model and dataset on the same sentences,

        delta = (1/n_p) sum_i (m_pruned(x_i) - m_unpruned(x_i))

    with its percentile bootstrap interval (:func:`toolkit.decisions.stats.mean_ci` of the differences; the
    same resampled sentences for both cells). The study's claims stay pooled over all sentences.

    Args:
        records: the persisted cells (:func:`load_results`), or a config whose cells to load.
        n_boot, alpha, seed: of the bootstrap (:func:`toolkit.decisions.stats.mean_ci`).

    Returns:
        DataFrame with columns model, dataset, selection, level, k, method, length_bucket, metric,
        n, mean, n_paired, delta, delta_low, delta_high (NaN on the unpruned cells), in grid,
        bucket and registry order.

    Raises:
        InputError: no record has ``length_bucket`` labels (a study without ``length_buckets``).
    """
    if isinstance(records, StudyConfig):
        records = load_results(records)
    n_boot = check_int(n_boot, "n_boot", 1)
    frames = [pd.DataFrame(r["faithfulness"]) for r in records]
    if not any("length_bucket" in f for f in frames):
        raise InputError("the records have no length_bucket labels; run the study with StudyConfig.length_buckets "
                         "(e.g. [8, 16, 32]) to measure faithfulness by sentence length")
    metrics = [m.name for m in list_metrics("faithfulness")]
    refs = {(r["model"], r["dataset"]): frame for r, frame in zip(records, frames) if r["k"] == 0}
    rows: list[dict] = []
    for r, faith in zip(records, frames):
        if "length_bucket" not in faith:
            continue
        ref = refs.get((r["model"], r["dataset"])) if r["k"] > 0 else None
        base = dict(model=r["model"], dataset=r["dataset"], selection=r["selection"], level=r.get("level", r["k"]),
                    k=r["k"])
        groups = faith.groupby(["method", "length_bucket"], sort=False)
        for (method, bucket), group in sorted(groups, key=lambda g: (g[0][0], _bucket_bound(g[0][1]))):
            for metric in metrics:
                if metric not in group or group[metric].isna().all():
                    continue
                values = group.set_index("example")[metric].dropna()
                row = dict(base, method=method, length_bucket=bucket, metric=metric, n=len(values),
                           mean=float(values.mean()), n_paired=0, delta=np.nan, delta_low=np.nan, delta_high=np.nan)
                if ref is not None and metric in ref:
                    before = ref[(ref.method == method)].set_index("example")[metric]
                    both = pd.concat([before, values], axis=1, keys=["a", "b"], join="inner").dropna()
                    if len(both):
                        d = mean_ci(both.b.to_numpy() - both.a.to_numpy(), n_boot=n_boot, alpha=alpha, seed=seed)
                        row.update(n_paired=len(both), delta=d.estimate, delta_low=d.low, delta_high=d.high)
                rows.append(row)
    columns = ["model", "dataset", "selection", "level", "k", "method", "length_bucket", "metric", "n", "mean",
               "n_paired", "delta", "delta_low", "delta_high"]
    return pd.DataFrame(rows, columns=columns)


def _bucket_bound(label: str) -> int:
    """The upper bound of a length bucket's label (``"<=8"`` -> 8, ``"9-16"`` -> 16): buckets in order."""
    return int(label.split("-")[-1].removeprefix("<="))


def report_frames(records: list[dict]) -> dict[tuple[str, str], dict]:
    """What the report draws per (model, dataset) besides the table: prediction frames and importance.

    ``frames``: the unpruned cell and the cells of the first pruning selection, by ``k=<k>``;
    ``selection``: that selection; ``importance``: importance profile per selection (not random).
    """
    out: dict[tuple[str, str], dict] = {}
    for key in dict.fromkeys((r["model"], r["dataset"]) for r in records):
        recs = [r for r in records if (r["model"], r["dataset"]) == key]
        first_sel = next((r["selection"] for r in recs if r["k"] > 0), None)
        out[key] = {
            "selection": first_sel,
            "frames": {f"k={r['k']}": record_frame(r) for r in recs if r["k"] == 0 or r["selection"] == first_sel},
            "importance": {r["selection"]: r["importance"] for r in recs
                           if r.get("importance") and not _is_control(r["selection"])},
        }
    return out


def _is_control(selection: str) -> bool:
    """A control selection (random scores): no importance profile is drawn for it."""
    return selection in metric_names("importance") and get_metric(selection).control


def load_results(config: StudyConfig) -> list[dict]:
    """The persisted cells of a study (finished ones only), in grid order."""
    records = CellStore(config.run_dir()).records()
    return [records[c.key] for c in study_cells(config) if c.key in records]
