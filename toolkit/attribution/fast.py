"""The fast backend: saliency, input x gradient and integrated gradients for a batch at once.

IG's interpolation steps become rows beside the examples; rows of similar length share one
forward + backward; the prompt prefix shared by all rows runs once per batch and step into a KV
cache (:func:`toolkit.models.forward.prefix_cache`) that every row continues
(:func:`toolkit.models.forward.continue_prefix`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models.forward import common_prefix_length, continue_prefix, prefix_cache
from .._core.validation import InputError, check_int
from .prepare import Item
from .registry import AttributionMethod

__all__ = [
    "IG_RULES",
    "fast_token_scores",
    "ig_quadrature",
]


IG_RULES: tuple[str, ...] = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def ig_quadrature(n_steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points a_s and weights w_s with int_0^1 g(a) da ~ sum_s w_s g(a_s), as captum uses them for IG.

    Gauss-Legendre: the Legendre nodes and weights mapped from [-1, 1] to [0, 1]. Riemann rules:
    w_s = 1/n at a = left, right or middle points; ``riemann_trapezoid`` is captum's: a = linspace(0,
    1, n), w = 1/n with the end weights halved (so the weights sum to (n-1)/n, as in captum).

    Returns:
        ``(alphas, weights)``, each of shape (n_steps,).
    """
    if rule not in IG_RULES:
        raise InputError(f"unknown integration rule {rule!r}; expected one of {list(IG_RULES)}")
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
        raise InputError("the tokenizer has neither an unk nor a pad token to build the integrated-gradients baseline from")
    return torch.where(ids == eos, torch.full_like(ids, eos), torch.full_like(ids, unk))


def _shared_prefix(items: Sequence[Item]) -> int:
    """Length of the token prefix common to all rows that holds no ranked token (and leaves >= 1 token)."""
    return common_prefix_length([it.ids for it in items], [it.token_word for it in items])


def _target_prob_grads(
    model: PreTrainedModel,
    suffix: list[torch.Tensor],
    targets: torch.Tensor,
    cache: Any,
    cache_rows: torch.Tensor,
) -> list[torch.Tensor]:
    """d p(target_r | row r) / d suffix_r for each row r: one forward continuing the prefix, one backward.

    Args:
        suffix: per row, the input embeddings after the shared prefix, (L_r, H) each.
        targets: (R,) target token per row.
        cache: the prefix KV cache, or None when there is no shared prefix.
        cache_rows: which cache row each row continues.
    """
    leaves = [s.detach().requires_grad_(True) for s in suffix]
    with torch.enable_grad():
        logits = continue_prefix(model, leaves, cache, cache_rows=cache_rows)
        probs = torch.softmax(logits, dim=-1)
        picked = probs.gather(1, targets.to(logits.device).view(-1, 1)).sum()
        grads = torch.autograd.grad(picked, leaves)
    return [g.detach() for g in grads]


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
    items: Sequence[Item],
    spec: AttributionMethod,
    *,
    n_steps: int,
    rule: str,
    rows_per_pass: int,
) -> list[np.ndarray]:
    """Per-token scores (each of length len(item.ids), zeros on the shared prefix) for one batch.

    Every (step, example) pair is one row: saliency and input x gradient have the single step
    a = 1 (the input itself), IG has the quadrature steps e(a) = b + a (e - b). The gradient of each
    row's target probability w.r.t. its embeddings after the shared prefix is accumulated per
    example with the step weights; the prefix of each step runs once into a KV cache. Per token,
    ``spec.reduce`` "l2" takes the norm over the embedding dimension, "sum" the (signed) sum.
    """
    method = spec.inseq_name
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
        grads = _target_prob_grads(model, suffix, targets, cache, torch.tensor([s for s, _ in part]))
        for (s, b), g in zip(part, grads):
            total[b] += float(weights[s]) * g
    out = []
    for b, it in enumerate(items):
        attr = total[b] if method == "saliency" else total[b] * delta[b][p:]
        scores = np.zeros(len(it.ids))
        reduced = attr.double().sum(dim=-1) if spec.reduce == "sum" else torch.linalg.vector_norm(attr.double(), dim=-1)
        scores[p:] = reduced.cpu().numpy()
        out.append(scores)
    return out


def fast_token_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[Item],
    spec: AttributionMethod,
    method_kwargs: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> list[np.ndarray]:
    method = spec.inseq_name
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
            model, tokenizer, [items[i] for i in idx], spec, n_steps=n_steps, rule=rule, rows_per_pass=batch_size
        )
        for i, s in zip(idx, scores):
            out[i] = s
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]
