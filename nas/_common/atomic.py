"""Atomic file writes: readers (and a crash) see the old file or the new one, never half of one.

A write that the machine refuses (disk full, read-only folder, permission denied) raises EnvironmentFault
naming the file and the cause; its temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from nas.errors import write_fault


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given; mkstemp's 0600 would hide results from others


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file (or a folder's entries) to the disk; some filesystems report a full disk only here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one step.

    On any error the temporary file is removed and `path` is left as it was; an OSError (the block's or
    the replacement's) becomes EnvironmentFault naming `path`.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        fsync_path(tmp)
        os.replace(tmp, path)
        tmp = None
        fsync_path(path.parent)  # the rename itself survives a crash
    except OSError as exc:
        raise write_fault(path, exc) from exc
    finally:
        if tmp is not None:
            with suppress(OSError):  # a failed clean-up must not hide the cause
                tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
