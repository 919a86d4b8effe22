"""Smooth ECE (Blasiok & Nakkiran 2023): a kernel-smoothed calibration error with its own bandwidth.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft

from ..._core.validation import check_float
from .inputs import Data, probs_and_labels, resample_weights, scalar_or_rows, top_label

__all__ = [
    "smooth_ece",
    "smooth_ece_bandwidth",
]



class _SmoothCoefficients:
    """Cosine coefficients a_bk of the weighted residual measure, k = 0..K, extended lazily.

    a_bk = sum_i w_bi r_i cos(pi k f_i) / sum_i w_bi, from the Chebyshev recurrence
    cos(k x) = 2 cos(x) cos((k-1) x) - cos((k-2) x) (relative error ~k * 1e-16).
    """

    def __init__(self, f: NDArray[np.float64], r: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        self._wr = w * r / w.sum(axis=1, keepdims=True)  # (B, n)
        self._two_cos = 2.0 * np.cos(np.pi * f)
        self._prev, self._cur = np.ones_like(f), np.cos(np.pi * f)  # cos((k-1) pi f), cos(k pi f)
        self._a = self._wr @ np.stack([self._prev, self._cur], axis=1)  # (B, 2)

    def get(self, k_max: int) -> NDArray[np.float64]:
        if self._a.shape[1] <= k_max:
            # extend by at least doubling; one matrix product per block (fast BLAS path)
            m = max(k_max + 1, 2 * self._a.shape[1]) - self._a.shape[1]
            block = np.empty((self._cur.size, m))
            for j in range(m):
                self._prev, self._cur = self._cur, self._two_cos * self._cur - self._prev
                block[:, j] = self._cur
            self._a = np.concatenate([self._a, self._wr @ block], axis=1)
        return self._a[:, : k_max + 1]


def _n_terms(sigma: float) -> int:
    """Cosine terms kept at bandwidth sigma: exp(-pi^2 k^2 sigma^2 / 2) < 1e-15 beyond 2.7/sigma."""
    return max(4, math.ceil(2.7 / sigma))


def _smooth_integrals(
    coef: _SmoothCoefficients, rows: NDArray[np.int64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """smECE_sigma = int_0^1 |s_sigma(t)| dt and its derivative in sigma, one sigma per row.

    On [0, 1] the Gaussian kernel reflected at 0 and 1 (infinitely often) has the expansion
        K_sigma(t, f) = sum_m [phi_sigma(t - f - 2m) + phi_sigma(t + f - 2m)]
                      = 1 + 2 sum_{k>=1} exp(-pi^2 k^2 sigma^2 / 2) cos(pi k f) cos(pi k t),
    so s_sigma(t) = sum_k c_k cos(pi k t), c_0 = a_0, c_k = 2 a_k exp(-pi^2 k^2 sigma^2 / 2).
    s is evaluated on a grid of spacing ~sigma/10 by a DCT-I to locate its sign changes, each
    root is polished by a Newton step on the series, and int |s| = sum_j |S(r_{j+1}) - S(r_j)|
    over consecutive roots (with r = 0 and 1 at the ends), S(t) = c_0 t + sum_k c_k
    sin(pi k t)/(pi k) the exact antiderivative: exact up to root finding (~1e-12). As s = 0 at
    the roots, d/dsigma int |s| = sum_j sign(dS_j) (D(r_{j+1}) - D(r_j)), D = dS/dsigma =
    -pi sigma sum_k k c_k sin(pi k t).
    """
    k_max = _n_terms(float(sigma.min()))
    k = np.arange(k_max + 1, dtype=np.float64)
    c = coef.get(k_max)[rows] * np.exp(-((np.pi * np.outer(sigma, k)) ** 2) / 2.0)
    c[:, 1:] *= 2.0
    n_grid = 4 * k_max + 1
    x = np.zeros((rows.size, n_grid))
    x[:, 0], x[:, 1 : k_max + 1] = c[:, 0], c[:, 1:] / 2.0
    # DCT-I: y_j = x_0 + (-1)^j x_{T-1} + 2 sum_{k=1}^{T-2} x_k cos(pi k j / (T-1)) = s(j / (T-1))
    s = fft.dct(x, type=1, axis=1)
    sign = np.sign(s)
    row, cell = np.nonzero(sign[:, :-1] * sign[:, 1:] < 0)  # row-major: roots sorted within a row
    s0, s1 = s[row, cell], s[row, cell + 1]
    lo, hi = cell / (n_grid - 1.0), (cell + 1.0) / (n_grid - 1.0)
    root = lo - s0 * (hi - lo) / (s1 - s0)
    cr = c[row]
    arg = np.pi * np.outer(root, k)
    val = np.einsum("rk,rk->r", np.cos(arg), cr)
    der = -np.einsum("rk,rk->r", np.sin(arg), cr * (np.pi * k))
    root = np.clip(root - np.divide(val, der, out=np.zeros_like(val), where=der != 0), lo, hi)
    sin = np.sin(np.pi * np.outer(root, k[1:]))
    anti = cr[:, 0] * root + np.einsum("rk,rk->r", sin, cr[:, 1:] / (np.pi * k[1:]))
    dsig = -np.pi * sigma[row] * np.einsum("rk,rk->r", sin, cr[:, 1:] * k[1:])
    # per row, points 0 = r_0 < r_1 < ... < r_m < 1: S(0) = 0, S(1) = c_0, D(0) = D(1) = 0
    same = np.r_[False, row[1:] == row[:-1]]
    step = anti - np.where(same, np.r_[0.0, anti[:-1]], 0.0)
    dstep = dsig - np.where(same, np.r_[0.0, dsig[:-1]], 0.0)
    total = np.bincount(row, weights=np.abs(step), minlength=rows.size)
    deriv = np.bincount(row, weights=np.sign(step) * dstep, minlength=rows.size)
    last, dlast = np.zeros(rows.size), np.zeros(rows.size)
    if row.size:
        is_last = np.r_[row[1:] != row[:-1], True]
        last[row[is_last]], dlast[row[is_last]] = anti[is_last], dsig[is_last]
    tail = c[:, 0] - last
    return total + np.abs(tail), deriv - np.sign(tail) * dlast


def _smooth_batched(
    coef: _SmoothCoefficients, rows: NDArray[np.int64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_smooth_integrals` in row batches of <= ~4M grid entries (bounds memory)."""
    per = max(1, (1 << 22) // (4 * _n_terms(float(sigma.min())) + 1))
    parts = [_smooth_integrals(coef, rows[i : i + per], sigma[i : i + per]) for i in range(0, rows.size, per)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _smooth_fixed_points(coef: _SmoothCoefficients, n_rows: int, eps: float) -> tuple[NDArray, NDArray]:
    """sigma*_b with smECE_sigma* = sigma* for every weight row (Blasiok & Nakkiran 2023, Sec. 4).

    g(sigma) = smECE_sigma - sigma strictly decreases (smoothing contracts the L1 norm), so the
    root is unique. Bracket it by halving sigma from 1 (cost grows like 1/sigma^2, so larger
    sigmas first), then Newton steps with the analytic derivative, safeguarded by the bracket
    (bisection when a step leaves it), all rows at once, to a relative step of 1e-12. If
    g(eps) < 0 the row gets sigma = eps (as relplot).

    Returns:
        (sigma*, smECE_sigma*), each (n_rows,).
    """
    sig_out = np.ones(n_rows)
    val_out, dval = _smooth_batched(coef, np.arange(n_rows), sig_out)
    g, dg = val_out - 1.0, dval - 1.0
    lo, hi = np.full(n_rows, np.nan), np.ones(n_rows)
    open_ = g < 0.0  # g(1) >= 0 only if every example is confidently wrong: sigma* = 1
    cur = 1.0
    while open_.any():  # ladder: sigma = 1/2, 1/4, ..., eps
        cur = max(cur / 2.0, eps)
        r = np.flatnonzero(open_)
        v, dv = _smooth_batched(coef, r, np.full(r.size, cur))
        up = v - cur >= 0.0
        lo[r[up]], sig_out[r[up]], val_out[r[up]] = cur, cur, v[up]
        g[r[up]], dg[r[up]] = v[up] - cur, dv[up] - 1.0
        hi[r[~up]] = cur
        open_[r[up]] = False
        if cur <= eps:  # g(eps) < 0: the fixed point lies below eps
            sig_out[r[~up]], val_out[r[~up]] = eps, v[~up]
            open_[:] = False
    active = ~np.isnan(lo) & (g != 0.0)
    for _ in range(100):
        r = np.flatnonzero(active)
        if r.size == 0:
            break
        new = sig_out[r] - g[r] / dg[r]  # dg = d smECE/d sigma - 1 <= -1
        out = ~((new > lo[r]) & (new < hi[r]))
        new[out] = np.sqrt(lo[r][out] * hi[r][out])
        v, dv = _smooth_batched(coef, r, new)
        moved = np.abs(new - sig_out[r])
        sig_out[r], val_out[r], g[r], dg[r] = new, v, v - new, dv - 1.0
        up = g[r] >= 0.0
        lo[r[up]], hi[r[~up]] = new[up], new[~up]
        active[r[(g[r] == 0.0) | (moved <= 1e-12 * new) | (hi[r] - lo[r] <= 1e-12 * hi[r])]] = False
    return sig_out, val_out


def _smooth_setup(
    probs: Data, labels: ArrayLike | None, weights: ArrayLike | None, eps: float
) -> tuple[_SmoothCoefficients, int, bool]:
    check_float(eps, "eps", 0.0, 1.0)
    p, y = probs_and_labels(probs, labels)
    w, scalar = resample_weights(weights, p.shape[0])
    conf, correct = top_label(p, y)
    return _SmoothCoefficients(conf, correct - conf, w), w.shape[0], scalar


def smooth_ece(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    sigma: float | None = None,
    eps: float = 1e-3,
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """Smooth ECE of the top-label confidence (Blasiok & Nakkiran 2023; supports ``weights``).

    smECE_sigma = int_0^1 | (1/n) sum_i (a_i - f_i) K_sigma(t, f_i) | dt, K_sigma the Gaussian
    kernel reflected at 0 and 1; smECE = smECE_sigma* at the fixed point sigma* = smECE_sigma*
    (unique: smECE_sigma decreases in sigma). "Smooth ECE: Principled Reliability Diagrams via
    Kernel Smoothing", https://arxiv.org/abs/2309.12236. Their code (``relplot.smECE``)
    discretises on a grid and bisects sigma to 2^-10; here the integral is evaluated in closed
    form (cosine series, see :func:`_smooth_integrals`) and sigma* solved to 1e-12.

    Args:
        probs, labels, weights: as in :func:`ece`.
        sigma: a fixed bandwidth > 0 (smECE_sigma); None solves for the fixed point.
        eps: smallest bandwidth searched (as relplot); if smECE_eps < eps, returns smECE_eps.

    Returns:
        The smooth ECE in [0, 1]: a float, or an array (B,) for 2-D weights.
    """
    if sigma is not None:  # None: the fixed point
        check_float(sigma, "sigma", 0.0, math.inf)
    coef, b, scalar = _smooth_setup(probs, labels, weights, eps)
    if sigma is not None:
        return scalar_or_rows(_smooth_batched(coef, np.arange(b), np.full(b, float(sigma)))[0], scalar)
    return scalar_or_rows(_smooth_fixed_points(coef, b, float(eps))[1], scalar)


def smooth_ece_bandwidth(
    probs: Data,
    labels: ArrayLike | None = None,
    *,
    eps: float = 1e-3,
    weights: ArrayLike | None = None,
) -> float | NDArray[np.float64]:
    """The fixed-point bandwidth sigma* = smECE_sigma* used by :func:`smooth_ece`.

    Args:
        probs, labels, eps, weights: as in :func:`smooth_ece`.

    Returns:
        sigma* in [eps, 1]: a float, or an array (B,) for 2-D weights.
    """
    coef, b, scalar = _smooth_setup(probs, labels, weights, eps)
    return scalar_or_rows(_smooth_fixed_points(coef, b, float(eps))[0], scalar)
