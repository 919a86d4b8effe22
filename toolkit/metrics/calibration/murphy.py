"""Murphy's decomposition of the Brier score: reliability, resolution, uncertainty.

For each class c, the forecasts p_ic of the event o_ic = 1[y_i = c] are grouped by their distinct
values f_k (n_k examples, observed frequency o_k, overall frequency o_c):

    REL_c = (1/n) sum_k n_k (f_k - o_k)^2     (reliability: lower is better)
    RES_c = (1/n) sum_k n_k (o_k - o_c)^2     (resolution: higher is better)
    UNC_c = o_c (1 - o_c)                      (uncertainty: the data's, not the model's)
    BS_c  = REL_c - RES_c + UNC_c              (exact when grouped by distinct forecast values)

Murphy 1973, "A new vector partition of the probability score", J. Appl. Meteor. 12:595-600,
https://doi.org/10.1175/1520-0450(1973)012%3C0595:ANVPOT%3E2.0.CO;2 . Summed over the classes the
terms decompose the multi-class Brier score of :func:`toolkit.metrics.calibration.brier`
(BS = sum_c BS_c; for a binary task that is twice the Brier score of p(positive)). With
``n_bins`` the forecasts are grouped into equal-width bins instead, f_k is the bin's mean
forecast, and the identity holds only up to the within-bin variance terms (Stephenson, Coelho &
Jolliffe 2008, https://doi.org/10.1175/2007WAF2007049.1): the result says how far off it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..._core.validation import check_int
from .inputs import Data, probs_and_labels

__all__ = ["BrierDecomposition", "brier_decomposition"]


@dataclass(frozen=True)
class BrierDecomposition:
    """Murphy's three terms of the (multi-class) Brier score, summed over classes.

    Attributes:
        brier: the Brier score, (1/n) sum_i sum_c (p_ic - o_ic)^2.
        reliability, resolution, uncertainty: REL, RES, UNC summed over classes.
        residual: brier - (reliability - resolution + uncertainty); 0 up to rounding for the
            distinct-value grouping, the within-bin terms with ``n_bins``.
        groups: the number of forecast groups used, summed over classes.
    """

    brier: float
    reliability: float
    resolution: float
    uncertainty: float
    residual: float
    groups: int


def brier_decomposition(probs: Data, labels: ArrayLike | None = None, *, n_bins: int | None = None) -> BrierDecomposition:
    """Murphy's reliability / resolution / uncertainty split of the Brier score (formulas above).

    Args:
        probs, labels: as in :func:`toolkit.metrics.calibration.ece`.
        n_bins: None (default) groups by distinct forecast values (the exact identity); an int
            groups into that many equal-width bins on [0, 1].

    Returns:
        :class:`BrierDecomposition`.
    """
    p, y = probs_and_labels(probs, labels)
    n, n_classes = p.shape
    if n_bins is not None:
        n_bins = check_int(n_bins, "n_bins", 1)
    rel = res = unc = bs = 0.0
    groups = 0
    for c in range(n_classes):
        f, o = p[:, c], (y == c).astype(np.float64)
        if n_bins is None:
            _, key = np.unique(f, return_inverse=True)
        else:
            key = np.minimum((f * n_bins).astype(np.int64), n_bins - 1)  # 1.0 in the last bin
        counts = np.bincount(key)
        used = counts > 0
        f_k = np.bincount(key, weights=f)[used] / counts[used]
        o_k = np.bincount(key, weights=o)[used] / counts[used]
        n_k = counts[used]
        o_bar = o.mean()
        rel += float(np.sum(n_k * (f_k - o_k) ** 2) / n)
        res += float(np.sum(n_k * (o_k - o_bar) ** 2) / n)
        unc += float(o_bar * (1.0 - o_bar))
        bs += float(np.mean((f - o) ** 2))
        groups += int(used.sum())
    return BrierDecomposition(brier=bs, reliability=rel, resolution=res, uncertainty=unc,
                              residual=bs - (rel - res + unc), groups=groups)
