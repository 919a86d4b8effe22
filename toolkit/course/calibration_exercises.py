"""Exercises of notebook 04 (calibration): ECE, Brier, NLL, temperature scaling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from ..metrics.calibration import TemperatureScaler, brier, ece, nll
from .checking import Case, Exercise, scalar

__all__ = [
    "BRIER",
    "ECE",
    "EXERCISES",
    "NLL",
    "T_RTOL",
    "TEMPERATURE",
    "confidence_probs",
]

# ----------------------------------------------------------------------------- ECE


def confidence_probs(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and labels whose top-label confidence and correctness are the given ones.

    Class 0 gets f_i, the other C - 1 classes share 1 - f_i, with C large enough that class 0 is
    the strict argmax; the label is 0 when correct, else 1.
    """
    f = np.asarray(confidence, dtype=np.float64)
    c = np.asarray(correct).astype(np.int64)
    n_classes = max(2, int(math.floor((1.0 - f.min()) / f.min())) + 2)
    rest = (1.0 - f) / (n_classes - 1)
    probs = np.column_stack([f] + [rest] * (n_classes - 1))
    return probs, np.where(c == 1, 0, 1)


def _ece_reference(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    return float(ece(*confidence_probs(confidence, correct), n_bins=n_bins))


def _ece_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    f = rng.uniform(0.5, 1.0, 300)
    y = (rng.random(300) < f**2).astype(int)
    edges = np.array([0.25, 0.5, 0.75, 1.0, 0.5, 0.3, 0.75, 0.6])
    return [
        Case("typical: 300 predictions, 15 bins", (f, y)),
        Case("a confidence of exactly 1.0 belongs in the last bin", (
            np.array([1.0, 1.0, 0.95, 0.62, 0.55, 1.0]), np.array([1, 0, 1, 1, 0, 1])), {"n_bins": 10}),
        Case("confidences on bin edges (n_bins=4): a value equal to an upper edge is in the lower bin",
             (edges, np.array([1, 0, 1, 1, 1, 0, 0, 1])), {"n_bins": 4}),
        Case("empty bins: only two bins hold predictions, of different sizes", (
            np.array([0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.62, 0.64]), np.array([1, 1, 0, 1, 1, 1, 0, 0]))),
        Case("one prediction", (np.array([0.8]), np.array([0]))),
        Case("all correct", (np.array([0.6, 0.7, 0.8, 0.9]), np.array([1, 1, 1, 1]))),
    ]


ECE = Exercise(
    name="ece",
    notebook="04_calibration",
    title="Expected calibration error with equal-width bins (Guo et al. 2017)",
    difficulty=2,
    importance=3,
    minutes=10,
    signature='''def ece(confidence, correct, n_bins=15):
    """Expected calibration error of top-label confidences (Guo et al. 2017, L1, equal-width bins).

        ECE = sum_m (|B_m| / n) * |acc(B_m) - conf(B_m)|

    Bin m (m = 1..M) holds the confidences in ((m-1)/M, m/M]: a value on an edge goes to the
    LOWER bin, and a confidence of exactly 1.0 to the last bin. acc(B_m) = mean of `correct`
    in the bin, conf(B_m) = mean confidence in it; empty bins contribute nothing.
    https://arxiv.org/abs/1706.04599 ; as toolkit.metrics.calibration.ece.

    Args:
        confidence: float array (n,), the top-label probability of each prediction, in (0, 1].
        correct: int array (n,), 1 where the prediction was right.
        n_bins: M, the number of bins.

    Returns:
        A Python float.
    """''',
    hint=(
        'Check the bin a confidence lands in: one exactly on an upper edge belongs to the lower bin, 1.0 to the '
        'last, 0.0 to the first. Each non-empty bin adds (its share of all n predictions) x |accuracy - mean '
        'confidence|: weighted by bin size.'
    ),
    cases=_ece_cases,
    reference=_ece_reference,
    compare=scalar(atol=1e-9),
    compared_with="toolkit.metrics.calibration.ece",
    tolerance="abs tolerance 1e-9 (float64 sums over at most 300 values)",
)


# ----------------------------------------------------------------------------- Brier and NLL


def _prob_cases(zero_on_label: bool) -> list[Case]:
    rng = np.random.default_rng(1)
    p3 = rng.dirichlet(np.ones(3), size=50)
    y3 = rng.integers(0, 3, 50)
    p2 = rng.dirichlet(np.ones(2), size=20)
    y2 = rng.integers(0, 2, 20)
    cases = [
        Case("typical: 50 examples, 3 classes", (p3, y3)),
        Case("binary: 20 examples", (p2, y2)),
        Case("perfect one-hot predictions: 0", (np.eye(4), np.arange(4))),
        Case("one example, 4 classes", (np.array([[0.1, 0.2, 0.3, 0.4]]), np.array([2]))),
    ]
    wrong = (np.eye(3)[[1, 2, 0]], np.arange(3))
    if zero_on_label:
        cases.append(Case("a probability of exactly 0 on the true label (floored at 1e-15)", (
            np.array([[0.0, 1.0], [0.7, 0.3], [0.5, 0.5]]), np.array([0, 0, 1]))))
    else:
        cases.append(Case("confidently wrong one-hot predictions: 2", wrong))
    return cases


BRIER = Exercise(
    name="brier",
    notebook="04_calibration",
    title="The multi-class Brier score",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def brier(probs, labels):
    """Multi-class Brier score: mean squared distance to the one-hot label, in [0, 2].

        BS = (1/n) sum_i sum_c (p_ic - 1[y_i = c])^2

    Brier 1950, Monthly Weather Review 78(1); as toolkit.metrics.calibration.brier. (Sum over ALL
    classes, mean over examples.)

    Args:
        probs: float array (n, C), rows sum to 1.
        labels: int array (n,), classes in [0, C).

    Returns:
        A Python float.
    """''',
    hint=(
        'Compare each row of probabilities with the row the label stands for: 1 in the label\'s column, 0 in '
        'every other. Square the differences for EVERY class, not only the true one; sum over classes, then '
        'average over examples. A perfect one-hot prediction scores 0, a confident wrong one 2.'
    ),
    cases=lambda: _prob_cases(zero_on_label=False),
    reference=lambda probs, labels: float(brier(probs, labels)),
    compare=scalar(atol=1e-12),
    compared_with="toolkit.metrics.calibration.brier",
    tolerance="abs tolerance 1e-12 (float64)",
)

NLL = Exercise(
    name="nll",
    notebook="04_calibration",
    title="Negative log-likelihood (cross-entropy) in nats",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def nll(probs, labels):
    """Negative log-likelihood of the true labels, natural log (nats).

        NLL = -(1/n) sum_i log max(p_{i, y_i}, 1e-15)

    The floor keeps a zero probability finite (at most 34.5 nats per example). Guo et al. 2017,
    Sec. 2; as toolkit.metrics.calibration.nll.

    Args:
        probs: float array (n, C), rows sum to 1.
        labels: int array (n,).

    Returns:
        A Python float.
    """''',
    hint=(
        'Take the probability of the TRUE label in each row (one entry per row, picked by its label), floor it '
        'at 1e-15, natural log, average, negate.'
    ),
    cases=lambda: _prob_cases(zero_on_label=True),
    reference=lambda probs, labels: float(nll(probs, labels)),
    compare=scalar(atol=1e-12, rtol=1e-12),
    compared_with="toolkit.metrics.calibration.nll",
    tolerance="abs 1e-12 + rel 1e-12 (float64)",
)


# ----------------------------------------------------------------------------- temperature scaling


def _temperature_reference(logits: Any, labels: Any) -> float:
    return TemperatureScaler().fit(logits, labels).temperature_


def _logits(n: int, n_classes: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits `scale` times too sharp: labels drawn from softmax(z), the model reports scale * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, n_classes))
    y = np.array([rng.choice(n_classes, p=p) for p in special.softmax(z, axis=1)])
    return scale * z, y


# The NLL is smooth and convex in 1/T: any optimiser run to convergence (scipy's bounded
# minimize_scalar: xatol 1e-5; L-BFGS on log T) lands within ~2e-5 of T^ in relative terms
# (observed 3e-8 for minimize_scalar with xatol 1e-7); 1e-3 leaves room. The closest wrong
# objective tried (top-label Brier) moves T by 1.2-8% (tests/course_answers.py MUTANTS).
T_RTOL = 1e-3

TEMPERATURE = Exercise(
    name="fit_temperature",
    notebook="04_calibration",
    title="Fit one temperature by minimising the NLL on held-out logits",
    difficulty=3,
    importance=2,
    minutes=10,
    signature='''def fit_temperature(logits, labels):
    """Temperature scaling (Guo et al. 2017, Sec. 4.2): the T > 0 that minimises the NLL of softmax(z / T).

        T^ = argmin_T  -(1/n) sum_i log softmax(z_i / T)_{y_i},   T in [0.01, 100]

    Fit on held-out data; dividing by T never changes the argmax, so accuracy cannot guide the
    fit. As toolkit.metrics.calibration.TemperatureScaler().fit(logits, labels).temperature_.

    Args:
        logits: float array (n, C).
        labels: int array (n,).

    Returns:
        T as a Python float.
    """''',
    hint=(
        'Write the mean NLL of softmax(logits / T) as a function of one number (log T behaves better than T), '
        'with -log softmax(v)_y = log-sum-exp(v) - v_y so that large logits do not overflow; then minimise it '
        'with a bounded one-dimensional optimiser over T in [0.01, 100], run to convergence. Accuracy does not '
        'change with T, so it cannot choose T.'
    ),
    cases=lambda: [
        Case("over-confident logits (T^ near 2.5)", _logits(400, 3, 2.5, 0)),
        Case("under-confident logits (T^ near 0.5)", _logits(400, 3, 0.5, 1)),
        Case("already calibrated (T^ near 1), binary", _logits(300, 2, 1.0, 2)),
        Case("10 classes, 60 examples", _logits(60, 10, 1.8, 3)),
    ],
    reference=_temperature_reference,
    compare=scalar(rtol=T_RTOL),
    compared_with="toolkit.metrics.calibration.TemperatureScaler",
    tolerance=f"relative tolerance {T_RTOL:g}: the optimisers' convergence (both fit the same convex objective)",
)

EXERCISES = (ECE, BRIER, NLL, TEMPERATURE)
