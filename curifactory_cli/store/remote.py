"""The cache at any fsspec URL: `s3://bucket/prefix`, `gs://...`, `memory://...`.

The layout is the local one (see `store.entry`), with one difference that makes concurrent
writers safe on an object store, which has no atomic rename of a folder: an entry's files
are uploaded under a fresh attempt folder, and `meta.json`, written last, names it:

    <prefix>/<experiment>/<params hash[:16]>/<stage>-<key[:16]>/
        meta.json                 # the commit record; "objects": "<attempt>"
        <attempt>/<output><ext>   # the files it lists, with their sizes and sha256

So no reader ever sees a partial entry (no `meta.json` yet), and two machines computing the
same entry at once never mix their files: the first `meta.json` wins (a conditional write,
`If-None-Match`, where the store supports it), and the loser deletes its own attempt. A
writer killed mid-upload leaves an attempt folder without a `meta.json`, which `curi cache gc`
removes. Downloads are verified against the checksums (and the signature, with
`CURI_CACHE_KEY`) before any cacher loads them.

Credentials and endpoints come from where the filesystem library looks for them (for S3: the
AWS environment variables and config files, `AWS_ENDPOINT_URL`) or from `storage_options` in
the project configuration; never from the cache itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.store.entry import (
    ENTRY_DIR_NAME,
    MAX_META_BYTES,
    META_NAME,
    Entry,
    check_meta,
    dump_meta,
    entry_dir,
    is_entry_of,
    lineage_match,
    listed_files,
    meta_problem,
    parse_meta,
    sign,
    verify_files,
)
from curifactory_cli.store.local_tidy import GRACE_S
from curifactory_cli.store.local_write import discard_staging, fault_point
from curifactory_cli.wording import duration, plural

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


def _by_entry_folder(
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


def _mtime(info: dict[str, Any]) -> float:
    for name in ("LastModified", "mtime", "created", "last_modified", "updated"):
        value = info.get(name)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
    return 0.0


class FsspecStore:
    """A cache at an fsspec URL. With `dry=True` nothing is ever written to it."""

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

    # ---------------------------------------------------------------- reading
    def _read_meta(self, directory: str) -> dict[str, Any] | None:
        return self._checked_meta(directory)[0]

    def _checked_meta(self, directory: str) -> tuple[dict[str, Any] | None, str | None]:
        """(metadata, None), (None, why it is damaged), or (None, None) when there is none."""
        self.calls += 1
        try:
            # Never more than metadata can be: a planted giant object is not read whole.
            data = self.fs.cat_file(
                f"{directory}/{META_NAME}", start=0, end=MAX_META_BYTES + 1, **self._cat_kw
            )
        except FileNotFoundError:
            return None, None
        except Exception as exc:
            raise self._error(f"cannot read {self.display(directory)}/{META_NAME}", exc) from None
        return check_meta(data)

    def read_meta(self, directory: str) -> dict[str, Any] | None:
        return self._read_meta(directory)

    def _error(self, what: str, exc: BaseException) -> CacheError:
        return CacheError(
            f"{what}: {type(exc).__name__}: {exc}",
            hint="check the store URL, your credentials and the network.",
        )

    def _objects(self, directory: str, meta: dict[str, Any]) -> str | None:
        attempt = meta.get("objects")
        return (
            f"{directory}/{attempt}"
            if isinstance(attempt, str) and ATTEMPT.match(attempt)
            else None
        )

    def _sizes(self, folder: str) -> dict[str, int]:
        """Every object under `folder`, by path relative to it, with its size."""
        self.calls += 1
        try:
            found = self.fs.find(folder, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise self._error(f"cannot list {self.display(folder)}", exc) from None
        prefix = len(folder) + 1
        return {
            name[prefix:]: int(info.get("size") or 0)
            for name, info in found.items()
            if info.get("type", "file") == "file" and name.startswith(folder + "/")
        }

    # ---------------------------------------------------------------- the run's index
    def prefetch(self, folders: Iterable[str]) -> None:
        """Answer lookups in these parameter-set folders from memory: one listing of their
        experiment folders, then every `meta.json` in them read in one batch of concurrent
        requests, instead of several requests per stage call. Entries other writers commit
        later are not seen (at worst, work is duplicated); this process's own are."""
        wanted = {f.rstrip("/") for f in folders} - self._index_folders
        if not wanted:
            return
        objects = _by_entry_folder(self._list_experiments(wanted), wanted)
        data = self._cat_metas(
            sorted(f"{d}/{META_NAME}" for d, names in objects.items() if META_NAME in names)
        )
        for directory, names in objects.items():
            raw = data.get(f"{directory}/{META_NAME}")
            meta = parse_meta(raw) if isinstance(raw, (bytes, str)) else None
            self._index[directory] = (meta, names)
        self._index_folders |= wanted

    def _list_experiments(self, wanted: set[str]) -> dict[str, dict[str, Any]]:
        """Everything under the experiment folders of the `wanted` parameter-set folders."""
        listing: dict[str, dict[str, Any]] = {}
        for top in sorted({f.rpartition("/")[0] for f in wanted}):
            self.calls += 1
            try:
                listing.update(self.fs.find(top, detail=True))
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise self._error(f"cannot list {self.display(top)}", exc) from None
        return listing

    def _cat_metas(self, metas: list[str]) -> dict[str, Any]:
        """The `meta.json` files at these paths, read in one batch (failures as exceptions)."""
        if not metas:
            return {}
        self.calls += 1
        try:
            data: dict[str, Any] = self.fs.cat(metas, on_error="return", **self._cat_kw)
        except Exception as exc:
            raise self._error(f"cannot read the entries of {self.url}", exc) from None
        return data

    def _indexed(self, directory: str) -> bool:
        return directory.rpartition("/")[0] in self._index_folders

    def _remember(self, final: str, meta: dict[str, Any], attempt: str) -> None:
        if self._indexed(final):
            names = {f"{attempt}/{info['path']}": info["size"] for _, info in listed_files(meta)}
            self._index[final] = (meta, {**names, META_NAME: 0})

    def _meta_of(self, directory: str) -> dict[str, Any] | None:
        if self._indexed(directory):
            return (self._index.get(directory) or (None, {}))[0]
        return self._read_meta(directory)

    # ---------------------------------------------------------------- lookups
    def lookup(
        self, directory: str, key: str, outputs: list[str], fresh: bool = False
    ) -> tuple[Entry | None, str | None]:
        """The committed entry at `directory` for `key`, or None and why it is unusable
        (`fresh`: ask the store, not what `prefetch` read)."""
        where = f"{self.display(directory)}/{META_NAME}"
        meta, names, why = self._lookup_meta(directory, fresh, where)
        if meta is None:
            return None, why
        problem = meta_problem(meta, key, outputs, where)
        if problem is not None:
            return None, problem
        objects = self._objects(directory, meta)
        if objects is None:
            return None, f"metadata {where} names no folder of files"
        if names is None:
            sizes = self._sizes(objects)
        else:
            attempt = str(meta["objects"]) + "/"
            sizes = {n[len(attempt) :]: v for n, v in names.items() if n.startswith(attempt)}
        problem = self._size_problem(objects, meta, sizes)
        if problem is not None:
            return None, problem
        return Entry(PurePosixPath(directory), meta, mtime=0.0), None

    def _lookup_meta(
        self, directory: str, fresh: bool, where: str
    ) -> tuple[dict[str, Any] | None, dict[str, int] | None, str | None]:
        """The entry's metadata, the names `prefetch` listed in its folder (None when it was
        read now) and, without metadata, why (None: no entry there)."""
        if fresh or not self._indexed(directory):
            meta, damage = self._checked_meta(directory)
            if meta is None:
                return None, None, (f"damaged metadata {where}: {damage}" if damage else None)
            return meta, None, None
        meta, names = self._index.get(directory) or (None, {})
        if meta is not None:
            return meta, names, None
        if META_NAME not in names:
            return None, None, None
        _, damage = self._checked_meta(directory)  # a damaged entry: say how
        return None, None, f"damaged metadata {where}: {damage or 'unreadable'}"

    def _size_problem(
        self, objects: str, meta: dict[str, Any], sizes: dict[str, Any]
    ) -> str | None:
        """Why the files the metadata lists are not all in `objects` at their size, or None."""
        for _, info in listed_files(meta):
            size = sizes.get(info["path"])
            if size is None:
                return f"{self.display(objects)}/{info['path']} is missing"
            if size != info["size"]:
                return f"{self.display(objects)}/{info['path']} has the wrong size"
        return None

    def _stage_dirs(self, stage_prefix: str) -> list[str]:
        directory, _, stage = stage_prefix.rpartition("/")
        if directory in self._index_folders:
            names = [d for d in self._index if d.rpartition("/")[0] == directory]
        else:
            self.calls += 1
            try:
                names = self.fs.ls(directory, detail=False)
            except FileNotFoundError:
                return []
            except Exception as exc:
                raise self._error(f"cannot list {self.display(directory)}", exc) from None
        names = [n.rstrip("/") for n in names]
        return [n for n in names if is_entry_of(n.rpartition("/")[2], stage)]

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        for candidate in self._stage_dirs(stage_prefix):
            key = lineage_match(candidate, self._meta_of(candidate), lineage_key)
            if key is not None:
                entry, _ = self.lookup(candidate, key, outputs)
                if entry is not None:
                    return entry
        return None

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        out = []
        for candidate in self._stage_dirs(stage_prefix):
            meta = self._meta_of(candidate)
            if meta is not None:
                out.append(Entry(PurePosixPath(candidate), meta, mtime=0.0))
        return out

    def _listing(self, experiment: str | None = None) -> dict[str, dict[str, Any]]:
        top = self.path_of(experiment or "")
        self.calls += 1
        try:
            found: dict[str, dict[str, Any]] = self.fs.find(top, detail=True)
        except FileNotFoundError:
            found = {}
        except Exception as exc:
            raise self._error(f"cannot list {self.display(top)}", exc) from None
        if not found:
            self._check_bucket()
        return found

    def _check_bucket(self) -> None:
        """An empty listing: say so if the bucket itself does not exist (a typo in the URL
        must not read as an empty cache)."""
        if self._protocol not in BUCKETS:
            return
        bucket = self._root.split("/", 1)[0]
        self.calls += 1
        try:
            there = self.fs.exists(bucket)
        except Exception as exc:
            raise self._error(f"cannot reach {self._protocol}://{bucket}", exc) from None
        if not there:
            raise CacheError(
                f"there is no bucket {self._protocol}://{bucket}",
                hint="check the URL (and that these credentials may see it).",
            )

    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        """Every committed entry: one listing, then every `meta.json` read in one batch."""
        listing = self._listing(experiment)
        metas = {
            name: info
            for name, info in listing.items()
            if name.endswith("/" + META_NAME) and self._entry_depth(name[: -len(META_NAME) - 1])
        }
        if not metas:
            return
        self.calls += 1
        try:
            data = self.fs.cat(sorted(metas), on_error="return", **self._cat_kw)
        except Exception as exc:
            raise self._error(f"cannot read the entries of {self.url}", exc) from None
        for name in sorted(data):
            raw = data[name]
            meta = parse_meta(raw) if isinstance(raw, (bytes, str)) else None
            if meta is not None:
                directory = name[: -len(META_NAME) - 1]
                yield Entry(PurePosixPath(directory), meta, mtime=_mtime(metas[name]))

    def _entry_depth(self, directory: str) -> bool:
        """Whether `directory` sits where entries do: <experiment>/<params>/<stage>-<key>."""
        rel = directory[len(self._root) :].strip("/")
        parts = rel.split("/")
        return len(parts) >= 3 and not any(p.startswith(".") for p in parts)

    def _transfers(
        self, entry: Entry, destination: str, outputs: list[str] | None = None
    ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
        """The files to download for an entry: their records, remote and local paths."""
        directory = str(entry.directory)
        objects = self._objects(directory, entry.meta)
        if objects is None:
            raise CacheError(f"entry {self.display(directory)} names no folder of files")
        files = [
            info
            for name, info in listed_files(entry.meta)
            if outputs is None or name in outputs or name == ""
        ]
        remote = [f"{objects}/{info['path']}" for info in files]
        local = [os.path.join(destination, *str(info["path"]).split("/")) for info in files]
        for path in local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return files, remote, local

    def _download(self, remote: list[str], local: list[str], what: str) -> None:
        if remote:
            self.calls += 1
            try:
                self.fs.get(remote, local)
            except Exception as exc:
                raise self._error(f"cannot download {what}", exc) from None

    def fetch(self, entry: Entry, destination: str, outputs: list[str] | None = None) -> None:
        """Download the entry's files (or some outputs' files) into a local folder, then
        verify every one against its recorded size and checksum."""
        files, remote, local = self._transfers(entry, destination, outputs)
        self._download(remote, local, self.display(entry.directory))
        verify_files(destination, files)

    def local_dir(self, entry: Entry) -> str:
        """A local folder holding the entry's verified files (downloaded once)."""
        key = str(entry.directory)
        if key not in self._fetched:
            folder = tempfile.mkdtemp(prefix="entry-", dir=self._scratch_dir())
            self.fetch(entry, folder)
            self._fetched[key] = folder
        return self._fetched[key]

    def _scratch_dir(self) -> str:
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="curi-remote-")
        return self._scratch.name

    # ---------------------------------------------------------------- writing
    def prepare(self) -> None:
        return None  # a bucket is checked by the first write: nothing to create up front

    def entry_lock(self, key: str) -> NoLock:
        return NoLock()

    def staging_path(self) -> str:
        return os.path.join(self._scratch_dir(), f"{os.getpid()}-{uuid.uuid4().hex}")

    def publish(
        self, staging: str, final: str, meta: dict[str, Any], replace: bool = False
    ) -> None:
        """Upload a staged entry, then commit it by writing its `meta.json` (the staging
        folder is removed either way)."""
        try:
            self.upload(staging, final, meta, replace)
        finally:
            discard_staging(staging)

    def upload(self, folder: str, final: str, meta: dict[str, Any], replace: bool = False) -> bool:
        """Upload the files `meta` lists from a local folder, then commit them (`commit`)."""
        attempt = self.put_files(folder, final, [info for _, info in listed_files(meta)])
        return self.commit(final, meta, attempt, replace)

    def upload_many(self, items: list[tuple[str, str, dict[str, Any], bool]]) -> None:
        """Upload several entries from local folders and commit them: one bulk `put` for
        every file, then the `meta.json` commits, concurrently where the filesystem allows.
        Items are (local folder, entry path here, metadata, replace)."""
        if not items:
            return
        local: list[str] = []
        remote: list[str] = []
        attempts = []
        for folder, final, meta, _ in items:
            attempt = uuid.uuid4().hex
            attempts.append(attempt)
            for _, info in listed_files(meta):
                local.append(os.path.join(folder, *str(info["path"]).split("/")))
                remote.append(f"{final}/{attempt}/{info['path']}")
        if remote:
            self.calls += 1
            try:
                self.fs.put(local, remote)
            except Exception as exc:
                for (_, final, _, _), attempt in zip(items, attempts):
                    self._remove_quietly(f"{final}/{attempt}")
                raise self._error(
                    f"cannot upload {plural(len(items), 'entry', 'entries')} to {self.url}", exc
                ) from None
        fault_point("remote-before-meta")
        creates = {}
        for (_, final, meta, replace), attempt in zip(items, attempts):
            if replace:
                self.commit(final, meta, attempt, replace=True)
            else:
                creates[final] = (meta, attempt)
        for final, outcome in self._create_all(creates).items():
            meta, attempt = creates[final]
            if outcome is None:
                self._remember(final, self._committed(meta, attempt), attempt)
            elif isinstance(outcome, FileExistsError):
                self.commit(final, meta, attempt)  # settles who won, as for one entry
            else:
                self._remove_quietly(f"{final}/{attempt}")
                raise self._error(f"cannot publish cache entry {self.display(final)}", outcome)

    def _committed(self, meta: dict[str, Any], attempt: str) -> dict[str, Any]:
        committed = {k: v for k, v in sign(meta).items() if k != "objects"}
        committed["objects"] = attempt
        return committed

    def _create_all(
        self, creates: dict[str, tuple[dict[str, Any], str]]
    ) -> dict[str, BaseException | None]:
        """Conditional creates of many `meta.json`s: concurrent on an async filesystem
        (s3fs), one after the other elsewhere. Each outcome is None or the exception."""
        data = {
            f"{final}/{META_NAME}": dump_meta(self._committed(meta, attempt)).encode()
            for final, (meta, attempt) in creates.items()
        }
        outcomes: dict[str, BaseException | None] = {}
        self.calls += 1
        if getattr(self.fs, "async_impl", False):
            import asyncio

            from fsspec.asyn import sync

            async def create_all() -> list[Any]:
                return await asyncio.gather(
                    *(
                        self.fs._pipe_file(path, value, mode="create")
                        for path, value in data.items()
                    ),
                    return_exceptions=True,
                )

            results = sync(self.fs.loop, create_all)
            for final, result in zip(creates, results):
                outcomes[final] = result if isinstance(result, BaseException) else None
            return outcomes
        for final, (path, value) in zip(creates, data.items()):
            try:
                self.fs.pipe_file(path, value, mode="create")
                outcomes[final] = None
            except Exception as exc:
                outcomes[final] = exc
        return outcomes

    def put_files(self, folder: str, final: str, files: list[dict[str, Any]]) -> str:
        """Upload files from a local folder into a fresh attempt folder of the entry at
        `final`, all in one batch; returns the attempt's name, for `commit`. Nothing is
        visible to readers until then. Workers call this for the stages they ran."""
        attempt = uuid.uuid4().hex
        objects = f"{final}/{attempt}"
        local = [os.path.join(folder, *str(info["path"]).split("/")) for info in files]
        remote = [f"{objects}/{info['path']}" for info in files]
        try:
            if remote:
                self.calls += 1
                self.fs.put(local, remote)
        except Exception as exc:
            self._remove_quietly(objects)
            raise self._error(f"cannot upload to {self.display(final)}", exc) from None
        fault_point("remote-before-meta")
        return attempt

    def commit(self, final: str, meta: dict[str, Any], attempt: str, replace: bool = False) -> bool:
        """Make an uploaded attempt the entry: write `meta.json` naming it. False when another
        writer committed a valid entry for the same key first: theirs is kept and ours
        removed, unless `replace` (the run recomputed it on purpose: `--overwrite`, an
        invalidated or a damaged entry)."""
        objects = f"{final}/{attempt}"
        committed = self._committed(meta, attempt)
        data = dump_meta(committed).encode()
        try:
            self.calls += 1
            if not replace:
                try:
                    self.fs.pipe_file(f"{final}/{META_NAME}", data, mode="create")
                    self._remember(final, committed, attempt)
                    return True
                except FileExistsError:
                    pass
                # Committed by someone else first: keep theirs if it is whole, else replace it.
                outputs = list(meta.get("outputs") or {})
                theirs, _ = self.lookup(final, str(meta.get("key")), outputs, fresh=True)
                if theirs is not None:
                    self._remove_quietly(objects)
                    self._remember(final, theirs.meta, str(theirs.meta["objects"]))
                    return False
            old = self._read_meta(final)
            self.calls += 1
            self.fs.pipe_file(f"{final}/{META_NAME}", data)
            old_objects = self._objects(final, old) if old else None
            if old_objects and old_objects != objects:
                self._remove_quietly(old_objects)
            self._remember(final, committed, attempt)
            return True
        except Exception as exc:
            self._remove_quietly(objects)
            where = f"{self.display(final)}/{META_NAME}"
            raise self._error(f"cannot publish cache entry {where}", exc) from None

    def entry_from(self, final: str, meta: dict[str, Any], attempt: str) -> Entry:
        """The entry `commit` made, without reading it back."""
        return Entry(PurePosixPath(final), {**meta, "objects": attempt}, mtime=0.0)

    def _remove_quietly(self, path: str) -> None:
        self.calls += 1
        with contextlib.suppress(Exception):
            self.fs.rm(path, recursive=True)

    def close(self, cancel: bool = False) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        self._fetched.clear()

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
                attempts[folder] = max(attempts.get(folder, 0.0), _mtime(info))
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
        newest = max((_mtime(info) for info in found.values()), default=0.0)
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
