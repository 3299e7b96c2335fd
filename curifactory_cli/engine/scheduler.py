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

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine import collector
from curifactory_cli.engine.commit import Committer
from curifactory_cli.engine.decide import (
    Action,
    FactFinder,
    Facts,
    decide,
    needed_by,
    unneeded,
)
from curifactory_cli.engine.dispatch import Dispatcher
from curifactory_cli.engine.jobmaker import JobMaker
from curifactory_cli.engine.keys import known_version
from curifactory_cli.engine.node_states import DEFERRED, FOLLOWING, REDECIDE
from curifactory_cli.engine.probe_locks import ProbeLocks
from curifactory_cli.engine.runners import InlineRunner
from curifactory_cli.engine.sharing import probe_of_call, sharing_params
from curifactory_cli.graph import Node, Outcome, entry_namespace, producers_through_memory

if TYPE_CHECKING:
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.events import EventSink
    from curifactory_cli.store.base import Store

PROGRESS_POLL_S = 0.25  # how often workers' progress is read while jobs run


class Scheduler(Dispatcher):
    """Runs one traced graph against a store through a job runner: the walk itself and the
    decisions; its parts hold the calls' states (engine.node_states) and the running of
    requested calls (engine.dispatch)."""

    def __init__(
        self,
        *,
        store: Store,
        keys: KeyMaker,
        runner: JobRunner,
        events: EventSink,
        experiment: str,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
        keep_going: bool = False,
        lock_timeout: float | None = None,
        provenance: dict[str, Any] | None = None,
        logbook: Callable[[dict[str, Any]], None] | None = None,
        whole_params: bool = False,
        history: Callable[[], dict[tuple[str, str], list[str]]] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.runner = runner
        self.events = events
        self._progress = getattr(events, "progress", True)
        self.experiment = experiment
        self.finder = FactFinder(
            store,
            experiment,
            overwrite,
            overwrite_stages,
            fingerprinter=keys.fingerprinter,
            whole_params=whole_params,
            history=history,  # the entries each set's calls used in earlier runs
        )
        self.keep_going = keep_going
        self.lock_timeout = lock_timeout
        self.provenance = provenance or {}
        self.logbook = logbook
        # The fields of the parts (declared, with what they hold, in NodeStates and Dispatcher).
        self.failures = []
        self._state = {}
        self._pending = {}
        self._waiters = {}
        self._needs = {}
        self._to_decide = []
        self._ready = []
        self._locked = []
        self._in_flight = {}
        self._slots = list(range(runner.capacity, 0, -1))
        self._local = InlineRunner()
        # Progress a stage reports (record.progress): from a job in this process at once, from
        # workers by asking the runner every PROGRESS_POLL_S while jobs run.
        self._polls = self._progress and not runner.inline and hasattr(runner, "progress")
        if self._progress:
            self._local.on_progress = self._on_progress
            if isinstance(runner, InlineRunner):
                runner.on_progress = self._on_progress
        self._placed = {}
        self._timings = {}
        self._fresh = set()
        self._keyed = {}
        self._replace = set()
        self._done = set()
        self._repaired = set()
        self._warned: set[str] = set()  # entry folders whose problem was said
        self.committer = Committer(
            store,
            keys,
            experiment,
            self.provenance,
            self._lineage,
            self._warn,
            None if whole_params else self.finder.sharing,
        )
        self.jobs = JobMaker(
            store,
            self.committer,
            experiment,
            keys.fingerprinter.root,
            self._lineage,
            self._fresh,
            runner.shares_files,
            whole_params,
        )
        self._stop = None
        self.nodes = []
        # Sharing in the run (engine.sharing): probe -> the call computing it, and the calls
        # of other sets waiting to see whether they can use its entry.
        self._leaders: dict[tuple[str, Any], int] = {}
        # Probes whose first call settled giving nothing to share (it took the whole set,
        # or failed): their calls run side by side, none waits for another.
        self._unshared: set[str] = set()
        self._followers: dict[int, list[tuple[int, str]]] = {}
        self._probe_locks = ProbeLocks(store, self.finder.sharing.write)

    # ------------------------------------------------------------------ driving
    def run(self, nodes: list[Node]) -> None:
        """Settle every node. A failing stage stops the run (running jobs finish first), or
        with `keep_going` is collected in `failures` while everything not depending on it runs.
        """
        self.nodes = nodes
        self._activate(nodes)
        try:
            self._drive()
        finally:
            self.finder.sharing.write()  # what it published, for other runs to share
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
        try:
            self._drive()
            for node in wanted:
                if node.outcome is None and self._state.get(node.index) == DEFERRED:
                    self._request(node, node.reason or "asked for")
            self._drive()
        finally:
            self.finder.sharing.write()
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
        paused = collector.pause()
        try:
            self._loop()
        except BaseException:
            self._abandon()
            raise
        finally:
            collector.resume(paused)

    def _loop(self) -> None:
        """Decide and dispatch all that can be; then wait for results (or for other runs'
        locks) and go on, until nothing is left to decide, run or wait for."""
        while True:
            self._advance()
            if self._stop is None and (self._to_decide or self._dispatchable()):
                continue  # a call placed in this process settled others
            if self._in_flight:
                self._collect()
            elif self._locked and self._stop is None:
                self._retry_locks(block=True)
            else:
                return

    def _advance(self) -> None:
        """Decide every call that can be decided, then dispatch every ready call that has a
        place to run."""
        while self._to_decide and self._stop is None:
            self._decide(self.nodes[heapq.heappop(self._to_decide)])
        while self._stop is None and self._dispatchable():
            self._dispatch(self.nodes[heapq.heappop(self._ready)])

    def _dispatchable(self) -> bool:
        return bool(self._ready) and self._can_dispatch(self._ready[0])

    def _collect(self) -> None:
        """Complete the results the runner has (waiting briefly when locks or workers'
        progress must be looked at again soon), pass on that progress, retry the locks."""
        timeout = 0.05 if self._locked else (PROGRESS_POLL_S if self._polls else None)
        for result in self.runner.wait(timeout):
            self._complete(result)
        if self._polls:
            for index, done, total in self.runner.progress():
                if index in self._in_flight:
                    self._on_progress(index, done, total)
        self._retry_locks(block=False)

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
            node.key_parts, node.key, node.probe_source = self.keys.data_key(node, known_version)
            node.probe = None
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

    # ------------------------------------------------------------------ sharing
    def _follows(self, node: Node, reason: str) -> bool:
        """A call that must run waits, instead, for a call of another set computing the same
        thing (the same probe) right now: once that one is published, this one may use its
        entry (when it read nothing this set has otherwise), or runs after all."""
        if node.key is None or not self.finder.shares(node):
            return False
        probe = probe_of_call(node)
        if probe is None or probe in self._unshared:
            return False
        sharing = self.finder.sharing
        # Before any call of this probe has run, every one waits for the first; once one has
        # (its reads known), only those with its values where it read wait for one another.
        namespace = entry_namespace(node, self.experiment)
        key = (probe, sharing.group(namespace, node.stage.name, probe, sharing_params(node)))
        leader = self._leaders.get(key)
        if leader is None or leader == node.index or self.nodes[leader].outcome is not None:
            self._leaders[key] = node.index
            return False
        self._state[node.index] = FOLLOWING
        node.reason = reason
        self._followers.setdefault(leader, []).append((node.index, reason))
        return True

    def _release_followers(self, node: Node) -> None:
        followers = self._followers.pop(node.index, ())
        if followers and node.probe is not None:
            namespace = entry_namespace(node, self.experiment)
            if not self.finder.sharing.known(namespace, node.stage.name, node.probe):
                # Else each follower, requested again, would wait for the next: one at a
                # time, and quadratic in their number.
                self._unshared.add(node.probe)
        for index, reason in followers:
            follower = self.nodes[index]
            if follower.outcome is not None or self._state.get(index) != FOLLOWING:
                continue
            del self._state[index]
            assert follower.entry_dir is not None
            found = self.finder.share(follower, follower, follower.entry_dir)
            if found is not None:
                self._hit(follower, found[0], found[1])
            else:
                self._request(follower, reason)

    def _decide(self, node: Node) -> None:
        """Decide a call whose upstream calls are settled: cached (a hit), run (requested),
        deferred (missing, not needed yet), or waiting for upstream calls to run first."""
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
            self._state[node.index] = DEFERRED
            if node.is_cached_stage:
                node.reason = decision.reason
            self._settled(node)
        else:
            self._need_inputs(node)

    def _need_inputs(self, node: Node) -> None:
        """Run the upstream calls whose data is unknown, then decide `node` again (or skip it,
        when one of them failed)."""
        missing = [ref.node for ref in node.upstream() if ref.version is None]
        if any(p.outcome in (Outcome.FAILED, Outcome.SKIPPED) for p in missing):
            for producer in missing:  # what does not depend on the failure still runs
                if producer.outcome is None:
                    self._request(producer, producer.reason or needed_by(node.label))
            self._skip(node)
            return
        self._state[node.index] = REDECIDE
        self._needs[node.index] = {p.index for p in missing}
        for producer in missing:
            self._waiters.setdefault(producer.index, []).append(node.index)
            self._request(producer, producer.reason or needed_by(node.label))
