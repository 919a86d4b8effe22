"""Word attributions of a prompted classifier's prediction: inseq methods plus a batched fast path.

What is explained: for each example, the model's predicted label y^ (argmax over the label
verbalizers, exactly as :func:`toolkit.models.scoring.label_probs` scores them) and, as the attributed quantity,
inseq's default step function: the probability of y^'s first verbalizer token at the answer
position, over the full vocabulary,

    f(x) = softmax(LM(x)_answer)[t(y^)].

Scores are computed for every prompt token, then only the tokens of the example's own text
(``Prompt.span``) are kept and summed into its words (``split_words``: ``re.finditer(r"\\S+", text)``).
Instruction, chat-template and demonstration tokens stay in the prompt but are never ranked. A
token belongs to the word holding its first non-space character (byte-level BPE tokens carry their
leading space); a word no token starts in scores 0.

Tokens are those of :func:`toolkit.data.prompts.encode_example`, the encoding every consumer shares
(the tokenizer's own BOS for a plain prompt, the chat template's special tokens for a chat prompt);
the inseq backend checks that inseq tokenised the prompt to exactly these ids. Each
:class:`Attribution` records them and ``predict``'s probability of the label it explains.
Word score = SUM of its tokens' scores.
Most methods give magnitudes (>= 0, no direction; higher = more important for y^). The
``_signed`` variants keep the sign (``AttributionMethod.signed``, :func:`is_signed`): > 0 = the
word pushes p(y^) up, < 0 = it pushes p(y^) down (the gradient is of y^'s probability, the
target captum and inseq differentiate):

=====================  =========================================================================
saliency               ||df/de_i||_2, the L2 norm over the embedding dimension of the gradient
                       w.r.t. token i's input embedding (Simonyan et al. 2014).
input_x_gradient       ||e_i * df/de_i||_2 (Shrikumar et al. 2016).
integrated_gradients   ||(e_i - b_i) * sum_s w_s df/de_i (b + a_s (e - b))||_2 (Sundararajan et al.
                       2017); captum's quadrature (default Gauss-Legendre, 50 steps); baseline b =
                       inseq's default: the embedding of the unk token (the pad token when the
                       tokenizer has none), EOS positions keep EOS. Not zeros.
input_x_gradient_      sum_d e_id * df/de_id: signed; the first-order change of f from scaling
signed                 token i's embedding from 0 to e_i.
integrated_gradients_  sum_d (e_id - b_id) * sum_s w_s df/de_id(...): signed; over all tokens the
signed                 sums add up to f(x) - f(b) (completeness, Sundararajan et al. 2017).
lime                   L2 norm over the embedding dimension of inseq's LIME surrogate weights.
occlusion              |f(x) - f(x with token i's embedding replaced by b_i)| (inseq takes abs).
attention              attention weight from the answer position to token i, mean over heads and
                       over the layers whose attention is computed (dropped layers have none).
value_zeroing          Mohebbi et al. 2023: per layer 1 - cos(h, h with token i's values zeroed),
                       normalised to sum 1 over tokens; mean over the kept (not dropped) layers.
=====================  =========================================================================

The unsigned ones are inseq 0.7.1's default aggregations (vnorm for gradient methods, mean for
multi-unit ones), applied here to inseq's raw per-token tensors so that ``backend="fast"`` can reproduce them.

Backends: ``"inseq"`` runs every method through ``inseq`` one example at a time (the model wrapper
is cached per model, method and tokenizer). ``"fast"`` computes saliency, input x gradient and
integrated gradients for a whole batch at once: IG's interpolation steps become rows beside the
examples; rows of similar length share one forward + backward (embeddings as leaf tensors, right
padding, explicit ``position_ids``, logits only at each row's answer position); and the prompt
prefix that all rows share and that holds no ranked token (system prompt, instruction) runs once
per batch and step into a KV cache that every row continues. It equals the inseq backend to
float32 round-off (tested to 1e-4) and works inside ``drop_attention``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.datasets import Dataset
from ..data.task import Example, Task
from .._core.validation import InputError, check_int
from .display import LEGENDS, attribution_legend_html, attributions_html, scores_are_signed, show_attributions
from .fast import IG_RULES, fast_token_scores, ig_quadrature
from .inseq_backend import inseq_accepted_kwargs, inseq_model, inseq_token_scores
from .prepare import check_eager, examples_of, prepare_items
from .registry import (
    ATTRIBUTION_METHODS,
    BACKENDS,
    AttributionMethod,
    check_kwargs,
    check_method,
    is_signed,
    list_attribution_methods,
    register_attribution_method,
)
from .results import Attribution, attributions_frame, split_words, words_from_tokens

# Modules, in dependency order: registry, results <- prepare <- inseq_backend, fast <- this API;
# display draws results. inseq is imported by inseq_backend when a wrapper is first built.
__all__ = [
    "ATTRIBUTION_METHODS",
    "LEGENDS",
    "Attribution",
    "AttributionMethod",
    "BACKENDS",
    "attribute",
    "attribution_legend_html",
    "attributions_frame",
    "attributions_html",
    "ig_quadrature",
    "inseq_model",
    "is_signed",
    "list_attribution_methods",
    "register_attribution_method",
    "scores_are_signed",
    "show_attributions",
    "split_words",
]


def attribute(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Dataset | Sequence[Example],
    *,
    method: str = "saliency",
    backend: str = "inseq",
    batch_size: int = 16,
    progress: bool = False,
    seed: int = 0,
    **method_kwargs: Any,
) -> list[Attribution]:
    """Word-level attribution of each example's predicted label (see the module docstring).

    Works on the model as it is: inside ``drop_attention(model, layers)`` both the prediction and
    the gradients go through the kept layers only.

    Args:
        task: how the examples are posed (prompt, verbalizers, chat template, ``n_shot``).
        examples: a ``Dataset`` or a sequence of ``Example``.
        method: one of :func:`list_attribution_methods`.
        backend: ``"inseq"`` (every method, one example at a time) or ``"fast"`` (saliency,
            input_x_gradient, integrated_gradients; batched).
        batch_size: examples per forward pass when predicting. ``"fast"``: examples per batch, and
            each forward + backward holds about ``batch_size`` rows of average length (IG rows are
            (step, example) pairs; shorter rows are packed more densely).
        progress: show a progress bar.
        seed: seeds torch's RNG around each example for stochastic methods (lime).
        **method_kwargs: the method's own options, checked against what it accepts. inseq: the
            arguments of the captum/inseq ``attribute`` method (e.g. ``n_steps`` and
            ``internal_batch_size`` for IG, ``n_samples`` for lime, ``similarity_metric`` for value
            zeroing). fast: ``n_steps`` (default 50, as captum) and ``rule`` (default
            ``"gausslegendre"``, see :data:`IG_RULES`) for IG. ``rule`` is captum's IG ``method``
            argument; inseq 0.7.1 cannot pass it on (its own ``attribute(method=...)`` takes the
            name), so the inseq backend always uses Gauss-Legendre.

    Returns:
        One :class:`Attribution` per example, in input order.

    Raises:
        InputError: unknown method or backend, a method option it does not take, an example with
            no words, verbalizers that share their first token.
    """
    spec = check_method(method, backend)
    check_int(batch_size, "batch_size", 1)
    check_eager(model)
    exs = examples_of(examples)
    if not exs:
        raise InputError("no examples to attribute: the example list is empty")
    wrapper = None
    if backend == "inseq":
        wrapper = inseq_model(model, tokenizer, method)
        check_kwargs(method, method_kwargs, inseq_accepted_kwargs(wrapper), backend)
    else:
        check_kwargs(method, method_kwargs, spec.fast_kwargs or (), backend)
    items = prepare_items(model, tokenizer, task, exs, batch_size=batch_size, progress=progress)
    if backend == "inseq":
        bar = tqdm(items, desc=f"{method} (inseq)", disable=not progress, leave=False)
        token_scores = [inseq_token_scores(wrapper, model, it, spec, method_kwargs, seed) for it in bar]
    else:
        token_scores = fast_token_scores(model, tokenizer, items, spec, method_kwargs, batch_size, progress)
    return [
        Attribution(
            example_id=it.example_id,
            words=it.encoded.words,
            spans=it.encoded.spans,
            scores=words_from_tokens(ts, it.token_word, len(it.encoded.words)),
            label=it.label,
            label_name=task.label_names[it.label],
            method=method,
            backend=backend,
            probability=it.probability,
            input_ids=it.ids,
        )
        for it, ts in zip(items, token_scores)
    ]
