"""Crash-safe writes, shared by ``textenv``, ``agents`` and ``evals``: the one place that knows how.

A file or folder the project writes is built beside its target under a hidden temporary name,
flushed to disk (``fsync``), then renamed over the target, and the parent folder is synced so the
rename itself survives a power cut: a reader (or a run killed at any point) sees the old content or
the new one, never a half-written file. A folder also gets a ``COMPLETE`` marker, written last,
that every loader requires.

Several files that belong together (a leaderboard's CSV, Markdown and PNG) are replaced by
:func:`atomic_write_group`: every new file is written and synced before the first rename, and a
rename that fails puts the previous versions back, so they change together or not at all.

Replacing an existing folder takes two renames (``target`` out, the new one in); a kill between
them leaves no ``target`` but a complete hidden copy, which :func:`recover_dir` puts back (the next
write or load does it). Temporary folders of killed writes are removed by :func:`remove_stale`.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(root / "a.txt", "hello")
>>> (root / "a.txt").read_text()
'hello'
>>> with atomic_dir(root / "ckpt") as tmp:
...     _ = (tmp / "weights.bin").write_bytes(b"...")
>>> is_complete(root / "ckpt"), sorted(p.name for p in (root / "ckpt").iterdir())
(True, ['COMPLETE', 'weights.bin'])
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

__all__ = ["MARKER", "FolderLock", "atomic_dir", "atomic_open", "atomic_write", "atomic_write_group",
           "check_output_dir", "ensure_file_replaceable", "ensure_replaceable", "is_complete", "recover_dir",
           "refuse_symlinks", "remove_stale", "require_complete"]

MARKER = "COMPLETE"
_TMP = ".tmp-"  # hidden temporary siblings: .<name>.tmp-XXXX
_OLD = ".old-"  # the previous version while it is swapped out: .<name>.old-<pid>


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it is flushed, synced and renamed over
    ``path``; on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{_TMP}")
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an output is a file like any other
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def ensure_file_replaceable(path: str | Path) -> Path:
    """``path`` as a :class:`Path` when a file may be written there: absent or a regular file (a link
    to one). Otherwise (a folder, a device) a one-line error; call it before any work so that a long
    run does not fail at its last step."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise (IsADirectoryError if path.is_dir() else FileExistsError)(
            f"{path} exists and is {kind}; refusing to replace it: remove it or choose another name")
    return path


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold :class:`FolderLock` on ``folder`` (waiting for it) so that two group writes into it never
    interleave their renames (nor sweep each other's temporary files); best effort where the folder
    cannot be opened or locked."""
    try:
        lock = FolderLock(folder, wait=True)
    except OSError:  # an unreadable folder, a filesystem without flock: unserialised, as atomic_write is
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _write_synced(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, sync and close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmps: Mapping[Path, Path]) -> None:
    """Rename each temporary file over its target, keeping each previous version as a hidden hard
    link (``.<name>.old-<pid>``) until all renames succeeded; a failed rename puts them back."""
    done: list[tuple[Path, Path | None]] = []  # (target, its previous version) of each rename made
    backups: list[Path] = []
    try:
        for target, tmp in tmps.items():
            backup = None
            if target.exists():
                backup = target.with_name(f".{target.name}{_OLD}{os.getpid()}")
                backup.unlink(missing_ok=True)
                backups.append(backup)
                try:
                    os.link(target, backup)
                except OSError:  # a filesystem without hard links
                    shutil.copy2(target, backup)
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise OSError(exc.errno, f"replacing {target} failed ({exc.strerror or exc}); "
                              f"{', '.join(t.name for t in tmps)} were put back as they were") from exc
            done.append((target, backup))
    except BaseException as exc:
        for target, backup in reversed(done):
            try:
                if backup is None:
                    target.unlink()  # it did not exist before
                else:
                    os.replace(backup, target)
            except OSError as undo:
                exc.add_note(f"could not put back {target} ({undo})"
                             + (f"; its previous version is {backup}" if backup else ""))
                if backup is not None:
                    backups.remove(backup)  # kept for the user to restore
        raise
    finally:
        for backup in backups:
            backup.unlink(missing_ok=True)
        _fsync_dir(next(iter(tmps)).parent)


def atomic_write_group(files: Mapping[str | Path, str | bytes]) -> None:
    """Replace several files of one folder together (text is UTF-8): all or none change.

    Before any target changes: every target is checked (absent or a regular file), the hidden
    temporary and backup files of killed earlier writes are removed, and every new file is written
    and synced beside its target; a failed write (a full disk) removes the temporary files and
    leaves every target as it was. Then each is renamed into place; if a rename fails, the previous
    versions (kept as hidden links until the last rename) are put back. Only a kill during the
    renames themselves (microseconds) can leave some targets new and others old. Writers of one
    folder are serialised by a lock on it.
    """
    targets = {Path(p): d.encode("utf-8") if isinstance(d, str) else d for p, d in files.items()}
    folders = {t.parent for t in targets}
    if len(folders) != 1:
        raise ValueError(f"atomic_write_group writes into one folder, got {sorted(map(str, folders))}")
    for target in targets:
        ensure_file_replaceable(target)
    folder = folders.pop()
    folder.mkdir(parents=True, exist_ok=True)
    tmps: dict[Path, Path] = {}
    with _locked(folder):
        for target in targets:
            remove_stale(target)  # under the lock, any temporary file is a killed write's
        try:
            for target, data in targets.items():
                try:
                    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}{_TMP}")
                    tmps[target] = Path(tmp)
                    _write_synced(fd, data)
                    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
                except OSError as exc:
                    raise OSError(exc.errno, f"writing {target} failed ({exc.strerror or exc}); "
                                  f"{', '.join(t.name for t in targets)} left as they were"
                                  + (": free some space" if exc.errno == errno.ENOSPC else "")) from exc
            _swap_in(tmps)
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a folder that :func:`atomic_dir` finished writing."""
    return (Path(path) / MARKER).is_file()


def require_complete(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` as a :class:`Path` when it is a finished folder; otherwise a one-line error naming it
    (a folder a killed write left behind is never loaded as if it were whole)."""
    path = recover_dir(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not is_complete(path):
        raise ValueError(f"{what} {path} is incomplete: no {MARKER} marker (a write was interrupted, or it "
                         "was not written by textenv)")
    return path


# files only textenv writes into its output folders: a folder holding one is textenv's, and must be whole
_TEXTENV_FILES = ("policy.json", "trainer_state.json", "reward_model_config.json", "sft_config.json")


def check_output_dir(path: str | Path, what: str = "checkpoint") -> Path:
    """Refuse to load a folder that a killed textenv write left: a hidden temporary copy
    (``.name.tmp-*``, ``.name.old-*``) or a textenv output without its ``COMPLETE`` marker. A plain
    Hugging Face model folder (no textenv files) passes: it was not written by textenv."""
    path = recover_dir(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.name.startswith(".") and (_TMP in path.name or _OLD in path.name):
        raise ValueError(f"{what} {path} is the temporary folder of an interrupted write, not a checkpoint")
    if any((path / f).is_file() for f in _TEXTENV_FILES) and not is_complete(path):
        raise ValueError(f"{what} {path} is incomplete: no {MARKER} marker (its write was interrupted)")
    return path


def recover_dir(target: str | Path) -> Path:
    """Undo a replace that was killed between its two renames: when ``target`` is missing, the newest
    complete hidden copy (the new version, else the old one) is renamed back into place."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return target
    copies = [p for p in target.parent.glob(f".{target.name}{_TMP}*") if p.is_dir() and is_complete(p)]
    copies = copies or [p for p in target.parent.glob(f".{target.name}{_OLD}*") if p.is_dir() and is_complete(p)]
    if copies:
        os.replace(max(copies, key=lambda p: p.stat().st_mtime), target)
        _fsync_dir(target.parent)
    return target


def remove_stale(target: str | Path, older_than: float = 0.0) -> list[Path]:
    """Remove the hidden temporary and swapped-out copies of ``target`` left by killed writes
    (those untouched for ``older_than`` seconds); returns what was removed. Call it only where one
    process writes ``target`` (a run's own checkpoint folder)."""
    target = recover_dir(target)
    now, removed = time.time(), []
    for pattern in (f".{target.name}{_TMP}*", f".{target.name}{_OLD}*"):
        for path in target.parent.glob(pattern):
            if now - path.stat().st_mtime >= older_than:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def ensure_replaceable(target: str | Path) -> Path:
    """``target`` as a :class:`Path` when :func:`atomic_dir` may write it: absent, an empty folder,
    or a folder that :func:`atomic_dir` wrote. Otherwise (a file, a folder of the user's) a one-line
    error; call it before any work so that a long run does not fail at its last step."""
    target = recover_dir(target)
    if target.exists() and not (target.is_dir() and (is_complete(target) or not any(target.iterdir()))):
        raise FileExistsError(f"{target} exists and is not a textenv output (no {MARKER} marker); refusing to "
                              "replace it: choose another path or remove it yourself")
    return target


@contextlib.contextmanager
def atomic_dir(target: str | Path, own: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it gets the ``COMPLETE`` marker, is synced, and replaces
    ``target``. A ``target`` that exists but was not written this way (a folder of the user's) is
    refused before anything is written: the project never deletes what it did not create, unless
    ``own`` says the path is the project's own (a cache under :func:`textenv.models.cache_dir`)."""
    target = recover_dir(target) if own else ensure_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP}", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text("ok\n")
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}{_OLD}{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_symlinks(folder: str | Path, what: str = "run folder") -> Path:
    """``folder`` as a :class:`Path` when nothing inside it is a symbolic link; otherwise a one-line
    error naming the link. A run folder is the project's own: a link inside it (``samples.jsonl`` ->
    a file of the user's) would make an append or a replace write outside it."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                raise ValueError(f"{what} {folder} holds a symbolic link, {path} -> {os.readlink(path)}; textenv "
                                 "never writes through links: replace it by a plain file or remove it")
    return folder


class FolderLock:
    """An exclusive lock on a folder for as long as one process writes it (``flock`` on the folder
    itself, so no lock file is left behind and a killed process's lock goes with it). A second
    writer, say the same ``--resume`` started twice, gets a one-line error instead of two runs
    interleaving their checkpoints; ``wait`` waits for the other writer instead. Where ``fcntl``
    does not exist (Windows) it locks nothing.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock = FolderLock(folder, "run folder")
    >>> FolderLock(folder, "run folder")
    Traceback (most recent call last):
    ...
    BlockingIOError: run folder ... is in use by another writer ...
    >>> lock.release(); FolderLock(folder).release()
    """

    def __init__(self, folder: str | Path, what: str = "folder", wait: bool = False) -> None:
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if not isinstance(exc, BlockingIOError):
                raise
            raise BlockingIOError(f"{what} {folder} is in use by another writer (a run still going, perhaps the "
                                  "same command started twice): wait for it to end or use another folder") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    def __del__(self) -> None:
        self.release()
