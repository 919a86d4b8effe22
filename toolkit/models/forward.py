"""The one cached-prefix forward: rows continue a prompt prefix whose KV cache was computed once.

Label scoring (:mod:`toolkit.models.scoring`), the fast attribution backend
(:mod:`toolkit.attribution.fast`) and the soft erasure metrics
(:mod:`toolkit.metrics.faithfulness.soft`) all ask one question of a batch: the next-token logits
after each row, where every row is the same prompt prefix (already run into a cache by
:func:`prefix_cache`) followed by tokens of its own. :func:`continue_prefix`
answers it, and is the only place that builds that batch. What it must get right, and why:

- **Right padding after the prefix.** Each row's tokens sit at positions ``P, P+1, ...`` right after
  the P prefix positions, and padding comes after every real token, so no real token attends to it
  (causal attention) and a row's logits do not depend on what else is in the batch. Left padding
  between the prefix and a row would put pad positions inside the row's attention span; masked, they
  still shift the row inside a sliding attention window (Gemma 2/3, Mistral), which changes its scores.
- **Explicit ``position_ids``** ``P + arange(width)``: transformers 5 derives positions from the cache
  position, not from the attention mask. The mask covers prefix + row: ones over the prefix, ones
  over each row's real tokens, zeros over its padding.
- **The cache is copied, then given the batch's rows.** A forward appends to the cache it is given
  (and a slot of a dropped attention layer, `toolkit.models.pruned_arch.NoKVLayer`, counts the tokens
  that pass it), so every call continues a deep copy and the caller's prefix cache stays the prefix.
  The copy's row ``cache_rows[r]`` is selected for row r (default: row 0 for every row, a one-row
  prefix repeated over the batch). ``batch_select_indices`` moves nothing on a slot without KV.
- **The prefix length is the cache's own length**, ``cache.get_seq_length()``, which transformers
  5.25 reads from layer 0 with no fallback: with attention layer 0 dropped, that is the `NoKVLayer`
  standing in for it, which counts the tokens that passed it (a plain transformers ``DummyLayer``
  has no length and would break every cached forward). A sliding-window layer answers with the
  tokens seen, not the window it keeps.
- **The v5 keyword** ``cache=`` (``past_key_values`` is deprecated in transformers 5).
- **Logits only where they are read.** ``logits_to_keep`` is given each row's last real position as a
  ``(R, 1)`` integer tensor (transformers' ``slice_logits_to_keep``: per-row positions), so the
  vocabulary projection runs once per row, not over the padded width. A model whose forward does
  not slice per row (an older transformers) is refused with the shape it returned, never misread.

Token ids and input embeddings are both accepted (scoring feeds ids; attribution and the soft
metrics feed embeddings, interpolated or masked). Gradients flow to embedding rows that require
them, so the caller decides the grad mode (scoring and the soft metrics call it under
``torch.no_grad``; fast attribution differentiates the rows).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from .._core.validation import InputError

__all__ = ["common_prefix_length", "continue_prefix", "prefix_cache"]


def continue_prefix(
    model: PreTrainedModel,
    rows: Sequence[Sequence[int]] | Sequence[torch.Tensor],
    cache: Any = None,
    *,
    cache_rows: torch.Tensor | Sequence[int] | None = None,
    pad_id: int = 0,
) -> torch.Tensor:
    """Next-token logits after each row, every row continuing the cached prefix: one forward (see the module).

    Args:
        model: a causal LM, in the state (layers dropped or not) the cache was computed in.
        rows: each row's tokens after the prefix, at least one each: token ids (sequences of int or
            1-D integer tensors) or input embeddings ((L_r, H) float tensors, gradients kept).
        cache: the prefix's KV cache (:func:`prefix_cache`); not modified.
            None: no prefix, the rows are whole prompts.
        cache_rows: which row of the cache each row continues, (R,); default row 0 for every row.
        pad_id: the id written into the padding of token-id rows (masked: it changes no logit).

    Returns:
        (R, V) float32 logits of the next token after each row's last real token.
    """
    if not len(rows):
        raise InputError("continue_prefix needs at least one row")
    embeds = isinstance(rows[0], torch.Tensor) and rows[0].is_floating_point()
    device = rows[0].device if embeds else next(model.parameters()).device
    if not embeds:
        rows = [torch.as_tensor(r, dtype=torch.long, device=device).reshape(-1) for r in rows]
    lengths = [int(r.shape[0]) for r in rows]
    if min(lengths) < 1:
        raise InputError("every row needs at least one token after the prefix")
    n, width = len(rows), max(lengths)
    prefix_len = 0 if cache is None else int(cache.get_seq_length())
    # right padding: (0, 0) leaves the hidden dimension of embedding rows alone
    pad = [(0, 0, 0, width - l) if embeds else (0, width - l) for l in lengths]
    x = torch.stack([torch.nn.functional.pad(r, p, value=0.0 if embeds else pad_id) for r, p in zip(rows, pad)])
    length = torch.tensor(lengths, device=device)
    mask = torch.cat([
        torch.ones((n, prefix_len), dtype=torch.long, device=device),
        (torch.arange(width, device=device) < length[:, None]).long(),
    ], dim=1)
    position_ids = (prefix_len + torch.arange(width, device=device)).expand(n, width)
    kwargs: dict[str, Any] = {"use_cache": cache is not None}
    if cache is not None:
        cache = copy.deepcopy(cache)
        index = torch.zeros(n, dtype=torch.long) if cache_rows is None else torch.as_tensor(cache_rows)
        cache.batch_select_indices(index.to(device=device, dtype=torch.long))
        kwargs["cache"] = cache
    key = "inputs_embeds" if embeds else "input_ids"
    logits = model(**{key: x}, attention_mask=mask, position_ids=position_ids,
                   logits_to_keep=(length - 1)[:, None], **kwargs).logits
    if logits.shape[:2] != (n, 1):
        raise RuntimeError(
            f"{type(model).__name__} returned logits of shape {tuple(logits.shape)} for one position per row "
            f"(expected ({n}, 1, vocab)): its forward does not take per-row logits_to_keep positions; "
            "install the locked transformers (requirements/lock.txt)"
        )
    return logits[:, 0, :].float()


def common_prefix_length(token_ids: Sequence[Sequence[int]],
                         token_words: Sequence[Sequence[int]] | None = None) -> int:
    """Length of the token prefix shared by every prompt, leaving each at least one token of its own.

    With ``token_words`` (per prompt, each token's word index, -1 outside the example text), the
    prefix also ends before the first token of any example word: the words an explanation ranks or
    a soft mask erases stay in the rows, where they can differ (fast attribution, soft erasure).
    """
    n = min(len(t) for t in token_ids) - 1
    first = token_ids[0]
    for ids in token_ids[1:]:
        k = 0
        while k < n and ids[k] == first[k]:
            k += 1
        n = k
    for words in token_words or ():
        ranked = np.flatnonzero(np.asarray(words) >= 0)
        if ranked.size:
            n = min(n, int(ranked[0]))
    return max(n, 0)


def prefix_cache(model: PreTrainedModel, *, input_ids: torch.Tensor | None = None,
                 inputs_embeds: torch.Tensor | None = None) -> Any:
    """KV cache of a shared prompt prefix, computed once, without gradients; rows continue it later
    (:func:`continue_prefix`).

    Give exactly one of ``input_ids`` (R, P) or ``inputs_embeds`` (R, P, H): R rows of P prefix
    positions, all real tokens (mask of ones, positions 0..P-1). Only the last position's logits
    are computed. Used by scoring (token ids) and the fast attribution backend (embeddings of the
    interpolation steps).
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("pass exactly one of input_ids and inputs_embeds")
    x = input_ids if input_ids is not None else inputs_embeds
    rows, p = x.shape[:2]
    kwargs: dict[str, Any] = {}
    if inputs_embeds is not None:  # the scoring path has always called the model with ids alone
        kwargs = dict(
            attention_mask=torch.ones((rows, p), dtype=torch.long, device=x.device),
            position_ids=torch.arange(p, device=x.device).expand(rows, p),
        )
    with torch.no_grad():
        out = model(input_ids=input_ids, inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1, **kwargs)
    return out.cache
