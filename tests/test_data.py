"""Tests for toolkit.data.datasets and data/build_data.py.

Counts are checked against an independent recount of the JSONL files with the json module, not
only against the loader itself.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from toolkit.data import datasets as tdata
from toolkit.data.datasets import (
    DATASETS,
    SPLITS,
    Dataset,
    dataset_from_records,
    demonstrations,
    get_task,
    list_datasets,
    load_dataset,
    register_dataset,
)
from toolkit.data.task import Example, Task

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
BUNDLED = [
    "uci_amazon", "uci_imdb", "uci_yelp",
    "vader_movies", "vader_tweets", "vader_amazon", "vader_nyt",
    "bb_strategyqa", "bb_vitaminc", "bb_presuppositions_nli",
]
FRACTIONS = {"train": 0.2, "validation": 0.2}


def raw_records(name: str) -> list[dict]:
    """The JSONL file read straight with the json module (the independent reference)."""
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture
def registry():
    """Restore the dataset registry after a test that registers datasets."""
    with DATASETS.restored():
        yield DATASETS


@pytest.fixture
def toy_task() -> Task:
    return Task("toy", "Is it good or bad?", ("bad", "good"), ("bad", "good"), "Thing")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Bundled files
# --------------------------------------------------------------------------------------------------
def test_registry_lists_exactly_the_bundled_files():
    assert sorted(list_datasets()["name"]) == sorted(BUNDLED)
    assert sorted(p.stem for p in DATA.glob("*.jsonl")) == sorted(BUNDLED)


def test_bundled_data_is_small():
    total = sum(p.stat().st_size for p in DATA.glob("*.jsonl"))
    assert total < 10e6


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_dataset_matches_independent_recount(name):
    rows = raw_records(name)
    ds = load_dataset(name)
    assert len(ds) == len(rows)
    assert ds.ids == [r["id"] for r in rows] == [f"{name}-{i}" for i in range(len(rows))]
    assert ds.texts == [r["text"] for r in rows]
    np.testing.assert_array_equal(ds.labels, [r["label"] for r in rows])
    assert all(isinstance(t, str) and t.strip() == t and t for t in ds.texts)
    for split in SPLITS:
        part = load_dataset(name, split=split)
        expected = collections.Counter(r["label"] for r in rows if r["split"] == split)
        assert collections.Counter(part.labels.tolist()) == expected
        assert all(ex.meta["split"] == split for ex in part)


@pytest.mark.parametrize("name", BUNDLED)
def test_splits_are_disjoint_complete_and_stratified(name):
    rows = raw_records(name)
    ids = {s: {r["id"] for r in rows if r["split"] == s} for s in SPLITS}
    assert set().union(*ids.values()) == {r["id"] for r in rows}
    assert sum(map(len, ids.values())) == len(rows)
    per_label = collections.Counter(r["label"] for r in rows)
    for split, frac in FRACTIONS.items():
        counts = collections.Counter(r["label"] for r in rows if r["split"] == split)
        for label, n_label in per_label.items():
            # int(frac * n + 0.5) per label, i.e. within half an example of the exact share
            assert abs(counts[label] - frac * n_label) <= 0.5, (split, label)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_task_is_well_formed(name):
    task = get_task(name)
    assert task.name == name
    assert len(set(task.verbalizers)) == len(task.verbalizers) == len(task.label_names)
    for word in task.verbalizers:
        assert word.islower() and word.isalpha(), word  # single lowercase word
    assert "answer with one word" not in task.instruction.lower()
    rows = raw_records(name)
    assert set(r["label"] for r in rows) == set(range(task.n_classes))


def test_sentiment_tasks_use_negative_positive():
    for name in BUNDLED[:7]:
        assert get_task(name).label_names == get_task(name).verbalizers == ("negative", "positive")


def test_vader_rating_agrees_with_label_and_threshold():
    for name in ("vader_movies", "vader_tweets", "vader_amazon", "vader_nyt"):
        ds = load_dataset(name)
        ratings = np.array([ex.meta["rating"] for ex in ds])
        assert np.all(np.abs(ratings) >= 0.5)
        np.testing.assert_array_equal(ds.labels, (ratings > 0).astype(int))
        assert len(ds) <= 2000


def test_known_first_records():
    # hand-checked against the upstream files
    imdb = load_dataset("uci_imdb")[0]
    assert imdb.text == "A very, very, very slow-moving, aimless movie about a distressed, drifting young man."
    assert imdb.label == 0
    qa = load_dataset("bb_strategyqa")[0]
    assert qa.text == "Is it common to see frost during some college commencements?" and qa.label == 1


# --------------------------------------------------------------------------------------------------
# Subsampling
# --------------------------------------------------------------------------------------------------
def test_subsample_is_deterministic_and_seeded():
    a = load_dataset("uci_yelp", n=50, seed=1)
    b = load_dataset("uci_yelp", n=50, seed=1)
    c = load_dataset("uci_yelp", n=50, seed=2)
    assert a == b and a.ids == b.ids
    assert a.ids != c.ids
    assert len(a) == 50 and len(set(a.ids)) == 50


@pytest.mark.parametrize("name,split", [("vader_tweets", None), ("bb_vitaminc", "test"),
                                        ("bb_presuppositions_nli", "validation")])
def test_subsample_is_stratified_and_nested(name, split):
    full = load_dataset(name, split=split)
    share = np.bincount(full.labels) / len(full)
    previous: set[str] = set()
    for n in (1, 2, 3, 7, 10, 33, 100, 101, len(full) - 1):
        sub = load_dataset(name, n=n, split=split, seed=5)
        assert len(sub) == n
        counts = np.bincount(sub.labels, minlength=len(share))
        assert np.all(np.abs(counts - n * share) <= 1.0), (n, counts, n * share)
        assert previous <= set(sub.ids)  # larger n is a superset
        previous = set(sub.ids)
        assert set(sub.ids) <= set(full.ids)
        positions = [full.ids.index(i) for i in sub.ids]
        assert positions == sorted(positions)  # file order kept


def test_n_at_least_pool_returns_everything():
    full = load_dataset("bb_presuppositions_nli", split="train")
    assert load_dataset("bb_presuppositions_nli", split="train", n=len(full)) == full
    assert load_dataset("bb_presuppositions_nli", split="train", n=10**6) == full


# --------------------------------------------------------------------------------------------------
# Demonstrations
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,k", [("uci_imdb", 4), ("uci_imdb", 5), ("bb_vitaminc", 7),
                                    ("bb_presuppositions_nli", 30)])
def test_demonstrations_balanced_and_from_train(name, k):
    train_ids = {r["id"] for r in raw_records(name) if r["split"] == "train"}
    demos = demonstrations(name, k, seed=3)
    assert len(demos) == k and len({d.id for d in demos}) == k
    assert {d.id for d in demos} <= train_ids
    counts = np.bincount([d.label for d in demos], minlength=get_task(name).n_classes)
    assert counts.max() - counts.min() <= 1
    assert demonstrations(name, k, seed=3) == demos
    assert demonstrations(name, k, seed=4) != demos


def test_demonstrations_fill_from_other_classes_when_one_runs_out(registry, tmp_path, toy_task):
    rows = [{"text": f"bad {i}", "label": 0, "split": "train"} for i in range(2)]
    rows += [{"text": f"good {i}", "label": 1, "split": "train"} for i in range(8)]
    register_dataset("toy", write_jsonl(tmp_path / "toy.jsonl", rows), toy_task)
    demos = demonstrations("toy", 6)
    assert sorted(d.label for d in demos) == [0, 0, 1, 1, 1, 1]
    assert len(demonstrations("toy", 10)) == 10


def test_demonstrations_k_zero_and_bad_k():
    assert demonstrations("uci_amazon", 0) == ()
    pool = len(load_dataset("uci_amazon", split="train"))
    assert len(demonstrations("uci_amazon", pool)) == pool
    with pytest.raises(ValueError, match=rf"k={pool + 1} is larger than the train pool of dataset .uci_amazon. \({pool} examples\)"):
        demonstrations("uci_amazon", pool + 1)
    with pytest.raises(ValueError, match=r"k must be an integer >= 0, got -1"):
        demonstrations("uci_amazon", -1)
    with pytest.raises(ValueError, match=r"k must be an int"):
        demonstrations("uci_amazon", 2.0)


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------
def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'sst2'.*'uci_imdb'"):
        load_dataset("sst2")
    with pytest.raises(ValueError, match=r"unknown dataset 'sst2'"):
        get_task("sst2")
    with pytest.raises(ValueError, match=r"unknown dataset"):
        demonstrations("sst2", 1)


@pytest.mark.parametrize("n", [0, -3, 1.5, "10", True])
def test_bad_n(n):
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got"):
        load_dataset("uci_imdb", n=n)


def test_bad_split_and_seed():
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected one of \['train', 'validation', 'test'\]"):
        load_dataset("uci_imdb", split="dev")
    with pytest.raises(ValueError, match=r"seed must be an int"):
        load_dataset("uci_imdb", n=3, seed="0")


def test_bad_task():
    with pytest.raises(ValueError, match=r"verbalizers must be distinct"):
        Task("t", "?", ("a", "b"), ("yes", "yes"))
    with pytest.raises(ValueError, match=r"1 verbalizers"):
        Task("t", "?", ("a", "b"), ("yes",))
    with pytest.raises(ValueError, match=r"n_shot must be an int >= 0"):
        Task("t", "?", ("a", "b"), ("a", "b"), n_shot=-1)
    with pytest.raises(ValueError, match=r"sequence of strings"):
        Task("t", "?", "ab", ("a", "b"))


# --------------------------------------------------------------------------------------------------
# In-memory records and registration
# --------------------------------------------------------------------------------------------------
def test_dataset_from_records(toy_task):
    ds = dataset_from_records("toy", [{"text": "great", "label": 1, "score": 0.9},
                                      {"text": "awful", "label": "bad"}], toy_task)
    assert isinstance(ds, Dataset) and ds.split is None and len(ds) == 2
    assert ds.ids == ["toy-0", "toy-1"] and ds.texts == ["great", "awful"]
    np.testing.assert_array_equal(ds.labels, [1, 0])
    assert ds.labels.dtype == np.int64
    assert ds.label_names == ("bad", "good")
    assert ds[0].meta["score"] == 0.9
    assert isinstance(ds[1:], Dataset) and ds[1:].ids == ["toy-1"]
    assert [ex.text for ex in ds] == ds.texts


@pytest.mark.parametrize("records,match", [
    ([], r"no records"),
    ([{"text": "", "label": 0}], r"'text' must be a non-empty string"),
    ([{"text": "x", "label": 2}], r"'label' 2 is not a class id in range\(2\) or one of \['bad', 'good'\]"),
    ([{"text": "x", "label": "meh"}], r"'label' 'meh'"),
    ([{"text": "x", "label": 0, "split": "dev"}], r"unknown split 'dev'"),
    ([{"id": "a", "text": "x", "label": 0}, {"id": "a", "text": "y", "label": 1}], r"duplicate ids \['a'\]"),
])
def test_dataset_from_records_rejects_bad_records(toy_task, records, match):
    with pytest.raises(ValueError, match=match):
        dataset_from_records("toy", records, toy_task)


def test_dataset_from_records_name_must_match_task(toy_task):
    with pytest.raises(ValueError, match=r"task.name 'toy' does not match dataset name 'other'"):
        dataset_from_records("other", [{"text": "x", "label": 0}], toy_task)


def test_examples_are_immutable(toy_task):
    ex = dataset_from_records("toy", [{"text": "x", "label": 0, "split": "test"}], toy_task)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.label = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ex.meta["split"] = "train"  # type: ignore[index]
    assert ex == Example("toy-0", "x", 0) and hash(ex) == hash(Example("toy-0", "x", 0))


def test_register_load_and_overwrite_refusal(registry, tmp_path, toy_task):
    rows = [{"text": f"t{i}", "label": i % 2, "split": SPLITS[i % 3]} for i in range(30)]
    path = write_jsonl(tmp_path / "toy.jsonl", rows)
    register_dataset("toy", path, toy_task, source="hand-made", licence="CC0")
    row = list_datasets().set_index("name").loc["toy"]
    assert (row.n, row.n_train, row.n_validation, row.n_test, row.n_classes) == (30, 10, 10, 10, 2)
    assert (row.labels, row.source, row.licence) == ("bad, good", "hand-made", "CC0")
    assert load_dataset("toy", split="train").texts == [r["text"] for r in rows if r["split"] == "train"]

    with pytest.raises(ValueError, match=r"dataset 'toy' is already registered; pass replace=True"):
        register_dataset("toy", path, toy_task)
    with pytest.raises(ValueError, match=r"dataset 'uci_imdb' is already registered"):
        register_dataset("uci_imdb", path, dataclasses.replace(toy_task, name="uci_imdb"))
    register_dataset("toy", write_jsonl(tmp_path / "toy2.jsonl", rows[:4]), toy_task, replace=True)
    assert len(load_dataset("toy")) == 4


def test_register_rejects_missing_file_bad_records_and_name_mismatch(registry, tmp_path, toy_task):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        register_dataset("toy", tmp_path / "missing.jsonl", toy_task)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": 5}])
    with pytest.raises(ValueError, match=r"'label' 5"):
        register_dataset("toy", bad, toy_task)
    assert "toy" not in DATASETS
    with pytest.raises(ValueError, match=r"does not match dataset name 'toy2'"):
        register_dataset("toy2", bad, toy_task)


def test_split_without_examples(registry, tmp_path, toy_task):
    register_dataset("toy", write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": 0}]), toy_task)
    assert len(load_dataset("toy")) == 1
    with pytest.raises(ValueError, match=r"dataset 'toy' has no examples in split 'train'"):
        load_dataset("toy", split="train")
    with pytest.raises(ValueError, match=r"k=1 is larger than the train pool of dataset 'toy' \(0 examples\)"):
        demonstrations("toy", 1)


def test_edited_file_is_reread(registry, tmp_path, toy_task):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": 0}])
    register_dataset("toy", path, toy_task)
    assert load_dataset("toy").texts == ["x"]
    write_jsonl(path, [{"text": "y", "label": 1}, {"text": "z", "label": 0}])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_dataset("toy").texts == ["y", "z"]


def test_data_dir_env_override(tmp_path, monkeypatch):
    rows = raw_records("uci_imdb")[:6]
    write_jsonl(tmp_path / "uci_imdb.jsonl", rows)
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path))
    assert tdata.data_dir() == tmp_path
    assert load_dataset("uci_imdb").ids == [r["id"] for r in rows]
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"run `make data` or set \$TOOLKIT_DATA_DIR"):
        load_dataset("uci_imdb")


# --------------------------------------------------------------------------------------------------
# The build script's pure functions (the full build needs the registries: `make data`)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_data", DATA / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clean_text(build):
    assert build.clean_text("  a \x96 b\x85  ") == "a \u2013 b\u2026"
    assert build.clean_text("AT&amp;T &lt;3\r\nok") == "AT&T <3\nok"
    assert build.clean_text("AT&T; fine") == "AT&T; fine"


def test_dedupe_drops_repeats_and_conflicts(build):
    recs = [{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "a", "label": 0},
            {"text": "c", "label": 0}, {"text": "c", "label": 1}]
    assert [r["text"] for r in build.dedupe(recs, "t")] == ["a", "b"]


def test_assign_splits_counts_and_determinism(build):
    recs = [{"text": str(i), "label": int(i % 3 == 0)} for i in range(103)]  # 35 ones, 68 zeros
    rows = build.assign_splits(recs, "t")
    assert rows == build.assign_splits(recs, "t")
    assert [r["id"] for r in rows] == [f"t-{i}" for i in range(103)]
    counts = collections.Counter((r["split"], r["label"]) for r in rows)
    # int(0.2 * 35 + 0.5) = 7, int(0.2 * 68 + 0.5) = 14
    assert counts == {("train", 1): 7, ("validation", 1): 7, ("test", 1): 21,
                      ("train", 0): 14, ("validation", 0): 14, ("test", 0): 40}


def test_stratified_subsample(build):
    recs = [{"text": str(i), "label": int(i < 30)} for i in range(100)]
    sub = build.stratified_subsample(recs, 10, "t")
    assert collections.Counter(r["label"] for r in sub) == {1: 3, 0: 7}
    assert [int(r["text"]) for r in sub] == sorted(int(r["text"]) for r in sub)
    assert build.stratified_subsample(recs, 200, "t") is recs


def test_chance_models_read_the_measured_table(tmp_path, monkeypatch):
    import toolkit.data.datasets as D

    rows = [  # model m1 is above chance on yelp only with demonstrations; m2 nowhere on yelp
        "model,dataset,shots,n,accuracy,low,high,majority,above_chance",
        "m1,uci_yelp,0,100,0.55,0.45,0.64,0.5,False",
        "m1,uci_yelp,4,100,0.80,0.71,0.87,0.5,True",
        "m2,uci_yelp,0,100,0.52,0.42,0.61,0.5,False",
        "m2,uci_yelp,4,100,0.49,0.39,0.59,0.5,False",
        "m2,uci_imdb,0,100,0.70,0.60,0.78,0.5,True",
    ]
    (tmp_path / D.ACCURACY_FILE).write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(D, "data_dir", lambda: tmp_path)
    assert D.chance_models() == {"uci_yelp": ["m2"]}
    monkeypatch.setattr(D, "data_dir", lambda: tmp_path / "missing")
    assert D.chance_models() == {}


def test_list_datasets_names_models_at_chance():
    table = list_datasets().set_index("name")
    assert "at_chance_for" in table
    if (DATA / "bundled_accuracy.csv").exists():  # measured by benchmarks/accuracy_table.py --write
        assert table.loc["uci_yelp", "at_chance_for"] == ""  # both bundled models are well above chance there
