"""Job runners: where `run_job` executes. This module: the protocol, the in-process runner,
and what the worker-process runner (`pool`) and the Dask runner (`dask_runner`) share.

A runner takes jobs (`submit`) and hands back their results in any order (`wait`). It never
publishes or decides anything: the scheduler does. A worker that dies (SIGKILL, out of memory)
fails the job it was running with a message saying so; the other jobs are unaffected.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from curifactory_cli.capture import progress_to
from curifactory_cli.engine.execute import run_job
from curifactory_cli.engine.jobs import Failure, InputValue, Job, JobResult
from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.store import discard_draft

if TYPE_CHECKING:
    from collections.abc import Iterator


class JobRunner(Protocol):
    """Where jobs execute. The contract:

    * `submit(job, record, fn)` starts a job and returns at once (an in-process runner may
      run it before returning); the job is self-contained (`run_job(job)` needs nothing from
      the driver but the project's files); `record`/`fn` are the live objects, for a runner
      that runs jobs in the driver's process, and are ignored by others.
    * `wait(timeout)` returns the results finished since the last call, in any order, after
      at most `timeout` seconds (None: until one is ready); a job that could not finish
      (its worker died) comes back as a result with a failure, never as an exception.
    * `progress()` returns what running jobs reported since last asked: (index, done, total).
    * `close(cancel)` frees the workers; with `cancel`, jobs in flight are abandoned and
      their draft folders removed.

    A runner never decides, keys, locks or publishes: the scheduler does, in the driver.
    """

    capacity: int  # how many jobs may be in flight at once
    inline: bool  # runs in this process: live records and in-memory values are passed as is
    shares_files: bool  # its workers see this machine's files (the local cache tier)

    # `record` and `fn` (the stage's function) are the live objects, for a runner that runs
    # jobs in this process; others rebuild both from the job.
    def submit(self, job: Job, record: Any, fn: Any = None) -> None: ...
    def wait(self, timeout: float | None) -> list[JobResult]: ...
    # What running jobs said of their progress since last asked: (index, done, total).
    def progress(self) -> list[tuple[int, float, float | None]]: ...
    def close(self, cancel: bool = False) -> None: ...


# What every job needs, imported once by the fork server that worker processes start from.
WORKER_PRELOAD = (
    "curifactory_cli.engine.worker",
    "curifactory_cli.record",
    "curifactory_cli.params",
)


def forkserver_context(preload: tuple[str, ...]) -> Any:
    """The `forkserver` start method, its server importing `preload` (None where there is
    no forkserver). The server is a fresh interpreter: workers forked from it carry nothing
    of the driver (no threads, locks, open entries or user state), unlike `fork`, and skip
    the imports that make `spawn` slow. It is one per process: the first preload wins."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_workers(text: str | int | None) -> int:
    """`-j N` or `-j auto` (the cores this process may use)."""
    if text is None:
        return 1
    if isinstance(text, int):
        value = text
    elif text.strip().lower() == "auto":
        return usable_cores()
    else:
        try:
            value = int(text)
        except ValueError:
            value = 0
    if value < 1:
        raise ConfigError(
            f"--workers {text!r}: expected a positive number or 'auto'",
            hint="e.g. -j 4, or -j auto for one worker per usable core.",
        )
    return value


# ---------------------------------------------------------------------------------- inline


class InlineRunner:
    """Runs each job at once, in this process: the default, with no overhead."""

    capacity = 1
    inline = True
    shares_files = True

    def __init__(self) -> None:
        self._done: list[JobResult] = []
        # Told at once of a job's progress (the job blocks this process while it runs).
        self.on_progress: Callable[[int, float, float | None], None] | None = None

    def submit(self, job: Job, record: Any, fn: Any = None) -> None:
        paused = not gc.isenabled()  # the scheduler pauses collection for its own work only
        if paused:
            gc.enable()
        on_progress = self.on_progress
        sink = None if on_progress is None else partial(on_progress, job.index)
        try:
            with progress_to(sink):
                self._done.append(run_job(job, record, fn))
        finally:
            if paused:
                gc.disable()

    def progress(self) -> list[tuple[int, float, float | None]]:
        return []

    def wait(self, timeout: float | None) -> list[JobResult]:
        done, self._done = self._done, []
        return done

    def close(self, cancel: bool = False) -> None:
        self._done.clear()


# ---------------------------------------------------------------------------------- shared


def pickle_job(job: Job) -> bytes:
    """The job as bytes for another process, or a CacheError naming what cannot travel."""
    if "<locals>" in job.stage_ref:
        raise CacheError(
            f"stage {job.stage_name!r} is defined inside a function, so a worker process "
            "cannot import it",
            hint="define the stage at module level, or run with -j 1.",
        )
    try:
        return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    sources: list[tuple[str, Any]] = list(job.inputs)
    for name, pairs in job.aggregate_inputs:
        sources.extend((name, source) for _, source in pairs)
    for name, source in sources:
        if isinstance(source, InputValue) and not _picklable(source.value):
            raise CacheError(
                f"stage {job.stage_name!r} ({job.record.name}): input {name!r} is an in-memory "
                f"value that cannot be sent to a worker process ({problem})",
                hint="give the stage that produces it a cacher, or run with -j 1.",
            )
    if not _picklable(job.record.params):
        raise CacheError(
            f"parameter set {job.record.name!r} cannot be sent to a worker process ({problem})",
            hint="define its class at module level, or run with -j 1.",
        )
    raise CacheError(
        f"stage {job.stage_name!r} ({job.record.name}) cannot be sent to a worker process "
        f"({problem})",
        hint="its cachers and call arguments must be picklable; or run with -j 1.",
    )


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


class ProgressFile:
    """Where a job in a worker process reports its progress: a small file the driver reads
    (a worker killed while writing it blocks nobody, as it would holding a queue's lock)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, done: float, total: float | None) -> None:
        part = f"{self.path}.{os.getpid()}"
        with open(part, "w") as out:
            out.write(f"{done!r} {total!r}")
        os.replace(part, self.path)  # a reader sees the last value whole, never half of it


def read_progress(path: str) -> tuple[float, float | None] | None:
    try:
        with open(path) as infile:
            done, total = infile.read().split()
        return float(done), None if total == "None" else float(total)
    except (OSError, ValueError):
        return None


def died(job: Job, how: str) -> JobResult:
    """The result of a job whose worker died under it."""
    result = JobResult(job.index)
    result.failure = Failure(
        "stage",
        f"WorkerDied: the worker process running it died ({how})",
        exc_type="WorkerDied",
        hint="finished stages stay cached; run again to resume.",
    )
    return result


def lost_job(job: Job, where: str, exc: BaseException, hint: str) -> JobResult:
    """The result of a job that our own code could not run `where` (an error, exit 1)."""
    discard_draft(job.draft)
    result = JobResult(job.index)
    result.failure = Failure(
        "error",
        f"stage {job.stage_name!r} ({job.record.name}) could not run {where}: "
        f"{type(exc).__name__}: {exc}",
        hint=hint,
        error_type="curifactory_cli.errors:CacheError",
    )
    return result


def exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        extra = "; the system may have run out of memory" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{extra}"
    return f"it exited with code {exitcode}"


@contextlib.contextmanager
def main_hidden() -> Iterator[None]:
    """Start workers without the driver's __main__ (`curi`, a user's script, a notebook).

    multiprocessing re-imports the parent's main module in every new worker, which would run
    a script without an `if __name__ == "__main__"` guard again. Workers need nothing from
    it (they import the experiment by path), so it is hidden while they start.
    """
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {}
    if main is not None:
        saved = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
