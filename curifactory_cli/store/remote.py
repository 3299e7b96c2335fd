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
import uuid
from typing import Any

from curifactory_cli.store.reads_index import (
    MAX_FILE_BYTES,
    READS_DIR,
    SUFFIX,
    USE_PREFIX,
    parse_lines,
    parse_uses,
    record_line,
    writer_name,
)
from curifactory_cli.store.remote_tidy import RemoteTidying


class FsspecStore(RemoteTidying):
    """A cache at an fsspec URL. With `dry=True` nothing is ever written to it. Made of its
    parts, one module each (inherited, so a lookup or a publish costs no extra call):
    `remote_folder` (the URL and its layout), `remote_read`, `remote_write`, `remote_tidy`."""

    # ---------------------------------------------------------------- the reads index
    _pending_index: dict[str, list[str]] | None = None
    _uses_read: dict[str, list[dict[str, Any]]] | None = None

    def read_index(self, experiment: str) -> list[dict[str, Any]]:
        """Every record of the experiment's reads index (see `store.reads_index`): one
        listing and one batched read. An unreachable store has none to give."""
        records: list[dict[str, Any]] = []
        uses: list[dict[str, Any]] = []
        for data in self.index_objects(experiment).values():
            records += parse_lines(data)
            if USE_PREFIX in data:
                uses += parse_uses(data)
        if self._uses_read is None:
            self._uses_read = {}
        self._uses_read[experiment] = uses
        return records

    def read_uses(self, experiment: str) -> list[dict[str, Any]]:
        """The use lines of the experiment's reads index (read with its records, if they
        were)."""
        found = (self._uses_read or {}).get(experiment)
        if found is None:
            found = [u for d in self.index_objects(experiment).values() for u in parse_uses(d)]
        return found

    def index_experiments(self) -> list[str]:
        """The experiments the reads index has a folder for."""
        try:
            self.calls += 1
            names = self.fs.ls(f"{self._root}/{READS_DIR}", detail=False)
        except Exception:  # the storage library's own errors: no index
            return []
        return sorted(str(n).rstrip("/").rsplit("/", 1)[-1] for n in names)

    def index_objects(self, experiment: str) -> dict[str, bytes]:
        """The bytes of each object of the experiment's reads index, by path (none when the
        store does not answer)."""
        folder = f"{self._root}/{READS_DIR}/{experiment}"
        try:
            self.calls += 1
            found = self.fs.find(folder, detail=True)
            paths = sorted(
                p
                for p, info in found.items()
                if p.endswith(SUFFIX) and int(info.get("size") or 0) <= MAX_FILE_BYTES
            )
            if not paths:
                return {}
            self.calls += 1
            data = self.fs.cat(paths, on_error="return", **self._cat_kw)
        except Exception:  # the storage library's own errors: no index is no sharing
            return {}
        return {path: data[path] for path in paths if isinstance(data.get(path), bytes)}

    def append_index(self, experiment: str, records: list[dict[str, Any]]) -> None:
        """Add records to the reads index: written as one object when the run ends (an
        object store appends nothing)."""
        if self.dry or not records:
            return
        if self._pending_index is None:
            self._pending_index = {}
        self._pending_index.setdefault(experiment, []).extend(record_line(r) for r in records)

    def flush_index(self) -> None:
        """Write the records added since the last flush, one new object per experiment."""
        pending, self._pending_index = self._pending_index, None
        for experiment, lines in (pending or {}).items():
            path = f"{self._root}/{READS_DIR}/{experiment}/{writer_name()}{SUFFIX}"
            with contextlib.suppress(Exception):  # unwritable: entries stay reachable by key
                self.calls += 1
                self.fs.pipe_file(path, "".join(lines).encode())

    def rewrite_index(self, experiment: str, data: bytes, replaced: list[str]) -> None:
        """`cache gc`: write the experiment's compacted index as a new object, then delete
        the objects it was made of (`replaced`, as `index_objects` named them), and no
        other: one a run wrote meanwhile stays."""
        if self.dry:
            return
        if data:
            self.calls += 1
            name = f"compact-{uuid.uuid4().hex}{SUFFIX}"
            self.fs.pipe_file(f"{self._root}/{READS_DIR}/{experiment}/{name}", data)
        if replaced:
            self.calls += 1
            self.fs.rm(replaced)

    def close(self, cancel: bool = False) -> None:
        if not cancel:
            self.flush_index()
        self._pending_index = None
        super().close(cancel)
