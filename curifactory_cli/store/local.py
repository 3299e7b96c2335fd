"""The cache in a local folder: today's layout (see `store.entry`), published by an atomic
rename, locked with `flock`, and tidied by the cache commands.

`LocalStore` is the one class callers use. Its methods live with their role, one module each,
as parts it inherits (methods, not module functions it delegates to: a run calls `lookup`,
`entry_lock` and `publish` once per stage call, and a delegating call would cost each of them
one more Python call): `local_folder` the layout, the folders it creates and the entry locks,
`local_read` the lookups, `local_write` draft and publishing, `local_list` the listings of
the cache commands, `local_tidy` what `cache gc` removes, invalidating and exporting.
"""

from __future__ import annotations

import os
from typing import Any

from curifactory_cli.store.local_list import LocalListing
from curifactory_cli.store.local_read import LocalReading
from curifactory_cli.store.local_tidy import LocalTidying
from curifactory_cli.store.local_write import LocalWriting
from curifactory_cli.store.reads_index import READS_DIR, LocalIndexFiles


def _index_folders(folder: str) -> list[str]:
    if os.path.islink(folder):
        return []
    try:
        with os.scandir(folder) as items:
            return sorted(i.name for i in items if i.is_dir(follow_symlinks=False))
    except OSError:
        return []


class LocalStore(LocalReading, LocalWriting, LocalListing, LocalTidying):
    """The cache in one local folder. With `dry=True` nothing is ever written inside it."""

    planning = False  # `curi plan` (matters to a remote tier only)

    def materialize(self, directory: str) -> None:
        """Entries here are always local (see `TieredStore.materialize`)."""

    def remote_ref(self, directory: str) -> None:
        """No remote store behind this one (see `TieredStore.remote_ref`)."""

    # ---------------------------------------------------------------- the reads index
    _reads: LocalIndexFiles | None = None

    def _reads_index(self) -> LocalIndexFiles:
        if self._reads is None:
            self._reads = LocalIndexFiles(self._root, self.dry)
        return self._reads

    def read_index(self, experiment: str) -> list[dict[str, Any]]:
        """Every record of the experiment's reads index (see `store.reads_index`)."""
        return self._reads_index().read(experiment)

    def append_index(self, experiment: str, records: list[dict[str, Any]]) -> None:
        """Add records to the reads index, at once (nothing when dry)."""
        self._reads_index().append(experiment, records)

    def read_uses(self, experiment: str) -> list[dict[str, Any]]:
        """The use lines of the experiment's reads index: which sets used another's entry."""
        return self._reads_index().read_uses(experiment)

    def index_experiments(self) -> list[str]:
        """The experiments the reads index has a folder for."""
        return _index_folders(os.path.join(self._root, READS_DIR))

    def close(self, cancel: bool = False) -> None:
        """The end of a run. A dry run's temporary folder stays until the store is garbage
        collected (the run's result holds it): outputs not loaded yet are read from there."""
        if self._reads is not None:
            self._reads.close()
