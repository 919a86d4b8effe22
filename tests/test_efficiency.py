"""FLOP formulas against torch's FlopCounterMode, KV bytes against kept/L, the efficiency table's shape.

No timing assertions here: speed targets live in benchmarks/bench_pruning.py.
"""

from __future__ import annotations

import collections
import copy

import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, LlamaConfig

from tiny import CONFIGS, tiny_model, tiny_tokenizer
from toolkit import drop_attention, n_parameters, prune_attention
from toolkit.pruning.efficiency import (
    TABLE_COLUMNS,
    _input_ids,
    _median_times,
    efficiency_table,
    importance_overhead,
    kv_cache_bytes,
    measure_latency,
    model_bytes,
)
from toolkit.pruning.flops import attention_flop_share, flop_ideal_saving, flops_per_token, forward_flops
from toolkit.pruning.timing import paired_saving_ci, time_interleaved
from toolkit.models.adapters import adapter_for
from toolkit.pruning.timing import paired_saving as _paired_saving

B, S = 2, 9
# Gemma 2/3 tiny models slide a window of 4 over the cache: in decoding those layers keep fewer
# keys than the formula's `past_len` (a documented over-count); in prefill eager still computes
# the full S x S matrix, so the prefill formula holds for them too.
SLIDING = {"Gemma2ForCausalLM", "Gemma3ForCausalLM"}
FULL_ATTENTION = sorted(set(CONFIGS) - SLIDING)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second thread only adds contention on the shared 2-core machine (0.5 s vs 4 ms a forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ids(seed: int = 0, batch: int = B, length: int = S) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, length), generator=g)


def counted(fn) -> FlopCounterMode:
    counter = FlopCounterMode(display=False, depth=None)
    with torch.inference_mode(), counter:
        fn()
    return counter


# --------------------------------------------------------------------------------------------------
# FLOPs vs the independent counter
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_prefill_flops_match_flop_counter(arch):
    model = tiny_model(arch)
    x = ids()
    counter = counted(lambda: model(x, use_cache=False))
    assert forward_flops(model, S, batch=B)["total"] == counter.get_total_flops()


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_prefill_flops_with_logits_to_keep_match(arch):
    model = tiny_model(arch)
    x = ids(1)
    counter = counted(lambda: model(x, use_cache=True, logits_to_keep=1))
    assert forward_flops(model, S, batch=B, logits_to_keep=1)["total"] == counter.get_total_flops()


def test_llama_flops_per_part_match_flop_counter():
    """Module by module: attention (projections + full S x S scores), MLP, LM head."""
    model = tiny_model("LlamaForCausalLM")
    x = ids(2)
    counts = counted(lambda: model(x, use_cache=False)).get_flop_counts()
    ours = forward_flops(model, S, batch=B)
    n = model.config.num_hidden_layers
    per = lambda name: sum(counts[f"LlamaForCausalLM.model.layers.{name}"].values())  # noqa: E731
    for i in range(n):
        assert per(f"{i}.self_attn") * n == ours["attention_proj"] + ours["attention_scores"]
        assert per(f"{i}.mlp") * n == ours["mlp"]
    assert sum(counts["LlamaForCausalLM.lm_head"].values()) == ours["lm_head"]


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_decode_step_flops_match_flop_counter(arch):
    """One cached decode step attends to past + 1 keys; sliding-window layers hold fewer (over-count)."""
    model = tiny_model(arch)
    x = ids(3)
    with torch.inference_mode():
        cache = model(x, use_cache=True).cache
    nxt = ids(4, length=1)
    counter = counted(lambda: model(nxt, cache=cache, use_cache=True))
    ours = forward_flops(model, 1, batch=B, past_len=S)["total"]
    if arch in SLIDING:
        assert counter.get_total_flops() < ours
    else:
        assert counter.get_total_flops() == ours


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "GPT2LMHeadModel", "OPTForCausalLM"])
def test_dropped_attention_is_not_computed_and_formula_follows(arch):
    model = tiny_model(arch)
    x = ids(5)
    drop = [0, 2]
    expected = forward_flops(model, S, batch=B, layers_dropped=drop)["total"]
    assert expected < forward_flops(model, S, batch=B)["total"]
    with drop_attention(model, drop):
        # the formula sees the active drop by itself, and the counter agrees: nothing is computed
        assert forward_flops(model, S, batch=B)["total"] == expected
        assert counted(lambda: model(x, use_cache=False)).get_total_flops() == expected
    pruned = prune_attention(copy.deepcopy(model), drop)
    assert counted(lambda: pruned(x, use_cache=False)).get_total_flops() == expected
    assert forward_flops(pruned, S, batch=B)["total"] == expected
    # already-dropped layers named again are not subtracted twice
    assert forward_flops(pruned, S, batch=B, layers_dropped=drop)["total"] == expected


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched (an independent view of the work done, timing-free)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "GPT2LMHeadModel", "Gemma3ForCausalLM"])
def test_reversible_drop_does_exactly_the_work_of_the_structural_one(arch):
    """Op for op, a prefill + a cached decode step under drop_attention == the pruned model's."""
    model = tiny_model(arch)
    x = ids(8)

    def ops(m):
        with torch.inference_mode(), OpCounter() as counter:
            out = m(x, use_cache=True, logits_to_keep=1)
            m(x[:, :1], cache=out.cache, use_cache=True)
        return counter.ops

    full = ops(model)
    with drop_attention(model, [0, 2]):
        reversible = ops(model)
    structural = ops(prune_attention(copy.deepcopy(model), [0, 2]))
    assert reversible == structural
    assert sum(full.values()) > sum(structural.values()) and full["aten.softmax"] > structural["aten.softmax"]


def smollm2_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True,
    )  # fmt: skip


def test_smollm2_flops_by_hand():
    """Hand-computed per-token numbers for SmolLM2-135M at S = 256 (no weights needed)."""
    cfg = smollm2_config()
    f = forward_flops(cfg, 256)
    # q, k, v: 2*576*(576 + 192 + 192) = 1,105,920; o: 2*576*576 = 663,552
    assert f["attention_proj"] == 30 * 256 * 1_769_472
    # QK^T and AV over the full 256 x 256 matrix: 2 * 2*9*256*64 = 589,824 per token
    assert f["attention_scores"] == 30 * 256 * 589_824
    # gate, up, down: 3 * 2*576*1536 = 5,308,416 per token
    assert f["mlp"] == 30 * 256 * 5_308_416
    assert f["lm_head"] == 256 * 56_623_104  # 2*576*49152
    assert flops_per_token(cfg, 256) == 30 * (1_769_472 + 589_824 + 5_308_416) + 56_623_104
    # prefill as generate runs it (logits for the last position only): 10 layers -> 10.26 %
    ideal = flop_ideal_saving(cfg, range(10), seq_len=256, logits_to_keep=1)
    body = 256 * 30 * (1_769_472 + 589_824 + 5_308_416)
    assert ideal == pytest.approx(256 * 10 * (1_769_472 + 589_824) / (body + 56_623_104), rel=1e-12)


def test_flop_ideal_saving_identities():
    cfg = smollm2_config()
    assert flop_ideal_saving(cfg, [], seq_len=64) == 0.0
    a, b = flop_ideal_saving(cfg, [1, 4], seq_len=64), flop_ideal_saving(cfg, [7], seq_len=64)
    assert flop_ideal_saving(cfg, [1, 4, 7], seq_len=64) == pytest.approx(a + b, rel=1e-12)
    f = forward_flops(cfg, 64)
    share = (f["attention_proj"] + f["attention_scores"]) / f["total"]
    assert attention_flop_share(cfg, 64) == pytest.approx(share, rel=1e-12)
    assert attention_flop_share(cfg, 64, layers=[1, 4]) == pytest.approx(a, rel=1e-12)
    # the batch cancels
    assert flop_ideal_saving(cfg, [3], seq_len=64, batch=5) == pytest.approx(flop_ideal_saving(cfg, [3], seq_len=64))


def test_flop_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="model_type 'bert'.*supported"):
        forward_flops(BertConfig(), 8)
    with pytest.raises(ValueError, match=r"holds 30; allowed: integers in \[0, 30\)"):
        forward_flops(smollm2_config(), 8, layers_dropped=[30])
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1, got 0"):
        forward_flops(smollm2_config(), 0)
    with pytest.raises(TypeError, match="expected a transformers model or config"):
        forward_flops("smollm2", 8)


# --------------------------------------------------------------------------------------------------
# Bytes
# --------------------------------------------------------------------------------------------------
def prefill_cache(model, x):
    with torch.inference_mode():
        return model(x, use_cache=True, logits_to_keep=1).cache


@pytest.mark.parametrize("arch", FULL_ATTENTION)
def test_kv_bytes_are_kept_over_l_exactly(arch):
    model = tiny_model(arch)
    cfg = model.config
    n = cfg.num_hidden_layers
    x = ids(6)
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    full = kv_cache_bytes(prefill_cache(model, x))
    assert full == 2 * n * B * kv_heads * S * head_dim * 4  # keys + values, float32
    drop = [1, 3]
    with drop_attention(model, drop):
        assert kv_cache_bytes(prefill_cache(model, x)) * n == full * (n - len(drop))
    pruned = prune_attention(copy.deepcopy(model), drop)
    assert kv_cache_bytes(prefill_cache(pruned, x)) * n == full * (n - len(drop))


def test_kv_bytes_legacy_tuples_and_errors():
    k = torch.zeros(2, 3, 5, 4)
    assert kv_cache_bytes(((k, k), None, (k, k.half()))) == 3 * k.numel() * 4 + k.numel() * 2
    with pytest.raises(TypeError, match="got int"):
        kv_cache_bytes(3)


def test_model_bytes_counts_tied_weights_once_and_falls_by_pruned_parameters():
    model = tiny_model("LlamaForCausalLM")
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert model_bytes(model) == 4 * n_parameters(model) + buffers
    pruned = prune_attention(copy.deepcopy(model), [0])
    assert model_bytes(model) - model_bytes(pruned) == 4 * (n_parameters(model) - n_parameters(pruned))


# --------------------------------------------------------------------------------------------------
# Timing harness and table (shape and bookkeeping only)
# --------------------------------------------------------------------------------------------------
def test_time_interleaved_runs_abcabc_and_keeps_only_timed_rounds():
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    df = time_interleaved(runs, repeats=2, warmup=1)
    assert calls == list("ABCABCABC")
    assert list(df.name) == list("ABCABC") and list(df.repeat) == [0, 0, 0, 1, 1, 1]
    assert (df.seconds >= 0).all() and (df.cpu_seconds >= 0).all() and df.attrs["threads"] == 1
    with pytest.raises(ValueError, match="repeats must be an integer >= 1, got 0"):
        time_interleaved(runs, repeats=0)


def test_input_ids_from_tokenizer_and_tensor():
    tok = tiny_tokenizer()
    x = _input_ids(tok, 3, 20)
    assert x.shape == (3, 20) and x.dtype == torch.long
    assert torch.equal(x[1, :-1], x[0, 1:])  # rows are the same passage shifted by one token
    assert _input_ids(ids(), None, None) is not None
    with pytest.raises(ValueError, match=r"batch=4 disagrees with input_ids of shape \(2, 9\)"):
        _input_ids(ids(), 4, None)


def test_measure_latency_reports_kv_and_model_bytes():
    model = tiny_model("LlamaForCausalLM")
    out = measure_latency(model, ids(), new_tokens=2, repeats=1, warmup=0, prefills_per_round=2)
    assert out["kv_bytes"] == kv_cache_bytes(prefill_cache(model, ids()))
    assert out["model_bytes"] == model_bytes(model) and (out["batch"], out["prefill_tokens"]) == (B, S)
    assert out["prefill_s"] > 0 and out["decode_s_per_token"] > 0 and out["prefill_s_cpu"] > 0


def test_efficiency_table_columns_and_invariants():
    model = tiny_model("LlamaForCausalLM")
    x = ids(7)
    with torch.no_grad():
        before = model(x).logits
    df = efficiency_table(model, x, {0: [], 1: [2], 2: [0, 3]}, new_tokens=2, repeats=1, warmup=0)
    assert tuple(df.columns) == TABLE_COLUMNS
    assert list(zip(df["mode"], df["k"])) == [
        ("baseline", 0), ("structural", 1), ("reversible", 1), ("structural", 2), ("reversible", 2)
    ]
    n = model.config.num_hidden_layers
    assert (df.kv_ratio == df.kv_ratio_ideal).all() and list(df.kv_ratio_ideal) == [1, (n - 1) / n, (n - 1) / n, 0.5, 0.5]
    base = df.iloc[0]
    rev, struct = df[df["mode"] == "reversible"], df[df["mode"] == "structural"]
    assert (rev.params == base.params).all() and (struct.params < base.params).all()
    assert (rev.model_bytes == base.model_bytes).all() and (struct.model_bytes < base.model_bytes).all()
    for _, row in df.iloc[1:].iterrows():
        assert row.flop_ideal_saving == flop_ideal_saving(model, row.layers, seq_len=S, batch=B, logits_to_keep=1)
    for col in ("prefill_vs_structural", "decode_vs_structural_cpu"):
        assert df[col].notna().tolist() == [False, False, True, False, True]
    assert df.saving_vs_ideal_cpu.isna().tolist() == [True, False, False, False, False]
    raw = df.attrs["timings"]
    assert len(raw) == 5 * (1 + 2) and set(raw.phase) == {"prefill", "decode"}  # 1 prefill + 2 steps each
    assert df.attrs["threads"] == torch.get_num_threads()
    # the model is untouched afterwards
    with torch.no_grad():
        assert torch.equal(model(x).logits, before)
    assert all(not hasattr(m, "_toolkit_dropped") for m in model.modules())


def test_paired_saving_and_medians_by_hand():
    """Ratios of partner calls: baseline 10, 20, 30 s vs 9, 18, 33 s -> ratios .9, .9, 1.1 -> saving 0.1.

    A ratio of medians would give 1 - 18/20 = 0.1 too here, but 1 - 33/30 for the last pair alone.
    """
    rows = [
        {"name": n, "round": 0, "phase": "prefill", "index": i, "seconds": t, "cpu_seconds": t / 2}
        for n, times in (("baseline", [10, 20, 30]), ("x", [9, 18, 33]))
        for i, t in enumerate(times)
    ] + [
        {"name": n, "round": 0, "phase": "decode", "index": 0, "seconds": t, "cpu_seconds": t}
        for n, t in (("baseline", 4.0), ("x", 3.0))
    ]
    samples = pd.DataFrame(rows)
    assert _paired_saving(samples, "x", "baseline", "prefill", "seconds") == pytest.approx(0.1)
    assert _paired_saving(samples, "x", "baseline", "decode", "cpu_seconds") == pytest.approx(0.25)
    # drift: everything twice as slow in a second round leaves the paired saving unchanged
    slow = samples.assign(round=1, seconds=samples.seconds * 2)
    assert _paired_saving(pd.concat([samples, slow]), "x", "baseline", "prefill", "seconds") == pytest.approx(0.1)
    ci = paired_saving_ci(samples, "x", phase="prefill", n_boot=200)
    assert ci.estimate == pytest.approx(0.1) and ci.low <= ci.estimate <= ci.high
    # resamples of {.9, .9, 1.1} have median .9 or 1.1: the interval is [-0.1, 0.1]
    assert (ci.low, ci.high) == (pytest.approx(-0.1), pytest.approx(0.1))
    with pytest.raises(ValueError, match=r"no timings named 'y'; expected one of \['baseline', 'x'\]"):
        paired_saving_ci(samples, "y")
    with pytest.raises(ValueError, match="unknown clock 'gpu'"):
        paired_saving_ci(samples, "x", clock="gpu")
    med = _median_times(samples)
    assert med.loc["x", "prefill_s"] == 18 and med.loc["baseline", "prefill_s_cpu"] == 10
    assert med.loc["x", "decode_s_per_token"] == 3.0


def test_efficiency_table_rejects_bad_plans():
    model = tiny_model("LlamaForCausalLM")
    with pytest.raises(ValueError, match="prefills_per_round must be an integer >= 1, got 0"):
        efficiency_table(model, ids(), {1: [1]}, repeats=1, warmup=0, prefills_per_round=0)
    with pytest.raises(ValueError, match=r"layers_by_k\[2\] must hold 2 distinct layers"):
        efficiency_table(model, ids(), {2: [1]}, repeats=1, warmup=0)
    with pytest.raises(ValueError, match="unknown modes \\['fast'\\]"):
        efficiency_table(model, ids(), {1: [1]}, modes=("fast",), repeats=1, warmup=0)


def test_importance_overhead_table():
    model = tiny_model("LlamaForCausalLM")
    texts = ["the movie was good", "awful food and bad service", "i liked it"] * 3
    df = importance_overhead(model, tiny_tokenizer(), texts, batch_size=4, repeats=1, warmup=0)
    assert list(df.run) == ["importance", "full_forward", "decoder_forward"]
    assert (df.set_index("run").loc["decoder_forward", ["vs_decoder_forward", "vs_decoder_forward_cpu"]] == 1.0).all()
    assert (df.seconds > 0).all() and adapter_for(model) is not None
