"""A cache at an fsspec URL, writing: an entry's files uploaded under a fresh attempt folder,
then committed by writing its `meta.json` (first writer wins)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import PurePosixPath
from typing import Any

from curifactory_cli.store.entry import (
    META_NAME,
    Entry,
    dump_meta,
    listed_files,
    sign,
)
from curifactory_cli.store.local_write import discard_draft, fault_point
from curifactory_cli.store.remote_folder import NoLock
from curifactory_cli.store.remote_read import RemoteReading
from curifactory_cli.wording import plural


class RemoteWriting(RemoteReading):
    # ---------------------------------------------------------------- writing
    def prepare(self) -> None:
        return None  # a bucket is checked by the first write: nothing to create up front

    def entry_lock(self, key: str) -> NoLock:
        return NoLock()

    def draft_path(self) -> str:
        return os.path.join(self._scratch_dir(), f"{os.getpid()}-{uuid.uuid4().hex}")

    def publish(self, draft: str, final: str, meta: dict[str, Any], replace: bool = False) -> None:
        """Upload a staged entry, then commit it by writing its `meta.json` (the draft
        folder is removed either way)."""
        try:
            self.upload(draft, final, meta, replace)
        finally:
            discard_draft(draft)

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
