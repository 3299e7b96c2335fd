"""Running a stage call the scheduler requested: where it runs (this process or a worker),
the lock of its cache entry (waited for while another run holds it, then the entry looked up
again: that run may have published it), and its result once it comes back (committed, or a
failure, or a damaged input to repair).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.jobmaker import InputDamaged
from curifactory_cli.engine.jobs import Failure, Job, JobResult, rebuild_error
from curifactory_cli.engine.keys import known_version, memory_version
from curifactory_cli.engine.node_states import RUNNING, NodeStates
from curifactory_cli.engine.probe_locks import ProbeLock, ProbeLocks
from curifactory_cli.engine.sharing import probe_of_call
from curifactory_cli.errors import CacheError, CurifactoryError, StageError
from curifactory_cli.events import NodeStarted, NodeWaiting
from curifactory_cli.graph import Node, Outcome, entry_namespace
from curifactory_cli.store import discard_draft

if TYPE_CHECKING:
    from curifactory_cli.engine.decide import FactFinder
    from curifactory_cli.engine.jobmaker import JobMaker
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.engine.runners import InlineRunner, JobRunner
    from curifactory_cli.store.base import Lock, Store

# With workers, a stage whose calls take under INLINE_BELOW_S (after INLINE_AFTER of them) runs
# in this process: a round trip to a worker costs about a millisecond.
INLINE_BELOW_S = 0.005
INLINE_AFTER = 3
# Waiting this long for another run's lock is said on stderr (even with -q or --json): a run
# that prints nothing for minutes looks hung.
LOCK_NOTICE_S = 10.0
CONCURRENT = "cached (computed by a concurrent run)"


class Dispatcher(NodeStates):
    """Hands requested calls to a runner and completes what comes back (the scheduler's
    second part; see engine.scheduler, which sets every field below)."""

    store: Store
    keys: KeyMaker
    runner: JobRunner
    finder: FactFinder
    jobs: JobMaker
    lock_timeout: float | None  # seconds to wait for another run's lock (None: ever)
    logbook: Callable[[dict[str, Any]], None] | None  # what each call that ran printed
    # Waiting for another run's lock: (node, job, lock, since when, said so yet).
    _locked: list[tuple[int, Job, Lock, float, bool]]
    _in_flight: dict[int, tuple[Job, Lock | None, float, int]]
    _slots: list[int]  # free worker slots; 0 is here
    _local: InlineRunner
    _placed: dict[int, bool]  # node -> runs in this process
    _timings: dict[str, list[float]]  # stage -> seconds of its last calls
    _fresh: set[int]  # executed in this run
    _keyed: dict[int, list[str | None]]  # input versions a node was keyed from
    _replace: set[int]  # recomputed over an existing entry on purpose
    _probe_locks: ProbeLocks
    experiment: str

    def _dispatch(self, node: Node) -> None:
        self._state[node.index] = RUNNING
        # Inputs are final now (a damaged upstream may have been recomputed): key them, unless
        # the key was made from these very versions.
        versions = [ref.version for ref in node.upstream()]
        if self._keyed.pop(node.index, None) != versions or node.probe_source is node.probe:
            # (both None: a hit, recomputed now that its entry was found damaged)
            node.key_parts, node.key, node.probe_source = self.keys.data_key(node, known_version)
            node.probe = None
        if node.is_cached_stage:
            assert node.key is not None  # keyed above
            node.entry_dir = self.finder.entry_dir(node, node.key)
        else:
            self._set_memory_versions(node)
        here = self._placed[node.index] = self._here(node)
        try:
            job = self.jobs.job(node, here)
        except InputDamaged as damaged:
            self._repair(node, damaged.args)
            return
        except CurifactoryError as exc:
            self._fail(node, exc, time.perf_counter())
            return
        lock = None
        if node.is_cached_stage and not self.store.dry and node.key is not None:
            lock = self._lock(node)
            if not lock.acquire_nowait():
                if self._progress:
                    self._emit(NodeWaiting(node.index, node.stage.name, node.record_name))
                self._locked.append((node.index, job, lock, time.monotonic(), False))
                return
        self._locked_in(node, job, lock)

    def _lock(self, node: Node) -> Lock:
        """The lock a call holds while it runs: its entry's, or, for a call that may share
        its entry with other sets, its probe's (engine.probe_locks)."""
        if node.index not in self._repaired and self.finder.shares(node):
            probe = probe_of_call(node)
            if probe is not None:
                return self._probe_locks.lock(probe)
        assert node.key is not None  # keyed before it is dispatched
        return self.store.entry_lock(node.key)

    def _retry_locks(self, block: bool) -> None:
        """Try the locks other runs hold; with `block`, wait a little for the first (the
        caller comes back while nothing else can progress)."""
        waiting, self._locked = self._locked, []
        for i, (index, job, lock, since, said) in enumerate(waiting):
            if self._stop is not None:
                self._state.pop(index, None)
                continue
            lock_free = lock.acquire_within(0.5) if block and i == 0 else lock.acquire_nowait()
            if lock_free:
                self._locked_in(self.nodes[index], job, lock, waited=True)
                continue
            node, waited = self.nodes[index], time.monotonic() - since
            if self.lock_timeout is not None and waited >= self.lock_timeout:
                self._fail(
                    node,
                    CacheError(
                        f"{node.label}: waited {waited:.0f} s for the lock of its "
                        f"{_what(lock)}, held by another run ({lock.path})",
                        hint=f"that run is computing the same {_what(lock)}: let it finish, "
                        "or raise --lock-timeout.",
                    ),
                    time.perf_counter(),
                )
                continue
            if not said and waited >= LOCK_NOTICE_S:
                said = True
                self._warn(
                    f"{node.label}: waiting for another run computing the same "
                    f"{_what(lock)} (lock {lock.path})"
                )
            self._locked.append((index, job, lock, since, said))

    def _can_dispatch(self, index: int) -> bool:
        return bool(self._slots) or self._here(self.nodes[index])

    def _here(self, node: Node) -> bool:
        """Run this call in this process? Always with an in-process runner; with workers, only
        a stage whose calls so far took under INLINE_BELOW_S each: shipping it to a worker
        and back would cost more than running it."""
        if self.runner.inline:
            return True
        seen = self._timings.get(node.stage.name)
        return (
            seen is not None
            and len(seen) >= INLINE_AFTER
            and sorted(seen)[len(seen) // 2] < INLINE_BELOW_S  # the median
        )

    def _locked_in(self, node: Node, job: Job, lock: Lock | None, waited: bool = False) -> None:
        """Start a call whose entry's lock is held (or that needs none), in this process or
        on a worker; one placed here runs to its end now. `waited`: another run held it."""
        if lock is not None and self._published_meanwhile(node, job, lock, waited):
            return
        here = self._placed.pop(node.index)
        slot = 0 if here and not self.runner.inline else self._slots.pop()
        if self._progress:
            where = None if self.runner.inline else (f"worker {slot}" if slot else "main process")
            self._emit(
                NodeStarted(node.index, node.stage.name, node.record_name, node.reason, where)
            )
        self._in_flight[node.index] = (job, lock, time.perf_counter(), slot)
        runner = self._local if here else self.runner
        try:
            runner.submit(job, node.record, node.stage.fn)
        except CurifactoryError as exc:  # the job cannot be sent to a worker
            self._not_sent(node, slot, lock, exc)
            return
        if here:
            for result in self._local.wait(0):
                self._complete(result)

    def _published_meanwhile(self, node: Node, job: Job, lock: Lock, waited: bool) -> bool:
        """Whether another run published this entry while we waited for its lock, or, after
        waiting for a probe's lock, an entry this call may share: then the call is a hit and
        the lock is released. (Not for a repair or a forced run: they replace the entry.)"""
        if node.index in self._repaired or self.finder.forced(node):
            return False
        assert node.entry_dir is not None and node.key is not None
        entry, _ = self.store.recheck(node.entry_dir, node.key, list(job.outputs))
        reason = CONCURRENT
        if entry is None and waited and isinstance(lock, ProbeLock):
            self.finder.sharing.refresh(entry_namespace(node, self.experiment))
            found = self.finder.share(node, node, node.entry_dir)
            if found is not None:
                entry, reason = found[0], f"{found[1]}, computed by a concurrent run"
        if entry is None:
            return False
        lock.release()
        self._hit(node, entry, reason)
        return True

    def _not_sent(self, node: Node, slot: int, lock: Lock | None, error: CurifactoryError) -> None:
        """A job the runner refused: its slot and lock are given back, its call fails."""
        self._in_flight.pop(node.index)
        if slot:
            self._slots.append(slot)
        if lock is not None:
            lock.release()
        self._fail(node, error, time.perf_counter())

    def _complete(self, result: JobResult) -> None:
        """A job came back: repair the input it found damaged, fail its call, or commit it."""
        node = self.nodes[result.index]
        job, lock, started, slot = self._in_flight.pop(result.index)
        if slot:
            self._slots.append(slot)
        node.seconds = time.perf_counter() - started
        try:
            if result.corrupt is not None:
                self._repair(node, result.corrupt)
            elif result.failure is not None:
                self._fail(node, failure_error(node, result.failure), started)
            elif not self._executed(node, job, result, started):
                return  # its entry could not be published: the call failed, nothing to log
        finally:
            if lock is not None:
                lock.release()
        if self.logbook is not None and (result.log or result.failure is not None):
            self.logbook(_log_entry(node, result))

    def _executed(self, node: Node, job: Job, result: JobResult, started: float) -> bool:
        """Publish what a job computed and settle its call; False if publishing failed (the
        call failed)."""
        seen = self._timings.setdefault(node.stage.name, [])
        seen.append(result.compute_s + result.save_s)
        del seen[:-15]  # the recent calls tell
        try:
            self.committer.publish(node, job, result, node.index in self._replace)
        except CurifactoryError as exc:
            self._fail(node, exc, started)
            return False
        node.outcome = Outcome.EXECUTED
        self._fresh.add(node.index)
        self._state.pop(node.index, None)
        if result.reportables:
            node.record.reportables.extend(result.reportables)
        self._finished(node)
        self._settled(node)
        self._wake(node)
        return True

    def _abandon(self) -> None:
        """Interrupted: stop the workers, remove what they staged, release every lock."""
        self.runner.close(cancel=True)
        self._local.close(cancel=True)
        for job, lock, _started, _slot in self._in_flight.values():
            discard_draft(job.draft)
            if lock is not None:
                lock.release()
        self._in_flight.clear()
        self._locked.clear()  # their locks were never acquired

    def _set_memory_versions(self, node: Node) -> None:
        for ref in node.outputs:
            ref.version = memory_version(node.key or "", ref.name)


def failure_error(node: Node, failure: Failure) -> CurifactoryError:
    """The error a failed job stands for in the driver: the user's exception as a StageError
    (its own object when it could travel, else one named like it), or our own error rebuilt."""
    if failure.kind != "stage":
        return rebuild_error(failure)
    original = failure.original or remote_error(failure.exc_type, failure.message)
    error = StageError(node.stage.name, node.record_name, original)
    error.traceback_text = failure.traceback  # shown by the console
    return error


class RemoteError(Exception):
    """A stage's exception that could not travel back from another process, by its text."""


def remote_error(type_name: str, message: str) -> RemoteError:
    """An exception named like the original (`ValueError: ...` reads the same)."""
    cls = type(type_name or "RemoteError", (RemoteError,), {})
    error: RemoteError = cls(message.partition(": ")[2] if ": " in message else message)
    return error


def _log_entry(node: Node, result: JobResult) -> dict[str, Any]:
    """A stage call's line in the run's log: what it printed, and why it failed."""
    entry: dict[str, Any] = {
        "position": node.index,
        "stage": node.stage.name,
        "record": node.record_name,
        "outcome": node.outcome.value if node.outcome else "retried",
        "seconds": round(node.seconds, 4),
        "worker": result.worker,
        "log": result.log,
    }
    failure = result.failure
    if failure is not None:
        entry["error"] = failure.message
        if failure.traceback:
            entry["traceback"] = failure.traceback
    return entry


def _what(lock: Lock) -> str:
    """What a lock keeps two runs from computing at once."""
    if isinstance(lock, ProbeLock):  # a computation other sets may share
        return "computation (stage, code and inputs)"
    return "cache entry"
