"""Where a cacher's files go: binding it to an output of the entry being written, and
writing files, checksummed as they are written into the runner's staging folder (so the
runner need not read them back) and atomically anywhere else.

The functions taking a `cacher` are the bodies of `curifactory_cli.caching.Cacheable` methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from curifactory_cli.cacher_support.options import check_part
from curifactory_cli.errors import GraphError
from curifactory_cli.store.atomic import WRITE_FLAGS, atomic_path, write_bytes_atomic


def write_text(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


class HashingFile:
    """A write-only file that keeps the sha256 and size of what went through it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self.hash = hashlib.sha256()
        self.first = b""  # the first byte: tells a pickle (0x80) from other files

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if not self.size and view:
            self.first = bytes(view[:1])
        self.hash.update(view)
        written = len(view)
        self.size += written
        while view:
            view = view[os.write(self.fd, view) :]
        return written


def bind(cacher: Any, directory: str, output_name: str) -> None:
    """Point the cacher at output `output_name` of the entry being written (or read) in
    `directory`."""
    owner = type(cacher).__name__
    if cacher.path_override is not None:
        # The engine checksums every file of an entry and publishes it in one rename;
        # a file elsewhere would be neither, and writing it before the stage's entry is
        # published would leave it behind when the stage fails.
        raise GraphError(
            f"output {output_name!r}: {owner}(path_override={cacher.path_override!r}) "
            "cannot be used in a stage's cachers: stage outputs are written into the "
            "stage's cache entry",
            hint="drop path_override: the file is then kept in the entry (inside the "
            "stage, record.stage_cachers[i].get_path() is its path); for a copy at a "
            "chosen path after the run, use `curi cache dump ENTRY OUTPUT --out FILE`.",
        )
    parts = [output_name]
    if cacher.subdir is not None or cacher.prefix is not None:
        # Keep the output's name first: the files of an output are those whose path in
        # the entry starts with it (that is how they are verified and fetched).
        subdir = cacher.subdir.split("/") if cacher.subdir else []
        for part in subdir:
            check_part(owner, "subdir", str(cacher.subdir), part)
        if cacher.prefix is not None:
            check_part(owner, "prefix", cacher.prefix, cacher.prefix)
        filename = output_name if cacher.prefix is None else f"{cacher.prefix}_{output_name}"
        parts = [output_name, *subdir, filename]
    cacher.name = output_name
    cacher._bound_dir = directory
    # Always `<output><extension>`, even for an output named "data.csv": a sibling path
    # (`get_path("_model")`) must still start with the output's name.
    cacher._path = f"{directory}{os.sep}{os.sep.join(parts)}{cacher.extension}"


@contextlib.contextmanager
def tracked_file(cacher: Any, path: str) -> Iterator[Any]:
    """A binary file to write `path` through. In the runner's staging folder it is written
    in place (the folder is private, and published whole by one rename) and its checksum
    is taken while it is written; anywhere else, atomically through a temporary file."""
    bound = cacher._bound_dir
    if bound is None or not path.startswith(bound + os.sep):
        with atomic_path(path) as tmp, open(tmp, "wb") as outfile:
            yield outfile
        return
    folder = os.path.dirname(path)
    if folder != bound:
        os.makedirs(folder, exist_ok=True)
    fd = os.open(path, WRITE_FLAGS, 0o666)
    try:
        hashing = HashingFile(fd)
        yield hashing
        info = os.fstat(fd)
    finally:
        os.close(fd)
    cacher._written[path] = (
        hashing.size,
        info.st_mtime_ns,
        hashing.hash.hexdigest(),
        hashing.first,
    )


def tracked_bytes(cacher: Any, path: str, data: bytes) -> None:
    """`_write_file` for content already in memory, in one call (for a small artifact,
    the context manager and the hashing wrapper cost more than the write)."""
    bound = cacher._bound_dir
    if bound is None or path.rpartition(os.sep)[0] != bound:
        with cacher._write_file(path) as outfile:
            outfile.write(data)
        return
    fd = os.open(path, WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        info = os.fstat(fd)
    finally:
        os.close(fd)
    sha = hashlib.sha256(data).hexdigest()
    cacher._written[path] = (len(data), info.st_mtime_ns, sha, data[:1])


def published(cacher: Any, path: str) -> str:
    """`path` as it will be once the runner has published the staging folder it is in."""
    staged, final = cacher._bound_dir, cacher._entry_dir
    if staged and final and (path == staged or path.startswith(staged + os.sep)):
        return final + path[len(staged) :]
    return path
