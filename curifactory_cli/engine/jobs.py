"""One stage call as plain data (`Job`), and `run_job`, which executes it anywhere.

A job holds no graph objects: a reference to the stage function, the record's name and
parameters, where each input comes from (a cache entry, or an in-memory value) and the staging
folder to write into. `run_job` loads the inputs through their cachers (verifying checksums
first), calls the function, saves the outputs into the staging folder and returns their
checksums. It never publishes: the driver alone publishes, writes the registry and emits
events. The same function runs in-process, in a worker process and on a Dask worker.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import pathlib
import pickle
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from curifactory_cli.caching import TRACKED_WRITERS, Cacheable, Lazy, json_safe, new_cacher
from curifactory_cli.capture import captured
from curifactory_cli.engine.keys import cacher_type
from curifactory_cli.errors import CacheError, CurifactoryError, OutputSignatureError
from curifactory_cli.fingerprint import class_fingerprint
from curifactory_cli.hashing import canonical_json, digest
from curifactory_cli.provenance import imported_distributions
from curifactory_cli.store import (
    CorruptEntryError,
    describe_files,
    discard_staging,
    fault_point,
    make_staging,
    verify_files,
    written_files,
)
from curifactory_cli.store.ref import RemoteRef
from curifactory_cli.wording import plural

# ---------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class RecordInfo:
    """What a stage sees of a record besides its inputs."""

    name: str
    params: Any
    params_hash: str


@dataclass(frozen=True)
class InputEntry:
    """An input read from a published (or, with --dry, staged) cache entry."""

    producer: int  # node index of the producing stage call (to recompute it if damaged)
    stage: str
    directory: str
    output: str
    cacher: Any  # the producer's cacher template for this output
    info: dict[str, Any]  # the output's metadata: version, files with checksums, extra
    lazy: Lazy | None  # the output's Lazy declaration, if it is lazy
    verified: bool  # published by this run: its checksums were computed a moment ago
    # The same entry in a remote store: a worker that does not see `directory` (another
    # machine) downloads the output's files from there, verified, for this job only.
    remote: RemoteRef | None = None


@dataclass(frozen=True)
class InputValue:
    """An input passed by value (an in-memory output, or a value set in record.state)."""

    value: Any


Source = InputEntry | InputValue


# Not frozen: a frozen dataclass sets each of its fields through object.__setattr__, which
# made building a job cost 5 us instead of 1 (one job per stage call that runs). Nothing
# changes a job once it is made.
@dataclass(slots=True)
class Job:
    index: int  # the node's index in the graph
    stage_ref: str  # "module:qualname" of the decorated stage
    stage_name: str
    experiment: str
    record: RecordInfo
    key: str
    lineage_key: str
    staging: str | None  # the folder to create and save into; None for a stage without cachers
    outputs: tuple[str, ...]
    lazy: tuple[bool, ...]
    cachers: tuple[Any, ...] | None  # cacher classes or instances, one per output
    kwargs: dict[str, Any]
    is_aggregate: bool
    inputs: tuple[tuple[str, Source], ...] = ()
    # aggregate: input name -> (position in input_records, source) for each record that has it
    aggregate_inputs: tuple[tuple[str, tuple[tuple[int, Source], ...]], ...] = ()
    input_records: tuple[RecordInfo, ...] = ()
    ship_values: bool = True  # return the values of cached outputs (False in other processes)
    # A remote store to upload the outputs to, from wherever the job runs (the driver then
    # only commits the entry's metadata).
    upload: RemoteRef | None = None
    # The folder the staging folder becomes when the driver publishes it (paths the stage
    # returns into its staging folder are pointed there).
    entry_dir: str | None = None
    # The project's root: classes defined under it whose instances are pickled into an
    # output count in that output's version (their code travels inside the value).
    code_root: str | None = None

    @property
    def label(self) -> str:
        return f"{self.stage_name} [{self.record.name}]"


@dataclass(frozen=True)
class Failure:
    """Why a job did not produce its outputs, in plain data."""

    kind: str  # "stage": the user's function raised; "error": a CurifactoryError of ours
    message: str
    hint: str | None = None
    error_type: str = ""  # "module:qualname" of the CurifactoryError subclass ("error" only)
    exc_type: str = ""  # the user's exception type name ("stage" only)
    traceback: str = ""  # the user's traceback, our frames removed
    original: BaseException | None = None  # the exception itself, when it could travel


@dataclass
class JobResult:
    """What executing a Job produced (files are still in `staging`, unpublished)."""

    index: int
    values: list[Any] = field(default_factory=list)  # None where not shipped (or Lazy)
    staging: str | None = None
    outputs_meta: dict[str, Any] = field(default_factory=dict)
    extra_files: list[dict[str, Any]] = field(default_factory=list)
    compute_s: float = 0.0
    save_s: float = 0.0
    reportables: list[Any] = field(default_factory=list)
    failure: Failure | None = None
    corrupt: tuple[str, int, str, str | None] | None = None  # input, producer, message, hint
    worker: str = ""
    attempt: str | None = None  # the uploaded attempt folder, with `job.upload`
    upload_error: str | None = None  # why the upload failed (the stage itself succeeded)
    # Installed distributions imported in the process that ran it, when it finished.
    versions: dict[str, str] = field(default_factory=dict)
    log: str = ""  # what the call printed or logged (bounded: see capture.LOG_LIMIT)


# ---------------------------------------------------------------------------------- running


def run_job(job: Job, record: Any = None, fn: Any = None) -> JobResult:
    """Execute one stage call; save its outputs into `job.staging`.

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
    result = JobResult(job.index, worker=_worker_name())
    started = time.perf_counter()
    staging = job.staging
    if (
        staging is not None
        and job.upload is not None
        and not os.path.isdir(os.path.dirname(staging))
    ):
        # Another machine: stage in a local temporary folder; the upload is what counts.
        staging = os.path.join(tempfile.mkdtemp(prefix="curi-job-"), "staging")
    scratch: list[str] = []  # folders of inputs downloaded for this job only
    try:
        if fn is None:
            fn = resolve_stage(job.stage_ref).fn
        rebuilt = record is None
        if rebuilt:
            record, input_records = _worker_record(job)
        else:
            input_records = list(record.input_records)
        try:
            inputs = _load_inputs(job, record, input_records, scratch)
        except _Corrupt as damaged:
            result.corrupt = damaged.args
            return result
        if rebuilt:  # a stage may read its inputs from record.state too
            for name, value in inputs.items():
                dict.__setitem__(record.state, name, value)
        reported = len(record.reportables)
        if staging is not None:
            make_staging(staging)
        cachers = _bind_cachers(job, staging)
        values = _call(job, fn, record, inputs, cachers, staging)
        del inputs
        if isinstance(values, Failure):
            result.failure = values
            discard_staging(staging)
            return result
        tracked = False
        if staging is not None:
            # Whether a path into the staging folder reached the stage (record.get_path(), a
            # cacher's path): only then can its values hold one, or its code write files there.
            handed_out = getattr(record, "_paths_given", True) or any(
                getattr(c, "_paths_given", True) for c in cachers
            )
            # Else, with only cachers that checksum all they write, the folder need not be
            # listed afterwards.
            tracked = (
                not handed_out
                and not record.reportables[reported:]
                and all(type(c) in TRACKED_WRITERS for c in cachers)
            )
            values = relocate_staged_paths(job, staging, values, cachers, handed_out)
        result.values = values
        result.compute_s = time.perf_counter() - started
        new_reportables = record.reportables[reported:]
        if staging is not None:
            result.staging = staging
            if new_reportables:
                # Kept with the entry: the driver reads them back from it, cached or not.
                del record.reportables[reported:]
                failure = _save_reportables(staging, new_reportables)
                if failure is not None:
                    result.failure = failure
                    result.staging = None
                    discard_staging(staging)
                    return result
            _save_outputs(job, cachers, result, tracked)
            if job.upload is not None:
                _upload(job.upload, result)
        elif rebuilt:  # a stage without cachers: its reportables travel back as they are
            result.reportables = new_reportables
        if not job.ship_values and staging is not None:
            result.values = [None] * len(values)  # the driver reads them from the entry
        result.versions = imported_distributions()
        return result
    except CurifactoryError as exc:
        discard_staging(staging)
        result.staging = None
        result.failure = error_failure(exc)
        return result
    except BaseException:
        discard_staging(staging)
        raise
    finally:
        for folder in scratch:
            discard_staging(folder)


def _save_reportables(staging: str, reportables: list[Any]) -> Failure | None:
    """Render the stage's reportables into its entry; one that raises fails the stage, with
    the user's traceback, like the stage itself."""
    from curifactory_cli.reporting import save_reportables

    try:
        save_reportables(staging, reportables)
    except Exception as exc:
        return stage_failure(exc, " (rendering a reportable)")
    return None


def _upload(target: RemoteRef, result: JobResult) -> None:
    """Upload the staged outputs (not yet visible to anyone: the driver commits them)."""
    assert result.staging is not None
    files = [f for info in result.outputs_meta.values() for f in info["files"]]
    try:
        result.attempt = target.open().put_files(
            result.staging, target.path, files + result.extra_files
        )
    except CacheError as exc:
        result.upload_error = exc.message


def stage_failure(exc: Exception, where: str = "") -> Failure:
    """The user's code raised: the failure carries its trimmed traceback."""
    return Failure(
        "stage",
        f"{type(exc).__name__}: {exc}{where}",
        exc_type=type(exc).__name__,
        traceback=format_user_traceback(exc),
        original=exc,
    )


def error_failure(exc: CurifactoryError) -> Failure:
    cls = type(exc)
    return Failure(
        "error", exc.message, exc.hint, error_type=f"{cls.__module__}:{cls.__qualname__}"
    )


def rebuild_error(failure: Failure) -> CurifactoryError:
    """The CurifactoryError a failure of kind "error" stands for, in the driver."""
    module, _, name = failure.error_type.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
        error = cls(failure.message, hint=failure.hint)
    except Exception:
        error = None
    if isinstance(error, CurifactoryError):
        return error
    return CacheError(failure.message, failure.hint)  # a name that is not one of ours


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


def _bind_cachers(job: Job, staging: str | None) -> list[Cacheable]:
    cachers: list[Cacheable] = []
    for name, template in zip(job.outputs, job.cachers or ()):
        cacher = new_cacher(template)
        cacher._bind(str(staging), name)
        cacher.stage = job.stage_name
        cachers.append(cacher)
    return cachers


def _call(
    job: Job,
    fn: Any,
    record: Any,
    inputs: dict[str, Any],
    cachers: list[Cacheable],
    staging: str | None,
) -> list[Any] | Failure:
    kwargs = dict(job.kwargs)
    args = kwargs.pop("__args__", ())
    record.stage_cachers = cachers
    for cacher in cachers:
        cacher.record = record  # as in Curifactory: a cacher may read its record's params
    # The folder this job really writes to (a local one on a machine without the cache), so
    # that record.get_path() files are saved and uploaded with the outputs.
    record._staging = staging
    record._running_stage = job.stage_name
    record._paths_given = False
    call_inputs = {**inputs, **kwargs}
    inputs.clear()
    try:
        if job.is_aggregate:
            returned = fn(record, record.input_records, *args, **call_inputs)
        else:
            returned = fn(record, *args, **call_inputs)
    except Exception as exc:
        return stage_failure(exc)
    finally:
        del call_inputs
        record.stage_cachers = None
        record._staging = None
        record._running_stage = None
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


def relocate_staged_paths(
    job: Job, staging: str, values: list[Any], cachers: list[Cacheable], handed_out: bool = True
) -> list[Any]:
    """The stage's returned values with every path into its staging folder pointed at the
    published entry instead.

    A path from record.get_path()/get_dir() or a cacher's get_path() is in the staging folder,
    which is renamed when the outputs are published: returned as it is, it would dangle for the
    stages that receive it and, once cached, on every later run. `str` and `pathlib` values are
    rewritten, also inside lists, tuples and dicts, before the outputs are saved.
    """
    final = job.entry_dir
    if final is None:
        return values
    for cacher in cachers:
        cacher._entry_dir = final  # PathRef accepts its own path, relocated
    if not handed_out:
        return values  # no path into the staging folder was handed out: none to find
    # The same folders as the user may spell them (os.path.abspath/realpath of a path).
    moves = {staging: final}
    for spell in (os.path.abspath, _realpath):
        moves.setdefault(spell(staging), spell(final))
    return [_relocate(value, moves, set()) for value in values]


def _realpath(path: str) -> str:
    """os.path.realpath of a staging or entry folder, resolving the folder two levels up once
    per process (a dozen lstat calls each time otherwise): the cache creates the two last
    levels itself, as folders, never links."""
    rest, name = os.path.split(os.path.abspath(path))
    folder, middle = os.path.split(rest)
    return os.path.join(_real_folder(folder), middle, name)


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _relocate(value: Any, moves: dict[str, str], active: set[int]) -> Any:
    """`value` with its staged paths moved; unchanged objects are returned as they are."""
    if isinstance(value, str):
        for staged, final in moves.items():
            if value == staged or value.startswith(staged + os.sep):
                return final + value[len(staged) :]
        return value
    if isinstance(value, pathlib.PurePath):
        moved = _relocate(str(value), moves, active)
        return value if moved == str(value) else type(value)(moved)
    # Only containers that can be rebuilt faithfully; a cycle or absurd depth stops the walk.
    rebuildable = type(value) in (list, tuple, dict) or (
        isinstance(value, tuple) and hasattr(value, "_make")  # a namedtuple
    )
    if not rebuildable or id(value) in active or len(active) > 100:
        return value
    active.add(id(value))
    try:
        return _relocate_items(value, moves, active)
    finally:
        active.discard(id(value))


def _relocate_items(value: Any, moves: dict[str, str], active: set[int]) -> Any:
    if isinstance(value, dict):
        pairs = list(value.items())
        moved = [(_relocate(k, moves, active), _relocate(v, moves, active)) for k, v in pairs]
        same = all(a is k and b is v for (a, b), (k, v) in zip(moved, pairs))
        return value if same else dict(moved)
    items = [_relocate(item, moves, active) for item in value]
    if all(a is b for a, b in zip(items, value)):
        return value
    if type(value) is list:
        return items
    return tuple(items) if type(value) is tuple else type(value)._make(items)


def _save_outputs(
    job: Job, cachers: list[Cacheable], result: JobResult, tracked: bool = False
) -> None:
    save_started = time.perf_counter()
    values = result.values
    for i, (name, cacher) in enumerate(zip(job.outputs, cachers)):
        try:
            cacher.save(values[i])
        except Exception as exc:
            what = f"stage {job.stage_name!r} ({job.record.name}), output {name!r}"
            if isinstance(exc, CurifactoryError):
                raise CacheError(f"{what}: {exc.message}", exc.hint) from exc
            raise CacheError(
                f"{what}: {type(cacher).__name__} could not save it: {type(exc).__name__}: {exc}",
                hint="pick a cacher that can store this value (PickleCacher stores most).",
            ) from exc
        if job.lazy[i]:
            values[i] = None  # drop the object as soon as it is on disk
    fault_point("after-data")
    assert result.staging is not None
    known: dict[str, tuple[int, int, str, bytes]] = {}
    for cacher in cachers:
        known.update(getattr(cacher, "_written", None) or {})
    files = written_files(result.staging, list(job.outputs), known) if tracked else None
    if files is None:
        files = describe_files(result.staging, list(job.outputs), known)
    for i, (name, cacher) in enumerate(zip(job.outputs, cachers)):
        own = files[name]
        cacher_name = cacher_type(type(cacher))
        identity: list[Any] = [cacher_name, [(f["path"][len(name) :], f["sha256"]) for f in own]]
        classes = _pickled_classes(result.staging, own, job.code_root, known)
        if classes:
            # Editing such a class's methods changes what consumers compute from the same
            # bytes: it is part of the data's identity.
            identity.append(classes)
        version = digest(canonical_json(identity))
        result.outputs_meta[name] = {
            "cacher": cacher_name,
            "lazy": job.lazy[i],
            "version": version,
            "files": own,
            "extra": _extra_metadata(cacher),
        }
        if getattr(cacher, "track", True) is False:  # --store-full leaves its files out
            result.outputs_meta[name]["track"] = False
    result.extra_files = files[""]
    result.save_s = time.perf_counter() - save_started


def _extra_metadata(cacher: Cacheable) -> dict[str, Any]:
    """A cacher's own metadata as plain JSON (other objects as text, a circular one as its
    repr): the entry's metadata is written without a circular-reference check."""
    extra = cacher.extra_metadata
    if not extra:
        return {}
    plain = json_safe(extra)
    return plain if isinstance(plain, dict) else {"repr": plain}


# Bytes: a bigger pickle is data (arrays), not objects whose code matters, and reading it
# whole to list its classes would double the memory a run needs for it.
PICKLE_SCAN_LIMIT = 64 << 20
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)


def _pickled_classes(
    staging: str,
    files: list[dict[str, Any]],
    root: str | None,
    known: dict[str, tuple[int, int, str, bytes]],
) -> list[list[str]]:
    """[module:qualname, fingerprint] of the project classes a pickled file refers to."""
    if root is None:
        return []
    found: dict[str, str] = {}
    for info in files:
        if info["size"] > PICKLE_SCAN_LIMIT:
            continue
        path = f"{staging}{os.sep}{info['path']}"
        seen = known.get(path)
        if seen is not None and seen[3] != b"\x80":
            continue  # written by a cacher, and not a pickle (protocol 2 or later)
        with open(path, "rb") as infile:
            if infile.read(1) != b"\x80":
                continue  # not a pickle (protocol 2 or later)
            infile.seek(0)
            data = infile.read()
        for module, qualname in _pickle_globals(data):
            fingerprint = class_fingerprint(module, qualname, root)
            if fingerprint is not None:
                found[f"{module}:{qualname}"] = fingerprint
    return [[name, found[name]] for name in sorted(found)]


def _pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """(module, qualname) of every class or function a pickle refers to, read from its
    opcodes without unpickling it (strings pushed for STACK_GLOBAL may come from the memo)."""
    import pickletools

    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name == "GLOBAL":
                module, _, qualname = str(arg).partition(" ")
                found.add((module, qualname))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    found.add((recent[-2], recent[-1]))
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg or 0)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(arg or 0)))
            else:
                recent.append(None)
            if len(recent) > 8:
                del recent[:-4]
    except Exception:  # not a pickle after all, or truncated: nothing to add
        return found
    return found


def format_user_traceback(exc: BaseException) -> str:
    """The user's traceback with this package's frames removed."""
    # This package's folder (the folder above this module's engine/ folder).
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if not f.filename.startswith((package_dir, "<frozen importlib"))]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


# ---------------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class Context:
    """What a worker process needs before it can unpickle a job: the project and experiment."""

    root: str  # the project folder: put on sys.path, as the driver does
    module: str  # the experiment's module name ("experiments.demo")
    path: str  # its file: imported from there, so experiments/ needs no __init__.py
    cwd: str = ""  # the driver's working directory: stages open relative paths from there


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


def enter(context: Context) -> None:
    """Work where the driver works, and import the experiment module once (first job)."""
    if context.cwd and os.getcwd() != context.cwd and os.path.isdir(context.cwd):
        os.chdir(context.cwd)
    if sys.modules.get(context.module) is not None:
        loaded = getattr(sys.modules[context.module], "__file__", None)
        if loaded and os.path.realpath(loaded) == os.path.realpath(context.path):
            return
    from curifactory_cli.discovery import ensure_importable, source_spec

    ensure_importable(context.root)
    spec = source_spec(context.module, context.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[context.module] = module
    spec.loader.exec_module(module)


class PipeSafeStream:
    """A text stream whose reader may go away: once a write meets a closed pipe (EPIPE, as
    after `curi run ... | head`), its descriptor is pointed at /dev/null and output is
    dropped, so a stage's `print()` or a progress line cannot stop the computation."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return int(self.stream.write(text))
            except BrokenPipeError:
                self._drop()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        # The stream's buffer still holds what failed: /dev/null takes it at the next flush
        # (the interpreter flushes at exit), and child processes inherit /dev/null too.
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):
            return
        os.dup2(devnull, fd)
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ...
        return getattr(self.stream, name)


def guard_streams() -> None:
    """Make sys.stdout and sys.stderr survive a reader that goes away (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            setattr(sys, name, PipeSafeStream(stream))


def run_payload(context: Context, payload: bytes) -> bytes:
    """A worker's entry point: a pickled Job in, a pickled JobResult out.

    Pickling happens here, inside `try`, so that a value that cannot travel becomes a clear
    error naming the stage instead of a broken pool.
    """
    guard_streams()  # a worker shares the driver's stdout: `| head` must not fail its stages
    enter(context)
    job: Job = pickle.loads(payload)
    result = run_job(job)
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        reportables, result.reportables = result.reportables, []
        failure = result.failure
        if failure is not None and failure.original is not None:
            # The user's exception cannot travel: send its text, which is what is shown.
            result.failure = dataclasses.replace(failure, original=None)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            discard_staging(result.staging)
            result = JobResult(job.index, worker=result.worker)
            result.failure = Failure(
                "error",
                f"stage {job.stage_name!r} ({job.record.name}) returned a value that cannot be "
                f"sent back from a worker process: {type(exc).__name__}: {exc}",
                hint="give the stage a cacher for that output, or run with -j 1.",
                error_type="curifactory_cli.errors:CacheError",
            )
            return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        if reportables:
            sys.stderr.write(f"warning: reportables of {job.label} could not be sent back\n")
        return data


def _worker_record(job: Job) -> tuple[Any, list[Any]]:
    """A Record for a job running away from the driver: params, name, inputs in its state."""
    from curifactory_cli.record import ArtifactManager, Record

    manager = ArtifactManager(job.experiment)

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
