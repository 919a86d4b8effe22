"""The random-layer control: is pruning the *selected* layers different from pruning any k layers?

A stage-2 study (issue 28) runs each importance selection at its k* beside ``random_draws`` seeded
random-layer draws at the same k, all scored on the same test sentences. The selection's change
against the unpruned model mixes two things: what dropping k attention layers does at all, and what
dropping *these* k layers does. The control separates them: per metric,

    difference = metric(selection) - mean_j metric(random draw j)

(the unpruned reference cancels: it is the selection's change minus the draws' mean change). The
draws are pooled, not tested one by one, so one comparison per (cell, metric) and the draws'
spread enters through the paired resampling: the same examples are resampled for the selection
and every draw.

- accuracy and calibration (ECE, smooth ECE, Brier; ``CALIBRATION``): a paired percentile
  bootstrap over test sentences, the pooled draws' metric recomputed on each resample; p
  two-sided from the bootstrap's se with a normal reference (as the study's calibration tests);
- faithfulness (the claim methods of :func:`toolkit.study.decide.claim_methods`, per explained
  sentence): d_i = f(selection, x_i) - mean_j f(draw j, x_i) over the sentences every cell
  explained; the exact sign-flip test up to :data:`toolkit.decisions.MAX_EXACT_PAIRS` pairs, else
  a paired t test, two-sided.

These comparisons are exploratory (two-sided, Benjamini-Hochberg over the table, labelled so): the
seed claim is about the pruned model against the unpruned one, which the gated primary family
of :func:`toolkit.study.summary` tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics.calibration import report_metrics
from ..decisions import MAX_EXACT_PAIRS, collapse_reasons, gated_family, sign_flip_test
from ..metrics.registry import get_metric, metric_names
from ..decisions.stats import paired_bootstrap
from .._core.validation import InputError, check_float
from .decide import claim_methods, is_control, prediction_spread, se_from_interval
from .table import record_frame

__all__ = ["CALIBRATION", "random_control"]

#: The prediction metrics the control compares (accuracy and the calibration claims).
CALIBRATION = ("accuracy", "ece", "smooth_ece", "brier")


def _pooled(fn):
    """fn over a stack of cells: probs (n, J, C) -> the mean over the J cells of fn(probs[:, j], labels)."""
    def metric(stack: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean([fn(stack[:, j], labels) for j in range(stack.shape[1])]))
    return metric


def _collapsed(rec: dict) -> bool:
    frame = record_frame(rec)
    n_classes = len(rec["label_names"])
    return bool(collapse_reasons(*prediction_spread(frame["pred"].to_numpy(), frame["label"].to_numpy(), n_classes),
                                 n_classes))


def _faithfulness_rows(sel: dict, draws: Sequence[dict]) -> list[dict]:
    own = pd.DataFrame(sel.get("faithfulness", []))
    others = [pd.DataFrame(d.get("faithfulness", [])) for d in draws]
    if own.empty or any(o.empty for o in others):
        return []
    rows = []
    metrics = [m for m in metric_names("faithfulness") if m in own and get_metric(m).higher_is_better is not None]
    for claim in claim_methods(own["method"].unique()):
        for metric in metrics:
            # room (p - p(0)) belongs to the model and the sentence, not the ranking: read it off the raw method
            method = claim.removesuffix("_minus_permuted") if metric == "room" else claim
            a = own[own.method == method].set_index("example")[metric]
            b = pd.concat([o[o.method == method].set_index("example")[metric] for o in others], axis=1)
            both = pd.concat([a.rename("sel"), b.mean(axis=1, skipna=False).rename("rand")], axis=1).dropna()
            n = len(both)
            if n < 2:
                continue
            d = (both["sel"] - both["rand"]).to_numpy(dtype=float)
            est, se = float(d.mean()), float(np.std(d, ddof=1) / np.sqrt(n))
            q = float(stats.t.ppf(0.975, n - 1))
            if n <= MAX_EXACT_PAIRS:
                test, p = "sign_flip", float(sign_flip_test(d, "two-sided").p)
            else:
                test = "t"
                p = float(stats.ttest_1samp(d, 0.0).pvalue) if se > 0 else np.nan
            rows.append(dict(metric=f"{metric}:{method}", n=n, selection_value=float(both["sel"].mean()),
                             random_value=float(both["rand"].mean()), difference=est, ci_low=est - q * se,
                             ci_high=est + q * se, test=test, p=p))
    return rows


def random_control(records: Sequence[dict], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                   n_bins: int = 15, metrics: Sequence[str] = CALIBRATION) -> pd.DataFrame:
    """One row per (selection cell, metric): the selection against the pooled random draws at its k.

    Args:
        records: a study's cell records (``toolkit.study.load_results``): the unpruned cell, the
            importance selections and the random-layer draws (``random``, ``random#2``, ...).
            A selection cell with no draw at its k (same model, dataset, shots) gets no rows.
        n_boot, seed: the paired bootstrap of the prediction metrics (one seed for every cell).
        alpha: the BH level of the table's exploratory family.
        n_bins: equal-width bins of ECE (the study's default).
        metrics: the prediction metrics compared (registry names; default :data:`CALIBRATION`).

    Returns:
        DataFrame: model, dataset, shots, selection, k, layers, draws (how many), draws_collapsed
        (how many draws predict one class or at chance, :mod:`toolkit.decisions.collapse`), metric,
        n, selection_value, random_value (the mean over the draws), difference (selection - random),
        ci_low, ci_high (95%), test (``normal``: bootstrap se; ``sign_flip``; ``t``), p (two-sided),
        alternative, then :func:`toolkit.decisions.gated_family`'s columns: family ('exploratory'),
        p_min, threshold, refused (a test that cannot reject at its n), reason, m, p_adj (BH over
        the table), rejected, method.
    """
    alpha = check_float(alpha, "alpha", 0.0, 0.5)
    fns = report_metrics(n_bins)
    missing = [m for m in metrics if m not in fns]
    if missing:
        raise InputError(f"metrics {missing} are not registered calibration metrics; expected some of {list(fns)}")
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"], r.get("shots", 0)), []).append(r)
    for (model, dataset, shots), recs in groups.items():
        for sel in recs:
            if sel["k"] == 0 or is_control(sel["selection"]):
                continue
            draws = [r for r in recs if r["k"] == sel["k"] and is_control(r["selection"])]
            if not draws:
                continue
            for d in draws:
                if list(d["ids"]) != list(sel["ids"]):
                    raise InputError(f"{model} {dataset}: the draw {d['selection']!r} at k={d['k']} scored other test "
                                     f"sentences than {sel['selection']!r}; expected the same ids in the same order")
            base = dict(model=model, dataset=dataset, shots=shots, selection=sel["selection"], k=sel["k"],
                        layers=" ".join(map(str, sel["layers"])), draws=len(draws),
                        draws_collapsed=sum(_collapsed(d) for d in draws))
            labels = np.asarray(sel["labels"], dtype=int)
            own = np.asarray(sel["probs"], dtype=float)[:, None, :]
            stack = np.stack([np.asarray(d["probs"], dtype=float) for d in draws], axis=1)
            for name in metrics:
                fn = _pooled(fns[name])
                iv = paired_bootstrap(fn, (stack, labels), (own, labels), n_boot=n_boot, seed=seed)
                se = se_from_interval(iv.low, iv.high)
                p = float(2 * stats.norm.sf(abs(iv.estimate) / se)) if se > 0 else np.nan
                rows.append(base | dict(metric=name, n=len(labels), selection_value=fn(own, labels),
                                        random_value=fn(stack, labels), difference=iv.estimate, ci_low=iv.low,
                                        ci_high=iv.high, test="normal", p=p))
            rows += [base | row for row in _faithfulness_rows(sel, draws)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["alternative"] = "two-sided"
    frame["primary_claim"] = frame["gate"] = False  # every comparison is exploratory: BH, refusals counted out
    return gated_family(frame, alpha=alpha, exploratory="bh").drop(columns=["primary_claim", "gate"])
