"""The study options of the replication study: shots, skip_at_chance, length_buckets, claims and soft.

Each option leaves the default study as it was (the digest here; tests/test_metrics_registry.py checks the
golden tables, summary, plan and report) and changes what it says when set. Two tiny local studies
(2 cells each) on a dataset with sentences of 2 to 12 words; the accuracy file that ``shots: auto``
and ``skip_at_chance`` read is a small CSV in a temporary ``TOOLKIT_DATA_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import toolkit.study.cells as cells_module
from tiny import tiny_model, tiny_tokenizer
from toolkit import Task, load_dataset, register_dataset
from toolkit.metrics.registry import METRICS, Metric, register_metric
from toolkit.data.prompts import split_words
from toolkit.decisions.stats import mean_ci
from toolkit._core.store import CellStore
from toolkit.study import (
    StudyConfig,
    bucket_labels,
    faithfulness_by_length,
    load_results,
    plan,
    run_study,
    status,
    study_cells,
    study_data,
    study_pairs,
    study_shots,
    summary,
)
from toolkit._core.validation import InputError

WORDS = "good bad great awful movie food service plot liked hated not very".split()
DATASET = "options_sent"
ACCURACY_HEADER = "model,dataset,shots,n,accuracy,low,high,majority,above_chance,label_mass,seconds\n"


def _comp_minus_suff(table: pd.DataFrame) -> pd.Series:
    return table["aopc_comprehensiveness"] - table["aopc_sufficiency"]


# A throwaway faithfulness claim (the soft_* metrics are registered elsewhere): only inside `METRICS.restored()`.
T_CLAIM = Metric("t_claim_gap", _comp_minus_suff, "faithfulness", higher_is_better=True, test="paired_t",
                 label="comp - suff", short="t_gap", needs={"curves"})


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> dict:
    """A tiny model and a registered dataset whose sentences have 2 to 12 words (90 records, 30 per split)."""
    tmp = tmp_path_factory.mktemp("options")
    tiny_model().save_pretrained(tmp / "model")
    tiny_tokenizer().save_pretrained(tmp / "model")
    rng = np.random.default_rng(1)
    lines = []
    for i in range(90):
        text = list(rng.choice(WORDS, size=int(rng.integers(1, 12)))) + ["good" if i % 2 else "bad"]
        lines.append(json.dumps({"id": f"o-{i}", "text": " ".join(text), "label": i % 2,
                                 "split": ["train", "validation", "test"][i % 3]}))
    (tmp / "data.jsonl").write_text("\n".join(lines) + "\n")
    register_dataset(DATASET, tmp / "data.jsonl", Task(
        name=DATASET, instruction="sentiment of this review ?", label_names=("negative", "positive"),
        verbalizers=("negative", "positive"), input_name="review", use_chat_template=False), replace=True)
    return {"tmp": tmp, "model": str(tmp / "model")}


def _config(fixture, **options) -> StudyConfig:
    sizes = dict(models=(fixture["model"],), datasets=(DATASET,), levels=(0, 1), selections=("cosine",),
                 methods=("saliency",), n_eval=12, n_validation=6, n_importance=4, n_faithfulness=2, n_random=1,
                 n_boot=50, batch_size=4, naopc=False)
    return StudyConfig(**{**sizes, **options})


def _accuracy_dir(tmp: Path, rows: list[str]) -> Path:
    folder = tmp / "accuracy"
    folder.mkdir(exist_ok=True)
    (folder / "bundled_accuracy.csv").write_text(ACCURACY_HEADER + "".join(r + "\n" for r in rows))
    return folder


# ---- defaults and errors --------------------------------------------------------------------------
def test_the_new_options_at_their_defaults_leave_the_digest_as_it_was():
    old = StudyConfig.from_file(Path(__file__).parents[1] / "benchmarks" / "studies" / "full_grid.yaml")
    defaults = dict(shots=0, skip_at_chance=False, length_buckets=[], claims=[], soft=False)
    assert old.with_overrides(**defaults).digest() == old.digest() == "06e39b53264c"
    assert StudyConfig(**defaults).digest() == StudyConfig().digest()
    assert StudyConfig(claims=("ece",)).digest() == StudyConfig().digest()  # decides claims, changes no cell
    changed = [dict(shots=2), dict(shots="auto"), dict(skip_at_chance=True), dict(length_buckets=(8, 16)),
               dict(soft=True)]
    digests = {StudyConfig(**c).digest() for c in changed}
    assert len(digests) == len(changed) and StudyConfig().digest() not in digests
    assert StudyConfig.from_dict({"length_buckets": [8, 16], "claims": ["ece"], "shots": "auto"}).length_buckets == (8, 16)


@pytest.mark.parametrize("options, message", [
    (dict(shots=-1), r"StudyConfig.shots=-1; expected an integer >= 0 \(demonstrations per prompt\) or 'auto'"),
    (dict(shots="best"), "StudyConfig.shots='best'; expected an integer >= 0"),
    (dict(shots=True), "StudyConfig.shots=True; expected an integer >= 0"),
    (dict(skip_at_chance="yes"), "StudyConfig.skip_at_chance='yes'; expected true or false"),
    (dict(soft=1), "StudyConfig.soft=1; expected true or false"),
    (dict(length_buckets=(16, 8)), r"StudyConfig.length_buckets=\[16, 8\]; expected ascending word counts >= 1"),
    (dict(length_buckets=(0, 8)), r"StudyConfig.length_buckets=\[0, 8\]; expected ascending"),
    (dict(length_buckets=(8, 8)), r"StudyConfig.length_buckets=\[8, 8\]; expected ascending"),
    (dict(claims=("ecee",)), r"StudyConfig.claims holds 'ecee' \(not a registered metric\); expected registered "
                             r"calibration or faithfulness metrics: \['accuracy', 'ece'"),
    (dict(claims=("cosine",)), r"StudyConfig.claims holds 'cosine' \(family importance\); expected registered"),
    (dict(claims=("ece", "ece")), r"StudyConfig.claims has duplicates: \['ece', 'ece'\]"),
    (dict(claims=("naopc_comprehensiveness",), naopc=False), "needs the bound search; a study with naopc=false"),
])
def test_bad_options_are_input_errors_naming_the_value_and_what_is_allowed(options, message):
    with pytest.raises(InputError, match=message):
        StudyConfig(**options)


def test_bucket_labels():
    assert bucket_labels((8, 16, 32)) == ("<=8", "9-16", "17-32")
    assert bucket_labels((3,)) == ("<=3",)


# ---- shots and skip_at_chance from the accuracy file ----------------------------------------------
def test_shots_auto_and_skip_at_chance_read_the_accuracy_file(fixture, tmp_path, monkeypatch):
    model = fixture["model"]
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(_accuracy_dir(tmp_path, [
        f"{model},{DATASET},0,100,0.70,0.6,0.8,0.5,True,0.1,1",
        f"{model},{DATASET},2,100,0.80,0.7,0.9,0.5,True,0.1,1",   # best, tied with 4 shots: fewer wins
        f"{model},{DATASET},4,100,0.80,0.7,0.9,0.5,True,0.1,1",
        f"{model},{DATASET},8,100,0.90,0.4,0.95,0.5,False,0.1,1",  # higher, but not above chance
        f"other,{DATASET},0,100,0.55,0.4,0.6,0.5,False,0.1,1",
        f"other,{DATASET},4,100,0.60,0.45,0.7,0.5,False,0.1,1",
    ])))
    config = _config(fixture, models=(model, "other", "unlisted"), shots="auto")
    assert study_shots(config) == {(model, DATASET): 2, ("other", DATASET): 0, ("unlisted", DATASET): 0}
    data = study_data(DATASET, config, model)
    assert {data[s].task.n_shot for s in ("test", "validation", "importance_labelled")} == {2}
    assert study_data(DATASET, config, "other")["test"].task.n_shot == 0
    assert study_shots(_config(fixture, shots=3)) == {(model, DATASET): 3}
    # the cost estimate grows with the demonstrations (each about half a prompt)
    cost = status(dataclasses.replace(config, output_dir=str(tmp_path / "out"))).set_index("model").seconds
    assert cost[model].iloc[0] == pytest.approx(2 * cost["other"].iloc[0])

    skip = _config(fixture, models=(model, "other"), skip_at_chance=True)
    assert study_pairs(skip) == [(model, DATASET)]
    assert {c.model for c in study_cells(skip)} == {model}
    assert set(status(dataclasses.replace(skip, output_dir=str(tmp_path / "out"))).model) == {model}
    assert len(list(study_cells(dataclasses.replace(skip, skip_at_chance=False)))) == 4
    with pytest.raises(InputError, match=r"skip_at_chance leaves no cell: every model of \['other'\] is at chance"):
        list(study_cells(_config(fixture, models=("other",), skip_at_chance=True)))


def test_more_shots_than_train_examples_is_an_input_error(fixture):
    with pytest.raises(InputError, match=r"k=31 is larger than the train pool"):
        study_data(DATASET, _config(fixture, shots=31), fixture["model"])


def test_shots_reach_predictions_importance_faithfulness_and_the_manifest(fixture, tmp_path, monkeypatch):
    """shots=2 with loss_delta (labelled examples with a task): every task the cell uses has n_shot 2;
    soft=True reaches model_faithfulness, whose soft metrics become rows of the table; naopc_max_words=3
    leaves the longer sentences' NAOPC out (NaN) and keeps their AOPC."""
    seen: dict[str, list] = {"importance": [], "faithfulness": [], "soft": []}
    importance, faithfulness = cells_module.attention_importance, cells_module.model_faithfulness

    def spy_importance(*args, task=None, **kw):
        seen["importance"].append(task.n_shot)
        return importance(*args, task=task, **kw)

    def spy_faithfulness(model, tok, task, *args, **kw):
        seen["faithfulness"].append(task.n_shot)
        seen["soft"].append(kw["options"].soft)  # the study's ErasureOptions, passed whole
        return faithfulness(model, tok, task, *args, **kw)

    monkeypatch.setattr(cells_module, "attention_importance", spy_importance)
    monkeypatch.setattr(cells_module, "model_faithfulness", spy_faithfulness)
    config = _config(fixture, shots=2, selections=("loss_delta",), soft=True, soft_samples=2, naopc=True, naopc_max_words=3,
                     output_dir=str(tmp_path / "out"))
    table = run_study(config, progress=False, report=False)
    records = list(CellStore(config.run_dir()).records().values())
    assert table.metric.str.startswith("soft_comprehensiveness:").any()
    assert table.metric.str.startswith("soft_sufficiency:").any()
    rows = pd.DataFrame(records[0]["faithfulness"])
    assert rows.soft_comprehensiveness.between(0, 1).all()
    long = rows.n_words > 3
    assert long.any() and rows[long].naopc_comprehensiveness.isna().all() and rows[long].bound_method.eq("none").all()
    assert rows[long].aopc_comprehensiveness.notna().all() and rows[~long].bound_method.eq("exact").all()
    assert [r["shots"] for r in records] == [2, 2]
    assert all(len(r["manifest"]["demo_ids"]) == 2 for r in records)
    assert seen == {"importance": [2], "faithfulness": [2, 2], "soft": [True, True]}
    assert list(table.columns[:7]) == ["model", "dataset", "selection", "level", "k", "shots", "layers"]
    assert (table.shots == 2).all()
    zero = run_study(dataclasses.replace(config, shots=0, soft=False, naopc=False, naopc_max_words=None), progress=False,
                     report=False)
    assert "shots" not in zero  # the default study's table is as before
    assert not np.allclose(zero[zero.metric == "nll"].value, table[table.metric == "nll"].value)


# ---- length buckets and claims ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket_study(fixture):
    """Buckets (4, 8) with n_faithfulness=3 each (the first holds 2 of the 12 test sentences: a
    warning; 7 are longer than 8 words: left out), max_words=2 (not used), and the claims
    accuracy, brier and the throwaway t_claim_gap."""
    with METRICS.restored():
        register_metric(T_CLAIM)
        config = _config(fixture, length_buckets=(4, 8), n_faithfulness=3, max_words=2,
                         claims=("t_claim_gap", "brier"), output_dir=str(fixture["tmp"] / "buckets"))
        with pytest.warns(UserWarning, match=r"length bucket\(s\) \{'<=4': 2\} hold fewer than n_faithfulness=3"):
            table = run_study(config, progress=False, report=True)
        records = load_results(config)  # grid order
        head = summary(table, claims=config.claims)
        out = dict(config=config, table=table, records=records, summary=head, plan=plan(config),
                   default_summary=summary(table), report=(config.run_dir() / "report.md").read_text())
    return out  # the throwaway claim is unregistered again: the other tests see the package's registry


def test_length_buckets_explain_the_first_n_faithfulness_of_each_bucket(bucket_study):
    config, records = bucket_study["config"], bucket_study["records"]
    test = load_dataset(DATASET, n=config.n_eval, split="test", seed=config.seed).examples
    lengths = [len(split_words(e.text)) for e in test]
    expected = {"<=4": [i for i, n in enumerate(lengths) if n <= 4][:3],
                "5-8": [i for i, n in enumerate(lengths) if 4 < n <= 8][:3]}
    assert [len(g) for g in expected.values()] == [2, 3] and max(lengths) > 8
    want = sorted(i for group in expected.values() for i in group)
    label_of = {i: label for label, group in expected.items() for i in group}
    for r in records:
        rows = pd.DataFrame(r["faithfulness"])
        rows = rows[rows.method == "saliency"].sort_values("example")
        assert rows.example.tolist() == list(range(len(want)))  # the engine's index into the chosen sentences
        assert rows.length_bucket.tolist() == [label_of[i] for i in want]
        assert rows.n_words.tolist() == [lengths[i] for i in want]  # max_words=2 did not filter
        assert set(pd.DataFrame(r["faithfulness"]).length_bucket) == {"<=4", "5-8"}


def test_faithfulness_by_length_matches_a_hand_computation(bucket_study):
    config, records = bucket_study["config"], bucket_study["records"]
    out = faithfulness_by_length(records, n_boot=config.n_boot, seed=config.seed)
    assert out.equals(faithfulness_by_length(config, n_boot=config.n_boot, seed=config.seed))
    ref = pd.DataFrame(next(r for r in records if r["k"] == 0)["faithfulness"])
    cur = pd.DataFrame(next(r for r in records if r["k"] > 0)["faithfulness"])
    metric = "aopc_comprehensiveness"
    for (method, bucket), group in cur.groupby(["method", "length_bucket"]):
        before = ref[(ref.method == method) & (ref.length_bucket == bucket)].set_index("example")[metric]
        after = group.set_index("example")[metric]
        diff = (after - before.loc[after.index]).to_numpy()
        row = out[(out.k > 0) & (out.method == method) & (out.length_bucket == bucket) & (out.metric == metric)]
        assert len(row) == 1
        row = row.iloc[0]
        assert row.n == row.n_paired == len(after)
        assert row["mean"] == pytest.approx(after.mean(), abs=1e-12)
        assert row.delta == pytest.approx(diff.mean(), abs=1e-12)
        ci = mean_ci(diff, n_boot=config.n_boot, seed=config.seed)
        assert (row.delta_low, row.delta_high) == pytest.approx((ci.low, ci.high))
        assert row.delta_low <= row.delta <= row.delta_high
    unpruned = out[out.k == 0]
    assert unpruned.delta.isna().all() and (unpruned.n_paired == 0).all()
    assert out[(out.k == 0) & (out.metric == metric)].length_bucket.tolist()[:2] == ["<=4", "5-8"]
    # pooled claims: the table's AOPC is the mean over every bucket's sentences
    pooled = bucket_study["table"].set_index(["k", "metric"]).loc[(1, f"{metric}:saliency"), "value"]
    assert pooled == pytest.approx(cur[cur.method == "saliency"][metric].mean())
    report = bucket_study["report"]
    assert "## Faithfulness by sentence length" in report and "| 5-8 " in report
    assert (config.run_dir() / "faithfulness_by_length.csv").is_file()
    with pytest.raises(InputError, match="no length_bucket labels; run the study with StudyConfig.length_buckets"):
        faithfulness_by_length([{**r, "faithfulness": [{k: v for k, v in row.items() if k != "length_bucket"}
                                                       for row in r["faithfulness"]]} for r in records])


def test_claims_replace_the_headline_metrics_in_the_summary_plan_and_report(bucket_study):
    head, default = bucket_study["summary"], bucket_study["default_summary"]
    assert head.claims == ("accuracy", "brier", "t_claim_gap")  # the premise (accuracy) first, always
    assert default.claims == ("accuracy", "ece", "aopc_comprehensiveness")
    assert {"brier", "d_brier", "brier_degrades", "t_gap", "t_gap_low", "t_gap_degrades"} <= set(head.table.columns)
    assert "ece_degrades" not in head.table and "aopc_degrades" not in head.table
    assert head.faithfulness_metric == "t_claim_gap"
    # 1 pruned cell: 1 calibration + 1 faithfulness claim x 1 method, each tested (primary or exploratory)
    assert set(head.tests.metric) == {"brier", "t_claim_gap:saliency"}
    assert set(default.tests.metric) <= {"ece", "aopc_comprehensiveness:saliency"}
    p = bucket_study["plan"]
    assert p.metric.tolist() == ["accuracy", "brier", "t_gap"] and p.attrs["m"] == 1 * (1 + 1)
    report = bucket_study["report"]
    assert "`brier_degrades`, `t_gap_degrades`" in report and "ece_degrades" not in report
    with pytest.raises(InputError, match=r"claims holds 'cosine' \(family importance\)"):
        summary(bucket_study["table"], claims=("cosine",))
    with pytest.raises(InputError, match=r"claims \['naopc_comprehensiveness'\] are not measured in this table"):
        summary(bucket_study["table"], claims=("naopc_comprehensiveness",))
    with pytest.raises(InputError, match=r"StudyConfig.claims holds 't_claim_gap' \(not a registered metric\)"):
        StudyConfig(claims=("t_claim_gap",))  # registered only inside the fixture


def test_best_shots_of_the_bundled_accuracy_file(monkeypatch):
    from toolkit.data.datasets import best_shots

    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    best = best_shots()
    assert best[("gemma3-270m", "uci_yelp")] == 4  # 0.98 with 4 shots beats 0.88 zero-shot
    assert best[("smollm2-135m", "uci_yelp")] == 0  # 0.81 zero-shot beats 0.64 with 4
    assert ("smollm2-135m", "vader_nyt") not in best  # at chance in every setting


def test_soft_claims_need_soft_and_naopc_n_counts_only_bounded_buckets(fixture):
    with pytest.raises(InputError, match="soft=false does not measure it"):
        _config(fixture, claims=("soft_comprehensiveness",))
    config = _config(fixture, soft=True, naopc=True, length_buckets=(4, 8, 16), n_faithfulness=3, naopc_max_words=4,
                     claims=("naopc_comprehensiveness", "soft_comprehensiveness"))
    rows = plan(config).set_index("metric")
    assert rows.loc["naopc", "n"] == 3 and rows.loc["soft_comp", "n"] == 9  # NAOPC: only the <= 4-word bucket


def test_classroom_is_a_study_profile_everywhere_it_is_documented():
    """TOOLKIT_PROFILE speaks one vocabulary: the notebooks' classroom is the CLI's and the config's."""
    from toolkit.__main__ import build_parser
    from toolkit.study import PROFILES, StudyConfig

    assert {"ci", "classroom", "full"} <= set(PROFILES)
    assert StudyConfig.profile("classroom") == StudyConfig.profile("quick")
    assert build_parser().parse_args(["study", "--profile", "classroom"]).profile == "classroom"
    with pytest.raises(InputError, match=r"unknown profile 'lab'; expected one of \['full', 'classroom', 'quick', 'ci'\]"):
        StudyConfig.profile("lab")
