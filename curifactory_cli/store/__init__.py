"""Where cache entries live. `entry`: the layout, metadata rules, signature and verifier that
every store shares; `local`: the cache in a local folder."""

from curifactory_cli.store.entry import (
    FORMAT_VERSION,
    INVALIDATED,
    META_NAME,
    SIGNING_ENV,
    CorruptEntryError,
    Entry,
    FileCheck,
    check_file,
    file_sha256,
    verify_files,
)
from curifactory_cli.store.local import (
    FAULT_POINTS,
    EntryLock,
    LocalStore,
    describe_files,
    discard_staging,
    fault_point,
    make_staging,
)

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
    "discard_staging",
    "fault_point",
    "file_sha256",
    "make_staging",
    "verify_files",
]
