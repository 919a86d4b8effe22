"""sha256 digests of what a result depends on: files, model weights, tokenizers, chat templates.

Hex digests, memoised per process: a file by (path, size, mtime, inode), so a study hashes each
model's weights once however many cells it has; a tokenizer per object and its length.
:func:`toolkit.models.manifest.build_manifest` records them (:mod:`toolkit.models.manifest` re-exports
:func:`file_sha256` and :func:`weights_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "chat_template_digest",
    "file_sha256",
    "text_sha256",
    "tokenizer_digest",
    "weights_digest",
]

_FILE_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_TOKENIZER_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per (path, size, mtime, inode) in this process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def weights_digest(weights: str | os.PathLike | Mapping[str, str]) -> str | None:
    """One sha256 for a model's weights: a folder's ``*.safetensors`` files or a file -> sha256 mapping.

    The file's own sha256 when there is one file (what ``sha256sum model.safetensors`` prints),
    else sha256 of the lines ``"<file name> <sha256>\\n"`` sorted by file name. None when the
    folder holds no safetensors file.
    """
    if isinstance(weights, Mapping):
        files = dict(weights)
    else:
        files = {f.name: file_sha256(f) for f in sorted(Path(weights).glob("*.safetensors"))}
    if not files:
        return None
    if len(files) == 1:
        return next(iter(files.values()))
    lines = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def text_sha256(text: str) -> str:
    """sha256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """sha256 of a tokenizer (:attr:`toolkit.models.manifest.Manifest.tokenizer_sha256`); memoised per tokenizer object and its length."""
    try:
        memo = _TOKENIZER_DIGESTS.get(tokenizer)
    except TypeError:  # not weak-referenceable
        memo = None
    if memo is not None and memo[0] == len(tokenizer):
        return memo[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        if backend.padding is not None or backend.truncation is not None:  # runtime settings, not the tokenizer
            backend = type(backend).from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        text = backend.to_str()  # serialised in id order: the same text in every process (no JSON round trip:
    else:  # parsing Gemma's 12 MB took seconds)
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])
    digest = text_sha256(text)
    try:
        _TOKENIZER_DIGESTS[tokenizer] = (len(tokenizer), digest)
    except TypeError:
        pass
    return digest


def chat_template_digest(tokenizer: Any) -> str | None:
    """sha256 of the tokenizer's chat template, or None when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    return text_sha256(template if isinstance(template, str) else json.dumps(template, sort_keys=True))
