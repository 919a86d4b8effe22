"""continue_prefix, the one cached-prefix forward, against one uncached forward of prefix + row per row.

Scoring, fast attribution and the soft metrics read their logits from `continue_prefix`; the
reference here shares nothing with it: each row alone, prefix and row as one sequence, no cache, no
padding, no position ids. Every architecture, token ids and embeddings, a one-row prefix repeated and
a many-row prefix selected per row (IG steps), batches of one and of mixed lengths, prefixes longer
than the tiny sliding window (4 on Gemma 2/3), and attention layers dropped (layer 0 included:
transformers 5.25 reads the cache's length from layer 0).
"""

from __future__ import annotations

import pytest
import torch

from tiny import CONFIGS, tiny_model
from toolkit import drop_attention
from toolkit.models.forward import continue_prefix
from toolkit.models.forward import prefix_cache

ATOL = 1e-5  # fp32 tiny models; the cached and uncached routes sum in another order (observed ~1e-7)
L = 4  # layers of every tiny model
PREFIX = 6  # longer than the sliding window of the tiny Gemma 2/3 (4)
LENGTHS = (5, 1, 3, 5, 2)  # mixed, so rows are padded, and some rows share a length


def _ids(length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (length,), generator=g)


def _reference(model, sequences, *, embeds=False):
    """Last-position logits of each whole sequence, one uncached forward each."""
    key = "inputs_embeds" if embeds else "input_ids"
    return torch.stack([model(**{key: s[None]}, use_cache=False).logits[0, -1].float() for s in sequences])


@pytest.mark.parametrize("drop", ([], [0], [0, L - 1], [1, 2]), ids=str)
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_token_rows_continue_the_prefix_as_one_uncached_forward(arch, drop):
    model = tiny_model(arch)
    prefix = _ids(PREFIX, 0)
    rows = [_ids(n, 10 + i) for i, n in enumerate(LENGTHS)]
    with torch.no_grad(), drop_attention(model, drop):
        expected = _reference(model, [torch.cat([prefix, r]) for r in rows])
        cache = prefix_cache(model, input_ids=prefix[None])
        batched = continue_prefix(model, [r.tolist() for r in rows], cache, pad_id=0)
        one_by_one = torch.cat([continue_prefix(model, [r], cache) for r in rows])
        assert cache.get_seq_length() == PREFIX  # the caller's cache is left as the prefix
        uncached = continue_prefix(model, rows)  # no prefix: the rows are whole prompts
        expected_uncached = _reference(model, rows)
    torch.testing.assert_close(batched, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(one_by_one, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(uncached, expected_uncached, atol=ATOL, rtol=0)
    assert batched.dtype == torch.float32 and batched.shape == (len(rows), model.config.vocab_size)


@pytest.mark.parametrize("drop", ([], [0]), ids=str)
@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "GPT2LMHeadModel",
                                  "OPTForCausalLM", "GPTNeoXForCausalLM"])
def test_embedding_rows_select_their_cache_row_and_carry_gradients(arch, drop):
    """As fast attribution calls it: S prefix rows (IG steps), each row continuing one, gradients to the rows."""
    model = tiny_model(arch)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        steps = torch.tensor([0.25, 1.0]).view(-1, 1, 1)
        prefixes = steps * embed(_ids(PREFIX, 1))  # (S, P, H): one prefix per step
        rows = [0.5 * embed(_ids(n, 20 + i)) for i, n in enumerate(LENGTHS)]
    step_of = torch.tensor([1, 0, 1, 0, 0])
    with drop_attention(model, drop):
        leaves = [r.clone().requires_grad_(True) for r in rows]
        whole = [torch.cat([prefixes[s], r]) for s, r in zip(step_of, leaves)]
        expected = _reference(model, whole, embeds=True)
        target = torch.arange(len(rows)) + 3
        ref_grads = torch.autograd.grad(torch.softmax(expected, -1)[torch.arange(len(rows)), target].sum(), leaves)

        cache = prefix_cache(model, inputs_embeds=prefixes)
        mine = [r.clone().requires_grad_(True) for r in rows]
        got = continue_prefix(model, mine, cache, cache_rows=step_of)
        grads = torch.autograd.grad(torch.softmax(got, -1)[torch.arange(len(rows)), target].sum(), mine)
    torch.testing.assert_close(got, expected.detach(), atol=ATOL, rtol=0)
    for g, ref in zip(grads, ref_grads):
        assert g.shape == ref.shape
        torch.testing.assert_close(g, ref, atol=ATOL, rtol=0)


def test_a_one_row_prefix_is_repeated_for_every_row():
    """cache_rows defaults to row 0 for every row: the same as selecting row 0 explicitly."""
    model = tiny_model("Gemma3ForCausalLM")
    rows = [_ids(n, 30 + i) for i, n in enumerate(LENGTHS)]
    with torch.no_grad():
        cache = prefix_cache(model, input_ids=_ids(PREFIX, 2)[None])
        default = continue_prefix(model, rows, cache)
        explicit = continue_prefix(model, rows, cache, cache_rows=[0] * len(rows))
    torch.testing.assert_close(default, explicit, atol=0, rtol=0)


def test_rows_without_tokens_are_refused():
    from toolkit import InputError

    model = tiny_model()
    with pytest.raises(InputError, match="at least one"):
        continue_prefix(model, [])
    with pytest.raises(InputError, match="at least one token"):
        continue_prefix(model, [[5, 6], []])
