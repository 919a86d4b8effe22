"""Erasure-based faithfulness of word attributions: ERASER comprehensiveness and sufficiency, AOPC,
normalised AOPC, decision flip, soft comprehensiveness and sufficiency (Bernoulli masks on the
token embeddings, :mod:`toolkit.metrics.faithfulness.soft`), and a random-ranking baseline.

The core is model-agnostic: every metric takes a :data:`Scorer`, a callable that maps a list of
word sequences (erased variants of texts) to class probabilities of shape ``(len, C)``, so it can
be tested on a transparent model. :func:`model_scorer` builds one from (model, tokenizer, task).

Conventions shared by every function here (documented once):

- ``words``: per example, its text (a ``str``) or its word list. Words are whitespace-separated
  tokens of the text (:func:`split_words`, ``re.finditer(r"\\S+", text)``). No example may be
  empty. A text is erased at the text level (:func:`toolkit.data.prompts.erase_words`), so erasing
  nothing gives the scorer the example's own text; a word list is rendered as its words joined
  by single spaces.
- ``attributions``: one score per word of each example; higher = more important for the
  predicted label. Words are ranked by descending score, ties broken by position (earlier first).
- y^ = argmax of the scorer on the full, unerased word list; every metric tracks p(y^).
- k for a fraction f of an n-word text: ``k = max(1, ceil(f * n))`` (at least one word); f * n is
  rounded to 9 decimals first so float noise (0.14 * 50 = 7.000000000000001) adds no word.
- ``erasure="delete"`` removes the erased words; ``erasure="replace"`` puts ``replacement`` in
  their place (the text keeps its length).
- Batching: each public function gathers all erased variants of all examples (every fraction,
  both metrics, every ranking, the bound search), deduplicates them by content and scores them in
  one scorer call; only the beam search for NAOPC bounds of long texts adds one call per step.
- Memo: :func:`model_scorer` remembers every variant it scored per model state (:class:`ScoreMemo`,
  :func:`model_state`), so a second call on the same sentences - another metric, another method,
  the random baseline, the bounds - scores only what is new. ``naopc=False`` skips the bound search
  (AOPC and decision flip only): the cheaper option when NAOPC is not needed.
- Options: :class:`ErasureOptions` holds how the engine erases (fractions, erasure, replacement)
  and which of its parts run (``naopc`` and the bound limits, ``soft`` and its draws); the report,
  :func:`model_faithfulness` and a study pass it whole. A metric names the engine parts it reads
  (``Metric.needs``); a new part is one :func:`register_engine_part` call.

Modules, in dependency order: ``erasure`` (the example type, checks, the erasure and the
deduplicating pool) <- ``memo`` (scored variants per model state), ``bounds`` (exact and beam
AOPC bounds) <- ``metrics`` (the engine and the metric functions) <- ``report``
(:func:`faithfulness_report`, :func:`aggregate`) <- ``model`` (:func:`model_scorer`,
:func:`model_faithfulness`). Every public name is re-exported here:
``toolkit.metrics.faithfulness.naopc`` is the same function as ``toolkit.metrics.faithfulness.metrics.naopc``.
"""

from ...data.prompts import split_words  # re-exported: the erasure metrics define a word as split_words does
from .bounds import FLAT_BOUNDS_TOL, naopc_from_bounds
from .erasure import (
    BEAM_WIDTH,
    EXACT_MAX_WORDS,
    FRACTIONS,
    SOFT_SAMPLES,
    ErasureOptions,
    Examples,
    Scorer,
    Variant,
    k_for_fraction,
    ranking,
)
from .memo import MEMO_STATES, ScoreMemo, clear_memo, memoize, model_state
from .metrics import (
    ENGINE,
    RANDOM,
    EnginePart,
    EngineRun,
    aopc,
    aopc_bounds,
    comprehensiveness,
    decision_flip,
    engine_parts,
    erasure_curves,
    list_engine_parts,
    measures,
    naopc,
    permutation,
    permuted_name,
    random_baseline,
    register_engine_part,
    soft_erasure,
    sufficiency,
    unregister_engine_part,
)
from .model import model_faithfulness, model_scorer
from .report import aggregate, faithfulness_report, minus_permuted, minus_permuted_name, soft_ratio_of_means
from .soft import Masked, embedding_mask, keep_probabilities, mask_seed, masked_label_probs

__all__ = [
    "BEAM_WIDTH",
    "ENGINE",
    "EXACT_MAX_WORDS",
    "FLAT_BOUNDS_TOL",
    "FRACTIONS",
    "MEMO_STATES",
    "RANDOM",
    "aggregate",
    "aopc",
    "aopc_bounds",
    "clear_memo",
    "comprehensiveness",
    "decision_flip",
    "EnginePart",
    "EngineRun",
    "engine_parts",
    "erasure_curves",
    "ErasureOptions",
    "Examples",
    "faithfulness_report",
    "k_for_fraction",
    "list_engine_parts",
    "measures",
    "memoize",
    "model_faithfulness",
    "model_scorer",
    "model_state",
    "naopc",
    "naopc_from_bounds",
    "minus_permuted",
    "minus_permuted_name",
    "permutation",
    "permuted_name",
    "soft_ratio_of_means",
    "random_baseline",
    "ranking",
    "register_engine_part",
    "Masked",
    "SOFT_SAMPLES",
    "embedding_mask",
    "keep_probabilities",
    "mask_seed",
    "masked_label_probs",
    "soft_erasure",
    "ScoreMemo",
    "Scorer",
    "split_words",
    "sufficiency",
    "unregister_engine_part",
    "Variant",
]

