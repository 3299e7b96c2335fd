"""Executes a traced stage graph against the cache.

Every node has two keys:

* the **data key**: params hash, stage name, code fingerprint, cachers, output names, keyword
  arguments, and the *data versions* (checksums) of its inputs. A re-run that reproduces
  byte-identical outputs leaves its dependants' data keys unchanged (early cutoff).
* the **lineage key**: the same, but with the *lineage keys* of its upstream stages instead
  of their data versions. It is computable without any data, so a stage whose upstream entry
  was deleted can still be found in the cache without re-running the upstream stage.

Nodes are settled in traced (topological) order. A cached stage whose entry is missing is
not run at once: it runs only when something needs its data (a consumer that misses, or a
consumer that executes), or straight away if it is a leaf or forced. Each node is settled and
executed at most once, so the cost is linear in the number of nodes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli.caching import Cacheable, Lazy, new_cacher
from curifactory_cli.errors import CacheError, CurifactoryError, OutputSignatureError, StageError
from curifactory_cli.graph import NOT_COMPUTED, Node, Outcome, OutputRef
from curifactory_cli.hashing import canonical_json, digest, hash_value, param_set_representation
from curifactory_cli.provenance import library_versions
from curifactory_cli.record import _CachedOutput
from curifactory_cli.store import INVALIDATED, CorruptEntryError, Entry, fault_point

if TYPE_CHECKING:
    from collections.abc import Iterator

    from curifactory_cli.events import Reporter
    from curifactory_cli.hashing import CodeFingerprinter
    from curifactory_cli.store import CacheStore

KEY_FORMAT = 1
_CACHER_PRIVATE = {"path", "metadata", "extra_metadata", "record", "stage", "name", "_curi_loader"}


class UpstreamFailed(Exception):
    """A stage cannot run because a stage it needs failed (or was cut off by a failure)."""

    def __init__(self, node: Node) -> None:
        super().__init__(f"{node.label} did not produce its outputs")
        self.node = node


@dataclass(frozen=True)
class StageJob:
    """Plain data describing one stage call: what to run and where its entry goes.

    It holds no graph objects and pickles, so it can be handed to another process: a worker
    imports `stage_ref`, loads its inputs from `input_entries` through their cachers, and calls
    `execute_job`. The driver publishes the staged result.
    """

    stage_ref: str  # "module:qualname"
    stage_name: str
    experiment: str
    record_name: str
    params_hash: str
    key: str
    lineage_key: str
    cache_root: str
    entry_dir: str | None  # None for a stage without cachers
    outputs: tuple[str, ...]
    lazy: tuple[bool, ...]
    cachers: tuple[Any, ...] | None  # cacher classes or instances, one per output
    kwargs: dict[str, Any]
    is_aggregate: bool
    dry: bool
    input_entries: tuple[tuple[str, str | None], ...]  # (input name, producer entry dir)


def _cacher_id(template: Any) -> Any:
    cls = template if isinstance(template, type) else type(template)
    ident: dict[str, Any] = {"type": f"{cls.__module__}.{cls.__qualname__}"}
    if not isinstance(template, type):
        config = {k: v for k, v in vars(template).items() if k not in _CACHER_PRIVATE}
        try:
            ident["config"] = hash_value(config, "cacher options")
        except CurifactoryError:
            ident["config"] = repr(sorted(config))
    return ident


def params_json(params: Any) -> Any:
    """A JSON-friendly view of a parameter set for metadata (name included)."""
    if params is None:
        return None
    data = getattr(params, "_data", None)
    if data is None:
        try:
            data = param_set_representation(params)
        except CurifactoryError:
            data = {"repr": repr(params)}
    return {"name": getattr(params, "name", None), **data}


class Executor:
    """Settles and executes the nodes of one run. Emits progress through a `Reporter`."""

    def __init__(
        self,
        *,
        store: CacheStore,
        experiment: str,
        fingerprinter: CodeFingerprinter,
        reporter: Reporter,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
        provenance: dict[str, Any] | None = None,
        keep_going: bool = False,
    ) -> None:
        self.store = store
        self.experiment = experiment
        self.fingerprinter = fingerprinter
        self.reporter = reporter
        self.overwrite = overwrite
        self.overwrite_stages = overwrite_stages
        self.provenance = provenance or {}
        self._fresh: set[int] = set()  # nodes executed in this run
        self.keep_going = keep_going
        self.failures: list[StageError] = []
        self._warned: set[str] = set()
        self._bases: dict[int, dict[str, Any]] = {}
        self._stage_prefixes: dict[int, str] = {}
        self._repaired: set[int] = set()

    # ------------------------------------------------------------------ driving
    def run(self, nodes: list[Node]) -> None:
        """Settle every node in order. A failing stage stops the run, or with `keep_going`
        is collected in `failures` while every stage that does not depend on it still runs."""
        for node in nodes:
            try:
                self._settle(node)
            except StageError as exc:
                if not self.keep_going:
                    raise
                self.failures.append(exc)
            except UpstreamFailed:
                pass  # the node is marked skipped; the failure itself was collected
        for node in nodes:
            if node.outcome is None:
                node.outcome = Outcome.SKIPPED
                node.reason = (
                    "cache entry missing, but nothing needs it"
                    if node.is_cached_stage
                    else "uncached, and nothing needs its outputs"
                )
                self.reporter.node_finished(node)

    def _forced(self, node: Node) -> str | None:
        if self.overwrite or getattr(node.record.params, "overwrite", False) is True:
            return "forced by --overwrite"
        if node.stage.name in self.overwrite_stages:
            return "forced by --overwrite-stage"
        return None

    def _settle(self, node: Node) -> None:
        known = all(ref.version is not None for ref in node.upstream())
        self._bases[node.index] = self._base_parts(node)
        node.lineage_key = self._key(node, lineage=True)
        if known:
            node.key_parts, node.key = self._data_key(node)
        if not node.is_cached_stage:
            if known:
                self._set_derived_versions(node)
            if node.consumers == 0:
                self._execute(node, "uncached leaf stage")
            return
        forced = self._forced(node)
        if forced:
            self._execute(node, forced)
            return
        entry = self._lookup(node) if known else self._lookup_lineage(node)
        if entry is None and not known:
            # Nothing found by lineage: the upstream data is needed to decide.
            self._ensure_versions(node)
            node.key_parts, node.key = self._data_key(node)
            entry = self._lookup(node)
        if entry is not None:
            self._hit(node, entry)
        elif node.consumers == 0 or self._has_fresh_input(node):
            # A leaf must run, and so must a stage whose inputs were just recomputed. Any
            # other missing stage waits: its consumers may still be cached (found by
            # lineage), and then it is not needed at all.
            self._execute(node, node.reason or "no cache entry")
        else:
            node.reason = node.reason or "no cache entry"

    # ------------------------------------------------------------------ keys
    def _base_parts(self, node: Node) -> dict[str, Any]:
        spec = node.stage
        parts: dict[str, Any] = {
            "format": KEY_FORMAT,
            "experiment": self.experiment,
            "stage": spec.name,
            "params": node.record.get_hash(),
            "code": self.fingerprinter.fingerprint(spec.fn),
            "outputs": [ref.name for ref in node.outputs],
            "cachers": [_cacher_id(t) for t in node.cacher_templates or []],
        }
        if node.kwargs:
            parts["kwargs"] = hash_value(node.kwargs, f"keyword arguments of {spec.name!r}")
        return parts

    def _input_parts(self, node: Node, lineage: bool) -> dict[str, Any]:
        def version(src: Any) -> Any:
            if isinstance(src, OutputRef):
                if lineage:
                    return f"{src.node.lineage_key}:{src.name}"
                return src.version
            return "value:" + hash_value(src, f"input of {node.stage.name!r}")

        inputs: dict[str, Any] = {name: version(src) for name, src in node.inputs.items()}
        for name, pairs in node.aggregate_inputs.items():
            inputs[name] = sorted([rec.get_hash(), version(src)] for rec, src in pairs)
        return inputs

    def _key(self, node: Node, lineage: bool) -> str:
        parts = {**self._bases[node.index], "inputs": self._input_parts(node, lineage)}
        if lineage:
            parts["lineage"] = True
        return digest(canonical_json(parts))

    def _data_key(self, node: Node) -> tuple[dict[str, Any], str]:
        parts = {**self._bases[node.index], "inputs": self._input_parts(node, lineage=False)}
        return parts, digest(canonical_json(parts))

    def _set_derived_versions(self, node: Node) -> None:
        # An in-memory output has no bytes to checksum: its version is derived from its key.
        for ref in node.outputs:
            ref.version = digest(f"memory:{node.key}:{ref.name}")

    @staticmethod
    def _output_names(node: Node) -> list[str]:
        return [ref.name for ref in node.outputs]

    def _stage_prefix(self, node: Node) -> str:
        found = self._stage_prefixes.get(node.index)
        if found is None:
            found = self.store.stage_prefix(
                self.experiment, node.record.get_hash(), node.stage.name
            )
            self._stage_prefixes[node.index] = found
        return found

    def _entry_dir(self, node: Node, key: str) -> str:
        return self.store.entry_dir(self._stage_prefix(node), key)

    # ------------------------------------------------------------------ lookups
    def _has_fresh_input(self, node: Node) -> bool:
        """Whether an input was (re)computed in this run, directly or through uncached stages."""
        for ref in node.upstream():
            producer = ref.node
            if producer.index in self._fresh:
                return True
            if not producer.is_cached_stage and self._has_fresh_input(producer):
                self._fresh.add(producer.index)
                return True
        return False

    def _lookup(self, node: Node) -> Entry | None:
        directory = self._entry_dir(node, node.key)
        node.entry_dir = directory
        entry, problem = self.store.lookup(directory, node.key, self._output_names(node))
        if problem == INVALIDATED:
            node.reason = "invalidated by `curi cache invalidate`"
        elif problem:
            if directory not in self._warned:  # the re-check under the lock finds it again
                self._warned.add(directory)
                self.reporter.warning(f"{node.label}: ignoring cache entry: {problem}")
            node.reason = f"cache entry unusable: {problem}"
        return entry

    def _lookup_lineage(self, node: Node) -> Entry | None:
        entry = self.store.find_by_lineage(
            self._stage_prefix(node), node.lineage_key, self._output_names(node)
        )
        if entry is None:
            return None
        node.key, node.key_parts = entry.meta["key"], entry.meta.get("key_parts")
        node.entry_dir = str(entry.directory)
        return entry

    # ------------------------------------------------------------------ cache hits
    def _hit(self, node: Node, entry: Entry, reason: str = "cached") -> None:
        node.outcome = Outcome.CACHED
        node.reason = reason
        node.entry_dir = str(entry.directory)
        for i, ref in enumerate(node.outputs):
            info = entry.meta["outputs"][ref.name]
            ref.version = info["version"]
            cacher = self._bound_cacher(node, i, entry.directory, info, verified=False)
            ref.value = ref.lazy._copy_for(cacher) if ref.lazy else _CachedOutput(cacher, keep=True)
        self.reporter.node_finished(node)

    def _bound_cacher(
        self, node: Node, i: int, directory: Path, info: dict[str, Any], verified: bool
    ) -> Cacheable:
        cacher = new_cacher(node.cacher_templates[i])
        cacher._bind(str(directory), node.outputs[i].name)
        cacher.stage = node.stage.name
        cacher.extra_metadata = dict(info.get("extra") or {})
        cacher.metadata = info
        store, files, state = self.store, info["files"], {"verified": verified}

        def load() -> Any:
            if not state["verified"]:
                store.verify(directory, files)
                state["verified"] = True
            return cacher.load()

        cacher._curi_loader = load  # type: ignore[attr-defined]
        return cacher

    # ------------------------------------------------------------------ execution
    def _ensure_versions(self, node: Node) -> None:
        for ref in node.upstream():
            if ref.version is None:
                self._execute(ref.node, ref.node.reason or "needed by " + node.label)

    def _resolve(self, ref: OutputRef) -> Any:
        if ref.value is NOT_COMPUTED:
            producer = ref.node
            if producer.outcome is not None:
                raise UpstreamFailed(producer)
            self._execute(producer, producer.reason or "needed downstream")
        value = ref.value
        try:
            if isinstance(value, _CachedOutput):
                return value.get()
            if isinstance(value, Lazy) and value.resolve:
                return value.load()
        except CorruptEntryError as exc:
            if ref.node.index in self._repaired:
                raise
            self.reporter.warning(f"{ref.node.label}: {exc.message}; recomputing")
            self._repaired.add(ref.node.index)
            ref.node.outcome = None
            self._execute(ref.node, "cache entry corrupt")
            return self._resolve(ref)
        return value

    def _gather(self, node: Node) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, src in node.inputs.items():
            values[name] = self._resolve(src) if isinstance(src, OutputRef) else src
        for name, pairs in node.aggregate_inputs.items():
            values[name] = {
                rec: self._resolve(src) if isinstance(src, OutputRef) else src for rec, src in pairs
            }
        return values

    def _execute(self, node: Node, reason: str) -> None:
        if node.outcome in (Outcome.FAILED, Outcome.SKIPPED):
            raise UpstreamFailed(node)  # never run a stage twice, nor one that was cut off
        node.reason = reason
        self.reporter.node_started(node)
        started = time.perf_counter()
        try:
            inputs = self._gather(node)
            # Inputs are final now (a damaged upstream may have been recomputed): key them.
            node.key_parts, node.key = self._data_key(node)
            if not node.is_cached_stage:
                self._set_derived_versions(node)
            job = self._job(node)
            node.entry_dir = job.entry_dir
            with self._entry_lock(node):
                # Another run may have published this entry while we waited for the lock.
                recheck = node.index not in self._repaired and not self._forced(node)
                entry = self._lookup(node) if node.is_cached_stage and recheck else None
                if entry is not None:
                    self._hit(node, entry, reason="cached (computed by a concurrent run)")
                    return
                result = execute_job(job, node.stage.fn, node.record, inputs, self.store)
                del inputs
                if node.is_cached_stage:
                    self._commit(node, job, result)
                else:
                    for ref, value in zip(node.outputs, result.values):
                        ref.value = value
                result.values.clear()
        except BaseException as exc:
            if node.outcome is None:
                node.seconds = time.perf_counter() - started
                failed_elsewhere = isinstance(exc, UpstreamFailed) or (
                    isinstance(exc, StageError) and getattr(exc, "node_index", None) is not None
                )
                if failed_elsewhere:  # an input's stage failed while being computed for us
                    node.outcome = Outcome.SKIPPED
                    node.reason = "not run: an upstream stage failed"
                else:
                    node.outcome = Outcome.FAILED
                    node.reason = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, StageError):
                        node.reason = f"{type(exc.original).__name__}: {exc.original}"
                        exc.node_index = node.index  # type: ignore[attr-defined]
                        if self.keep_going:
                            self.failures.append(exc)
                            self.reporter.node_finished(node)
                            raise UpstreamFailed(node) from exc
                self.reporter.node_finished(node)
            raise
        node.outcome = Outcome.EXECUTED
        node.seconds = time.perf_counter() - started
        self._fresh.add(node.index)
        self.reporter.node_finished(node)

    @contextlib.contextmanager
    def _entry_lock(self, node: Node) -> Iterator[None]:
        """Hold the entry's file lock while computing it, so concurrent runs compute it once."""
        if not node.is_cached_stage or self.store.dry:
            yield
            return
        lock = self.store.entry_lock(node.key)
        if not lock.acquire_nowait():
            self.reporter.node_waiting(node)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _job(self, node: Node) -> StageJob:
        inputs = tuple(
            (name, src.node.entry_dir if isinstance(src, OutputRef) else None)
            for name, src in node.inputs.items()
        )
        return StageJob(
            stage_ref=node.stage.ref,
            stage_name=node.stage.name,
            experiment=self.experiment,
            record_name=node.record_name,
            params_hash=node.record.get_hash(),
            key=node.key,
            lineage_key=node.lineage_key,
            cache_root=str(self.store.root),
            entry_dir=self._entry_dir(node, node.key) if node.is_cached_stage else None,
            outputs=tuple(ref.name for ref in node.outputs),
            lazy=tuple(ref.lazy is not None for ref in node.outputs),
            cachers=tuple(node.cacher_templates) if node.is_cached_stage else None,
            kwargs=dict(node.kwargs),
            is_aggregate=node.stage.is_aggregate,
            dry=self.store.dry,
            input_entries=inputs,
        )

    def _commit(self, node: Node, job: StageJob, result: JobResult) -> None:
        """Publish an executed stage's staged files, then point its outputs at them."""
        for ref in node.outputs:
            ref.version = result.outputs_meta[ref.name]["version"]
        final = job.entry_dir
        meta = self._metadata(
            node, result.outputs_meta, result.extra_files, result.compute_s, result.save_s
        )
        if self.store.dry:
            location = result.staging
        else:
            self.store.publish(result.staging, final, meta)
            location = final
        for i, ref in enumerate(node.outputs):
            cacher = self._bound_cacher(node, i, location, result.outputs_meta[ref.name], True)
            ref.value = ref.lazy._copy_for(cacher) if ref.lazy else result.values[i]

    def _metadata(
        self,
        node: Node,
        outputs: dict[str, Any],
        extra_files: list[dict[str, Any]],
        compute_s: float,
        save_s: float,
    ) -> dict[str, Any]:
        record = node.record
        inputs = {}
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
            "lineage_key": node.lineage_key,
            "key_parts": node.key_parts,
            "experiment": self.experiment,
            "stage": node.stage.name,
            "stage_ref": node.stage.ref,
            "aggregate": node.stage.is_aggregate,
            "record": record.name,
            "params_hash": record.get_hash(),
            "params": params_json(record.params),
            "input_records": [r.name for r in record.input_records],
            "inputs": inputs,
            "outputs": outputs,
            "extra_files": extra_files,
            "timings": {
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "compute_s": round(compute_s, 6),
                "save_s": round(save_s, 6),
            },
            **self.provenance,
            # Read now, not at start: stages import pandas, numpy, ... as they run.
            "versions": library_versions(),
        }

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


@dataclass
class JobResult:
    """What executing a StageJob produced (files are still in `staging`, unpublished)."""

    values: list[Any]  # in-memory values; None for Lazy outputs, which live only on disk
    staging: str | None = None
    outputs_meta: dict[str, Any] = field(default_factory=dict)
    extra_files: list[dict[str, Any]] = field(default_factory=list)
    compute_s: float = 0.0
    save_s: float = 0.0


def execute_job(
    job: StageJob, fn: Any, record: Any, inputs: dict[str, Any], store: CacheStore
) -> JobResult:
    """Run one stage call and save its outputs into a fresh staging folder.

    Everything it needs besides the inputs' values is in `job`; it touches no graph state, so
    a worker process can call it with `fn` imported from `job.stage_ref`.
    """
    started = time.perf_counter()
    kwargs = dict(job.kwargs)
    args = kwargs.pop("__args__", ())
    staging = store.new_staging() if job.cachers is not None else None
    cachers: list[Cacheable] = []
    try:
        for name, template in zip(job.outputs, job.cachers or ()):
            cacher = new_cacher(template)
            cacher._bind(str(staging), name)
            cacher.stage = job.stage_name
            cachers.append(cacher)
        record.stage_cachers = cachers
        record._staging = staging
        call_inputs = {**inputs, **kwargs}
        inputs.clear()
        try:
            if job.is_aggregate:
                returned = fn(record, record.input_records, *args, **call_inputs)
            else:
                returned = fn(record, *args, **call_inputs)
        except Exception as exc:
            raise StageError(job.stage_name, job.record_name, exc) from exc
        finally:
            del call_inputs
            record.stage_cachers = None
            record._staging = None
        values = _split_outputs(job, returned)
        del returned
        result = JobResult(values, staging, compute_s=time.perf_counter() - started)
        if staging is not None:
            _save_outputs(job, cachers, result, store)
        return result
    except BaseException:
        if staging is not None:
            store.discard(staging)
        raise


def _split_outputs(job: StageJob, returned: Any) -> list[Any]:
    n = len(job.outputs)
    if n == 0:
        return []
    if n == 1:
        return [returned]
    if not isinstance(returned, (tuple, list)) or len(returned) != n:
        got = f"{len(returned)} values" if isinstance(returned, (tuple, list)) else "1 value"
        raise OutputSignatureError(
            f"stage {job.stage_name!r} returned {got} for parameter set {job.record_name!r} "
            f"but declares {n} outputs ({', '.join(job.outputs)})",
            hint="return a tuple with one value per output, in order.",
        )
    return list(returned)


def _save_outputs(
    job: StageJob, cachers: list[Cacheable], result: JobResult, store: CacheStore
) -> None:
    save_started = time.perf_counter()
    values = result.values
    for i, (name, cacher) in enumerate(zip(job.outputs, cachers)):
        try:
            cacher.save(values[i])
        except Exception as exc:
            what = f"stage {job.stage_name!r} ({job.record_name}), output {name!r}"
            if isinstance(exc, CurifactoryError):
                raise CacheError(f"{what}: {exc.message}", exc.hint) from exc
            raise CacheError(
                f"{what}: {type(cacher).__name__} could not save it: {type(exc).__name__}: {exc}",
                hint="pick a cacher that can store this value (PickleCacher stores most).",
            ) from exc
        if job.lazy[i]:
            values[i] = None  # drop the object as soon as it is on disk
    fault_point("after-data")
    files = store.describe_files(result.staging, list(job.outputs))
    for name, cacher in zip(job.outputs, cachers):
        own = files[name]
        cacher_type = _cacher_id(type(cacher))["type"]
        version = digest(
            canonical_json([cacher_type, [(f["path"][len(name) :], f["sha256"]) for f in own]])
        )
        result.outputs_meta[name] = {
            "cacher": cacher_type,
            "lazy": job.lazy[job.outputs.index(name)],
            "version": version,
            "files": own,
            "extra": cacher.extra_metadata,
        }
    result.extra_files = files[""]
    result.save_s = time.perf_counter() - save_started


def format_user_traceback(exc: BaseException) -> str:
    """The user's traceback with this package's frames removed."""
    import curifactory_cli

    package_dir = curifactory_cli.__path__[0]
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if not f.filename.startswith((package_dir, "<frozen importlib"))]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)
