"""Tests of toolkit.metrics.faithfulness on transparent scorers whose word importances are known.

Independent references: hand arithmetic on a 4-word logistic model, brute force over all
permutations, and plain-Python re-implementations of the definitions written in the tests.
"""

from __future__ import annotations

import itertools
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest

from toolkit.metrics import faithfulness as F
from toolkit.metrics.registry import metric_names
from toolkit.metrics.faithfulness.erasure import ErasureOptions, Pool, check_words

# ----------------------------------------------------------------------------- transparent scorers


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logistic(weights: dict[str, float], bias: float = 0.0, pairs: dict[tuple[str, str], float] | None = None):
    """2-class bag of words: p(pos) = sigmoid(bias + sum of word weights [+ pair terms])."""
    pairs = pairs or {}

    def score(variants):
        rows = []
        for v in variants:
            z = bias + sum(weights.get(w, 0.0) for w in v)
            z += sum(c for (a, b), c in pairs.items() if a in v and b in v)
            p = sigmoid(z)
            rows.append([1.0 - p, p])
        return np.array(rows)

    return score


class Counting:
    """Wraps a scorer; records every call's batch size and every variant it scored (words, text)."""

    def __init__(self, scorer):
        self.scorer, self.calls, self.keys = scorer, [], []

    def __call__(self, variants):
        self.calls.append(len(variants))
        self.keys += [(tuple(v), v.text) for v in variants]
        return self.scorer(variants)


def random_logistic_problem(n_examples: int, n_words: int, seed: int):
    """Examples of distinct words w{i}_{j} with random weights, and the exact signed attributions."""
    rng = np.random.default_rng(seed)
    weights, words = {}, []
    for i in range(n_examples):
        ws = [f"w{i}_{j}" for j in range(n_words)]
        weights |= dict(zip(ws, rng.normal(0, 1.5, n_words)))
        words.append(ws)
    scorer = logistic(weights, bias=0.3)
    label = [int(scorer([w])[0].argmax()) for w in words]
    exact = [np.array([weights[w] for w in ws]) * (1 if y == 1 else -1) for ws, y in zip(words, label)]
    return scorer, words, exact


def brute_force_aopc(scorer, words, order, fractions):
    """The definition, written out: mean over fractions of p(y^|x) - p(y^|x without the top k)."""
    p = scorer([words])[0]
    y = p.argmax()
    n = len(words)
    comp, suff = [], []
    for f in fractions:
        k = max(1, math.ceil(round(f * n, 9)))
        top = set(order[:k])
        comp.append(p[y] - scorer([[w for i, w in enumerate(words) if i not in top]])[0][y])
        suff.append(p[y] - scorer([[w for i, w in enumerate(words) if i in top]])[0][y])
    return np.mean(comp), np.mean(suff)


# ----------------------------------------------------------------------------- hand-computed cases

GOOD4 = ["good", "bad", "great", "meh"]
W4 = {"good": 2.0, "bad": -1.0, "great": 1.0, "meh": 0.0}


def test_hand_computed_four_word_example():
    # logit(full) = 2 - 1 + 1 + 0 = 2, p(pos) = sigmoid(2) = 0.880797 -> y^ = pos.
    # Default fractions on n = 4: k = ceil(.04)=1, ceil(.2)=1, ceil(.4)=1, ceil(.8)=1, ceil(2)=2.
    # Ranking by attribution = weight: good, great, meh, bad.
    # comp_1: drop good        -> logit 0  -> 0.5      -> 0.880797 - 0.5      = 0.380797
    # comp_2: drop good, great -> logit -1 -> 0.268941 -> 0.880797 - 0.268941 = 0.611856
    # suff_1: keep good        -> logit 2  -> 0.880797 -> 0
    # suff_2: keep good, great -> logit 3  -> 0.952574 -> -0.071777
    # AOPC_comp = (4 * 0.380797 + 0.611856) / 5 = 0.427009; AOPC_suff = -0.071777 / 5 = -0.014355
    scorer = logistic(W4)
    attr = [np.array([2.0, -1.0, 1.0, 0.0])]
    curves = F.erasure_curves(scorer, [GOOD4], attr)
    assert list(curves["k"]) == [1, 1, 1, 1, 2]
    assert list(curves["label"]) == [1] * 5
    np.testing.assert_allclose(curves["comprehensiveness"], [0.380797] * 4 + [0.611856], atol=1e-6)
    np.testing.assert_allclose(curves["sufficiency"], [0.0] * 4 + [-0.071777], atol=1e-6)
    np.testing.assert_allclose(curves["p_comp"] + curves["comprehensiveness"], curves["p_full"], atol=1e-15)
    a = F.aopc(scorer, [GOOD4], attr)
    assert a.loc[0, "aopc_comprehensiveness"] == pytest.approx(0.427009, abs=1e-6)
    assert a.loc[0, "aopc_sufficiency"] == pytest.approx(-0.014355, abs=1e-6)



def test_comprehensiveness_and_sufficiency_tables_hand_computed():
    # The same 4-word example as above, one column per fraction (k = 1, 1, 1, 1, 2).
    scorer, attr = logistic(W4), [np.array([2.0, -1.0, 1.0, 0.0])]
    comp = F.comprehensiveness(scorer, [GOOD4], attr)
    suff = F.sufficiency(scorer, [GOOD4], attr)
    assert list(comp.columns) == ["example", "n_words", "label", "p_full",
                                  *[f"comprehensiveness@{f:g}" for f in F.FRACTIONS], "aopc_comprehensiveness"]
    np.testing.assert_allclose(comp.iloc[0, 4:9].to_numpy(float), [0.380797] * 4 + [0.611856], atol=1e-6)
    np.testing.assert_allclose(suff.iloc[0, 4:9].to_numpy(float), [0.0] * 4 + [-0.071777], atol=1e-6)
    assert comp.loc[0, "aopc_comprehensiveness"] == pytest.approx(0.427009, abs=1e-6)
    assert suff.loc[0, "aopc_sufficiency"] == pytest.approx(-0.014355, abs=1e-6)
    assert comp.loc[0, "p_full"] == pytest.approx(sigmoid(2.0))

def test_one_metric_scores_only_its_own_variants():
    """comprehensiveness() deletes the top words only; sufficiency() keeps them only: each scores the
    full text plus its own erasures (same values as erasure_curves, which scores both)."""
    attr = [np.array([2.0, -1.0, 1.0, 0.0])]
    comp_count, suff_count, both = Counting(logistic(W4)), Counting(logistic(W4)), Counting(logistic(W4))
    comp = F.comprehensiveness(comp_count, [GOOD4], attr)
    suff = F.sufficiency(suff_count, [GOOD4], attr)
    curves = F.erasure_curves(both, [GOOD4], attr)
    # k = 1, 1, 1, 1, 2: the full text + 2 distinct erasures each; erasure_curves: full + 2 + 2
    assert sum(comp_count.calls) == sum(suff_count.calls) == 3 and sum(both.calls) == 5
    assert all(len(k[0]) < 4 for k in comp_count.keys[1:]) and all(len(k[0]) < 4 for k in suff_count.keys[1:])
    assert {k[0] for k in comp_count.keys[1:]} == {("bad", "great", "meh"), ("bad", "meh")}
    np.testing.assert_allclose(comp.iloc[0, 4:9].to_numpy(float), curves.comprehensiveness, atol=1e-12)
    np.testing.assert_allclose(suff.iloc[0, 4:9].to_numpy(float), curves.sufficiency, atol=1e-12)


def test_replace_erasure_uses_the_replacement_token():
    # "[X]" has weight 0.5: comp_1 replaces good -> logit 0 + 0.5 -> sigmoid(0.5) = 0.622459,
    # comp = 0.880797 - 0.622459 = 0.258338; suff_1 keeps good, replaces 3 words -> logit 2 + 1.5 = 3.5,
    # suff = 0.880797 - 0.970688 = -0.089891.
    seen = []
    base = logistic(W4 | {"[X]": 0.5})

    def scorer(variants):
        seen.extend(variants)
        return base(variants)

    curves = F.erasure_curves(scorer, [GOOD4], [np.array([2.0, -1.0, 1.0, 0.0])],
                              fractions=(0.25,), erasure="replace", replacement="[X]")
    assert curves.loc[0, "comprehensiveness"] == pytest.approx(0.258338, abs=1e-6)
    assert curves.loc[0, "sufficiency"] == pytest.approx(-0.089891, abs=1e-6)
    assert all(len(v) == 4 for v in seen)
    assert ["[X]", "bad", "great", "meh"] in [list(v) for v in seen]


def test_full_text_sufficiency_is_zero_and_erasing_nothing_is_zero_comprehensiveness():
    scorer, words, exact = random_logistic_problem(4, 7, seed=1)
    curves = F.erasure_curves(scorer, words, exact, fractions=(1.0,))
    assert (curves["k"] == 7).all()
    assert (curves["sufficiency"] == 0.0).all()  # keeping all words is the full text: exactly 0
    # k = 0 is not on any fraction grid; the engine takes it and must erase nothing for comp
    # (a slice like order[-0:] would erase everything) and keep nothing for suff.
    opts = ErasureOptions(fractions=(0.5,))
    pool = Pool(scorer)
    (w,) = check_words([words[0]])
    order = F.ranking(exact[0])
    comp0, suff0 = opts.eraser.apply(w, order[:0]), opts.eraser.keep(w, order[:0])
    assert comp0 == w and suff0 == ()
    p = scorer([w])[0]
    assert p[p.argmax()] - scorer([list(comp0)])[0][p.argmax()] == 0.0
    assert pool.add(comp0) == pool.add(w)  # same variant -> same scorer row


def test_k_for_fraction():
    assert F.k_for_fraction(0.01, 4) == 1  # at least one word
    assert F.k_for_fraction(0.5, 7) == 4
    assert F.k_for_fraction(0.14, 50) == 7  # 0.14 * 50 = 7.000000000000001 in floats
    assert F.k_for_fraction(1.0, 9) == 9


def test_split_words():
    assert F.split_words("  Not  bad,\tat all!\n") == ["Not", "bad,", "at", "all!"]


# ----------------------------------------------------------------------------- orderings


def test_exact_attributions_beat_random_beat_reversed():
    scorer, words, exact = random_logistic_problem(12, 7, seed=3)
    reverse = [-a for a in exact]
    rng = np.random.default_rng(0)
    rand = [rng.normal(size=len(w)) for w in words]
    res = {name: F.naopc(scorer, words, attr) for name, attr in
           {"exact": exact, "random": rand, "reversed": reverse}.items()}
    for col in ("aopc_comprehensiveness", "naopc_comprehensiveness"):
        means = {k: v[col].mean() for k, v in res.items()}
        assert means["exact"] > means["random"] > means["reversed"], (col, means)
    for col in ("aopc_sufficiency", "naopc_sufficiency"):  # lower sufficiency = more faithful
        means = {k: v[col].mean() for k, v in res.items()}
        assert means["exact"] < means["random"] < means["reversed"], (col, means)
    # For an additive logit model the top-k by signed weight maximise comp at every k at once,
    # so exact attributions reach the upper bound and reversed ones the lower bound (7 words: exact).
    assert (res["exact"]["bound_method"] == "exact").all()
    np.testing.assert_allclose(res["exact"]["naopc_comprehensiveness"], 1.0, atol=1e-9)
    np.testing.assert_allclose(res["reversed"]["naopc_comprehensiveness"], 0.0, atol=1e-9)
    np.testing.assert_allclose(res["exact"]["naopc_sufficiency"], 0.0, atol=1e-9)
    np.testing.assert_allclose(res["reversed"]["naopc_sufficiency"], 1.0, atol=1e-9)


INTERACTING = (
    ["the", "food", "was", "not", "good", "today"],
    {"food": 0.4, "was": -0.1, "not": -0.8, "good": 1.5, "today": 0.2},
    {("not", "good"): -2.5, ("food", "today"): 0.7, ("the", "was"): -0.3},
)


@pytest.mark.parametrize("fractions", [F.FRACTIONS, (0.2, 0.5, 1.0), (0.3, 0.6)])
@pytest.mark.parametrize("erasure", ["delete", "replace"])
def test_exact_bounds_equal_brute_force_over_all_permutations(fractions, erasure):
    words, weights, pairs = INTERACTING
    scorer = logistic(weights | {"...": -0.2}, bias=0.1, pairs=pairs)
    b = F.aopc_bounds(scorer, [words], fractions=fractions, erasure=erasure)
    assert b.loc[0, "bound_method"] == "exact"
    # brute force over all 720 orderings, scored by the transparent model directly
    p = scorer([words])[0]
    y = p.argmax()
    n = len(words)
    ks = [max(1, math.ceil(round(f * n, 9))) for f in fractions]

    def erase(keep):
        if erasure == "delete":
            return [w for i, w in enumerate(words) if i in keep]
        return [w if i in keep else "..." for i, w in enumerate(words)]

    comps, suffs = [], []
    for perm in itertools.permutations(range(n)):
        comps.append(np.mean([p[y] - scorer([erase(set(perm[k:]))])[0][y] for k in ks]))
        suffs.append(np.mean([p[y] - scorer([erase(set(perm[:k]))])[0][y] for k in ks]))
    assert b.loc[0, "comprehensiveness_lower"] == pytest.approx(min(comps), abs=1e-12)
    assert b.loc[0, "comprehensiveness_upper"] == pytest.approx(max(comps), abs=1e-12)
    assert b.loc[0, "sufficiency_lower"] == pytest.approx(min(suffs), abs=1e-12)
    assert b.loc[0, "sufficiency_upper"] == pytest.approx(max(suffs), abs=1e-12)


def test_beam_bounds_lie_within_exact_bounds():
    rng = np.random.default_rng(7)
    words = [f"v{j}" for j in range(8)]
    weights = dict(zip(words, rng.normal(0, 1, 8)))
    pairs = {(a, b): rng.normal(0, 1.5) for a, b in itertools.combinations(words, 2) if rng.random() < 0.4}
    scorer = logistic(weights, pairs=pairs)
    fractions = (0.2, 0.4, 0.6)
    exact = F.aopc_bounds(scorer, [words], fractions=fractions)
    assert exact.loc[0, "bound_method"] == "exact"
    for width in (1, 2, 4):
        beam = F.aopc_bounds(scorer, [words], fractions=fractions, exact_max_words=0, beam_width=width)
        assert beam.loc[0, "bound_method"] == "beam"
        for m in ("comprehensiveness", "sufficiency"):
            assert beam.loc[0, f"{m}_lower"] >= exact.loc[0, f"{m}_lower"] - 1e-12
            assert beam.loc[0, f"{m}_upper"] <= exact.loc[0, f"{m}_upper"] + 1e-12


def test_beam_bounds_equal_exact_for_an_additive_scorer():
    scorer, words, _ = random_logistic_problem(5, 8, seed=11)
    exact = F.aopc_bounds(scorer, words)
    for width in (1, 3):
        beam = F.aopc_bounds(scorer, words, exact_max_words=0, beam_width=width)
        cols = ["comprehensiveness_lower", "comprehensiveness_upper", "sufficiency_lower", "sufficiency_upper"]
        np.testing.assert_allclose(beam[cols].to_numpy(), exact[cols].to_numpy(), atol=1e-12)


def test_beam_on_long_texts_stays_between_its_extremes_and_the_attributions():
    scorer, words, exact = random_logistic_problem(3, 20, seed=5)
    res = F.naopc(scorer, words, exact, beam_width=2)
    assert (res["bound_method"] == "beam").all()
    assert (res["comprehensiveness_lower"] <= res["comprehensiveness_upper"]).all()
    # additive model: exact attributions reach the (greedy-optimal) beam upper bound
    np.testing.assert_allclose(res["naopc_comprehensiveness"], 1.0, atol=1e-9)
    np.testing.assert_allclose(res["naopc_sufficiency"], 0.0, atol=1e-9)


def test_searched_bounds_are_widened_to_the_evaluated_rankings():
    rng = np.random.default_rng(12)
    words = [f"u{j}" for j in range(10)]
    pairs = {(a, b): rng.normal(0, 2.0) for a, b in itertools.combinations(words, 2) if rng.random() < 0.5}
    scorer = logistic(dict(zip(words, rng.normal(0, 1, 10))), pairs=pairs)
    attrs = [rng.normal(size=10) for _ in range(30)]
    res = F.naopc(scorer, [words] * 30, attrs, beam_width=1)  # greedy bounds, 30 rankings of one text
    raw = F.aopc_bounds(scorer, [words], beam_width=1)
    for m in ("comprehensiveness", "sufficiency"):
        lo, hi = res[f"{m}_lower"], res[f"{m}_upper"]
        # each row normalises with the bounds of its own example: here one ranking per row
        np.testing.assert_allclose(lo, np.minimum(raw.loc[0, f"{m}_lower"], res[f"aopc_{m}"]))
        np.testing.assert_allclose(hi, np.maximum(raw.loc[0, f"{m}_upper"], res[f"aopc_{m}"]))
        assert res[f"naopc_{m}"].between(0.0, 1.0).all()
    per, _ = F.faithfulness_report(scorer, [words], {f"m{i}": [a] for i, a in enumerate(attrs)},
                                   n_random=5, beam_width=1, n_boot=20)
    assert per["comprehensiveness_upper"].nunique() == 1  # one example: one set of bounds for all rankings
    exact = F.aopc_bounds(scorer, [words], exact_max_words=10)
    upper = per["comprehensiveness_upper"].iloc[0]
    assert max(raw.loc[0, "comprehensiveness_upper"], per["aopc_comprehensiveness"].max()) <= upper
    assert upper <= exact.loc[0, "comprehensiveness_upper"] + 1e-12  # still attained by a real ordering
    assert per["naopc_comprehensiveness"].between(0.0, 1.0).all()


def test_flat_bounds_give_nan():
    # One word: every ordering is the same, so lower == upper and NAOPC is undefined.
    scorer = logistic({"a": 1.0})
    res = F.naopc(scorer, [["a"]], [np.array([1.0])])
    assert res.loc[0, "comprehensiveness_lower"] == res.loc[0, "comprehensiveness_upper"]
    assert np.isnan(res.loc[0, "naopc_comprehensiveness"])
    assert np.isnan(res.loc[0, "naopc_sufficiency"])


def test_naopc_of_a_single_example_matches_brute_force_aopc():
    words, weights, pairs = INTERACTING
    scorer = logistic(weights, pairs=pairs)
    attr = np.array([0.1, 0.5, -0.2, 0.9, 1.2, 0.0])
    res = F.naopc(scorer, [words], [attr])
    comp, suff = brute_force_aopc(scorer, words, list(F.ranking(attr)), F.FRACTIONS)
    assert res.loc[0, "aopc_comprehensiveness"] == pytest.approx(comp, abs=1e-12)
    assert res.loc[0, "aopc_sufficiency"] == pytest.approx(suff, abs=1e-12)
    lo, hi = res.loc[0, "comprehensiveness_lower"], res.loc[0, "comprehensiveness_upper"]
    assert res.loc[0, "naopc_comprehensiveness"] == pytest.approx((comp - lo) / (hi - lo), abs=1e-12)


# ----------------------------------------------------------------------------- decision flip


def test_decision_flip_hand_computed():
    # A: logit = 1 + 1 - 0.5 - 0.3 = 1.2 (pos). Ranked good, fine, awful, bad.
    #    drop good -> 0.2 (pos); drop fine too -> -0.8 (neg): flips at k = 2, fraction 2/4.
    # B: bias 0.5, "nice" 0.3, "ok" 0.2: dropping every word leaves logit 0.5 (pos): never flips.
    # C: logit = -1.0 (neg) from "awful"; dropping it -> 0.0, p = 0.5 each, argmax ties go to class 0
    #    (neg) -> no flip; dropping "fine" too -> still 0 - no flip; never.
    weights = {"good": 1.0, "fine": 1.0, "bad": -0.5, "awful": -0.3}
    A = (["good", "fine", "bad", "awful"], np.array([1.0, 1.0, -0.5, -0.3]))
    res = F.decision_flip(logistic(weights), [A[0]], [A[1]])
    assert bool(res.loc[0, "flipped"]) and res.loc[0, "k"] == 2 and res.loc[0, "fraction"] == 0.5
    B = F.decision_flip(logistic({"nice": 0.3, "ok": 0.2}, bias=0.5), [["nice", "ok"]], [np.array([0.3, 0.2])])
    assert not B.loc[0, "flipped"] and np.isnan(B.loc[0, "k"]) and np.isnan(B.loc[0, "fraction"])
    C = F.decision_flip(logistic({"awful": -1.0}), [["awful", "fine"]], [np.array([1.0, 0.0])])
    assert C.loc[0, "label"] == 0 and not C.loc[0, "flipped"]


def test_decision_flip_matches_a_loop_over_k():
    scorer, words, exact = random_logistic_problem(10, 9, seed=2)
    res = F.decision_flip(scorer, words, exact)
    for i, (w, a) in enumerate(zip(words, exact)):
        y = scorer([w])[0].argmax()
        order = np.argsort(-a, kind="stable")
        want = next((k for k in range(1, len(w) + 1)
                     if scorer([[x for j, x in enumerate(w) if j not in set(order[:k])]])[0].argmax() != y), None)
        assert (res.loc[i, "k"] == want) if want else np.isnan(res.loc[i, "k"])


# ----------------------------------------------------------------------------- batching, baseline, report


def stub_stats(monkeypatch):
    """A stand-in toolkit.decisions.stats (mean_ci -> Interval) for tests about batching, not about CIs."""
    Interval = types.SimpleNamespace

    def mean_ci(values, *, n_boot, alpha, seed):
        m = float(np.mean(values))
        return Interval(estimate=m, low=m, high=m, alpha=alpha, n_boot=n_boot)

    monkeypatch.setitem(sys.modules, "toolkit.decisions.stats", types.SimpleNamespace(mean_ci=mean_ci))


def test_scorer_is_called_once_for_short_texts_with_deduplicated_variants(monkeypatch):
    stub_stats(monkeypatch)
    scorer, words, exact = random_logistic_problem(6, 6, seed=4)
    counting = Counting(scorer)
    F.erasure_curves(counting, words, exact)
    # 6 distinct-word examples; default grid on 6 words has k in {1, 2, 3}: per example the full text,
    # 3 comp and 3 suff variants (k=1 repeats for 3 fractions and is scored once) = 7 -> 42.
    assert counting.calls == [42]
    counting.calls.clear()
    F.faithfulness_report(counting, words, {"exact": exact, "neg": [-a for a in exact]}, n_random=5, n_boot=50)
    assert len(counting.calls) == 1  # methods, 5 random rankings, flips and exact bounds: one call


def test_long_texts_add_one_call_per_beam_step():
    scorer, words, exact = random_logistic_problem(3, 12, seed=4)
    counting = Counting(scorer)
    F.naopc(counting, words, exact, beam_width=2)
    assert len(counting.calls) == 1 + F.k_for_fraction(0.5, 12)  # one batch, then one per word up to k=6


def test_random_baseline_is_seeded_and_between_exact_and_reversed():
    scorer, words, exact = random_logistic_problem(8, 7, seed=9)
    a = F.random_baseline(scorer, words, n_rankings=6, seed=1)
    b = F.random_baseline(scorer, words, n_rankings=6, seed=1)
    c = F.random_baseline(scorer, words, n_rankings=6, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["aopc_comprehensiveness"], c["aopc_comprehensiveness"])
    assert (a["n_rankings"] == 6).all() and (a["method"] == "random").all()
    per = F.random_baseline(scorer, words, n_rankings=6, seed=1, per_ranking=True)
    assert len(per) == 8 * 6
    np.testing.assert_allclose(per.groupby("example")["aopc_comprehensiveness"].mean(), a["aopc_comprehensiveness"])
    # example 3's rankings do not depend on the other examples (here: a longer example 0)
    longer = [words[0] + words[1], *words[1:]]
    d = F.random_baseline(scorer, longer, n_rankings=6, seed=1)
    assert d.loc[3, "aopc_comprehensiveness"] == a.loc[3, "aopc_comprehensiveness"]
    assert d.loc[0, "aopc_comprehensiveness"] != a.loc[0, "aopc_comprehensiveness"]
    ex = F.naopc(scorer, words, exact)["naopc_comprehensiveness"]
    rev = F.naopc(scorer, words, [-x for x in exact])["naopc_comprehensiveness"]
    assert (rev <= a["naopc_comprehensiveness"] + 1e-12).all() and (a["naopc_comprehensiveness"] <= ex + 1e-12).all()



def test_aggregate_groups_rows_gathered_over_calls():
    # Rows of two "chunks" with a state column: means per (state, method) equal numpy's nanmean.
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"state": ["a"] * 6 + ["b"] * 6, "method": ["m", "m", "m", "r", "r", "r"] * 2,
                         **{m: rng.random(12) for m in metric_names("faithfulness")}})
    rows.loc[0, "fraction_flip"] = np.nan
    out = F.aggregate(rows, n_boot=50, by=("state", "method"))
    assert list(out[["state", "method"]].itertuples(index=False, name=None)) == [("a", "m"), ("a", "r"), ("b", "m"), ("b", "r")]
    for (state, method), g in rows.groupby(["state", "method"]):
        got = out[(out.state == state) & (out.method == method)].iloc[0]
        for m in metric_names("faithfulness"):
            assert got[m] == pytest.approx(np.nanmean(g[m]))
            assert got[f"{m}_low"] <= got[m] <= got[f"{m}_high"]
    assert out.loc[0, "n_fraction_flip"] == 2 and out.loc[0, "n_examples"] == 3

def test_faithfulness_report_rows_and_aggregate():
    pytest.importorskip("toolkit.decisions.stats")
    scorer, words, exact = random_logistic_problem(10, 6, seed=6)
    per, agg = F.faithfulness_report(scorer, words, {"exact": exact, "reversed": [-a for a in exact]},
                                     n_random=4, seed=0, n_boot=200)
    assert len(per) == 10 * 3 and set(per["method"]) == {"exact", "reversed", "random"}
    assert list(agg["method"]) == ["exact", "reversed", "random"]
    for m in metric_names("faithfulness"):
        assert {m, f"{m}_low", f"{m}_high", f"n_{m}"} <= set(agg.columns)
    means = per.groupby("method")["aopc_comprehensiveness"].mean()
    row = agg.set_index("method")
    np.testing.assert_allclose(row.loc[means.index, "aopc_comprehensiveness"], means, atol=1e-12)
    assert (row["aopc_comprehensiveness_low"] <= row["aopc_comprehensiveness"]).all()
    assert (row["aopc_comprehensiveness"] <= row["aopc_comprehensiveness_high"]).all()
    assert row.loc["exact", "naopc_comprehensiveness"] == pytest.approx(1.0)
    assert row.loc["exact", "aopc_comprehensiveness"] > row.loc["random", "aopc_comprehensiveness"]
    assert row.loc["random", "aopc_comprehensiveness"] > row.loc["reversed", "aopc_comprehensiveness"]
    # per-method rows agree with the single-purpose functions
    solo = F.naopc(scorer, words, exact)
    got = per[per["method"] == "exact"].reset_index(drop=True)
    np.testing.assert_allclose(got["naopc_sufficiency"], solo["naopc_sufficiency"], atol=1e-12)
    flips = F.decision_flip(scorer, words, exact)
    np.testing.assert_array_equal(got["flip_rate"], flips["flipped"].astype(float))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": (0.0, 0.5)}, r"outside \(0, 1\]"),
        ({"fractions": (1.5,)}, r"outside \(0, 1\]"),
        ({"fractions": ()}, "fractions is empty"),
        ({"erasure": "mask"}, r"unknown erasure 'mask'; expected one of \['delete', 'replace'\]"),
    ],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.erasure_curves(logistic(W4), [GOOD4], [np.zeros(4)], **kwargs)


def test_bad_inputs_raise():
    s = logistic(W4)
    with pytest.raises(ValueError, match="example 1 has zero words"):
        F.aopc(s, [GOOD4, []], [np.zeros(4), np.zeros(0)])
    with pytest.raises(ValueError, match=r"attributions\[0\] has shape \(3,\); expected \(4,\)"):
        F.aopc(s, [GOOD4], [np.zeros(3)])
    with pytest.raises(ValueError, match=r"non-finite scores at words \[2\]"):
        F.aopc(s, [GOOD4], [np.array([0.0, 1.0, np.nan, 2.0])])
    with pytest.raises(ValueError, match=r"attributions\[0\] has shape \(8,\); expected \(2,\)"):
        F.aopc(s, ["good bad"], [np.zeros(8)])  # a text's words are split_words(text): 2 here
    with pytest.raises(ValueError, match="example 0 has zero words"):
        F.aopc(s, [" \n "], [np.zeros(0)])
    with pytest.raises(ValueError, match="an empty word or one with whitespace"):
        F.aopc(s, [["good bad", "x"]], [np.zeros(2)])
    with pytest.raises(ValueError, match="1 entries for 2 examples"):
        F.aopc(s, [GOOD4, GOOD4], [np.zeros(4)])
    with pytest.raises(ValueError, match="beam_width must be an integer >= 1, got 0"):
        F.aopc_bounds(s, [GOOD4], beam_width=0)
    with pytest.raises(ValueError, match="'random' is reserved"):
        F.faithfulness_report(s, [GOOD4], {"random": [np.zeros(4)]})
    with pytest.raises(ValueError, match=r"scorer returned shape \(1,\)"):
        F.aopc(lambda v: np.ones(1), [GOOD4], [np.zeros(4)])


# ----------------------------------------------------------------------------- model adapter


def test_model_scorer_joins_words_with_single_spaces(monkeypatch):
    calls = []

    def label_probs(model, tokenizer, task, texts, *, batch_size=16, progress=False):
        calls.append((model, tokenizer, task, list(texts), batch_size, progress))
        return np.tile([0.25, 0.75], (len(texts), 1))

    fake = types.ModuleType("toolkit.models.scoring")
    fake.label_probs = label_probs
    monkeypatch.setitem(sys.modules, "toolkit.models.scoring", fake)
    scorer = F.model_scorer("m", "t", "task", batch_size=4)
    out = scorer([["Not", "bad,", "really"], []])
    assert out.shape == (2, 2)
    assert calls == [("m", "t", "task", ["Not bad, really", ""], 4, False)]


# ----------------------------------------------------------------------------- real model


@pytest.mark.model
def test_smollm2_on_uci_sentences():
    """Occlusion (leave-one-out) attributions on SmolLM2 for 3 short UCI sentences (~2-4 min on 2 cores)."""
    import torch

    data = pytest.importorskip("toolkit.data.datasets")
    scoring = pytest.importorskip("toolkit.models.scoring")
    models = pytest.importorskip("toolkit.models.loading")
    torch.set_num_threads(2)
    model, tokenizer = models.load_model("smollm2-135m")
    dataset = data.load_dataset("uci_yelp", n=60)
    texts = [e.text for e in dataset.examples if 4 <= len(F.split_words(e.text)) <= 6][:3]
    assert len(texts) == 3
    task = data.get_task("uci_yelp")
    scorer = F.model_scorer(model, tokenizer, task, batch_size=16)
    words = [F.split_words(t) for t in texts]

    # the scorer sees the words joined by single spaces: p_full is label_probs of the joined text
    full = scorer(words)
    direct = scoring.label_probs(model, tokenizer, task, [" ".join(w) for w in words], batch_size=16)
    np.testing.assert_allclose(full, direct, atol=1e-6)  # same texts, same batch: fp32 reruns agree
    occlusion, best_drop = [], []
    for w, p in zip(words, full):
        y = p.argmax()
        drops = p[y] - scorer([[x for j, x in enumerate(w) if j != i] for i in range(len(w))])[:, y]
        occlusion.append(drops)
        best_drop.append(drops.max())
    # comp at k=1 of the occlusion ranking is, by definition, the largest single-word drop
    curves = F.erasure_curves(scorer, words, occlusion, fractions=(0.01,))
    np.testing.assert_allclose(curves["comprehensiveness"], best_drop, atol=1e-5)  # fp32, batch composition differs

    per, agg = F.faithfulness_report(scorer, words, {"occlusion": occlusion, "reversed": [-a for a in occlusion]},
                                     n_random=1, n_boot=100)
    assert (per["bound_method"] == "exact").all()
    assert np.isfinite(per[["aopc_comprehensiveness", "aopc_sufficiency"]].to_numpy()).all()
    row = agg.set_index("method")
    assert row.loc["occlusion", "aopc_comprehensiveness"] > row.loc["reversed", "aopc_comprehensiveness"]
    assert (per["naopc_comprehensiveness"].dropna().between(-1e-6, 1 + 1e-6)).all()  # exact bounds contain every ordering


# ----------------------------------------------------------------------------- memo and AOPC-only


MEMO_WORDS = ["good food bad service", "the movie was great", "awful plot not very good at all today", "i liked it"]
MEMO_WEIGHTS = {"good": 1.5, "great": 2.0, "liked": 1.2, "bad": -1.7, "awful": -2.2, "not": -0.8}


def _rankings(words, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=len(F.split_words(t))) for t in words]


def test_memo_scores_each_variant_once_across_calls_and_changes_no_number():
    """naopc + random_baseline + the report on one memo: scored = the distinct variants of all calls."""
    plain = Counting(logistic(MEMO_WEIGHTS, pairs={("not", "good"): -2.0}))
    memo_inner = Counting(logistic(MEMO_WEIGHTS, pairs={("not", "good"): -2.0}))
    memoised = F.memoize(memo_inner)
    attrs = {"a": _rankings(MEMO_WORDS, 1), "b": _rankings(MEMO_WORDS, 2)}
    calls = [
        lambda s: F.naopc(s, MEMO_WORDS, attrs["a"], exact_max_words=4),
        lambda s: F.random_baseline(s, MEMO_WORDS, n_rankings=2, exact_max_words=4),
        lambda s: F.faithfulness_report(s, MEMO_WORDS, attrs, n_random=2, n_boot=50, exact_max_words=4)[0],
    ]
    for call in calls:
        pd.testing.assert_frame_equal(call(memoised), call(plain))  # identical, not merely close
    assert len(memo_inner.keys) == len(set(memo_inner.keys))  # nothing scored twice
    assert set(memo_inner.keys) == set(plain.keys)  # ... and nothing missing
    assert memoised.memo.scored == len(set(plain.keys)) < len(plain.keys)
    assert memoised.memo.requested == len(plain.keys)
    assert memoised.memo.saved == len(plain.keys) - len(set(plain.keys))


def test_memo_keeps_model_states_apart_and_drops_the_oldest():
    state = {"s": 0}
    inner = Counting(logistic(MEMO_WEIGHTS))
    memo = F.ScoreMemo(max_states=2)
    scorer = F.memoize(inner, memo, state=lambda: state["s"])
    variant = F.Variant(("good", "food"), "good food")
    for s in (0, 1, 0, 2, 1):  # 1 is evicted by 2 (0 was used more recently)
        state["s"] = s
        scorer([variant])
    assert len(inner.keys) == 4 and memo.scored == 4 and memo.saved == 1
    assert len(memo) == 2


@pytest.mark.parametrize("bad", [None, 0, "yes"])
def test_memo_argument_is_checked(bad):
    with pytest.raises(ValueError, match=f"memo={bad!r}; expected True, False or a ScoreMemo"):
        F.model_scorer(object(), object(), object(), memo=bad)


def test_naopc_false_is_aopc_only_and_scores_fewer_variants():
    full, cheap = Counting(logistic(MEMO_WEIGHTS)), Counting(logistic(MEMO_WEIGHTS))
    attrs = {"a": _rankings(MEMO_WORDS, 3)}
    with_bounds, _ = F.faithfulness_report(full, MEMO_WORDS, attrs, n_random=2, n_boot=50, exact_max_words=4)
    aopc_only, agg = F.faithfulness_report(cheap, MEMO_WORDS, attrs, n_random=2, n_boot=50, naopc=False)
    same = ["aopc_comprehensiveness", "aopc_sufficiency", "flip_rate", "fraction_flip", "p_full", "label"]
    pd.testing.assert_frame_equal(aopc_only[same], with_bounds[same])
    assert aopc_only[["naopc_comprehensiveness", "naopc_sufficiency", "comprehensiveness_lower"]].isna().all().all()
    assert (aopc_only.bound_method == "none").all()
    assert agg.n_naopc_comprehensiveness.eq(0).all()
    assert len(cheap.keys) < len(full.keys) / 2  # the bounds are most of the work
    with pytest.raises(ValueError, match="naopc='no'; expected True or False"):
        F.random_baseline(cheap, MEMO_WORDS, naopc="no")


def _tiny_setup():
    from tiny import tiny_model, tiny_tokenizer

    from toolkit.data.task import Example, Task

    task = Task("tiny", "is the review good or bad ?", ("negative", "positive"), ("bad", "good"),
                input_name="review", use_chat_template=False)
    texts = ["the food was good", "awful service and bad plot", "i liked the movie", "not very great"]
    return tiny_model(), tiny_tokenizer(bos=True), task, [Example(f"e{i}", t, i % 2) for i, t in enumerate(texts)]


def test_model_faithfulness_memo_matches_no_memo_and_tracks_model_state():
    """A warm memo (an earlier call, inside and outside a drop) gives the unmemoised numbers.

    Not bit-for-bit: the unmemoised run scores a variant in another batch than the memo's first
    run did, and a batch's padding changes fp32 matmul rounding (~1e-8 in a probability here);
    probabilities and AOPCs agree to 1e-6, NAOPC divides by the bound span (down to ~0.01 on a
    random tiny model), so to 1e-4.
    """
    import torch

    from toolkit.pruning.attention import drop_attention

    model, tok, task, examples = _tiny_setup()
    F.clear_memo()
    kwargs = dict(n_random=2, n_boot=50, batch_size=3)
    for layers in ([], [1], []):  # back to the unpruned state: its variants come from the memo
        with drop_attention(model, layers):
            warm, _ = F.model_faithfulness(model, tok, task, examples[:2], ["saliency"], **kwargs)
            memo, _ = F.model_faithfulness(model, tok, task, examples, ["saliency", "input_x_gradient"], **kwargs)
            fresh, _ = F.model_faithfulness(model, tok, task, examples, ["saliency", "input_x_gradient"], memo=False,
                                            **kwargs)
        naopc_cols = ["naopc_comprehensiveness", "naopc_sufficiency"]
        pd.testing.assert_frame_equal(memo.drop(columns=naopc_cols), fresh.drop(columns=naopc_cols), atol=1e-6, rtol=0)
        pd.testing.assert_frame_equal(memo[naopc_cols], fresh[naopc_cols], atol=1e-4, rtol=0)
    stats = F.model_scorer(model, tok, task).memo
    assert stats.saved > stats.scored / 2  # the second call found most of its variants
    # an in-place weight edit is a new state: nothing stale is served
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    scorer = F.model_scorer(model, tok, task)
    variant = F.Variant(("the", "food"), "the food")
    before = scorer.memo.scored
    np.testing.assert_allclose(scorer([variant]), F.model_scorer(model, tok, task, memo=False)([variant]), atol=1e-7)
    assert scorer.memo.scored == before + 1
    F.clear_memo(model)
    assert len(F.model_scorer(model, tok, task).memo) == 0


@pytest.mark.model
@pytest.mark.parametrize("bundled", ["smollm2", "gemma3"])
def test_memo_on_real_sentences_matches_no_memo(bundled, request):
    """Three short UCI sentences on each bundled model: a warm memo gives the unmemoised report."""
    from toolkit.data.datasets import load_dataset

    model, tok = request.getfixturevalue(bundled)
    data = load_dataset("uci_yelp", n=40, split="test")
    examples = [e for e in data.examples if len(F.split_words(e.text)) <= 7][:3]
    assert len(examples) == 3
    F.clear_memo(model)
    kwargs = dict(n_random=1, n_boot=50, batch_size=8)
    F.model_faithfulness(model, tok, data.task, examples[:1], ["saliency"], **kwargs)  # warms the memo
    memo, _ = F.model_faithfulness(model, tok, data.task, examples, ["saliency", "input_x_gradient"], **kwargs)
    fresh, _ = F.model_faithfulness(model, tok, data.task, examples, ["saliency", "input_x_gradient"], memo=False,
                                    **kwargs)
    naopc_cols = ["naopc_comprehensiveness", "naopc_sufficiency"]
    pd.testing.assert_frame_equal(memo.drop(columns=naopc_cols), fresh.drop(columns=naopc_cols), atol=1e-5, rtol=0)
    pd.testing.assert_frame_equal(memo[naopc_cols], fresh[naopc_cols], atol=1e-3, rtol=0)
    assert F.model_scorer(model, tok, data.task).memo.saved > 0


def test_naopc_from_bounds_by_hand():
    assert F.naopc_from_bounds(0.3, 0.1, 0.5) == pytest.approx(0.5)
    assert isinstance(F.naopc_from_bounds(0.3, 0.1, 0.5), float)
    assert math.isnan(F.naopc_from_bounds(0.25 + 5e-14, 0.25, 0.25 + 1e-13))  # span 1e-13 <= FLAT_BOUNDS_TOL
    np.testing.assert_allclose(  # float64 division: 0.1 / 0.2 of these decimals is off by 1 ulp
        F.naopc_from_bounds([0.1, 0.5, 0.3, -0.2], [0.1, 0.1, 0.3, -0.3], [0.5, 0.5, 0.3, -0.1]),
        [0.0, 1.0, np.nan, 0.5], rtol=0, atol=1e-15,
    )
