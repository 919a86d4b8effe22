#!/usr/bin/env python3
"""Regenerate every bundled dataset (``data/*.jsonl``) from pinned registry packages.

Standard library only; run with plain ``python3 data/build_data.py`` (``make data``).

Sources (each archive is verified against a pinned SHA-256 before use):

* npm ``sentiment@5.0.2`` (MIT): ``package/test/fixtures/{amazon,imdb,yelp}.json`` = UCI
  "Sentiment Labelled Sentences" (Kotzias et al. 2015, CC BY 4.0).
* PyPI sdist ``vaderSentiment==3.3.2`` (MIT): ``additional_resources/hutto_ICWSM_2014.tar.gz``,
  ``*_GroundTruth.txt`` (Hutto & Gilbert 2014).
* PyPI sdist ``bigbench==1.0.0`` (Apache-2.0): ``bigbench/benchmark_tasks/<task>/task.json``
  (Srivastava et al. 2023, BIG-bench).

Every record is ``{"id": "<dataset>-<index>", "text", "label", "split", ...extra}``. Splits are
stratified by label with a fixed seed: 20% train (k-shot demonstration pool), 20% validation
(temperature fitting), 60% test. Running the script twice writes byte-identical files.

Downloads go to a temporary directory outside the repository (deleted afterwards) unless
``--download-dir DIR`` is given, in which case archives already there are reused.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

DATA_DIR = Path(__file__).resolve().parent
SEED = 20240601
SPLIT_FRACTIONS = (("train", 0.2), ("validation", 0.2))  # the rest is "test"
SPLITS = ("train", "validation", "test")

VADER_THRESHOLD = 0.5  # drop |mean rating| < 0.5 (rating scale -4..4)
VADER_CAP = 2000
BIGBENCH_CAP = 1500

ARCHIVES = {
    "sentiment-5.0.2.tgz": "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
    "vaderSentiment-3.3.2.tar.gz": "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    "bigbench-1.0.0.tar.gz": "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
}

UCI_FILES = {"uci_amazon": "amazon", "uci_imdb": "imdb", "uci_yelp": "yelp"}
VADER_FILES = {
    "vader_movies": "movieReviewSnippets",
    "vader_tweets": "tweets",
    "vader_amazon": "amazonReviewSnippets",
    "vader_nyt": "nytEditorialSnippets",
}
BIGBENCH_TASKS = {
    "bb_strategyqa": "strategyqa",
    "bb_vitaminc": "vitaminc_fact_verification",
    "bb_presuppositions_nli": "presuppositions_as_nli",
}
# target_scores key -> label id (order = toolkit.data label_names)
BIGBENCH_LABELS = {
    "bb_strategyqa": {"No": 0, "Yes": 1},
    "bb_vitaminc": {"True": 0, "False": 1, "Neither": 2},
    "bb_presuppositions_nli": {"entailment": 0, "neutral": 1, "contradiction": 2},
}
LABEL_NAMES = {
    **{name: ("negative", "positive") for name in (*UCI_FILES, *VADER_FILES)},
    "bb_strategyqa": ("no", "yes"),
    "bb_vitaminc": ("true", "false", "neither"),
    "bb_presuppositions_nli": ("entailment", "neutral", "contradiction"),
}

Record = dict  # one JSONL row before the id/split are assigned


# --------------------------------------------------------------------------- fetching
def _run(cmd: Sequence[str], cwd: Path) -> None:
    print("  $", " ".join(cmd))
    subprocess.run(list(cmd), cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(download_dir: Path) -> dict[str, Path]:
    """Fetch the three pinned archives into ``download_dir`` (reusing any already there)."""
    commands = {
        "sentiment-5.0.2.tgz": ["npm", "pack", "--silent", "sentiment@5.0.2"],
        "vaderSentiment-3.3.2.tar.gz": [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                        "--no-binary", ":all:", "vaderSentiment==3.3.2", "-d", "."],
        "bigbench-1.0.0.tar.gz": [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                  "--no-binary", ":all:", "bigbench==1.0.0", "-d", "."],
    }
    paths = {}
    for name, cmd in commands.items():
        path = download_dir / name
        if path.exists():
            print(f"  reusing {path}")
        else:
            _run(cmd, cwd=download_dir)
        got = _sha256(path)
        if got != ARCHIVES[name]:
            raise RuntimeError(f"{name}: sha256 {got} != pinned {ARCHIVES[name]}")
        print(f"  {name}: sha256 ok ({path.stat().st_size / 1e6:.1f} MB)")
        paths[name] = path
    return paths


def _tar_members(path: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """Read the members whose name satisfies ``wanted`` in one streaming pass."""
    out = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            if member.isfile() and wanted(member.name):
                out[member.name] = tar.extractfile(member).read()
    return out


# --------------------------------------------------------------------------- cleaning
_C1 = re.compile("[\x80-\x9f]")
_ENTITY = re.compile(r"&(amp|lt|gt|quot|#39);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "#39": "'"}


def clean_text(text: str) -> str:
    """Strip, normalise line ends, fix cp1252 C1 controls (\\x96 -> en dash) and basic HTML entities."""
    # C1 first: str.strip() would treat \x85 (cp1252 ellipsis) as whitespace
    text = _C1.sub(lambda m: m.group().encode("latin-1").decode("cp1252", errors="replace"), text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def dedupe(records: list[Record], name: str) -> list[Record]:
    """Keep the first of identical texts with one label; drop every copy of a text with two labels."""
    labels = collections.defaultdict(set)
    for rec in records:
        labels[rec["text"]].add(rec["label"])
    seen, out = set(), []
    for rec in records:
        if len(labels[rec["text"]]) > 1 or rec["text"] in seen:
            continue
        seen.add(rec["text"])
        out.append(rec)
    conflicting = sum(len(v) > 1 for v in labels.values())
    print(f"  {name}: {len(records) - len(out)} duplicate texts dropped ({conflicting} with conflicting labels)")
    return out


# --------------------------------------------------------------------------- sampling
def _rng(name: str, purpose: str) -> random.Random:
    return random.Random(f"{SEED}-{name}-{purpose}")  # str seeds are hashed with SHA-512: stable


def _quotas(counts: dict[int, int], total: int) -> dict[int, int]:
    """Largest-remainder proportional allocation of ``total`` over label ``counts``."""
    n = sum(counts.values())
    exact = {c: total * k / n for c, k in counts.items()}
    quota = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), c))[: total - sum(quota.values())]:
        quota[c] += 1
    return quota


def stratified_subsample(records: list[Record], cap: int, name: str) -> list[Record]:
    """At most ``cap`` records, label proportions kept, original order kept."""
    if len(records) <= cap:
        return records
    by_label = collections.defaultdict(list)
    for i, rec in enumerate(records):
        by_label[rec["label"]].append(i)
    quota = _quotas({c: len(v) for c, v in by_label.items()}, cap)
    rng = _rng(name, "subsample")
    keep = sorted(i for c in sorted(by_label) for i in rng.sample(by_label[c], quota[c]))
    print(f"  {name}: stratified subsample {len(records)} -> {len(keep)}")
    return [records[i] for i in keep]


def assign_splits(records: list[Record], name: str) -> list[Record]:
    """Final records with id and a label-stratified split (20/20/60), in source order."""
    by_label = collections.defaultdict(list)
    for i, rec in enumerate(records):
        by_label[rec["label"]].append(i)
    split_of = {}
    rng = _rng(name, "split")
    for c in sorted(by_label):
        idx = list(by_label[c])
        rng.shuffle(idx)
        start = 0
        for split, frac in SPLIT_FRACTIONS:
            k = int(frac * len(idx) + 0.5)
            split_of.update((i, split) for i in idx[start:start + k])
            start += k
        split_of.update((i, "test") for i in idx[start:])
    out = []
    for i, rec in enumerate(records):
        extra = {k: v for k, v in rec.items() if k not in ("text", "label")}
        out.append({"id": f"{name}-{i}", "text": rec["text"], "label": rec["label"],
                    "split": split_of[i], **dict(sorted(extra.items()))})
    return out


# --------------------------------------------------------------------------- sources
def build_uci(archive: Path) -> dict[str, list[Record]]:
    members = _tar_members(archive, lambda n: n.startswith("package/test/fixtures/") and n.endswith(".json"))
    out = {}
    for name, stem in UCI_FILES.items():
        rows = json.loads(members[f"package/test/fixtures/{stem}.json"].decode("utf-8"))
        records = []
        for i, row in enumerate(rows):
            text = clean_text(row["text"])
            if not text and row["class"] is None:
                continue  # each file ends with one empty {"text": "", "class": null}
            if row["class"] not in (0, 1) or not text:
                raise ValueError(f"{stem}.json row {i}: unexpected {row!r}")
            records.append({"text": text, "label": row["class"], "source_index": i})
        print(f"  {name}: {len(rows)} rows -> {len(records)} labelled")
        out[name] = dedupe(records, name)
    return out


def build_vader(archive: Path) -> dict[str, list[Record]]:
    inner = _tar_members(archive, lambda n: n.endswith("additional_resources/hutto_ICWSM_2014.tar.gz"))
    (blob,) = inner.values()
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
        tmp.write(blob)
        tmp.flush()
        files = _tar_members(Path(tmp.name), lambda n: n.endswith("_GroundTruth.txt"))
    by_stem = {Path(k).name.removesuffix("_GroundTruth.txt"): v for k, v in files.items()}
    out = {}
    for name, stem in VADER_FILES.items():
        lines = by_stem[stem].decode("utf-8").replace("\r\n", "\n").split("\n")  # not splitlines(): \x85
        records, dropped = [], 0
        lines = [line for line in lines if line.strip()]
        for line in lines:
            source_id, rating, text = line.split("\t", 2)
            rating = float(rating)
            if abs(rating) < VADER_THRESHOLD:
                dropped += 1
                continue
            records.append({"text": clean_text(text), "label": int(rating > 0),
                            "rating": round(rating, 6), "source_id": source_id})
        print(f"  {name}: {len(lines)} rated, {dropped} dropped with |mean| < {VADER_THRESHOLD}, {len(records)} kept")
        out[name] = stratified_subsample(dedupe(records, name), VADER_CAP, name)
    return out


def _bigbench_record(name: str, i: int, example: dict) -> Record | None:
    scores = example["target_scores"]
    (answer,) = [k for k, v in scores.items() if v == 1]
    label = BIGBENCH_LABELS[name][answer]
    raw = example["input"]
    if name == "bb_strategyqa":
        return {"text": clean_text(raw), "label": label, "source_index": i,
                "explanation": clean_text(example.get("target", ""))}
    if name == "bb_vitaminc":
        if "\ufffd" in raw:
            return None  # U+FFFD: characters lost upstream, not recoverable
        evidence, claim = raw.split("\nClaim: ")
        evidence, claim = clean_text(evidence), clean_text(claim)
        return {"text": f"{evidence}\nClaim: {claim}", "label": label, "source_index": i,
                "evidence": evidence, "claim": claim}
    if name == "bb_presuppositions_nli":
        body = raw.replace("\r\n", "\n").removesuffix("\n\nThe answer is: ").removeprefix("Sentence 1: ")
        premise, hypothesis = body.split("\nSentence 2: ")
        premise, hypothesis = clean_text(premise), clean_text(hypothesis)
        comment = example.get("comment", {})
        return {"text": f"{premise}\nSentence 2: {hypothesis}", "label": label, "source_index": i,
                "premise": premise, "hypothesis": hypothesis, "pair_id": str(comment.get("example_id", "")),
                "polarity": comment.get("polarity", ""), "adversarial": comment.get("adversarial", ""),
                "trigger": comment.get("trigger", "")}
    raise ValueError(f"unknown BIG-bench dataset {name!r}")


def build_bigbench(archive: Path) -> dict[str, list[Record]]:
    wanted = {f"bigbench/benchmark_tasks/{task}/task.json": name for name, task in BIGBENCH_TASKS.items()}
    files = _tar_members(archive, lambda n: n.split("/", 1)[-1] in wanted)
    out = {}
    for member, blob in sorted(files.items()):
        name = wanted[member.split("/", 1)[1]]
        task = json.loads(blob.decode("utf-8"))
        if "subtasks" in task or "examples" not in task:
            raise ValueError(f"{member}: expected a flat task with 'examples', got keys {sorted(task)}")
        expected_keys = set(BIGBENCH_LABELS[name])
        records, skipped = [], 0
        for i, example in enumerate(task["examples"]):
            if set(example["target_scores"]) != expected_keys:
                raise ValueError(f"{member} example {i}: target_scores keys {sorted(example['target_scores'])}")
            rec = _bigbench_record(name, i, example)
            if rec is None:
                skipped += 1
            else:
                records.append(rec)
        print(f"  {name}: {len(task['examples'])} examples, {skipped} dropped (U+FFFD), {len(records)} kept")
        out[name] = stratified_subsample(dedupe(records, name), BIGBENCH_CAP, name)
    return out


# --------------------------------------------------------------------------- writing
def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def stats_table(datasets: dict[str, list[dict]]) -> str:
    """Markdown table: size and label counts per split (label order = label ids)."""
    lines = ["| dataset | n | labels (id order) | train | validation | test | size |",
             "|---|---:|---|---|---|---|---:|"]
    for name, rows in datasets.items():
        names = LABEL_NAMES[name]
        cells = []
        for split in SPLITS:
            counts = collections.Counter(r["label"] for r in rows if r["split"] == split)
            cells.append(" / ".join(str(counts.get(c, 0)) for c in range(len(names))))
        size = (DATA_DIR / f"{name}.jsonl").stat().st_size
        lines.append(f"| `{name}` | {len(rows)} | {' / '.join(names)} | {' | '.join(cells)} | {size / 1e3:.0f} kB |")
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = DATA_DIR / "README.md"
    begin, end = "<!-- stats:begin -->", "<!-- stats:end -->"
    if not readme.exists():
        print("  data/README.md missing: stats table not written")
        return
    text = readme.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        print("  data/README.md has no stats markers: stats table not written")
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}", encoding="utf-8")
    print("  data/README.md stats table updated")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="keep/reuse downloaded archives here (default: a temporary dir, deleted)")
    args = parser.parse_args(argv)

    tmp = None
    if args.download_dir is None:
        tmp = tempfile.mkdtemp(prefix="toolkit-data-")
        download_dir = Path(tmp)
    else:
        download_dir = args.download_dir.resolve()
        download_dir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"fetching into {download_dir}")
        archives = fetch(download_dir)
        print("building")
        raw = {}
        raw.update(build_uci(archives["sentiment-5.0.2.tgz"]))
        raw.update(build_vader(archives["vaderSentiment-3.3.2.tar.gz"]))
        raw.update(build_bigbench(archives["bigbench-1.0.0.tar.gz"]))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print("writing")
    order = [*UCI_FILES, *VADER_FILES, *BIGBENCH_TASKS]
    final = {name: assign_splits(raw[name], name) for name in order}
    for name, rows in final.items():
        path = DATA_DIR / f"{name}.jsonl"
        write_jsonl(path, rows)
        counts = collections.Counter((r["split"], r["label"]) for r in rows)
        print(f"  {path.relative_to(DATA_DIR.parent)}: {len(rows)} records, {path.stat().st_size / 1e3:.0f} kB, "
              + ", ".join(f"{s}={[counts[(s, c)] for c in range(len(LABEL_NAMES[name]))]}" for s in SPLITS))
    total = sum((DATA_DIR / f"{n}.jsonl").stat().st_size for n in order)
    print(f"total {total / 1e6:.2f} MB in {len(order)} files")
    table = stats_table(final)
    print(table)
    update_readme(table)


if __name__ == "__main__":
    main()
