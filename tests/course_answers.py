"""Answers for tests/test_course.py: a correct solution and plausible wrong ones (mutants) per exercise.

SOLUTIONS are written independently of the toolkit (what a student would write), so a passing
check means two implementations agree. MUTANTS are mistakes a student could make; every one
must be rejected. A new exercise needs an entry in both (tests/test_course.py checks it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special, stats

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


# ----------------------------------------------------------------------------- 01 layer importance


def cosine_importance(x, y):
    cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))
    return float(1 - cos.mean())


def angular_distance(x, y):
    cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))
    return float(torch.arccos(cos.clamp(-1, 1)).mean() / math.pi)


def k_least_important(scores, k):
    valid = [layer for layer, s in scores.items() if not math.isnan(s)]
    return sorted(sorted(valid, key=lambda layer: scores[layer])[:k])


# ----------------------------------------------------------------------------- 02 pruning


def drop_with_hook(model, layer):
    def hook(module, args, output):
        return (torch.zeros_like(output[0]), output[1])

    return model.model.layers[layer].self_attn.register_forward_hook(hook)


def paired_accuracy_ci(correct_a, correct_b, n_boot, seed):
    rng = np.random.default_rng(seed)
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diff = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    low, high = np.quantile(diff, [0.025, 0.975])
    return float(low), float(high)


def attention_parameters(config):
    h, hd = config.hidden_size, config.head_dim
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    weights = h * q + 2 * h * kv + q * h
    biases = q + 2 * kv + h if config.attention_bias else 0
    return weights + biases + h


# ----------------------------------------------------------------------------- 03 faithfulness


def k_for_fraction(fraction, n_words):
    return max(1, math.ceil(round(fraction * n_words, 9)))


def ranking(attribution):
    return np.array(sorted(range(len(attribution)), key=lambda i: (-attribution[i], i)))


def comprehensiveness(p_full, p_erased):
    if np.ndim(p_full) == 0 and np.ndim(p_erased) == 0:
        return float(p_full) - float(p_erased)
    return np.subtract(p_full, p_erased)


def aopc(curve):
    return sum(float(c) for c in curve) / len(FRACTIONS)


def naopc(aopc, lower, upper):
    if np.ndim(aopc) == 0:
        return (aopc - lower) / (upper - lower) if upper - lower > 1e-12 else math.nan
    return np.array([naopc(a, lo, hi) for a, lo, hi in zip(aopc, lower, upper)])


# ----------------------------------------------------------------------------- 04 calibration


def ece(confidence, correct, n_bins=15):
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    total = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = (confidence > lo) & (confidence <= hi) if m else (confidence <= hi)
        if inside.any():
            total += inside.sum() / len(confidence) * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def brier(probs, labels):
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def nll(probs, labels):
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-15))))


def _nll_at(t, logits, labels):
    return -special.log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels].mean()


def fit_temperature(logits, labels):
    res = optimize.minimize_scalar(_nll_at, bounds=(0.01, 100), args=(logits, labels), method="bounded",
                                   options={"xatol": 1e-7})
    return float(res.x)


# ----------------------------------------------------------------------------- 05 study


def _tost_p(d, margin, dist):
    n = len(d)
    se = d.std(ddof=1) / math.sqrt(n)
    if se == 0:
        return max(0.0 if d.mean() > -margin else 1.0, 0.0 if d.mean() < margin else 1.0)
    return max(dist.sf((d.mean() + margin) / se), dist.cdf((d.mean() - margin) / se))


def paired_tost(a, b, margin, alpha=0.05):
    d = np.asarray(b) - np.asarray(a)
    t = stats.t(len(d) - 1)
    half = t.ppf(1 - alpha) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean() - half, d.mean() + half, float(_tost_p(d, margin, t))


def holm(pvalues):
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def expected_false_flags(m, alpha):
    return alpha * m


def mde_paired(n, sd, alpha=0.05, power=0.8):
    return (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / math.sqrt(n)


SOLUTIONS = {f.__name__: f for f in (
    cosine_importance, angular_distance, k_least_important, drop_with_hook, paired_accuracy_ci,
    attention_parameters, k_for_fraction, ranking, comprehensiveness, aopc, naopc, ece, brier, nll,
    fit_temperature, paired_tost, holm, expected_false_flags, mde_paired,
)}


# ----------------------------------------------------------------------------- mutants


def _cos(x, y, dim=-1):
    return torch.nn.functional.cosine_similarity(x, y, dim=dim)


def _hook_on(layer_of, zero=True):
    def mutant(model, layer):
        def hook(module, args, output):
            return (torch.zeros_like(output[0]) if zero else output[0], output[1])

        return model.model.layers[layer_of(layer, len(model.model.layers))].self_attn.register_forward_hook(hook)

    return mutant


def hook_never_removed(model, layer):
    drop_with_hook(model, layer)

    class Handle:
        def remove(self):
            pass

    return Handle()


def _hook_zeroes_whole_layer(model, layer):
    def hook(module, args, output):
        return torch.zeros_like(output[0] if isinstance(output, tuple) else output)

    return model.model.layers[layer].register_forward_hook(hook)


def unpaired_ci(correct_a, correct_b, n_boot, seed):
    rng = np.random.default_rng(seed)
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    low, high = np.quantile(b[ib].mean(axis=1) - a[ia].mean(axis=1), [0.025, 0.975])
    return float(low), float(high)


def _ci_a_minus_b(correct_a, correct_b, n_boot, seed):
    return paired_accuracy_ci(correct_b, correct_a, n_boot, seed)


def _ci_without_replacement(correct_a, correct_b, n_boot, seed):
    rng = np.random.default_rng(seed)
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    diffs = []
    for _ in range(200):
        idx = rng.permutation(len(a))
        diffs.append(b[idx].mean() - a[idx].mean())
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


def _params_no_norm(config):
    return attention_parameters(config) - config.hidden_size


def _params_square(config):
    h = config.hidden_size
    return 4 * h * h + h


def _params_no_bias(config):
    h, hd = config.hidden_size, config.head_dim
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    return 2 * h * q + 2 * h * kv + h


def _ece_with(weighted=True, side="right", squared=False):
    def mutant(confidence, correct, n_bins=15):
        confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
        if side == "right":
            b = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        elif side == "left":  # [lower, upper) bins, 1.0 clipped into the last
            b = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)
        else:  # np.digitize without right=True: 1.0 falls into a phantom bin that is then ignored
            b = np.digitize(confidence, np.linspace(0, 1, n_bins + 1)[1:-1])
            b = np.where(confidence >= 1.0, n_bins, b)
        gaps, sizes = [], []
        for m in range(n_bins):
            inside = b == m
            if inside.any():
                gap = abs(correct[inside].mean() - confidence[inside].mean())
                gaps.append(gap**2 if squared else gap)
                sizes.append(inside.sum())
        gaps, sizes = np.array(gaps), np.array(sizes)
        if not weighted:
            return float(gaps.mean())
        value = float((sizes / len(confidence) * gaps).sum())
        return math.sqrt(value) if squared else value

    return mutant


def _tost_with(dist=None, ddof=1, combine=max, level=lambda alpha: 1 - alpha):
    def mutant(a, b, margin, alpha=0.05):
        d = np.asarray(b) - np.asarray(a)
        se = d.std(ddof=ddof) / math.sqrt(len(d))
        law = dist or stats.t(len(d) - 1)
        if se == 0:
            return paired_tost(a, b, margin, alpha)
        p = float(combine(law.sf((d.mean() + margin) / se), law.cdf((d.mean() - margin) / se)))
        half = law.ppf(level(alpha)) * se
        return d.mean() - half, d.mean() + half, p

    return mutant


def _holm_no_monotone(pvalues):
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    out[order] = np.minimum(1.0, (m - np.arange(m)) * p[order])
    return out


def _bh(pvalues):
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum.accumulate(np.minimum(1.0, m * p[order] / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = adj
    return out


def _holm_sorted_order(pvalues):
    p = np.asarray(pvalues, float)
    m = len(p)
    return np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * np.sort(p)))


def _nll_no_floor(probs, labels):
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def _temperature_on(objective):
    def mutant(logits, labels):
        res = optimize.minimize_scalar(objective, bounds=(0.01, 100), args=(logits, labels), method="bounded")
        return float(res.x)

    return mutant


def _accuracy_at(t, logits, labels):
    return -float(((logits / t).argmax(axis=1) == labels).mean())


def _brier_top_label(t, logits, labels):
    p = special.softmax(logits / t, axis=1)
    return float(((p.max(axis=1) - (p.argmax(axis=1) == labels)) ** 2).mean())


MUTANTS = {
    "cosine_importance": [
        ("mean cosine without the '1 -'", lambda x, y: float(_cos(x, y).mean())),
        ("cosine across tokens (dim=0)", lambda x, y: float(1 - _cos(x, y, dim=0).mean())),
        ("cosine of the flattened matrices", lambda x, y: float(1 - _cos(x.flatten(), y.flatten(), dim=0))),
        ("returns a tensor of per-token scores", lambda x, y: 1 - _cos(x, y)),
    ],
    "angular_distance": [
        ("arccos of the mean cosine", lambda x, y: float(torch.arccos(_cos(x, y).mean().clamp(-1, 1)) / math.pi)),
        ("radians (no / pi)", lambda x, y: float(torch.arccos(_cos(x, y).clamp(-1, 1)).mean())),
        ("1 - cosine instead of the angle", lambda x, y: float((1 - _cos(x, y)).mean())),
    ],
    "k_least_important": [
        ("in score order, not layer order",
         lambda s, k: [int(i) for i in s.dropna().sort_values(kind="stable").index[:k]]),
        ("ties to the later layer",
         lambda s, k: sorted(sorted(s.dropna().index, key=lambda i: (s[i], -i))[:k])),
        ("NaN read as 0 (a dropped layer chosen again)",
         lambda s, k: sorted(int(i) for i in s.fillna(0.0).sort_values(kind="stable").index[:k])),
        ("the k MOST important",
         lambda s, k: sorted(int(i) for i in s.dropna().sort_values(ascending=False, kind="stable").index[:k])),
    ],
    "drop_with_hook": [
        ("zeroes the next layer", _hook_on(lambda layer, n: (layer + 1) % n)),
        ("always zeroes layer 0", _hook_on(lambda layer, n: 0)),
        ("a hook that changes nothing", _hook_on(lambda layer, n: layer, zero=False)),
        ("a handle whose remove() does nothing", hook_never_removed),
        ("zeroes the whole decoder layer's output", _hook_zeroes_whole_layer),
    ],
    "paired_accuracy_ci": [
        ("unpaired: the arms resampled independently", unpaired_ci),
        ("a - b instead of b - a", _ci_a_minus_b),
        ("permutations (sampling without replacement)", _ci_without_replacement),
    ],
    "attention_parameters": [
        ("forgets the pre-attention norm", _params_no_norm),
        ("4 h^2: ignores grouped KV heads and head_dim", _params_square),
        ("ignores attention_bias", _params_no_bias),
    ],
    "k_for_fraction": [
        ("floor instead of ceil", lambda f, n: max(1, math.floor(f * n))),
        ("ceil without rounding away float noise", lambda f, n: max(1, math.ceil(f * n))),
        ("round to nearest", lambda f, n: max(1, round(f * n))),
        ("returns a float (np.ceil)", lambda f, n: max(1.0, float(np.ceil(round(f * n, 9))))),
    ],
    "ranking": [
        ("reversed ascending argsort (ties: later word first)", lambda a: np.argsort(a, kind="stable")[::-1]),
        ("ranks by |attribution|", lambda a: np.argsort(-np.abs(a), kind="stable")),
        ("ascending", lambda a: np.argsort(a, kind="stable")),
    ],
    "comprehensiveness": [
        ("after minus before", lambda p, q: np.subtract(q, p)),
        ("the absolute change", lambda p, q: np.abs(np.subtract(p, q))),
        ("relative drop (p_full - p_erased) / p_full", lambda p, q: np.subtract(p, q) / np.asarray(p)),
        ("1 - p_erased (ignores p_full)", lambda p, q: 1 - np.asarray(q)),
    ],
    "aopc": [
        ("ERASER paper's 1/(|F|+1)", lambda c: float(np.sum(c)) / (len(FRACTIONS) + 1)),
        ("trapezoid area over the fraction axis", lambda c: float(np.trapezoid(c, FRACTIONS))),
        ("sum, not mean", lambda c: float(np.sum(c))),
        ("returns a list of the values", lambda c: list(c)),
    ],
    "naopc": [
        ("no NaN for flat bounds", lambda a, lo, hi: np.divide(np.subtract(a, lo), np.where(
            np.subtract(hi, lo) > 0, np.subtract(hi, lo), 1.0))),
        ("inverted: (upper - AOPC) / span", lambda a, lo, hi: np.where(
            np.subtract(hi, lo) > 1e-12, np.subtract(hi, a) / np.maximum(np.subtract(hi, lo), 1e-300), np.nan)),
        ("AOPC / upper", lambda a, lo, hi: np.where(np.subtract(hi, lo) > 1e-12, np.divide(a, hi), np.nan)),
    ],
    "ece": [
        ("not weighted by bin size", _ece_with(weighted=False)),
        ("bins closed on the wrong side [lower, upper)", _ece_with(side="left")),
        ("np.digitize: a confidence of 1.0 falls in a phantom bin", _ece_with(side="phantom")),
        ("RMS (squared gaps) instead of L1", _ece_with(squared=True)),
        ("one global gap", lambda f, c, n_bins=15: abs(float(np.mean(f)) - float(np.mean(c)))),
    ],
    "brier": [
        ("only the true class", lambda p, y: float(((1 - p[np.arange(len(y)), y]) ** 2).mean())),
        ("mean over classes too", lambda p, y: float(((p - np.eye(p.shape[1])[y]) ** 2).mean())),
        ("binary Brier of the top label", lambda p, y: float(((p.max(1) - (p.argmax(1) == y)) ** 2).mean())),
    ],
    "nll": [
        ("log base 2", lambda p, y: float(-np.mean(np.log2(np.maximum(p[np.arange(len(y)), y], 1e-15))))),
        ("no floor", _nll_no_floor),
        ("the largest probability, not the true label's", lambda p, y: float(-np.mean(np.log(p.max(axis=1))))),
        ("sum instead of mean", lambda p, y: float(-np.sum(np.log(np.maximum(p[np.arange(len(y)), y], 1e-15))))),
    ],
    "fit_temperature": [
        ("T fitted on accuracy", _temperature_on(_accuracy_at)),
        ("T multiplies the logits (returns 1/T)", lambda z, y: 1.0 / fit_temperature(z, y)),
        ("T fitted on softmax probabilities as if logits",
         lambda z, y: fit_temperature(special.softmax(z, axis=1), y)),
        ("T fitted on the top-label Brier score", _temperature_on(_brier_top_label)),
    ],
    "paired_tost": [
        ("normal instead of t", _tost_with(dist=stats.norm())),
        ("sd with ddof=0", _tost_with(ddof=0)),
        ("p = min of the two one-sided p-values", _tost_with(combine=min)),
        ("a (1 - alpha) interval: t at 1 - alpha/2", _tost_with(level=lambda alpha: 1 - alpha / 2)),
    ],
    "holm": [
        ("Bonferroni", lambda p: np.minimum(1.0, len(p) * np.asarray(p))),
        ("Holm without the monotone step", _holm_no_monotone),
        ("Benjamini-Hochberg", _bh),
        ("in sorted order, not the input's", _holm_sorted_order),
    ],
    "expected_false_flags": [
        ("P(at least one false flag)", lambda m, alpha: 1 - (1 - alpha) ** m),
        ("Holm's familywise bound alpha", lambda m, alpha: alpha),
        ("alpha / m", lambda m, alpha: alpha / m if m else 0.0),
    ],
    "mde_paired": [
        ("one-sided alpha", lambda n, sd, alpha=0.05, power=0.8:
         (stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)) * sd / math.sqrt(n)),
        ("no power term", lambda n, sd, alpha=0.05, power=0.8: stats.norm.ppf(1 - alpha / 2) * sd / math.sqrt(n)),
        ("sd / n", lambda n, sd, alpha=0.05, power=0.8:
         (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / n),
    ],
}
