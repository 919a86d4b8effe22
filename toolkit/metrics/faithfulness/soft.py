"""Soft comprehensiveness and sufficiency: words erased softly, by Bernoulli masks on their embeddings.

Zhao & Aletras 2023, "Incorporating Attribution Importance for Improving Faithfulness Metrics"
(ACL, https://arxiv.org/abs/2305.10496). Hard erasure deletes the top-k words; the soft metrics
keep every word and mask each element of its token embeddings at random instead, with a keep
probability set by the word's attribution score q_j in [0, 1] (the scores min-max normalised per
example, :func:`keep_probabilities`):

    x'_suff = e(x) * m,  m_{t,h} ~ Bernoulli(q_{w(t)})        (the important words survive)
    x'_comp = e(x) * m,  m_{t,h} ~ Bernoulli(1 - q_{w(t)})    (the important words fade)

for every token t of the example text (w(t) its word, h the embedding dimension); the prompt
around the text (BOS, instruction, demonstrations, template) is never masked. The metrics:

    soft_comprehensiveness = E[ max(0, p(y^|x) - p(y^|x'_comp)) ]        in [0, 1], higher = more faithful
    soft_sufficiency       = E[ 1 - max(0, p(y^|x) - p(y^|x'_suff)) ]    in [0, 1], higher = more faithful

These are the registered metrics, raw: unlike AOPC (whose bounds over orderings NAOPC uses),
a soft metric has no attainable bound to normalise by. Zhao & Aletras additionally divide by
1 - S(0) = max(0, p(y^|x) - p(y^|0)), the drop when every example embedding is zeroed (Carton
et al. 2020's normalisation: NC = C / (1 - S(0)), NS = (S - S(0)) / (1 - S(0))); that
denominator can be ~0 (values of 8 on a tiny random model), so the normalised values are only
given beside the raw ones by :func:`~toolkit.metrics.faithfulness.soft_erasure` (NaN where masking
everything does not lower p(y^)). The expectation over masks is a Monte Carlo mean
over ``n_samples`` draws. The draws are common random numbers: one uniform field per (example
text, sample), u_{t,h} ~ U(0, 1) from ``numpy.random.default_rng([seed, crc32(text), sample])``,
and m = (u < keep); so every method, the random baseline and every model state (a pruned cell
and its unpruned reference) see the same field, which pairs their differences.

A scorer computes the soft metrics when it accepts :class:`Masked` variants (its
``accepts_masks`` attribute is True; :func:`toolkit.metrics.faithfulness.model_scorer`'s does). The
engine (:func:`toolkit.metrics.faithfulness.metrics.evaluate`) queues the masked variants beside the
erased ones, so they are batched, deduplicated and memoised per model state the same way.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._core.validation import InputError
from .erasure import Variant

__all__ = [
    "Masked",
    "embedding_mask",
    "keep_probabilities",
    "mask_seed",
    "masked_label_probs",
]



class Masked(Variant):
    """An unerased example whose word embeddings are masked at random (see the module docstring).

    Attributes:
        keep: per word, the probability that each element of its token embeddings is kept.
        seed: the seed of the uniform field the mask is drawn from (:func:`embedding_mask`).
    """

    keep: tuple[float, ...]
    seed: tuple[int, ...]

    def __new__(cls, variant: Variant, keep: Sequence[float], seed: Sequence[int]) -> Masked:
        obj = super().__new__(cls, variant, variant.text, variant.source)
        obj.keep = tuple(float(q) for q in keep)
        obj.seed = tuple(int(s) for s in seed)
        if len(obj.keep) != len(variant):
            raise InputError(f"keep has {len(obj.keep)} probabilities for {len(variant)} words")
        return obj

    @property
    def key(self) -> tuple:
        # no draw happens for keep in {0, 1}: the seed is left out so those variants are shared
        deterministic = all(q in (0.0, 1.0) for q in self.keep)
        return tuple(self), self.text, "masked", self.keep, () if deterministic else self.seed


def keep_probabilities(scores: Any) -> np.ndarray:
    """An example's attribution scores min-max normalised to [0, 1] (1 = the most important word).

    Constant scores carry no ranking: every word gets 1/2.
    """
    s = np.asarray(scores, dtype=float)
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.full(s.shape, 0.5)
    return (s - lo) / (hi - lo)


def mask_seed(seed: int, text: str, sample: int) -> tuple[int, int, int]:
    """The seed of sample ``sample``'s uniform field for ``text``: ``(seed, crc32(text), sample)``."""
    return int(seed), zlib.crc32(text.encode("utf-8")), int(sample)


def embedding_mask(keep_per_token: np.ndarray, hidden: int, seed: Sequence[int]) -> np.ndarray:
    """The 0/1 mask of the example's tokens, shape (T, hidden): ``u < keep`` with
    ``u = numpy.random.default_rng(seed).random((T, hidden))``, T the number of example tokens in
    prompt order and ``keep_per_token[t]`` the keep probability of token t's word."""
    keep = np.asarray(keep_per_token, dtype=float).reshape(-1, 1)
    u = np.random.default_rng(list(seed)).random((keep.shape[0], int(hidden)))
    return (u < keep).astype(np.float32)


def masked_label_probs(model: Any, tokenizer: Any, task: Any, variants: Sequence[Masked], *,
                       batch_size: int = 16) -> np.ndarray:
    """Class probabilities of the task's prompt with each variant's example embeddings masked.

    Each variant's text is encoded as :func:`toolkit.data.prompts.encode_example` encodes it (the same
    ids ``label_probs`` scores), its tokens are embedded with the model's input embeddings, the
    example's tokens multiplied by :func:`embedding_mask`, and the next-token logits of the label
    verbalizers' tokens give p(c | x') = softmax over the labels. The prompt prefix shared by every
    row (up to the first example token) runs once into a KV cache that every row continues
    (:func:`toolkit.models.forward.continue_prefix`, as :func:`toolkit.models.scoring.label_probs` does).

    Raises:
        InputError: a verbalizer of more than one token (the soft metrics read one next-token
            distribution).
    """
    import torch

    from ...data.prompts import context_length, encode_example, task_demos, verbalizer_ids
    from ...models.forward import common_prefix_length, continue_prefix, prefix_cache

    verbalizers = verbalizer_ids(task, tokenizer)
    if any(len(v) != 1 for v in verbalizers):
        raise InputError(f"soft faithfulness metrics need single-token verbalizers; task {task.name!r} has "
                         f"{task.verbalizers} -> tokens {verbalizers}; use one-token answer words")
    demos = task_demos(task)
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    encoded = {}
    for v in variants:
        if v.text not in encoded:
            encoded[v.text] = encode_example(tokenizer, task, v.text, demos=demos, max_length=context_length(model))
    ids = [encoded[v.text].ids for v in variants]
    prefix = common_prefix_length(ids, [encoded[v.text].token_word for v in variants])  # masks start after it
    label_tok = torch.tensor([v[0] for v in verbalizers], device=device)
    out = np.zeros((len(variants), len(verbalizers)))
    with torch.no_grad():
        cache = prefix_cache(model, input_ids=torch.tensor([list(ids[0][:prefix])], device=device)) if prefix else None
        order = np.argsort([-len(i) for i in ids], kind="stable")
        embedded: dict[str, Any] = {}
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = []
            for i in idx:
                v, enc = variants[i], encoded[variants[i].text]
                if v.text not in embedded:  # one lookup per text, shared by all its masked variants
                    embedded[v.text] = embed(torch.tensor(enc.ids, device=device))
                x = embedded[v.text]
                tw = enc.token_word
                mine = np.flatnonzero(tw >= 0)
                if mine.size:
                    keep = np.asarray(v.keep)[tw[mine]]
                    m = torch.from_numpy(embedding_mask(keep, x.shape[-1], v.seed)).to(device=device, dtype=x.dtype)
                    x = x.clone()
                    x[torch.from_numpy(mine).to(device)] *= m
                rows.append(x[prefix:])
            logits = continue_prefix(model, rows, cache)[:, label_tok]
            out[idx] = torch.softmax(logits, dim=-1).double().cpu().numpy()
    return out
