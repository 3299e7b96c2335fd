"""The one decision procedure: what happens to a stage call, and why.

`curi run` (the scheduler) and `curi plan` (the planner) both call `decide`, so what the plan
says is what the run does. It reads the store but changes nothing.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from curifactory_cli.store import INVALIDATED

if TYPE_CHECKING:
    from curifactory_cli.graph import Node
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Store


class Action(str, enum.Enum):
    CACHED = "cached"  # a valid entry exists: use it, load nothing yet
    RUN = "run"  # execute the stage
    DEFER = "defer"  # missing, but nothing needs it yet: run only if a consumer needs its data
    NEED_INPUTS = "need-inputs"  # inputs unknown and no entry by lineage: compute them first


# Not frozen: built for every stage call of every run, and frozen dataclasses are slow to
# build. Nothing changes them after construction.
@dataclass(slots=True)
class Facts:
    """What the decision depends on, besides the store."""

    cached_stage: bool  # the stage has cachers
    leaf: bool  # nothing in the graph consumes its outputs
    forced: str | None  # why it is forced to run (--overwrite, --overwrite-stage), if it is
    inputs_known: bool  # every input's data version is known, so the data key is
    fresh_inputs: bool  # an input was (re)computed in this run
    outputs: tuple[str, ...]
    lineage_key: str
    stage_prefix: str  # where this stage's entries for this parameter set live
    key: str | None = None  # the data key, when inputs_known
    entry_dir: str | None = None  # where the entry for `key` lives


@dataclass(slots=True)
class Decision:
    action: Action
    reason: str
    entry: Entry | None = None
    problem: str | None = None  # an entry exists under the key but cannot be used


class StoreView(Protocol):
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]: ...

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None: ...


def miss_reason(problem: str | None) -> str:
    if problem == INVALIDATED:
        return "invalidated by `curi cache invalidate`"
    if problem:
        return f"cache entry unusable: {problem}"
    return "no cache entry"


def decide(facts: Facts, store: StoreView) -> Decision:
    """The decision for one stage call whose upstream calls are all decided."""
    if not facts.cached_stage:
        if facts.leaf:
            return Decision(Action.RUN, "uncached leaf stage")
        return Decision(Action.DEFER, "uncached, and nothing needs its outputs")
    if facts.forced:
        return Decision(Action.RUN, facts.forced)
    outputs = list(facts.outputs)
    if facts.inputs_known:
        assert facts.entry_dir is not None and facts.key is not None
        entry, problem = store.lookup(facts.entry_dir, facts.key, outputs)
        if entry is not None:
            return Decision(Action.CACHED, "cached", entry)
        reason = miss_reason(problem)
        problem = problem if problem != INVALIDATED else None
        # A leaf must run, and so must a stage whose inputs were just recomputed. Any other
        # missing stage waits: its consumers may still be cached (found by lineage), and then
        # it is not needed at all.
        if facts.leaf or facts.fresh_inputs:
            return Decision(Action.RUN, reason, problem=problem)
        return Decision(Action.DEFER, reason, problem=problem)
    entry = store.find_by_lineage(facts.stage_prefix, facts.lineage_key, outputs)
    if entry is not None:
        return Decision(Action.CACHED, "cached", entry)
    return Decision(Action.NEED_INPUTS, "its inputs must be computed to decide")


class FactFinder:
    """What the scheduler and the planner share to call `decide`: where a stage call's entries
    live, whether it is forced, and its Facts from the keys each of them has computed."""

    def __init__(
        self,
        store: Store,
        experiment: str,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.experiment = experiment
        self.overwrite = overwrite
        self.overwrite_stages = overwrite_stages
        self._prefixes: dict[int, str] = {}

    def forced(self, node: Node) -> str | None:
        if self.overwrite or getattr(node.record.params, "overwrite", False) is True:
            return "forced by --overwrite"
        if node.stage.name in self.overwrite_stages:
            return "forced by --overwrite-stage"
        return None

    def stage_prefix(self, node: Node) -> str:
        found = self._prefixes.get(node.index)
        if found is None:
            found = self.store.stage_prefix(
                self.experiment, node.record.get_hash(), node.stage.name
            )
            self._prefixes[node.index] = found
        return found

    def entry_dir(self, node: Node, key: str) -> str:
        return self.store.entry_dir(self.stage_prefix(node), key)

    def prefetch(self, nodes: list[Node]) -> None:
        """Let a remote store read, in a few batched requests, what this run will look up
        (a local store reads nothing: the generator is never consumed)."""
        self.store.prefetch(
            os.path.dirname(self.stage_prefix(n)) for n in nodes if n.is_cached_stage
        )

    def facts(self, node: Node, lineage_key: str, key: str | None, fresh: bool) -> Facts:
        """`key` is the data key when every input's version is known, else None."""
        if not node.is_cached_stage:
            return Facts(
                False, node.consumers == 0, None, key is not None, False, (), lineage_key, ""
            )
        prefix = self.stage_prefix(node)
        return Facts(
            cached_stage=True,
            leaf=node.consumers == 0,
            forced=self.forced(node),
            inputs_known=key is not None,
            fresh_inputs=key is not None and fresh,
            outputs=tuple(ref.name for ref in node.outputs),
            lineage_key=lineage_key,
            stage_prefix=prefix,
            key=key,
            entry_dir=None if key is None else self.store.entry_dir(prefix, key),
        )
