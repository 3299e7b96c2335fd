"""Running one stage call anywhere: `run_job` loads the inputs through their cachers
(verifying checksums first), calls the function, and has its outputs saved into the draft
folder (see engine.outputs), returning their checksums. The same function runs in-process,
in a worker process and on a Dask worker.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from curifactory_cli.caching import Cacheable, new_cacher
from curifactory_cli.capture import captured
from curifactory_cli.engine.jobs import (
    Failure,
    InputEntry,
    InputValue,
    Job,
    JobResult,
    RecordInfo,
    Source,
    error_failure,
    stage_failure,
)
from curifactory_cli.engine.outputs import keep_outputs, relocated
from curifactory_cli.errors import (
    CacheError,
    CurifactoryError,
    MetricError,
    OutputSignatureError,
)
from curifactory_cli.parameters.reads import watch, watch_records, whole_reads
from curifactory_cli.provenance import imported_distributions
from curifactory_cli.store import (
    CorruptEntryError,
    discard_draft,
    make_draft,
    verify_files,
)
from curifactory_cli.store.ref import RemoteRef
from curifactory_cli.wording import plural


def run_job(job: Job, record: Any = None, fn: Any = None) -> JobResult:
    """Execute one stage call; save its outputs into `job.draft`.

    `record` is the live Record and `fn` the stage's function when the job runs in the
    driver's process (a stage defined in a notebook cell or inside a function has no import
    path); elsewhere both are rebuilt from the job. The user's exceptions come back as
    `result.failure`, never raised. What the call prints or logs is shown as usual and comes
    back in `result.log`, from wherever it ran.
    """
    with captured() as log:
        result = _run_job(job, record, fn)
    result.log = log.text()
    return result


def _run_job(job: Job, record: Any, fn: Any) -> JobResult:
    """The story of one stage call: find the stage, take (or rebuild) its record, load its
    inputs, call it with cachers bound to its draft folder, then keep what it returned:
    saved there (engine.outputs), or as values for a stage without cachers."""
    result = JobResult(job.index, worker=_worker_name())
    started = time.perf_counter()
    draft = _draft_folder(job)
    scratch: list[str] = []  # folders of inputs downloaded for this job only
    try:
        fn, record, inputs, rebuilt = _prepare(job, record, fn, scratch)
        reported = len(record.reportables)
        cachers = _bind_cachers(job, draft)
        values = _call(job, fn, record, inputs, cachers, draft, result)
        del inputs
        if isinstance(values, Failure):
            result.failure = values
            discard_draft(draft)
            return result
        tracked = False
        if draft is not None:
            values, tracked = relocated(job, record, reported, draft, values, cachers)
        result.values = values
        result.compute_s = time.perf_counter() - started
        if draft is None:
            if rebuilt:  # a stage without cachers: its reportables travel back as they are
                result.reportables = record.reportables[reported:]
        elif not keep_outputs(job, record, reported, draft, cachers, result, tracked):
            return result
        result.versions = imported_distributions()
        return result
    except _Corrupt as damaged:  # an input's files: the driver recomputes it, then retries
        result.corrupt = damaged.args
        return result
    except CurifactoryError as exc:
        discard_draft(draft)
        result.draft = None
        result.failure = error_failure(exc)
        return result
    except BaseException:
        discard_draft(draft)
        raise
    finally:
        _discard_all(scratch)


def _draft_folder(job: Job) -> str | None:
    """Where this job stages its outputs: the job's folder, or, on a machine that does not see
    the cache (a job that uploads), a local temporary one: the upload is what counts."""
    draft = job.draft
    if draft is not None and job.upload is not None and not os.path.isdir(os.path.dirname(draft)):
        draft = os.path.join(tempfile.mkdtemp(prefix="curi-job-"), "draft")
    return draft


def _prepare(
    job: Job, record: Any, fn: Any, scratch: list[str]
) -> tuple[Any, Any, dict[str, Any], bool]:
    """The stage's function, its record and its loaded inputs, and whether the record was
    rebuilt here (the job runs away from the driver: the live record stayed there)."""
    if fn is None:
        fn = resolve_stage(job.stage_ref).fn
    rebuilt = record is None
    if rebuilt:
        record, input_records = _worker_record(job)
    else:
        input_records = list(record.input_records)
    inputs = _load_inputs(job, record, input_records, scratch)
    if rebuilt:  # a stage may read its inputs from record.state too
        for name, value in inputs.items():
            dict.__setitem__(record.state, name, value)
    return fn, record, inputs, rebuilt


def _discard_all(folders: list[str]) -> None:
    for folder in folders:
        discard_draft(folder)


class _WorkerName:
    """`pid N` of this process (a getpid system call per job otherwise)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.name = f"pid {os.getpid()}"

    def __call__(self) -> str:
        return self.name


_worker_name = _WorkerName()


class _Corrupt(Exception):
    pass


def _load_inputs(
    job: Job, record: Any, input_records: list[Any], scratch: list[str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, source in job.inputs:
        values[name] = _load(name, source, scratch, record)
    for name, pairs in job.aggregate_inputs:
        values[name] = {
            input_records[pos]: _load(name, source, scratch, input_records[pos])
            for pos, source in pairs
        }
    return values


def _load(name: str, source: Source, scratch: list[str], record: Any = None) -> Any:
    if isinstance(source, InputValue):
        return source.value
    directory = source.directory
    if source.remote is not None and not os.path.isdir(directory):
        directory = _download(name, source, source.remote, scratch)
    try:
        # Checked before the stage sees anything, so a damaged input is recomputed (the
        # scheduler repairs it) rather than failing the stage that reads it.
        if not source.verified:
            verify_files(directory, source.info["files"])
        cacher = bound_cacher(
            source.cacher, directory, source.output, source.stage, source.info, True
        )
        cacher.record = record  # as in Curifactory: load() may read its record
        if source.lazy is not None and not source.lazy.resolve:
            # The stage gets the handle and loads it (or passes its path on) itself.
            return source.lazy._copy_for(cacher)
        return cacher.load()
    except CorruptEntryError as exc:
        raise _Corrupt(name, source.producer, exc.message, exc.hint) from None


def _download(name: str, source: InputEntry, remote: RemoteRef, scratch: list[str]) -> str:
    """One input's files from the remote store into a folder of this job (verified)."""
    folder = tempfile.mkdtemp(prefix="curi-input-")
    scratch.append(folder)
    store = remote.open()
    meta = store.read_meta(remote.path)
    if meta is None:
        raise _Corrupt(name, source.producer, f"{store.display(remote.path)} is gone", None)
    try:
        store.fetch(
            store.entry_from(remote.path, meta, str(meta.get("objects"))), folder, [source.output]
        )
    except CorruptEntryError as exc:
        raise _Corrupt(name, source.producer, exc.message, exc.hint) from None
    return folder


def bound_cacher(
    template: Any,
    directory: str,
    output: str,
    stage: str,
    info: dict[str, Any],
    verified: bool = False,
    fetch: Callable[[], None] | None = None,
) -> Cacheable:
    """A fresh cacher pointed at one output of an entry, that verifies before it first loads
    (after `fetch` brings the entry's files here, for an entry of a remote store)."""
    cacher = new_cacher(template)
    cacher._bind(str(directory), output)
    cacher.stage = stage
    cacher.extra_metadata = dict(info.get("extra") or {})
    cacher.metadata = info
    state = {"verified": verified}

    def load() -> Any:
        if fetch is not None:
            fetch()
        if not state["verified"]:
            verify_files(directory, info["files"])
            state["verified"] = True
        return cacher.load()

    cacher._curi_loader = load  # type: ignore[attr-defined] # read by record._CachedOutput
    return cacher


def _bind_cachers(job: Job, draft: str | None) -> list[Cacheable]:
    """The job's cachers, fresh, bound to its draft folder (created here)."""
    if draft is not None:
        make_draft(draft)
    cachers: list[Cacheable] = []
    for name, template in zip(job.outputs, job.cachers or ()):
        cacher = new_cacher(template)
        cacher._bind(str(draft), name)
        cacher.stage = job.stage_name
        cachers.append(cacher)
    return cachers


def _call(
    job: Job,
    fn: Any,
    record: Any,
    inputs: dict[str, Any],
    cachers: list[Cacheable],
    draft: str | None,
    result: JobResult,
) -> list[Any] | Failure:
    """Call the stage, its record's parameters seen through a view that records, into
    `result.reads`, what the call reads of them."""
    kwargs = dict(job.kwargs)
    args = kwargs.pop("__args__", ())
    record.stage_cachers = cachers
    for cacher in cachers:
        cacher.record = record  # as in Curifactory: a cacher may read its record's params
    # The folder this job really writes to (a local one on a machine without the cache), so
    # that record.get_path() files are saved and uploaded with the outputs.
    record._draft = draft
    record._run_dir = job.run_dir
    record._running_stage = job.stage_name
    record._paths_given = False
    metrics: dict[str, Any] = {}  # a new dict each call: a MetricReporter may hold the last
    record._call_metrics = metrics
    call_inputs = {**inputs, **kwargs}
    inputs.clear()
    params = record.params
    covered = record.input_records if job.is_aggregate and params is None else ()
    given = [r.params for r in covered]
    if params is not None or covered:
        if job.whole_params:  # keyed on the whole set: nothing to record, nothing shared
            result.reads = whole_reads()
        elif covered:  # an aggregate of its own: what it reads of its records' sets
            views, result.reads = watch_records(given)
            for r, view in zip(covered, views):
                r.params, r._watched = view, True
            record._covered_reads = result.reads
            if any(r._combo_hash is not None for r in covered):
                result.reads.everything = True  # an aggregate's hash is of all it covers
        else:
            record.params, result.reads = watch(params)
    try:
        if job.is_aggregate:
            returned = fn(record, record.input_records, *args, **call_inputs)
        else:
            returned = fn(record, *args, **call_inputs)
    except MetricError:
        raise  # a usage error, named as such (exit 2), not the stage's own failure
    except Exception as exc:
        return stage_failure(exc)
    finally:
        del call_inputs
        record.params = params
        for r, own in zip(covered, given):
            r.params, r._watched = own, False
        record._covered_reads = None
        record.stage_cachers = None
        record._draft = None
        record._run_dir = None
        record._running_stage = None
    if metrics:
        result.metrics = dict(metrics)
    return split_outputs(job, returned)


def split_outputs(job: Job, returned: Any) -> list[Any]:
    n = len(job.outputs)
    if n == 0:
        return []
    if n == 1:
        # As Curifactory: a tuple is the outputs, so one output returns (value,) or a
        # non-tuple; `((1, 2),)` gives the pair, and a bare pair is one value too many.
        if not isinstance(returned, tuple):
            return [returned]
        if len(returned) == 1:
            return [returned[0]]
        raise OutputSignatureError(
            f"stage {job.stage_name!r} returned a tuple of {len(returned)} values for parameter "
            f"set {job.record.name!r} but declares 1 output ({job.outputs[0]})",
            hint="to return a tuple as the one output, wrap it: `return ((a, b),)`; or "
            "declare one output per value.",
        )
    if not isinstance(returned, (tuple, list)) or len(returned) != n:
        got = plural(len(returned), "value") if isinstance(returned, (tuple, list)) else "1 value"
        declared = ", ".join(
            f'Lazy("{name}")' if lazy else name for name, lazy in zip(job.outputs, job.lazy)
        )
        raise OutputSignatureError(
            f"stage {job.stage_name!r} returned {got} for parameter set {job.record.name!r} "
            f"but declares {n} outputs ({declared})",
            hint="return a tuple with one value per output, in order.",
        )
    return list(returned)


def resolve_stage(ref: str) -> Any:
    """The StageSpec of a `module:qualname` reference (the decorated stage)."""
    module_name, _, qualname = ref.partition(":")
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    spec = getattr(obj, "__curi_stage__", None)
    if spec is None:
        msg = f"{ref} is not a stage"
        raise CacheError(msg)
    return spec


def _worker_record(job: Job) -> tuple[Any, list[Any]]:
    """A Record for a job running away from the driver: params, name, inputs in its state."""
    from curifactory_cli.record import Record, TracingManager

    manager = TracingManager(job.experiment)

    def make(info: RecordInfo) -> Any:
        record = Record(manager, info.params, hide=True)
        record._hash = info.params_hash
        return record

    record = make(job.record)
    input_records = [make(info) for info in job.input_records]
    if job.is_aggregate:
        record.is_aggregate = True
        record.input_records = input_records
        record._combo_hash = job.record.params_hash
    record.stages.append(job.stage_name)
    return record, input_records
