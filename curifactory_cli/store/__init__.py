"""Where cache entries live. `entry`: the layout, metadata rules, signature and verifier that
every store shares; `base`: the interface; `local`: a local folder; `remote`: any fsspec URL
(imported only when one is used); `tiered`: a local cache in front of a remote one."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli.store.entry import (
    FORMAT_VERSION,
    INVALIDATED,
    META_NAME,
    SIGNING_ENV,
    Entry,
)
from curifactory_cli.store.file_checks import (
    CorruptEntryError,
    FileCheck,
    check_file,
    file_sha256,
    verify_files,
)
from curifactory_cli.store.local import LocalStore
from curifactory_cli.store.local_folder import EntryLock
from curifactory_cli.store.local_write import (
    FAULT_POINTS,
    describe_files,
    discard_draft,
    fault_point,
    make_draft,
    written_files,
)

if TYPE_CHECKING:
    from curifactory_cli.store.base import Store


def is_url(text: str | Path) -> bool:
    """Whether a --cache or --remote value names a remote store, not a local folder."""
    text = str(text)
    return "://" in text and not text.startswith("file://")


def local_path(text: str | Path) -> Path:
    text = str(text)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def open_store(
    cache: str | Path,
    remote: str | None = None,
    dry: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Store:
    """The store a run uses: a local folder; a local folder in front of `remote`; or, when
    `cache` is a URL, that store behind a temporary local tier (removed when the store is
    garbage collected, so outputs of a finished run can still be read)."""
    if is_url(cache):
        from curifactory_cli.store.remote import FsspecStore
        from curifactory_cli.store.tiered import TieredStore

        shared = FsspecStore(str(cache), dry, storage_options)
        scratch = tempfile.TemporaryDirectory(prefix="curi-tier-")
        tier = TieredStore(LocalStore(scratch.name, dry=dry), shared, storage_options)
        tier.scratch = scratch
        return tier
    local = LocalStore(local_path(cache), dry=dry)
    if remote:
        from curifactory_cli.store.remote import FsspecStore
        from curifactory_cli.store.tiered import TieredStore

        return TieredStore(local, FsspecStore(remote, dry, storage_options), storage_options)
    return local


__all__ = [
    "FAULT_POINTS",
    "FORMAT_VERSION",
    "INVALIDATED",
    "META_NAME",
    "SIGNING_ENV",
    "CorruptEntryError",
    "Entry",
    "EntryLock",
    "FileCheck",
    "LocalStore",
    "check_file",
    "describe_files",
    "discard_draft",
    "fault_point",
    "file_sha256",
    "is_url",
    "local_path",
    "make_draft",
    "open_store",
    "verify_files",
    "written_files",
]
