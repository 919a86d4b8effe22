"""The random-layer control (toolkit.study.controls) against computations written here, by hand or by scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from toolkit.study.controls import random_control
from toolkit._core.validation import InputError

N = 200


def _record(selection, k, probs, labels, *, faith=None, ids=None):
    return dict(model="m", dataset="d", shots=0, selection=selection, k=k, level=k, layers=list(range(k)),
                ids=ids or [f"x{i}" for i in range(len(labels))], labels=[int(v) for v in labels],
                probs=np.asarray(probs).tolist(), label_names=["negative", "positive"],
                label_mass=[0.5] * len(labels), faithfulness=faith or [])


def _probs(rng, labels, skill):
    """Two-class probabilities right with probability ~skill, confidence spread over (0.5, 1)."""
    conf = rng.uniform(0.5, 1.0, size=len(labels))
    right = rng.random(len(labels)) < skill
    p1 = np.where(right == (labels == 1), conf, 1 - conf)
    return np.stack([1 - p1, p1], axis=1)


def _faith(rng, n, shift):
    rows = []
    for i in range(n):
        raw = rng.normal(0.3 + shift, 0.1)
        perm = rng.normal(0.2, 0.1)
        for method, v in (("ig", raw), ("permuted(ig)", perm), ("ig_minus_permuted", raw - perm), ("random", 0.1)):
            rows.append(dict(example=f"x{i}", method=method, soft_comprehensiveness=v, room=0.4 + 0.01 * i))
    return rows


@pytest.fixture
def study():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=N)
    ref = _record("none", 0, _probs(rng, labels, 0.85), labels, faith=_faith(rng, 24, 0.0))
    sel = _record("cosine", 2, _probs(rng, labels, 0.85), labels, faith=_faith(rng, 24, 0.0))
    draws = [_record(name, 2, _probs(rng, labels, 0.65), labels, faith=_faith(rng, 24, -0.1))
             for name in ("random", "random#2", "random#3")]
    return [ref, sel, *draws], labels


def _by_hand_ece(probs, labels, n_bins=15):
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(np.mean(pred[inside] == labels[inside]) - conf[inside].mean())
    return total


def test_accuracy_and_ece_against_hand_computations(study):
    records, labels = study
    out = random_control(records, n_boot=300, seed=1, metrics=("accuracy", "ece")).set_index("metric")
    sel, draws = records[1], records[2:]
    correct = lambda r: (np.asarray(r["probs"]).argmax(1) == labels).astype(float)  # noqa: E731
    d = correct(sel) - np.mean([correct(r) for r in draws], axis=0)
    acc = out.loc["accuracy"]
    assert acc.difference == pytest.approx(d.mean(), abs=1e-12)
    assert acc.selection_value == pytest.approx(correct(sel).mean())
    assert acc.ci_low < d.mean() < acc.ci_high
    # the bootstrap se against the analytic paired se: the same z to ~15%
    z_analytic = d.mean() / (d.std(ddof=1) / np.sqrt(N))
    z_boot = stats.norm.isf(acc.p / 2)
    assert z_boot == pytest.approx(z_analytic, rel=0.15)
    ece = out.loc["ece"]
    by_hand = _by_hand_ece(np.asarray(sel["probs"]), labels) - np.mean(
        [_by_hand_ece(np.asarray(r["probs"]), labels) for r in draws])
    assert ece.difference == pytest.approx(by_hand, abs=1e-9)
    assert (out.draws == 3).all() and (out.family == "exploratory").all()


def test_faithfulness_is_the_claim_method_against_scipy(study):
    records, _ = study
    out = random_control(records, n_boot=20).set_index("metric")
    assert "soft_comprehensiveness:ig_minus_permuted" in out.index
    assert not any(m.endswith(":ig") or "permuted(ig)" in m for m in out.index if not m.startswith("room"))
    per = lambda r, m: pd.DataFrame(r["faithfulness"]).query("method == @m").set_index("example")  # noqa: E731
    sel = per(records[1], "ig_minus_permuted").soft_comprehensiveness
    rand = pd.concat([per(r, "ig_minus_permuted").soft_comprehensiveness for r in records[2:]], axis=1).mean(axis=1)
    row = out.loc["soft_comprehensiveness:ig_minus_permuted"]
    assert row.test == "t" and row.n == 24
    assert row.p == pytest.approx(stats.ttest_rel(sel, rand).pvalue, rel=1e-9)
    assert row.difference == pytest.approx((sel - rand).mean())
    # room is the model's, not the ranking's: read from the raw method (the same values in every cell here)
    assert out.loc["room:ig"].difference == pytest.approx(0.0, abs=1e-12)


def test_small_n_uses_the_exact_sign_flip_test(study):
    records, _ = study
    for r in records:
        r["faithfulness"] = [row for row in r["faithfulness"] if int(row["example"][1:]) < 8]
    row = random_control(records, n_boot=20).set_index("metric").loc["soft_comprehensiveness:ig_minus_permuted"]
    per = lambda r: pd.DataFrame(r["faithfulness"]).query("method == 'ig_minus_permuted'").set_index(  # noqa: E731
        "example").soft_comprehensiveness
    d = per(records[1]) - pd.concat([per(r) for r in records[2:]], axis=1).mean(axis=1)
    ref = stats.permutation_test((d.to_numpy(),), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert row.test == "sign_flip"
    assert row.p == pytest.approx(ref.pvalue, abs=1e-12)
    assert row.p_min == pytest.approx(2 / 2**8)  # the smallest p two-sided on 8 pairs, checked against alpha/m


def test_bh_over_the_table_against_statsmodels(study):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    records, _ = study
    out = random_control(records, n_boot=20)
    kept = out[~out.refused & out.p.notna()]
    reject, p_adj, *_ = multipletests(kept.p, alpha=0.05, method="fdr_bh")
    assert np.allclose(kept.p_adj, p_adj)
    assert (kept.rejected.to_numpy() == reject).all()
    assert out[out.refused].p_adj.isna().all()


def test_collapsed_draws_are_counted_and_cells_without_draws_skipped(study):
    records, labels = study
    records[2]["probs"] = np.tile([0.2, 0.8], (N, 1)).tolist()  # one class for every sentence
    out = random_control(records, n_boot=20)
    assert (out.draws_collapsed == 1).all()
    alone = [records[0], records[1], *[dict(r, k=3) for r in records[2:]]]  # the draws at another k
    assert random_control(alone, n_boot=20).empty


def test_draws_on_other_sentences_and_unknown_metrics_are_refused(study):
    records, _ = study
    assert set(random_control(records, n_boot=10).metric) >= {"accuracy", "ece", "smooth_ece", "brier"}
    with pytest.raises(InputError, match="'f1'.*expected some of"):
        random_control(records, metrics=("accuracy", "f1"))
    records[3]["ids"] = list(reversed(records[3]["ids"]))
    with pytest.raises(InputError, match="random#2.*same ids"):
        random_control(records, n_boot=20)
