"""Atomic file commits: write to a temporary name in the same folder, fsync, rename.

A crash mid-write leaves the previous file intact; leftover temporaries carry the prefix
``.tmp-`` and are removed by :func:`remove_stale_temporaries` at the next start. A full disk
(ENOSPC, EDQUOT) during a commit raises :class:`zspace.errors.DiskFullError` naming the file,
with the previous file untouched and the temporary removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from zspace.errors import DiskFullError

__all__ = [
    "atomic_path",
    "atomic_save",
    "atomic_write_bytes",
    "fsync_path",
    "atomic_write_text",
    "remove_stale_temporaries",
    "is_disk_full",
    "temporaries_in",
]

TEMP_PREFIX = ".tmp-"
MAX_TEMP_STEM_BYTES = 64  # of the final name's stem (and suffix) kept in a temporary's name


def process_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it: Python has no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    """Flushes a file or a folder (its entries: a rename into it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full.

    h5py, which Keras saves weights with, raises OSError without an errno and the C library's
    message in the text, so the text counts too.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _free_mib(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        return "free space unknown"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path (same folder and suffix) that replaces ``path`` on success.

    Example::

        with atomic_path("out/grid.png") as tmp:
            picture.save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary's name adds 14 characters to the stem: cut it so that a legal name near the
    # 255-byte limit of a file name (a run folder's long name in report assets) stays legal.
    stem = os.fsencode(path.stem)[:MAX_TEMP_STEM_BYTES].decode("utf-8", errors="ignore")
    suffix = path.suffix if len(os.fsencode(path.suffix)) <= MAX_TEMP_STEM_BYTES else ""
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{stem}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~process_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    except Exception as exc:
        if is_disk_full(exc):
            tmp.unlink(missing_ok=True)  # before measuring: the half-written file is not the user's
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise DiskFullError(f"disk full while writing {path} ({_free_mib(path.parent)}); {kept}. "
                                f"Free some space and run the command again.") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def temporaries_in(folder: str | Path) -> Iterator[Path]:
    """Points Python's ``tempfile`` at a fresh ``.tmp-`` folder inside ``folder`` for the block.

    Keras' saving makes temporary folders in the system temp directory; a kill mid-save
    would leave them there for ever. Inside ``folder`` they are removed on every exit and,
    after a kill, by :func:`remove_stale_temporaries` at the next start.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}scratch-", dir=folder))
    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(scratch, ignore_errors=True)


def atomic_save(path: str | Path, save: Callable[[Path], None]) -> None:
    """Calls ``save(tmp_path)`` and commits the file atomically to ``path``.

    The saver's own temporaries (Keras') live beside the file for the call (:func:`temporaries_in`).
    """
    with atomic_path(path) as tmp, temporaries_in(tmp.parent):
        save(tmp)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes temporaries (files and scratch folders) left by a crashed save in ``folder``; returns them.

    Only entries named ``.tmp-*`` directly in ``folder`` are touched; a symlink is removed, never followed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f"{TEMP_PREFIX}*"))
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
