"""What dropping attention saves: analytical FLOPs, parameter and KV-cache bytes, measured latency.

The FLOP formulas (matrix multiplications of one forward call, per decoder layer) and the FLOP-ideal
saving of dropping layers are in :mod:`toolkit.pruning.flops`; this module re-exports its functions.

Timings follow the hygiene a shared machine needs: a warm-up round, configurations interleaved
(ABCABC..., never AAABBB), medians reported, everything under `torch.inference_mode()`, and the
torch thread count recorded in the result (`df.attrs["threads"]`); set it before calling. Two
clocks are read: wall time (`time.perf_counter`) and this process's CPU time
(`time.process_time`, columns suffixed `_cpu`). When other jobs compete for the cores, wall time
also counts the time spent waiting for a core; with one torch thread, CPU time counts only the
work done, so CPU-time savings are the steadier estimate there (both come from the same runs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models.adapters import decoder_layers
from .flops import (
    decode_flops,
    flop_ideal_saving,
    layer_set,
)
from .importance import attention_importance
from .attention import drop_attention, n_parameters, prune_attention
from ..models.scoring import encode_texts
from .timing import Clock, paired_saving, time_interleaved
from .._core.validation import InputError, InputTypeError, check_int, check_texts

__all__ = [
    "EFFICIENCY_MODES",
    "efficiency_table",
    "importance_overhead",
    "kv_cache_bytes",
    "measure_latency",
    "model_bytes",
]

EFFICIENCY_MODES = ("structural", "reversible")

# A fixed English passage, repeated to build latency inputs from a tokenizer (content does not
# change the cost; real text just keeps the token ids realistic).
_PASSAGE = (
    "The restaurant was quiet when we arrived, and the waiter brought the menus without a word. "
    "We ordered the soup of the day, a plate of grilled vegetables and two glasses of water. "
    "The food came quickly; it was warm, well seasoned and generous, though the bread was stale. "
    "Later the room filled up, the music grew louder, and the service slowed to a crawl. "
)


# --------------------------------------------------------------------------------------------------
# Bytes
# --------------------------------------------------------------------------------------------------
def kv_cache_bytes(cache: Any) -> int:
    """Bytes held by the key and value tensors of a transformers cache.

    Sums `numel * element_size` over `cache.layers[i].keys` and `.values`; layers that keep no KV
    (`DummyLayer`, whose keys and values are None) add 0. Accepts a `Cache`, an
    `EncoderDecoderCache` (its self-attention part) or a legacy tuple of `(key, value)` pairs.
    """
    cache = getattr(cache, "self_attention_cache", cache)
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    elif isinstance(cache, (tuple, list)):
        pairs = [tuple(entry)[:2] if entry is not None else (None, None) for entry in cache]
    else:
        raise InputTypeError(f"expected a transformers Cache or a tuple of (key, value) pairs, got {type(cache).__name__}")
    return sum(t.numel() * t.element_size() for pair in pairs for t in pair if isinstance(t, torch.Tensor))


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each tensor counted once (tied weights once)."""
    seen: dict[tuple[int, int], int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
    return sum(seen.values())


# --------------------------------------------------------------------------------------------------
# Latency (timed with toolkit.pruning.timing)
# --------------------------------------------------------------------------------------------------
def _input_ids(
    inputs: PreTrainedTokenizerBase | torch.Tensor, batch: int | None, prefill_tokens: int | None
) -> torch.Tensor:
    """A (batch, prefill_tokens) LongTensor: `inputs` itself, or a fixed passage tokenized and tiled."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 2 or inputs.dtype != torch.long:
            raise InputError(f"input_ids must be a 2-D LongTensor (batch, tokens), got {inputs.dtype} {tuple(inputs.shape)}")
        for name, want, got in (("batch", batch, inputs.shape[0]), ("prefill_tokens", prefill_tokens, inputs.shape[1])):
            if want is not None and want != got:
                raise InputError(f"{name}={want} disagrees with input_ids of shape {tuple(inputs.shape)}; pass None")
        return inputs
    if not isinstance(inputs, PreTrainedTokenizerBase):
        raise InputTypeError(f"inputs must be a tokenizer or a LongTensor of input ids, got {type(inputs).__name__}")
    b = check_int(4 if batch is None else batch, "batch", 1)
    n = check_int(256 if prefill_tokens is None else prefill_tokens, "prefill_tokens", 1)
    ids = inputs.encode(_PASSAGE, add_special_tokens=False)
    reps = -(-(n + b) // len(ids))
    ids = torch.tensor(ids * reps, dtype=torch.long)
    return torch.stack([ids[r : r + n] for r in range(b)])  # each row starts one token later


Runnable = tuple[PreTrainedModel, Callable[[], ContextManager[Any]]]  # a model and the context to run it in


def _latency_runs(
    configs: Mapping[str, Runnable],
    input_ids: torch.Tensor,
    new_tokens: int,
    *,
    repeats: int,
    warmup: int,
    prefills_per_round: int = 1,
) -> pd.DataFrame:
    """Prefill and greedy-decode timings of several configurations, interleaved at the finest grain.

    Each round prefills every configuration in turn, `prefills_per_round` times (ABC ABC ...;
    logits for the last position only, as `generate` does), then runs decode step t of every
    configuration before step t + 1 of any, each over the KV cache of its last prefill. Slow
    drifts in the machine's load thus hit all configurations alike, and every call has a partner
    call of each other configuration made moments apart (same round, phase and index).

    Returns:
        One row per timed call: name, round, phase ("prefill" or "decode"), index (prefill pass
        or decode step), seconds (wall), cpu_seconds; `warmup` rounds are dropped.
        `attrs["kv_bytes"]`: {name: KV-cache bytes after the prefill}.
    """
    repeats = check_int(repeats, "repeats", 1)
    warmup = check_int(warmup, "warmup", 0)
    prefills_per_round = check_int(prefills_per_round, "prefills_per_round", 1)
    rows: list[dict[str, Any]] = []
    kv: dict[str, int] = {}
    for r in range(warmup + repeats):
        state: dict[str, dict[str, Any]] = {name: {} for name in configs}

        def record(name: str, phase: str, index: int, clock: Clock, r: int = r) -> None:
            if r >= warmup:
                rows.append({"name": name, "round": r - warmup, "phase": phase, "index": index,
                             "seconds": clock.wall, "cpu_seconds": clock.cpu})  # fmt: skip

        for i in range(prefills_per_round):
            for name, (model, context) in configs.items():
                st = state[name]
                st["cache"] = None  # free the previous pass's cache before timing the next
                with context(), torch.inference_mode(), Clock() as clock:
                    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
                    st["token"] = out.logits[:, -1].argmax(-1, keepdim=True)
                st["cache"], kv[name] = out.cache, kv_cache_bytes(out.cache)
                record(name, "prefill", i, clock)
        for t in range(new_tokens):
            for name, (model, context) in configs.items():
                st = state[name]
                with context(), torch.inference_mode(), Clock() as clock:
                    out = model(input_ids=st["token"], cache=st["cache"], use_cache=True)
                    st["token"] = out.logits[:, -1].argmax(-1, keepdim=True)
                record(name, "decode", t, clock)
    df = pd.DataFrame(rows)
    df.attrs["kv_bytes"] = kv
    return df


def _median_times(samples: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: median prefill time and median decode-step time, wall and CPU."""
    med = samples.pivot_table(index="name", columns="phase", values=["seconds", "cpu_seconds"], aggfunc="median")
    return pd.DataFrame({
        "prefill_s": med[("seconds", "prefill")], "decode_s_per_token": med[("seconds", "decode")],
        "prefill_s_cpu": med[("cpu_seconds", "prefill")], "decode_s_per_token_cpu": med[("cpu_seconds", "decode")],
    })  # fmt: skip


def measure_latency(
    model: PreTrainedModel,
    inputs: PreTrainedTokenizerBase | torch.Tensor,
    *,
    batch: int | None = None,
    prefill_tokens: int | None = None,
    new_tokens: int = 64,
    repeats: int = 3,
    warmup: int = 1,
    prefills_per_round: int = 1,
) -> dict[str, float]:
    """Prefill latency, per-token decode latency and KV bytes of one model (medians over `repeats`).

    The decode is a manual greedy loop over the model's own KV cache; each step is timed on its
    own and `decode_s_per_token` is the median step over all rounds (the prefill is timed
    separately; `prefill_s` is the median over all passes).

    Args:
        inputs: a tokenizer (a fixed English passage is tokenized and tiled into `batch` rows of
            `prefill_tokens`, defaults 4 x 256) or a (batch, tokens) LongTensor used as is.
        new_tokens: decode steps after the prefill.
        repeats: timed rounds; `warmup`: discarded rounds before them.
        prefills_per_round: prefill passes per round (their median is the round's prefill time);
            the prefill is one long call, so it needs more samples than the many decode steps.

    Returns:
        `{"prefill_s", "decode_s_per_token", "prefill_s_cpu", "decode_s_per_token_cpu", "kv_bytes",
        "model_bytes", "params", "batch", "prefill_tokens", "new_tokens", "threads"}`; times are
        medians (wall, and process CPU time for `_cpu`); kv_bytes is after the prefill.
    """
    ids = _input_ids(inputs, batch, prefill_tokens)
    new_tokens = check_int(new_tokens, "new_tokens", 1)
    samples = _latency_runs(
        {"model": (model, nullcontext)}, ids, new_tokens, repeats=repeats, warmup=warmup,
        prefills_per_round=prefills_per_round,
    )  # fmt: skip
    med = _median_times(samples).loc["model"]
    return {
        **{key: float(value) for key, value in med.items()},
        "kv_bytes": samples.attrs["kv_bytes"]["model"],
        "model_bytes": model_bytes(model),
        "params": n_parameters(model),
        "batch": int(ids.shape[0]),
        "prefill_tokens": int(ids.shape[1]),
        "new_tokens": new_tokens,
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
_TIMED = (
    "prefill_s", "decode_s_per_token", "measured_prefill_saving", "saving_vs_ideal",
    "measured_decode_saving", "decode_saving_vs_ideal", "prefill_vs_structural", "decode_vs_structural",
)  # fmt: skip
TABLE_COLUMNS = (
    "mode", "k", "layers", "params", "model_bytes", "kv_bytes", "kv_ratio", "kv_ratio_ideal",
    "flop_ideal_saving", "flop_ideal_decode_saving",
    *_TIMED, *(f"{c}_cpu" for c in _TIMED),
)  # fmt: skip


def _checked_plan(model: PreTrainedModel, layers_by_k: Mapping[int, Sequence[int]]) -> dict[int, tuple[int, ...]]:
    n = len(decoder_layers(model))
    if not isinstance(layers_by_k, Mapping):
        raise InputError(f"layers_by_k must map k to the k layer indices to drop, got {type(layers_by_k).__name__}")
    plan = {}
    for k, layers in layers_by_k.items():
        k = check_int(k, "k", 0)
        chosen = tuple(sorted(layer_set(layers, n, f"layers_by_k[{k}]")))
        if len(chosen) != k or len(list(layers)) != k:
            raise InputError(f"layers_by_k[{k}] must hold {k} distinct layers, got {list(layers)}")
        if k:
            plan[k] = chosen
    return plan


def efficiency_table(
    model: PreTrainedModel,
    inputs: PreTrainedTokenizerBase | torch.Tensor,
    layers_by_k: Mapping[int, Sequence[int]],
    *,
    modes: Sequence[str] = EFFICIENCY_MODES,
    batch: int | None = None,
    prefill_tokens: int | None = None,
    new_tokens: int = 64,
    repeats: int = 3,
    warmup: int = 1,
    prefills_per_round: int = 1,
) -> pd.DataFrame:
    """Savings of dropping attention, FLOP-ideal next to measured, per (mode, k), from one run.

    Configurations: the model as given (`mode="baseline"`, k=0) and, for each k and mode,
    `structural` = `prune_attention(copy.deepcopy(model), layers)` and `reversible` =
    `with drop_attention(model, layers)` (entered around each call). All run on deep copies, so
    that where the weights sit in memory (a memory-mapped checkpoint or not) is alike for all;
    the baseline and the reversible drops share one copy. Configurations are
    interleaved at the finest grain: each round prefills all of them in turn
    (`prefills_per_round` times), then runs decode step t of every configuration before step
    t + 1 of any; `warmup` rounds are discarded.

        measured saving = 1 - median_j ( t_config[j] / t_baseline[j] )
        saving_vs_ideal = measured saving / FLOP-ideal saving   (1.0 = as good as the FLOPs promise)

    where j runs over paired calls: the same round and prefill pass, or the same decode step,
    made moments apart (a ratio of medians would let the load drift between calls leak in).

    The prefill ideal is `flop_ideal_saving(..., logits_to_keep=1)` (what the timed prefill runs);
    the decode ideal sums `forward_flops` over the decode steps (step t attends to prompt + t keys).

    Args:
        model: the unpruned model (not modified; the runs use deep copies).
        inputs, batch, prefill_tokens, new_tokens, repeats, warmup, prefills_per_round: as in
            `measure_latency`.
        layers_by_k: `{k: layers}`, e.g. from `choose_layers`; k=0 is the baseline, always run.
        modes: a subset of `EFFICIENCY_MODES`.

    Returns:
        One row per configuration, columns `TABLE_COLUMNS`: mode, k, layers, params,
        model_bytes, kv_bytes (after the prefill), kv_ratio (vs baseline), kv_ratio_ideal
        (kept / L), flop_ideal_saving (prefill), flop_ideal_decode_saving; then from the wall
        clock prefill_s, decode_s_per_token (medians), measured_prefill_saving, saving_vs_ideal,
        measured_decode_saving, decode_saving_vs_ideal, prefill_vs_structural and
        decode_vs_structural (reversible rows: measured saving / the structural one at the same
        k); and each of these timed columns again from process CPU time, suffixed `_cpu`.
        `attrs`: threads, batch, prefill_tokens, new_tokens, repeats, prefills_per_round,
        timings (one row per timed call).
    """
    unknown = [m for m in modes if m not in EFFICIENCY_MODES]
    if unknown or not modes:
        raise InputError(f"unknown modes {unknown or list(modes)}; expected a non-empty subset of {list(EFFICIENCY_MODES)}")
    plan = _checked_plan(model, layers_by_k)
    ids = _input_ids(inputs, batch, prefill_tokens)
    new_tokens = check_int(new_tokens, "new_tokens", 1)
    b, s = int(ids.shape[0]), int(ids.shape[1])
    n_layers = len(decoder_layers(model))

    # Every configuration runs on a deep copy: a loaded model's weights can sit in a memory-mapped
    # safetensors file, a copy's in anonymous memory, and that alone changed SmolLM2's prefill time
    # by ~3%, as much as dropping 5 layers saves. The baseline and reversible runs share one copy.
    work = copy.deepcopy(model)
    configs: dict[str, tuple[str, int, tuple[int, ...], PreTrainedModel, Callable[[], ContextManager[Any]]]] = {
        "baseline": ("baseline", 0, (), work, nullcontext)
    }
    for k, layers in plan.items():
        for mode in modes:
            if mode == "structural":
                pruned = prune_attention(copy.deepcopy(model), layers)
                configs[f"structural/{k}"] = (mode, k, layers, pruned, nullcontext)
            else:
                configs[f"reversible/{k}"] = (mode, k, layers, work, lambda layers=layers: drop_attention(work, layers))

    runnable = {name: (c[3], c[4]) for name, c in configs.items()}
    raw = _latency_runs(
        runnable, ids, new_tokens, repeats=repeats, warmup=warmup, prefills_per_round=prefills_per_round
    )
    med, kv = _median_times(raw), raw.attrs["kv_bytes"]

    base_decode_flops = decode_flops(model, b, s, new_tokens, ())
    rows = []
    for name, (mode, k, layers, m, _) in configs.items():
        row = {
            "mode": mode, "k": k, "layers": list(layers), "params": n_parameters(m), "model_bytes": model_bytes(m),
            "kv_bytes": kv[name], "kv_ratio": kv[name] / kv["baseline"],
            "kv_ratio_ideal": (n_layers - k) / n_layers,
            "flop_ideal_saving": flop_ideal_saving(model, layers, seq_len=s, batch=b, logits_to_keep=1),
            "flop_ideal_decode_saving": 1.0 - decode_flops(model, b, s, new_tokens, layers) / base_decode_flops,
        }  # fmt: skip
        for clock, column in (("", "seconds"), ("_cpu", "cpu_seconds")):
            pre, dec = med.loc[name, f"prefill_s{clock}"], med.loc[name, f"decode_s_per_token{clock}"]
            saving_pre = paired_saving(raw, name, "baseline", "prefill", column)
            saving_dec = paired_saving(raw, name, "baseline", "decode", column)
            row.update({
                f"prefill_s{clock}": pre, f"decode_s_per_token{clock}": dec,
                f"measured_prefill_saving{clock}": saving_pre,
                f"saving_vs_ideal{clock}": saving_pre / row["flop_ideal_saving"] if k else np.nan,
                f"measured_decode_saving{clock}": saving_dec,
                f"decode_saving_vs_ideal{clock}": saving_dec / row["flop_ideal_decode_saving"] if k else np.nan,
            })  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows)
    for clock in ("", "_cpu"):
        for phase in ("prefill", "decode"):
            structural = df[df["mode"] == "structural"].set_index("k")[f"measured_{phase}_saving{clock}"]
            ratio = df[f"measured_{phase}_saving{clock}"] / df["k"].map(structural)
            df[f"{phase}_vs_structural{clock}"] = ratio.where(df["mode"] == "reversible")
    df = df[list(TABLE_COLUMNS)]
    df.attrs.update(
        threads=torch.get_num_threads(), batch=b, prefill_tokens=s, new_tokens=new_tokens, repeats=repeats,
        prefills_per_round=prefills_per_round, timings=raw,
    )
    return df


# --------------------------------------------------------------------------------------------------
# Importance scoring overhead
# --------------------------------------------------------------------------------------------------
def importance_overhead(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    metric: str = "cosine",
    batch_size: int = 8,
    max_length: int = 256,
    repeats: int = 3,
    warmup: int = 1,
) -> pd.DataFrame:
    """Cost of `attention_importance` next to plain forwards over the same texts and batches.

    Three runs, interleaved: `importance` (hooks; it runs the decoder only, no LM head),
    `full_forward` (the causal LM, logits at every position) and `decoder_forward` (the decoder
    only: the like-for-like reference). Each includes tokenization, encoded exactly as importance
    encodes (left padding, truncation to `max_length`, position ids from the mask).

    Returns:
        One row per run: `run`, `seconds` (median wall time), `vs_full_forward`,
        `vs_decoder_forward` (ratios of medians), and the same three from process CPU time
        suffixed `_cpu`; `attrs["timings"]` holds the raw rows, `attrs["threads"]` the threads.
    """
    texts = check_texts(texts)
    batch_size = check_int(batch_size, "batch_size", 1)
    device = next(model.parameters()).device

    def forward(decoder_only: bool) -> Callable[[], None]:
        net = model.get_decoder() if decoder_only else model

        def run() -> None:
            with torch.inference_mode():
                for start in range(0, len(texts), batch_size):
                    net(**encode_texts(tokenizer, texts[start : start + batch_size], max_length, device), use_cache=False)

        return run

    def importance() -> None:
        with torch.inference_mode():  # same autograd mode as the plain forwards
            attention_importance(model, tokenizer, texts, metric=metric, batch_size=batch_size, max_length=max_length)

    raw = time_interleaved(
        {"importance": importance, "full_forward": forward(False), "decoder_forward": forward(True)},
        repeats=repeats, warmup=warmup,
    )  # fmt: skip
    med = raw.groupby("name", sort=False)[["seconds", "cpu_seconds"]].median()
    df = pd.DataFrame({"run": med.index})
    for clock, col in (("", "seconds"), ("_cpu", "cpu_seconds")):
        df[f"seconds{clock}"] = med[col].to_numpy()
        df[f"vs_full_forward{clock}"] = df[f"seconds{clock}"] / med.loc["full_forward", col]
        df[f"vs_decoder_forward{clock}"] = df[f"seconds{clock}"] / med.loc["decoder_forward", col]
    df.attrs.update(threads=raw.attrs["threads"], timings=raw, n_texts=len(texts), batch_size=batch_size)
    return df
