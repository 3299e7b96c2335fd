"""A cache at an fsspec URL: the bucket or folder, its filesystem (opened at the first
remote call), and the layout of paths in it. See `store.remote` for the design."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import PurePosixPath
from typing import Any

from curifactory_cli.errors import ConfigError
from curifactory_cli.store.entry import (
    entry_dir,
)

ATTEMPT = re.compile(r"^[0-9a-f]{32}$")
# Remote calls raise the storage library's own errors (botocore's, aiohttp's), not only
# OSError: every `except Exception` below turns them into one CacheError that names the store.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


BUCKETS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}  # paths are `bucket/prefix`


def _missing(url: str, protocol: str, exc: BaseException) -> ConfigError:
    extra = EXTRAS.get(protocol, "remote")
    return ConfigError(
        f"cache {url}: the {protocol}:// filesystem is not installed ({exc})",
        hint=f"pip install 'curifactory-cli[{extra}]'",
    )


# The library behind each bucket protocol (as fsspec's registry names it).
LIBRARIES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"} | dict.fromkeys(
    ("az", "abfs", "abfss"), "adlfs"
)


def _check_installed(url: str, protocol: str) -> None:
    """Fail at setup, not mid-run, when the filesystem library is missing (without
    importing it, or fsspec: a run served by the local tier imports neither)."""
    import importlib.util

    for module in ("fsspec", LIBRARIES[protocol]):
        if importlib.util.find_spec(module) is None:
            raise _missing(url, protocol, ImportError(f"no module named {module!r}"))


class NoLock:
    """Remote entries are not locked: two machines computing the same entry at once may
    duplicate work; the conditional commit keeps the entry whole either way."""

    path = "(no lock: remote entry)"

    def acquire_nowait(self) -> bool:
        return True

    def acquire_within(self, seconds: float) -> bool:
        return True

    def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None

    def mark_waiting(self) -> None:
        return None

    def waited_on(self) -> bool:
        return False

    def clear_waiting(self) -> None:
        return None


def by_entry_folder(
    listing: dict[str, dict[str, Any]], wanted: set[str]
) -> dict[str, dict[str, int]]:
    """Entry folder (a child of a `wanted` parameter-set folder) -> its files' sizes, by path
    inside it."""
    objects: dict[str, dict[str, int]] = {}
    for name, info in listing.items():
        folder, _, rest = name.rpartition("/")
        while folder and folder.rpartition("/")[0] not in wanted:
            folder, _, head = folder.rpartition("/")
            rest = f"{head}/{rest}"
        if folder and info.get("type", "file") == "file":
            objects.setdefault(folder, {})[rest] = int(info.get("size") or 0)
    return objects


def mtime_of(info: dict[str, Any]) -> float:
    for name in ("LastModified", "mtime", "created", "last_modified", "updated"):
        value = info.get(name)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
    return 0.0


class RemoteFolder:
    """Where the cache is and how paths in it are named (the store's other parts build
    on it: reading, writing, tidying)."""

    def __init__(
        self, url: str, dry: bool = False, storage_options: dict[str, Any] | None = None
    ) -> None:
        protocol, _, rest = url.partition("://")
        self._protocol = protocol
        self._options = dict(storage_options or {})
        self._fs: Any = None
        self.url = url.rstrip("/")
        self.location = self.url
        if protocol in BUCKETS:
            # The filesystem library (s3fs imports aiobotocore: half a second) is imported at
            # the first remote call: a run served by the local tier never pays for it.
            _check_installed(url, protocol)
            path = rest.rstrip("/")
        else:
            path = self.fs._strip_protocol(url)  # others: open it now to know the root
        self._root = str(path).rstrip("/")
        self.root = PurePosixPath(self._root)
        self.dry = dry
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._fetched: dict[str, str] = {}
        self.calls = 0  # remote requests made (metadata reads, listings, uploads), for tests
        # s3fs asks for an object's size before reading it (a HEAD, and a LIST when it is
        # missing): metadata is small, read it in one GET.
        self._cat_kw = {"max_concurrency": 1} if protocol in ("s3", "s3a") else {}
        # What `prefetch` read: entry folder -> (metadata or None, {path under it: size}).
        self._index: dict[str, tuple[dict[str, Any] | None, dict[str, int]]] = {}
        self._index_folders: set[str] = set()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                import fsspec

                self._fs = fsspec.filesystem(self._protocol, **self._options)
            except ImportError as exc:
                raise _missing(self.url, self._protocol, exc) from None
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"cache {self.url}: {exc}", hint="check the URL.") from None
        return self._fs

    def display(self, path: str | os.PathLike[str]) -> str:
        """A path of this store as a URL the user can read."""
        rel = str(path)[len(self._root) :].lstrip("/")
        return f"{self.url}/{rel}" if rel else self.url

    # ---------------------------------------------------------------- layout
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return f"{self._root}/{experiment}/{params_hash[:16]}/{stage}"

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return entry_dir(stage_prefix, key)

    def path_of(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root
