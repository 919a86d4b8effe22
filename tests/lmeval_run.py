"""Evaluate model folders on the local lm-eval task (tests/lmeval_task), offline, in one process.

Run as ``python tests/lmeval_run.py JOBS.json RESULTS.json`` with HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1 (set before `datasets` is imported: it reads them once). JOBS.json is a list of
``{"name", "path", "add_bos_token"}``; RESULTS.json maps each name to lm-eval's accuracy and, per
row id, its log-likelihood of each choice (``loglik``), with the wall time. Uses lm-eval's Python
API the way a user would: ``simple_evaluate(model="hf", model_args="pretrained=<folder>,...")``.
The toolkit is not imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TASK_DIR = Path(__file__).with_name("lmeval_task")


def main() -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    jobs = json.loads(Path(sys.argv[1]).read_text())
    manager = TaskManager(include_path=str(TASK_DIR))
    out = {}
    for job in jobs:
        start = time.perf_counter()
        result = lm_eval.simple_evaluate(
            model="hf",
            model_args=(f"pretrained={job['path']},dtype=float32,device=cpu,"
                        f"add_bos_token={job['add_bos_token']}"),
            tasks=["toolkit_uci_yelp"],
            task_manager=manager,
            batch_size=8,
            log_samples=True,
            num_fewshot=0,
        )
        samples = result["samples"]["toolkit_uci_yelp"]
        out[job["name"]] = {
            "acc": result["results"]["toolkit_uci_yelp"]["acc,none"],
            "loglik": {s["doc"]["id"]: [float(r[0][0]) for r in s["resps"]] for s in samples},
            "n": len(samples),
            "seconds": time.perf_counter() - start,
        }
    assert not any(m == "toolkit" or m.startswith("toolkit.") for m in sys.modules), "the toolkit was imported"
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
