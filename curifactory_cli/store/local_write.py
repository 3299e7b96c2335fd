"""Writing a local cache: draft folders, the files a stage wrote described with their
checksums, and the atomic publish of an entry (its metadata last, then one rename).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    DRAFTS_DIR,
    META_NAME,
    TRASH_DIR,
    dump_meta,
    sign,
)
from curifactory_cli.store.file_checks import file_sha256
from curifactory_cli.store.local_folder import LocalFolder, dir_files

# Test hook: `CURI_FAULT=<point>` makes the process die (as if killed) at that step of a
# publish, so the fault-injection tests can prove no crash point leaves a loadable bad entry.
FAULT_ENV = "CURI_FAULT"
FAULT_POINTS = ("after-data", "before-meta", "mid-meta", "before-rename", "after-rename")


def fault_point(point: str, fault: str | None = "") -> None:
    """Die here when CURI_FAULT names this point (`fault`: the variable, already read)."""
    if (os.environ.get(FAULT_ENV) if fault == "" else fault) == point:
        os._exit(86)


def describe_files(
    draft: str,
    outputs: list[str],
    known: dict[str, tuple[int, int, str, bytes]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Sizes and checksums of everything in `draft`, grouped by the output they belong to
    (see `_by_output`). `known` holds the (size, mtime_ns, sha256, ...) a writer took while
    writing a file: used when the file still has that size and time, instead of reading it
    again.
    """
    known = known or {}

    def described() -> Iterator[tuple[str, int, str]]:
        for path, rel in dir_files(draft):
            info = os.stat(path)
            seen = known.get(path)
            if seen is not None and seen[0] == info.st_size and seen[1] == info.st_mtime_ns:
                sha = seen[2]
            else:
                sha = file_sha256(path)
            yield rel, info.st_size, sha

    return _by_output(outputs, described())


def written_files(
    draft: str, outputs: list[str], known: dict[str, tuple[int, int, str, bytes]]
) -> dict[str, list[dict[str, Any]]] | None:
    """What describe_files says of a draft folder that only checksumming writers wrote into
    (`known`, as they took it): the same answer without listing the folder or reading a
    file's size back. None when a file is in a subfolder (the listing's order then differs
    from the names' order): describe_files must look."""
    prefix = draft + os.sep
    files = []
    for path in sorted(known):
        rel = path[len(prefix) :]
        if not path.startswith(prefix) or os.sep in rel:
            return None
        size, _, sha, _ = known[path]
        files.append((rel, size, sha))
    return _by_output(outputs, files)


def _by_output(
    outputs: list[str], files: Iterable[tuple[str, int, str]]
) -> dict[str, list[dict[str, Any]]]:
    """Files (relative path, size, sha256) grouped by the output they belong to: the one
    whose name is the longest prefix of the path (so sibling files such as `model.pt_model`
    go with `model`); other files go under ""."""
    by_output: dict[str, list[dict[str, Any]]] = {name: [] for name in outputs}
    by_output[""] = []
    ordered = sorted(outputs, key=len, reverse=True)
    for rel, size, sha in files:
        owner = next((name for name in ordered if rel.startswith(name)), "")
        by_output[owner].append({"path": rel, "size": size, "sha256": sha})
    return by_output


def make_draft(path: str) -> None:
    """Create a draft folder. One left by an earlier attempt at the same job (a Dask task
    retried after its worker died) is replaced: its name is unique to the job."""
    try:
        try:
            os.mkdir(path)
        except FileExistsError:
            discard_draft(path)
            os.mkdir(path)
    except OSError as exc:
        raise CacheError(f"cannot create {path}: {exc.strerror or exc}") from None


def discard_draft(path: str | None) -> None:
    """Remove a draft folder and whatever a stage wrote into it (nothing if None)."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _Names:
    """Unique folder names `<pid>-<random>-<n>`: the pid lets `cache gc` keep the folders of
    a live process; a counter after one random token per process spares a getrandom and a
    getpid call per stage call."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = f"{os.getpid()}-{uuid.uuid4().hex[:16]}-"
        self.count = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.count)}"


_unique_name = _Names()


class LocalWriting(LocalFolder):
    """The draft and publishing of `LocalStore`."""

    def draft_base(self) -> str:
        """The folder that holds draft folders (created); a temporary one when dry."""
        if self.dry:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="curi-dry-")
            return self._tmp.name
        if self._draft_base is None:
            self.prepare()
            base = f"{self._root}{os.sep}{DRAFTS_DIR}"
            self._makedirs(base)
            self._draft_base = base
        return self._draft_base

    def draft_path(self) -> str:
        """A fresh name for a draft folder; whoever runs the stage creates it.

        It carries this process's pid, so `cache gc` keeps it while this run is alive.
        """
        return f"{self.draft_base()}{os.sep}{_unique_name()}"

    def publish(
        self,
        draft: str,
        final: str,
        meta: dict[str, Any],
        replace: bool = False,
        attempt: str | None = None,
        upload_error: str | None = None,
    ) -> None:
        """Make a staged entry visible in one atomic rename (an entry already there for the
        same key is always replaced: this process holds the entry's lock).

        `meta.json` is the entry's commit record: it lists every file with its checksum, and
        it goes into the draft folder last, so the entry appears in one step, whole.
        """
        meta = sign(meta)
        parent, _, name = final.rpartition(os.sep)
        try:
            fault = os.environ.get(FAULT_ENV)  # once per publish: the crash tests' hook
            fault_point("before-meta", fault)
            data = dump_meta(meta).encode("utf-8")
            fd = os.open(f"{draft}{os.sep}{META_NAME}", _NEW_FILE, 0o644)
            try:
                if fault == "mid-meta":
                    os.write(fd, data[: len(data) // 2])
                    fault_point("mid-meta", fault)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._makedirs(parent)
            fault_point("before-rename", fault)
            try:
                os.replace(draft, final)
            except OSError:
                if not os.path.isdir(final):
                    raise
                # An old or damaged entry for the same key: move it aside atomically first.
                trash = self.root / TRASH_DIR / f"{os.getpid()}-{uuid.uuid4().hex}"
                self._makedirs(str(trash.parent))
                os.replace(final, trash)
                os.replace(draft, final)
                shutil.rmtree(trash, ignore_errors=True)
            fault_point("after-rename", fault)
            listed = self._listed.get(parent)
            if listed is not None:
                listed.add(name)
        except OSError as exc:
            shutil.rmtree(draft, ignore_errors=True)
            raise CacheError(
                f"cannot publish cache entry {final}: {exc.strerror or exc}",
                hint="check free space and permissions of the cache directory.",
            ) from None
