"""Tidying a local cache: what `cache gc` finds (orphans, leftovers of interrupted runs,
unused locks), deleting entries and paths, invalidating and exporting an entry.

Every deletion goes through `_checked`, which refuses symlinks and anything that does not
resolve to a path strictly inside the cache folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path, PurePath

from curifactory_cli.atomic import write_bytes_atomic
from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    DRAFTS_DIR,
    ENTRY_DIR_NAME,
    LOCK_DIR,
    META_NAME,
    TRASH_DIR,
    Entry,
    dump_meta,
    listed_files,
    sign,
)
from curifactory_cli.store.local_folder import EntryLock, LocalFolder, dir_files, read_meta
from curifactory_cli.wording import duration

GRACE_S = 3600.0  # leftovers younger than this may belong to a run still writing them


class LocalTidying(LocalFolder):
    """The upkeep of `LocalStore`."""

    def orphan_files(self, entry: Entry) -> list[str]:
        """Files inside the entry folder that its metadata does not list."""
        listed = {str(info.get("path")) for _, info in listed_files(entry.meta)} | {META_NAME}
        return [rel for _, rel in dir_files(str(entry.directory)) if rel not in listed]

    def orphan_dirs(self) -> list[Path]:
        """Folders named like an entry (`<stage>-<16 hex>`) with no readable meta.json."""
        out: list[Path] = []
        if not self.root.is_dir():
            return out
        for dirpath, dirnames, _ in os.walk(self.root):
            keep = []
            for name in sorted(d for d in dirnames if not d.startswith(".")):
                path = Path(dirpath, name)
                if path.is_symlink():
                    continue
                if (path / META_NAME).exists() and read_meta(path) is not None:
                    continue  # an entry: its subfolders belong to its outputs
                if ENTRY_DIR_NAME.match(name) and Path(dirpath) != self.root:
                    out.append(path)
                else:
                    keep.append(name)
            dirnames[:] = keep
        return out

    def leftovers(self, now: float, grace: float = GRACE_S) -> list[tuple[Path, str]]:
        """Draft and trash folders left behind by interrupted runs, and unused lock files.

        Their names start with the writing process's id. A folder whose process is gone is a
        leftover at once. One whose process is still running is kept however old it is: a
        stage may compute for hours into its draft folder (and a reused pid only delays the
        cleanup). Without a readable pid, only the grace period tells.
        """
        out = []
        for sub in (DRAFTS_DIR, TRASH_DIR):
            base = self.root / sub
            if base.is_dir() and not base.is_symlink():
                out += _abandoned(sorted(base.iterdir()), now, grace)
        base = self.root / LOCK_DIR
        if base.is_dir() and not base.is_symlink():
            out += _unused_locks(sorted(base.glob("*.lock")), now, grace)
        return out

    @staticmethod
    def path_size(path: Path) -> int:
        return path_size(path)

    @staticmethod
    def age_of(path: Path, now: float) -> float:
        return age_of(path, now)

    def mark_invalidated(self, entry: Entry) -> bool:
        """Add `"invalidated": true` to the entry's metadata, atomically; False if already so.

        The rewritten file keeps its modification time, which `ls`, `gc` and `du` read as the
        entry's age: invalidating does not make an entry look new.
        """
        directory = Path(entry.location)  # a local store's entries are local folders
        meta_path = directory / META_NAME
        if meta_path.is_symlink():
            raise CacheError(f"refusing to rewrite {meta_path}: it is a symbolic link")
        meta = read_meta(directory)
        if meta is None:
            raise CacheError(f"cannot read {meta_path}", hint="`curi cache verify` checks entries.")
        if meta.get("invalidated"):
            return False
        meta["invalidated"] = True
        meta = sign(meta)  # the mark is signed too: without the key, the entry is refused anyway
        like = meta_path.stat()  # its mode and times are kept: its age stays what it was
        try:
            write_bytes_atomic(meta_path, dump_meta(meta).encode("utf-8"), durable=True, like=like)
        except OSError as exc:
            raise CacheError(f"cannot rewrite {meta_path}: {exc.strerror or exc}") from None
        entry.meta = meta
        return True

    def _checked(self, target: Path) -> Path:
        """`target` if it may be deleted: strictly inside the cache folder, not a symlink."""
        real_root = self.root.resolve()
        resolved = target.resolve()
        if target.is_symlink() or not resolved.is_relative_to(real_root) or resolved == real_root:
            msg = f"refusing to delete {target}: it is not inside the cache directory {real_root}"
            raise CacheError(msg, hint="symbolic links in the cache are never followed or removed.")
        return resolved

    def remove(self, entries: list[Entry]) -> int:
        """Delete entries (metadata first, so a half-deleted entry is never seen as valid)."""
        self._made.clear()  # emptied parent folders are removed too
        freed = 0
        for entry in entries:
            target = Path(entry.location)
            self._checked(target)
            freed += entry.size
            (target / META_NAME).unlink(missing_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            self._prune_empty_parents(target.parent)
        return freed

    def remove_paths(self, paths: Sequence[PurePath]) -> int:
        """Delete leftover folders or stray files inside the cache; returns the bytes freed."""
        self._made.clear()
        freed = 0
        for pure in paths:
            path = Path(pure)  # a local store's paths are local
            if path.is_symlink() and path.parent.name == LOCK_DIR:
                # A link planted among the lock files: unlink it, never touch its target.
                if path.parent.resolve() == (self.root / LOCK_DIR).resolve():
                    path.unlink()
                continue
            self._checked(path)
            if not path.exists():
                continue
            freed += path_size(path)
            if path.is_dir():
                (path / META_NAME).unlink(missing_ok=True)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            self._prune_empty_parents(path.parent)
        return freed

    def _prune_empty_parents(self, directory: Path) -> None:
        root = self.root.resolve()
        while directory.resolve() != root and directory.resolve().is_relative_to(root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def export(self, entry: Entry, destination: Path) -> None:
        """Copy an entry's listed files (and metadata) into a local folder, hard-linked when
        possible: entries are immutable (replaced by rename, never edited). Only regular files
        the metadata lists are copied; nothing is followed out of the entry."""
        destination.mkdir(parents=True, exist_ok=True)
        rels = [str(info.get("path")) for _, info in listed_files(entry.meta)] + [META_NAME]
        for rel in rels:
            source = os.path.join(entry.directory, rel)
            try:
                if not stat.S_ISREG(os.lstat(source).st_mode):
                    continue
            except OSError:
                continue
            target = destination / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target, follow_symlinks=False)


def _abandoned(paths: list[Path], now: float, grace: float) -> list[tuple[Path, str]]:
    """Draft or trash folders whose process is gone (or, without a pid, older than `grace`)."""
    out = []
    for path in paths:
        if path.is_symlink():
            continue  # never ours: not followed, not removed
        head = path.name.split("-", 1)[0]
        if head.isdigit():
            if not pid_running(int(head)):
                out.append((path, f"process {head} is not running"))
        elif age_of(path, now) >= grace:
            out.append((path, f"older than {duration(grace, coarse=True)}"))
    return out


def _unused_locks(paths: list[Path], now: float, grace: float) -> list[tuple[Path, str]]:
    """Lock files not used for `grace` and not held now (flock keeps them), and anything
    planted where lock files go."""
    out = []
    for path in paths:
        if path.is_symlink() or not path.is_file():
            # Planted: no run can lock through it. The link itself is removed, never what it
            # points to.
            out.append((path, "not a lock file (a folder or a link)"))
            continue
        if age_of(path, now) < grace:
            continue
        lock = EntryLock(str(path))
        if not lock.acquire_nowait():
            continue  # a run is computing this entry right now
        lock.release()
        out.append((path, f"lock unused for {duration(grace, coarse=True)}"))
    return out


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file below a folder (symlinks are not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OSError, OverflowError, ValueError):
        return False
    return True


def age_of(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0
