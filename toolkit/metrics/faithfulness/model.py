"""Model glue: a :data:`~toolkit.metrics.faithfulness.erasure.Scorer` backed by a language model, and one
study cell's faithfulness (attributions of each method, then :func:`faithfulness_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...attribution import attribute
from ..._core.validation import InputError, check_int
from .erasure import ErasureOptions, Scorer, Variant
from .memo import ScoreMemo, memo_for, memoize, model_state
from .report import faithfulness_report
from .soft import Masked, masked_label_probs

__all__ = [
    "model_faithfulness",
    "model_scorer",
]


def model_scorer(
    model: Any, tokenizer: Any, task: Any, *, batch_size: int = 16, progress: bool = False,
    memo: bool | ScoreMemo = True,
) -> Scorer:
    """A :data:`Scorer` backed by a language model: label probabilities of the task's prompt.

    Each variant's ``.text`` (a plain word list: its words joined by single spaces) goes through
    ``toolkit.models.scoring.label_probs(model, tokenizer, task, texts, batch_size=, progress=)``, which
    encodes it with the one encoding path (:func:`toolkit.data.prompts.encode_example`). An example
    given as a text and erased nowhere is that text, so the scorer feeds the model the same ids as
    ``predict`` and erasing nothing reproduces p(y^ | x) exactly (comp = 0 at k = 0).

    Args:
        memo: True (default) remembers each scored variant per model state
            (:func:`model_state`, read at every call, so one scorer serves inside and outside a
            ``drop_attention``) in a :class:`ScoreMemo` shared by every scorer of the same
            (model, tokenizer, task); a ``ScoreMemo`` uses that one; False scores every call afresh.
            The scorer's ``.memo`` attribute is the memo (None when off).
    """
    from ...models.scoring import label_probs  # imported here: scoring pulls in torch and the model stack

    batch_size = check_int(batch_size, "batch_size", 1)
    if not isinstance(memo, (bool, ScoreMemo)):
        raise InputError(f"memo={memo!r}; expected True, False or a ScoreMemo")

    def score(variants: Sequence[Sequence[str]]) -> np.ndarray:
        masked = [i for i, v in enumerate(variants) if isinstance(v, Masked)]
        plain = [i for i, v in enumerate(variants) if not isinstance(v, Masked)]
        parts = []
        if plain:
            texts = [variants[i].text if isinstance(variants[i], Variant) else " ".join(variants[i]) for i in plain]
            parts.append((plain, label_probs(model, tokenizer, task, texts, batch_size=batch_size, progress=progress)))
        if masked:
            parts.append((masked, masked_label_probs(model, tokenizer, task, [variants[i] for i in masked],
                                                     batch_size=batch_size)))
        out = np.zeros((len(variants), np.asarray(parts[0][1]).shape[1])) if parts else np.zeros((0, 2))
        for idx, probs in parts:
            out[idx] = probs
        return out

    if memo is False or model_state(model) is None:
        score.memo = None  # type: ignore[attr-defined]
        score.accepts_masks = True  # type: ignore[attr-defined]
        return score
    shared = memo if isinstance(memo, ScoreMemo) else memo_for(model, tokenizer, task)
    scorer = memoize(score, shared, state=lambda: model_state(model))
    scorer.accepts_masks = True  # type: ignore[attr-defined]
    return scorer


def model_faithfulness(
    model: Any,
    tokenizer: Any,
    task: Any,
    examples: Sequence[Any],
    methods: Sequence[str],
    options: ErasureOptions | None = None,
    *,
    backend: str = "fast",
    batch_size: int = 16,
    n_random: int = 10,
    seed: int = 0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    memo: bool | ScoreMemo = True,
    n_permutations: int = 0,
    permutation_seed: int = 0,
    **erasure_options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explain ``examples`` with each attribution method and measure the erasure faithfulness of each.

    One study cell's faithfulness, on the model as it is (inside ``drop_attention`` the dropped
    layers stay dropped for both the attributions and the erased forwards): each method's word
    attributions (:func:`toolkit.attribution.attribute`, ``seed=0``) of the predicted label, then
    :func:`faithfulness_report` over the example texts (text-level erasure) with the model's label
    probabilities as the scorer (:func:`model_scorer`).

    Args:
        examples: ``toolkit.Example`` objects (their ``.text`` is erased).
        methods: attribution method names, e.g. ``("saliency", "input_x_gradient")``.
        backend: attribution backend, ``"fast"`` or ``"inseq"``.
        batch_size: examples per forward pass, for attributions and scoring alike.
        options, erasure_options: the engine's
            :class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions`, passed whole to
            :func:`faithfulness_report` (the soft metrics' masks are seeded by the text and
            ``soft_seed``, not by ``seed``: a pruned model and its unpruned reference see the same masks).
        n_random, seed, n_boot, alpha, n_permutations, permutation_seed: as in :func:`faithfulness_report`.
        memo: as in :func:`model_scorer` (default: remembered per model state, so a second call
            on the same sentences and model state scores only new variants).

    Returns:
        ``(per_example, aggregate)`` as :func:`faithfulness_report` returns them.
    """
    options = ErasureOptions.of(options, **erasure_options)  # checked before the attributions are computed
    attributions = {
        m: attribute(model, tokenizer, task, examples, method=m, backend=backend, batch_size=batch_size) for m in methods
    }
    scorer = model_scorer(model, tokenizer, task, batch_size=batch_size, memo=memo)
    return faithfulness_report(
        scorer, [e.text for e in examples], {m: [a.scores for a in attributions[m]] for m in methods},
        options, n_random=n_random, seed=seed, n_boot=n_boot, alpha=alpha, n_permutations=n_permutations,
        permutation_seed=permutation_seed,
    )
