"""`RemoteRef`: where an entry lives in a remote store, as plain data that a job carries to a
worker. Apart from `entry` so that the entry layout does not import the remote store that
opening a reference needs (store.remote imports the entry layout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RemoteRef:
    """Where an entry lives in a remote store, as plain data a worker on another machine can
    use: it opens the store itself (credentials from its own environment)."""

    url: str
    path: str  # the entry folder, in the store's own namespace
    storage_options: tuple[tuple[str, Any], ...] = ()

    def open(self) -> Any:
        from curifactory_cli.store.remote import FsspecStore

        return FsspecStore(self.url, storage_options=dict(self.storage_options))
