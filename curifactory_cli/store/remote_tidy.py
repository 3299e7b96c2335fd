"""A cache at an fsspec URL, tidying: orphan files and attempt folders, leftovers older than
the grace period, invalidating, removing and exporting entries."""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    ENTRY_DIR_NAME,
    META_NAME,
    Entry,
    dump_meta,
    listed_files,
    parse_meta,
    sign,
)
from curifactory_cli.store.local_tidy import GRACE_S
from curifactory_cli.store.remote_folder import ATTEMPT, mtime_of
from curifactory_cli.store.remote_write import RemoteWriting
from curifactory_cli.wording import duration


class RemoteTidying(RemoteWriting):
    # ---------------------------------------------------------------- maintenance
    def orphan_files(self, entry: Entry) -> list[str]:
        """Objects in the entry's attempt folder that its metadata does not list."""
        objects = self._objects(str(entry.directory), entry.meta)
        if objects is None:
            return []
        listed = {str(info.get("path")) for _, info in listed_files(entry.meta)}
        return sorted(
            f"{entry.meta['objects']}/{rel}" for rel in self._sizes(objects) if rel not in listed
        )

    def _scan(self) -> tuple[dict[str, str | None], dict[str, float], set[str]]:
        """One listing: for every entry-like folder, the attempt its readable `meta.json`
        names (None when unreadable), its attempt folders with their newest write, and the
        folders with no `meta.json` at all."""
        attempts: dict[str, float] = {}
        folders: dict[str, bool] = {}
        for name, info in self._listing().items():
            parts = self._inside_entry(name)
            if parts is None:
                continue
            directory = "/".join([self._root, *parts[:3]])
            has_meta = len(parts) == 4 and parts[3] == META_NAME
            folders[directory] = folders.get(directory, False) or has_meta
            if len(parts) >= 5 and ATTEMPT.match(parts[3]):
                folder = f"{directory}/{parts[3]}"
                attempts[folder] = max(attempts.get(folder, 0.0), mtime_of(info))
        named = self._named_attempts(sorted(d for d, has in folders.items() if has))
        missing = {d for d, has in folders.items() if not has}
        return named, attempts, missing

    def _inside_entry(self, name: str) -> list[str] | None:
        """The parts of a listed path inside an entry-like folder (experiment, params, entry,
        then at least one more), or None for anything else (hidden names included)."""
        parts = name[len(self._root) :].strip("/").split("/")
        if len(parts) < 4 or any(p.startswith(".") for p in parts):
            return None
        return parts if ENTRY_DIR_NAME.match(parts[2]) else None

    def _named_attempts(self, with_meta: list[str]) -> dict[str, str | None]:
        """Entry folder -> the attempt its `meta.json` names (None when unreadable), all
        read in one call."""
        named: dict[str, str | None] = {}
        if not with_meta:
            return named
        self.calls += 1
        try:
            paths = [f"{d}/{META_NAME}" for d in with_meta]
            data = self.fs.cat(paths, on_error="return", **self._cat_kw)
        except Exception as exc:
            raise self._error(f"cannot read the entries of {self.url}", exc) from None
        for directory in with_meta:
            raw = data.get(f"{directory}/{META_NAME}")
            meta = parse_meta(raw) if isinstance(raw, (bytes, str)) else None
            attempt = meta.get("objects") if meta else None
            named[directory] = attempt if isinstance(attempt, str) else None
        return named

    def orphan_dirs(self) -> list[PurePosixPath]:
        """Entry-like folders without a readable `meta.json` (a writer killed mid-upload,
        damaged metadata)."""
        named, _, missing = self._scan()
        unreadable = {d for d, attempt in named.items() if attempt is None}
        return [PurePosixPath(d) for d in sorted(missing | unreadable)]

    def leftovers(self, now: float, grace: float = GRACE_S) -> list[tuple[PurePosixPath, str]]:
        """Attempt folders of committed entries that their `meta.json` does not name (a lost
        race, a replaced entry, a writer killed mid-upload), once older than the grace
        period: a writer may still be uploading a younger one."""
        named, attempts, _ = self._scan()
        out = []
        for folder, written in sorted(attempts.items()):
            directory, _, attempt = folder.rpartition("/")
            if named.get(directory) in (None, attempt) or now - written < grace:
                continue  # in use, or part of an orphaned folder (removed whole)
            reason = f"no meta.json names it, older than {duration(grace, coarse=True)}"
            out.append((PurePosixPath(folder), reason))
        return out

    def path_size(self, path: str | PurePosixPath) -> int:
        return sum(self._sizes(str(path)).values())

    def age_of(self, path: str | PurePosixPath, now: float) -> float:
        """Seconds since the newest object under `path` was written."""
        self.calls += 1
        try:
            found = self.fs.find(str(path), detail=True)
        except Exception:
            return 0.0
        newest = max((mtime_of(info) for info in found.values()), default=0.0)
        return now - newest if newest else 0.0

    def mark_invalidated(self, entry: Entry) -> bool:
        directory = str(entry.directory)
        meta = self._read_meta(directory)
        if meta is None:
            raise CacheError(f"cannot read {self.display(directory)}/{META_NAME}")
        if meta.get("invalidated"):
            return False
        meta["invalidated"] = True
        meta = sign(meta)
        self.calls += 1
        try:
            self.fs.pipe_file(f"{directory}/{META_NAME}", dump_meta(meta).encode())
        except Exception as exc:
            raise self._error(
                f"cannot rewrite {self.display(directory)}/{META_NAME}", exc
            ) from None
        entry.meta = meta
        return True

    def _checked(self, path: str | PurePosixPath) -> str:
        text = str(path).rstrip("/")
        parts = text[len(self._root) :].strip("/").split("/")
        if not text.startswith(self._root + "/") or any(p in ("", ".", "..") for p in parts):
            raise CacheError(f"refusing to delete {text}: it is not inside the cache {self.url}")
        return text

    def remove(self, entries: list[Entry]) -> int:
        """Delete entries, `meta.json` first, so a half-deleted entry is never seen as valid."""
        freed = 0
        for entry in entries:
            directory = self._checked(entry.location)
            freed += entry.size
            self.calls += 2
            try:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(f"{directory}/{META_NAME}")
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(directory, recursive=True)
            except Exception as exc:
                raise self._error(f"cannot delete {self.display(directory)}", exc) from None
        return freed

    def remove_paths(self, paths: list[Any]) -> int:
        freed = 0
        for path in paths:
            target = self._checked(path)
            freed += sum(self._sizes(target).values())
            self._remove_quietly(target)
        return freed

    def export(self, entry: Entry, destination: Path) -> None:
        """Download the entry into a local folder, in the local layout (files beside its
        `meta.json`, without the attempt folder)."""
        destination.mkdir(parents=True, exist_ok=True)
        self.fetch(entry, str(destination))
        meta = {k: v for k, v in entry.meta.items() if k != "objects"}
        (destination / META_NAME).write_text(dump_meta(meta), encoding="utf-8")
