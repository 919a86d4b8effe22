"""lm-eval `custom_dataset` for toolkit_uci_yelp.yaml: the committed rows beside this file (no hub access)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

FILE = Path(__file__).with_name("uci_yelp_plain.jsonl")


def load(**kwargs) -> datasets.DatasetDict:
    """The rows as a DatasetDict with one split, ``test`` (lm-eval passes the task metadata as keywords)."""
    rows = [json.loads(line) for line in FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
