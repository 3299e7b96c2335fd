"""A cache at an fsspec URL, reading: metadata, the run's index of what it will look up
(listed in a few requests, not one per lookup), lookups, listings and verified downloads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    MAX_META_BYTES,
    META_NAME,
    Entry,
    check_meta,
    is_entry_of,
    lineage_match,
    listed_files,
    meta_problem,
    parse_meta,
)
from curifactory_cli.store.file_checks import verify_files
from curifactory_cli.store.remote_folder import (
    ATTEMPT,
    BUCKETS,
    RemoteFolder,
    by_entry_folder,
    mtime_of,
)


class RemoteReading(RemoteFolder):
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
        objects = by_entry_folder(self._list_experiments(wanted), wanted)
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
                yield Entry(PurePosixPath(directory), meta, mtime=mtime_of(metas[name]))

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
