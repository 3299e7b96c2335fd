"""The run itself: an explicit ready-set walk over the traced graph.

A stage call is *decided* (by `decide.decide`) once every stage call it reads from is settled.
Settled means: cached, executed, failed, skipped, or deferred (its entry is missing but nothing
has needed it yet). A call that must run is *requested*; it becomes *ready* when every input
it reads is available, and is then handed to a job runner. Results come back in any order and
are committed here (published, events emitted) by this process alone.

A deferred call runs only when something needs its data: a consumer that runs, or a consumer
that cannot be decided without it (no entry found by lineage). Each call is decided at most
twice and executed at most once (twice only to repair a damaged entry), so the cost of a run is
linear in the number of stage calls, and there is no recursion.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.commit import Committer
from curifactory_cli.engine.decide import (
    NEEDED_DOWNSTREAM,
    Action,
    FactFinder,
    Facts,
    decide,
    needed_by,
    unneeded,
)
from curifactory_cli.engine.jobmaker import InputDamaged, JobMaker
from curifactory_cli.engine.jobs import (
    Job,
    JobResult,
    rebuild_error,
)
from curifactory_cli.engine.keys import memory_version
from curifactory_cli.engine.runners import InlineRunner
from curifactory_cli.errors import CacheError, CurifactoryError, StageError
from curifactory_cli.events import NodeFinished, NodeProgress, NodeStarted, NodeWaiting, Warned
from curifactory_cli.graph import (
    NOT_COMPUTED,
    Node,
    Outcome,
    producers_through_memory,
)
from curifactory_cli.store import CorruptEntryError, discard_staging

if TYPE_CHECKING:
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.events import Event, Reporter
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Lock, Store

# With workers, a stage whose calls take under INLINE_BELOW_S (after INLINE_AFTER of them) runs
# in this process: a round trip to a worker costs about a millisecond.
INLINE_BELOW_S = 0.005
# Waiting this long for another run's lock is said on stderr (even with -q or --json): a run
# that prints nothing for minutes looks hung.
LOCK_NOTICE_S = 10.0
INLINE_AFTER = 3
PROGRESS_POLL_S = 0.25  # how often workers' progress is read while jobs run

# What the scheduler knows of a node beyond its outcome.
_DEFERRED = "deferred"  # decided: missing or uncached, not needed yet
_REDECIDE = "redecide"  # waiting for upstream calls that must run before it can be decided
_REQUESTED = "requested"  # must run; waiting for its inputs
_RUNNING = "running"  # handed to the runner (or waiting for another run's lock)


class Scheduler:
    """Runs one traced graph against a store through a job runner."""

    def __init__(
        self,
        *,
        store: Store,
        keys: KeyMaker,
        runner: JobRunner,
        reporter: Reporter,
        experiment: str,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
        keep_going: bool = False,
        lock_timeout: float | None = None,
        provenance: dict[str, Any] | None = None,
        logbook: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.runner = runner
        self.reporter = reporter
        # Per-stage-call events only for a reporter that shows or keeps them (not --quiet,
        # --json or a plain API call): thousands of them would be built for nobody.
        self._progress = getattr(reporter, "progress", True)
        self.experiment = experiment
        self.finder = FactFinder(
            store, experiment, overwrite, overwrite_stages, fingerprinter=keys.fingerprinter
        )
        self.keep_going = keep_going
        self.lock_timeout = lock_timeout  # seconds to wait for another run's lock (None: ever)
        self.provenance = provenance or {}
        self.logbook = logbook  # receives what each stage call that ran printed, or its failure
        self.failures: list[StageError] = []
        self._state: dict[int, str] = {}
        self._pending: dict[int, int] = {}  # producers not settled yet, per node
        self._waiters: dict[int, list[int]] = {}  # producer -> nodes waiting for it to finish
        self._needs: dict[int, set[int]] = {}  # node -> producers it still waits for
        self._to_decide: list[int] = []
        self._ready: list[int] = []
        # Waiting for another run's lock: (node, job, lock, since when, said so yet).
        self._locked: list[tuple[int, Job, Lock, float, bool]] = []
        self._in_flight: dict[int, tuple[Job, Lock | None, float, int]] = {}
        self._slots = list(range(runner.capacity, 0, -1))  # free worker slots; 0 is here
        self._local = InlineRunner()
        # Progress a stage reports (record.progress): from a job in this process at once, from
        # workers by asking the runner every PROGRESS_POLL_S while jobs run.
        self._polls = self._progress and not runner.inline and hasattr(runner, "progress")
        if self._progress:
            self._local.on_progress = self._on_progress
            if isinstance(runner, InlineRunner):
                runner.on_progress = self._on_progress
        self._placed: dict[int, bool] = {}  # node -> runs in this process
        self._timings: dict[str, list[float]] = {}  # stage -> seconds of its last calls
        self._fresh: set[int] = set()  # executed in this run
        self._keyed: dict[int, list[str | None]] = {}  # input versions a node was keyed from
        self._replace: set[int] = set()  # recomputed over an existing entry on purpose
        self._done: set[int] = set()  # settled: consumers were told
        self._repaired: set[int] = set()
        self._warned: set[str] = set()
        self.committer = Committer(
            store, keys, experiment, self.provenance, self._lineage, self._warn
        )
        self.jobs = JobMaker(
            store,
            self.committer,
            experiment,
            keys.fingerprinter.root,
            self._lineage,
            self._fresh,
            runner.shares_files,
        )
        self._stop: BaseException | None = None
        self.nodes: list[Node] = []

    # ------------------------------------------------------------------ driving
    def run(self, nodes: list[Node]) -> None:
        """Settle every node. A failing stage stops the run (running jobs finish first), or
        with `keep_going` is collected in `failures` while everything not depending on it runs.
        """
        self.nodes = nodes
        self._activate(nodes)
        self._drive()
        if self._stop is not None:
            raise self._stop
        for node in nodes:
            if node.outcome is None:
                node.outcome = Outcome.SKIPPED
                node.reason = unneeded(node.reason, node.is_cached_stage)
                self._finished(node)

    def settle(self, nodes: list[Node], wanted: list[Node]) -> None:
        """Settle the `wanted` calls of a graph that is still growing (`nodes`, the whole
        list so far) and what they need, and nothing else, now: interactive use runs each
        stage call as it is made, and `curi run` settles an output run() reads while it is
        traced. Calls settled earlier keep their outcome; a failure is raised, and the
        scheduler stays usable for the next call."""
        self.nodes = nodes
        needed: dict[int, Node] = {}
        stack = list(wanted)
        while stack:  # the wanted calls and every call upstream of them, not settled yet
            node = stack.pop()
            if node.index in needed or node.index in self._pending:
                continue
            needed[node.index] = node
            stack.extend(ref.node for ref in node.upstream())
        self._activate([needed[i] for i in sorted(needed)])
        self._drive()
        for node in wanted:
            if node.outcome is None and self._state.get(node.index) == _DEFERRED:
                self._request(node, node.reason or "asked for")
        self._drive()
        stop, self._stop = self._stop, None
        if stop is not None:
            raise stop

    def _activate(self, nodes: list[Node]) -> None:
        """Start settling `nodes`: each is decided once the calls it reads from are."""
        if not nodes:
            return
        self.finder.prefetch(nodes)
        if not self._pending:
            self._pending = {node.index: node.producers for node in nodes}
            # Traced order is index order, so this list is already a heap.
            self._to_decide = [node.index for node in nodes if not node.producers]
            return
        for node in nodes:  # a graph that grew: some producers are settled already
            waiting = {ref.node.index for ref in node.upstream()} - self._done
            self._pending[node.index] = len(waiting)
            if not waiting:
                heapq.heappush(self._to_decide, node.index)

    def _drive(self) -> None:
        # The collector would walk the whole graph again and again while it is being settled,
        # for garbage that is not there: the graph is live until the run ends. It stays off
        # for our bookkeeping and on while user code runs (see InlineRunner).
        collecting = gc.isenabled()
        gc.freeze()
        gc.disable()
        # Inside a run (see survivors_frozen), nothing is frozen while stages run: a stage's
        # own objects, alive at a full collection, would be kept until the run ends.
        in_run = _freeze_survivors in gc.callbacks
        if in_run:
            gc.callbacks.remove(_freeze_survivors)
        try:
            self._loop()
        except BaseException:
            self._abandon()
            raise
        finally:
            if in_run:  # what the run made lives until its wind-up is done
                gc.freeze()
                gc.callbacks.append(_freeze_survivors)
            else:
                gc.unfreeze()
            if collecting:
                gc.enable()

    def _loop(self) -> None:
        while True:
            while self._to_decide and self._stop is None:
                self._decide(self.nodes[heapq.heappop(self._to_decide)])
            while self._ready and self._stop is None and self._can_dispatch(self._ready[0]):
                self._dispatch(self.nodes[heapq.heappop(self._ready)])
            ready = self._ready and self._can_dispatch(self._ready[0])
            if self._stop is None and (self._to_decide or ready):
                continue
            if self._in_flight:
                timeout = 0.05 if self._locked else None
                if self._polls and timeout is None:
                    timeout = PROGRESS_POLL_S
                for result in self.runner.wait(timeout):
                    self._complete(result)
                if self._polls:
                    for index, done, total in self.runner.progress():
                        if index in self._in_flight:
                            self._on_progress(index, done, total)
                self._retry_locks(block=False)
            elif self._locked and self._stop is None:
                self._retry_locks(block=True)
            else:
                return

    def _emit(self, event: Event) -> None:
        self.reporter.emit(event)

    def _on_progress(self, index: int, done: float, total: float | None) -> None:
        node = self.nodes[index]
        self._emit(NodeProgress(index, node.stage.name, node.record_name, done, total))

    def _finished(self, node: Node) -> None:
        if not self._progress:
            return
        self._emit(
            NodeFinished(
                node.index,
                node.stage.name,
                node.record_name,
                (node.outcome or Outcome.SKIPPED).value,
                node.reason,
                node.seconds,
                node.key,
                node.entry_dir,
            )
        )

    def _warn(self, message: str) -> None:
        self._emit(Warned(message))

    # ------------------------------------------------------------------ deciding
    def _has_fresh_input(self, node: Node) -> bool:
        """Whether an input was (re)computed in this run, directly or through uncached stages."""
        if not self._fresh:
            return False  # nothing has run yet (a cached run never gets past this)
        return any(p.index in self._fresh for p in producers_through_memory(node.upstream()))

    def facts(self, node: Node) -> Facts:
        """Compute the node's keys (as far as its inputs allow) and what decide() needs."""
        known = all(ref.version is not None for ref in node.upstream())
        if known:
            node.key_parts, node.key = self.keys.data_key(node, lambda ref: ref.version)
            self._keyed[node.index] = [ref.version for ref in node.upstream()]
            if not node.is_cached_stage:
                self._set_memory_versions(node)
        fresh = known and self._has_fresh_input(node)
        # The lineage key is only looked at when the data key cannot be made (and recorded
        # when the call runs): a cached run makes none.
        lineage = "" if known else self._lineage(node)
        facts = self.finder.facts(node, lineage, node.key if known else None, fresh)
        if facts.entry_dir is not None:
            node.entry_dir = facts.entry_dir
        return facts

    def _lineage(self, node: Node) -> str:
        """The node's lineage key, made (with those of its upstream calls) when first asked
        for; iterative: a chain of any length."""
        stack = [node]
        while stack:
            top = stack[-1]
            if top.lineage_key is not None:
                stack.pop()
                continue
            missing = [ref.node for ref in top.upstream() if ref.node.lineage_key is None]
            if missing:
                stack.extend(missing)
                continue
            top.lineage_key = self.keys.lineage_key(top, lambda n: n.lineage_key)
            stack.pop()
        assert node.lineage_key is not None
        return node.lineage_key

    def _set_memory_versions(self, node: Node) -> None:
        for ref in node.outputs:
            ref.version = memory_version(node.key or "", ref.name)

    def _decide(self, node: Node) -> None:
        if node.outcome is not None:
            return  # skipped because an input it waited for failed
        facts = self.facts(node)
        decision = decide(facts, self.store)
        if decision.problem and node.entry_dir not in self._warned:
            self._warned.add(str(node.entry_dir))
            self._warn(f"{node.label}: ignoring cache entry: {decision.problem}")
        action = decision.action
        if action is Action.CACHED:
            assert decision.entry is not None
            self._hit(node, decision.entry, decision.reason)
        elif action is Action.RUN:
            if facts.forced or decision.problem:
                self._replace.add(node.index)  # a shared store must take the new entry
            self._request(node, decision.reason)
        elif action is Action.DEFER:
            self._state[node.index] = _DEFERRED
            if node.is_cached_stage:
                node.reason = decision.reason
            self._settled(node)
        else:  # NEED_INPUTS: run the upstream calls whose data is unknown, then decide again
            missing = [ref.node for ref in node.upstream() if ref.version is None]
            if any(p.outcome in (Outcome.FAILED, Outcome.SKIPPED) for p in missing):
                for producer in missing:  # what does not depend on the failure still runs
                    if producer.outcome is None:
                        self._request(producer, producer.reason or needed_by(node.label))
                self._skip(node)
                return
            self._state[node.index] = _REDECIDE
            self._needs[node.index] = {p.index for p in missing}
            for producer in missing:
                self._waiters.setdefault(producer.index, []).append(node.index)
                self._request(producer, producer.reason or needed_by(node.label))

    def _settled(self, node: Node) -> None:
        """The node's consumers may be decidable now (once: a deferred call that later runs,
        or a damaged entry that is recomputed, is not settled twice)."""
        if node.index in self._done:
            return
        self._done.add(node.index)
        pending = self._pending
        for consumer in node.dependants:
            if consumer not in pending:
                continue  # traced later (interactive use): counted when it is activated
            pending[consumer] -= 1
            if pending[consumer] == 0:
                heapq.heappush(self._to_decide, consumer)

    def _hit(self, node: Node, entry: Entry, reason: str) -> None:
        node.outcome = Outcome.CACHED
        node.reason = reason
        self.committer.use_entry(node, entry)
        self._state.pop(node.index, None)
        self._finished(node)
        self._settled(node)
        self._wake(node)

    # ------------------------------------------------------------------ requesting
    def _request(self, node: Node, reason: str) -> None:
        """Mark `node` to run, with every deferred call whose data it reads.

        If an input's stage failed, the node cannot run, but the deferred calls it reads still
        do (with --keep-going, everything that does not depend on a failure runs).
        """
        stack = [(node, reason)]
        while stack:
            current, why = stack.pop()
            state = self._state.get(current.index)
            if current.outcome is not None or state in (_REQUESTED, _RUNNING):
                continue
            self._state[current.index] = _REQUESTED
            current.reason = why
            needs: set[int] = set()
            blocked = False
            for ref in current.upstream():
                producer = ref.node
                if producer.outcome in (Outcome.FAILED, Outcome.SKIPPED):
                    blocked = True
                    continue
                if producer.outcome is not None and ref.value is not NOT_COMPUTED:
                    continue  # available
                if producer.index not in needs:
                    needs.add(producer.index)
                    self._waiters.setdefault(producer.index, []).append(current.index)
                if self._state.get(producer.index) == _DEFERRED:
                    stack.append((producer, producer.reason or NEEDED_DOWNSTREAM))
            if blocked:
                self._skip(current)
            elif needs:
                self._needs[current.index] = needs
            else:
                heapq.heappush(self._ready, current.index)

    def _skip(self, node: Node) -> None:
        """An input's stage failed: the node, and whatever waits on it, cannot run."""
        stack = [node]
        while stack:
            current = stack.pop()
            if current.outcome is not None:
                continue
            current.outcome = Outcome.SKIPPED
            current.reason = "not run: an upstream stage failed"
            self._state.pop(current.index, None)
            self._finished(current)
            self._settled(current)
            stack.extend(self.nodes[w] for w in self._waiters.pop(current.index, ()))

    def _wake(self, node: Node) -> None:
        """`node` finished: whatever waited for it may run, or be decided."""
        for waiter in self._waiters.pop(node.index, ()):
            needs = self._needs.get(waiter)
            if needs is None or node.index not in needs:
                continue
            needs.discard(node.index)
            if needs:
                continue
            del self._needs[waiter]
            state = self._state.get(waiter)
            if state == _REDECIDE:
                del self._state[waiter]
                heapq.heappush(self._to_decide, waiter)
            elif state == _REQUESTED:
                heapq.heappush(self._ready, waiter)

    # ------------------------------------------------------------------ running
    def _dispatch(self, node: Node) -> None:
        self._state[node.index] = _RUNNING
        # Inputs are final now (a damaged upstream may have been recomputed): key them, unless
        # the key was made from these very versions.
        if self._keyed.pop(node.index, None) != [ref.version for ref in node.upstream()]:
            node.key_parts, node.key = self.keys.data_key(node, lambda ref: ref.version)
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
            lock = self.store.entry_lock(node.key)
            if not lock.acquire_nowait():
                if self._progress:
                    self._emit(NodeWaiting(node.index, node.stage.name, node.record_name))
                self._locked.append((node.index, job, lock, time.monotonic(), False))
                return
        self._locked_in(node, job, lock)

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
                self._locked_in(self.nodes[index], job, lock)
                continue
            node, waited = self.nodes[index], time.monotonic() - since
            if self.lock_timeout is not None and waited >= self.lock_timeout:
                self._fail(
                    node,
                    CacheError(
                        f"{node.label}: waited {waited:.0f} s for the lock of its cache entry, "
                        f"held by another run ({lock.path})",
                        hint="that run is computing the same entry: let it finish, or raise "
                        "--lock-timeout.",
                    ),
                    time.perf_counter(),
                )
                continue
            if not said and waited >= LOCK_NOTICE_S:
                said = True
                self._warn(
                    f"{node.label}: waiting for another run computing the same entry "
                    f"(lock {lock.path})"
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

    def _locked_in(self, node: Node, job: Job, lock: Lock | None) -> None:
        # Another run may have published this entry while we waited for the lock.
        if lock is not None and node.index not in self._repaired and not self.finder.forced(node):
            assert node.entry_dir is not None and node.key is not None
            entry, _ = self.store.recheck(node.entry_dir, node.key, list(job.outputs))
            if entry is not None:
                lock.release()
                self._hit(node, entry, "cached (computed by a concurrent run)")
                return
        here = self._placed.pop(node.index)
        slot = 0 if here and not self.runner.inline else self._slots.pop()
        where = None if self.runner.inline else (f"worker {slot}" if slot else "main process")
        if self._progress:
            self._emit(
                NodeStarted(node.index, node.stage.name, node.record_name, node.reason, where)
            )
        self._in_flight[node.index] = (job, lock, time.perf_counter(), slot)
        runner = self._local if here else self.runner
        try:
            runner.submit(job, node.record, node.stage.fn)
        except CurifactoryError as exc:  # the job cannot be sent to a worker
            self._in_flight.pop(node.index)
            if slot:
                self._slots.append(slot)
            if lock is not None:
                lock.release()
            self._fail(node, exc, time.perf_counter())
            return
        if here:
            for result in self._local.wait(0):
                self._complete(result)

    def _complete(self, result: JobResult) -> None:
        node = self.nodes[result.index]
        job, lock, started, slot = self._in_flight.pop(result.index)
        if slot:
            self._slots.append(slot)
        node.seconds = time.perf_counter() - started
        if result.failure is None and result.corrupt is None:
            seen = self._timings.setdefault(node.stage.name, [])
            seen.append(result.compute_s + result.save_s)
            del seen[:-15]  # the recent calls tell
        try:
            if result.corrupt is not None:
                self._repair(node, result.corrupt)
            elif result.failure is not None:
                failure = result.failure
                if failure.kind == "stage":
                    original = failure.original or remote_error(failure.exc_type, failure.message)
                    error: CurifactoryError = StageError(
                        node.stage.name, node.record_name, original
                    )
                    error.traceback_text = failure.traceback  # type: ignore[attr-defined] # for console
                else:
                    error = rebuild_error(failure)
                self._fail(node, error, started)
            else:
                try:
                    self.committer.publish(node, job, result, node.index in self._replace)
                except CurifactoryError as exc:
                    self._fail(node, exc, started)
                    return
                node.outcome = Outcome.EXECUTED
                self._fresh.add(node.index)
                self._state.pop(node.index, None)
                if result.reportables:
                    node.record.reportables.extend(result.reportables)
                self._finished(node)
                self._settled(node)
                self._wake(node)
        finally:
            if lock is not None:
                lock.release()
        if self.logbook is not None and (result.log or result.failure is not None):
            self.logbook(_log_entry(node, result))

    def _fail(self, node: Node, error: BaseException, started: float) -> None:
        node.outcome = Outcome.FAILED
        node.seconds = time.perf_counter() - started
        if isinstance(error, StageError):
            node.reason = f"{type(error.original).__name__}: {error.original}"
        elif isinstance(error, CurifactoryError):
            node.reason = f"{type(error).__name__}: {error.message}"
        else:
            node.reason = f"{type(error).__name__}: {error}"
        self._state.pop(node.index, None)
        self._finished(node)
        self._settled(node)
        if isinstance(error, StageError) and self.keep_going:
            self.failures.append(error)
            for waiter in self._waiters.pop(node.index, ()):
                self._skip(self.nodes[waiter])
            return
        if self._stop is None:
            self._stop = error

    def _repair(self, node: Node, corrupt: tuple[str, int, str, str | None]) -> None:
        """An input's cached files were damaged: recompute its stage once, then run again."""
        _name, index, message, hint = corrupt
        producer = self.nodes[index]
        if index in self._repaired:
            self._fail(node, CorruptEntryError(message, hint), time.perf_counter())
            return
        self._warn(f"{producer.label}: {message}; recomputing")
        self._repaired.add(index)
        producer.outcome = None
        self._state[index] = _DEFERRED
        self._state[node.index] = _REQUESTED
        self._needs[node.index] = {index}
        self._waiters.setdefault(index, []).append(node.index)
        self._request(producer, "cache entry corrupt")

    def _abandon(self) -> None:
        """Interrupted: stop the workers, remove what they staged, release every lock."""
        self.runner.close(cancel=True)
        self._local.close(cancel=True)
        for job, lock, _started, _slot in self._in_flight.values():
            discard_staging(job.staging)
            if lock is not None:
                lock.release()
        self._in_flight.clear()
        self._locked.clear()  # their locks were never acquired

    # ------------------------------------------------------------------ jobs


class RemoteError(Exception):
    """A stage's exception that could not travel back from another process, by its text."""


def remote_error(type_name: str, message: str) -> RemoteError:
    """An exception named like the original (`ValueError: ...` reads the same)."""
    cls = type(type_name or "RemoteError", (RemoteError,), {})
    error: RemoteError = cls(message.partition(": ")[2] if ": " in message else message)
    return error


@contextlib.contextmanager
def survivors_frozen() -> Iterator[None]:
    """While a run loads its parameters, builds its graph and winds up, what survives a full
    collection is set aside (frozen) at once, so that the next full collection walks only
    what is new: the collector otherwise walked the whole growing graph and metadata again
    and again (6% of a run of 50,000 stage calls, against 2% at 5,000). Everything is
    handed back to the collector when the run ends."""
    gc.callbacks.append(_freeze_survivors)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_survivors)
        gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    # Right after a full collection every generation was just collected: what is left lives.
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


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
