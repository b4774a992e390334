"""Writing a file so that a crash, a full disk or a second Ctrl-C never leaves half of one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then put it in ``path``'s place.

    The bytes are flushed and fsynced before ``os.replace`` (atomic) swaps the file in, and the
    directory is fsynced after, so ``path`` is either the old file or the whole new one. On any
    failure the temporary file is removed and the exception goes to the caller.
    """
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:  # a failed write, or e.g. a second Ctrl-C in the middle of it
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
