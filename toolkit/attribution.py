"""Word attributions of a prompted classifier's prediction: inseq methods plus a batched fast path.

What is explained: for each example, the model's predicted label y^ (argmax over the label
verbalizers, exactly as :func:`toolkit.label_probs` scores them) and, as the attributed quantity,
inseq's default step function: the probability of y^'s first verbalizer token at the answer
position, over the full vocabulary,

    f(x) = softmax(LM(x)_answer)[t(y^)].

Scores are computed for every prompt token, then only the tokens of the example's own text
(``Prompt.span``) are kept and summed into its words (``split_words``: ``re.finditer(r"\\S+", text)``).
Instruction, chat-template and demonstration tokens stay in the prompt but are never ranked. A
token belongs to the word holding its first non-space character (byte-level BPE tokens carry their
leading space); a word no token starts in scores 0.

Tokens are those of :func:`toolkit.prompts.encode_example`, the encoding every consumer shares
(the tokenizer's own BOS for a plain prompt, the chat template's special tokens for a chat prompt);
the inseq backend checks that inseq tokenised the prompt to exactly these ids. Each
:class:`Attribution` records them and ``predict``'s probability of the label it explains.
Word score = SUM of its tokens' scores.
Every method gives scores >= 0 (magnitudes, no sign); higher = more important for y^:

=====================  =========================================================================
saliency               ||df/de_i||_2, the L2 norm over the embedding dimension of the gradient
                       w.r.t. token i's input embedding (Simonyan et al. 2014).
input_x_gradient       ||e_i * df/de_i||_2 (Shrikumar et al. 2016).
integrated_gradients   ||(e_i - b_i) * sum_s w_s df/de_i (b + a_s (e - b))||_2 (Sundararajan et al.
                       2017); captum's quadrature (default Gauss-Legendre, 50 steps); baseline b =
                       inseq's default: the embedding of the unk token (the pad token when the
                       tokenizer has none), EOS positions keep EOS. Not zeros.
lime                   L2 norm over the embedding dimension of inseq's LIME surrogate weights.
occlusion              |f(x) - f(x with token i's embedding replaced by b_i)| (inseq takes abs).
attention              attention weight from the answer position to token i, mean over heads and
                       over the layers whose attention is computed (dropped layers have none).
value_zeroing          Mohebbi et al. 2023: per layer 1 - cos(h, h with token i's values zeroed),
                       normalised to sum 1 over tokens; mean over the kept (not dropped) layers.
=====================  =========================================================================

These are inseq 0.7.1's default aggregations (vnorm for gradient methods, mean for multi-unit
ones), applied here to inseq's raw per-token tensors so that ``backend="fast"`` can reproduce them.

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

import copy
import html
import inspect
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data import Dataset, Example, Task
from .adapters import decoder_layers
from .prompts import EncodedPrompt, context_length, encode_examples, task_demos, verbalizer_ids, word_spans
from .pruning import dropped_layers
from .scoring import label_probs, prefix_cache
from .validation import check_choice, check_int

if TYPE_CHECKING:  # pragma: no cover
    from IPython.display import HTML

__all__ = [
    "ATTRIBUTION_METHODS",
    "BACKENDS",
    "Attribution",
    "AttributionMethod",
    "attribute",
    "attributions_frame",
    "attributions_html",
    "ig_quadrature",
    "inseq_model",
    "list_attribution_methods",
    "register_attribution_method",
    "show_attributions",
    "split_words",
]

BACKENDS: tuple[str, ...] = ("inseq", "fast")
IG_RULES: tuple[str, ...] = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")

_WORD = re.compile(r"\S+")


# --------------------------------------------------------------------------------------------------
# Method registry
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttributionMethod:
    """How one attribution method is run and reduced to one score per token.

    Attributes:
        inseq_name: the identifier in ``inseq.list_feature_attribution_methods()``.
        reduce: how inseq's per-token tensor becomes one number: ``"l2"`` (norm over the embedding
            dimension), ``"none"`` (already one number), ``"mean"`` (mean over layers/heads),
            ``"mean_kept_layers"`` (mean over the layers whose attention is not dropped).
        fast_kwargs: the keyword arguments ``backend="fast"`` accepts; None = no fast path.
        stochastic: draws random numbers (seeded per example by ``attribute(seed=...)``).
    """

    inseq_name: str
    reduce: str
    fast_kwargs: tuple[str, ...] | None = None
    stochastic: bool = False


_REDUCTIONS = ("l2", "none", "mean", "mean_kept_layers")

ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {
    "saliency": AttributionMethod("saliency", "l2", fast_kwargs=()),
    "input_x_gradient": AttributionMethod("input_x_gradient", "l2", fast_kwargs=()),
    "integrated_gradients": AttributionMethod("integrated_gradients", "l2", fast_kwargs=("n_steps", "rule")),
    "lime": AttributionMethod("lime", "l2", stochastic=True),
    "occlusion": AttributionMethod("occlusion", "none"),
    "attention": AttributionMethod("attention", "mean"),
    "value_zeroing": AttributionMethod("value_zeroing", "mean_kept_layers"),
}

# Arguments of the captum/inseq `attribute` methods that inseq fills itself (or that make no sense
# here): never accepted from the user.
_RESERVED_KWARGS = frozenset(
    {
        "self",
        "method",  # consumed by inseq's own `attribute(method=...)`: captum's IG rule cannot be set through inseq
        "inputs",
        "baselines",
        "target",
        "additional_forward_args",
        "show_progress",
        "return_convergence_delta",
        "args",
        "kwargs",
        "encoder_self_attentions",
        "decoder_self_attentions",
        "cross_attentions",
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_zeroed_units_indices",
        "cross_zeroed_units_indices",
        "output_decoder_self_scores",
        "output_encoder_self_scores",
    }
)


def list_attribution_methods(backend: str | None = None) -> list[str]:
    """Names of the registered methods (those with a fast path when ``backend="fast"``)."""
    if backend is not None:
        _check_backend(backend)
    return sorted(n for n, m in ATTRIBUTION_METHODS.items() if backend != "fast" or m.fast_kwargs is not None)


def register_attribution_method(name: str, method: AttributionMethod, *, overwrite: bool = False) -> None:
    """Add an inseq method under ``name`` (e.g. ``AttributionMethod("gradient_shap", "l2")``)."""
    if name in ATTRIBUTION_METHODS and not overwrite:
        raise ValueError(f"attribution method {name!r} is already registered; pass overwrite=True to replace it")
    if method.reduce not in _REDUCTIONS:
        raise ValueError(f"unknown reduce {method.reduce!r}; expected one of {list(_REDUCTIONS)}")
    if method.fast_kwargs is not None and name not in ("saliency", "input_x_gradient", "integrated_gradients"):
        raise ValueError(f"the fast backend implements only saliency, input_x_gradient and integrated_gradients, not {name!r}")
    ATTRIBUTION_METHODS[name] = method


def _check_backend(backend: str) -> None:
    check_choice(backend, "backend", BACKENDS)


def _check_method(method: str, backend: str) -> AttributionMethod:
    _check_backend(backend)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list_attribution_methods()}")
    spec = ATTRIBUTION_METHODS[method]
    if backend == "fast" and spec.fast_kwargs is None:
        raise ValueError(
            f"method {method!r} has no fast backend; backend='fast' supports {list_attribution_methods('fast')}, "
            "use backend='inseq' for the others"
        )
    return spec


def _check_kwargs(method: str, given: dict[str, Any], accepted: Sequence[str], backend: str) -> None:
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(
            f"method {method!r} (backend {backend!r}) takes no argument {', '.join(map(repr, unknown))}; "
            f"it accepts {sorted(accepted)}"
        )


# --------------------------------------------------------------------------------------------------
# Words and tokens
# --------------------------------------------------------------------------------------------------
def split_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` with their character spans (:func:`toolkit.prompts.word_spans`).

    The same words as ``toolkit.faithfulness.split_words`` (which returns the strings only), so
    an :class:`Attribution`'s scores line up with the words that faithfulness metrics erase.

    Returns:
        ``[(word, start, end), ...]`` with ``text[start:end] == word``.
    """
    return [(text[s:e], s, e) for s, e in word_spans(text)]


def _words_from_tokens(token_scores: np.ndarray, token_word: np.ndarray, n_words: int) -> np.ndarray:
    """Sum of token scores per word (tokens with word index -1 are dropped)."""
    keep = token_word >= 0
    return np.bincount(token_word[keep], weights=np.asarray(token_scores, dtype=np.float64)[keep], minlength=n_words)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Attribution:
    """One example's word attribution.

    Attributes:
        example_id: the example's id.
        words: the words of the example text (:func:`split_words`).
        spans: ``(start, end)`` character offsets of each word in the example text.
        scores: one score per word (float64, read-only); >= 0, higher = more important for ``label``.
        label: the explained label: the model's prediction (argmax over the verbalizers).
        label_name: ``task.label_names[label]``.
        method: the attribution method.
        backend: ``"inseq"`` or ``"fast"``.
        probability: ``predict``'s probability of ``label`` for this example (softmax over the
            verbalizers), from the same token ids.
        input_ids: the token ids of the prompt the model was fed (``encode_example(...).ids``).
    """

    example_id: str
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    scores: np.ndarray
    label: int
    label_name: str
    method: str
    backend: str
    probability: float = float("nan")
    input_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        scores = np.array(self.scores, dtype=np.float64)
        if scores.shape != (len(self.words),):
            raise ValueError(f"{len(self.words)} words but scores of shape {scores.shape} for example {self.example_id!r}")
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)

    def to_frame(self) -> pd.DataFrame:
        """One row per word; columns as in :func:`attributions_frame`."""
        return pd.DataFrame(
            {
                "example_id": self.example_id,
                "method": self.method,
                "backend": self.backend,
                "label": self.label,
                "label_name": self.label_name,
                "probability": self.probability,
                "word_index": np.arange(len(self.words)),
                "word": list(self.words),
                "start": [s for s, _ in self.spans],
                "end": [e for _, e in self.spans],
                "score": self.scores,
            }
        )


_FRAME_COLUMNS = [
    "example_id", "method", "backend", "label", "label_name", "probability", "word_index", "word", "start", "end", "score",
]


def attributions_frame(attributions: Sequence[Attribution]) -> pd.DataFrame:
    """Tidy form: one row per (attribution, word).

    Returns:
        DataFrame with columns ``example_id``, ``method``, ``backend``, ``label``, ``label_name``,
        ``probability``, ``word_index``, ``word``, ``start``, ``end`` (character offsets in the example text), ``score``.
    """
    frames = [a.to_frame() for a in attributions]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _FRAME_COLUMNS})
    return pd.concat(frames, ignore_index=True)[_FRAME_COLUMNS]


# --------------------------------------------------------------------------------------------------
# Preparing examples
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    """An example ready to attribute: its encoded prompt and the explained label."""

    example_id: str
    encoded: EncodedPrompt
    label: int
    probability: float
    target_id: int
    target_text: str

    @property
    def ids(self) -> tuple[int, ...]:
        return self.encoded.ids

    @property
    def token_word(self) -> np.ndarray:
        return self.encoded.token_word


def _examples_of(examples: Dataset | Sequence[Example]) -> list[Example]:
    if isinstance(examples, Dataset):
        return list(examples.examples)
    if isinstance(examples, Example):
        raise ValueError("examples must be a Dataset or a sequence of Example, got a single Example; wrap it in a list")
    out = list(examples)
    bad = [type(e).__name__ for e in out if not isinstance(e, Example)]
    if bad:
        raise ValueError(f"examples must be Example objects, got {sorted(set(bad))}")
    return out


def _prepare(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: list[Example],
    *,
    batch_size: int,
    progress: bool,
) -> list[_Item]:
    """Predict each example's label and tokenise its prompt, mapping tokens to words."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"attribution needs a fast tokenizer (character offsets), got {type(tokenizer).__name__}")
    for ex in examples:
        if not _WORD.search(ex.text):
            raise ValueError(f"example {ex.id!r} has no words to attribute (text {ex.text!r})")
    verbalizers = verbalizer_ids(task, tokenizer)
    firsts = [v[0] for v in verbalizers]
    if len(set(firsts)) != len(firsts):
        raise ValueError(
            f"the verbalizers {task.verbalizers} of task {task.name!r} share a first token {firsts}: the explained "
            "token would not tell the labels apart; choose verbalizers whose first tokens differ"
        )
    demos = task_demos(task)
    texts = [e.text for e in examples]
    encoded = encode_examples(tokenizer, task, texts, demos=demos, max_length=context_length(model))
    probs = label_probs(model, tokenizer, task, texts, batch_size=batch_size, progress=progress, demos=demos)
    items = []
    for ex, enc, p in zip(examples, encoded, probs):
        label = int(np.argmax(p))
        target_id = firsts[label]
        target_text = tokenizer.decode([target_id])
        items.append(_Item(ex.id, enc, label, float(p[label]), target_id, target_text))
    return items


# --------------------------------------------------------------------------------------------------
# inseq backend
# --------------------------------------------------------------------------------------------------
class _WrapperCache(dict):
    """Per-model store of inseq wrappers; copies and pickles of the model start with an empty one."""

    def __deepcopy__(self, memo: dict) -> _WrapperCache:
        return _WrapperCache()

    def __copy__(self) -> _WrapperCache:
        return _WrapperCache()

    def __reduce__(self) -> tuple:
        return (_WrapperCache, ())


_CACHE_ATTR = "_toolkit_inseq_wrappers"


def inseq_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, method: str) -> Any:
    """The inseq wrapper of ``model`` for ``method``, built once and cached on the model.

    The wrapper calls the same module objects, so it sees ``drop_attention`` and
    ``prune_attention`` edits made later. Use it for inseq's own API, e.g.
    ``inseq_model(model, tok, "saliency").attribute(prompt, prompt + " positive").show()``.

    Building it has inseq's side effects: ``model.eval()``; ``tokenizer.truncation_side = "left"``;
    a missing ``tokenizer.unk_token_id`` / ``model.config.pad_token_id`` is set to the pad token.

    Args:
        method: a name from ``inseq.list_feature_attribution_methods()`` (registered names map to
            their ``inseq_name``).
    """
    import inseq

    name = ATTRIBUTION_METHODS[method].inseq_name if method in ATTRIBUTION_METHODS else method
    available = inseq.list_feature_attribution_methods()
    if name not in available:
        raise ValueError(f"unknown inseq method {name!r}; inseq 0.7.1 offers {sorted(available)}")
    _check_eager(model)
    cache = model.__dict__.get(_CACHE_ATTR)
    if not isinstance(cache, _WrapperCache):
        cache = _WrapperCache()
        object.__setattr__(model, _CACHE_ATTR, cache)
    hit = cache.get(name)
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    device = str(next(model.parameters()).device)
    wrapper = inseq.load_model(model, name, tokenizer=tokenizer, device=device)
    if name == "value_zeroing":
        _fix_value_zeroing(wrapper)
    cache[name] = (tokenizer, wrapper)
    return wrapper


def _check_eager(model: PreTrainedModel) -> None:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "eager"):
        raise ValueError(
            f"attribution needs eager attention, the model uses {impl!r}; load it with attn_implementation='eager' "
            "(toolkit.load_model does)"
        )


def _fix_value_zeroing(wrapper: Any) -> None:
    """inseq 0.7.1's value zeroing expects decoder layers to return tuples; transformers 5 returns a tensor.

    Replaces, on this wrapper's method instance only, the hook that swaps in clean block outputs
    with one that accepts both forms.
    """
    vz = wrapper.attribution_method.method

    def get_states_extract_and_patch_hook(self: Any, block_idx: int, hidden_state_idx: int = 0) -> Callable:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            hidden = output[hidden_state_idx] if isinstance(output, tuple) else output
            self.corrupted_block_output_states[block_idx] = hidden.clone().float().detach().cpu()
            clean = self.clean_block_output_states[block_idx].to(hidden.device, hidden.dtype)
            if isinstance(output, tuple):
                return output[:hidden_state_idx] + (clean,) + output[hidden_state_idx + 1 :]
            return clean

        return hook

    vz.get_states_extract_and_patch_hook = types.MethodType(get_states_extract_and_patch_hook, vz)


def _inseq_accepted_kwargs(wrapper: Any) -> list[str]:
    """The user-settable arguments of the inseq method's ``attribute``."""
    params = inspect.signature(wrapper.attribution_method.method.attribute).parameters
    return [p for p in params if p not in _RESERVED_KWARGS]


def _kept_layers(model: PreTrainedModel) -> list[int]:
    dropped = set(dropped_layers(model))
    return [i for i in range(len(decoder_layers(model))) if i not in dropped]


def _inseq_token_scores(
    wrapper: Any, model: PreTrainedModel, item: _Item, spec: AttributionMethod, method_kwargs: dict[str, Any], seed: int
) -> np.ndarray:
    """One example through inseq: per-token scores of the prompt tokens, reduced per ``spec.reduce``."""
    kwargs = dict(method_kwargs)
    kept = _kept_layers(model)
    if not kept and spec.reduce in ("mean", "mean_kept_layers"):
        raise ValueError(f"method {spec.inseq_name!r} reads attention, but every layer's attention is dropped")
    if spec.inseq_name == "value_zeroing":
        # inseq finds the value vectors in each attention module's source; a dropped layer has none.
        chosen = kwargs.pop("decoder_zeroed_units_indices", None)
        if isinstance(chosen, dict):
            kwargs["decoder_zeroed_units_indices"] = {k: v for k, v in chosen.items() if k in kept}
        else:
            kwargs["decoder_zeroed_units_indices"] = {k: chosen for k in kept}
    # inseq drops pad-token positions from its token list but not from the score tensor; with no pad
    # token (a single unpadded example) tokens and rows stay aligned, which is checked below.
    pad_token = wrapper.pad_token
    wrapper.pad_token = None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = wrapper.attribute(
                item.encoded.prompt.text,
                item.encoded.prompt.text + item.target_text,
                attributed_fn="probability",
                show_progress=False,
                pretty_progress=False,
                **kwargs,
            )
    finally:
        wrapper.pad_token = pad_token
    seq = out.sequence_attributions[0]
    got = [t.id for t in seq.target]
    if got != list(item.ids) + [item.target_id]:
        raise RuntimeError(
            f"inseq tokenised example {item.example_id!r} differently from toolkit.prompts.encode_example: "
            f"{got} vs {list(item.ids) + [item.target_id]}. inseq adds the tokenizer's special tokens to the prompt "
            f"and needs the answer {item.target_text!r} to extend the prompt's tokens by one; use backend='fast' "
            "or a task whose verbalizers tokenise as one token after the prompt"
        )
    raw = seq.target_attributions[: len(item.ids), 0].detach().double()
    if spec.reduce == "l2":
        scores = torch.linalg.vector_norm(raw, dim=-1)
    elif spec.reduce == "none":
        scores = raw
    elif spec.reduce == "mean":
        scores = raw.reshape(len(item.ids), -1).mean(dim=-1)
    else:  # mean_kept_layers
        scores = raw[:, kept].mean(dim=-1)
    return scores.numpy()


# --------------------------------------------------------------------------------------------------
# Fast backend
# --------------------------------------------------------------------------------------------------
def ig_quadrature(n_steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points a_s and weights w_s with int_0^1 g(a) da ~ sum_s w_s g(a_s), as captum uses them for IG.

    Gauss-Legendre: the Legendre nodes and weights mapped from [-1, 1] to [0, 1]. Riemann rules:
    w_s = 1/n at a = left, right or middle points; ``riemann_trapezoid`` is captum's: a = linspace(0,
    1, n), w = 1/n with the end weights halved (so the weights sum to (n-1)/n, as in captum).

    Returns:
        ``(alphas, weights)``, each of shape (n_steps,).
    """
    if rule not in IG_RULES:
        raise ValueError(f"unknown integration rule {rule!r}; expected one of {list(IG_RULES)}")
    minimum = 1 if rule == "gausslegendre" else 2
    n = check_int(n_steps, "n_steps", minimum)  # 1 point for Gauss-Legendre, 2 for the Riemann rules
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (x + 1.0), 0.5 * w
    weights = np.full(n, 1.0 / n)
    if rule == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        alphas = np.linspace(0.0, 1.0, n)
    elif rule == "riemann_left":
        alphas = np.linspace(0.0, 1.0 - 1.0 / n, n)
    elif rule == "riemann_middle":
        alphas = np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)
    else:
        alphas = np.linspace(1.0 / n, 1.0, n)
    return alphas, weights


def _baseline_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ids: torch.Tensor) -> torch.Tensor:
    """inseq 0.7.1's default baseline: unk (else pad) everywhere except EOS positions, which keep EOS."""
    eos = model.config.eos_token_id
    if isinstance(eos, (list, tuple)):
        eos = eos[0]
    unk = tokenizer.unk_token_id
    if unk is None:
        unk = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    if eos is None:
        eos = tokenizer.pad_token_id
    if unk is None:
        raise ValueError("the tokenizer has neither an unk nor a pad token to build the integrated-gradients baseline from")
    return torch.where(ids == eos, torch.full_like(ids, eos), torch.full_like(ids, unk))


def _shared_prefix(items: Sequence[_Item]) -> int:
    """Length of the token prefix common to all rows that holds no ranked token (and leaves >= 1 token)."""
    n = min(len(it.ids) for it in items) - 1
    for it in items:
        ranked = np.flatnonzero(it.token_word >= 0)
        if ranked.size:
            n = min(n, int(ranked[0]))
    first = items[0].ids
    for it in items[1:]:
        k = 0
        while k < n and it.ids[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def _target_prob_grads(
    model: PreTrainedModel,
    suffix: list[torch.Tensor],
    targets: torch.Tensor,
    prefix_len: int,
    cache: Any,
    cache_rows: torch.Tensor | None,
) -> list[torch.Tensor]:
    """d p(target_r | row r) / d suffix_r for each row r: one right-padded forward and backward.

    Args:
        suffix: per row, the input embeddings after the shared prefix, (L_r, H) each.
        targets: (R,) target token per row.
        prefix_len: P, the number of cached prefix positions before every row.
        cache: the prefix KV cache, or None when P == 0.
        cache_rows: which cache row each row continues.
    """
    rows, hidden = len(suffix), suffix[0].shape[-1]
    lengths = torch.tensor([s.shape[0] for s in suffix])
    width = int(lengths.max())
    device = suffix[0].device
    x = suffix[0].new_zeros(rows, width, hidden)
    mask = torch.zeros(rows, prefix_len + width, dtype=torch.long, device=device)
    mask[:, :prefix_len] = 1
    for r, s in enumerate(suffix):
        x[r, : s.shape[0]] = s
        mask[r, prefix_len : prefix_len + s.shape[0]] = 1
    x.requires_grad_(True)
    position_ids = (prefix_len + torch.arange(width, device=device)).expand(rows, width)
    last = (lengths - 1).to(device).unsqueeze(1)
    kwargs: dict[str, Any] = {}
    if cache is not None:
        kwargs["cache"] = copy.deepcopy(cache)
        kwargs["cache"].batch_select_indices(cache_rows.to(device))
        kwargs["use_cache"] = True
    else:
        kwargs["use_cache"] = False
    with torch.enable_grad():
        logits = model(inputs_embeds=x, attention_mask=mask, position_ids=position_ids, logits_to_keep=last, **kwargs).logits
        probs = torch.softmax(logits[:, -1, :].float(), dim=-1)
        picked = probs.gather(1, targets.to(device).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, x)
    return [grad[r, : int(lengths[r])].detach() for r in range(rows)]


def _pack_rows(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group row indices, longest first, so that each group's padded size rows x longest <= budget.

    Rows of similar length share a pass (little padding); every group holds at least one row.
    """
    order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
    groups: list[list[int]] = []
    for r in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _fast_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[_Item],
    method: str,
    *,
    n_steps: int,
    rule: str,
    rows_per_pass: int,
) -> list[np.ndarray]:
    """Per-token scores (each of length len(item.ids), zeros on the shared prefix) for one batch.

    Every (step, example) pair is one row: saliency and input x gradient have the single step
    a = 1 (the input itself), IG has the quadrature steps e(a) = b + a (e - b). The gradient of each
    row's target probability w.r.t. its embeddings after the shared prefix is accumulated per
    example with the step weights; the prefix of each step runs once into a KV cache.
    """
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    p = _shared_prefix(items)
    n = len(items)
    with torch.no_grad():
        ids = [torch.tensor(it.ids, device=device) for it in items]
        x = [embed(i) for i in ids]
        if method == "integrated_gradients":
            alphas, weights = ig_quadrature(n_steps, rule)
            base = [embed(_baseline_ids(model, tokenizer, i)) for i in ids]
        else:
            alphas, weights = np.ones(1), np.ones(1)
            base = [torch.zeros_like(e) for e in x]
        delta = [x[b] - base[b] for b in range(n)]
        cache = None
        if p:
            a = torch.tensor(alphas, dtype=x[0].dtype, device=device).view(-1, 1, 1)
            cache = prefix_cache(model, inputs_embeds=base[0][:p] + a * delta[0][:p])
    rows = [(s, b) for s in range(len(alphas)) for b in range(n)]
    lengths = [len(items[b].ids) - p for _, b in rows]
    budget = rows_per_pass * max(1, int(np.ceil(np.mean(lengths))))
    total = [torch.zeros_like(x[b][p:]) for b in range(n)]
    for group in _pack_rows(lengths, budget):
        part = [rows[r] for r in group]
        suffix = [base[b][p:] + float(alphas[s]) * delta[b][p:] for s, b in part]
        targets = torch.tensor([items[b].target_id for _, b in part])
        grads = _target_prob_grads(model, suffix, targets, p, cache, torch.tensor([s for s, _ in part]))
        for (s, b), g in zip(part, grads):
            total[b] += float(weights[s]) * g
    out = []
    for b, it in enumerate(items):
        attr = total[b] if method == "saliency" else total[b] * delta[b][p:]
        scores = np.zeros(len(it.ids))
        scores[p:] = torch.linalg.vector_norm(attr.double(), dim=-1).cpu().numpy()
        out.append(scores)
    return out


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------
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
        ValueError: unknown method or backend, a method option it does not take, an example with
            no words, verbalizers that share their first token.
    """
    spec = _check_method(method, backend)
    check_int(batch_size, "batch_size", 1)
    _check_eager(model)
    exs = _examples_of(examples)
    if not exs:
        raise ValueError("no examples to attribute: the example list is empty")
    wrapper = None
    if backend == "inseq":
        wrapper = inseq_model(model, tokenizer, method)
        _check_kwargs(method, method_kwargs, _inseq_accepted_kwargs(wrapper), backend)
    else:
        _check_kwargs(method, method_kwargs, spec.fast_kwargs or (), backend)
    items = _prepare(model, tokenizer, task, exs, batch_size=batch_size, progress=progress)
    if backend == "inseq":
        bar = tqdm(items, desc=f"{method} (inseq)", disable=not progress, leave=False)
        token_scores = [_inseq_token_scores(wrapper, model, it, spec, method_kwargs, seed) for it in bar]
    else:
        token_scores = _fast_token_scores(model, tokenizer, items, method, method_kwargs, batch_size, progress)
    return [
        Attribution(
            example_id=it.example_id,
            words=it.encoded.words,
            spans=it.encoded.spans,
            scores=_words_from_tokens(ts, it.token_word, len(it.encoded.words)),
            label=it.label,
            label_name=task.label_names[it.label],
            method=method,
            backend=backend,
            probability=it.probability,
            input_ids=it.ids,
        )
        for it, ts in zip(items, token_scores)
    ]


def _fast_token_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[_Item],
    method: str,
    method_kwargs: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> list[np.ndarray]:
    n_steps = method_kwargs.get("n_steps", 50)
    rule = method_kwargs.get("rule", "gausslegendre")
    if method == "integrated_gradients":
        ig_quadrature(n_steps, rule)  # validate before any work
    # Similar lengths share a batch (less padding); results go back in input order.
    order = np.argsort([-len(it.ids) for it in items], kind="stable")
    out: list[np.ndarray | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"{method} (fast)", disable=not progress, leave=False)
    for start in range(0, len(items), batch_size):
        idx = order[start : start + batch_size]
        scores = _fast_batch(
            model, tokenizer, [items[i] for i in idx], method, n_steps=n_steps, rule=rule, rows_per_pass=batch_size
        )
        for i, s in zip(idx, scores):
            out[i] = s
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Notebook display
# --------------------------------------------------------------------------------------------------
def _colour(score: float, scale: float) -> str:
    """Red for positive, blue for negative scores; opacity |score| / scale."""
    alpha = 0.0 if scale <= 0 or not np.isfinite(score) else min(abs(score) / scale, 1.0)
    rgb = "220, 38, 38" if score >= 0 else "37, 99, 235"
    return f"rgba({rgb}, {alpha:.3f})"


def attributions_html(attributions: Sequence[Attribution]) -> str:
    """A word-level heat view as an HTML string: one row per attribution.

    Each row shows the example id, the explained label, the method and backend, then the words,
    each shaded by its score divided by the row's largest absolute score (red >= 0, blue < 0);
    hovering a word shows its score. All text is HTML-escaped.
    """
    rows = []
    for a in attributions:
        finite = np.abs(a.scores[np.isfinite(a.scores)])
        scale = float(finite.max()) if finite.size else 0.0
        words = " ".join(
            f'<span style="background-color: {_colour(float(s), scale)}; padding: 1px 2px; border-radius: 3px" '
            f'title="{html.escape(f"{float(s):.4g}", quote=True)}">{html.escape(w)}</span>'
            for w, s in zip(a.words, a.scores)
        )
        head = (
            f'<span style="color: #555; font-size: 0.85em">{html.escape(a.example_id)} &middot; '
            f"label <b>{html.escape(a.label_name)}</b> &middot; {html.escape(a.method)} ({html.escape(a.backend)})</span>"
        )
        rows.append(f'<div style="margin: 0.4em 0; line-height: 1.9">{head}<br>{words}</div>')
    return '<div class="toolkit-attributions">' + "\n".join(rows) + "</div>"


def show_attributions(attributions: Sequence[Attribution]) -> HTML:
    """:func:`attributions_html` wrapped for display in a notebook (the last expression of a cell)."""
    from IPython.display import HTML

    return HTML(attributions_html(attributions))


def _shim_ipython_display() -> None:
    """inseq's ``.show()`` imports ``display`` from ``IPython.core.display``, gone in IPython 9; put it back."""
    try:
        import IPython.core.display as core_display
        from IPython.display import display
    except ImportError:  # IPython not installed: nothing to show anyway
        return
    if not hasattr(core_display, "display"):
        core_display.display = display


_shim_ipython_display()
