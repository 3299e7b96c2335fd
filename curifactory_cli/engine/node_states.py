"""Where each stage call of a run stands, and what waits on what: the bookkeeping the
scheduler's walk moves calls through (requested, skipped, settled, cached, failed), the events
each move emits, and the repair of an input whose cached files were found damaged.
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING

from curifactory_cli.engine.decide import NEEDED_DOWNSTREAM
from curifactory_cli.errors import CurifactoryError, StageError
from curifactory_cli.events import NodeFinished, NodeProgress, Warned
from curifactory_cli.graph import NOT_COMPUTED, Node, Outcome
from curifactory_cli.store import CorruptEntryError

if TYPE_CHECKING:
    from curifactory_cli.engine.commit import Committer
    from curifactory_cli.events import Event, EventSink
    from curifactory_cli.store import Entry

# What the scheduler knows of a node beyond its outcome.
DEFERRED = "deferred"  # decided: missing or uncached, not needed yet
REDECIDE = "redecide"  # waiting for upstream calls that must run before it can be decided
REQUESTED = "requested"  # must run; waiting for its inputs
FOLLOWING = "following"  # must run, unless the same computation for another set, running
# now, turns out to have read what this set has (engine.sharing): decided again after it
RUNNING = "running"  # handed to the runner (or waiting for another run's lock)


class NodeStates:
    """The states of a run's stage calls (the scheduler's first part; see engine.scheduler,
    which sets every field below)."""

    nodes: list[Node]
    events: EventSink
    # Per-stage-call events only for a sink that shows or keeps them (not --quiet,
    # --json or a plain API call): thousands of them would be built for nobody.
    _progress: bool
    committer: Committer
    keep_going: bool
    failures: list[StageError]
    _state: dict[int, str]
    _pending: dict[int, int]  # producers not settled yet, per node
    _waiters: dict[int, list[int]]  # producer -> nodes waiting for it to finish
    _needs: dict[int, set[int]]  # node -> producers it still waits for
    _to_decide: list[int]  # a heap of node indexes
    _ready: list[int]  # a heap of node indexes
    _done: set[int]  # settled: consumers were told
    _repaired: set[int]  # recomputed because their entry was damaged
    _stop: BaseException | None  # what stops the run (running jobs finish first)
    _followers: dict[int, list[tuple[int, str]]]  # see Scheduler._follows

    def _emit(self, event: Event) -> None:
        self.events.emit(event)

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

    def _follows(self, node: Node, reason: str) -> bool:
        """Whether `node`, about to be requested, waits for another call instead (see
        Scheduler._follows)."""
        return False

    def _release_followers(self, node: Node) -> None:
        """`node` settled: the calls that waited to share its entry go on (Scheduler)."""

    def _settled(self, node: Node) -> None:
        """The node's consumers may be decidable now (once: a deferred call that later runs,
        or a damaged entry that is recomputed, is not settled twice)."""
        if self._followers:  # each time: a deferred leader settles again when it runs
            self._release_followers(node)
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

    def _request(self, node: Node, reason: str) -> None:
        """Mark `node` to run, with every deferred call whose data it reads.

        If an input's stage failed, the node cannot run, but the deferred calls it reads still
        do (with --keep-going, everything that does not depend on a failure runs).
        """
        stack = [(node, reason)]
        while stack:
            current, why = stack.pop()
            state = self._state.get(current.index)
            if current.outcome is not None or state in (REQUESTED, RUNNING, FOLLOWING):
                continue
            if self._follows(current, why):
                continue
            self._state[current.index] = REQUESTED
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
                if self._state.get(producer.index) == DEFERRED:
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
            if state == REDECIDE:
                del self._state[waiter]
                heapq.heappush(self._to_decide, waiter)
            elif state == REQUESTED:
                heapq.heappush(self._ready, waiter)

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
        self._state[index] = DEFERRED
        self._state[node.index] = REQUESTED
        self._needs[node.index] = {index}
        self._waiters.setdefault(index, []).append(node.index)
        self._request(producer, "cache entry corrupt")
