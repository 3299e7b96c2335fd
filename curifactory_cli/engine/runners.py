"""Job runners: where `run_job` executes. In this process, in local worker processes, on Dask.

A runner takes jobs (`submit`) and hands back their results in any order (`wait`). It never
publishes or decides anything: the scheduler does. A worker that dies (SIGKILL, out of memory)
fails the job it was running with a message saying so; the other jobs are unaffected.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Protocol

from curifactory_cli.engine.jobs import (
    Context,
    Failure,
    InputValue,
    Job,
    JobResult,
    run_job,
    run_payload,
)
from curifactory_cli.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator


class JobRunner(Protocol):
    capacity: int  # how many jobs may be in flight at once
    inline: bool  # runs in this process: live records and in-memory values are passed as is

    def submit(self, job: Job, record: Any) -> None: ...
    def wait(self, timeout: float | None) -> list[JobResult]: ...
    def close(self, cancel: bool = False) -> None: ...


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

    def __init__(self) -> None:
        self._done: list[JobResult] = []

    def submit(self, job: Job, record: Any) -> None:
        paused = not gc.isenabled()  # the scheduler pauses collection for its own work only
        if paused:
            gc.enable()
        try:
            self._done.append(run_job(job, record))
        finally:
            if paused:
                gc.disable()

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
    _discard(job)
    result = JobResult(job.index)
    result.failure = Failure(
        "error",
        f"stage {job.stage_name!r} ({job.record.name}) could not run {where}: "
        f"{type(exc).__name__}: {exc}",
        hint=hint,
        error_type="curifactory_cli.errors:CacheError",
    )
    return result


def _how(exitcode: int | None) -> str:
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


def _discard(job: Job) -> None:
    if job.staging is not None:
        shutil.rmtree(job.staging, ignore_errors=True)


# ---------------------------------------------------------------------------------- processes


def _init_worker(driver: int) -> None:
    # Ctrl-C reaches the whole process group: the driver decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A driver killed outright (SIGKILL, out of memory) cannot stop its workers: they notice
    # and exit, instead of computing for nobody or waiting forever for the next job.
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or not _alive(driver):
                os._exit(70)

    threading.Thread(target=watch, name="curi-driver-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: trust kill()


def _pool_entry(context: Context, marks: str, index: int, payload: bytes) -> bytes:
    # Say which process runs which job, so a dead worker's job can be named. A file, not a
    # queue: a process killed while holding a queue's lock would block the others.
    with open(os.path.join(marks, str(index)), "w") as mark:
        mark.write(str(os.getpid()))
    return run_payload(context, payload)


_PRELOAD = ("curifactory_cli.engine.jobs", "curifactory_cli.record", "curifactory_cli.params")


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start workers without the driver's __main__ (`curi`, a user's script, a notebook).

    multiprocessing re-imports the parent's main module in every new worker, which would run
    a script without an `if __name__ == "__main__"` guard again. Workers need nothing from
    it (they import the experiment by path), so it is hidden while they start.
    """
    main = sys.modules.get("__main__")
    saved = {}
    if main is not None:
        saved = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class PoolRunner:
    """Local worker processes (`--workers N`): a `concurrent.futures` process pool."""

    inline = False

    def __init__(self, workers: int, context: Context) -> None:
        self.capacity = workers
        self.context = context
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[bytes], tuple[Job, bytes]] = {}
        self._unsent: list[tuple[Job, bytes]] = []  # refused by a pool that had just broken
        self._processes: dict[int, Any] = {}
        self._marks = tempfile.mkdtemp(prefix="curi-workers-")
        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods:
            self._mp = multiprocessing.get_context("forkserver")
            # Workers fork from a server that has imported what every job needs, once.
            self._mp.set_forkserver_preload(list(_PRELOAD))
        else:
            self._mp = multiprocessing.get_context("spawn")

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.capacity,
                mp_context=self._mp,
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        return self._pool

    def submit(self, job: Job, record: Any) -> None:
        self._send(job, pickle_job(job))

    def _send(self, job: Job, payload: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._marks, str(job.index)))
        pool = self._ensure_pool()
        try:
            with _main_hidden():  # the pool may start a worker now
                future = pool.submit(_pool_entry, self.context, self._marks, job.index, payload)
        except cf.process.BrokenProcessPool:  # a worker died just now: wait() sorts it out
            self._unsent.append((job, payload))
            return
        self._futures[future] = (job, payload)
        # Keep a handle on every worker process: after a crash, their exit codes say which died.
        self._processes.update(getattr(pool, "_processes", None) or {})

    def wait(self, timeout: float | None) -> list[JobResult]:
        if self._unsent:
            unsent, self._unsent = self._unsent, []
            return self._recover(unsent)
        done, _ = cf.wait(self._futures, timeout, return_when=cf.FIRST_COMPLETED)
        results: list[JobResult] = []
        lost: list[tuple[Job, bytes]] = []
        for future in done:
            job, payload = self._futures.pop(future)
            try:
                results.append(pickle.loads(future.result()))
            except cf.process.BrokenProcessPool:
                lost.append((job, payload))
            except Exception as exc:  # our own code failed in the worker: say so, as an error
                hint = "run with -j 1 to see it in this process."
                results.append(lost_job(job, "in a worker process", exc, hint))
        if lost:
            results.extend(self._recover(lost))
        return results

    def _recover(self, lost: list[tuple[Job, bytes]]) -> list[JobResult]:
        """The pool broke because a worker died: fail the job it ran, re-send the others."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        # Every other job in flight was failed by the broken pool too.
        for future in list(self._futures):
            lost.append(self._futures.pop(future))
        exits: dict[int, int | None] = {}
        for pid, process in self._processes.items():
            process.join(timeout=5)
            exits[pid] = process.exitcode
        self._processes = {}
        running = {}
        for job, _payload in lost:
            try:
                with open(os.path.join(self._marks, str(job.index))) as mark:
                    running[job.index] = int(mark.read() or 0)
            except (OSError, ValueError):
                pass
        # The pool terminates the survivors with SIGTERM; the culprit died otherwise.
        culprits = {
            pid for pid in set(running.values()) if exits.get(pid) not in (-signal.SIGTERM, None)
        }
        if not culprits:
            culprits = set(running.values())
        results = []
        for job, payload in lost:
            pid = running.get(job.index)
            _discard(job)
            if pid in culprits:
                results.append(died(job, _how(exits.get(pid))))
            else:
                self._send(job, payload)  # never started, or stopped only by the breakage
        return results

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if cancel:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=cancel)
        for future, (job, _payload) in list(self._futures.items()):
            if cancel:
                _discard(job)
            del self._futures[future]
        shutil.rmtree(self._marks, ignore_errors=True)


# ---------------------------------------------------------------------------------- dask


def _dask_entry(context: Context, payload: bytes) -> bytes:
    return run_payload(context, payload)


class DaskRunner:
    """Jobs on a `dask.distributed` cluster: a LocalCluster, or one at `scheduler`'s address.

    Workers must see the cache at the same path (a local cluster, or a shared disk).
    """

    inline = False

    def __init__(self, workers: int, context: Context, scheduler: str | None = None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError(
                "--executor dask needs dask.distributed, which is not installed",
                hint="pip install 'curifactory-cli[dask]'",
            ) from None
        self.context = context
        self._cluster = None
        # A local cluster starts (and restarts) worker processes for as long as it runs.
        self._hidden = contextlib.ExitStack()
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        if not address:
            self._hidden.enter_context(_main_hidden())
        try:
            if address:
                self._client = Client(address, timeout="10s")
            else:
                # A killed worker fails its stage (as with local workers) instead of the task
                # being retried on another worker.
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    self._cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=40,
                    )
                self._client = Client(self._cluster)
        except OSError as exc:
            self._hidden.close()
            if not address:
                msg = f"cannot start a local Dask cluster: {exc}"
                raise ConfigError(msg, hint="try -j with the local executor.") from None
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                hint="start one with `dask scheduler`, or leave out --scheduler for a local one.",
            ) from None
        except BaseException:
            self._hidden.close()
            raise
        if address:
            workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        self.capacity = workers
        self._futures: dict[Any, Job] = {}

    def submit(self, job: Job, record: Any) -> None:
        payload = pickle_job(job)
        future = self._client.submit(
            _dask_entry,
            self.context,
            payload,
            pure=False,
            key=f"curi-{job.label}-{os.urandom(4).hex()}",
        )
        self._futures[future] = job

    def wait(self, timeout: float | None) -> list[JobResult]:
        from distributed import wait
        from distributed.scheduler import KilledWorker

        try:
            done, _ = wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        results = []
        for future in done:
            job = self._futures.pop(future)
            try:
                results.append(pickle.loads(future.result()))
            except KilledWorker:
                _discard(job)
                results.append(died(job, "the Dask worker running it was lost"))
            except Exception as exc:
                hint = (
                    "check that the workers run the same Python environment and see the "
                    "project and the cache at the same paths."
                )
                results.append(lost_job(job, "on a Dask worker", exc, hint))
        return results

    def close(self, cancel: bool = False) -> None:
        if cancel and self._futures:
            self._client.cancel(list(self._futures))
            for job in self._futures.values():
                _discard(job)
        self._futures.clear()
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._hidden.close()


def make_runner(
    executor: str, workers: int, context: Context, scheduler: str | None = None
) -> JobRunner:
    if executor == "dask":
        return DaskRunner(workers, context, scheduler)
    if workers <= 1:
        return InlineRunner()
    return PoolRunner(workers, context)
