"""One stage call as plain data (`Job`), what came of it (`JobResult`, `Failure`), and the
failures as they travel between processes.

A job holds no graph objects: a reference to the stage function, the record's name and
parameters, where each input comes from (a cache entry, or an in-memory value) and the draft
folder to write into. `engine.execute.run_job` runs it anywhere (in-process, in a worker
process, on a Dask worker); it never publishes: the driver alone publishes, writes the
registry and emits events.
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.caching import Lazy
from curifactory_cli.errors import CacheError, CurifactoryError
from curifactory_cli.store.ref import RemoteRef

if TYPE_CHECKING:
    from curifactory_cli.parameters.reads import Reads

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
    """One stage call, ready to run anywhere: everything `run_job` needs, picklable, with
    no reference back to the driver's graph, store or records.

    The contract for a `JobRunner`: ship the job as it is (to a thread, a process or another
    machine), call `run_job(job)` there, and hand back the `JobResult` it returns. A job
    with a `draft` folder writes its outputs there and nowhere else; the scheduler, not
    the runner, publishes that folder as the cache entry (or discards it). Inputs come as
    entries to load (`InputEntry`, verified against their checksums when read) or as values
    (`InputValue`); a job never looks anything up in the cache itself.
    """

    index: int  # the node's index in the graph
    stage_ref: str  # "module:qualname" of the decorated stage
    stage_name: str
    experiment: str
    record: RecordInfo
    key: str
    lineage_key: str
    draft: str | None  # the folder to create and save into; None for a stage without cachers
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
    # The stage is keyed on its whole parameter set (params="all"): it gets the set itself,
    # not a view that records what it reads.
    whole_params: bool = False
    # A remote store to upload the outputs to, from wherever the job runs (the driver then
    # only commits the entry's metadata).
    upload: RemoteRef | None = None
    # The folder the draft folder becomes when the driver publishes it (paths the stage
    # returns into its draft folder are pointed there).
    entry_dir: str | None = None
    # The project's root: classes defined under it whose instances are pickled into an
    # output count in that output's version (their code travels inside the value).
    code_root: str | None = None
    # The run's own folder (data/runs/<reference>): where a stage without cachers writes the
    # files it asks record.get_path() for.
    run_dir: str | None = None
    # Dask worker resources the call needs (`@stage(resources=...)`), None for any worker.
    resources: dict[str, float] | None = None

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
    """What executing a Job produced (files are still in `draft`, unpublished)."""

    index: int
    values: list[Any] = field(default_factory=list)  # None where not shipped (or Lazy)
    draft: str | None = None
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
    # What the call read of its parameter set (None: it had none).
    reads: Reads | None = None
    # The metrics it recorded (record.metric), by name; None: it recorded none.
    metrics: dict[str, int | float | bool] | None = None


# ------------------------------------------------------------------------------- failures


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


def format_user_traceback(exc: BaseException) -> str:
    """The user's traceback with this package's frames removed."""
    # This package's folder (the folder above this module's engine/ folder).
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if not f.filename.startswith((package_dir, "<frozen importlib"))]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)
