"""Exercises of notebook 03 (faithfulness): k for a fraction, rankings, comprehensiveness, AOPC, NAOPC.

The toolkit's erasure metrics take a scorer (word sequences -> class probabilities). To compare a
student's array-level function with them, the references below run the toolkit's own
``comprehensiveness`` / ``aopc`` with a lookup scorer: each erased variant gets the probabilities
the case prescribes, so the toolkit's y^ rule, k rule and averaging produce the expected value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics.faithfulness import FRACTIONS, aopc, comprehensiveness, k_for_fraction, naopc_from_bounds, ranking
from .checking import Case, Exercise, exact_int, exact_ints, scalar, scalar_or_array

__all__ = [
    "AOPC",
    "COMPREHENSIVENESS",
    "EXERCISES",
    "K_FOR_FRACTION",
    "N_GRID",
    "NAOPC",
    "RANKING",
]


def _lookup_scorer(table: dict[tuple[str, ...], np.ndarray], default: np.ndarray) -> Any:
    def scorer(variants: Sequence[tuple[str, ...]]) -> np.ndarray:
        return np.stack([table.get(tuple(v), default) for v in variants])

    return scorer


# ----------------------------------------------------------------------------- k_for_fraction


def _k_cases() -> list[Case]:
    return [
        Case("typical: 10% of 20 words", (0.1, 20)),
        Case("a fraction that covers less than one word still erases one", (0.01, 30)),
        Case("round up: 50% of 7 words", (0.5, 7)),
        Case("round up, not to the nearest: 20% of 12 words (2.4) is 3", (0.2, 12)),
        Case("float noise: 0.14 * 50 = 7.000000000000001 is 7 words", (0.14, 50)),
        Case("float noise: 0.1 * 30 = 3.0000000000000004 is 3 words", (0.1, 30)),
        Case("the whole text", (1.0, 5)),
        Case("a one-word text", (0.2, 1)),
    ]


K_FOR_FRACTION = Exercise(
    name="k_for_fraction",
    notebook="03_faithfulness",
    title="How many top-ranked words a fraction of a text stands for",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def k_for_fraction(fraction, n_words):
    """Number of top-ranked words that `fraction` of an n-word text stands for.

        k = max(1, ceil(fraction * n_words)),  with fraction * n_words rounded to 9 decimals first

    At least one word; rounding first keeps float noise (0.14 * 50 = 7.000000000000001) from
    adding a word. As toolkit.metrics.faithfulness.k_for_fraction.

    Args:
        fraction: in (0, 1], e.g. 0.1 for 10% of the words.
        n_words: number of words, >= 1.

    Returns:
        k, a Python int.
    """''',
    hint=(
        'Round *up* (ceil), not down or to the nearest; floating point makes 0.1 * 30 a hair above 3, so round '
        'the product to a few decimals first; at least 1. `math.ceil` returns an int, `np.ceil` a float.'
    ),
    cases=_k_cases,
    reference=k_for_fraction,
    compare=exact_int(),
    compared_with="toolkit.metrics.faithfulness.k_for_fraction",
    tolerance="exact (an integer)",
)


# ----------------------------------------------------------------------------- ranking


def _ranking_cases() -> list[Case]:
    return [
        Case("distinct scores", (np.array([0.1, 0.7, -0.2, 0.4]),)),
        Case("ties: the earlier word first", (np.array([0.3, 0.9, 0.3, 0.9, 0.1]),)),
        Case("every score equal: the text order", (np.zeros(5),)),
        Case("signed scores: a large negative score is not important", (np.array([-2.0, 0.5, 1.0, -0.1]),)),
        Case("one word", (np.array([0.42]),)),
    ]


RANKING = Exercise(
    name="ranking",
    notebook="03_faithfulness",
    title="Rank words by attribution, ties broken by position",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def ranking(attribution):
    """Word indices by descending attribution score, ties broken by position (earlier first).

    The order in which ERASER erases words: the first k entries are the top-k rationale.
    As toolkit.metrics.faithfulness.ranking (a stable sort of -attribution).

    Args:
        attribution: float array (n_words,), higher = more important (signed: use the value, not |value|).

    Returns:
        An int array (n_words,) of word indices.
    """''',
    hint=(
        'A *stable* sort of the negated scores keeps tied words in text order; reversing an ascending argsort '
        'puts ties in reverse order. Use the signed scores, not their absolute values.'
    ),
    cases=_ranking_cases,
    reference=ranking,
    compare=exact_ints("an int array of word indices"),
    compared_with="toolkit.metrics.faithfulness.ranking",
    tolerance="exact (integers)",
)


# ----------------------------------------------------------------------------- comprehensiveness


def _comp_reference(p_full: Any, p_erased: Any) -> np.ndarray | float:
    """The toolkit's comprehensiveness, one example per (p_full, p_erased) pair.

    Each pair becomes a two-word example whose scorer says p(y^) = p_full on the full text and
    p_erased without its top word (the other class gets the rest; y^ = class 0, as p_full >= 0.5).
    """
    full, erased = np.broadcast_arrays(np.asarray(p_full, dtype=float), np.asarray(p_erased, dtype=float))
    table, words = {}, []
    for i, (pf, pe) in enumerate(zip(full.ravel(), erased.ravel())):
        pair = (f"top{i}", f"rest{i}")  # top-ranked word first; k = 1 of 2 words at fraction 0.5
        words.append(pair)
        table[pair] = np.array([pf, 1.0 - pf])
        table[pair[1:]] = np.array([pe, 1.0 - pe])
    scorer = _lookup_scorer(table, default=np.array([0.5, 0.5]))
    out = comprehensiveness(scorer, words, [np.array([1.0, 0.0])] * len(words), fractions=(0.5,))
    values = out["comprehensiveness@0.5"].to_numpy().reshape(full.shape)
    return float(values) if values.ndim == 0 else values


def _comp_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 6)
    return [
        Case("one example (floats)", (0.9, 0.4)),
        Case("6 examples (arrays)", (p, p * rng.uniform(0.2, 1.0, 6))),
        Case("erasing raises p(y^): comprehensiveness is negative", (np.array([0.6, 0.7]), np.array([0.9, 0.7]))),
        Case("one example, its curve over 5 erasures (a float and an array)",
             (0.8, np.array([0.75, 0.6, 0.5, 0.3, 0.1]))),
    ]


COMPREHENSIVENESS = Exercise(
    name="comprehensiveness",
    notebook="03_faithfulness",
    title="ERASER comprehensiveness: the drop in p(y^) when the rationale is erased",
    difficulty=1,
    importance=3,
    minutes=3,
    signature='''def comprehensiveness(p_full, p_erased):
    """ERASER comprehensiveness: how much erasing the top-k words lowers the predicted label's probability.

        comp = p(y^ | x) - p(y^ | x without its top-k words)

    y^ is the label predicted on the full input; both arguments are probabilities of that same
    label. DeYoung et al. 2020, "ERASER", https://arxiv.org/abs/1911.03429 . Elementwise: floats
    or numpy arrays (numpy broadcasting), as toolkit.metrics.faithfulness.comprehensiveness computes it.

    Args:
        p_full: p(y^ | x), a float or an array.
        p_erased: p(y^ | x without r_k), a float or an array.

    Returns:
        A float for floats, else an array.
    """''',
    hint=(
        "Before minus after: a faithful rationale makes p(y^) FALL when erased, so comprehensiveness is "
        "positive; it is negative when erasing raised p(y^). Convert with `np.asarray` so arrays work too."
    ),
    cases=_comp_cases,
    reference=_comp_reference,
    compare=scalar_or_array(atol=1e-12),
    compared_with="toolkit.metrics.faithfulness.comprehensiveness (with a scorer returning these probabilities)",
    tolerance="abs tolerance 1e-12 (one float64 subtraction)",
)


# ----------------------------------------------------------------------------- AOPC

N_GRID = 100  # words: the fractions (1, 5, 10, 20, 50)% erase 1, 5, 10, 20, 50 words


def _aopc_reference(curve: Any) -> float:
    """The toolkit's AOPC of a 100-word example whose comprehensiveness at the 5 fractions is `curve`."""
    curve = np.asarray(curve, dtype=float)
    words = tuple(f"w{i}" for i in range(N_GRID))
    p_full = np.array([0.8, 0.2])
    table = {words: p_full}
    for value, fraction in zip(curve, FRACTIONS):  # the text without its top-k words (word i is ranked i-th)
        k = k_for_fraction(fraction, N_GRID)
        table[words[k:]] = np.array([0.8 - value, 0.2 + value])
    scorer = _lookup_scorer(table, default=p_full)  # sufficiency's variants: not used here
    out = aopc(scorer, [words], [np.arange(N_GRID, 0, -1, dtype=float)])
    return float(out["aopc_comprehensiveness"].iloc[0])


AOPC = Exercise(
    name="aopc",
    notebook="03_faithfulness",
    title="AOPC: the mean comprehensiveness over ERASER's five fractions",
    difficulty=1,
    importance=3,
    minutes=3,
    signature='''def aopc(curve):
    """Area over the perturbation curve (AOPC) of one example, as ERASER's released scorer computes it.

        AOPC = (1/|F|) sum_{f in F} comp_{k(f)},   F = {1, 5, 10, 20, 50}%

    `curve` holds comp_{k(f)} at the five fractions. ERASER's paper prints 1/(|F| + 1); its
    released scorer (rationale_benchmark/metrics.py) and toolkit.metrics.faithfulness.aopc average over the
    |F| fractions. DeYoung et al. 2020, https://arxiv.org/abs/1911.03429 .

    Args:
        curve: a list or array of 5 floats (comprehensiveness at 1, 5, 10, 20, 50%).

    Returns:
        A Python float.
    """''',
    hint=(
        "The plain mean of the 5 values: divide by |F| = 5, not by |F| + 1 (there is no 0% point), and no "
        "trapezoid over the fraction axis. Return `float(...)`."
    ),
    cases=lambda: [
        Case("typical: a rising curve", ([0.02, 0.08, 0.15, 0.3, 0.45],)),
        Case("negative values: erasing helped the prediction", ([-0.05, -0.02, 0.01, 0.1, 0.2],)),
        Case("a flat curve", (np.full(5, 0.25),)),
        Case("erasing changes nothing: 0", (np.zeros(5),)),
        Case("as a numpy array", (np.array([0.3, 0.31, 0.5, 0.52, 0.6]),)),
    ],
    reference=_aopc_reference,
    compare=scalar(atol=1e-12),
    compared_with="toolkit.metrics.faithfulness.aopc (with a scorer realising this curve on a 100-word example)",
    tolerance="abs tolerance 1e-12 (float64 differences of probabilities)",
)


# ----------------------------------------------------------------------------- NAOPC


def _naopc_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    lo = rng.uniform(-0.1, 0.2, 5)
    hi = lo + rng.uniform(0.1, 0.5, 5)
    a = lo + rng.uniform(0, 1, 5) * (hi - lo)
    return [
        Case("one example (floats)", (0.3, 0.1, 0.5)),
        Case("typical: 5 examples", (a, lo, hi)),
        Case("AOPC at its bounds: 0 and 1", (np.array([0.1, 0.4]), np.array([0.1, 0.1]), np.array([0.4, 0.4]))),
        Case("negative AOPCs (sufficiency can be negative)", (np.array([-0.05, -0.2]), np.array([-0.3, -0.3]),
                                                              np.array([0.0, -0.1]))),
        Case("flat bounds (upper - lower <= 1e-12): NaN, no ordering is better", (
            np.array([0.3, 0.25 + 5e-14, 0.5]), np.array([0.3, 0.25, 0.1]), np.array([0.3, 0.25 + 1e-13, 0.9]))),
    ]


NAOPC = Exercise(
    name="naopc",
    notebook="03_faithfulness",
    title="Normalised AOPC: AOPC min-max scaled between its bounds over orderings",
    difficulty=2,
    importance=3,
    minutes=5,
    signature='''def naopc(aopc, lower, upper):
    """Normalised AOPC (Edin et al. 2025, https://arxiv.org/abs/2408.08137), per example.

        NAOPC = (AOPC - lower) / (upper - lower),   NaN where upper - lower <= 1e-12

    lower / upper are the AOPCs of the least / most faithful orderings of the same input, so
    NAOPC is comparable across inputs and models (pruned vs unpruned). Flat bounds: no ordering
    beats another, NaN rather than a division by ~0. As toolkit.metrics.faithfulness.naopc_from_bounds.

    Args:
        aopc, lower, upper: floats, or float arrays (n,) (one value per example).

    Returns:
        A float for floats, else a float array (n,).
    """''',
    hint=(
        'Subtract the lower bound and divide by the span upper - lower; where the span is <= 1e-12 the answer '
        'is NaN (`np.where`; do not divide by the tiny span there).'
    ),
    cases=_naopc_cases,
    reference=naopc_from_bounds,
    compare=scalar_or_array(atol=1e-12, rtol=1e-9),
    compared_with="toolkit.metrics.faithfulness.naopc_from_bounds (what toolkit.metrics.faithfulness.naopc uses)",
    tolerance="abs 1e-12 + rel 1e-9 (float64 division)",
)

EXERCISES = (K_FOR_FRACTION, RANKING, COMPREHENSIVENESS, AOPC, NAOPC)
