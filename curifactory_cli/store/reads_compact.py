"""Compacting the reads index (`curi cache gc`): an experiment's files become one, without
the lines of entries that no longer exist and without repeated lines.

Runs append to the index while this runs, so it never loses a line a run writes:

* Local: each writer appends only to its own file, under an `flock` it holds for as long as
  it may write (`reads_index.LocalIndexFiles`). Compaction takes, without waiting, the lock
  of each file; a file a writer holds is left as it is. It reads the files it holds, writes
  the compacted file (under a temporary name, renamed into place), and only then removes
  the files it read, still holding their locks: a writer that opened one of them meanwhile
  gets its lock once it is gone, sees that, and opens its file again.
* At a URL: runs write whole objects, each under a new name, never appending. Compaction
  lists the objects, writes the compacted one, then deletes exactly those it listed and
  read: an object written meanwhile is not among them.

A line is kept while its entry exists (metadata at the folder the line names); lines that
do not parse are dropped (a writer killed mid-line).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from curifactory_cli.store.entry import META_NAME
from curifactory_cli.store.reads_index import (
    MAX_FILE_BYTES,
    READS_DIR,
    SUFFIX,
    parse_lines,
    parse_uses,
    record_line,
)
from curifactory_cli.wording import plural

# (params hash, stage, key) of an entry -> whether it exists
Exists = Callable[[str, str, str], bool]


@dataclass
class Compaction:
    """What compacting one experiment's index did (or would do, in a dry run)."""

    experiment: str
    files: int  # files (objects) read
    lines: int  # well-formed lines read
    kept: int
    gone: int  # lines of entries that no longer exist
    repeated: int
    held: int = 0  # files a writer holds, left as they are
    size_before: int = 0
    size_after: int = 0

    @property
    def useful(self) -> bool:
        """Whether compacting changes anything (one file of distinct lines stays as it is)."""
        return self.files > 1 or self.gone > 0 or self.repeated > 0 or self.kept == 0

    def summary(self) -> str:
        """`2 files, 21 lines -> 20 lines  (1 of entries gone)`, as `cache gc` says it."""
        what = f"{plural(self.files, 'file')}, {plural(self.lines, 'line')}"
        why = [
            f"{self.gone} of entries gone" if self.gone else "",
            f"{self.repeated} repeated" if self.repeated else "",
        ]
        held = f"; {plural(self.held, 'file')} being written left as is" if self.held else ""
        detail = "; ".join(w for w in why if w) or "merged"
        return f"{what} -> {plural(self.kept, 'line')}  ({detail}{held})"

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "files": self.files,
            "lines": self.lines,
            "kept": self.kept,
            "gone": self.gone,
            "repeated": self.repeated,
            "held": self.held,
            "size_before": self.size_before,
            "size_after": self.size_after,
        }


def _kept_lines(contents: Iterable[bytes], exists: Exists) -> tuple[list[str], int, int, int]:
    """(lines to keep, lines read, lines of entries gone, repeated lines)."""
    seen: set[str] = set()
    kept: list[str] = []
    read = gone = repeated = 0
    for data in contents:
        items: list[tuple[dict[str, Any], tuple[str, str, str]]] = [
            (r, (r["params_hash"], r["stage"], r["key"])) for r in parse_lines(data)
        ]
        items += [(u, (u["params_hash"], u["stage"], u["use"])) for u in parse_uses(data)]
        for record, entry in items:
            read += 1
            line = record_line(record)
            if line in seen:
                repeated += 1
            elif not exists(*entry):
                gone += 1
            else:
                seen.add(line)
                kept.append(line)
    return kept, read, gone, repeated


# ---------------------------------------------------------------------------------- local
def local_exists(store: Any, experiment: str) -> Exists:
    def exists(params_hash: str, stage: str, key: str) -> bool:
        folder = store.entry_dir(store.stage_prefix(experiment, params_hash, stage), key)
        return os.path.isfile(os.path.join(folder, META_NAME))

    return exists


def _take(path: str) -> tuple[int, bytes] | None:
    """The file's lock and bytes, or None when a writer holds it (or it is gone)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)  # a FIFO planted there: no wait; a link: refused
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
            raise OSError("replaced")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_FILE_BYTES:
                break
        return fd, b"".join(chunks)
    except OSError:  # BlockingIOError: a writer holds it
        os.close(fd)
        return None


def compact_local(root: str, experiment: str, exists: Exists, dry: bool) -> Compaction | None:
    """Compact one experiment's index in a local cache (None: it has none)."""
    folder = os.path.join(root, READS_DIR, experiment)
    if os.path.islink(os.path.join(root, READS_DIR)) or os.path.islink(folder):
        return None  # a link planted in the cache: nothing outside it is touched
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
    except OSError:
        return None
    taken: list[tuple[str, int, bytes]] = []
    held = 0
    try:
        for name in names:
            path = os.path.join(folder, name)
            found = _take(path)
            if found is None:
                held += os.path.exists(path)
            else:
                taken.append((path, *found))
        kept, read, gone, repeated = _kept_lines((data for _, _, data in taken), exists)
        text = "".join(kept).encode()
        result = Compaction(
            experiment,
            len(taken),
            read,
            len(kept),
            gone,
            repeated,
            held,
            sum(len(d) for _, _, d in taken),
            len(text),
        )
        if dry or not taken or not result.useful:
            return result
        if text:
            _write_new(folder, text)
        for path, _, _ in taken:  # removed while still locked: see the module's docstring
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return result
    finally:
        for _, fd, _ in taken:
            os.close(fd)


def _write_new(folder: str, text: bytes) -> None:
    name = f"compact-{uuid.uuid4().hex}"
    temporary = os.path.join(folder, f".{name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, os.path.join(folder, name + SUFFIX))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# ---------------------------------------------------------------------------------- remote
def remote_exists(store: Any, experiment: str) -> Exists:
    """Whether an entry exists, from one listing of the experiment's entries."""
    present = {(e.params_hash[:16], e.stage, e.key) for e in store.entries(experiment)}

    def exists(params_hash: str, stage: str, key: str) -> bool:
        return (params_hash[:16], stage, key) in present

    return exists


def compact_remote(store: Any, experiment: str, exists: Exists, dry: bool) -> Compaction | None:
    """Compact one experiment's index in a cache at a URL (None: it has none)."""
    objects = store.index_objects(experiment)
    if not objects:
        return None
    kept, read, gone, repeated = _kept_lines(objects.values(), exists)
    text = "".join(kept).encode()
    before = sum(len(d) for d in objects.values())
    result = Compaction(
        experiment, len(objects), read, len(kept), gone, repeated, 0, before, len(text)
    )
    if dry or not result.useful:
        return result
    store.rewrite_index(experiment, text, sorted(objects))  # deletes those read, no other
    return result


def compact(store: Any, dry: bool, gone: frozenset[str] = frozenset()) -> list[Compaction]:
    """Compact every experiment's index of a store (a local folder or a URL); `gone`: keys
    of entries about to be removed (a dry run counts their lines as gone)."""
    out = []
    remote = hasattr(store, "index_objects")
    for experiment in store.index_experiments():
        exists = (remote_exists if remote else local_exists)(store, experiment)
        if gone:
            exists = _without(exists, gone)
        if remote:
            found = compact_remote(store, experiment, exists, dry)
        else:
            found = compact_local(str(store.root), experiment, exists, dry)
        if found is not None and found.files and found.useful:
            out.append(found)
    return out


def _without(exists: Exists, gone: frozenset[str]) -> Exists:
    return lambda params_hash, stage, key: key not in gone and exists(params_hash, stage, key)


# ---------------------------------------------------------------------------------- push, pull
def copy_index(source: Any, target: Any, experiment: str | None, target_remote: bool) -> int:
    """`cache push` and `pull`: add to `target`'s reads index the lines of `source`'s whose
    entries `target` now has and that it lacks, so that its sets share them as they did
    (an entry moved without its line would be found by its own set only). Returns the
    number of lines added."""
    added = 0
    experiments = [experiment] if experiment else source.index_experiments()
    for name in experiments:
        lines = [*source.read_index(name), *source.read_uses(name)]
        if not lines:
            continue
        have = {record_line(r) for r in [*target.read_index(name), *target.read_uses(name)]}
        exists = (remote_exists if target_remote else local_exists)(target, name)
        todo = []
        for record in lines:
            line = record_line(record)
            key = record["use"] if "use" in record else record["key"]
            if line not in have and exists(record["params_hash"], record["stage"], key):
                have.add(line)
                todo.append(record)
        target.append_index(name, todo)
        added += len(todo)
    if target_remote:
        target.flush_index()
    else:
        target.close()
    return added
