"""Local worker processes (`curi run -j N`): a `concurrent.futures` process pool."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import time
from typing import Any

from curifactory_cli.capture import progress_to
from curifactory_cli.engine.jobs import Job, JobResult
from curifactory_cli.engine.runners import (
    WORKER_PRELOAD,
    ProgressFile,
    died,
    exit_description,
    forkserver_context,
    lost_job,
    main_hidden,
    pickle_job,
    read_progress,
)
from curifactory_cli.engine.worker import Context, run_payload
from curifactory_cli.store import discard_draft


def _init_worker(driver: int, environ: dict[str, str]) -> None:
    # Workers fork from a server started by the first run of this process: give them the
    # driver's environment as it is now (credentials of a remote cache, CURI_* settings).
    os.environ.clear()
    os.environ.update(environ)
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
    with progress_to(ProgressFile(os.path.join(marks, f"{index}.progress"))):
        return run_payload(context, payload)


MAX_RESENDS = 3  # a job lost with a crashed pool is sent again at most this often


class PoolRunner:
    """Local worker processes (`--workers N`): a `concurrent.futures` process pool."""

    inline = False
    shares_files = True

    def __init__(self, workers: int, context: Context) -> None:
        self.capacity = workers
        self.context = context
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[bytes], tuple[Job, bytes]] = {}
        self._unsent: list[tuple[Job, bytes]] = []  # refused by a pool that had just broken
        self._resent: dict[int, int] = {}  # job -> times re-sent after another job's crash
        self._processes: dict[int, Any] = {}
        self._progress_seen: dict[int, int] = {}  # job -> mtime of its progress file, read
        self._marks = tempfile.mkdtemp(prefix="curi-workers-")
        # Workers fork from a server that has imported what every job needs, once.
        self._mp = forkserver_context(WORKER_PRELOAD) or multiprocessing.get_context("spawn")

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.capacity,
                mp_context=self._mp,
                initializer=_init_worker,
                initargs=(os.getpid(), dict(os.environ)),
            )
        return self._pool

    def submit(self, job: Job, record: Any, fn: Any = None) -> None:
        self._send(job, pickle_job(job))

    def _send(self, job: Job, payload: bytes) -> None:
        for name in (str(job.index), f"{job.index}.progress"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._marks, name))
        self._progress_seen.pop(job.index, None)
        pool = self._ensure_pool()
        try:
            with main_hidden():  # the pool may start a worker now
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

    def progress(self) -> list[tuple[int, float, float | None]]:
        updates = []
        for job, _payload in self._futures.values():
            path = os.path.join(self._marks, f"{job.index}.progress")
            try:
                stamp = os.stat(path).st_mtime_ns
            except OSError:
                continue
            if self._progress_seen.get(job.index) == stamp:
                continue
            self._progress_seen[job.index] = stamp
            value = read_progress(path)
            if value is not None:
                updates.append((job.index, *value))
        return updates

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
            ran_in = running.get(job.index)
            discard_draft(job.draft)
            resent = self._resent.get(job.index, 0)
            if ran_in in culprits:
                results.append(died(job, exit_description(exits.get(ran_in))))
            elif resent >= MAX_RESENDS:  # workers die before they even start it: give up
                results.append(died(job, "worker processes keep dying as they start"))
            else:
                self._resent[job.index] = resent + 1
                self._send(job, payload)  # never started, or stopped only by the breakage
        return results

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if cancel:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=cancel)
        if cancel:
            for job, _payload in self._futures.values():
                discard_draft(job.draft)
        self._futures.clear()
        shutil.rmtree(self._marks, ignore_errors=True)
