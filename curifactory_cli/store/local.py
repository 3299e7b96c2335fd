"""The cache in a local folder: today's layout (see `store.entry`), published by an atomic
rename, locked with `flock`, and tidied by the cache commands.

Every deletion goes through `_checked`, which refuses symlinks and anything that does not
resolve to a path strictly inside the cache folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any

from curifactory_cli.atomic import write_bytes_atomic
from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    ENTRY_DIR_NAME,
    FORMAT_VERSION,
    GITIGNORE,
    LOCK_DIR,
    META_NAME,
    STAGING_DIR,
    TRASH_DIR,
    Entry,
    check_meta,
    dump_meta,
    entry_dir,
    file_sha256,
    is_entry_of,
    lineage_match,
    listed_files,
    meta_problem,
    parse_meta,
    read_meta_file,
    read_meta_file_stat,
    sign,
)

# Test hook: `CURI_FAULT=<point>` makes the process die (as if killed) at that step of a
# publish, so the fault-injection tests can prove no crash point leaves a loadable bad entry.
FAULT_ENV = "CURI_FAULT"
FAULT_POINTS = ("after-data", "before-meta", "mid-meta", "before-rename", "after-rename")
GRACE_S = 3600.0  # leftovers younger than this may belong to a run still writing them

# The Cache Directory Tagging spec (https://bford.info/cachedir/): a file of this name whose
# first bytes are exactly this line. Backup tools skip such folders, and the cache commands
# delete only in folders that carry it (an unmarked folder may be anyone's: `--cache /`).
CACHEDIR_TAG = "CACHEDIR.TAG"
TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
TAG_TEXT = (
    f"{TAG_SIGNATURE}\n"
    "# This file is a cache directory tag created by curifactory_cli (`curi`).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
# Entries a remote tier has not received yet (one folder a line; see store.tiered).
UNPUSHED = ".unpushed"
_OWN_NAMES = frozenset({".gitignore", STAGING_DIR, TRASH_DIR, LOCK_DIR, CACHEDIR_TAG})
_HASH_DIR = re.compile(r"^[0-9a-f]{16}$")


def fault_point(point: str, fault: str | None = "") -> None:
    """Die here when CURI_FAULT names this point (`fault`: the variable, already read)."""
    if (os.environ.get(FAULT_ENV) if fault == "" else fault) == point:
        os._exit(86)


def _dir_files(root: str) -> list[tuple[str, str]]:
    """(absolute path, path relative to root with '/') of every file under root: a folder's
    files in name order, then its subfolders' (as os.walk gives them; links to folders are
    not followed). One scandir per folder: os.walk costs more than a staging folder's file."""
    out: list[tuple[str, str]] = []
    _list_files(root, "", out)
    return out


def _list_files(folder: str, rel: str, out: list[tuple[str, str]]) -> None:
    try:
        with os.scandir(folder) as found:
            items = sorted(found, key=lambda item: item.name)
    except OSError:
        return
    subfolders = []
    for item in items:
        try:
            is_dir = item.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not item.is_symlink():
                subfolders.append(item)
        else:
            out.append((item.path, rel + item.name))
    for item in subfolders:
        _list_files(item.path, f"{rel}{item.name}/", out)


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The entry metadata in a local folder, or None when it is missing or not an entry's."""
    try:
        return parse_meta(read_meta_file(os.path.join(directory, META_NAME)))
    except (OSError, ValueError):
        return None


def describe_files(
    staging: str,
    outputs: list[str],
    known: dict[str, tuple[int, int, str, bytes]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Sizes and checksums of everything in `staging`, grouped by the output they belong to
    (see `_by_output`). `known` holds the (size, mtime_ns, sha256, ...) a writer took while
    writing a file: used when the file still has that size and time, instead of reading it
    again.
    """
    known = known or {}

    def described() -> Iterator[tuple[str, int, str]]:
        for path, rel in _dir_files(staging):
            info = os.stat(path)
            seen = known.get(path)
            if seen is not None and seen[0] == info.st_size and seen[1] == info.st_mtime_ns:
                sha = seen[2]
            else:
                sha = file_sha256(path)
            yield rel, info.st_size, sha

    return _by_output(outputs, described())


def written_files(
    staging: str, outputs: list[str], known: dict[str, tuple[int, int, str, bytes]]
) -> dict[str, list[dict[str, Any]]] | None:
    """What describe_files says of a staging folder that only checksumming writers wrote into
    (`known`, as they took it): the same answer without listing the folder or reading a
    file's size back. None when a file is in a subfolder (the listing's order then differs
    from the names' order): describe_files must look."""
    prefix = staging + os.sep
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


def make_staging(path: str) -> None:
    """Create a staging folder. One left by an earlier attempt at the same job (a Dask task
    retried after its worker died) is replaced: its name is unique to the job."""
    try:
        try:
            os.mkdir(path)
        except FileExistsError:
            discard_staging(path)
            os.mkdir(path)
    except OSError as exc:
        raise CacheError(f"cannot create {path}: {exc.strerror or exc}") from None


def discard_staging(path: str | None) -> None:
    """Remove a staging folder and whatever a stage wrote into it (nothing if None)."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


class LocalStore:
    """The cache in one local folder. With `dry=True` nothing is ever written inside it."""

    planning = False  # `curi plan` (matters to a remote tier only)

    def __init__(self, root: str | os.PathLike[str], dry: bool = False) -> None:
        self.root = Path(root)
        self.location = str(self.root)  # as the user reads it
        self.dry = dry
        self._root = str(self.root)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._prepared = False
        self._made: set[str] = set()  # folders in the cache known to be real folders
        self._listed: dict[str, set[str]] = {}  # see _listing
        self._staging_base: str | None = None  # made once

    @staticmethod
    def display(path: str | os.PathLike[str]) -> str:
        return str(path)

    # ---------------------------------------------------------------- layout
    # Paths are plain strings on the hot path: a run builds thousands of them. Entries of one
    # parameter set share a folder (one directory fewer to create per stage call).
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return f"{self._root}{os.sep}{experiment}{os.sep}{params_hash[:16]}{os.sep}{stage}"

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return entry_dir(stage_prefix, key)

    def _listing(self, directory: str) -> set[str]:
        """The names in a parameter set's folder, listed once by this store (and kept up to
        date with what it publishes there). A name missing from it spares a lookup its
        system calls; it may miss an entry another process published since, which is safe:
        a stage call that misses takes the entry's lock and looks on disk again (`recheck`)."""
        names = self._listed.get(directory)
        if names is None:
            try:
                names = set(os.listdir(directory))
            except OSError:
                names = set()
            self._listed[directory] = names
        return names

    def _stage_dirs(self, stage_prefix: str) -> list[str]:
        """The entry folders of one stage of one parameter set."""
        directory, stage = os.path.split(stage_prefix)
        return [
            f"{directory}{os.sep}{n}" for n in self._listing(directory) if is_entry_of(n, stage)
        ]

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        """A valid entry of this stage whose lineage key matches, whatever its data key.

        Used only when an upstream entry is missing, so scanning the few entries of one
        stage of one parameter set is cheap.
        """
        for candidate in self._stage_dirs(stage_prefix):
            key = lineage_match(candidate, read_meta(candidate), lineage_key)
            if key is not None:
                entry, _ = self.lookup(candidate, key, outputs)
                if entry is not None:
                    return entry
        return None

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        """Every entry of this stage for the same parameters (whatever its key), newest first:
        what `curi plan` compares against to say why a stage runs."""
        out = []
        for candidate in self._stage_dirs(stage_prefix):
            meta = read_meta(candidate)
            if meta is not None:
                out.append(Entry(candidate, meta))
        return sorted(out, key=lambda e: e.created, reverse=True)

    def entry_lock(self, key: str) -> EntryLock:
        """The inter-process lock of one entry (an flock on a file under `.locks/`)."""
        directory = f"{self._root}{os.sep}{LOCK_DIR}"
        try:
            self._makedirs(directory)
        except OSError as exc:
            raise CacheError(f"cannot create {directory}: {exc.strerror or exc}") from None
        return EntryLock(f"{directory}{os.sep}{key[:32]}.lock")

    def _makedirs(self, directory: str) -> None:
        """Create `directory` and its missing parents inside the cache, refusing any that is a
        symbolic link: whoever can write to a shared cache must not redirect our writes (or
        reads) out of it. (The cache root itself may be a link: that is the user's choice.)
        Each folder is checked once per store: a mkdir that succeeds made a real folder."""
        if directory in self._made or directory == self._root:
            return
        parent = os.path.dirname(directory)
        if parent not in (self._root, directory):
            self._makedirs(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not _real_folder(directory):
                raise CacheError(
                    f"{directory} exists and is not a folder",
                    hint="remove it (the cache keeps its bookkeeping there), then run again.",
                ) from None
        except NotADirectoryError:
            raise CacheError(
                f"{parent} exists and is not a folder",
                hint="remove it (the cache keeps its bookkeeping there), then run again.",
            ) from None
        self._made.add(directory)

    def _no_links(self, directory: str) -> None:
        """Refuse a folder (existing or not) reached through a symbolic link inside the
        cache; one lstat per folder not checked yet."""
        while directory not in self._made and directory.startswith(self._root + os.sep):
            if _real_folder(directory):
                self._made.add(directory)
            directory = os.path.dirname(directory)

    def prepare(self) -> None:
        """Create the cache dir (with a `.gitignore`) and check it is writable, once.

        A folder it creates, an empty one, or one laid out as this tool's cache (made before
        caches were marked) gets a CACHEDIR.TAG; any other folder is used but never marked,
        so the cache commands will not delete in it."""
        if self._prepared or self.dry:
            return
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(
                f"cache path {self.root} is a file, not a directory",
                hint="choose a directory with --cache DIR.",
            )
        try:
            claim = not is_marked(self.root) and looks_like_cache(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
            if claim:
                _write_new(self.root / CACHEDIR_TAG, TAG_TEXT)
            ignore = self.root / ".gitignore"
            if not os.path.lexists(ignore):  # a dangling link is not followed
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                with contextlib.suppress(FileExistsError):
                    fd = os.open(ignore, flags, 0o644)
                    with os.fdopen(fd, "w") as outfile:
                        outfile.write(GITIGNORE)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise CacheError(
                f"cache directory {self.root} is not writable: {exc.strerror or exc}",
                hint="fix its permissions, free some space, or choose another with --cache DIR.",
            ) from None
        self._prepared = True

    # ---------------------------------------------------------------- reading
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """The valid entry at `directory` for `key`, or None and why it is unusable."""
        parent, _, name = directory.rpartition(os.sep)
        listed = self._listed.get(parent)
        if listed is not None and name not in listed:
            return None, None
        return self._read_entry(directory, key, outputs)

    def recheck(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """The lookup again, on disk, under the entry's lock (a concurrent run may have
        published it meanwhile). Its caller runs the stage unless an entry is found, so a
        missing one is not explained."""
        return self._read_entry(directory, key, outputs, explain=False)

    def _read_entry(
        self, directory: str, key: str, outputs: list[str], explain: bool = True
    ) -> tuple[Entry | None, str | None]:
        meta_path = f"{directory}{os.sep}{META_NAME}"  # (os.path.join: 1 us, per lookup)
        try:
            data = read_meta_file(meta_path)
        except FileNotFoundError:
            # Publishing never leaves a folder without metadata.
            if explain and os.path.isdir(directory):
                return None, f"{meta_path} is missing (deleted or damaged)"
            return None, None
        except (OSError, ValueError) as exc:
            return None, f"unreadable metadata {meta_path} ({exc})"
        if os.path.islink(directory):
            return None, f"{directory} is a symbolic link (never followed)"
        meta, damage = check_meta(data)
        if meta is None:
            return None, f"damaged metadata {meta_path}: {damage}"
        problem = meta_problem(meta, key, outputs, meta_path)
        if problem is None:
            problem = _listed_file_problem(directory, meta)
        if problem is not None:
            return None, problem
        return Entry(directory, meta), None

    def entry_at(self, directory: str) -> Entry | None:
        """The committed entry in a folder this store named, whatever its key."""
        meta = read_meta(directory)
        return None if meta is None else Entry(directory, meta)

    def local_dir(self, entry: Entry) -> str:
        """A local folder holding the entry's files: here, the entry folder itself."""
        return entry.location

    # ---------------------------------------------------------------- writing
    def staging_base(self) -> str:
        """The folder that holds staging folders (created); a temporary one when dry."""
        if self.dry:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="curi-dry-")
            return self._tmp.name
        if self._staging_base is None:
            self.prepare()
            base = f"{self._root}{os.sep}{STAGING_DIR}"
            self._makedirs(base)
            self._staging_base = base
        return self._staging_base

    def staging_path(self) -> str:
        """A fresh name for a staging folder; whoever runs the stage creates it.

        It carries this process's pid, so `cache gc` keeps it while this run is alive.
        """
        return f"{self.staging_base()}{os.sep}{_unique_name()}"

    def materialize(self, directory: str) -> None:
        """Entries here are always local (see `TieredStore.materialize`)."""

    def prefetch(self, folders: Iterable[str]) -> None:
        """Before a run: the parameter-set folders it will read must not be links out of
        the cache (one lstat per folder, not one per lookup)."""
        for folder in set(folders):
            self._no_links(folder)

    def remote_ref(self, directory: str) -> None:
        """No remote store behind this one (see `TieredStore.remote_ref`)."""

    def publish(
        self,
        staging: str,
        final: str,
        meta: dict[str, Any],
        replace: bool = False,
        attempt: str | None = None,
        upload_error: str | None = None,
    ) -> None:
        """Make a staged entry visible in one atomic rename (an entry already there for the
        same key is always replaced: this process holds the entry's lock).

        `meta.json` is the entry's commit record: it lists every file with its checksum, and
        it goes into the staging folder last, so the entry appears in one step, whole.
        """
        meta = sign(meta)
        parent, _, name = final.rpartition(os.sep)
        try:
            fault = os.environ.get(FAULT_ENV)  # once per publish: the crash tests' hook
            fault_point("before-meta", fault)
            data = dump_meta(meta).encode("utf-8")
            fd = os.open(f"{staging}{os.sep}{META_NAME}", _NEW_FILE, 0o644)
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
                os.replace(staging, final)
            except OSError:
                if not os.path.isdir(final):
                    raise
                # An old or damaged entry for the same key: move it aside atomically first.
                trash = self.root / TRASH_DIR / f"{os.getpid()}-{uuid.uuid4().hex}"
                self._makedirs(str(trash.parent))
                os.replace(final, trash)
                os.replace(staging, final)
                shutil.rmtree(trash, ignore_errors=True)
            fault_point("after-rename", fault)
            listed = self._listed.get(parent)
            if listed is not None:
                listed.add(name)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CacheError(
                f"cannot publish cache entry {final}: {exc.strerror or exc}",
                hint="check free space and permissions of the cache directory.",
            ) from None

    # ---------------------------------------------------------------- maintenance
    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        """Every committed entry (a folder with a readable meta.json), or one experiment's.

        Entries live at `<experiment>/<parameter set>/<stage>-<key>/`: only those folders are
        looked in (an entry's own folder is not listed, its metadata is just opened), links
        are never followed, and names starting with "." are not entries.
        """
        top = self.root / experiment if experiment else self.root
        if not top.is_dir() or top.is_symlink():
            return
        for exp in [experiment] if experiment else _subfolders(self._root):
            exp_dir = os.path.join(self._root, exp)
            for folder in _subfolders(exp_dir):
                yield from self._folder_entries(os.path.join(exp_dir, folder), None)

    def entry_groups(
        self, experiment: str | None = None, stage: str | None = None, params: str | None = None
    ) -> Iterator[list[Entry]]:
        """The committed entries, a parameter set at a time, in the listing's order:
        experiment, parameter-set name, stage, newest first. Memory holds one set's entries
        and a name per parameter-set folder, however large the cache.

        `params` matches a set's name or a prefix of its hash; `stage` a stage name.
        """
        if not os.path.isdir(self._root) or os.path.islink(self._root):
            return  # as entries(): a cache root that is a link is not walked
        for exp in _subfolders(self._root):
            if experiment is not None and exp != experiment:
                continue
            named = self._named_sets(os.path.join(self._root, exp), stage, params)
            for name in sorted(named):
                group = self._set_group(named[name], stage, params)
                if group:
                    yield group

    def _named_sets(
        self, exp_dir: str, stage: str | None, params: str | None
    ) -> dict[str, list[str]]:
        """Parameter-set name -> its folders in an experiment folder, as `params` selects."""
        named: dict[str, list[str]] = {}
        for folder in _subfolders(exp_dir):
            path = os.path.join(exp_dir, folder)
            name = self._set_name(path, stage)
            if name is None:
                continue
            if params is not None and params != name and not folder.startswith(params):
                continue
            named.setdefault(name, []).append(path)
        return named

    def _set_group(self, paths: list[str], stage: str | None, params: str | None) -> list[Entry]:
        """One parameter set's entries, by stage, newest first."""
        group = [e for path in paths for e in self._folder_entries(path, stage)]
        if params is not None and len(params) > 16:  # more of the hash than a folder
            group = [e for e in group if e.params_hash.startswith(params)]
        group.sort(key=lambda e: -(e.mtime or 0.0))
        group.sort(key=lambda e: (e.params_name, e.stage))
        return group

    def _set_name(self, folder: str, stage: str | None) -> str | None:
        """The parameter-set name of a folder's entries, to order folders by (None: no entry
        of `stage`). Read from the first entry's raw metadata as this tool writes it; the
        entries themselves are read and checked in full when listed."""
        for name in _subfolders(folder):
            if stage is not None and not is_entry_of(name, stage):
                continue
            try:
                data = read_meta_file(os.path.join(folder, name, META_NAME))
            except (OSError, ValueError):
                continue
            found = _RECORD_FIELD.search(data)
            if found is not None:
                try:
                    return json.loads(found.group(1)).strip() or "?"
                except ValueError:
                    pass
            meta = parse_meta(data)
            if meta is not None:
                return str(meta.get("record", "?"))
        return None

    def _folder_entries(
        self, folder: str, stage: str | None, limit: int | None = None
    ) -> Iterator[Entry]:
        """The readable entries of one parameter-set folder (of one stage)."""
        found = 0
        for name in _subfolders(folder):
            if stage is not None and not is_entry_of(name, stage):
                continue
            directory = f"{folder}{os.sep}{name}"
            try:
                data, info = read_meta_file_stat(f"{directory}{os.sep}{META_NAME}")
            except (OSError, ValueError):
                continue
            meta = parse_meta(data)
            if meta is None:
                continue
            yield Entry(directory, meta, info.st_mtime)
            found += 1
            if limit is not None and found >= limit:
                return

    def orphan_files(self, entry: Entry) -> list[str]:
        """Files inside the entry folder that its metadata does not list."""
        listed = {str(info.get("path")) for _, info in listed_files(entry.meta)} | {META_NAME}
        return [rel for _, rel in _dir_files(str(entry.directory)) if rel not in listed]

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
        """Staging and trash folders left behind by interrupted runs, and unused lock files.

        Their names start with the writing process's id. A folder whose process is gone is a
        leftover at once. One whose process is still running is kept however old it is: a
        stage may compute for hours into its staging folder (and a reused pid only delays the
        cleanup). Without a readable pid, only the grace period tells.
        """
        out = []
        for sub in (STAGING_DIR, TRASH_DIR):
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

    def close(self, cancel: bool = False) -> None:
        """The end of a run. A dry run's temporary folder stays until the store is garbage
        collected (the run's result holds it): outputs not loaded yet are read from there."""


def is_marked(root: Path) -> bool:
    """Whether `root` carries a cache directory tag (its exact signature line)."""
    signature = TAG_SIGNATURE.encode()
    try:  # os.open: a plain read of a few bytes, no link followed, no Python file object
        fd = os.open(root / CACHEDIR_TAG, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return os.read(fd, len(signature)) == signature
    except OSError:
        return False
    finally:
        os.close(fd)


def _listed_file_problem(directory: str, meta: dict[str, Any]) -> str | None:
    """Why the files an entry's metadata lists are not all there as written (missing, not a
    regular file, another size), or None: the cheap check of every lookup (checksums are
    `cache verify`'s)."""
    for _, info in listed_files(meta):
        path = f"{directory}{os.sep}{info['path']}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return f"{path} is missing"
        except OSError as exc:
            return f"{path} is unreadable ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            return f"{path} is not a regular file"
        if st.st_size != info["size"]:
            return f"{path} has the wrong size (truncated or changed)"
    return None


def _abandoned(paths: list[Path], now: float, grace: float) -> list[tuple[Path, str]]:
    """Staging or trash folders whose process is gone (or, without a pid, older than `grace`)."""
    out = []
    for path in paths:
        if path.is_symlink():
            continue  # never ours: not followed, not removed
        head = path.name.split("-", 1)[0]
        if head.isdigit():
            if not pid_running(int(head)):
                out.append((path, f"process {head} is not running"))
        elif age_of(path, now) >= grace:
            out.append((path, f"older than {human_duration(grace)}"))
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
        out.append((path, f"lock unused for {human_duration(grace)}"))
    return out


def looks_like_cache(root: Path) -> bool:
    """Whether `root` is missing, empty, or holds only this tool's cache layout:
    <experiment>/<params hash[:16]>/<stage>-<key[:16]>/meta.json, with our "format".

    Only names are listed (and one meta.json read): it runs once per unmarked folder."""
    try:
        top = [
            e
            for e in os.scandir(root)
            if e.name not in _OWN_NAMES and not e.name.startswith((".probe-", UNPUSHED))
        ]
    except FileNotFoundError:
        return True
    except OSError:
        return False
    sample = None
    for experiment in top:
        if not experiment.is_dir(follow_symlinks=False):
            return False
        folders = _params_folders(experiment.path)
        if folders is None:
            return False
        sample = sample or next(iter(folders), None)
    return not top or (sample is not None and _has_our_entry(sample))


def _params_folders(experiment: str) -> list[str] | None:
    """The parameter-set folders of an experiment folder, or None when it holds anything
    else (or cannot be listed)."""
    try:
        folders = list(os.scandir(experiment))
    except OSError:
        return None
    if not all(_HASH_DIR.match(f.name) and f.is_dir(follow_symlinks=False) for f in folders):
        return None
    return [f.path for f in folders]


def _has_our_entry(params_dir: str) -> bool:
    with contextlib.suppress(OSError):
        for entry in os.scandir(params_dir):
            if ENTRY_DIR_NAME.match(entry.name):
                meta = read_meta(entry.path)
                if meta is not None and meta.get("format") == FORMAT_VERSION:
                    return True
    return False


def _real_folder(path: str) -> bool:
    """Whether `path` is a folder; a symbolic link is refused (never followed in the cache)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if stat.S_ISLNK(mode):
        raise CacheError(
            f"refusing to use {path}: it is a symbolic link inside the cache",
            hint="symbolic links in the cache are never followed; remove it.",
        )
    return stat.S_ISDIR(mode)


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


# The top-level "record" field as dump_meta writes it (before "inputs", whose references
# also name records).
_RECORD_FIELD = re.compile(rb'"aggregate":(?:true|false),"record":("(?:[^"\\]|\\.)*")')


def _subfolders(folder: str) -> list[str]:
    """Names of the real folders (not links, not hidden) in `folder`, sorted."""
    try:
        with os.scandir(folder) as items:
            return sorted(
                item.name
                for item in items
                if not item.name.startswith(".") and item.is_dir(follow_symlinks=False)
            )
    except OSError:
        return []


def _write_new(path: Path, text: str) -> None:
    """Create `path` with `text`, unless something (even a dangling link) is there."""
    if os.path.lexists(path):
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "w") as outfile:
            outfile.write(text)


class EntryLock:
    """An flock-based lock: the kernel releases it if its holder dies, even by SIGKILL.

    `fcntl.flock` directly: a lock is taken on every stage call that runs, and a wrapper
    library cost a third of a cold run. The lock file is opened without following symlinks.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise CacheError(
                f"cannot open lock file {self.path}: {exc.strerror or exc}",
                hint="`curi cache gc` removes what is not a lock file there.",
            ) from None

    def acquire_nowait(self) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire_within(self, seconds: float) -> bool:
        """Try for up to `seconds` (the caller decides whether to go on waiting)."""
        deadline = time.monotonic() + seconds
        pause = 0.01
        while True:
            if self.acquire_nowait():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    def acquire(self) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


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


def human_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"
