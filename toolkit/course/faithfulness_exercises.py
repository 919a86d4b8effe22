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

from ..faithfulness import aopc, comprehensiveness, k_for_fraction, naopc_from_bounds, ranking
from .checking import Case, Exercise, exact_int, exact_ints, floats, scalar


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
    adding a word. As toolkit.faithfulness.k_for_fraction.

    Args:
        fraction: in (0, 1], e.g. 0.1 for 10% of the words.
        n_words: number of words, >= 1.

    Returns:
        k, a Python int.
    """''',
    hint=(
        'Round *up* (ceil), not down or to the nearest; `round(fraction * n_words, 9)` before that; at least '
        '1. `math.ceil` returns an int, `np.ceil` a float.'
    ),
    cases=_k_cases,
    reference=k_for_fraction,
    compare=exact_int(),
    compared_with="toolkit.faithfulness.k_for_fraction",
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
    As toolkit.faithfulness.ranking (a stable sort of -attribution).

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
    compared_with="toolkit.faithfulness.ranking",
    tolerance="exact (integers)",
)


# ----------------------------------------------------------------------------- comprehensiveness


def _comp_reference(p_full: Any, p_erased: Any) -> np.ndarray:
    p_full, p_erased = np.asarray(p_full, dtype=float), np.asarray(p_erased, dtype=float)
    table, words = {}, []
    for i in range(p_full.shape[0]):
        pair = (f"top{i}", f"rest{i}")  # top-ranked word first; k = 1 of 2 words at fraction 0.5
        words.append(pair)
        table[pair] = p_full[i]
        table[pair[1:]] = p_erased[i]  # the text without its top-1 word
    scorer = _lookup_scorer(table, default=np.full(p_full.shape[1], 1.0 / p_full.shape[1]))
    out = comprehensiveness(scorer, words, [np.array([1.0, 0.0])] * len(words), fractions=(0.5,))
    return out["comprehensiveness@0.5"].to_numpy()


def _comp_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(2), size=4)
    q = rng.dirichlet(np.ones(2), size=4)
    return [
        Case("typical: 4 examples, 2 classes", (p, q)),
        Case("erasing flips the prediction: track the full input's class y^", (
            np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), np.array([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1]]))),
        Case("a tie in p_full: y^ is the lower class index (as np.argmax)", (
            np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]]), np.array([[0.1, 0.6, 0.3], [0.3, 0.1, 0.6]]))),
        Case("erasing raises p(y^): comprehensiveness is negative", (np.array([[0.6, 0.4]]), np.array([[0.9, 0.1]]))),
    ]


COMPREHENSIVENESS = Exercise(
    name="comprehensiveness",
    notebook="03_faithfulness",
    title="ERASER comprehensiveness from the probabilities before and after erasing the rationale",
    difficulty=1,
    importance=3,
    minutes=10,
    signature='''def comprehensiveness(p_full, p_erased):
    """ERASER comprehensiveness of each example: how much erasing the rationale lowers p(y^).

        comp_i = p_full[i, y^_i] - p_erased[i, y^_i],   y^_i = argmax_c p_full[i, c]

    y^ is the class predicted on the FULL input (ties: the lower class index, as np.argmax).
    DeYoung et al. 2020, "ERASER", https://arxiv.org/abs/1911.03429 .

    Args:
        p_full: float array (n, C), class probabilities on the full inputs.
        p_erased: float array (n, C), class probabilities with the top-k words erased.

    Returns:
        A float array (n,).
    """''',
    hint=(
        'Find y^ on the FULL input (the argmax of each row of `p_full`), then read that same class in both '
        "arrays. The erased input's own argmax does not matter."
    ),
    cases=_comp_cases,
    reference=_comp_reference,
    compare=floats(atol=1e-12, what="a float array"),
    compared_with="toolkit.faithfulness.comprehensiveness (with a scorer returning these probabilities)",
    tolerance="abs tolerance 1e-12 (one float64 subtraction)",
)


# ----------------------------------------------------------------------------- AOPC


def _aopc_reference(curve: Any) -> float:
    curve = np.asarray(curve, dtype=float)
    n = curve.size - 1
    words = tuple(f"w{i}" for i in range(n))
    p_full = np.array([0.8, 0.2])
    table = {words: p_full}
    for k in range(1, n + 1):  # the text without its top-k words (word i is ranked i-th)
        table[words[k:]] = np.array([0.8 - curve[k], 0.2 + curve[k]])
    scorer = _lookup_scorer(table, default=p_full)  # sufficiency's variants: not used here
    out = aopc(scorer, [words], [np.arange(n, 0, -1, dtype=float)])
    return float(out["aopc_comprehensiveness"].iloc[0])


def _curve(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.concatenate([[0.0], np.cumsum(rng.uniform(-0.02, 0.08, n))])
    return np.clip(c, -0.2, 0.8)


AOPC_CASES = (
    ("100 words: the grid erases 1, 5, 10, 20 and 50 words", 100),
    ("10 words: 1%, 5% and 10% all erase one word (it counts three times)", 10),
    ("30 words: 10% is 3 words, not 4 (float noise)", 30),
    ("3 words", 3),
    ("1 word", 1),
)

AOPC = Exercise(
    name="aopc",
    notebook="03_faithfulness",
    title="AOPC: the mean comprehensiveness over ERASER's fractions",
    difficulty=2,
    importance=3,
    minutes=15,
    signature='''def aopc(curve):
    """Area over the perturbation curve (AOPC) of one example, as ERASER's scorer computes it.

        AOPC = (1/|B|) sum_{f in B} curve[k(f)],   B = (0.01, 0.05, 0.10, 0.20, 0.50)

    with k(f) = max(1, ceil(f * n)) (your k_for_fraction) and n = len(curve) - 1. The mean is over
    the 5 fractions: when several fractions give the same k, that k counts several times.
    DeYoung et al. 2020 (ERASER's released rationale_benchmark/metrics.py averages over the
    |B| fractions).

    Args:
        curve: float array (n + 1,), curve[k] = comprehensiveness after erasing the top-k
            words (curve[0] = 0).

    Returns:
        A Python float.
    """''',
    hint=(
        'For each of the 5 fractions get k from your `k_for_fraction` and read `curve[k]`; average the 5 '
        'values. Short texts repeat a k: keep the repeats. There is no 0% point.'
    ),
    cases=lambda: [Case(name, (_curve(n, seed),)) for seed, (name, n) in enumerate(AOPC_CASES)],
    reference=_aopc_reference,
    compare=scalar(atol=1e-12),
    compared_with="toolkit.faithfulness.aopc (with a scorer realising this curve)",
    tolerance="abs tolerance 1e-12 (float64 differences of probabilities)",
)


# ----------------------------------------------------------------------------- NAOPC


def _naopc_cases() -> list[Case]:
    rng = np.random.default_rng(0)
    lo = rng.uniform(-0.1, 0.2, 5)
    hi = lo + rng.uniform(0.1, 0.5, 5)
    a = lo + rng.uniform(0, 1, 5) * (hi - lo)
    return [
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
    difficulty=1,
    importance=2,
    minutes=10,
    signature='''def naopc(aopc, lower, upper):
    """Normalised AOPC (Edin et al. 2025, https://arxiv.org/abs/2408.08137), per example.

        NAOPC = (AOPC - lower) / (upper - lower),   NaN where upper - lower <= 1e-12

    lower / upper are the AOPCs of the least / most faithful orderings of the same input, so
    NAOPC is comparable across inputs and models (pruned vs unpruned). Flat bounds: no ordering
    beats another, NaN rather than a division by ~0. As toolkit.faithfulness.naopc_from_bounds.

    Args:
        aopc, lower, upper: float arrays (n,).

    Returns:
        A float array (n,).
    """''',
    hint=(
        'Subtract the lower bound and divide by the span upper - lower; where the span is <= 1e-12 the answer '
        'is NaN (`np.where`; do not divide by the tiny span there).'
    ),
    cases=_naopc_cases,
    reference=naopc_from_bounds,
    compare=floats(atol=1e-12, rtol=1e-9, what="a float array"),
    compared_with="toolkit.faithfulness.naopc_from_bounds (what toolkit.faithfulness.naopc uses)",
    tolerance="abs 1e-12 + rel 1e-9 (float64 division)",
)

EXERCISES = (K_FOR_FRACTION, RANKING, COMPREHENSIVENESS, AOPC, NAOPC)
