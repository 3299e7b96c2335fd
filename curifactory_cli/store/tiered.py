"""Two tiers: a local cache in front of a shared one (`--remote URL`, or `--cache URL` with a
local tier that lasts as long as the run's result).

The engine addresses entries by their local folder. A lookup that misses locally asks the
remote. An entry found there is downloaded, verified against its checksums (and signature)
and published locally, then read like any local entry: at once with a lasting local tier
(`--remote`: the next run needs no remote call for it), or only when something loads it
(`materialize`) with a temporary one (`--cache URL`: a fully cached run downloads nothing).
Outputs of stages that ran are uploaded by whoever ran them (`Job.upload`); the driver
commits them. When the local tier has an entry, no remote call is made for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import INVALIDATED, Entry, RemoteRef
from curifactory_cli.store.local import EntryLock, LocalStore, discard_staging, make_staging
from curifactory_cli.store.remote import FsspecStore

UPLOAD_BATCH = 64  # entries per bulk upload


def _local_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "objects"}


class TieredStore:
    def __init__(
        self,
        local: LocalStore,
        remote: FsspecStore,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.root = local.root
        self.location = f"{local.location} (remote {remote.url})"
        self.dry = local.dry
        # With `--cache URL` the local tier is temporary, and the remote is the cache.
        self.scratch: tempfile.TemporaryDirectory[str] | None = None
        self.warnings: list[str] = []  # uploads that failed: the run goes on, `push` retries
        self._options = tuple(sorted((storage_options or {}).items()))
        self._remote_only: dict[str, Entry] = {}  # local folder -> remote entry not fetched
        self._ahead: set[str] = set()  # remote folders to read ahead at the first miss
        self.planning = False  # `curi plan`: decide from remote metadata, download nothing
        self._uploads: list[tuple[str, str, bool]] = []  # published here, not uploaded yet

    @staticmethod
    def display(path: str | os.PathLike[str]) -> str:
        return str(path)

    # ---------------------------------------------------------------- layout
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return self.local.stage_prefix(experiment, params_hash, stage)

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return LocalStore.entry_dir(stage_prefix, key)

    def _remote_path(self, local_path: str) -> str:
        rel = os.path.relpath(local_path, self.local.root).replace(os.sep, "/")
        return self.remote.path_of(rel)

    def remote_ref(self, directory: str) -> RemoteRef | None:
        """Where the entry at local `directory` lives (or will live) in the remote store."""
        return RemoteRef(self.remote.url, self._remote_path(directory), self._options)

    # ---------------------------------------------------------------- reading
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        entry, problem = self.local.lookup(directory, key, outputs)
        if entry is not None or problem == INVALIDATED:
            return entry, problem
        found, remote_problem = self._remote().lookup(self._remote_path(directory), key, outputs)
        if found is None:
            return None, problem or remote_problem
        return self._served(found, directory)

    def _served(self, found: Entry, directory: str) -> tuple[Entry | None, str | None]:
        if self.planning:  # `curi plan` reads metadata only
            return Entry(Path(directory), _local_meta(found.meta)), None
        if self.dry:
            # Nothing may be written to the local tier: download into a temporary folder
            # (removed with the store) and serve the entry from there.
            staging = self.local.staging_path()
            make_staging(staging)
            try:
                self.remote.fetch(found, staging)
            except CacheError as exc:
                return None, f"remote entry unusable: {exc.message}"
            return Entry(Path(staging), _local_meta(found.meta)), None
        self._remote_only[directory] = found
        if self.scratch is None:
            # A lasting local tier keeps what the run uses, downloaded and verified now: a
            # damaged object is recomputed in this run, and the next run needs no remote call.
            try:
                self.materialize(directory)
            except CacheError as exc:
                del self._remote_only[directory]
                return None, f"remote entry unusable: {exc.message}"
        return Entry(Path(directory), _local_meta(found.meta)), None

    def prefetch(self, folders: Iterable[str]) -> None:
        """What the run will look up: read ahead from the remote at the first local miss (a
        warm run, all local, makes no remote call)."""
        self._ahead = {self._remote_path(f) for f in folders}

    def _remote(self) -> FsspecStore:
        if self._ahead:
            ahead, self._ahead = self._ahead, set()
            self.remote.prefetch(ahead)
        return self.remote

    def recheck(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """Under the local lock only a run on this machine can have published it meanwhile:
        the remote was asked a moment ago."""
        return self.local.recheck(directory, key, outputs)

    def materialize(self, directory: str) -> None:
        """Make sure the entry's files are in the local tier (download and verify them if it
        was found only remotely). Raises CorruptEntryError when the download is damaged."""
        found = self._remote_only.get(directory)
        if found is None:
            return
        staging = self.local.staging_path()
        make_staging(staging)
        try:
            self.remote.fetch(found, staging)
            self.local.publish(staging, directory, _local_meta(found.meta))
        except BaseException:
            discard_staging(staging)
            raise
        del self._remote_only[directory]

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        entry = self.local.find_by_lineage(stage_prefix, lineage_key, outputs)
        if entry is not None:
            return entry
        remote = self._remote()
        found = remote.find_by_lineage(self._remote_path(stage_prefix), lineage_key, outputs)
        if found is None:
            return None
        directory = str(self.local.root / found.rel(self.remote.root))
        if self.local.lookup(directory, found.key, outputs)[1] == INVALIDATED:
            # As `lookup`: invalidated here, it is not served from the remote (nor would the
            # download replace the local entry and its mark).
            return None
        return self._served(found, directory)[0]

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        return self.local.stage_entries(stage_prefix)

    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        return self.local.entries(experiment)

    def entry_at(self, directory: str) -> Entry | None:
        self.materialize(directory)
        return self.local.entry_at(directory)

    def local_dir(self, entry: Entry) -> str:
        self.materialize(str(entry.directory))
        return self.local.local_dir(entry)

    # ---------------------------------------------------------------- writing
    def prepare(self) -> None:
        self.local.prepare()

    def entry_lock(self, key: str) -> EntryLock:
        return self.local.entry_lock(key)

    def staging_path(self) -> str:
        return self.local.staging_path()

    def publish(
        self,
        staging: str,
        final: str,
        meta: dict[str, Any],
        replace: bool = False,
        attempt: str | None = None,
        upload_error: str | None = None,
    ) -> None:
        """Commit a stage's outputs: locally when its staging folder is here (else it stays
        remote until loaded), and remotely (uploaded by the job, or now)."""
        here = os.path.isdir(staging)
        if here:
            self.local.publish(staging, final, meta)
        if self.dry:
            return
        target = self._remote_path(final)
        if attempt is None and upload_error is None and here:
            # Written by this machine: upload in batches (one bulk `put`, then concurrent
            # commits) instead of two round trips per stage call.
            self._uploads.append((final, target, replace))
            if len(self._uploads) >= UPLOAD_BATCH:
                self.flush()
            return
        try:
            if upload_error is not None:
                raise CacheError(upload_error)
            if attempt is None:
                raise CacheError(f"the files of {final} were staged where this process cannot see")
            if not self.remote.commit(target, meta, attempt, replace):
                found, _ = self.remote.lookup(target, str(meta.get("key")), list(meta["outputs"]))
                if found is not None and not here:
                    self._remote_only[final] = found  # theirs won: load theirs
                return
            if not here:
                self._remote_only[final] = self.remote.entry_from(target, meta, attempt)
        except CacheError as exc:
            if self.scratch is not None or not here:
                raise  # the remote is the cache, or the only copy: the entry would be lost
            self.warnings.append(
                f"{exc.message}; it is cached locally, `curi cache push` uploads it later"
            )

    def flush(self) -> None:
        """Upload and commit the entries this machine published since the last flush."""
        batch, self._uploads = self._uploads, []
        if not batch:
            return
        items = []
        for final, target, replace in batch:
            entry = self.local.entry_at(final)
            if entry is not None:
                items.append((final, target, entry.meta, replace))
        try:
            self.remote.upload_many(items)
        except CacheError as exc:
            if self.scratch is not None:
                raise  # the remote is the cache: these entries would be lost
            self.warnings.append(
                f"{exc.message}; {len(items)} entries are cached locally, "
                "`curi cache push` uploads them later"
            )

    def close(self, cancel: bool = False) -> None:
        """The end of a run: upload what is queued (not when the run was interrupted: a
        local tier keeps its entries for `curi cache push`, a temporary one loses only work
        to redo)."""
        try:
            if not cancel and not self.dry:
                self.flush()
        finally:
            self.local.close()
            self.remote.close()

    # ---------------------------------------------------------------- maintenance
    def mark_invalidated(self, entry: Entry) -> bool:
        return self.local.mark_invalidated(entry)

    def remove(self, entries: list[Entry]) -> int:
        return self.local.remove(entries)

    def export(self, entry: Entry, destination: Path) -> None:
        self.materialize(str(entry.directory))
        self.local.export(entry, destination)


def pull_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> None:
    """Copy one remote entry into the local store (`curi cache pull`), verified."""
    rel = entry.rel(remote.root)
    staging = local.staging_path()
    make_staging(staging)
    try:
        remote.fetch(entry, staging)
        local.publish(staging, str(local.root / rel), _local_meta(entry.meta))
    except BaseException:
        discard_staging(staging)
        raise


def push_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> bool:
    """Upload one local entry to the remote store (`curi cache push`)."""
    rel = entry.rel(local.root)
    return remote.upload(str(entry.directory), remote.path_of(rel), entry.meta)
