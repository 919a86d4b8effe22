"""Write uci_yelp_plain.jsonl: 32 UCI yelp test sentences as the toolkit poses them (plain prompt, verbalizers).

Run from the repository root: ``PYTHONPATH=. python tests/lmeval_task/make_rows.py``. The rows are
committed; tests/test_lmeval.py checks they are still what the toolkit renders.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit import load_dataset
from toolkit.data.prompts import render_prompt

N_ROWS = 32  # a label-stratified subsample (load_dataset n=32, seed 0): 16 per class
FILE = Path(__file__).with_name("uci_yelp_plain.jsonl")


def rows() -> list[dict]:
    ds = load_dataset("uci_yelp", n=N_ROWS, split="test")
    assert ds.task.use_chat_template is False  # the plain prompt: the same text for every tokenizer
    return [
        {"id": ex.id, "text": ex.text, "label": ex.label, "prompt": render_prompt(ds.task, None, ex.text).text,
         "choices": list(ds.task.verbalizers)}
        for ex in ds.examples
    ]


def text() -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows())


if __name__ == "__main__":
    FILE.write_text(text(), encoding="utf-8")
    print(f"wrote {FILE} ({N_ROWS} rows)")
