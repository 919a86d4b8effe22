"""The tiny local study's outputs, written once from the code before the metric-registry refactor.

`python tests/golden/study_golden.py` (from the repository root) rewrites ``tests/golden/study/``;
it was run on main at commit 3925ff9 (before toolkit/study.py became a package), so
tests/test_metrics_registry.py can check that the refactor changed no number, no column and no line of the
report. Two studies: the tiny NAOPC study (two selections, levels 0-3) and an AOPC-only one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "study"
sys.path.insert(0, str(HERE.parent))  # tests/ (tiny.py)
sys.path.insert(0, str(HERE.parents[1]))  # this checkout's toolkit, not an installed one

STUDIES = {
    "naopc": dict(levels=(0, 1, 2, 3), selections=("cosine", "random"), naopc=True, n_random=2),
    "aopc": dict(levels=(0, 1), selections=("cosine",), naopc=False, n_random=1),
}


def study_outputs(workdir: Path) -> dict[str, str]:
    """Run both tiny studies in ``workdir`` and return their outputs as text, by file name.

    Files: ``<study>_table.csv`` (the study's table.csv), ``<study>_summary.csv`` and
    ``<study>_statement.json`` (the summary and its statement), ``<study>_report.md``,
    ``<study>_plan.csv`` and ``<study>_plan.json`` (its m, margin).
    """
    import json as _json

    import numpy as np
    import torch

    from tiny import tiny_model, tiny_tokenizer
    from toolkit import Task, register_dataset
    from toolkit.data.datasets import DATASETS
    from toolkit.study import StudyConfig, plan, run_study, summary

    torch.set_num_threads(1)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    old = os.getcwd()
    os.chdir(workdir)  # the model is named by the relative folder "model": the same name on every machine
    try:
        if not Path("model").is_dir():
            tiny_model().save_pretrained("model")
            tiny_tokenizer().save_pretrained("model")
        words = "good bad great awful movie food service plot liked hated not very".split()
        rng = np.random.default_rng(0)
        lines = []
        for i in range(60):
            label = i % 2
            text = list(rng.choice(words, size=int(rng.integers(3, 9)))) + ["good" if label else "bad"]
            split = ["train", "validation", "test"][i % 3]
            lines.append(_json.dumps({"id": f"t-{i}", "text": " ".join(text), "label": label, "split": split}))
        Path("golden.jsonl").write_text("\n".join(lines) + "\n")
        with DATASETS.restored():  # golden_sent is registered for these studies only
            register_dataset("golden_sent", "golden.jsonl", Task(
                name="golden_sent", instruction="sentiment of this review ?", label_names=("negative", "positive"),
                verbalizers=("negative", "positive"), input_name="review", use_chat_template=False), replace=True)
            out: dict[str, str] = {}
            for name, opts in STUDIES.items():
                config = StudyConfig(models=("model",), datasets=("golden_sent",), methods=("saliency",), n_eval=8,
                                     n_validation=6, n_importance=4, n_faithfulness=3, n_boot=50, batch_size=4,
                                     output_dir=f"out_{name}", **opts)
                table = run_study(config, progress=False, report=True)
                run_dir = config.run_dir()
                head = summary(table, correction=config.correction, alpha=config.alpha)
                out[f"{name}_table.csv"] = (run_dir / "table.csv").read_text()
                out[f"{name}_report.md"] = (run_dir / "report.md").read_text()
                out[f"{name}_summary.csv"] = _frame_of(head).to_csv(index=False)
                out[f"{name}_statement.json"] = _json.dumps(_statement(head), indent=1, sort_keys=True) + "\n"
                p = plan(config)
                out[f"{name}_plan.csv"] = p.to_csv(index=False)
                out[f"{name}_plan.json"] = _json.dumps({"m": int(p.attrs["m"]), "margin": p.attrs["margin"]}) + "\n"
            return out
    finally:
        os.chdir(old)


def _frame_of(head):
    """The summary's table: the object itself (a DataFrame) before the refactor, ``.table`` after."""
    return getattr(head, "table", head)


def _statement(head) -> dict:
    """The summary's statement fields: from ``attrs`` before the refactor, typed fields after."""
    keys = ("m", "margin", "alpha", "correction", "statement", "method", "faithfulness_metric")
    if hasattr(head, "table"):
        return {k: getattr(head, k) for k in keys if getattr(head, k, None) is not None}
    return {k: head.attrs[k] for k in keys if k in head.attrs}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outputs = study_outputs(Path(tmp))
    GOLDEN.mkdir(exist_ok=True)
    for name, text in outputs.items():
        (GOLDEN / name).write_text(text)
    print(json.dumps(sorted(outputs), indent=1))
