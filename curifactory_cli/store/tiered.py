"""Two tiers: a local cache in front of a shared one (`--remote URL`, or `--cache URL` with a
local tier that lasts as long as the run's result).

The engine addresses entries by their local folder. A lookup that misses locally asks the
remote. An entry found there is downloaded, verified against its checksums (and signature)
and published locally, then read like any local entry: at once with a lasting local tier
(`--remote`: the next run needs no remote call for it), or only when something loads it
(`materialize`) with a temporary one (`--cache URL`: a fully cached run downloads nothing).
Outputs of stages that ran are uploaded by whoever ran them (`Job.upload`); the driver
commits them. When the local tier has an entry, no remote call is made for it.

A remote tier is optional: the first time a run needs it, one short request (`reach.probe`)
tells whether it answers. When it does not, or stops answering mid-run, the run goes on
from the local tier alone with one warning: what it computes stays local, listed in the
local cache's `.unpushed`, and the next run that reaches the remote uploads it (as `curi
cache push` does). A remote that is the cache (`--cache URL`) fails the run instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import (
    INVALIDATED,
    Entry,
    listed_files,
)
from curifactory_cli.store.file_checks import CorruptEntryError
from curifactory_cli.store.local import LocalStore
from curifactory_cli.store.local_folder import UNPUSHED, EntryLock
from curifactory_cli.store.local_write import discard_draft, make_draft
from curifactory_cli.store.reach import probe
from curifactory_cli.store.reads_index import parse_lines, parse_uses, record_line
from curifactory_cli.store.ref import RemoteRef
from curifactory_cli.store.remote import FsspecStore
from curifactory_cli.wording import plural

UPLOAD_BATCH = 64  # entries per bulk upload
UNPUSHED_INDEX = UNPUSHED + "-reads"  # index lines an offline run kept for the remote


def _local_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "objects"}


def _size(meta: dict[str, Any]) -> int:
    return sum(int(info.get("size") or 0) for _, info in listed_files(meta))


class TieredStore:
    def __init__(
        self,
        local: LocalStore,
        remote: FsspecStore,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.root = local.root
        self.location = f"{local.location} (remote {remote.url})"
        self.dry = local.dry
        # With `--cache URL` the local tier is temporary, and the remote is the cache.
        self.scratch: tempfile.TemporaryDirectory[str] | None = None
        self._index_records: dict[str, list[dict[str, Any]]] = {}  # for the remote's index
        self.warnings: list[str] = []  # uploads that failed: the run goes on, `push` retries
        # Where a warning goes at once (the run's events); else kept in `warnings`.
        self.notify: Callable[[str], None] | None = None
        self.offline: str | None = None  # why the remote is left out of the rest of the run
        self._probed = False
        # What this run moved: [entries, bytes] downloaded from and uploaded to the remote.
        self.pulled = [0, 0]
        self.pushed = [0, 0]
        self._options = tuple(sorted((storage_options or {}).items()))
        self._remote_only: dict[str, Entry] = {}  # local folder -> remote entry not fetched
        self._ahead: set[str] = set()  # remote folders to read ahead at the first miss
        self.planning = False  # `curi plan`: decide from remote metadata, download nothing
        self._uploads: list[tuple[str, str, bool]] = []  # published here, not uploaded yet
        self._kept: list[str] = []  # published here, not to be uploaded by this run

    @staticmethod
    def display(path: str | os.PathLike[str]) -> str:
        return str(path)

    # ---------------------------------------------------------------- layout
    def stage_prefix(self, experiment: str, params_hash: str, stage: str) -> str:
        return self.local.stage_prefix(experiment, params_hash, stage)

    @staticmethod
    def entry_dir(stage_prefix: str, key: str) -> str:
        return LocalStore.entry_dir(stage_prefix, key)

    def _remote_path(self, local_path: str) -> str:
        rel = os.path.relpath(local_path, self.local.root).replace(os.sep, "/")
        return self.remote.path_of(rel)

    def remote_ref(self, directory: str) -> RemoteRef | None:
        """Where the entry at local `directory` lives (or will live) in the remote store."""
        return RemoteRef(self.remote.url, self._remote_path(directory), self._options)

    # ---------------------------------------------------------------- reading
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        entry, problem = self.local.lookup(directory, key, outputs)
        if entry is not None or problem == INVALIDATED or not self._reachable():
            return entry, problem
        try:
            found, remote_problem = self._remote().lookup(
                self._remote_path(directory), key, outputs
            )
        except CacheError as exc:
            self._lost(exc)
            return None, problem
        if found is None:
            return None, problem or remote_problem
        return self._served(found, directory)

    def _served(self, found: Entry, directory: str) -> tuple[Entry | None, str | None]:
        if self.planning:  # `curi plan` reads metadata only
            return Entry(Path(directory), _local_meta(found.meta)), None
        if self.dry:
            # Nothing may be written to the local tier: download into a temporary folder
            # (removed with the store) and serve the entry from there.
            draft = self.local.draft_path()
            make_draft(draft)
            try:
                self.remote.fetch(found, draft)
            except CorruptEntryError as exc:
                return None, f"remote entry unusable: {exc.message}"
            except CacheError as exc:
                self._lost(exc)
                return None, f"remote entry unusable: {exc.message}"
            self._count(self.pulled, found.meta)
            return Entry(Path(draft), _local_meta(found.meta)), None
        self._remote_only[directory] = found
        if self.scratch is None:
            # A lasting local tier keeps what the run uses, downloaded and verified now: a
            # damaged object is recomputed in this run, and the next run needs no remote call.
            try:
                self.materialize(directory)
            except CacheError as exc:
                del self._remote_only[directory]
                if not isinstance(exc, CorruptEntryError):
                    self._lost(exc)
                return None, f"remote entry unusable: {exc.message}"
        return Entry(Path(directory), _local_meta(found.meta)), None

    @staticmethod
    def _count(tally: list[int], meta: dict[str, Any]) -> None:
        tally[0] += 1
        tally[1] += _size(meta)

    def _warn(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)
        else:
            self.warnings.append(message)

    def _reachable(self) -> bool:
        """Whether to ask the remote: the first time, one short request finds out (a run
        served by the local tier never asks)."""
        if self.offline is not None:
            return False
        if not self._probed:
            self._probed = True
            try:
                probe(self.remote)
            except CacheError as exc:
                self._lost(exc, started=False)
                return False
        return True

    def _lost(self, exc: CacheError, started: bool = True) -> None:
        """The remote did not answer: leave it out of the rest of the run (one warning), or
        fail the run when it is the cache itself."""
        if self.scratch is not None:
            raise exc
        self.offline = exc.message
        self._ahead = set()
        queued, self._uploads = self._uploads, []
        self._kept += [final for final, _, _ in queued]
        what = "stopped answering" if started else "cannot be reached"
        rest = "the rest of this run uses" if started else "this run uses"
        kept = f" ({len(queued)} entries not uploaded yet)" if queued else ""
        reason = exc.message.removeprefix(f"cannot reach {self.remote.url}: ")
        self._warn(
            f"remote {self.remote.url} {what} ({reason}): "
            f"{rest} the local cache only; what it computes stays there{kept} until a run "
            "reaches the remote again or `curi cache push` uploads it. To leave the remote "
            "out: --no-remote, or CURI_REMOTE= (empty)"
        )

    @property
    def transfers(self) -> dict[str, Any]:
        """What the run moved between the tiers, for its summary and `--json`."""
        return {
            "url": self.remote.url,
            "reached": self.offline is None,
            "offline": self.offline,
            "pulled": {"entries": self.pulled[0], "bytes": self.pulled[1]},
            "pushed": {"entries": self.pushed[0], "bytes": self.pushed[1]},
        }

    def prefetch(self, folders: Iterable[str]) -> None:
        """What the run will look up: read ahead from the remote at the first local miss (a
        warm run, all local, makes no remote call)."""
        self._ahead = {self._remote_path(f) for f in folders}

    def _remote(self) -> FsspecStore:
        if self._ahead:
            ahead, self._ahead = self._ahead, set()
            self.remote.prefetch(ahead)
        return self.remote

    def recheck(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """Under the local lock only a run on this machine can have published it meanwhile:
        the remote was asked a moment ago."""
        return self.local.recheck(directory, key, outputs)

    def materialize(self, directory: str) -> None:
        """Make sure the entry's files are in the local tier (download and verify them if it
        was found only remotely). Raises CorruptEntryError when the download is damaged."""
        found = self._remote_only.get(directory)
        if found is None:
            return
        draft = self.local.draft_path()
        make_draft(draft)
        try:
            self.remote.fetch(found, draft)
            self.local.publish(draft, directory, _local_meta(found.meta))
        except BaseException:
            discard_draft(draft)
            raise
        del self._remote_only[directory]
        self._count(self.pulled, found.meta)

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        entry = self.local.find_by_lineage(stage_prefix, lineage_key, outputs)
        if entry is not None or not self._reachable():
            return entry
        try:
            found = self._remote().find_by_lineage(
                self._remote_path(stage_prefix), lineage_key, outputs
            )
        except CacheError as exc:
            self._lost(exc)
            return None
        if found is None:
            return None
        directory = str(self.local.root / found.rel(self.remote.root))
        if self.local.lookup(directory, found.key, outputs)[1] == INVALIDATED:
            # As `lookup`: invalidated here, it is not served from the remote (nor would the
            # download replace the local entry and its mark).
            return None
        return self._served(found, directory)[0]

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        return self.local.stage_entries(stage_prefix)

    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        return self.local.entries(experiment)

    def entry_at(self, directory: str) -> Entry | None:
        self.materialize(directory)
        return self.local.entry_at(directory)

    def local_dir(self, entry: Entry) -> str:
        self.materialize(str(entry.directory))
        return self.local.local_dir(entry)

    # ---------------------------------------------------------------- writing
    def prepare(self) -> None:
        self.local.prepare()

    def entry_lock(self, key: str) -> EntryLock:
        return self.local.entry_lock(key)

    def draft_path(self) -> str:
        return self.local.draft_path()

    def publish(
        self,
        draft: str,
        final: str,
        meta: dict[str, Any],
        replace: bool = False,
        attempt: str | None = None,
        upload_error: str | None = None,
    ) -> None:
        """Commit a stage's outputs: locally when its draft folder is here (else it stays
        remote until loaded), and remotely (uploaded by the job, or now)."""
        here = os.path.isdir(draft)
        if here:
            self.local.publish(draft, final, meta)
        if self.dry:
            return
        if here and self.offline is not None:
            self._kept.append(final)  # uploaded by a later run, or `curi cache push`
            return
        target = self._remote_path(final)
        if attempt is None and upload_error is None and here:
            # Written by this machine: upload in batches (one bulk `put`, then concurrent
            # commits) instead of two round trips per stage call.
            self._queue_upload(final, target, replace)
            return
        try:
            self._commit_attempt(final, target, meta, attempt, replace, here, upload_error)
        except CacheError as exc:
            if self.scratch is not None or not here:
                raise  # the remote is the cache, or the only copy: the entry would be lost
            self._warn(f"{exc.message}; it is cached locally, `curi cache push` uploads it later")

    def _queue_upload(self, final: str, target: str, replace: bool) -> None:
        self._uploads.append((final, target, replace))
        if len(self._uploads) >= UPLOAD_BATCH:
            self.flush()

    def _commit_attempt(
        self,
        final: str,
        target: str,
        meta: dict[str, Any],
        attempt: str | None,
        replace: bool,
        here: bool,
        upload_error: str | None,
    ) -> None:
        """Commit the attempt folder a job uploaded; when another run committed first, theirs
        is the entry (and is what a remote-only output loads)."""
        if upload_error is not None:
            raise CacheError(upload_error)
        if attempt is None:
            raise CacheError(f"the files of {final} were staged where this process cannot see")
        if not self.remote.commit(target, meta, attempt, replace):
            found, _ = self.remote.lookup(target, str(meta.get("key")), list(meta["outputs"]))
            if found is not None and not here:
                self._remote_only[final] = found  # theirs won: load theirs
            return
        self._count(self.pushed, meta)
        if not here:
            self._remote_only[final] = self.remote.entry_from(target, meta, attempt)

    def flush(self) -> None:
        """Upload and commit the entries this machine published since the last flush."""
        batch, self._uploads = self._uploads, []
        if not batch or not self._reachable():
            return
        items = []
        for final, target, replace in batch:
            entry = self.local.entry_at(final)
            if entry is not None:
                items.append((final, target, entry.meta, replace))
        try:
            self.remote.upload_many(items)
        except CacheError as exc:
            if self.scratch is not None:
                raise  # the remote is the cache: these entries would be lost
            self.offline = exc.message  # later batches would wait as long and fail alike
            self._kept += [final for final, _, _, _ in items]
            self._warn(
                f"{exc.message}; {plural(len(items), 'entry is', 'entries are')} cached locally, "
                "the next run that "
                "reaches the remote (or `curi cache push`) uploads them"
            )
            return
        for _, _, meta, _ in items:
            self._count(self.pushed, meta)

    # ---------------------------------------------------------------- the reads index
    def read_index(self, experiment: str) -> list[dict[str, Any]]:
        """The records of both tiers (the remote's when it answers)."""
        records = self.local.read_index(experiment) if self.scratch is None else []
        return records + (self.remote.read_index(experiment) if self._reachable() else [])

    def read_uses(self, experiment: str) -> list[dict[str, Any]]:
        """The use lines of both tiers (read with their records, if they were)."""
        uses = self.local.read_uses(experiment) if self.scratch is None else []
        return uses + (self.remote.read_uses(experiment) if self._reachable() else [])

    def append_index(self, experiment: str, records: list[dict[str, Any]]) -> None:
        """Records go to the local tier at once, and to the remote when the run ends."""
        if self.scratch is None:
            self.local.append_index(experiment, records)
        if not self.dry:
            self._index_records.setdefault(experiment, []).extend(records)

    def close(self, cancel: bool = False) -> None:
        """The end of a run: upload what is queued (not when the run was interrupted: a
        local tier keeps its entries for `curi cache push`, a temporary one loses only work
        to redo)."""
        try:
            if cancel:
                self._kept += [final for final, _, _ in self._uploads]
                self._uploads = []
            elif not self.dry:
                self.flush()
                self._push_unpushed()
                self._take_unpushed_index()
                if self._index_records and self.offline is None and self._reachable():
                    for experiment, records in self._index_records.items():
                        self.remote.append_index(experiment, records)
                    self.remote.flush_index()
                    self._index_records = {}
                self._note_unpushed_index()
        finally:
            try:
                self._note_unpushed()
            finally:
                self.local.close()
                self.remote.close()

    # ------------------------------------------------- entries the remote has not received
    def _note_unpushed(self) -> None:
        """List what this run kept from the remote, for the next run (or `push`) to upload."""
        kept, self._kept = self._kept, []
        if not kept or self.scratch is not None:
            return
        lines = "".join(f"{os.path.relpath(final, self.local.root)}\n" for final in kept)
        # Unwritable: `curi cache push` finds them anyway (it compares listings).
        with (
            contextlib.suppress(OSError),
            open(self.local.root / UNPUSHED, "a", encoding="utf-8") as journal,
        ):
            journal.write(lines)

    def _push_unpushed(self) -> None:
        """Upload what earlier runs kept from the remote (listed in `.unpushed`), once the
        remote answers: a run with nothing listed makes no remote call for it."""
        listed = self.local.root / UNPUSHED
        if self.scratch is not None or not listed.exists() or not self._reachable():
            return
        claimed = listed.with_name(f"{UNPUSHED}-{uuid.uuid4().hex}")
        try:
            os.replace(listed, claimed)  # another run may be adding to (or taking) the list
            names = dict.fromkeys(claimed.read_text(encoding="utf-8").split("\n"))
        except OSError:
            return
        entries = self._listed_entries(names)
        try:
            items = self._missing_remotely(entries)
            self.remote.upload_many(items)
        except CacheError as exc:
            self._kept += [str(e.directory) for e in entries]
            self.offline = exc.message
            self._warn(
                f"{exc.message}; {len(entries)} entries of earlier runs are still to upload: "
                "the next run that reaches the remote (or `curi cache push`) uploads them"
            )
        else:
            for _, _, meta, _ in items:
                self._count(self.pushed, meta)
        finally:
            claimed.unlink(missing_ok=True)

    def _note_unpushed_index(self) -> None:
        """The reads index lines the remote did not get (it was offline), for the next run
        that reaches it: without them, other machines' sets would not share these entries."""
        records, self._index_records = self._index_records, {}
        if not records or self.scratch is not None:
            return
        lines = "".join(
            f"{experiment}\t{record_line(r)}" for experiment, rs in records.items() for r in rs
        )
        with (
            contextlib.suppress(OSError),  # `curi cache push` copies the index anyway
            open(self.local.root / UNPUSHED_INDEX, "a", encoding="utf-8") as journal,
        ):
            journal.write(lines)

    def _take_unpushed_index(self) -> None:
        """Add the lines earlier offline runs kept (`_note_unpushed_index`) to what this run
        gives the remote's index, once the remote answers."""
        listed = self.local.root / UNPUSHED_INDEX
        if self.scratch is not None or not listed.exists() or not self._reachable():
            return
        claimed = listed.with_name(f"{UNPUSHED_INDEX}-{uuid.uuid4().hex}")
        try:
            os.replace(listed, claimed)
            data = claimed.read_bytes()
        except OSError:
            return
        finally:
            claimed.unlink(missing_ok=True)
        for raw in data.split(b"\n"):
            experiment, _, line = raw.partition(b"\t")
            name = experiment.decode(errors="replace")
            found = parse_lines(line) + parse_uses(line)
            if found and "/" not in name and not name.startswith("."):
                self._index_records.setdefault(name, []).extend(found)

    def _listed_entries(self, names: Iterable[str]) -> list[Entry]:
        """The valid local entries named (relative to the cache root) in `.unpushed`."""
        entries = []
        for rel in names:
            entry = self.local.entry_at(str(self.local.root / rel)) if rel else None
            if entry is not None and not entry.invalidated:
                entries.append(entry)
        return entries

    def _missing_remotely(
        self, entries: list[Entry]
    ) -> list[tuple[str, str, dict[str, Any], bool]]:
        """Uploads for the entries the remote lacks: what someone else uploaded meanwhile is
        not sent again."""
        self.remote.prefetch({self._remote_path(str(e.directory.parent)) for e in entries})
        items = []
        for entry in entries:
            target = self._remote_path(str(entry.directory))
            there, _ = self.remote.lookup(target, entry.key, list(entry.outputs))
            if there is None:
                items.append((str(entry.directory), target, entry.meta, False))
        return items

    # ---------------------------------------------------------------- maintenance
    def mark_invalidated(self, entry: Entry) -> bool:
        return self.local.mark_invalidated(entry)

    def remove(self, entries: list[Entry]) -> int:
        return self.local.remove(entries)

    def export(self, entry: Entry, destination: Path) -> None:
        self.materialize(str(entry.directory))
        self.local.export(entry, destination)


def pull_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> None:
    """Copy one remote entry into the local store (`curi cache pull`), verified."""
    rel = entry.rel(remote.root)
    draft = local.draft_path()
    make_draft(draft)
    try:
        remote.fetch(entry, draft)
        local.publish(draft, str(local.root / rel), _local_meta(entry.meta))
    except BaseException:
        discard_draft(draft)
        raise


def push_entry(local: LocalStore, remote: FsspecStore, entry: Entry) -> bool:
    """Upload one local entry to the remote store (`curi cache push`)."""
    rel = entry.rel(local.root)
    return remote.upload(str(entry.directory), remote.path_of(rel), entry.meta)
