"""Manifests: what they record (against independent computations), files, diffs, the resume check, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

import toolkit.models.manifest as mf
from test_study import write_fixture
from tiny import TINY_TASK, tiny_model, tiny_tokenizer
from toolkit import load_model, prune_attention, register_dataset, save_pruned
from toolkit.data.task import Example
from toolkit.data.datasets import demonstrations, get_task
from toolkit.__main__ import main
from toolkit.models.manifest import (
    Manifest,
    MixedManifestError,
    build_manifest,
    check_resume,
    folder_manifests,
    manifest_diff,
    read_manifest,
    read_result_manifests,
    write_manifest,
    write_result_manifest,
)
from toolkit._core.digests import weights_digest
from toolkit._core.store import CellStore
from toolkit.study import StudyConfig, load_results, run_study, tidy_table

TASK = TINY_TASK


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_records_versions_weights_tokenizer_and_prompt(tmp_path):
    model, tok = tiny_model(), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    m = build_manifest(model, tok, model_id="tiny", weights=tmp_path, task=TASK, batch_size=4, seeds=3,
                       config_digest="abc")
    import transformers

    assert (m.torch, m.transformers, m.python) == (torch.__version__, transformers.__version__,
                                                   __import__("platform").python_version())
    assert (m.device, m.dtype, m.torch_threads) == ("cpu", "float32", torch.get_num_threads())
    assert m.weights_sha256 == _sha256(tmp_path / "model.safetensors")  # one file: its own sha256 (sha256sum's)
    assert (m.model, m.batch_size, m.seeds, m.config_digest) == ("tiny", 4, (("seed", 3),), "abc")
    assert (m.prompt, m.demo_ids, m.chat_template_sha256) == ("plain", (), None)
    assert len(m.toolkit_sha256) == 64 and len(m.tokenizer_sha256) == 64
    # Tokenizer identity: padding settings are not part of it, a new token is.
    left = m.tokenizer_sha256
    tok.padding_side = "right"
    tok.backend_tokenizer.enable_padding(pad_id=0, pad_token="<pad>", length=64)
    assert '"padding": null' not in tok.backend_tokenizer.to_str()  # the serialised JSON did change
    assert build_manifest(tokenizer=tok).tokenizer_sha256 == left
    grown = tiny_tokenizer()
    grown.add_tokens(["zebra"])
    assert build_manifest(tokenizer=grown).tokenizer_sha256 != left
    # Chat template: its text's sha256; a chat prompt with k-shot demonstrations names them.
    chat = tiny_tokenizer(chat=True)
    assert build_manifest(tokenizer=chat).chat_template_sha256 == hashlib.sha256(chat.chat_template.encode()).hexdigest()
    demos = [Example("d1", "good movie", 1), Example("d0", "bad food", 0)]
    shot = build_manifest(tokenizer=chat, task=dataclasses.replace(TASK, use_chat_template="auto"), demos=demos)
    assert (shot.prompt, shot.demo_ids) == ("chat, 2-shot", ("d1", "d0"))
    # The task's own n_shot: its demonstrations from the train split, in prompt order.
    yelp = dataclasses.replace(get_task("uci_yelp"), n_shot=4)
    four = build_manifest(tokenizer=tok, task=yelp)
    assert four.demo_ids == tuple(e.id for e in demonstrations("uci_yelp", 4))
    assert four.task_sha256 != m.task_sha256
    with pytest.raises(ValueError, match="needs the tokenizer"):
        build_manifest(task=TASK)


def test_weights_digest_of_several_files_and_memo(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"first")
    (tmp_path / "b.safetensors").write_bytes(b"second")
    lines = f"a.safetensors {hashlib.sha256(b'first').hexdigest()}\nb.safetensors {hashlib.sha256(b'second').hexdigest()}\n"
    assert weights_digest(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()
    assert weights_digest({"b.safetensors": hashlib.sha256(b"second").hexdigest(),
                           "a.safetensors": hashlib.sha256(b"first").hexdigest()}) == weights_digest(tmp_path)
    assert weights_digest(tmp_path / "nothing-here") is None
    # Memoised by path, size, mtime and inode: a rewritten file is hashed again.
    before = weights_digest(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"changed!")
    assert weights_digest(tmp_path) != before


def test_no_git_no_failure(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # git cannot be found
    m = build_manifest()
    assert (m.git_commit, m.git_dirty) == (None, None)
    assert m.toolkit_sha256 is not None


def test_write_read_diff_and_errors(tmp_path):
    a = build_manifest(batch_size=4, seeds={"seed": 0, "bootstrap": 1})
    write_manifest(tmp_path, a)
    back = read_manifest(tmp_path)
    assert back == a
    assert json.loads((tmp_path / "manifest.json").read_text())["seeds"] == {"bootstrap": 1, "seed": 0}
    b = dataclasses.replace(a, transformers="9.9.9", batch_size=8, created="2000-01-01T00:00:00+00:00")
    assert manifest_diff(a, b) == {"transformers": (a.transformers, "9.9.9"), "batch_size": (4, 8)}  # created: volatile
    assert manifest_diff(a, b, fields=["batch_size"]) == {"batch_size": (4, 8)}
    assert manifest_diff(a, a.to_dict()) == {}
    assert Manifest.from_dict({**a.to_dict(), "added_by_a_newer_toolkit": 1}) == a
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"folder '{empty}' has no manifest.json"):
        read_manifest(empty)
    with pytest.raises(ValueError, match=f"folder '{empty}' has no manifest.json and no study cells"):
        folder_manifests(empty)
    result = tmp_path / "table.csv"
    result.write_text("x\n1\n")
    write_result_manifest(result, [a, b])
    assert read_result_manifests(result) == [a, b]


def test_check_resume_refuses_warns_and_ignores_what_it_should():
    a = build_manifest(batch_size=4)
    later = dataclasses.replace(a, created="2099-01-01T00:00:00+00:00", host="other", git_commit="0" * 40,
                                git_dirty=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_resume({"c1": a.to_dict()}, {"c1": later}) == {}  # volatile and informational fields
    new = dataclasses.replace(a, transformers="9.9.9")
    with pytest.raises(MixedManifestError, match=rf"transformers: {a.transformers} -> 9.9.9 \(2 cells\).*--allow-mixed"):
        check_resume({"c1": a, "c2": a}, {"c1": new, "c2": new})
    assert check_resume({"c1": a}, {"c1": new}, fields={"c1": {"batch_size"}}) == {}  # not known: not compared
    with pytest.warns(RuntimeWarning, match="different manifest"):
        assert check_resume({"c1": a}, {"c1": new}, allow_mixed=True) == {"c1": {"transformers": (a.transformers,
                                                                                                 "9.9.9")}}
    with pytest.warns(RuntimeWarning, match="1 finished cell.* have no manifest"):
        check_resume({"old": None}, {"old": new})


def test_save_pruned_writes_a_manifest_load_model_still_checks(tmp_path):
    model, tok = tiny_model(), tiny_tokenizer()
    prune_attention(model, [1, 2])
    save_pruned(model, tmp_path / "ckpt", tokenizer=tok)
    m = read_manifest(tmp_path / "ckpt")
    assert m.weights_sha256 == _sha256(tmp_path / "ckpt" / "model.safetensors")
    assert m.tokenizer_sha256 == build_manifest(tokenizer=tok).tokenizer_sha256
    reloaded, _ = load_model(tmp_path / "ckpt")  # load_pruned's checksum and key checks pass
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def _study(tmp_path: Path, name: str) -> StudyConfig:
    model_dir, data = write_fixture(tmp_path)
    register_dataset(name, data, dataclasses.replace(TASK, name=name), replace=True)
    return StudyConfig(models=(str(model_dir),), datasets=(name,), levels=(0, 1), selections=("cosine",),
                       methods=("saliency",), n_eval=8, n_validation=6, n_importance=4, n_faithfulness=2,
                       n_random=1, n_boot=20, batch_size=4, naopc=False, output_dir=str(tmp_path / "out"))


def test_study_resume_under_a_changed_manifest(tmp_path, monkeypatch, capsys):
    config = _study(tmp_path, "tiny_manifest")
    first = run_study(config, progress=False, report=False)
    run_dir = config.run_dir()
    table_bytes = (run_dir / "table.csv").read_bytes()
    records = load_results(config)
    assert len(records) == 2 and all(r["manifest"]["config_digest"] == config.digest() for r in records)
    assert records[0]["manifest"]["weights_sha256"] == _sha256(Path(config.models[0]) / "model.safetensors")
    assert records[0]["manifest"]["prompt"] == "plain" and records[0]["manifest"]["batch_size"] == 4
    # The manifest stays out of the table: table.csv is what the records without it give.
    bare = [{k: v for k, v in r.items() if k != "manifest"} for r in records]
    assert tidy_table(bare, config).to_csv(index=False).encode() == table_bytes
    assert "manifest" not in first.columns

    redo = CellStore(run_dir)._cell_path(records[1]["cell"])
    redo.unlink()  # a cell left to compute: the check runs
    with warnings.catch_warnings():  # the unchanged rerun resumes silently
        warnings.simplefilter("error", RuntimeWarning)
        again = run_study(config, progress=False, report=False)
    assert redo.exists()
    pd.testing.assert_frame_equal(first, again)
    assert (run_dir / "table.csv").read_bytes() == table_bytes

    real = mf._version
    monkeypatch.setattr(mf, "_version", lambda d: "9.9.9" if d == "transformers" else real(d))
    with warnings.catch_warnings():  # a finished study computes nothing: its table is rebuilt, nothing mixes
        warnings.simplefilter("error", RuntimeWarning)
        run_study(config, progress=False, report=False)
    assert (run_dir / "table.csv").read_bytes() == table_bytes
    key = records[1]["cell"]
    cell_file = CellStore(run_dir)._cell_path(key)
    cell_file.unlink()  # one cell left to compute: it would be computed under the new manifest
    with pytest.raises(MixedManifestError, match=r"1 finished cell\(s\) of study .* transformers: \S+ -> 9.9.9 "
                                                 r"\(1 cell\).*--allow-mixed"):
        run_study(config, progress=False, report=False)
    assert not cell_file.exists()  # refused before computing anything
    with pytest.warns(RuntimeWarning, match="1 finished cell.*transformers"):
        run_study(config, progress=False, report=False, allow_mixed=True)
    found = folder_manifests(run_dir)
    assert {k: m.transformers for k, m in found.items()}[key] == "9.9.9"
    assert sorted(m.transformers for m in found.values())[0] != "9.9.9"

    assert main(["manifest", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 cells under 2 manifests" in out and "shared by all cells:" in out
    assert "9.9.9" in out and "transformers" in out.split("manifest 1")[1]
    monkeypatch.undo()

    # Old cells (no manifest) warn, never refuse.
    path = CellStore(run_dir)._cell_path(records[0]["cell"])
    record = json.loads(path.read_text())
    del record["manifest"]
    path.write_text(json.dumps(record))
    cell_file.unlink()  # a cell to compute beside the old one
    with pytest.warns(RuntimeWarning, match="1 finished cell.* have no manifest"):
        run_study(config, progress=False, report=False)
    assert cell_file.exists()
    assert main(["manifest", str(run_dir)]) == 0
    assert "without a manifest" in capsys.readouterr().out


def test_cli_manifest_errors_and_allow_mixed_flag(tmp_path, capsys, monkeypatch):
    assert main(["manifest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(tmp_path) in err and "no manifest.json" in err
    assert main(["manifest", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    model, tok = tiny_model(), tiny_tokenizer()
    save_pruned(model, tmp_path / "ckpt", tokenizer=tok)
    assert main(["manifest", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "checkpoint manifest" in out and read_manifest(tmp_path / "ckpt").weights_sha256 in out
    seen = {}
    import toolkit.study

    def fake_run_study(config, *, progress, allow_mixed):
        seen["allow_mixed"] = allow_mixed
        raise MixedManifestError("differs: transformers: a -> b")

    monkeypatch.setattr(toolkit.study, "run_study", fake_run_study)
    monkeypatch.setattr(toolkit.study, "check_study", lambda config: None)
    assert main(["study", "--profile", "ci", "--allow-mixed", "--output-dir", str(tmp_path / "o")]) == 2
    assert seen == {"allow_mixed": True}
    assert "transformers: a -> b" in capsys.readouterr().err


def test_code_hash_ignores_docstrings_and_comments_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "toolkit"
    pkg.mkdir()
    module = pkg / "m.py"
    monkeypatch.setattr(mf, "_PACKAGE", pkg)

    def digest(text: str) -> str:
        module.write_text(text)
        return mf._source_sha256()

    base = digest('"""Doc."""\ndef f(x):\n    """Add one."""\n    return x + 1\n')
    assert digest('"""Other doc."""\ndef f(x):\n    """Adds one."""\n    # a comment\n    return x + 1\n') == base
    assert digest('def f(x):\n    return x + 1\n') == base
    assert digest('"""Doc."""\ndef f(x):\n    """Add one."""\n    return x + 2\n') != base
    assert digest('"""Doc."""\ndef f(x):\n    """Add one."""\n    return (x + 1\n') != base  # no parse: bytes
