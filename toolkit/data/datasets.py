"""Bundled labelled datasets and the tasks that pose them to a model.

Every dataset is a JSONL file of records ``{"id", "text", "label", "split", ...extra}`` (see
``data/README.md`` for sources, licences and preprocessing; ``data/build_data.py`` rebuilds them).
A `Task` says how a dataset is put to a model: an instruction, how the input is introduced and one
answer word (verbalizer) per label. The scoring code renders::

    {instruction}
    {input_name}: {text}
    Answer with one word: {verbalizers joined with " or "}.

Datasets live in a registry (`DATASETS`, a :class:`toolkit._core.registry.Registry`: name -> file,
task, source, licence); `register_dataset` adds a user's JSONL beside the bundled ones and refuses a
name already registered unless ``replace=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence, overload

import numpy as np
import pandas as pd

from .task import Example, Task
from .._core.registry import Registry
from .._core.validation import InputError, InputFileNotFoundError, InputTypeError, check_int, is_int, short_repr

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "as_examples",
    "data_dir",
    "dataset_from_records",
    "demonstrations",
    "get_task",
    "chance_models",
    "best_shots",
    "restore_datasets",
    "user_datasets",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""Allowed split names: train (k-shot demonstration pool), validation (temperature fitting), test."""

DATA_DIR_ENV = "TOOLKIT_DATA_DIR"


# --------------------------------------------------------------------------------------------------
# Value types (Example and Task: toolkit.data.task)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """An immutable sequence of `Example` with the `Task` that poses it.

    Attributes:
        name: dataset name.
        task: how the examples are posed to a model.
        examples: the examples, in file order.
        split: the split they come from, or None for all splits / in-memory data.
    """

    name: str
    task: Task
    examples: tuple[Example, ...]
    split: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise InputTypeError(f"dataset {self.name!r}: task must be a toolkit.Task, got a {type(self.task).__name__}")
        if isinstance(self.examples, (str, Example)):
            raise InputTypeError(f"dataset {self.name!r}: examples must be a sequence of Example, got a "
                                 f"{type(self.examples).__name__}")
        object.__setattr__(self, "examples", tuple(self.examples))
        not_examples = sorted({type(ex).__name__ for ex in self.examples if not isinstance(ex, Example)})
        if not_examples:
            raise InputTypeError(f"dataset {self.name!r}: examples must be Example objects, got {not_examples}")
        _check_split(self.split)
        bad = [ex.label for ex in self.examples if not is_int(ex.label) or not 0 <= ex.label < self.task.n_classes]
        if bad:
            shown = sorted(set(bad)) if all(is_int(v) for v in bad) else sorted(set(map(repr, bad)))
            raise InputError(f"dataset {self.name!r}: labels {shown} out of range for "
                             f"label_names {self.task.label_names!r}")

    def __len__(self) -> int:
        return len(self.examples)

    def __repr__(self) -> str:
        counts = np.bincount(self.labels, minlength=self.task.n_classes).tolist()
        balance = ", ".join(f"{name}={count}" for name, count in zip(self.label_names, counts))
        return f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, labels: {balance})"

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> Dataset: ...

    def __getitem__(self, index: int | slice) -> Example | Dataset:
        if isinstance(index, slice):
            return dataclasses.replace(self, examples=self.examples[index])
        return self.examples[index]

    @property
    def texts(self) -> list[str]:
        """The example texts, in order."""
        return [ex.text for ex in self.examples]

    @property
    def labels(self) -> np.ndarray:
        """Label ids, shape (n,), int64."""
        return np.fromiter((ex.label for ex in self.examples), dtype=np.int64, count=len(self.examples))

    @property
    def ids(self) -> list[str]:
        """Example ids, in order."""
        return [ex.id for ex in self.examples]

    @property
    def label_names(self) -> tuple[str, ...]:
        """Same as ``task.label_names``."""
        return self.task.label_names


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """Where a registered dataset lives and how it is posed. A relative path is under `data_dir()`."""

    path: Path
    task: Task
    source: str = ""
    licence: str = ""


_SENTIMENT = ("negative", "positive")
_UCI = ("UCI Sentiment Labelled Sentences (Kotzias et al. 2015), {}.json "
        "via npm sentiment@5.0.2 package/test/fixtures/")
_UCI_LICENCE = "CC BY 4.0 (data); MIT (npm package)"
_VADER = ("VADER ground truth (Hutto & Gilbert 2014), {}_GroundTruth.txt via PyPI vaderSentiment==3.3.2 "
          "additional_resources/hutto_ICWSM_2014.tar.gz")
_BB = "BIG-bench (Srivastava et al. 2023) task {} via PyPI bigbench==1.0.0 bigbench/benchmark_tasks/{}/task.json"


# Bundled tasks use the plain prompt ("...\nReview: <text>\nAnswer:"), not the chat template: on SmolLM2-135M-
# Instruct the chat template made the restricted answer almost always "negative" (UCI amazon 0.53, imdb 0.51 on
# 100 test sentences each, ~95% predicted negative) while the plain prompt gave 0.79 / 0.85 (amazon / yelp).
# Users' tasks default to the chat template where the tokenizer has one (Task.use_chat_template='auto'). Measured by benchmarks/accuracy_table.py.
_PLAIN = False


def _sentiment_task(name: str, what: str, input_name: str) -> Task:
    return Task(name, f"Is the sentiment of this {what} positive or negative?", _SENTIMENT, _SENTIMENT, input_name,
                use_chat_template=_PLAIN)


_BUNDLED: dict[str, DatasetSpec] = {
    "uci_amazon": DatasetSpec(Path("uci_amazon.jsonl"), _sentiment_task("uci_amazon", "product review", "Review"),
                              _UCI.format("amazon"), _UCI_LICENCE),
    "uci_imdb": DatasetSpec(Path("uci_imdb.jsonl"), _sentiment_task("uci_imdb", "movie review", "Review"),
                            _UCI.format("imdb"), _UCI_LICENCE),
    "uci_yelp": DatasetSpec(Path("uci_yelp.jsonl"), _sentiment_task("uci_yelp", "restaurant review", "Review"),
                            _UCI.format("yelp"), _UCI_LICENCE),
    "vader_movies": DatasetSpec(Path("vader_movies.jsonl"),
                                _sentiment_task("vader_movies", "movie review sentence", "Review"),
                                _VADER.format("movieReviewSnippets"), "MIT"),
    "vader_tweets": DatasetSpec(Path("vader_tweets.jsonl"), _sentiment_task("vader_tweets", "tweet", "Tweet"),
                                _VADER.format("tweets"), "MIT"),
    "vader_amazon": DatasetSpec(Path("vader_amazon.jsonl"),
                                _sentiment_task("vader_amazon", "sentence from a product review", "Review"),
                                _VADER.format("amazonReviewSnippets"), "MIT"),
    "vader_nyt": DatasetSpec(Path("vader_nyt.jsonl"),
                             _sentiment_task("vader_nyt", "sentence from a newspaper opinion article", "Sentence"),
                             _VADER.format("nytEditorialSnippets"), "MIT"),
    "bb_strategyqa": DatasetSpec(
        Path("bb_strategyqa.jsonl"),
        Task("bb_strategyqa", "Answer this yes-or-no question.", ("no", "yes"), ("no", "yes"), "Question",
             use_chat_template=_PLAIN),
        _BB.format("strategyqa", "strategyqa") + "; StrategyQA (Geva et al. 2021)",
        "Apache-2.0 (BIG-bench)"),
    "bb_vitaminc": DatasetSpec(
        Path("bb_vitaminc.jsonl"),
        Task("bb_vitaminc",
             "Based only on the information in the Wikipedia passage, is the claim true, false, or neither? "
             "Answer neither when the passage does not give the information needed to decide.",
             ("true", "false", "neither"), ("true", "false", "neither"), "Passage",
             use_chat_template=_PLAIN),
        _BB.format("vitaminc_fact_verification", "vitaminc_fact_verification")
        + "; VitaminC (Schuster et al. 2021)",
        "Apache-2.0 (BIG-bench); upstream VitaminC CC BY-SA 3.0"),
    "bb_presuppositions_nli": DatasetSpec(
        Path("bb_presuppositions_nli.jsonl"),
        Task("bb_presuppositions_nli",
             "Does Sentence 1 entail Sentence 2, contradict it, or neither (neutral)?",
             ("entailment", "neutral", "contradiction"), ("entailment", "neutral", "contradiction"),
             "Sentence 1", use_chat_template=_PLAIN),
        _BB.format("presuppositions_as_nli", "presuppositions_as_nli"),
        "Apache-2.0 (BIG-bench)"),
}

DATASETS: Registry[DatasetSpec] = Registry("dataset", _BUNDLED)
"""Every registered dataset by name: the bundled ones, then the user's (:func:`register_dataset`)."""


def data_dir() -> Path:
    """The folder holding the bundled JSONL files: ``$TOOLKIT_DATA_DIR`` or ``<repo>/data``."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "data"


def _spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def _path(spec: DatasetSpec) -> Path:
    return spec.path if spec.path.is_absolute() else data_dir() / spec.path


def get_task(name: str) -> Task:
    """The `Task` registered for dataset ``name``."""
    return _spec(name).task


def register_dataset(name: str, path: str | os.PathLike, task: Task, *, source: str = "", licence: str = "",
                     replace: bool = False) -> None:
    """Add a user JSONL file to the registry (validated now, loaded lazily by `load_dataset`).

    Each line is an object with ``text`` (str) and ``label`` (class id or one of ``task.label_names``);
    optional ``id`` (default ``"<name>-<line index>"``, must be unique), ``split`` (one of `SPLITS`;
    records without one are only in ``split=None`` loads) and any extra fields (kept in ``Example.meta``).

    Raises:
        InputError: ``name`` already registered and not ``replace``; ``task.name != name``; bad records.
        FileNotFoundError: ``path`` does not exist.
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"dataset name must be a non-empty string, got {name!r}")
    if not isinstance(task, Task):
        raise InputError(f"task must be a toolkit.data.datasets.Task, got {type(task).__name__}")
    if task.name != name:
        raise InputError(f"task.name {task.name!r} does not match dataset name {name!r}; "
                         f"use dataclasses.replace(task, name={name!r})")
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise InputFileNotFoundError(f"dataset file {str(resolved)!r} does not exist")
    spec = DatasetSpec(resolved, task, source, licence)
    _examples(name, spec)  # validate before registering
    DATASETS.register(name, spec, replace=replace)


def user_datasets(names: Sequence[str]) -> dict[str, DatasetSpec]:
    """The specs of those ``names`` that were registered in this process (not bundled).

    A worker process (Ray, SLURM) starts with the bundled registry only; passing these to
    :func:`restore_datasets` there makes a user's datasets loadable on every worker.
    """
    return {n: DATASETS.get(n) for n in names if n in DATASETS and n not in _BUNDLED}


def restore_datasets(specs: Mapping[str, DatasetSpec]) -> None:
    """Register datasets from :func:`user_datasets` (the same file paths must be readable here)."""
    for name, spec in specs.items():
        if name not in DATASETS or DATASETS.get(name) != spec:
            register_dataset(name, spec.path, spec.task, source=spec.source, licence=spec.licence, replace=True)


ACCURACY_FILE = "bundled_accuracy.csv"
"""Measured accuracy of the bundled models on the bundled datasets (``benchmarks/accuracy_table.py --write``)."""


def chance_models() -> dict[str, list[str]]:
    """Per bundled dataset, the bundled models at chance on it, zero-shot and with demonstrations.

    Read from ``data/bundled_accuracy.csv``: a model is at chance on a dataset when in no measured
    setting the 95% interval of its accuracy lies above the majority-class rate. Empty when the file
    is absent (e.g. a ``TOOLKIT_DATA_DIR`` without it).
    """
    path = data_dir() / ACCURACY_FILE
    if not path.exists():
        return {}
    table = pd.read_csv(path)
    above = table.groupby(["dataset", "model"], sort=False).above_chance.any()
    out: dict[str, list[str]] = {}
    for (dataset, model), ok in above.items():
        if not ok:
            out.setdefault(dataset, []).append(model)
    return out


def best_shots() -> dict[tuple[str, str], int]:
    """Per (model, dataset) of ``data/bundled_accuracy.csv``: the number of demonstrations that did best.

    The above-chance setting (95% interval of the accuracy above the majority-class rate) with the
    highest accuracy; a tie goes to fewer shots. A pair without an above-chance setting is left
    out, and so is everything when the file is absent (e.g. a ``TOOLKIT_DATA_DIR`` without it).
    """
    path = data_dir() / ACCURACY_FILE
    if not path.exists():
        return {}
    table = pd.read_csv(path)
    table = table[table.above_chance.astype(bool)].sort_values(["accuracy", "shots"], ascending=[False, True],
                                                                kind="stable")
    best = table.drop_duplicates(["model", "dataset"])
    return {(m, d): int(k) for m, d, k in zip(best.model, best.dataset, best.shots)}


def list_datasets() -> pd.DataFrame:
    """One row per registered dataset.

    Returns:
        DataFrame with columns name, n, n_train, n_validation, n_test, n_classes, labels (label names
        joined by ", ", in label-id order), at_chance_for (the bundled models that are at chance on
        it, see :func:`chance_models`: build no study on those), source, licence.
    """
    chance = chance_models()
    rows = []
    for name, spec in DATASETS.items():
        examples = _examples(name, spec)
        splits = [ex.meta.get("split") for ex in examples]
        rows.append({"name": name, "n": len(examples),
                     **{f"n_{s}": splits.count(s) for s in SPLITS},
                     "n_classes": spec.task.n_classes, "labels": ", ".join(spec.task.label_names),
                     "at_chance_for": ", ".join(chance.get(name, [])),
                     "source": spec.source, "licence": spec.licence})
    return pd.DataFrame(rows, columns=["name", "n", "n_train", "n_validation", "n_test", "n_classes", "labels",
                                       "at_chance_for", "source", "licence"])


# --------------------------------------------------------------------------------------------------
# Parsing (cached per file version)
# --------------------------------------------------------------------------------------------------
def _example_from_record(name: str, index: int, record: Mapping[str, Any], task: Task, where: str) -> Example:
    if not isinstance(record, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: 'text' must be a non-empty string, got {text!r}")
    label = record.get("label")
    if isinstance(label, str) and label in task.label_names:
        label = task.label_names.index(label)
    if not is_int(label) or not 0 <= label < task.n_classes:
        raise InputError(f"{where}: 'label' {label!r} is not a class id in range({task.n_classes}) or one of "
                         f"{list(task.label_names)}")
    ex_id = record.get("id", f"{name}-{index}")
    if not isinstance(ex_id, str) or not ex_id:
        raise InputError(f"{where}: 'id' must be a non-empty string, got {ex_id!r}")
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise InputError(f"{where}: unknown split {split!r}; expected one of {list(SPLITS)}")
    meta = {k: v for k, v in record.items() if k not in ("id", "text", "label")}
    return Example(ex_id, text, int(label), MappingProxyType(meta))


def _examples_from_records(name: str, records: Sequence[Mapping[str, Any]], task: Task,
                           where: str) -> tuple[Example, ...]:
    examples = tuple(_example_from_record(name, i, rec, task, f"{where} record {i}") for i, rec in enumerate(records))
    if not examples:
        raise InputError(f"{where}: no records")
    seen: set[str] = set()
    duplicates = [ex.id for ex in examples if ex.id in seen or seen.add(ex.id)]
    if duplicates:
        raise InputError(f"{where}: duplicate ids {duplicates[:5]}")
    return examples


@functools.lru_cache(maxsize=64)
def _parse(name: str, path: str, mtime_ns: int, size: int, task: Task) -> tuple[Example, ...]:
    """Parse one JSONL file; the cache key includes mtime and size so an edited file is re-read."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InputError(f"{path} line {line_no}: invalid JSON ({err})") from None
    return _examples_from_records(name, records, task, path)


def _examples(name: str, spec: DatasetSpec) -> tuple[Example, ...]:
    path = _path(spec)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InputFileNotFoundError(f"dataset {name!r}: file {str(path)!r} not found; run `make data` or set "
                                f"${DATA_DIR_ENV}") from None
    return _parse(name, str(path), stat.st_mtime_ns, stat.st_size, spec.task)


# --------------------------------------------------------------------------------------------------
# Loading and sampling
# --------------------------------------------------------------------------------------------------
def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)} or None")


def _rng(*key: object) -> np.random.Generator:
    """A generator seeded from a stable hash of ``key`` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix is stratified by label.

    Within class c (m_c members, randomly permuted) the j-th member gets the key (j + 1/2) / m_c;
    sorting by key (ties broken by a random class order) is the Sainte-Laguë divisor method, so a
    prefix of length n holds about n * m_c / N of class c and prefixes are nested by construction.
    """
    classes = np.unique(labels)
    class_rank = dict(zip(classes.tolist(), rng.permutation(len(classes)).tolist()))
    keys, ranks, index = [], [], []
    for c in classes.tolist():
        members = rng.permutation(np.flatnonzero(labels == c))
        keys.append((np.arange(len(members)) + 0.5) / len(members))
        ranks.append(np.full(len(members), class_rank[c]))
        index.append(members)
    keys, ranks, index = np.concatenate(keys), np.concatenate(ranks), np.concatenate(index)
    return index[np.lexsort((ranks, keys))]


_UNLABELED = "for unlabeled texts use toolkit.label_probs(model, tokenizer, task, texts)"


def as_examples(data: Any, name: str = "data") -> list[Example]:
    """``data`` (a Dataset or a sequence of Example) as a list of Example, or an InputTypeError saying what to pass.

    The one check of "examples" for every entry point that takes them (``predict``, ``attribute``).
    """
    if isinstance(data, Dataset):
        return list(data.examples)
    what = f"{name} must be a Dataset or a list of toolkit.Example"
    if isinstance(data, str):
        raise InputTypeError(f"{what}, got a str; {_UNLABELED}")
    if isinstance(data, Example):
        raise InputTypeError(f"{what}, got a single Example; wrap it in a list")
    if not hasattr(data, "__iter__"):
        raise InputTypeError(f"{what}, got a {type(data).__name__}")
    examples = list(data)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise InputTypeError(f"{name}[{i}] is {short_repr(ex)} ({type(ex).__name__}), not a toolkit.Example; "
                                 f"pass Example(id, text, label) objects or a Dataset ({_UNLABELED})")
    return examples


def load_dataset(name: str, *, n: int | None = None, seed: int = 0, split: str | None = None) -> Dataset:
    """Load a registered dataset, optionally one split and a stratified subsample.

    Args:
        name: a registered dataset (see `list_datasets`).
        n: keep at most ``n`` examples, a label-stratified subsample (each class within about one
            example of its share). Deterministic for (name, n, seed, split); a larger ``n`` with the
            same seed returns a superset. ``n`` >= the pool size returns the whole pool.
        seed: subsample seed (any int).
        split: one of `SPLITS`, or None for all examples.

    Returns:
        `Dataset` with examples in file order.
    """
    spec = _spec(name)
    _check_split(split)
    if n is not None:
        n = check_int(n, "n", 1)
    if not is_int(seed):
        raise InputError(f"seed must be an int, got {seed!r}")
    examples = _examples(name, spec)
    if split is not None:
        examples = tuple(ex for ex in examples if ex.meta.get("split") == split)
        if not examples:
            raise InputError(f"dataset {name!r} has no examples in split {split!r}")
    if n is not None and n < len(examples):
        labels = np.array([ex.label for ex in examples])
        keep = np.sort(_stratified_order(labels, _rng("subsample", name, split, int(seed)))[:n])
        examples = tuple(examples[i] for i in keep.tolist())
    return Dataset(name, spec.task, examples, split)


def demonstrations(name: str, k: int, *, seed: int = 0) -> tuple[Example, ...]:
    """``k`` label-balanced demonstrations from the train split, in a seeded random order.

    Each class gets ``k // C`` examples and a seeded random ``k % C`` classes one more; a class with
    too few train examples gives its shortfall to the others.

    Raises:
        InputError: ``k`` < 0 or larger than the train pool.
    """
    k = check_int(k, "k", 0)
    if not is_int(seed):
        raise InputError(f"seed must be an int, got {seed!r}")
    spec = _spec(name)
    pool = [ex for ex in _examples(name, spec) if ex.meta.get("split") == "train"]
    if k > len(pool):
        raise InputError(f"k={k} is larger than the train pool of dataset {name!r} ({len(pool)} examples); "
                         f"expected 0 <= k <= {len(pool)}")
    if k == 0:
        return ()
    rng = _rng("demonstrations", name, int(seed))
    by_class = {c: [ex for ex in pool if ex.label == c] for c in range(spec.task.n_classes)}
    by_class = {c: [members[i] for i in rng.permutation(len(members))] for c, members in by_class.items()}
    quota = dict.fromkeys(by_class, 0)
    order = rng.permutation(len(by_class)).tolist()  # which classes get the remainder first
    remaining = k
    while remaining:  # round-robin water-filling: balanced up to the classes' sizes
        for c in order:
            if remaining and quota[c] < len(by_class[c]):
                quota[c] += 1
                remaining -= 1
    chosen = [ex for c in by_class for ex in by_class[c][:quota[c]]]
    return tuple(chosen[i] for i in rng.permutation(len(chosen)))


def dataset_from_records(name: str, records: Sequence[Mapping[str, Any]], task: Task) -> Dataset:
    """Build a `Dataset` from in-memory records (same fields as a JSONL line; not registered).

    Raises:
        InputError: no records, a bad record, or ``task.name != name``.
    """
    if not isinstance(task, Task):
        raise InputError(f"task must be a toolkit.data.datasets.Task, got {type(task).__name__}")
    if task.name != name:
        raise InputError(f"task.name {task.name!r} does not match dataset name {name!r}; "
                         f"use dataclasses.replace(task, name={name!r})")
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise InputError(f"records must be a sequence of mappings, got {type(records).__name__}")
    return Dataset(name, task, _examples_from_records(name, records, task, f"dataset {name!r}"), None)
