"""`curi plan`: what a run would do and why, decided exactly as the executor decides it.

The planner walks the traced graph with the executor's own keys and lookups, but executes
nothing and loads no artifact. Where a stage's fate depends on data that does not exist yet
(an upstream stage will re-run and may or may not reproduce identical outputs), it says so.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.executor import Executor
from curifactory_cli.graph import Node, OutputRef
from curifactory_cli.store import INVALIDATED, META_NAME

if TYPE_CHECKING:
    from curifactory_cli.store import Entry


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

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.node.stage.name,
            "record": self.node.record_name,
            "plan": self.plan.value if self.plan else None,
            "reason": self.reason,
            "depends_on": self.depends_on,
            "key": self.node.key,
            "entry": self.node.entry_dir,
        }


class Planner(Executor):
    """The executor's decision procedure with execution replaced by bookkeeping."""

    def plan(self, nodes: list[Node]) -> list[NodePlan]:
        self._plans = {node.index: NodePlan(node) for node in nodes}
        self._index: dict[tuple[str, str], list[str]] | None = None
        for node in nodes:
            self._plan_node(node)
        for node in nodes:
            item = self._plans[node.index]
            if item.plan is None:
                item.plan = Plan.SKIPPED
                item.reason = (
                    f"{item.reason or 'cache entry missing'}, but nothing that runs needs it"
                    if node.is_cached_stage
                    else "uncached, and nothing that runs needs its outputs"
                )
        return [self._plans[node.index] for node in nodes]

    # ------------------------------------------------------------------ decisions
    def _uncertain(self, ref: OutputRef) -> bool:
        """Whether an input's data is unknown until an upstream stage re-runs."""
        producer = ref.node
        state = self._plans[producer.index].plan
        if state in (Plan.RUN, Plan.MAYBE):
            return True
        if not producer.is_cached_stage:
            return any(self._uncertain(up) for up in producer.upstream())
        return False

    def _plan_node(self, node: Node) -> None:
        item = self._plans[node.index]
        self._bases[node.index] = self._base_parts(node)
        node.lineage_key = self._key(node, lineage=True)
        upstream = node.upstream()
        known = all(ref.version is not None for ref in upstream)
        if known:
            node.key_parts, node.key = self._data_key(node)
        if not node.is_cached_stage:
            if known:
                self._set_derived_versions(node)
            if node.consumers == 0:
                self._mark(node, Plan.RUN, "uncached leaf stage")
            return
        forced = self._forced(node)
        if forced:
            self._mark(node, Plan.RUN, forced)
            return
        if known:
            entry = self._lookup(node)
            if entry is not None:
                self._cached(node, entry)
                return
            item.reason = self._diagnose(node)
            if node.consumers == 0:
                self._mark(node, Plan.RUN, item.reason)
            return  # deferred, exactly as the executor defers it
        uncertain = [ref for ref in upstream if ref.version is None and self._uncertain(ref)]
        if not uncertain:
            entry = self._lookup_lineage(node)
            if entry is not None:
                self._cached(node, entry)
                return
            # The executor would now compute the missing upstream stages to learn their data.
            for ref in upstream:
                if ref.version is None and self._plans[ref.node.index].plan is None:
                    self._mark(
                        ref.node,
                        Plan.RUN,
                        self._plans[ref.node.index].reason
                        or f"needed to decide {node.stage.name!r}",
                    )
            uncertain = [ref for ref in upstream if ref.version is None]
        names = sorted({ref.node.stage.name for ref in uncertain})
        if self._similar_entry_exists(node, uncertain):
            self._mark(
                node,
                Plan.MAYBE,
                f"cached unless {', '.join(names)} produce(s) different outputs",
                names,
            )
        else:
            inputs = sorted({ref.name for ref in uncertain})
            self._mark(node, Plan.RUN, f"input(s) {', '.join(inputs)} will be recomputed")

    def _mark(self, node: Node, plan: Plan, reason: str, depends: list[str] | None = None) -> None:
        item = self._plans[node.index]
        if item.plan in (Plan.RUN, Plan.CACHED):
            return
        item.plan, item.reason, item.depends_on = plan, reason, depends or []
        if node.is_cached_stage:
            for ref in node.outputs:
                ref.version = None  # its data is not known until it has run
        # Whatever runs needs its inputs: missing upstream stages then run (or may run) too.
        for ref in node.upstream():
            upstream = self._plans[ref.node.index]
            if upstream.plan is None and (ref.version is None or not ref.node.is_cached_stage):
                why = upstream.reason or ("uncached" if not ref.node.is_cached_stage else "missing")
                need = "needed by" if plan is Plan.RUN else "runs only if this runs:"
                self._mark(ref.node, plan, f"{why}; {need} {node.stage.name!r}", depends)

    def _cached(self, node: Node, entry: Entry) -> None:
        item = self._plans[node.index]
        item.plan, item.reason = Plan.CACHED, "cached"
        node.entry_dir = str(entry.directory)
        for ref in node.outputs:
            ref.version = entry.meta["outputs"][ref.name]["version"]

    # ------------------------------------------------------------------ reasons
    def _stage_entries(self, node: Node) -> list[dict[str, Any]]:
        """Metadata of this stage's other entries for the same parameters, newest first."""
        directory, stage = os.path.split(self._stage_prefix(node))
        metas = []
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        for name in names:
            if not name.startswith(stage + "-") or len(name) != len(stage) + 17:
                continue
            path = os.path.join(directory, name, META_NAME)
            try:
                with open(path, "rb") as infile:
                    meta = json.loads(infile.read())
                metas.append((os.stat(path).st_mtime, meta))
            except (OSError, ValueError):
                continue
        return [meta for _, meta in sorted(metas, key=lambda m: m[0], reverse=True)]

    def _similar_entry_exists(self, node: Node, uncertain: list[OutputRef]) -> bool:
        """An entry equal in every key part except inputs whose data is not known yet."""
        open_inputs = {name for name, src in node.inputs.items() if src in uncertain}
        open_inputs |= {
            name
            for name, pairs in node.aggregate_inputs.items()
            if any(src in uncertain for _, src in pairs)
        }
        base = self._bases[node.index]
        for meta in self._stage_entries(node):
            parts = meta.get("key_parts") or {}
            if any(parts.get(k) != v for k, v in base.items()):
                continue
            known_inputs = self._input_parts(node, lineage=False)
            stored = parts.get("inputs") or {}
            if all(stored.get(k) == v for k, v in known_inputs.items() if k not in open_inputs):
                return True
        return False

    def _diagnose(self, node: Node) -> str:
        """Why a cached stage's entry is not usable: the first key part that differs."""
        if node.reason == INVALIDATED or node.reason.startswith("invalidated"):
            return node.reason
        if node.reason.startswith("cache entry unusable"):
            return node.reason
        metas = self._stage_entries(node)
        if not metas:
            if self._computed_under_other_params(node):
                return "parameters changed"
            return "not computed yet"
        parts, base = metas[0].get("key_parts") or {}, self._bases[node.index]
        if parts.get("code") != base["code"]:
            return "stage code changed"
        if parts.get("cachers") != base["cachers"] or parts.get("outputs") != base["outputs"]:
            return "cachers or outputs changed"
        if parts.get("kwargs") != base.get("kwargs"):
            return "call arguments changed"
        stored = parts.get("inputs") or {}
        changed = sorted(
            k for k, v in (node.key_parts or {}).get("inputs", {}).items() if stored.get(k) != v
        )
        if changed:
            return f"input data changed ({', '.join(changed)})"
        return "cache entry missing"

    def _computed_under_other_params(self, node: Node) -> bool:
        if self._index is None:
            self._index = {}
            root = os.path.join(str(self.store.root), self.experiment)
            for dirpath, dirnames, filenames in os.walk(root):
                if META_NAME in filenames:
                    dirnames[:] = []
                    try:
                        with open(os.path.join(dirpath, META_NAME), "rb") as infile:
                            meta = json.loads(infile.read())
                        key = (str(meta.get("record")), str(meta.get("stage")))
                        self._index.setdefault(key, []).append(str(meta.get("params_hash")))
                    except (OSError, ValueError, AttributeError):
                        continue
        return (node.record_name, node.stage.name) in self._index


def summarize(plans: list[NodePlan]) -> dict[str, int]:
    counts = {plan.value: 0 for plan in Plan}
    for item in plans:
        counts[item.plan.value if item.plan else "skipped"] += 1
    return counts


def headline(plans: list[NodePlan]) -> str:
    """'12 of 40 stages cached, 28 to run' (plus the undecided and skipped ones)."""
    counts = summarize(plans)
    text = f"{counts['cached']} of {len(plans)} stages cached, {counts['run']} to run"
    if counts["maybe"]:
        text += f", {counts['maybe']} may run (if upstream outputs change)"
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
    current = {item.node.key for item in plans if item.node.key}
    slots = {(item.node.record.get_hash(), item.node.stage.name) for item in plans}
    names = {item.node.record_name: item.node.record.get_hash() for item in plans}
    possible = {
        (item.node.record.get_hash(), item.node.stage.name, item.node.key_parts["code"])
        for item in plans
        if item.plan is Plan.MAYBE and item.node.key_parts
    }
    possible |= {
        (item.node.record.get_hash(), item.node.stage.name, None)
        for item in plans
        if item.plan is Plan.MAYBE and not item.node.key_parts
    }
    stale = set()
    for entry in entries:
        meta = entry.meta
        params_hash, stage = meta.get("params_hash"), meta.get("stage")
        code = (meta.get("key_parts") or {}).get("code")
        if entry.key in current:
            continue
        if (params_hash, stage, code) in possible or (params_hash, stage, None) in possible:
            continue
        in_plan = (params_hash, stage) in slots
        renamed = meta.get("record") in names and names[meta.get("record")] != params_hash
        if in_plan or renamed:
            stale.add(entry.key)
    return stale
