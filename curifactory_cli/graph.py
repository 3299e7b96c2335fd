"""The stage graph traced from an experiment's `run()`: (record, stage) nodes joined by artifacts.

Stages are called in `run()` in an order where every input already exists, so the order in
which nodes are traced is a topological order: no sort and no cycle can occur.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.protocols import RecordLike as Record
from curifactory_cli.protocols import StageLike as StageSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from curifactory_cli.caching import Cacheable, Lazy


class Outcome(str, enum.Enum):
    """What happened to a node in a run."""

    EXECUTED = "executed"  # the stage function ran
    CACHED = "cached"  # a valid cache entry was found; nothing was loaded unless needed
    SKIPPED = "skipped"  # an uncached stage nobody needed, or downstream of a failure
    FAILED = "failed"


class _NotComputed:
    def __repr__(self) -> str:
        return "<not computed>"


NOT_COMPUTED = _NotComputed()


@dataclass(eq=False)
class OutputRef:
    """One artifact: output `name` of `node`. Holds the value once it is known."""

    node: Node
    name: str
    lazy: Lazy | None  # the declaration, if the output is lazy
    version: str | None = None  # data version: checksum of the cached bytes (or derived key)
    value: Any = NOT_COMPUTED  # the in-memory value, a per-record Lazy, or a cached handle

    def __repr__(self) -> str:
        return (
            f"<artifact {self.name!r} of stage {self.node.stage.name!r} ({self.node.record_name})>"
        )


@dataclass(eq=False)
class Node:
    """One stage call on one record."""

    index: int
    stage: StageSpec
    record: Record
    inputs: dict[str, OutputRef | Any]  # input name -> producing artifact, or a kwarg value
    aggregate_inputs: Mapping[str, Sequence[tuple[Record, OutputRef]]]
    kwargs: dict[str, Any]
    outputs: list[OutputRef] = field(default_factory=list)
    cacher_templates: list[type[Cacheable] | Cacheable] | None = None
    consumers: int = 0  # how many inputs of other stage calls read its outputs
    dependants: list[int] = field(default_factory=list)  # those stage calls, once each
    producers: int = 0  # how many stage calls it reads from
    # filled in by the scheduler (the planner keeps its own state)
    key: str | None = None
    lineage_key: str | None = None
    key_parts: dict[str, Any] | None = None
    # The key but the parameters (engine.sharing): what it digests, and the digest once made.
    probe_source: str | None = None
    probe: str | None = None
    outcome: Outcome | None = None
    reason: str = ""
    seconds: float = 0.0
    entry_dir: str | None = None
    # Installed distributions its result was made with (its process's, or its entry's).
    versions: dict[str, str] | None = None
    # The metrics the call recorded (its process's, or its entry's); None: none.
    metrics: dict[str, int | float | bool] | None = None
    _upstream: list[OutputRef] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def record_name(self) -> str:
        return self.record.name

    @property
    def is_cached_stage(self) -> bool:
        return self.cacher_templates is not None

    @property
    def label(self) -> str:
        return f"{self.stage.name} [{self.record_name}]"

    def upstream(self) -> list[OutputRef]:
        """The artifacts this call reads (its inputs are fixed when it is traced; callers
        must not change the list)."""
        refs = self._upstream
        if refs is None:
            refs = [v for v in self.inputs.values() if isinstance(v, OutputRef)]
            for pairs in self.aggregate_inputs.values():
                refs.extend(ref for _, ref in pairs if isinstance(ref, OutputRef))
            self._upstream = refs
        return refs


def producers_through_memory(refs: Iterable[OutputRef]) -> Iterator[Node]:
    """The stages producing `refs` and, through stages without cachers (whose outputs live in
    memory only), the stages producing their inputs in turn."""
    stack = [ref.node for ref in refs]
    seen: set[int] = set()
    while stack:
        producer = stack.pop()
        yield producer
        if not producer.is_cached_stage and producer.index not in seen:
            seen.add(producer.index)
            stack.extend(ref.node for ref in producer.upstream())


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)

    def stage_names(self) -> list[str]:
        return list(dict.fromkeys(n.stage.name for n in self.nodes))


def entry_namespace(node: Node, experiment: str) -> str:
    """Whose entries a stage call's are: its experiment's, or, when every cacher of the stage
    has the same `prefix=`, that prefix's, so that experiments share them (Curifactory's use
    of `prefix`: the cache files of all experiments with that prefix are the same)."""
    templates = node.cacher_templates
    if not templates or isinstance(templates[0], type):  # a class has no prefix
        return experiment
    prefix = getattr(templates[0], "prefix", None)
    if not isinstance(prefix, str) or not prefix:
        return experiment
    for template in templates[1:]:
        if isinstance(template, type) or getattr(template, "prefix", None) != prefix:
            return experiment
    return prefix
