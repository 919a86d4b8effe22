"""The registries: the generic Registry[T], and a metric registered in the test reaching every consumer.

``toolkit._core.registry.Registry`` is checked against each case of its one policy (a duplicate
refused with a message that says ``replace=True``, a replacement, an unknown name listing the
registered ones, the undo that restores a replaced entry), and every registry of the toolkit is one.

One metric per family is registered inside the test (never in the package) - a calibration metric
(overconfidence), a faithfulness metric (comprehensiveness minus sufficiency) and an importance
metric (reverse layer order) - and a tiny local study then shows each of them in the table, the
summary, the plan's number of tests, the claims plot and report.md. The registrations are undone
afterwards. The tiny study of main before the refactor (tests/golden/) is reproduced exactly.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.models.adapters import decoder_layers
from toolkit.metrics.registry import (
    METRICS,
    Metric,
    get_metric,
    headline_metrics,
    list_metrics,
    metric_names,
    register_metric,
    unregister_metric,
)
from toolkit._core.validation import InputError, InputTypeError

GOLDEN = Path(__file__).parent / "golden"


def _overconfidence(p: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None):
    """Mean top-label confidence minus accuracy (supports bootstrap ``weights`` (B, n))."""
    gap = p.max(axis=1) - (p.argmax(axis=1) == y).astype(float)
    return float(gap.mean()) if weights is None else (weights @ gap) / weights.sum(axis=1)


def _comp_minus_suff(table: pd.DataFrame) -> pd.Series:
    return table["aopc_comprehensiveness"] - table["aopc_sufficiency"]


def _reverse(inputs) -> np.ndarray:
    """Later layers score lower: dropped first."""
    n = len(decoder_layers(inputs.model))
    return np.arange(n, 0, -1, dtype=float)


TEST_METRICS = (
    Metric("t_overconfidence", _overconfidence, "calibration", higher_is_better=False, test="paired_bootstrap",
           headline=True, label="overconfidence", plot=True),
    Metric("t_comp_gap", _comp_minus_suff, "faithfulness", higher_is_better=True, test="paired_t", headline=True,
           label="comp - suff", plot=True, needs={"curves"}),
    Metric("t_reverse", _reverse, "importance", label="reverse order"),
)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A tiny local study run with the three test metrics registered, and what each consumer made of them.

    Everything that reads the registry runs inside the ``with``: the metrics and the dataset are unregistered
    before any test of this module runs, so the other tests see the package's registry only.
    """
    from tiny import tiny_model, tiny_tokenizer
    import matplotlib.pyplot as plt

    from toolkit import Task, register_dataset
    from toolkit.data.datasets import DATASETS
    from toolkit.study.plots import claims_plot
    from toolkit.study import StudyConfig, plan, run_study, summary

    tmp = tmp_path_factory.mktemp("registry")
    tiny_model().save_pretrained(tmp / "model")
    tiny_tokenizer().save_pretrained(tmp / "model")
    words = "good bad great awful movie food service plot liked hated not very".split()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        text = list(rng.choice(words, size=int(rng.integers(3, 9)))) + ["good" if i % 2 else "bad"]
        lines.append(json.dumps({"id": f"r-{i}", "text": " ".join(text), "label": i % 2,
                                 "split": ["train", "validation", "test"][i % 3]}))
    (tmp / "data.jsonl").write_text("\n".join(lines) + "\n")
    before = metric_names()
    with METRICS.restored(), DATASETS.restored():
        register_dataset("registry_sent", tmp / "data.jsonl", Task(
            name="registry_sent", instruction="sentiment of this review ?", label_names=("negative", "positive"),
            verbalizers=("negative", "positive"), input_name="review", use_chat_template=False))
        for metric in TEST_METRICS:
            register_metric(metric)
        config = StudyConfig(models=(str(tmp / "model"),), datasets=("registry_sent",), levels=(0, 1, 2),
                             selections=("cosine", "t_reverse"), methods=("saliency",), n_eval=8, n_validation=6,
                             n_importance=4, n_faithfulness=3, n_random=1, n_boot=50, batch_size=4,
                             output_dir=str(tmp / "out"))
        table = run_study(config, progress=False, report=True)
        head = summary(table, correction=config.correction, alpha=config.alpha)
        axes = claims_plot(head)
        titles = [ax.get_title() for ax in axes]
        plt.close("all")
        out = dict(config=config, table=table, summary=head, plan=plan(config), claims_titles=titles,
                   report=(config.run_dir() / "report.md").read_text())
    assert metric_names() == before  # the registrations are undone
    return out


def test_registered_metrics_reach_the_study_table(tiny_study):
    table = tiny_study["table"]
    over = table[table.metric == "t_overconfidence"]
    assert len(over) == 5 and over.value.notna().all()  # every cell: 1 unpruned + 2 selections x 2 levels
    assert over[over.k > 0].delta_se.notna().all()  # its paired-bootstrap test
    gap = table[table.metric == "t_comp_gap:saliency"]
    assert len(gap) == 5 and gap[gap.k > 0].delta_df.notna().all()  # its paired t test
    random_gap = table[table.metric == "t_comp_gap:random"]
    assert len(random_gap) == 5  # beside the random baseline, as every faithfulness metric
    cal = [m for m in table.metric.unique() if ":" not in m]
    assert cal.index("t_overconfidence") == cal.index("nll") + 1  # the registry's order
    reverse = table[(table.selection == "t_reverse") & (table.metric == "accuracy")].set_index("k")
    assert reverse.loc[1, "layers"] == "3" and reverse.loc[2, "layers"] == "2 3"  # its ranking chose the layers


def test_registered_metrics_reach_the_summary_and_the_plan(tiny_study):
    head, plan = tiny_study["summary"], tiny_study["plan"]
    columns = set(head.table.columns)
    for short in ("t_overconfidence", "t_comp_gap"):
        assert {short, f"d_{short}", f"{short}_low", f"{short}_high", f"{short}_p_adj", f"{short}_degrades"} <= columns
    assert head.claims == ("accuracy", "ece", "t_overconfidence", "naopc_comprehensiveness", "t_comp_gap")
    assert set(head.table.selection) == {"none", "cosine", "t_reverse"}
    n_pruned = 4  # per pruned cell: ECE, overconfidence, NAOPC and comp - suff (one method) are tested
    assert set(head.tests.metric) <= {"ece", "t_overconfidence", "naopc_comprehensiveness:saliency",
                                      "t_comp_gap:saliency"} and len(head.tests) <= n_pruned * 4
    assert {"t_overconfidence", "t_comp_gap:saliency"} <= set(head.tests.metric)
    assert head.m + head.m_exploratory + int(head.tests.refused.sum()) == len(head.tests)
    assert plan.attrs["m"] == n_pruned * 4  # the largest primary family: every pruned cell passing the gate
    assert plan.metric.tolist() == ["accuracy", "ece", "t_overconfidence", "naopc", "t_comp_gap"]


def test_registered_metrics_reach_the_claims_plot_and_the_report(tiny_study):
    titles = tiny_study["claims_titles"]
    assert len(titles) == 5 and "Δ overconfidence, 95% CI" in titles and "Δ comp - suff (saliency), 95% CI" in titles
    report = tiny_study["report"]
    assert "`t_overconfidence_degrades`" in report and "`t_comp_gap_degrades`" in report
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert {"t_overconfidence", "t_overconfidence_degrades", "t_comp_gap", "t_comp_gap_degrades"} <= {
        cell.strip() for cell in header.split("|")}
    assert "| t_reverse " in report  # the importance metric's cells are rows of the summary
    run_dir = tiny_study["config"].run_dir()
    assert len(list(run_dir.glob("claims_*.png"))) == 1


def test_registration_is_checked_and_undone():
    with pytest.raises(InputError, match="metric 'ece' is already registered"):
        register_metric(Metric("ece", _overconfidence, "calibration"))
    with pytest.raises(InputError, match="unknown metric family 'accuracy'"):
        Metric("x", _overconfidence, "accuracy")
    with pytest.raises(InputError, match="test='paired_t' is not a test of the calibration family"):
        Metric("x", _overconfidence, "calibration", test="paired_t")
    with pytest.raises(InputError, match="headline claim without a test"):
        Metric("x", _overconfidence, "calibration", headline=True)

    @register_metric("t_decorated", family="calibration", higher_is_better=False)
    def decorated(p, y, *, weights=None):
        return _overconfidence(p, y, weights=weights)

    try:
        assert get_metric("t_decorated").fn is decorated and "t_decorated" in metric_names("calibration")
        with pytest.raises(InputError, match="already registered"):
            register_metric("t_decorated", decorated, family="calibration")
    finally:
        unregister_metric("t_decorated")
    assert "t_decorated" not in metric_names()
    with pytest.raises(InputError, match="unknown metric 't_decorated'"):
        get_metric("t_decorated")


def test_the_default_faithfulness_claim_is_naopc_or_its_stand_in():
    from toolkit.study.config import STAND_INS, claim_metrics

    both = {"accuracy", "ece", "aopc_comprehensiveness", "naopc_comprehensiveness"}
    assert [m.name for m in headline_metrics("faithfulness", measured=both)] == [
        "aopc_comprehensiveness", "naopc_comprehensiveness"]  # the registry: every headline entry
    assert [m.name for m in claim_metrics(measured=both)] == ["accuracy", "ece", "naopc_comprehensiveness"]
    assert [m.name for m in claim_metrics(measured=both - {"naopc_comprehensiveness"})] == [
        "accuracy", "ece", "aopc_comprehensiveness"]  # a study without the bound search
    assert [m.name for m in claim_metrics()] == ["accuracy", "ece", "naopc_comprehensiveness"]
    assert STAND_INS == {"aopc_comprehensiveness": "naopc_comprehensiveness"}
    assert [m.name for m in headline_metrics("calibration")] == ["accuracy", "ece"]
    assert {m.family for m in list_metrics()} == {"importance", "faithfulness", "calibration"}


def test_metric_needs_are_checked_per_family():
    assert get_metric("loss_delta").needs == {"labels"} and get_metric("random").control
    assert get_metric("naopc_comprehensiveness").needs == {"curves", "bounds"}
    with pytest.raises(InputError, match=r"needs=\['labels'\]; allowed for faithfulness metrics"):
        Metric("x", _comp_minus_suff, "faithfulness", needs={"labels"})
    with pytest.raises(InputError, match="allowed for calibration metrics: none"):
        Metric("x", _overconfidence, "calibration", needs={"curves"})
    with pytest.raises(InputTypeError, match="is one str"):
        Metric("x", _comp_minus_suff, "faithfulness", needs="curves")
    with pytest.raises(InputError, match="control is for importance metrics"):
        Metric("x", _overconfidence, "calibration", control=True)


def test_register_metric_replaces_only_when_asked():
    ece = get_metric("ece")
    with METRICS.restored():
        louder = register_metric(Metric("ece", _overconfidence, "calibration", higher_is_better=False,
                                        test="paired_bootstrap", headline=True, label="ECE"), replace=True)
        assert get_metric("ece") is louder and metric_names().index("ece") == 1  # replaced in place
    assert get_metric("ece") is ece


# Golden numbers are compared to float32 noise, not to the last bit. The model computes in float32
# (unit roundoff 2**-24 ~ 6e-8 per probability), and a new transformers or torch kernel may sum in
# another order. The steps from probabilities to the table amplify that noise: NAOPC divides by its
# per-sentence bound range (down to ~0.05 here: x20), a t interval at df 2 multiplies a standard
# error by t(0.975, 2) = 4.30, and a metric accumulates up to ~10 such terms:
# 6e-8 * 20 * 4.3 * 10 ~ 5e-5. Observed between transformers 5.24 and 5.25: at most 3.3e-5
# (naopc_high), 1.6e-6 relative on the plan's `sd`. A changed metric moves numbers by >= 1e-3 (see
# test_golden_study_fails_when_a_metric_changes, which must keep failing).
GOLDEN_RTOL = GOLDEN_ATOL = 1e-4


def golden_mismatches(outputs: dict[str, str]) -> list[str]:
    """Names of golden files whose content differs: text exactly, CSV numbers beyond float32 noise."""
    bad = []
    for name, text in sorted(outputs.items()):
        golden = (GOLDEN / "study" / name).read_text()
        if text == golden:
            continue
        if name.endswith(".csv"):
            try:
                pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(text)), pd.read_csv(io.StringIO(golden)),
                                              rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL)
                continue
            except AssertionError as err:
                bad.append(f"{name}: {str(err).splitlines()[0]}")
        elif name.endswith(".json"):
            a, b = json.loads(text), json.loads(golden)
            if _close(a, b):
                continue
            bad.append(f"{name}: {a} != {b}")
        elif _same_text_close_numbers(text, golden):
            continue
        else:
            bad.append(name)
    return bad


_NUMBER = re.compile(r"-?\d+\.?\d*(?:[eE][-+]?\d+)?")


def _same_text_close_numbers(text: str, golden: str) -> bool:
    """A rendered report: the same words, and numbers within the tolerance or one unit of their last printed digit.

    A value printed to d decimals can round the other way when float32 noise moves it across a
    rounding boundary (2.04350115 -> 2.044 vs 2.04349984 -> 2.043).
    """
    if _NUMBER.sub("#", text) != _NUMBER.sub("#", golden):
        return False
    for a, b in zip(_NUMBER.findall(text), _NUMBER.findall(golden)):
        decimals = len(b.split(".")[1]) if "." in b and "e" not in b.lower() else 0
        unit = 10.0 ** -decimals if decimals else 0.0
        if not np.isclose(float(a), float(b), rtol=GOLDEN_RTOL, atol=max(GOLDEN_ATOL, unit * 1.0000001)):
            return False
    return True


def _close(a, b) -> bool:
    """JSON values equal, numbers to the golden tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(a, b, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL))
    return a == b


def _golden_outputs(tmp_path):
    sys.path.insert(0, str(GOLDEN))
    try:
        from study_golden import study_outputs
    finally:
        sys.path.remove(str(GOLDEN))
    return study_outputs(tmp_path)


def test_tiny_study_is_unchanged_by_the_refactor(tmp_path):
    """The tiny local studies give the outputs main gave before the refactor (tests/golden/, from 3925ff9)."""
    assert golden_mismatches(_golden_outputs(tmp_path)) == []


def test_golden_study_fails_when_a_metric_changes(tmp_path, monkeypatch):
    """The tolerance still catches a real change: a paired bootstrap that resamples one arm only."""
    from toolkit.decisions import stats
    from toolkit.study import table

    def one_arm_bootstrap(metric_fn, arrays_a, arrays_b, *, n_boot=1000, alpha=0.05, seed=0):
        fixed = float(metric_fn(*arrays_a))  # arm a never resampled: the pairing is lost
        return stats.bootstrap_ci(lambda *b: float(metric_fn(*b)) - fixed, *arrays_b, n_boot=n_boot,
                                  alpha=alpha, seed=seed)

    monkeypatch.setattr(table, "paired_bootstrap", one_arm_bootstrap)
    bad = golden_mismatches(_golden_outputs(tmp_path))
    assert any(name.startswith(("naopc_table.csv", "aopc_table.csv")) for name in bad), bad
