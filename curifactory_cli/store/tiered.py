"""Two tiers: a local cache in front of a shared one (`--remote URL`, or `--cache URL` with a
local tier that lasts one run).

The engine only ever sees local entries. A lookup that misses locally asks the remote; an
entry found there is downloaded, verified against its checksums (and signature), and published
locally, then served like any local entry. A local publish is uploaded. When the local tier
has an entry, no remote call is made for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import INVALIDATED, Entry
from curifactory_cli.store.local import EntryLock, LocalStore, discard_staging, make_staging
from curifactory_cli.store.remote import FsspecStore


class TieredStore:
    def __init__(self, local: LocalStore, remote: FsspecStore, pull: bool = True) -> None:
        self.local = local
        self.remote = remote
        self.root = local.root
        self.location = f"{local.location} (remote {remote.url})"
        self.dry = local.dry
        self.pull = pull  # False: serve remote entries where they are (planning only)
        # With `--cache URL` the local tier is temporary, and the remote is the cache.
        self.scratch: tempfile.TemporaryDirectory[str] | None = None
        self.warnings: list[str] = []  # uploads that failed: the run goes on, `push` retries
        self.pulled = 0
        self.pushed = 0

    def display(self, path: str) -> str:
        return path

    # ---------------------------------------------------------------- layout
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return self.local.stage_prefix(experiment, params_hash, stage)

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return LocalStore.entry_dir(stage_prefix, key)

    def _remote_path(self, local_path: str) -> str:
        rel = os.path.relpath(local_path, self.local.root).replace(os.sep, "/")
        return self.remote.path_of(rel)

    # ---------------------------------------------------------------- reading
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        entry, problem = self.local.lookup(directory, key, outputs)
        if entry is not None or problem == INVALIDATED:
            return entry, problem
        found, remote_problem = self.remote.lookup(self._remote_path(directory), key, outputs)
        if found is None:
            return None, problem or remote_problem
        return self._pull(found, directory, key, outputs)

    def _pull(
        self, found: Entry, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """Download a remote entry into the local tier; then it is a local entry."""
        if not self.pull:
            return found, None
        staging = self.local.staging_path()
        make_staging(staging)
        try:
            self.remote.fetch(found, staging)
        except CacheError as exc:
            discard_staging(staging)
            return None, f"remote entry unusable: {exc.message}"
        meta = {k: v for k, v in found.meta.items() if k != "objects"}
        self.local.publish(staging, directory, meta)
        self.pulled += 1
        return self.local.lookup(directory, key, outputs)

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        entry = self.local.find_by_lineage(stage_prefix, lineage_key, outputs)
        if entry is not None:
            return entry
        found = self.remote.find_by_lineage(self._remote_path(stage_prefix), lineage_key, outputs)
        if found is None:
            return None
        rel = found.rel(self.remote.root)
        local, _ = self._pull(found, str(self.local.root / rel), found.key, outputs)
        return local

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        return self.local.stage_entries(stage_prefix)

    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        return self.local.entries(experiment)

    def entry_at(self, directory: str) -> Entry | None:
        return self.local.entry_at(directory)

    def local_dir(self, entry: Entry) -> str:
        return self.local.local_dir(entry)

    # ---------------------------------------------------------------- writing
    def prepare(self) -> None:
        self.local.prepare()

    def entry_lock(self, key: str) -> EntryLock:
        return self.local.entry_lock(key)

    def staging_path(self) -> str:
        return self.local.staging_path()

    def publish(
        self, staging: str, final: str, meta: dict[str, Any], replace: bool = False
    ) -> None:
        self.local.publish(staging, final, meta)
        if self.dry:
            return
        entry = self.local.entry_at(final)
        if entry is None:
            return
        try:
            self.remote.upload(final, self._remote_path(final), entry.meta, replace)
            self.pushed += 1
        except CacheError as exc:
            if self.scratch is not None:
                raise  # the remote is the cache: an entry it lacks is lost after the run
            self.warnings.append(
                f"{exc.message}; it is cached locally, `curi cache push` uploads it later"
            )

    def close(self) -> None:
        self.local.close()
        self.remote.close()

    # ---------------------------------------------------------------- maintenance
    def mark_invalidated(self, entry: Entry) -> bool:
        return self.local.mark_invalidated(entry)

    def remove(self, entries: list[Entry]) -> int:
        return self.local.remove(entries)

    def export(self, entry: Entry, destination: Path) -> None:
        self.local.export(entry, destination)


def pull_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> None:
    """Copy one remote entry into the local store (`curi cache pull`)."""
    rel = entry.rel(remote.root)
    staging = local.staging_path()
    make_staging(staging)
    try:
        remote.fetch(entry, staging)
    except BaseException:
        discard_staging(staging)
        raise
    meta = {k: v for k, v in entry.meta.items() if k != "objects"}
    local.publish(staging, str(local.root / rel), meta)


def push_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> bool:
    """Upload one local entry to the remote store (`curi cache push`)."""
    rel = entry.rel(local.root)
    return remote.upload(str(entry.directory), remote.path_of(rel), entry.meta)
