"""The one way a file is replaced whole: written beside its target under a temporary name,
then renamed over it (`os.replace`, atomic on one file system). A reader sees the old file or
the new one, never half of one; a writer that fails leaves the target as it was and removes
its temporary file.

The temporary name is `.<name>.<12 hex>.tmp<extension>`: hidden, unique per writer (several
processes may write the same target at once: the last rename wins, whole), and it keeps the
target's extension, by which pandas picks its Excel writer and numpy decides not to append
`.npy`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Iterator

__all__ = ["WRITE_FLAGS", "atomic_path", "temp_name", "write_all", "write_bytes_atomic"]

WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def temp_name(path: str) -> str:
    """The temporary path a writer of `path` writes to."""
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp{os.path.splitext(base)[1]}")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, durable: bool = False, like: os.stat_result | None = None
) -> Iterator[str]:
    """A temporary path beside `path` to write to; it replaces `path` only once the writer is
    done. The folder is made if missing.

    `durable`: the written bytes are flushed to the disk (fsync) before the rename, so a crash
    right after leaves the new file, not an empty one. `like`: the file gets this stat's
    permission bits and access/modification times (a rewrite that must not look new).
    """
    target = os.fspath(path)
    folder = os.path.dirname(target)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        if like is not None:
            os.chmod(tmp, stat.S_IMODE(like.st_mode))
            os.utime(tmp, ns=(like.st_atime_ns, like.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = False,
    like: os.stat_result | None = None,
) -> None:
    """Replace `path` with `data`, atomically (see `atomic_path` for `durable` and `like`)."""
    with atomic_path(path, durable=durable, like=like) as tmp:
        write_all(tmp, data)


def write_all(path: str, data: bytes) -> None:
    """Write `data` to `path` (created or truncated) in place: for files no reader sees until
    they are published, and for `atomic_path`'s temporary files."""
    # os.open and os.write: a buffered file object adds an ioctl, two lseeks and an fstat.
    fd = os.open(path, WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
