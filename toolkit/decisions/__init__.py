"""Decisions a pruning study can claim, each as a test with a stated size.

Three kinds of claim, all about paired differences against the unpruned model on the same
examples (d = metric(pruned) - metric(reference)):

- *Accuracy holds*: paired non-inferiority (the one-sided lower bound of d above -margin; a gain
  never counts against it), or, for "unchanged", equivalence by two one-sided tests (TOST,
  Schuirmann 1987); "the CI of d contains 0" is absence of evidence.
- *A faithfulness or calibration metric changed*: paired tests whose p-values and CIs are adjusted
  for the number of tests in the study (Holm 1979, or Benjamini & Hochberg 1995 with the
  Benjamini & Yekutieli 2005 false-coverage-rate intervals).
- *Misaligned*: accuracy shown equivalent and at least one other metric shown changed.

Plus power: the smallest paired difference a design can detect, and the n a target needs.

Everything is numpy/scipy on per-example vectors or per-test tables; nothing here runs a model.

One module per kind of claim: :mod:`.collapse` (which cells are broken models), :mod:`.equivalence`,
:mod:`.exact` (sign-flip test, smallest attainable p), :mod:`.gatekeeping` (primary vs exploratory), :mod:`.multiplicity`, :mod:`.misalignment`,
:mod:`.power`; every name below imports from here as before.
"""

from .collapse import CHANCE_TOLERANCE, MAX_CLASS_SHARE, Collapse, collapse_reasons, collapsed
from .equivalence import (
    ACCURACY_METHODS,
    NONINFERIORITY_MARGINS,
    Equivalence,
    NonInferiority,
    accuracy_noninferiority,
    accuracy_tost,
    noninferiority_from_counts,
    noninferiority_table,
    paired_tost,
)
from .exact import ALTERNATIVES, MAX_EXACT_PAIRS, SMALLEST_P_TESTS, SignFlip, sign_flip_test, smallest_p
from .gatekeeping import FAMILIES, gated_family, runnable
from .misalignment import VERDICTS, Misalignment, misalignment
from .multiplicity import ADJUSTMENTS, ErrorBudget, adjust_pvalues, adjust_tests, error_budget
from .power import (
    POWER_METHODS,
    ci_halfwidth,
    mde_accuracy,
    mde_paired,
    n_for_accuracy,
    n_for_accuracy_equivalence,
    n_for_accuracy_noninferiority,
    n_for_halfwidth,
    power_table,
)

__all__ = [
    "ACCURACY_METHODS",
    "CHANCE_TOLERANCE",
    "Collapse",
    "MAX_CLASS_SHARE",
    "collapse_reasons",
    "collapsed",
    "ADJUSTMENTS",
    "ALTERNATIVES",
    "FAMILIES",
    "MAX_EXACT_PAIRS",
    "SMALLEST_P_TESTS",
    "SignFlip",
    "gated_family",
    "runnable",
    "sign_flip_test",
    "smallest_p",
    "NONINFERIORITY_MARGINS",
    "NonInferiority",
    "accuracy_noninferiority",
    "noninferiority_from_counts",
    "noninferiority_table",
    "Equivalence",
    "ErrorBudget",
    "Misalignment",
    "POWER_METHODS",
    "VERDICTS",
    "accuracy_tost",
    "adjust_pvalues",
    "adjust_tests",
    "ci_halfwidth",
    "error_budget",
    "mde_accuracy",
    "mde_paired",
    "misalignment",
    "n_for_accuracy",
    "n_for_accuracy_equivalence",
    "n_for_accuracy_noninferiority",
    "n_for_halfwidth",
    "paired_tost",
    "power_table",
]
