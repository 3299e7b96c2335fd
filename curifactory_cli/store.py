"""The on-disk cache: entry layout, atomic publishing, and validation of what is read back.

Layout, readable by a person:

    <cache>/<experiment>/<params hash[:16]>/<stage>-<key[:16]>/
        meta.json            # the commit record of the entry, listing every file's checksum
        <output><ext>        # files written by each output's cacher (plus its sibling files)

An entry is valid only if its `meta.json` parses, names the expected key, and every file it
lists exists with the recorded size; checksums are verified before any file is loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError

META_NAME = "meta.json"
FORMAT_VERSION = 1
STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
LOCK_DIR = ".locks"
GITIGNORE = "*\n"
INVALIDATED = "invalidated"  # lookup's reason for an entry marked by `curi cache invalidate`


# Test hook: `CURI_FAULT=<point>` makes the process die (as if killed) at that step of a
# publish, so the fault-injection tests can prove no crash point leaves a loadable bad entry.
FAULT_ENV = "CURI_FAULT"
FAULT_POINTS = ("after-data", "before-meta", "mid-meta", "before-rename", "after-rename")
SIGNING_ENV = "CURI_CACHE_KEY"


def fault_point(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os._exit(86)


def _signing_key() -> bytes | None:
    secret = os.environ.get(SIGNING_ENV)
    return secret.encode() if secret else None


def entry_signature(meta: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 over the entry's key, each output's cacher type and every file's checksum
    (what loading trusts)."""
    files = {
        name: [output.get("cacher"), sorted((f["path"], f["sha256"]) for f in output["files"])]
        for name, output in meta["outputs"].items()
    }
    extra = sorted((f["path"], f["sha256"]) for f in meta.get("extra_files") or [])
    payload = json.dumps([meta["key"], files, extra], sort_keys=True, separators=(",", ":"))
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as infile:
        while chunk := infile.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _dir_files(root: str) -> list[tuple[str, str]]:
    """(absolute path, path relative to root with '/') of every file under root."""
    out = []
    prefix = len(root) + 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            out.append((path, path[prefix:].replace(os.sep, "/")))
    return out


class CorruptEntryError(CacheError):
    """A cached file does not match the checksum its metadata recorded."""


def verify_files(directory: str | Path, files: list[dict[str, Any]]) -> None:
    """Raise CorruptEntryError unless every file matches its recorded size and checksum."""
    for info in files:
        path = os.path.join(directory, info["path"])
        try:
            ok = os.stat(path).st_size == info["size"] and file_sha256(path) == info["sha256"]
        except OSError:
            ok = False
        if not ok:
            raise CorruptEntryError(
                f"cached file {path} does not match its recorded checksum",
                hint="it will be recomputed; `curi cache clear` removes the entry.",
            )


def describe_files(staging: str, outputs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Sizes and checksums of everything in `staging`, grouped by the output they belong to.

    A file belongs to the output whose name is the longest prefix of its path (so sibling
    files such as `model.pt_model` go with `model`); other files go under "".
    """
    by_output: dict[str, list[dict[str, Any]]] = {name: [] for name in outputs}
    by_output[""] = []
    ordered = sorted(outputs, key=len, reverse=True)
    for path, rel in _dir_files(staging):
        owner = next((name for name in ordered if rel.startswith(name)), "")
        by_output[owner].append(
            {"path": rel, "size": os.stat(path).st_size, "sha256": file_sha256(path)}
        )
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


@dataclass
class Entry:
    """A valid cache entry found on disk."""

    directory: Path
    meta: dict[str, Any]

    def output_files(self, output: str) -> list[dict[str, Any]]:
        return self.meta["outputs"][output]["files"]


class CacheStore:
    """One cache directory. With `dry=True` nothing is ever written inside it."""

    def __init__(self, root: str | os.PathLike[str], dry: bool = False) -> None:
        self.root = Path(root)
        self.dry = dry
        self._root = str(self.root)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._prepared = False
        self._made: set[str] = set()

    # ---------------------------------------------------------------- layout
    # Paths are plain strings on the hot path: a run builds thousands of them. Entries of one
    # parameter set share a folder (one directory fewer to create per stage call).
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return os.path.join(self._root, experiment, params_hash[:16], stage)

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return f"{stage_prefix}-{key[:16]}"

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        """A valid entry of this stage whose lineage key matches, whatever its data key.

        Used only when an upstream entry is missing, so scanning the few entries of one
        stage of one parameter set is cheap.
        """
        directory, stage = os.path.split(stage_prefix)
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        for name in names:
            if not name.startswith(stage + "-") or len(name) != len(stage) + 17:
                continue
            candidate = os.path.join(directory, name)
            try:
                with open(os.path.join(candidate, META_NAME), "rb") as infile:
                    meta = json.loads(infile.read())
                key = meta["key"] if meta.get("lineage_key") == lineage_key else None
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if key is not None:
                entry, _ = self.lookup(candidate, key, outputs)
                if entry is not None:
                    return entry
        return None

    def entry_lock(self, key: str) -> EntryLock:
        """The inter-process lock of one entry (an flock on a file under `.locks/`)."""
        directory = os.path.join(self._root, LOCK_DIR)
        try:
            self._makedirs(directory)
        except OSError as exc:
            raise CacheError(f"cannot create {directory}: {exc.strerror or exc}") from None
        return EntryLock(os.path.join(directory, key[:32] + ".lock"))

    def _makedirs(self, directory: str) -> None:
        if directory not in self._made:
            os.makedirs(directory, exist_ok=True)
            self._made.add(directory)

    def prepare(self) -> None:
        """Create the cache dir (with a `.gitignore`) and check it is writable, once."""
        if self._prepared or self.dry:
            return
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(
                f"cache path {self.root} is a file, not a directory",
                hint="choose a directory with --cache DIR.",
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text(GITIGNORE)
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
        meta_path = os.path.join(directory, META_NAME)
        try:
            with open(meta_path, "rb") as infile:
                meta = json.loads(infile.read())
        except FileNotFoundError:
            if os.path.isdir(directory):  # publishing never leaves a folder without metadata
                return None, f"{meta_path} is missing (deleted or damaged)"
            return None, None
        except (OSError, ValueError) as exc:
            return None, f"unreadable metadata {meta_path} ({exc})"
        try:
            if meta.get("format") != FORMAT_VERSION:
                return None, f"metadata {meta_path} has an unknown format"
            if meta["key"] != key:
                return None, f"metadata {meta_path} belongs to another key"
            if meta.get("invalidated"):
                return None, INVALIDATED
            secret = _signing_key()
            if secret is not None and not hmac.compare_digest(
                str(meta.get("signature", "")), entry_signature(meta, secret)
            ):
                return None, f"entry {directory} is not signed with this {SIGNING_ENV}"
            if sorted(meta["outputs"]) != sorted(outputs):
                return None, f"metadata {meta_path} lists other outputs than the stage declares"
            for output in meta["outputs"].values():
                if not isinstance(output["version"], str):
                    return None, f"metadata {meta_path} is incomplete"
                for info in output["files"]:
                    path = os.path.join(directory, info["path"])
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode):
                        return None, f"{path} is not a regular file"
                    if st.st_size != info["size"]:
                        return None, f"{path} has the wrong size (truncated or changed)"
        except FileNotFoundError as exc:
            return None, f"{exc.filename} is missing"
        except (KeyError, TypeError, AttributeError):
            return None, f"metadata {meta_path} is incomplete"
        return Entry(Path(directory), meta), None

    def verify(self, directory: str | Path, files: list[dict[str, Any]]) -> None:
        verify_files(directory, files)

    # ---------------------------------------------------------------- writing
    def staging_base(self) -> str:
        """The folder that holds staging folders (created); a temporary one when dry."""
        if self.dry:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="curi-dry-")
            return self._tmp.name
        self.prepare()
        base = os.path.join(self._root, STAGING_DIR)
        self._makedirs(base)
        return base

    def staging_path(self) -> str:
        """A fresh name for a staging folder; whoever runs the stage creates it.

        It carries this process's pid, so `cache gc` keeps it while this run is alive.
        """
        return os.path.join(self.staging_base(), f"{os.getpid()}-{uuid.uuid4().hex}")

    def publish(self, staging: str, final: str, meta: dict[str, Any]) -> None:
        """Make a staged entry visible in one atomic rename.

        `meta.json` is the entry's commit record: it lists every file with its checksum, and
        it goes into the staging folder last, so the entry appears in one step, whole.
        """
        secret = _signing_key()
        if secret is not None:
            meta = {**meta, "signature": entry_signature(meta, secret)}
        try:
            fault_point("before-meta")
            text = json.dumps(meta, separators=(",", ":"), default=str)
            with open(os.path.join(staging, META_NAME), "w", encoding="utf-8") as outfile:
                if os.environ.get(FAULT_ENV) == "mid-meta":
                    outfile.write(text[: len(text) // 2])
                    outfile.flush()
                    fault_point("mid-meta")
                outfile.write(text)
            self._makedirs(os.path.dirname(final))
            fault_point("before-rename")
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
            fault_point("after-rename")
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CacheError(
                f"cannot publish cache entry {final}: {exc.strerror or exc}",
                hint="check free space and permissions of the cache directory.",
            ) from None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


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
            raise CacheError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from None

    def acquire_nowait(self) -> bool:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

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
