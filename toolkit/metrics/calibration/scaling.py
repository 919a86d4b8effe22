"""Temperature scaling (Guo et al. 2017): one T > 0 fitted by NLL on held-out logits.

Logits enter the calibration package only here; log-probabilities are valid logits (see
:func:`toolkit.models.scoring.frame_logprobs`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from ...models.scoring import probability_columns
from ..._core.validation import InputError, check_float
from .binned import ece
from .inputs import check_probs, probs_labels
from .scores import NLL_FLOOR, accuracy, brier, nll

__all__ = [
    "TemperatureScaler",
    "with_temperature",
]



def _check_logits(logits: ArrayLike, labels: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise InputError(f"logits has shape {z.shape}; expected (n >= 1, C >= 2)")
    if not np.all(np.isfinite(z)):
        i, j = np.argwhere(~np.isfinite(z))[0]
        raise InputError(
            f"logits[{i}, {j}] = {float(z[i, j])} is not finite; expected finite logits (clip log-probs first)"
        )
    if labels is None:
        return z, None
    uniform = np.full_like(z, 1.0 / z.shape[1])
    return z, check_probs(uniform, labels)[1]


class TemperatureScaler:
    """Temperature scaling: p = softmax(z / T) with one T > 0 fitted by NLL on held-out data.

    T^ = argmin_T -(1/n) sum_i log softmax(z_i / T)_{y_i}, optimised over log T by L-BFGS-B
    with the analytic gradient d NLL / d log T = (1/T) mean_i (z_{i,y_i} - sum_c p_ic z_ic).
    The objective is convex in 1/T, so the optimum is unique. Dividing by T > 0 never changes
    the argmax (Guo et al. 2017, https://arxiv.org/abs/1706.04599, Sec. 4.2).

    Log-probabilities are valid logits (softmax is shift-invariant): for a predict() DataFrame
    use ``np.log(probs)`` (clipped away from 0), or :func:`with_temperature`.

    Args:
        min_temperature: lower bound of T (separable data would drive T -> 0).
        max_temperature: upper bound of T.

    Attributes (after ``fit``):
        temperature_: the fitted T.
        nll_before_, nll_after_, ece_before_, ece_after_: on the fitting split, T = 1 vs T^.
    """

    def __init__(self, *, min_temperature: float = 1e-2, max_temperature: float = 1e2) -> None:
        if not (0 < min_temperature < max_temperature):
            raise InputError(
                f"temperature bounds ({min_temperature!r}, {max_temperature!r}) are invalid; expected 0 < min < max"
            )
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)

    @staticmethod
    def _nll_and_grad(
        log_t: NDArray[np.float64], z: NDArray[np.float64], y: NDArray[np.int64]
    ) -> tuple[float, NDArray[np.float64]]:
        t = float(np.exp(log_t[0]))
        zt = z / t
        lse = special.logsumexp(zt, axis=1)
        zy = z[np.arange(z.shape[0]), y]
        p = np.exp(zt - lse[:, None])
        value = float(np.mean(lse - zy / t))
        grad = float(np.mean(zy - (p * z).sum(axis=1))) / t
        return value, np.array([grad])

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        """Fit T on held-out ``logits`` (n, C) and ``labels`` (n,); returns self."""
        z, y = _check_logits(logits, labels)
        assert y is not None
        bounds = [(math.log(self.min_temperature), math.log(self.max_temperature))]
        res = optimize.minimize(
            self._nll_and_grad, x0=np.zeros(1), args=(z, y), jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 200},
        )
        self.temperature_ = float(np.exp(res.x[0]))
        before, after = special.softmax(z, axis=1), self.transform(z)
        self.nll_before_, self.nll_after_ = float(nll(before, y)), float(nll(after, y))
        self.ece_before_, self.ece_after_ = float(ece(before, y)), float(ece(after, y))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise InputError("this TemperatureScaler is not fitted yet; call fit(logits, labels) first")

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities softmax(logits / T), shape (n, C)."""
        self._check_fitted()
        z, _ = _check_logits(logits, None)
        return special.softmax(z / self.temperature_, axis=1)

    def report(self, logits: ArrayLike, labels: ArrayLike, *, n_bins: int = 15) -> pd.DataFrame:
        """NLL, ECE, Brier and accuracy before (T = 1) and after (T = T^) on any split.

        Returns:
            DataFrame with rows ``stage`` in ("before", "after") and columns ``stage``,
            ``temperature``, ``nll``, ``ece``, ``brier``, ``accuracy``.
        """
        z, y = _check_logits(logits, labels)
        self._check_fitted()
        rows = []
        for stage, t in (("before", 1.0), ("after", self.temperature_)):
            p = special.softmax(z / t, axis=1)
            rows.append(
                {"stage": stage, "temperature": t, "nll": nll(p, y), "ece": ece(p, y, n_bins=n_bins),
                 "brier": brier(p, y), "accuracy": accuracy(p, y)}
            )
        return pd.DataFrame(rows)


def with_temperature(df: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """A copy of a predict() DataFrame with probabilities rescaled: p' = softmax(log p / T).

    Log-probabilities are logits up to a per-row constant, so this equals temperature scaling of
    the original logits; ``pred`` and ``correct`` do not change. Probabilities are floored at
    1e-15 before the log (NLL_FLOOR).

    Args:
        df: a predict() DataFrame.
        temperature: T > 0, e.g. ``TemperatureScaler().fit(...).temperature_``.

    Returns:
        New DataFrame (same columns and attrs) with ``p_*`` and ``confidence`` updated.
    """
    check_float(temperature, "temperature", 0.0, math.inf)
    p, _ = probs_labels(df)
    cols = probability_columns(df)
    scaled = special.softmax(np.log(np.maximum(p, NLL_FLOOR)) / temperature, axis=1)
    out = df.copy()
    out[cols] = scaled
    if "confidence" in out.columns:
        out["confidence"] = scaled.max(axis=1)
    out.attrs = dict(df.attrs)
    return out
