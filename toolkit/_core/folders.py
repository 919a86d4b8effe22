"""Writing a folder whole: into a temporary sibling, then renamed into place.

A crash or an exception while writing never leaves a half-written folder at the target: readers
see the old folder or the new one. Used for the built-in model cache (`toolkit.models.loading`) and for
pruned checkpoints (`toolkit.pruning.attention.save_pruned`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_folder"]


def write_folder(target: Path, write: Callable[[Path], None], *, replace: bool = False) -> Path:
    """Run `write(tmp)` on a fresh temporary folder beside `target`, then rename it to `target`.

    Args:
        target: the folder to create.
        write: fills the temporary folder it is given.
        replace: an existing `target` is replaced whole: it is renamed aside, the new folder is
            renamed in, and the old one is deleted (a crash between the two renames leaves the old
            folder beside the target as `.<name>.old-<id>`, complete). Without it, an existing
            non-empty `target` is kept as is (another process finished the same write first).

    A crash or exception inside `write` leaves neither `target` changed nor the temporary folder behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if replace and (target.exists() or target.is_symlink()):
            aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, aside)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(aside, target)
                raise
            _remove(aside)
            return target
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # another process finishing first is fine; anything else is not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
