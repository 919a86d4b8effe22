"""Collapsed cells: a pruned model that no longer reads its input is kept out of the claims.

A cell is *collapsed* when either stated rule fires (thresholds are the module constants):

1. one class takes more than ``MAX_CLASS_SHARE`` (95%) of the predictions;
2. balanced accuracy is not above chance: BA <= 1 / C + ``CHANCE_TOLERANCE`` (a point rule, so a
   cell is not called collapsed merely for being small; with C = 2 classes: BA <= 0.55).

A third rule, "the mean probability the full vocabulary puts on the label verbalizers is below a
floor" (the model no longer answers in format), is opt-in (``label_mass_floor=``) and off in every
study table, audit and sweep. Stage 1 of the two-stage run showed why: Gemma-3-270M zero-shot puts
0.27% of its mass on the labels of UCI yelp at 0.89 accuracy, and its pruned cells reach 0.69
accuracy at 0.002% label mass and 0.94 at 0.07%. Label mass measures whether the
prompt's format is followed, not whether the renormalised class probabilities carry information;
rules 1 and 2 test that directly. A floor of 1% (then 0.1%) called working models, the unpruned
reference among them, collapsed. The mean label mass stays in every table as a diagnostic.

Calibration or faithfulness "changes" of a collapsed model describe a model that ignores its input,
not a prediction that got worse calibrated or an explanation that got less faithful; reports show
these cells in their own rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._core.validation import InputError, check_int

__all__ = [
    "CHANCE_TOLERANCE",
    "MAX_CLASS_SHARE",
    "Collapse",
    "collapse_reasons",
    "collapsed",
]

#: More than this share of predictions in one class is a collapsed cell.
MAX_CLASS_SHARE = 0.95
#: Balanced accuracy at or below 1 / C + this is "not above chance".
CHANCE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Collapse:
    """The collapsed-cell verdict and the three quantities behind it.

    Attributes:
        collapsed: any reason fired.
        reasons: the rules that fired, among 'one class', 'chance', 'label mass' (empty if none).
        majority_share: the largest share of predictions in one class.
        majority_class: that class's index.
        balanced_accuracy: mean over the classes present in the labels of the per-class recall.
        chance: 1 / C.
        mean_label_mass: mean label-verbalizer mass (NaN when not given).
        n: examples.
    """

    collapsed: bool
    reasons: tuple[str, ...]
    majority_share: float
    majority_class: int
    balanced_accuracy: float
    chance: float
    mean_label_mass: float
    n: int


def _int_vector(x: ArrayLike, name: str) -> np.ndarray:
    v = np.asarray(x)
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"{name} has shape {v.shape}; expected a non-empty 1-D array of class indices")
    if not np.issubdtype(v.dtype, np.integer) and not (np.issubdtype(v.dtype, np.floating) and np.all(v == np.round(v))):
        raise InputError(f"{name} has dtype {v.dtype}; expected integer class indices")
    v = v.astype(np.int64)
    if v.min() < 0:
        raise InputError(f"{name} holds {v.min()}; expected class indices >= 0")
    return v


def collapse_reasons(majority_share: float, balanced_accuracy: float, n_classes: int,
                     mean_label_mass: float = float("nan"), label_mass_floor: float | None = None) -> tuple[str, ...]:
    """The rules that fire for a cell's summary numbers.

    ``label_mass_floor``: opt in to the label-mass rule (off by default; the module docstring says
    why); it fires when ``mean_label_mass`` (not NaN) is below the floor.

    Returns:
        The subset of ('one class', 'chance', 'label mass') that fires, in that order.
    """
    c = check_int(n_classes, "n_classes", 2)
    reasons = []
    if majority_share > MAX_CLASS_SHARE:
        reasons.append("one class")
    if balanced_accuracy <= 1.0 / c + CHANCE_TOLERANCE:
        reasons.append("chance")
    if label_mass_floor is not None and mean_label_mass == mean_label_mass and mean_label_mass < label_mass_floor:
        reasons.append("label mass")
    return tuple(reasons)


def collapsed(predictions: ArrayLike, labels: ArrayLike, n_classes: int, label_mass: ArrayLike | None = None,
              label_mass_floor: float | None = None) -> Collapse:
    """Is this cell's model collapsed? See the module docstring for the two rules (and the opt-in third).

    balanced accuracy = (1 / |K|) sum_{c in K} #{pred = c, label = c} / #{label = c},  K the classes
    present in ``labels`` (Brodersen et al. 2010, "The balanced accuracy and its posterior
    distribution", ICPR, https://doi.org/10.1109/ICPR.2010.764). A constant predictor has BA = 1 / |K|.

    Args:
        predictions: predicted class index per example, shape (n,).
        labels: true class index per example, shape (n,).
        n_classes: C >= 2, the task's number of classes (chance = 1 / C).
        label_mass: optional per-example probability of the label verbalizers, shape (n,), in [0, 1]
            (its mean is reported; it decides nothing unless ``label_mass_floor`` is given).
        label_mass_floor: opt in to the label-mass rule at this floor (default off).

    Returns:
        :class:`Collapse`.
    """
    c = check_int(n_classes, "n_classes", 2)
    pred, lab = _int_vector(predictions, "predictions"), _int_vector(labels, "labels")
    if pred.size != lab.size:
        raise InputError(f"predictions has n={pred.size} but labels n={lab.size}; expected the same examples")
    if max(pred.max(), lab.max()) >= c:
        raise InputError(f"a class index {max(pred.max(), lab.max())} >= n_classes={c}; expected 0..{c - 1}")
    counts = np.bincount(pred, minlength=c)
    share = float(counts.max() / pred.size)
    present = np.unique(lab)
    ba = float(np.mean([np.mean(pred[lab == k] == k) for k in present]))
    mass = float("nan")
    if label_mass is not None:
        m = np.asarray(label_mass, dtype=np.float64)
        if m.shape != pred.shape or not np.all((m >= 0) & (m <= 1)):
            raise InputError(f"label_mass has shape {m.shape} (or values outside [0, 1]); expected ({pred.size},) in [0, 1]")
        mass = float(m.mean())
    reasons = collapse_reasons(share, ba, c, mass, label_mass_floor)
    return Collapse(collapsed=bool(reasons), reasons=reasons, majority_share=share,
                    majority_class=int(counts.argmax()), balanced_accuracy=ba, chance=1.0 / c,
                    mean_label_mass=mass, n=int(pred.size))
