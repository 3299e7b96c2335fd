"""The on-disk cache: entry layout, atomic publishing, and validation of what is read back.

Layout, readable by a person:

    <cache>/<experiment>/<params hash[:16]>/<stage>/<key[:16]>/
        meta.json            # written last: the commit record of the entry
        <output><ext>        # files written by each output's cacher (plus its sibling files)

An entry is valid only if its `meta.json` parses, names the expected key, and every file it
lists exists with the recorded size; checksums are verified before any file is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
GITIGNORE = "*\n"


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as infile:
        while chunk := infile.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _dir_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(Path(dirpath, name))
    return out


class CorruptEntryError(CacheError):
    """A cached file does not match the checksum its metadata recorded."""


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
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._prepared = False

    # ---------------------------------------------------------------- layout
    def entry_dir(self, experiment: str, params_hash: str, stage: str, key: str) -> Path:
        return self.root / experiment / params_hash[:16] / stage / key[:16]

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
        self, directory: Path, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """The valid entry at `directory` for `key`, or None and why it is unusable."""
        meta_path = directory / META_NAME
        try:
            with open(meta_path, encoding="utf-8") as infile:
                meta = json.load(infile)
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as exc:
            return None, f"unreadable metadata {meta_path} ({exc})"
        try:
            if meta.get("format") != FORMAT_VERSION:
                return None, f"metadata {meta_path} has an unknown format"
            if meta["key"] != key:
                return None, f"metadata {meta_path} belongs to another key"
            if sorted(meta["outputs"]) != sorted(outputs):
                return None, f"metadata {meta_path} lists other outputs than the stage declares"
            for output in meta["outputs"].values():
                if not isinstance(output["version"], str):
                    return None, f"metadata {meta_path} is incomplete"
                for info in output["files"]:
                    path = directory / info["path"]
                    if os.path.islink(path):
                        return None, f"{path} is a symlink"
                    if os.stat(path).st_size != info["size"]:
                        return None, f"{path} has the wrong size (truncated or changed)"
        except FileNotFoundError as exc:
            return None, f"{exc.filename} is missing"
        except (KeyError, TypeError, AttributeError):
            return None, f"metadata {meta_path} is incomplete"
        return Entry(directory, meta), None

    def verify(self, directory: Path, files: list[dict[str, Any]]) -> None:
        """Raise CorruptEntryError unless every file matches its recorded size and checksum."""
        for info in files:
            path = directory / info["path"]
            try:
                ok = os.stat(path).st_size == info["size"] and file_sha256(path) == info["sha256"]
            except OSError:
                ok = False
            if not ok:
                raise CorruptEntryError(
                    f"cached file {path} does not match its recorded checksum",
                    hint="it will be recomputed; `curi cache clear` removes the entry.",
                )

    # ---------------------------------------------------------------- writing
    def new_staging(self) -> Path:
        """A fresh private folder for cachers to write into before publishing."""
        if self.dry:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="curi-dry-")
            base = Path(self._tmp.name)
        else:
            self.prepare()
            base = self.root / STAGING_DIR
        path = base / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise CacheError(f"cannot create {path}: {exc.strerror or exc}") from None
        return path

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def describe_files(self, staging: Path, outputs: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Sizes and checksums of everything in `staging`, grouped by the output they belong to.

        A file belongs to the output whose name is the longest prefix of its path (so sibling
        files such as `model.pt_model` go with `model`); other files go under "".
        """
        by_output: dict[str, list[dict[str, Any]]] = {name: [] for name in outputs}
        by_output[""] = []
        ordered = sorted(outputs, key=len, reverse=True)
        for path in _dir_files(staging):
            rel = path.relative_to(staging).as_posix()
            owner = next((name for name in ordered if rel.startswith(name)), "")
            by_output[owner].append(
                {"path": rel, "size": path.stat().st_size, "sha256": file_sha256(path)}
            )
        return by_output

    def publish(self, staging: Path, final: Path, meta: dict[str, Any]) -> None:
        """Move a staged entry into place, then write its metadata last (the commit)."""
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                # An old or damaged entry for the same key: move it aside atomically first.
                trash = self.root / TRASH_DIR / f"{os.getpid()}-{uuid.uuid4().hex}"
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(staging, final)
            write_json_atomic(final / META_NAME, meta)
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a unique temp file in the same folder, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as outfile:
            outfile.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, default=str))
