"""Load model folders with plain transformers only, in a fresh process: what a user without the toolkit gets.

Run as ``python tests/plain_hf_load.py JOBS.json RESULTS.pt``. JOBS.json is a list of
``{"name", "path", "mode", "input_ids", "new_tokens"}``; mode is

* ``"plain"``: ``AutoModelForCausalLM.from_pretrained(path)`` (defaults: no trust_remote_code);
* ``"remote"``: the same with ``trust_remote_code=True`` (the structural format's opt-in class);
* ``"refuse"``: plain ``from_pretrained`` is expected to raise; the exception text is recorded.

An optional ``"attn"`` sets ``attn_implementation`` (default: transformers' own choice, sdpa).

For each loaded job RESULTS.pt holds the logits of ``input_ids``, ``new_tokens`` greedy tokens,
transformers' loading report, the class name, and whether the input and output embeddings still
share storage. The script never imports the toolkit (checked before it exits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def run(job: dict) -> dict:
    if job["mode"] == "refuse":
        try:
            AutoModelForCausalLM.from_pretrained(job["path"])
        except Exception as err:  # noqa: BLE001 - the message is the result
            return {"error": f"{type(err).__name__}: {err}"}
        return {"error": None}
    model, info = AutoModelForCausalLM.from_pretrained(
        job["path"], output_loading_info=True, trust_remote_code=job["mode"] == "remote",
        **({"attn_implementation": job["attn"]} if job.get("attn") else {}),
    )
    model.eval()
    x = torch.tensor(job["input_ids"])
    with torch.no_grad():
        logits = model(x).logits
        generated = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=job["new_tokens"], min_new_tokens=job["new_tokens"],
            do_sample=False, pad_token_id=0,
        )
    out_emb = model.get_output_embeddings()
    return {
        "logits": logits,
        "generated": generated[:, x.shape[1]:],
        "info": {k: sorted(v) for k, v in info.items() if v},
        "class": type(model).__name__,
        "tied": out_emb is not None and out_emb.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(),
    }


def in_fresh_process(jobs: list[dict], tmp: Path) -> dict:
    """Run this script once on all `jobs` in a new interpreter (offline, its own remote-code cache); its results."""
    job_file, result_file = tmp / "jobs.json", tmp / "results.pt"
    job_file.write_text(json.dumps(jobs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp / "hf_modules"),
           "PYTHONPATH": "", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, __file__, str(job_file), str(result_file)], env=env, cwd=tmp,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(result_file, weights_only=False)


def main() -> None:
    jobs = json.loads(open(sys.argv[1]).read())
    torch.manual_seed(0)
    results = {job["name"]: run(job) for job in jobs}
    assert not any(m == "toolkit" or m.startswith("toolkit.") for m in sys.modules), "the toolkit was imported"
    torch.save(results, sys.argv[2])


if __name__ == "__main__":
    main()
