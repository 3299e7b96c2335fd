"""The one decision procedure: what happens to a stage call, and why.

`curi run` (the scheduler) and `curi plan` (the planner) both call `decide`, so what the plan
says is what the run does, and in the same words: every reason either of them gives is worded
here (the vocabulary below), and why a stage's entry is missing is worked out here once
(`MissExplainer`), for both. It reads the store but changes nothing.
"""

from __future__ import annotations

import enum
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from curifactory_cli.discovery import find_project_root
from curifactory_cli.engine.reasons import (
    PARAMS_CHANGED,
    Reason,
    code_changed,
    files_changed,
    inputs_changed,
    params_changed,
    records_reordered,
)
from curifactory_cli.engine.sharing import (
    Sharing,
    probe_of,
    probe_of_call,
    shareable,
    sharing_params,
)
from curifactory_cli.fingerprint import CodeFingerprinter
from curifactory_cli.graph import entry_namespace
from curifactory_cli.parameters.read_values import first_difference, value_at
from curifactory_cli.store import INVALIDATED, removals

if TYPE_CHECKING:
    from curifactory_cli.graph import Node
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Store

# ------------------------------------------------------------------------------ vocabulary
# Why a stage call is cached, runs, waits or is skipped: the words `curi plan`, `curi run`
# (its --json, the registry, the report) and `curi runs show` all use.
HIT = "cached"
NOT_COMPUTED = "not computed yet"
CACHERS_CHANGED = "cachers or outputs changed"
KWARGS_CHANGED = "call arguments changed"
ENTRY_MISSING = "cache entry missing"
INVALIDATED_REASON = "invalidated by `curi cache invalidate`"
FORCED_ALL = "forced by --overwrite"
FORCED_STAGE = "forced by --overwrite-stage"
UNCACHED_LEAF = "uncached leaf stage"
UNCACHED_UNNEEDED = "uncached, and nothing needs its outputs"
NEEDED_DOWNSTREAM = "needed downstream"  # a deferred call that a running call reads
UNDECIDABLE = "its inputs must be computed to decide"


def removed_damaged(record: dict[str, Any]) -> str:
    """The entry under this key was removed by `curi cache verify --fix` (`record`: what its
    log kept)."""
    when = str(record.get("removed") or "")[:10]
    problem = f" ({record['problem']})" if record.get("problem") else ""
    on = f" on {when}" if when else ""
    return f"cache entry removed as damaged{problem} by `curi cache verify --fix`{on}"


def unusable(problem: str) -> str:
    return f"cache entry unusable: {problem}"


def needed_by(label: str) -> str:
    """A call run first because `label` cannot be decided without its data."""
    return f"needed by {label}"


def unneeded(reason: str | None, cached_stage: bool) -> str:
    """A call nothing that runs reads: it is skipped (`reason`: why its entry is missing)."""
    if not cached_stage:
        return UNCACHED_UNNEEDED
    return f"{reason or ENTRY_MISSING}, but nothing that runs needs it"


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
    # Why there is no entry under `key` (NOT_COMPUTED, PARAMS_CHANGED, code_changed(...), ...):
    # asked only on a miss, since it reads the stage's other entries.
    explain: Callable[[], str] | None = None
    # Another set's entry this call may use, and why (engine.sharing): asked only on a miss.
    shared: Callable[[], tuple[Entry, str] | None] | None = None


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


def miss_reason(problem: str | None, explain: Callable[[], str] | None = None) -> str:
    """Why the entry under a call's key cannot be used: `problem` is what the store said of
    an entry found there (None: there is none, and `explain` says why)."""
    if problem == INVALIDATED:
        return INVALIDATED_REASON
    if problem:
        return unusable(problem)
    return explain() if explain is not None else ENTRY_MISSING


def decide(facts: Facts, store: StoreView) -> Decision:
    """The decision for one stage call whose upstream calls are all decided."""
    if not facts.cached_stage:
        if facts.leaf:
            return Decision(Action.RUN, UNCACHED_LEAF)
        return Decision(Action.DEFER, UNCACHED_UNNEEDED)
    if facts.forced:
        return Decision(Action.RUN, facts.forced)
    outputs = list(facts.outputs)
    if facts.inputs_known:
        assert facts.entry_dir is not None and facts.key is not None
        entry, problem = store.lookup(facts.entry_dir, facts.key, outputs)
        if entry is not None:
            return Decision(Action.CACHED, HIT, entry)
        if problem is None and facts.shared is not None:  # (an invalidated entry is not)
            found = facts.shared()
            if found is not None:
                return Decision(Action.CACHED, found[1], found[0])
        reason = miss_reason(problem, facts.explain)
        problem = problem if problem != INVALIDATED else None
        # A leaf must run, and so must a stage whose inputs were just recomputed. Any other
        # missing stage waits: its consumers may still be cached (found by lineage), and then
        # it is not needed at all.
        if facts.leaf or facts.fresh_inputs:
            return Decision(Action.RUN, reason, problem=problem)
        return Decision(Action.DEFER, reason, problem=problem)
    entry = store.find_by_lineage(facts.stage_prefix, facts.lineage_key, outputs)
    if entry is not None:
        return Decision(Action.CACHED, HIT, entry)
    return Decision(Action.NEED_INPUTS, UNDECIDABLE)


class MissExplainer:
    """Why a stage call has no usable entry, said the same way by the plan and the run: the
    first key part that differs from the newest entry of the same stage and parameter set
    (code, input files, cachers, call arguments, input data), or whether the call was made
    before only under other parameter values, or never."""

    def __init__(
        self,
        store: Store,
        experiment: str,
        fingerprinter: CodeFingerprinter | None = None,
        sharing: Sharing | None = None,
        history: Callable[[], dict[tuple[str, str], list[str]]] | None = None,
        whole_params: bool = False,
    ) -> None:
        self.store = store
        self.experiment = experiment
        self.fingerprinter = fingerprinter
        self.sharing = None if whole_params else sharing  # params = "all": nothing shared
        # The entries each (set name, stage) used in earlier runs, newest first (the run
        # registry's): read on the first miss of a set with no entry of its own.
        self._history = history
        self._used: dict[tuple[str, str], list[str]] | None = None
        self._by_root: dict[str, CodeFingerprinter] = {}
        self._index: set[tuple[str, str]] | None = None
        self._present: set[str] | None = None  # every entry of the experiment, by location
        # (set name, stage) -> (when, location, key) of its newest entry
        self._newest: dict[tuple[str, str], tuple[str, str, str]] | None = None
        self._removed: dict[str, dict[str, Any]] | None = None

    def explain(
        self,
        node: Node,
        stage_prefix: str,
        parts: dict[str, Any] | None,
        open_inputs: frozenset[str] = frozenset(),
        key: str | None = None,
        lineage_key: str | None = None,
        keyed: Any = None,
    ) -> str:
        """`parts`: the call's key parts (inputs whose data is not known yet are left out of
        the comparison: `open_inputs`); `key` (or, while inputs are open, `lineage_key`): to
        tell an entry `curi cache verify --fix` removed; `keyed`: what holds the call's
        probe, when it has one (see FactFinder.share)."""
        removed = self._removed_record(key, lineage_key)
        if removed is not None:
            return removed_damaged(removed)
        metas = [entry.meta for entry in self.store.stage_entries(stage_prefix)]
        if not metas:
            # A set that ran before, whose call used (or made) an entry of the same
            # computation (its own, or one it shared with another set): what it reads
            # changed. The registry is asked only when the reads index has such entries.
            probe = self._indexed_probe(node, parts, keyed)
            used = self.used_elsewhere(node, stage_prefix) if probe else []
            ran = bool(used) or self._made_under_other_params(node, any_stage=True)
            changed = None
            if ran and parts and probe:
                changed = self._changed_fields(node, parts, used, probe)
            if changed:
                return changed
            if not self._made_under_other_params(node):
                return PARAMS_CHANGED if used else NOT_COMPUTED
            # Against the set's newest entry of the stage (under its old values): what
            # differs, the values it read first (a call that reads none of what changed runs
            # because its inputs did).
            previous = self._previous(node) if parts and shareable(node) else None
            if previous is not None and parts:
                return self._compared(node, previous, parts, open_inputs) or PARAMS_CHANGED
            return PARAMS_CHANGED
        if not parts:
            return ENTRY_MISSING
        return self._what_changed(node, metas[0], parts, open_inputs)

    def _what_changed(
        self, node: Node, meta: dict[str, Any], parts: dict[str, Any], open_inputs: frozenset[str]
    ) -> str:
        """What differs between the newest entry's key parts (`meta`) and the call's, the
        first of: its code, the files it declares, its cachers or outputs, its arguments,
        its inputs' data."""
        stored = _part(meta, "key_parts")
        if stored.get("code") != parts.get("code"):
            return code_changed(*self.changed_code(node, _part(meta, "code_parts")))
        if stored.get("files") != parts.get("files"):
            return files_changed(_differing(_part(stored, "files"), _part(parts, "files")))
        for part in ("cachers", "outputs"):
            if stored.get(part) != parts.get(part):
                return Reason(CACHERS_CHANGED, [{"part": part}])
        if stored.get("kwargs") != parts.get("kwargs"):
            return Reason(KWARGS_CHANGED, [{"part": "kwargs"}])
        reordered = records_reordered(stored, parts)
        if reordered:
            return Reason(reordered, [{"part": "records"}])
        changed = _changed_inputs(_part(stored, "inputs"), _part(parts, "inputs"), open_inputs)
        return inputs_changed(changed) if changed else ENTRY_MISSING

    def used_elsewhere(self, node: Node, stage_prefix: str) -> list[str]:
        """The entries (relative to the cache) this set's calls of this stage used in
        earlier runs, newest first, that are still in the cache and were made under other
        parameter values (another set's, or this set's before an edit): one of its own
        deleted since says nothing of what changed."""
        if self._used is None:
            self._used = self._history() if self._history is not None else {}
        used = self._used.get((node.record_name, node.stage.name))
        if not used:
            return []
        own = self._rel(stage_prefix)
        self._made_under_other_params(node)  # lists the entries once
        assert self._present is not None
        return [u for u in used if u in self._present and not u.startswith(own)]

    def _rel(self, location: str) -> str:
        """A location in the store relative to its root, with `/` (as the registry has it)."""
        root = str(self.store.root)
        rel = location[len(root) :] if location.startswith(root) else location
        return rel.lstrip("/\\").replace(os.sep, "/")

    def _indexed_probe(self, node: Node, parts: dict[str, Any] | None, keyed: Any) -> str | None:
        """The call's probe when the reads index has entries of it (None otherwise): the
        probe `keyed` holds, digested from `parts` only when it holds none."""
        if self.sharing is None or not parts or not shareable(node):
            return None
        probe = probe_of_call(keyed) if keyed is not None else None
        probe = probe or probe_of(parts)
        namespace = entry_namespace(node, self.experiment)
        return probe if self.sharing.known(namespace, node.stage.name, probe) else None

    def closest_same_computation(
        self, node: Node, parts: dict[str, Any], used: Sequence[str] = (), probe: str = ""
    ) -> tuple[Entry, list[tuple[str, str]]] | None:
        """The entry of the same computation (the same key but the parameters) a miss is
        told against, with what its call read: the set's own, or one its calls used before
        (`used`), first; else the newest. `probe`: the parts' own, when known. (Not an
        aggregate's: what it read are paths of its records' sets, not of a set.)"""
        if self.sharing is None or not shareable(node) or node.stage.is_aggregate:
            return None
        newest: tuple[Any, Entry, list[tuple[str, str]]] | None = None
        namespace, stage = entry_namespace(node, self.experiment), node.stage.name
        probe = probe or probe_of(parts)
        for params_hash, key, reads in self.sharing.indexed(namespace, stage, probe):
            directory = self.store.entry_dir(
                self.store.stage_prefix(namespace, params_hash, stage), key
            )
            entry, _ = self.store.lookup(directory, key, [ref.name for ref in node.outputs])
            if entry is None:
                continue
            own = entry.meta.get("record") == node.record_name or (
                bool(used) and self._rel(entry.location) in used
            )
            # Its own first, then the newest (to the second, then by when it was written).
            rank = (own, str(_part(entry.meta, "timings").get("finished", "")), entry.created)
            if newest is None or rank > newest[0]:
                newest = (rank, entry, reads)
        return None if newest is None else (newest[1], newest[2])

    def _changed_fields(
        self, node: Node, parts: dict[str, Any], used: Sequence[str], probe: str
    ) -> str | None:
        """Which value the call reads changed since the closest entry of the same
        computation (see closest_same_computation): `parameters changed (lr: 0.1 -> 0.01)`;
        None when no such entry is indexed, or it read the whole set."""
        closest = self.closest_same_computation(node, parts, used, probe)
        if closest is None:
            return None
        params = node.record.params
        path = first_difference(params, closest[1])
        if not path:  # the whole set, or nothing (then the entry would have served)
            return None
        old = value_at(closest[0].meta.get("params") or {}, path)
        return params_changed(path, old, value_at(params, path))

    def _removed_record(self, key: str | None, lineage_key: str | None) -> dict[str, Any] | None:
        """What the log of entries removed as damaged says of this key (read once, on the
        first miss to explain)."""
        if not key and not lineage_key:
            return None
        if self._removed is None:
            self._removed = removals.read(removals.log_root(self.store))
        if key and key in self._removed:
            return self._removed[key]
        if not key and lineage_key:
            return self._removed.get("lineage:" + lineage_key)
        return None

    def changed_code(self, node: Node, old: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The functions, classes and constants whose fingerprint differs from `old`, and
        what each name of the current code is (see CodeFingerprinter.kinds)."""
        fingerprinter = self.fingerprinter or self._fingerprinter_of(node.stage.fn)
        if fingerprinter is None:
            return [], {}
        fn = node.stage.fn
        return _differing(old, fingerprinter.breakdown(fn)), fingerprinter.kinds(fn)

    def _fingerprinter_of(self, fn: Callable[..., Any]) -> CodeFingerprinter | None:
        """A fingerprinter for the project `fn` is defined in, when none was given (the same
        breakdown the run's own fingerprinter gives: both follow that project's code)."""
        try:
            path = inspect.getsourcefile(fn) or inspect.getfile(fn)
        except (TypeError, OSError):
            return None
        root = find_project_root(Path(path).resolve().parent)
        if root is None:
            return None
        found = self._by_root.get(str(root))
        if found is None:
            found = self._by_root[str(root)] = CodeFingerprinter(root)
        return found

    def _compared(
        self, node: Node, meta: dict[str, Any], parts: dict[str, Any], open_inputs: frozenset[str]
    ) -> str | None:
        """What differs from an entry made under other values of the set: its code, a value
        its call read, then the other parts (None: nothing but values it did not read)."""
        if _part(meta, "key_parts").get("code") == parts.get("code"):
            reads = meta.get("reads")
            if not isinstance(reads, dict) or reads.get("everything"):
                return PARAMS_CHANGED  # it took the whole set, whose values changed
            path = first_difference(node.record.params, reads.get("items") or [])
            if path:
                old = value_at(meta.get("params") or {}, path)
                return params_changed(path, old, value_at(node.record.params, path))
        what = self._what_changed(node, meta, parts, open_inputs)
        return None if what == ENTRY_MISSING else what

    def _previous(self, node: Node) -> dict[str, Any] | None:
        """The metadata of the newest entry of this stage made for a set of this name (under
        other values), if it is still usable."""
        assert self._newest is not None  # (after _made_under_other_params)
        found = self._newest.get((node.record_name, node.stage.name))
        if found is None:
            return None
        entry, _ = self.store.lookup(found[1], found[2], [ref.name for ref in node.outputs])
        return None if entry is None else entry.meta

    def _made_under_other_params(self, node: Node, any_stage: bool = False) -> bool:
        """Whether this stage (`any_stage`: any stage) was run for a parameter set of this
        name with other values (read once per run, and only when a call is missing with no
        entry of its own)."""
        if self._index is None:
            self._index, self._present, self._newest = set(), set(), {}
            for entry in self.store.entries(self.experiment):
                pair = (entry.params_name, entry.stage)
                self._index.add(pair)
                self._present.add(self._rel(entry.location))
                finished = str(_part(entry.meta, "timings").get("finished", ""))
                if finished >= self._newest.get(pair, ("",))[0]:
                    self._newest[pair] = (finished, entry.location, entry.key)
            self._index |= {(name, "") for name, _ in self._index}
        return (node.record_name, "" if any_stage else node.stage.name) in self._index


class FactFinder:
    """What the scheduler and the planner share to call `decide`: where a stage call's entries
    live, whether it is forced, and its Facts from the keys each of them has computed.
    `fingerprinter`: the run's own, to name what changed in a stage's code."""

    def __init__(
        self,
        store: Store,
        experiment: str,
        overwrite: bool = False,
        overwrite_stages: frozenset[str] = frozenset(),
        fingerprinter: CodeFingerprinter | None = None,
        whole_params: bool = False,
        history: Callable[[], dict[tuple[str, str], list[str]]] | None = None,
    ) -> None:
        self.store = store
        self.whole_params = whole_params  # [tool.curi] params = "all": no entry is shared
        self.experiment = experiment
        self.overwrite = overwrite
        self.overwrite_stages = overwrite_stages
        self.sharing = Sharing(store)
        self.explainer = MissExplainer(
            store, experiment, fingerprinter, self.sharing, history, whole_params
        )
        self._shares: dict[int, bool] = {}  # node -> whether it may share (see shares)
        self._prefixes: dict[int, str] = {}
        self._overwrite: dict[int, bool] = {}  # id(params) -> overwrite: true (params live on)

    def forced(self, node: Node) -> str | None:
        record = node.record
        if self.overwrite or self._overwrite_set(record.params):
            return FORCED_ALL
        if record.params is None and any(
            self._overwrite_set(r.params) for r in record.input_records
        ):
            # As Curifactory: an aggregate without parameters of its own follows the records
            # it covers.
            return FORCED_ALL
        if node.stage.name in self.overwrite_stages:
            return FORCED_STAGE
        return None

    def _overwrite_set(self, params: Any) -> bool:
        """`overwrite: true` in the parameter set (asked once per set: a missing attribute
        costs an exception each time)."""
        found = self._overwrite.get(id(params))
        if found is None:
            found = getattr(params, "overwrite", False) is True
            self._overwrite[id(params)] = found
        return found

    def stage_prefix(self, node: Node) -> str:
        found = self._prefixes.get(node.index)
        if found is None:
            found = self.store.stage_prefix(
                entry_namespace(node, self.experiment), node.record.get_hash(), node.stage.name
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

    def facts(
        self,
        node: Node,
        lineage_key: str,
        key: str | None,
        fresh: bool,
        key_parts: dict[str, Any] | None = None,
        keyed: Any = None,
    ) -> Facts:
        """`key` is the data key when every input's version is known, else None; `key_parts`
        are its parts (default: `node.key_parts`, where the scheduler keeps them)."""
        if not node.is_cached_stage:
            return Facts(
                False, node.consumers == 0, None, key is not None, False, (), lineage_key, ""
            )
        prefix = self.stage_prefix(node)
        parts = node.key_parts if key_parts is None else key_parts
        keyed = node if keyed is None else keyed  # what holds its probe (a NodePlan: planning)
        entry_dir = None if key is None else self.store.entry_dir(prefix, key)
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
            entry_dir=entry_dir,
            explain=None
            if key is None
            else partial(self.explainer.explain, node, prefix, parts, key=key, keyed=keyed),
            # Asked only on a miss: a cached run never reads the reads index.
            shared=None if entry_dir is None else partial(self.share, node, keyed, entry_dir),
        )

    def shares(self, node: Node) -> bool:
        """Whether the call may use (and give) another set's entry in this run (not forced:
        a forced call runs whatever is cached)."""
        found = self._shares.get(node.index)
        if found is None:
            found = self._shares[node.index] = (
                not self.whole_params and shareable(node) and self.forced(node) is None
            )
        return found

    def share(self, node: Node, keyed: Any, own: str) -> tuple[Entry, str] | None:
        """Another set's entry this call may use (see engine.sharing); `keyed` holds its
        probe (the node, or the planner's plan of it)."""
        if not self.shares(node):
            return None
        probe = probe_of_call(keyed)
        if probe is None:
            return None
        namespace = entry_namespace(node, self.experiment)
        if not self.sharing.known(namespace, node.stage.name, probe):
            return None
        return self.sharing.find(
            namespace,
            node.stage.name,
            probe,
            node.record_name,
            sharing_params(node),
            [ref.name for ref in node.outputs],
            own,
        )


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The names whose value differs between `old` and `new` (or that only one has), sorted."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _changed_inputs(
    old: dict[str, Any], new: dict[str, Any], open_inputs: frozenset[str]
) -> list[str]:
    """The inputs whose data version differs from the entry's, sorted; inputs whose data is
    not known yet (`open_inputs`) are not compared."""
    return sorted(
        name
        for name, version in new.items()
        if name not in open_inputs and old.get(name) != version
    )


def _part(parts: dict[str, Any], name: str) -> dict[str, Any]:
    """One part of a key's parts, {} when absent (or null, in an entry written so)."""
    found: dict[str, Any] = parts.get(name) or {}
    return found
