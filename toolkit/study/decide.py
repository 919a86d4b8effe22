"""How a pruned cell is decided: the accuracy gate and the one-sided "degrades" tests.

One home for the numbers every verdict of a study rests on, read by the study's tidy table
(:func:`toolkit.study.tidy_table`), its summary and the audit table (:func:`toolkit.study.audit_table`):

- the gate (:func:`accuracy_gate`): does the pruned model keep accuracy (paired non-inferiority
  at the study's margin, from the discordant counts) and is it a working model (not collapsed)?
- the tests (:func:`degrade_test`): per metric, the paired difference d = pruned - unpruned and a
  one-sided p in the direction "degrades" (the registry's ``higher_is_better``), by the test the
  registry names for the metric: ``paired_bootstrap`` (calibration: se from the paired bootstrap's
  95% interval, normal reference) or ``paired_t`` (faithfulness, per-example differences: the
  exact sign-flip test up to :data:`toolkit.decisions.MAX_EXACT_PAIRS` pairs, else a paired t).

Which tests are primary (the seed claim: calibration and faithfulness *degrade* where accuracy
is kept) and how each family is adjusted is decided later from these columns alone, by
:func:`toolkit.decisions.gated_family`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..decisions import MAX_EXACT_PAIRS, collapse_reasons, noninferiority_from_counts, sign_flip_test
from ..metrics.faithfulness import minus_permuted_name
from ..pruning.importance import importance_metric
from ..metrics.registry import get_metric, metric_names
from .._core.validation import InputError

__all__ = ["GATE_COLUMNS", "TEST_COLUMNS", "accuracy_gate", "cell_verdict", "claim_methods", "degrade_test",
           "degrades_alternative", "is_control", "paired_values", "prediction_spread", "se_from_interval"]

#: Columns :func:`accuracy_gate` fills (on a pruned cell's accuracy row of the study table).
GATE_COLUMNS = ("gains", "losses", "ni_low", "noninferior", "majority_share", "balanced_accuracy", "collapsed",
                "collapse_reasons")
#: Columns :func:`degrade_test` fills (on a pruned cell's tested metric rows).
TEST_COLUMNS = ("test", "alternative", "p")
_Z975 = float(stats.norm.ppf(0.975))


def accuracy_gate(correct_ref: np.ndarray, correct: np.ndarray, pred: np.ndarray, labels: np.ndarray,
                  n_classes: int, label_mass: np.ndarray | None, *, margin: float, alpha: float) -> dict:
    """The gate of one pruned cell: non-inferiority of accuracy and the collapse rules.

    Returns:
        dict: n, gains, losses, d_accuracy (= (gains - losses) / n), ni_low (one-sided (1 - alpha)
        lower bound of the change, Tango's score bound), noninferior (ni_low > -margin),
        majority_share, balanced_accuracy, mean_label_mass, collapsed, collapse_reasons (comma-separated).
    """
    ca, cb = np.asarray(correct_ref, dtype=bool), np.asarray(correct, dtype=bool)
    pred, labels = np.asarray(pred, dtype=int), np.asarray(labels, dtype=int)
    n = int(ca.size)
    gains, losses = int(np.sum(~ca & cb)), int(np.sum(ca & ~cb))
    ni = noninferiority_from_counts(gains, losses, n, margin, alpha)
    share, ba = prediction_spread(pred, labels, n_classes)
    mass = float(np.mean(label_mass)) if label_mass is not None else float("nan")
    reasons = collapse_reasons(share, ba, n_classes, mass)
    return dict(n=n, gains=gains, losses=losses, d_accuracy=ni.estimate, ni_low=ni.low,
                noninferior=bool(ni.noninferior), majority_share=share, balanced_accuracy=ba, mean_label_mass=mass,
                collapsed=bool(reasons), collapse_reasons=", ".join(reasons))


def prediction_spread(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    """The collapse rules' inputs: the share of the most predicted class and the balanced accuracy."""
    pred, labels = np.asarray(pred, dtype=int), np.asarray(labels, dtype=int)
    share = float(np.bincount(pred, minlength=n_classes).max() / pred.size)
    ba = float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))
    return share, ba


def degrades_alternative(metric: str) -> str:
    """The one-sided alternative on d = pruned - unpruned that says "``metric`` degrades".

    ``metric`` is a registry name or a study-table name ``<faithfulness metric>:<method>``.
    """
    better = get_metric(metric.split(":", 1)[0]).higher_is_better
    if better is None:
        raise InputError(f"metric {metric!r} has no better direction; a directional claim needs one")
    return "less" if better else "greater"


def degrade_test(metric: str, *, estimate: float | None = None, low: float | None = None,
                 high: float | None = None, d: np.ndarray | None = None) -> dict:
    """One-sided test that ``metric`` degrades, by the test its registry entry names.

    ``paired_bootstrap`` (give ``estimate`` and its paired-bootstrap 95% interval ``low``, ``high``):
    se = (high - low) / (2 z_0.975), z = estimate / se, p from the standard normal (test
    ``normal``); a zero-width interval gives p = NaN (not run). ``paired_t`` (give the per-example
    differences ``d``): the exact sign-flip test for n <= MAX_EXACT_PAIRS (test ``sign_flip``),
    else a one-sample t test (test ``t``); n < 2 or constant d > MAX_EXACT_PAIRS gives p = NaN.

    Returns:
        dict: test, alternative ('less' / 'greater'), p, n, estimate, ci_low, ci_high (two-sided 95%:
        the bootstrap interval, or the t interval of the mean difference).
    """
    entry = get_metric(metric.split(":", 1)[0])
    alternative = degrades_alternative(metric)
    if entry.test == "paired_bootstrap":
        if estimate is None or low is None or high is None:
            raise InputError(f"degrade_test({metric!r}): a paired_bootstrap metric needs estimate, low and high")
        se = se_from_interval(low, high)
        z = float(estimate) / se if se > 0 else np.nan
        p = float(stats.norm.sf(z) if alternative == "greater" else stats.norm.cdf(z)) if se > 0 else np.nan
        return dict(test="normal", alternative=alternative, p=p, estimate=float(estimate), ci_low=float(low),
                    ci_high=float(high))
    if entry.test != "paired_t":
        raise InputError(f"metric {metric!r} has test={entry.test!r}; degrade_test runs paired_bootstrap or paired_t")
    if d is None:
        raise InputError(f"degrade_test({metric!r}): a paired_t metric needs the per-example differences d")
    d = np.asarray(d, dtype=np.float64)
    n = int(d.size)
    est = float(d.mean()) if n else np.nan
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    q = float(stats.t.ppf(0.975, n - 1)) if n > 1 else np.nan
    if 1 <= n <= MAX_EXACT_PAIRS:
        test, p = "sign_flip", float(sign_flip_test(d, alternative).p)
    else:
        test = "t"
        p = float(stats.ttest_1samp(d, 0.0, alternative=alternative).pvalue) if n > 1 and se > 0 else np.nan
    return dict(test=test, alternative=alternative, p=p, n=n, estimate=est, ci_low=est - q * se, ci_high=est + q * se)


def se_from_interval(low: float, high: float) -> float:
    """The standard error a normal 95% interval implies: (high - low) / (2 z_0.975)."""
    return (float(high) - float(low)) / (2 * _Z975)


def paired_values(ref: pd.DataFrame, cur: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The per-example values of ``metric`` in both cells, on the examples both measured (columns a, b)."""
    return pd.concat([ref.set_index("example")[metric], cur.set_index("example")[metric]], axis=1,
                     keys=["a", "b"]).dropna()


def cell_verdict(collapse: str, keeps_accuracy: bool, degraded: list[str], margin: float) -> str:
    """A pruned cell's verdict in words, from its gate and its rejected primary claims.

    'collapsed (<reasons>)' before anything else; then 'not shown to keep accuracy (margin m)';
    then 'keeps accuracy; degrades: <metrics>' or 'keeps accuracy; no degradation shown'.
    """
    if collapse:
        return f"collapsed ({collapse})"
    if not keeps_accuracy:
        return f"not shown to keep accuracy (margin {margin:g})"
    return f"keeps accuracy; degrades: {', '.join(degraded)}" if degraded else "keeps accuracy; no degradation shown"


def claim_methods(methods) -> list[str]:
    """The attribution methods whose faithfulness rows are claims, from the methods a table holds.

    The faithfulness claim is a method's score *over its permuted baseline*
    (``<method>_minus_permuted``, issue 28): a pruned model that ignores its input lowers the raw
    soft scores of any ranking, and the permuted baseline (which masks as much as the method) moves
    with it. So where a method has that row, it is the claim and the raw method and
    ``permuted(<method>)`` are exploratory; a method without permuted baselines is its own claim.
    The random ranking is never a claim.

    >>> claim_methods(["input_x_gradient", "permuted(input_x_gradient)", "input_x_gradient_minus_permuted",
    ...                "random", "saliency"])
    ['input_x_gradient_minus_permuted', 'saliency']
    """
    names = {str(m) for m in methods}
    out = []
    for m in sorted(names):
        if m == "random" or m.startswith("permuted(") or m.endswith("_minus_permuted"):
            continue
        out.append(minus_permuted_name(m) if minus_permuted_name(m) in names else m)
    return out


def is_control(selection: str) -> bool:
    """A control selection (seeded random layers, each draw ``random#2`` ...): never a primary claim."""
    base = str(selection).split("#", 1)[0]
    return base in metric_names("importance") and importance_metric(base).control
