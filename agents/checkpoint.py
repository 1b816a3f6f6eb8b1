"""Atomic checkpoint directories: a crash mid-write never leaves a checkpoint that loads wrong.

Everything is written into a temporary sibling directory; only when the block finishes is it
renamed into place (the previous checkpoint, if any, is swapped out and removed after). A
``COMPLETE`` marker is written last, and :func:`is_complete` checks it before anything loads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "is_complete"]

_MARKER = "COMPLETE"


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        (tmp / _MARKER).write_text("ok\n")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a checkpoint that :func:`atomic_dir` finished writing."""
    return (Path(path) / _MARKER).exists()
