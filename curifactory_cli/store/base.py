"""The one interface to a cache, whatever holds it. The engine, the planner and every cache
command go through it; `tests/store/test_store_contract.py` runs one suite against each store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from curifactory_cli.store.entry import Entry
from curifactory_cli.store.ref import RemoteRef


class Lock(Protocol):
    """An entry's lock between runs: held while one run computes the entry."""

    path: str  # what it is, as a message names it

    def acquire_nowait(self) -> bool: ...
    def acquire_within(self, seconds: float) -> bool: ...
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def mark_waiting(self) -> None: ...  # a run waits for it: the holder is told
    def waited_on(self) -> bool: ...  # (asked by the holder)
    def clear_waiting(self) -> None: ...


class Store(Protocol):
    """A cache, whatever holds it (a local folder, an fsspec URL, a local tier in front of
    a remote one). The contract every store keeps (tests/store/test_store_contract.py):

    * An entry is published whole or not at all: readers never see a half-written entry,
      and a publish that fails leaves the previous entry (or none) in place.
    * `lookup` serves an entry only if its metadata is well-formed, signed (when a key is
      set), for this key and these outputs, not invalidated, and every listed file is there
      with its size; otherwise it returns None and the reason. Checksums are verified when
      a file is loaded (`local_dir`, `export`, a job's `InputEntry`).
    * Entries are immutable: replacing one is a new publish, never an edit in place.
    * `entry_lock(key)` serializes runs computing the same entry (a store without locks
      returns one that always succeeds: duplicate work, never a torn entry).
    * A `dry` store writes nothing; `planning` answers from metadata, downloading nothing.
    """

    root: Path
    dry: bool  # nothing is ever written
    planning: bool  # `curi plan`: decide from metadata, download nothing

    # Layout: plain strings, built thousands of times in a run.
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str: ...
    def entry_dir(self, stage_prefix: str, key: str) -> str: ...

    # Reading. `lookup` checks the metadata (format, key, signature, outputs, invalidation)
    # and that every listed file is there with its size; checksums are verified when loaded.
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]: ...
    def recheck(  # a lookup again once the entry's lock is held
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]: ...
    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None: ...
    def stage_entries(self, stage_prefix: str) -> list[Entry]: ...
    def prefetch(self, folders: Iterable[str]) -> None: ...  # what a run will look up
    def entries(self, experiment: str | None = None) -> Iterator[Entry]: ...
    def local_dir(self, entry: Entry) -> str: ...
    # A remote tier: download an entry served from there before anything loads it here; and
    # where an entry lives remotely, for workers that do not see the local tier.
    def materialize(self, directory: str) -> None: ...
    def remote_ref(self, directory: str) -> RemoteRef | None: ...

    # Writing: stages write into a local draft folder; publishing commits it whole.
    def prepare(self) -> None: ...
    def entry_lock(self, key: str) -> Lock: ...
    def draft_path(self) -> str: ...
    # `replace`: recomputed on purpose, a shared store must take it; `attempt`: the job
    # uploaded the files already (or `upload_error` says why it could not).
    def publish(
        self,
        draft: str,
        final: str,
        meta: dict[str, Any],
        replace: bool = False,
        attempt: str | None = None,
        upload_error: str | None = None,
    ) -> None: ...
    def close(self, cancel: bool = False) -> None: ...  # cancel: the run was interrupted

    # The reads index (store.reads_index): where other sets' calls find entries to share.
    def read_index(self, experiment: str) -> list[dict[str, Any]]: ...
    def append_index(self, experiment: str, records: list[dict[str, Any]]) -> None: ...
    def read_uses(self, experiment: str) -> list[dict[str, Any]]: ...  # who used whose entry

    # Tidying.
    def mark_invalidated(self, entry: Entry) -> bool: ...
    def remove(self, entries: list[Entry]) -> int: ...
    def export(self, entry: Entry, destination: Path) -> None: ...
