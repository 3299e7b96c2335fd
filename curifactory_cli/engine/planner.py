"""`curi plan`: what a run would do and why, decided exactly as the scheduler decides it.

The planner walks the traced graph in order and calls the scheduler's own decision procedure
(`decide`) with the same keys, but executes nothing, loads no artifact and changes nothing on
the graph. Where a stage's fate depends on data that does not exist yet (an upstream stage will
re-run and may or may not reproduce identical outputs), it says so.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.decide import (
    HIT,
    INVALIDATED_REASON,
    NEEDED_DOWNSTREAM,
    Action,
    FactFinder,
    Facts,
    decide,
    needed_by,
    unneeded,
)
from curifactory_cli.engine.keys import memory_version
from curifactory_cli.engine.reasons import Reason, changes_of
from curifactory_cli.engine.sharing import probe_of_call, probe_parts, sharing_params
from curifactory_cli.graph import Node, OutputRef, entry_namespace, producers_through_memory
from curifactory_cli.hashing import canonical_json
from curifactory_cli.parameters.read_values import current_items
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Store


class Plan(str, enum.Enum):
    CACHED = "cached"  # a valid entry exists; nothing is loaded unless a running stage needs it
    RUN = "run"  # the stage will execute
    MAYBE = "maybe"  # decided by data that does not exist yet: runs, or stays cached/unneeded
    SKIPPED = "skipped"  # nothing that runs needs it


@dataclass
class NodePlan:
    """The plan for one (record, stage) node."""

    node: Node
    plan: Plan | None = None
    reason: str = ""
    depends_on: list[str] = field(default_factory=list)  # stages whose re-run decides a MAYBE
    key: str | None = None
    key_parts: dict[str, Any] | None = None
    probe: str | None = None  # see sharing.probe_of_call
    probe_source: str | None = None
    entry: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.node.stage.name,
            "record": self.node.record_name,
            "plan": self.plan.value if self.plan else None,
            "reason": self.reason,
            "changed": changes_of(self.reason),
            "depends_on": self.depends_on,
            "key": self.key,
            "entry": self.entry,
        }


class Planner:
    """The scheduler's decision procedure with execution replaced by bookkeeping."""

    def __init__(
        self,
        *,
        store: Store,
        keys: KeyMaker,
        experiment: str,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
        whole_params: bool = False,
        history: Callable[[], dict[tuple[str, str], list[str]]] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.experiment = experiment
        self.finder = FactFinder(
            store,
            experiment,
            overwrite,
            overwrite_stages,
            fingerprinter=keys.fingerprinter,
            whole_params=whole_params,
            history=history,
        )
        self.warnings: list[str] = []
        self._versions: dict[OutputRef, str | None] = {}
        self._lineage: dict[int, str] = {}
        self._probes: dict[int, str] = {}  # node -> its lineage probe (see _shares)
        self._running: dict[str, Node] = {}  # lineage probe -> the first call planned to run
        self._other_values = OtherValues(self)

    def plan(self, nodes: list[Node]) -> list[NodePlan]:
        self._plans = {node.index: NodePlan(node) for node in nodes}
        self.finder.prefetch(nodes)
        for node in nodes:
            self._plan_node(node)
        for node in nodes:
            item = self._plans[node.index]
            if item.plan is None:
                item.plan = Plan.SKIPPED
                item.reason = unneeded(item.reason, node.is_cached_stage)
        return [self._plans[node.index] for node in nodes]

    # ------------------------------------------------------------------ keys
    def _version(self, ref: OutputRef) -> str | None:
        return self._versions.get(ref)

    def _facts(self, node: Node) -> Facts:
        item = self._plans[node.index]
        known = all(self._version(ref) is not None for ref in node.upstream())
        if known:
            item.key_parts, item.key, item.probe_source = self.keys.data_key(node, self._version)
            item.probe = None
            if not node.is_cached_stage:
                for ref in node.outputs:
                    self._versions[ref] = memory_version(item.key, ref.name)
        fresh = known and any(self._uncertain(ref) for ref in node.upstream())
        lineage = "" if known else self._lineage_of(node)  # only needed without a data key
        facts = self.finder.facts(
            node,
            lineage,
            item.key if known else None,
            fresh,
            item.key_parts if known else None,
            item if known else None,
        )
        if facts.entry_dir is not None:
            item.entry = facts.entry_dir
        return facts

    def _lineage_of(self, node: Node) -> str:
        """The node's lineage key, made with those of its upstream calls when first asked."""
        return _upstream_first(
            node,
            self._lineage,
            lambda top: self.keys.lineage_key(top, lambda n: self._lineage[n.index]),
        )

    # ------------------------------------------------------------------ decisions
    def _uncertain(self, ref: OutputRef) -> bool:
        """Whether an input's data is unknown until an upstream stage re-runs."""
        running = (Plan.RUN, Plan.MAYBE)
        return any(self._plans[p.index].plan in running for p in producers_through_memory([ref]))

    def _plan_node(self, node: Node) -> None:
        """Plan a call as the scheduler would decide it, with what is known before anything
        runs: cached, run, deferred, or a "maybe" whose inputs are recomputed first."""
        item = self._plans[node.index]
        facts = self._facts(node)
        uncertain = self._uncertain_inputs(node, facts)
        if uncertain:
            # The scheduler would wait for those stages to run and then decide by their data.
            self._maybe(node, uncertain)
            return
        decision = decide(facts, self.store)
        if decision.problem:
            self.warnings.append(f"{node.label}: ignoring cache entry: {decision.problem}")
        if decision.action is Action.CACHED:
            assert decision.entry is not None
            self._cached(node, decision.entry, decision.reason)
        elif decision.action is Action.RUN:
            self._mark(node, Plan.RUN, decision.reason)
        elif decision.action is Action.DEFER:
            if node.is_cached_stage:
                item.reason = decision.reason
        else:
            self._need_inputs(node)

    def _uncertain_inputs(self, node: Node, facts: Facts) -> list[OutputRef]:
        """The inputs of a cached call, not forced, whose data is unknown until an upstream
        stage re-runs (none otherwise)."""
        if not node.is_cached_stage or facts.forced or facts.inputs_known:
            return []
        return [r for r in node.upstream() if self._version(r) is None and self._uncertain(r)]

    def _need_inputs(self, node: Node) -> None:
        """The scheduler computes the missing upstream stages first: they run, and `node`
        may run after them."""
        missing = [ref for ref in node.upstream() if self._version(ref) is None]
        for ref in missing:
            upstream = self._plans[ref.node.index]
            if upstream.plan is None:
                self._mark(ref.node, Plan.RUN, upstream.reason or needed_by(node.label))
        self._maybe(node, missing)

    def _maybe(self, node: Node, uncertain: list[OutputRef]) -> None:
        """A call whose inputs are recomputed first. It stays cached if they come out
        identical and an entry equal in everything else is still usable; otherwise it runs, and
        the run will give the reason said here (the same comparison, made with the data)."""
        names = sorted({ref.node.stage.name for ref in uncertain})
        similar = self._similar_entries(node, uncertain)
        usable = any(not meta.get("invalidated") for meta in similar)
        if usable or (not similar and self._other_values.may_serve(node, uncertain)):
            self._mark(
                node,
                Plan.MAYBE,
                f"cached unless {', '.join(names)} produce(s) different outputs",
                names,
            )
        elif similar:  # identical inputs would find it, and it is invalidated
            self._mark(node, Plan.RUN, INVALIDATED_REASON)
        else:
            self._mark(node, Plan.RUN, self._explain(node, self._open_inputs(node, uncertain)))

    def _mark(self, node: Node, plan: Plan, reason: str, depends: list[str] | None = None) -> None:
        stack = [(node, reason)]
        while stack:
            current, why = stack.pop()
            item = self._plans[current.index]
            if item.plan in (Plan.RUN, Plan.CACHED):
                continue
            item.plan, item.reason, item.depends_on = plan, why, depends or []
            if plan is Plan.RUN and not self.finder.forced(current):
                other = self._shares(current)
                if other is not None:
                    item.plan, item.depends_on = Plan.MAYBE, [other.stage.name]
                    item.reason = Reason(
                        f"shared with set {other.record_name!r} if they read the same values; "
                        f"else {why}",
                        changes_of(why),
                    )
            if current.is_cached_stage:
                for ref in current.outputs:
                    self._versions[ref] = None  # its data is not known until it has run
            # Whatever runs needs its inputs: missing upstream stages then run (or may run) too,
            # with the reason the scheduler gives a deferred call it pulls in.
            for ref in current.upstream():
                upstream = self._plans[ref.node.index]
                if upstream.plan is None and (
                    self._version(ref) is None or not ref.node.is_cached_stage
                ):
                    if plan is Plan.RUN:
                        stack.append((ref.node, upstream.reason or NEEDED_DOWNSTREAM))
                    else:
                        cause = upstream.reason or (
                            "uncached" if not ref.node.is_cached_stage else "missing"
                        )
                        why = f"{cause}; runs only if this runs: {current.stage.name!r}"
                        stack.append((ref.node, why))

    def _shares(self, node: Node) -> Node | None:
        """The call of another set, planned to run, whose entry `node` may use once it has
        run (a run lets `node` wait for it: engine.sharing); None when there is none."""
        if not self.finder.shares(node):
            return None
        other = self._running.setdefault(self._probe(node), node)
        return None if other is node else other

    def _probe(self, node: Node) -> str:
        """The call's probe when its inputs' data is known; else its lineage probe, made
        from the probes of the calls it reads from (the same for calls of two sets that
        compute the same thing if they read the same values)."""
        return _upstream_first(
            node,
            self._probes,
            lambda top: self.keys.lineage_probe(top, lambda n: self._probes[n.index]),
            known=lambda top: probe_of_call(self._plans[top.index]),
        )

    def _cached(self, node: Node, entry: Entry, reason: str = HIT) -> None:
        item = self._plans[node.index]
        item.plan, item.reason = Plan.CACHED, reason
        item.entry = entry.location
        item.key, item.key_parts = entry.meta.get("key"), entry.meta.get("key_parts")
        for ref in node.outputs:
            self._versions[ref] = entry.meta["outputs"][ref.name]["version"]

    # ------------------------------------------------------------------ reasons
    def _open_inputs(self, node: Node, uncertain: list[OutputRef]) -> frozenset[str]:
        """The inputs of `node` whose data is not known until an upstream call has run."""
        names = {name for name, src in node.inputs.items() if src in uncertain}
        names |= {
            name
            for name, pairs in node.aggregate_inputs.items()
            if any(src in uncertain for _, src in pairs)
        }
        return frozenset(names)

    def _similar_entries(self, node: Node, uncertain: list[OutputRef]) -> list[dict[str, Any]]:
        """Metadata of the entries equal in every key part except inputs whose data is not
        known yet (invalidated ones included: the caller tells them apart)."""
        open_inputs = self._open_inputs(node, uncertain)
        base = self.keys.base(node)
        known_inputs = self.keys.input_parts(node, self._version)
        out = []
        for entry in self.store.stage_entries(self.finder.stage_prefix(node)):
            parts = entry.meta.get("key_parts") or {}
            if any(parts.get(k) != v for k, v in base.items()):
                continue
            stored = parts.get("inputs") or {}
            if all(stored.get(k) == v for k, v in known_inputs.items() if k not in open_inputs):
                out.append(entry.meta)
        return out

    def call_parts(self, node: Node) -> dict[str, Any]:
        """The call's key parts as far as the plan knows them: an input whose data is not
        known until an upstream call runs is None."""
        return {**self.keys.base(node), "inputs": self.keys.input_parts(node, self._version)}

    def _explain(self, node: Node, open_inputs: frozenset[str]) -> str:
        """Why `node` has no usable entry, from what is known before its inputs are."""
        parts = self.call_parts(node)
        return self.finder.explainer.explain(
            node,
            self.finder.stage_prefix(node),
            parts,
            open_inputs,
            lineage_key=self._lineage_of(node),
        )


class OtherValues:
    """Entries made under other parameter values (another set's, or this set's before an
    edit) that may serve a call whose inputs are not known yet: equal to its key in every
    part but the parameters and those inputs, made by a call that read, at every path it
    read, the value this set has there. Once its inputs are known, the run finds such an
    entry through the reads index and serves the call from it (engine.sharing), so the plan
    says the call may run rather than that it runs. The stage's entries are read once, in
    one listing of the experiment's entries, and grouped so that a call costs a lookup per
    way of reading seen, not a pass over every entry."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        # namespace -> (stage, parts but params and inputs) -> paths and forms read ->
        #   (a recorded reads list, values read -> the inputs of each entry)
        self._groups: dict[str, dict[tuple[str, str], dict[Any, Any]]] = {}

    def may_serve(self, node: Node, uncertain: list[OutputRef]) -> bool:
        planner = self.planner
        if not planner.finder.shares(node):
            return False
        base = probe_parts(planner.keys.base(node))  # (an aggregate's records: how many)
        namespace = entry_namespace(node, planner.experiment)
        groups = self._of(namespace).get((node.stage.name, canonical_json(base)))
        if not groups:
            return False
        open_inputs = planner._open_inputs(node, uncertain)
        inputs = planner.keys.input_parts(node, planner._version)
        known = {k: v for k, v in inputs.items() if k not in open_inputs}
        for items, by_values in groups.values():
            current = current_items(sharing_params(node), items)
            if current is None:
                continue
            for stored in by_values.get(tuple(d for _, d in current), ()):
                if all(stored.get(k) == v for k, v in known.items()):
                    return True
        return False

    def _of(self, namespace: str) -> dict[tuple[str, str], dict[Any, Any]]:
        found = self._groups.get(namespace)
        if found is None:
            found = self._groups[namespace] = {}
            for entry in self.planner.store.entries(namespace):
                meta, reads = entry.meta, entry.meta.get("reads")
                if meta.get("invalidated") or not isinstance(reads, dict):
                    continue
                items = reads.get("items")
                if reads.get("everything") or not isinstance(items, list):
                    continue
                parts = meta.get("key_parts") or {}
                base = {k: v for k, v in probe_parts(parts).items() if k != "inputs"}
                group = found.setdefault((str(meta.get("stage")), canonical_json(base)), {})
                shape = tuple((path, _form(recorded)) for path, recorded in items)
                by_values = group.setdefault(shape, (items, {}))[1]
                values = tuple(recorded for _, recorded in items)
                by_values.setdefault(values, []).append(parts.get("inputs") or {})
        return found


def _form(recorded: str) -> str:
    """How a read was recorded (what `current_items` digests alike): a value, the kind of a
    nested object, or a nested object with its digest."""
    if recorded.startswith("kind:"):
        return "node" if "|" in recorded else "kind"
    return "value"


def summarize(plans: list[NodePlan]) -> dict[str, int]:
    counts = {plan.value: 0 for plan in Plan}
    for item in plans:
        counts[item.plan.value if item.plan else "skipped"] += 1
    return counts


def headline(plans: list[NodePlan]) -> str:
    """'12 of 40 stages cached, 28 to run' (plus the undecided and skipped ones)."""
    counts = summarize(plans)
    text = f"{counts['cached']} of {plural(len(plans), 'stage')} cached, {counts['run']} to run"
    if counts["maybe"]:
        text += f", {counts['maybe']} may run (if upstream outputs change or reads differ)"
    if counts["skipped"]:
        text += f", {counts['skipped']} skipped (not needed)"
    return text


def stale_keys(plans: list[NodePlan], entries: list[Any]) -> set[str]:
    """Keys of cache entries that the current code and parameters no longer produce.

    An entry is stale when a planned (parameter set, stage) call has another key, or when
    its parameter set (by name) now has other values. Entries of parameter sets outside the
    plan are left alone: they may belong to another parameter file. An entry that a "maybe"
    call could still reuse (same code and parameters, inputs not known yet) is not stale.
    """
    current = {item.key for item in plans if item.key}
    slots = {(item.node.record.get_hash(), item.node.stage.name) for item in plans}
    names = {item.node.record_name: item.node.record.get_hash() for item in plans}
    possible = _maybe_reused(plans)
    stale = set()
    for entry in entries:
        if entry.key not in current and _stale(entry.meta, possible, slots, names):
            stale.add(entry.key)
    return stale


def _stale(
    meta: dict[str, Any],
    possible: set[tuple[str, str, Any]],
    slots: set[tuple[str, str]],
    names: dict[str, str],
) -> bool:
    """Whether an entry the plan does not produce is stale: its (parameter set, stage) call is
    planned with another key, or its parameter set's name now has other values; unless a
    "maybe" call may still reuse it (`possible`, see _maybe_reused)."""
    params_hash, stage = meta.get("params_hash"), meta.get("stage")
    code = (meta.get("key_parts") or {}).get("code")
    if (params_hash, stage, code) in possible or (params_hash, stage, None) in possible:
        return False
    record = meta.get("record")
    renamed = isinstance(record, str) and record in names and names[record] != params_hash
    return (params_hash, stage) in slots or renamed


def _maybe_reused(plans: list[NodePlan]) -> set[tuple[str, str, Any]]:
    """(parameter hash, stage, code part) of the "maybe" calls: their entries of the same code
    may still be reused once their inputs are known (code None: a call whose key parts are
    not known yet, any of its entries)."""
    return {
        (item.node.record.get_hash(), item.node.stage.name, _code_part(item))
        for item in plans
        if item.plan is Plan.MAYBE
    }


def _code_part(item: NodePlan) -> Any:
    return item.key_parts["code"] if item.key_parts else None


def _upstream_first(
    node: Node,
    memo: dict[int, str],
    make: Callable[[Node], str],
    known: Callable[[Node], str | None] = lambda top: None,
) -> str:
    """`memo[node.index]`, made (`make(call)`, once every call it reads from has its value,
    unless `known(call)` gives it at once) for the node and every call upstream of it that
    has none yet; iterative: a chain of any length."""
    stack = [node]
    while stack:
        top = stack[-1]
        if top.index in memo:
            stack.pop()
            continue
        value = known(top)
        if value is None:
            missing = [r.node for r in top.upstream() if r.node.index not in memo]
            if missing:
                stack.extend(missing)
                continue
            value = make(top)
        memo[top.index] = value
        stack.pop()
    return memo[node.index]
