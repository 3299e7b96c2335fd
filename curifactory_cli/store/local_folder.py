"""The local cache folder itself: where an entry's folder goes, the folders the store
creates (never through a symbolic link), the cache directory tag that marks a folder as a
cache, and the flock of one entry.

`LocalFolder` holds what every part of `LocalStore` shares (see store.local); the reading,
writing, listing and tidying parts build on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    DRAFTS_DIR,
    ENTRY_DIR_NAME,
    FORMAT_VERSION,
    GITIGNORE,
    LOCK_DIR,
    META_NAME,
    TRASH_DIR,
    entry_dir,
    is_entry_of,
    parse_meta,
    read_meta_file,
)
from curifactory_cli.store.reads_index import READS_DIR

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
_OWN_NAMES = frozenset({".gitignore", DRAFTS_DIR, TRASH_DIR, LOCK_DIR, READS_DIR, CACHEDIR_TAG})
_HASH_DIR = re.compile(r"^[0-9a-f]{16}$")


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The entry metadata in a local folder, or None when it is missing or not an entry's."""
    try:
        return parse_meta(read_meta_file(os.path.join(directory, META_NAME)))
    except (OSError, ValueError):
        return None


def dir_files(root: str) -> list[tuple[str, str]]:
    """(absolute path, path relative to root with '/') of every file under root: a folder's
    files in name order, then its subfolders' (as os.walk gives them; links to folders are
    not followed). One scandir per folder: os.walk costs more than a draft folder's file."""
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


class LocalFolder:
    """The cache's folder and its layout. With `dry=True` nothing is ever written inside it."""

    def __init__(self, root: str | os.PathLike[str], dry: bool = False) -> None:
        self.root = Path(root)
        self.location = str(self.root)  # as the user reads it
        self.dry = dry
        self._root = str(self.root)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._prepared = False
        self._made: set[str] = set()  # folders in the cache known to be real folders
        self._listed: dict[str, set[str]] = {}  # see _listing
        self._draft_base: str | None = None  # made once

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

    # A run that finds the lock held says so in the lock file (flock cannot tell the holder
    # that someone waits): the holder then makes what it computed findable before it lets go.
    def mark_waiting(self) -> None:
        """Say, in the lock file, that a run waits for it (the holder sees it)."""
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError:
            return  # gone (tidied): the holder flushes at its end anyway
        try:
            os.write(fd, b".")
        except OSError:
            pass
        finally:
            os.close(fd)

    def waited_on(self) -> bool:
        """Whether a run said it waits for this lock (while it is held)."""
        return self._fd is not None and os.fstat(self._fd).st_size > 0

    def clear_waiting(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
