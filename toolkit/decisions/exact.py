"""Tests that can reject at small n, and what each test can ever reject.

- :func:`sign_flip_test`: the exact paired permutation (sign-flip) test, enumerating all 2^n sign
  vectors for n <= ``MAX_EXACT_PAIRS`` (Fisher 1935; Good 2005, *Permutation, Parametric and
  Bootstrap Tests of Hypotheses*, ch. 3).
- :func:`smallest_p`: the smallest p value a test can return at n (or with B resamples). A test
  whose smallest attainable p exceeds the threshold it will be read at cannot reject, whatever the
  data: :func:`toolkit.decisions.gated_family` refuses to run it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._core.validation import InputError, check_choice, check_int

__all__ = [
    "ALTERNATIVES",
    "MAX_EXACT_PAIRS",
    "SMALLEST_P_TESTS",
    "SignFlip",
    "sign_flip_test",
    "smallest_p",
]

ALTERNATIVES = ("two-sided", "greater", "less")
#: Up to this many pairs the sign-flip test enumerates every sign vector (2^20 ~ 1e6).
MAX_EXACT_PAIRS = 20
#: Tests :func:`smallest_p` knows: exact enumeration, resampling, and analytic references.
SMALLEST_P_TESTS = ("sign_flip", "permutation", "bootstrap", "t", "normal")


@dataclass(frozen=True)
class SignFlip:
    """An exact sign-flip test of H0: the paired differences are symmetric about 0.

    Attributes:
        statistic: sum of the differences, T = sum_i d_i.
        p: exact p value (share of the 2^n sign vectors at least as extreme as T).
        n: pairs.
        alternative: 'two-sided', 'greater' (d > 0) or 'less'.
        smallest_p: the smallest p this test can give at n (see :func:`smallest_p`).
    """

    statistic: float
    p: float
    n: int
    alternative: str
    smallest_p: float


def sign_flip_test(d: ArrayLike, alternative: str = "two-sided") -> SignFlip:
    """Exact paired permutation test on the differences d_i = pruned_i - reference_i.

    Under H0 each d_i is as likely to be -d_i. With T(s) = sum_i s_i d_i over all s in {-1, +1}^n:

        greater:   p = #{s : T(s) >= T} / 2^n
        less:      p = #{s : T(s) <= T} / 2^n
        two-sided: p = #{s : |T(s)| >= |T|} / 2^n

    (ties compared with a relative tolerance of 1e-9 of sum |d_i|, so float rounding does not
    decide them). Same numbers as ``scipy.stats.permutation_test(..., permutation_type='samples')``
    with every permutation enumerated. Smallest p: 1 / 2^n one-sided, 2 / 2^n two-sided.

    Args:
        d: paired differences, shape (n,), finite, 1 <= n <= ``MAX_EXACT_PAIRS``.
        alternative: ``'two-sided'``, ``'greater'`` or ``'less'``.

    Returns:
        :class:`SignFlip`.

    Raises:
        InputError: not 1-D, non-finite, empty, or more than ``MAX_EXACT_PAIRS`` pairs (use a
            t-test or a resampled test there; their smallest p is far below any threshold).
    """
    alternative = check_choice(alternative, "alternative", ALTERNATIVES)
    try:
        x = np.asarray(d, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("d could not be read as numbers; expected a 1-D array of paired differences") from None
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise InputError(f"d has shape {x.shape} (or non-finite values); expected a non-empty 1-D array of finite differences")
    n = x.size
    if n > MAX_EXACT_PAIRS:
        raise InputError(f"n={n} pairs; the exact sign-flip test enumerates 2^n vectors, at most n={MAX_EXACT_PAIRS}")
    t_all = np.zeros(1)
    for value in x:  # every signed sum, built by doubling: 2^n floats (8 MB at n = 20), no 2^n x n sign matrix
        t_all = np.concatenate((t_all + value, t_all - value))
    t = float(x.sum())
    tol = 1e-9 * float(np.abs(x).sum())
    if alternative == "greater":
        count = int(np.sum(t_all >= t - tol))
    elif alternative == "less":
        count = int(np.sum(t_all <= t + tol))
    else:
        count = int(np.sum(np.abs(t_all) >= abs(t) - tol))
    return SignFlip(statistic=t, p=count / 2.0 ** n, n=n, alternative=alternative,
                    smallest_p=smallest_p("sign_flip", n, alternative))


def smallest_p(test: str, n: int, alternative: str = "two-sided", n_resamples: int | None = None) -> float:
    """The smallest p value ``test`` can return with n pairs (and B resamples), whatever the data.

        sign_flip:   1 / 2^n one-sided, 2 / 2^n two-sided (exact enumeration; also the exact sign test)
        permutation: 1 / (B + 1) one-sided, 2 / (B + 1) two-sided, B random sign flips counted
                     with the observed one (Phipson & Smyth 2010, https://doi.org/10.2202/1544-6115.1585);
                     never below the exact 1 / 2^n (2 / 2^n) either
        bootstrap:   the percentile p of :func:`toolkit.decisions.adjust_tests`:
                     2 / (B + 1) two-sided, 1 / (B + 1) one-sided
        t, normal:   0 (an analytic reference; it can go as low as the data take it, n >= 2 for t)

    Args:
        test: one of ``SMALLEST_P_TESTS``.
        n: pairs, >= 1.
        alternative: ``'two-sided'``, ``'greater'`` or ``'less'``.
        n_resamples: B, required for 'permutation' and 'bootstrap'.

    Returns:
        The smallest attainable p, in (0, 1] (0 for analytic tests).
    """
    test = check_choice(test, "test", SMALLEST_P_TESTS)
    alternative = check_choice(alternative, "alternative", ALTERNATIVES)
    n = check_int(n, "n", 1)
    sides = 2.0 if alternative == "two-sided" else 1.0
    if test in ("t", "normal"):
        return 0.0
    exact = min(1.0, sides / 2.0 ** n)
    if test == "sign_flip":
        return exact
    if n_resamples is None:
        raise InputError(f"test={test!r} needs n_resamples (B); expected an int >= 1")
    b = check_int(n_resamples, "n_resamples", 1)
    resampled = min(1.0, sides / (b + 1.0))
    return max(resampled, exact) if test == "permutation" else resampled
