"""Settling a stage call with an entry: an executed call's staged files published with their
metadata, or a cached call's outputs pointed at its entry. Either way the entry's reportables
come back on the record, and each output becomes a value that loads only when it is read.

The scheduler decides; this module writes what was decided into the store and onto the graph.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.execute import bound_cacher
from curifactory_cli.engine.exports import claim, export_targets, exports_of, keep_exports
from curifactory_cli.engine.jobs import Job, JobResult, RecordInfo
from curifactory_cli.engine.keys import params_json
from curifactory_cli.engine.sharing import probe_of_call, shareable
from curifactory_cli.errors import CurifactoryError
from curifactory_cli.graph import Node, OutputRef, entry_namespace
from curifactory_cli.metrics import METRICS_FILE, load_metrics
from curifactory_cli.record import _CachedOutput
from curifactory_cli.reporting import INDEX, load_reportables
from curifactory_cli.store import CorruptEntryError, discard_draft
from curifactory_cli.store.file_checks import bytes_match

if TYPE_CHECKING:
    from curifactory_cli.engine.exports import Export
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.engine.sharing import Sharing
    from curifactory_cli.parameters.reads import Reads
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Store


class Committer:
    """Publishes executed calls and points cached ones at their entries, for one run."""

    def __init__(
        self,
        store: Store,
        keys: KeyMaker,
        experiment: str,
        provenance: dict[str, Any],
        lineage: Callable[[Node], str],
        warn: Callable[[str], None],
        sharing: Sharing | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.experiment = experiment
        self.provenance = provenance
        self._lineage = lineage
        self._warn = warn
        self.sharing = sharing  # where an executed call's entry is indexed for other sets
        self.info: dict[int, dict[str, Any]] = {}  # node -> its entry's outputs metadata
        self._records: dict[int, tuple[Any, tuple[RecordInfo, Any]]] = {}  # see _views
        self._claims: dict[str, tuple[str, str]] = {}  # path_override copies (exports.claim)

    # ------------------------------------------------------------------ a cached call
    def use_entry(self, node: Node, entry: Entry) -> None:
        """Point a cached call's outputs at its entry (nothing is loaded yet)."""
        own = node.entry_dir  # where its own entry is (None: found by lineage)
        node.entry_dir = entry.location
        node.versions = entry.meta.get("versions")
        if node.key is None and entry.meta.get("key"):  # found by lineage: its key is the one
            node.key, node.key_parts = entry.meta["key"], entry.meta.get("key_parts")
        outputs = entry.meta["outputs"]
        self.info[node.index] = outputs = slim_outputs(outputs)
        self.reportables(node, entry.meta)
        node.metrics = self.metrics(node, entry.meta)
        # A hit on its own entry (most calls): one string comparison.
        if own != node.entry_dir and self.sharing is not None and shareable(node):
            self._note_use(node, entry.meta)
        node.key_parts = node.probe_source = None  # only a call that runs records them
        self.keys.forget(node)
        templates = node.cacher_templates
        assert templates is not None  # a cache hit is a stage with cachers
        if not self.store.dry and any(
            getattr(t, "path_override", None) is not None for t in templates
        ):
            # its copies at their path_override, checked against the entry (engine.exports)
            targets = export_targets(node, self.keys.fingerprinter.root)
            exports = exports_of(node, targets, outputs)
            claim(self._claims, exports, node.label)
            keep_exports(self.store, str(node.entry_dir), exports, self._warn)
        for i, ref in enumerate(node.outputs):
            info = outputs[ref.name]
            ref.version = info["version"]
            make = OutputCacher(
                self.store,
                templates[i],
                node.entry_dir,
                ref.name,
                node.stage.name,
                info,
                node.record,
            )
            ref.value = ref.lazy._copy_for(make()) if ref.lazy else _CachedOutput(make, keep=True)

    def _note_use(self, node: Node, meta: dict[str, Any]) -> None:
        """A call served from another set's entry: the store's index records that this set
        uses it (see `store.reads_index`), for the cache commands."""
        own = node.record.get_hash()
        if meta.get("params_hash") != own and self.sharing is not None:
            self.sharing.use(
                str(meta.get("experiment")),
                node.stage.name,
                str(meta.get("params_hash")),
                str(meta.get("key")),
                own,
                node.record_name,
            )

    # ------------------------------------------------------------------ an executed call
    def publish(self, node: Node, job: Job, result: JobResult, replace: bool) -> None:
        """Publish an executed stage's staged files (`replace`: over an entry recomputed on
        purpose), then point its outputs at them."""
        node.versions = result.versions
        node.metrics = result.metrics
        if not node.is_cached_stage:
            for ref, value in zip(node.outputs, result.values):
                ref.value = value
            return
        assert result.draft is not None and job.draft is not None
        for ref in node.outputs:
            ref.version = result.outputs_meta[ref.name]["version"]
        try:
            exports = self._exports(node, result)
        except CurifactoryError:
            discard_draft(result.draft)  # a path_override the call may not write: no entry
            raise
        meta = self.metadata(node, result)
        self.keys.forget(node)
        node.key_parts = None  # recorded in the entry now
        if self.store.dry:
            location = result.draft
        else:
            self.store.publish(
                result.draft,
                str(node.entry_dir),
                meta,
                replace,
                attempt=result.attempt,
                upload_error=result.upload_error,
            )
            location = str(node.entry_dir)
            probe = probe_of_call(node)
            if self.sharing is not None and probe is not None and shareable(node):
                self.sharing.add(
                    meta["experiment"],
                    node.stage.name,
                    probe,
                    meta["reads"],
                    meta["params_hash"],
                    meta["key"],
                )
        node.entry_dir = location
        if exports:
            keep_exports(self.store, location, exports, None)
        self.info[node.index] = result.outputs_meta
        self.reportables(node, {"extra_files": result.extra_files})
        templates = node.cacher_templates
        assert templates is not None  # committed: a stage with cachers
        for i, ref in enumerate(node.outputs):
            make = partial(
                bound_cacher,
                templates[i],
                location,
                ref.name,
                node.stage.name,
                result.outputs_meta[ref.name],
                True,
                fetch=partial(self.store.materialize, location),
            )
            if ref.lazy:
                ref.value = ref.lazy._copy_for(make())
            elif job.ship_values:
                ref.value = result.values[i]
            else:
                ref.value = _CachedOutput(make, keep=True)
        result.values.clear()

    def _exports(self, node: Node, result: JobResult) -> list[Export]:
        """The copies at their path_override an executed call keeps (engine.exports),
        recorded in its outputs' metadata; none in a dry run."""
        templates = node.cacher_templates or ()
        if self.store.dry or all(getattr(t, "path_override", None) is None for t in templates):
            return []
        targets = export_targets(node, self.keys.fingerprinter.root)
        exports = exports_of(node, targets, result.outputs_meta)
        claim(self._claims, exports, node.label)
        for export in exports:
            info = result.outputs_meta[export.output]
            info.setdefault("exported", []).append(export.to_json())
        return exports

    def reportables(self, node: Node, meta: dict[str, Any]) -> None:
        """The reportables its entry carries, back on the record (a cached stage shows the
        same ones as when it ran)."""
        try:
            data = self._entry_file(node, meta, INDEX)
            if data is None:
                return
            directory = str(node.entry_dir)
            for reportable in load_reportables(directory, data, meta.get("extra_files")):
                reportable.record = node.record
                node.record.reportables.append(reportable)
        except (OSError, ValueError, CurifactoryError) as exc:
            self._warn(f"{node.label}: its reportables cannot be read: {exc}")

    def metrics(self, node: Node, meta: dict[str, Any]) -> dict[str, Any] | None:
        """The metrics its entry carries (a cached call has those of the call that ran)."""
        try:
            data = self._entry_file(node, meta, METRICS_FILE)
            return None if data is None else load_metrics(data)
        except (OSError, ValueError, CurifactoryError) as exc:
            self._warn(f"{node.label}: its metrics cannot be read: {exc}")
            return None

    def _entry_file(self, node: Node, meta: dict[str, Any], rel: str) -> bytes | None:
        """The bytes of one of the entry's extra files, checked against its checksum; None
        when the entry lists no such file."""
        files = meta.get("extra_files")
        if not files:  # most entries: a cached run asks twice per call
            return None
        info = next((f for f in files if f.get("path") == rel), None)
        if info is None:
            return None
        directory = str(node.entry_dir)
        self.store.materialize(directory)
        with open(os.path.join(directory, rel), "rb") as infile:
            data = infile.read()
        if not bytes_match(data, info):
            raise CorruptEntryError(f"{directory}/{rel} does not match its checksum")
        return data

    def metadata(self, node: Node, result: JobResult) -> dict[str, Any]:
        """The entry's meta.json for an executed call (see store.entry for its fields)."""
        record = node.record
        inputs: dict[str, Any] = {}
        for name, src in node.inputs.items():
            if isinstance(src, OutputRef):
                inputs[name] = self._input_meta(src)
        for name, pairs in node.aggregate_inputs.items():
            inputs[name] = [
                {"record": rec.name, **self._input_meta(src)}
                for rec, src in pairs
                if isinstance(src, OutputRef)
            ]
        return {
            "format": 1,
            "key": node.key,
            "lineage_key": self._lineage(node),
            "key_parts": node.key_parts,
            # What the code fingerprint covers, piece by piece: `curi plan` names what changed.
            "code_parts": self.keys.fingerprinter.breakdown(node.stage.fn),
            "experiment": entry_namespace(node, self.experiment),
            "stage": node.stage.name,
            "stage_ref": node.stage.ref,
            "aggregate": node.stage.is_aggregate,
            "record": record.name,
            "params_hash": record.get_hash(),
            "params": self._views(record)[1],
            "reads": reads_json(result.reads),
            "input_records": [r.name for r in record.input_records],
            "inputs": inputs,
            "outputs": result.outputs_meta,
            "extra_files": result.extra_files,
            "timings": {
                "finished": _utc_now(),
                "compute_s": round(result.compute_s, 6),
                "save_s": round(result.save_s, 6),
            },
            "versions": result.versions,
            **self.provenance,
        }

    def record_info(self, record: Any) -> RecordInfo:
        """What a job sees of a record."""
        return self._views(record)[0]

    def _views(self, record: Any) -> tuple[RecordInfo, Any]:
        """What a job sees of a record, and its parameters as entry metadata shows them:
        made once per record (every stage call of the record shares them; nothing changes
        them during a run)."""
        found = self._records.get(id(record))
        if found is None or found[0] is not record:
            info = RecordInfo(record.name, record.params, record.get_hash())
            views = (info, params_json(record.params))
            found = self._records[id(record)] = (record, views)
        return found[1]

    def _input_meta(self, src: OutputRef) -> dict[str, Any]:
        producer = src.node
        entry = None
        if producer.entry_dir and producer.is_cached_stage:
            root = str(self.store.root) + os.sep
            entry = producer.entry_dir
            if entry.startswith(root):
                entry = entry[len(root) :].replace(os.sep, "/")
        return {
            "stage": producer.stage.name,
            "output": src.name,
            "record": producer.record_name,
            "version": src.version,
            "entry": entry,
        }


class _UtcNow:
    """The time in UTC to the second, ISO-formatted once per second (not per entry)."""

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self.second:
            when = dt.datetime.fromtimestamp(second, dt.timezone.utc)
            self.second, self.text = second, when.isoformat(timespec="seconds")
        return self.text


_utc_now = _UtcNow()


class OutputCacher:
    """Makes the cacher of one cached output when the output is first read (most never are:
    a cached run would otherwise build a cacher, and keep two partials, per output)."""

    __slots__ = ("directory", "info", "output", "record", "stage", "store", "template")

    def __init__(
        self,
        store: Any,
        template: Any,
        directory: str,
        output: str,
        stage: str,
        info: Any,
        record: Any = None,
    ) -> None:
        self.store, self.template, self.directory = store, template, directory
        self.output, self.stage, self.info, self.record = output, stage, info, record

    def __call__(self) -> Any:
        cacher = bound_cacher(
            self.template,
            self.directory,
            self.output,
            self.stage,
            self.info,
            fetch=partial(self.store.materialize, self.directory),
        )
        cacher.record = self.record  # as in Curifactory: load() may read its record
        return cacher


def slim_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """An entry's `outputs` metadata as kept for the rest of the run, its names shared with
    every other entry's (parsed JSON repeats each key and cacher name per entry)."""
    intern = sys.intern
    slim = {}
    for name, info in outputs.items():
        kept = {intern(k): v for k, v in info.items()}
        if isinstance(kept.get("cacher"), str):
            kept["cacher"] = intern(kept["cacher"])
        files = kept.get("files")
        if isinstance(files, list):
            kept["files"] = [
                {intern(k): v for k, v in f.items()} if isinstance(f, dict) else f for f in files
            ]
        slim[intern(name)] = kept
    return slim


def reads_json(reads: Reads | None) -> dict[str, Any] | None:
    """What metadata keeps of what a call read of its parameter set: whether it took the
    whole set, and each path read with the digest of its value, sorted by path."""
    if reads is None:
        return None
    if not reads._seen:  # most calls of a chain read nothing of their set
        return {"everything": reads.everything, "items": []}
    return {"everything": reads.everything, "items": [list(item) for item in reads.items]}
