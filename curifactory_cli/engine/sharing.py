"""Entries shared between parameter sets: a stage call is served from an entry that another
set's call computed when both calls are the same computation on what they read.

Two calls are the same computation when their keys agree on everything but the parameters
(experiment, stage, code, cachers, outputs, call arguments, input files and input data: the
*probe*, a digest of those parts) and the set of this call has, at every parameter path the
other call read, the value that call read. The argument is the one build systems make for
dynamic dependencies: the same code on the same inputs, given the same values for everything
it read, reads the same things in the same order and computes the same result. A call that
took the whole set (iterated it, printed it, copied it, hashed it) shares with no other set.

Which entries could serve a call is found in the store's reads index (`store.reads_index`),
loaded once per experiment on the first miss (a fully cached run never reads it), grouped by
(stage, probe) and then by the paths read, so a lookup costs one dictionary access per group
of paths; every candidate is then looked up and checked against its own metadata.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from curifactory_cli.hashing import canonical_json, digest
from curifactory_cli.parameters.read_values import RecordSets
from curifactory_cli.parameters.reads import current_items, reads_match

if TYPE_CHECKING:
    from curifactory_cli.graph import Node
    from curifactory_cli.store import Entry
    from curifactory_cli.store.base import Store

# One group per shape of reads: the paths, with how each was recorded.
Shape = tuple[tuple[str, str], ...]
# Index records are written to the store in batches (and when the run ends): another run
# finds an entry computed by this one in its index at most this many entries late (and by
# its key at once, as before).
WRITE_BATCH = 256
# ... or once the oldest record held back is this old (a run of slow stages writes each soon;
# a run waiting for one of its probes' locks is told at once: engine.probe_locks).
WRITE_AFTER_S = 1.0


def probe_parts(parts: dict[str, Any]) -> dict[str, Any]:
    """A call's key parts but its parameters (engine.sharing): an aggregate's records are
    left as how many there are (what it reads of their sets is matched by position)."""
    probe = {k: v for k, v in parts.items() if k != "params"}
    if isinstance(probe.get("records"), list):
        probe["records"] = len(probe["records"])
    return probe


def shareable(node: Node) -> bool:
    """Whether a call may use (and give) another set's entry: a cached stage call with a
    parameter set of its own, or an aggregate without one (keyed on what it reads of its
    records' sets), of a stage not keyed on whole sets (`params="all"`)."""
    stage = node.stage
    if not node.is_cached_stage or stage.params is not None:
        return False
    if stage.is_aggregate:
        return node.record.params is None
    return node.record.params is not None


def sharing_params(node: Node) -> Any:
    """What a shareable call's reads are paths of: its set, or an aggregate's records' sets."""
    if node.stage.is_aggregate:
        return RecordSets(tuple(r.params for r in node.record.input_records))
    return node.record.params


def probe_of(parts: dict[str, Any]) -> str:
    """The digest of a call's key parts but its parameters (engine.keys.probe_parts)."""
    return digest(canonical_json(probe_parts(parts)))


def probe_of_call(call: Any) -> str | None:
    """The probe of a keyed call (a Node, or the planner's NodePlan), digested when first
    asked for: a cached call never needs it."""
    if call.probe is None and call.probe_source is not None:
        call.probe = digest(call.probe_source)
        call.probe_source = None
    probe: str | None = call.probe
    return probe


def shared_reason(meta: dict[str, Any], own: str) -> str:
    """Why a call of set `own` is served from an entry made under other parameter values,
    naming what its call read."""
    paths = [path for path, _ in meta["reads"]["items"]]
    read = ", ".join(paths) if paths else "no parameters"
    if meta.get("record") == own:  # this set's own entry, from before a parameter edit
        return f"what it reads is unchanged ({read})" if paths else "it reads no parameters"
    return f"shared with set {meta.get('record')!r} (reads {read})"


def _shape(items: list[list[str]] | tuple[tuple[str, str], ...]) -> Shape:
    return tuple((path, _form(recorded)) for path, recorded in items)


def _form(recorded: str) -> str:
    if recorded.startswith("kind:"):
        return "node" if "|" in recorded else "kind"
    return "value"


def _values(items: Any) -> tuple[str, ...]:
    return tuple(recorded for _, recorded in items)


def _groups(found: Any) -> dict[Shape, Any] | None:
    """An index slot as groups: shape -> (a recorded reads list, values -> (params hash,
    key)); a slot of one entry is kept as a flat tuple (see Sharing._put)."""
    if type(found) is tuple:
        shape, reads, values, params_hash, key = found
        return {shape: (reads, {values: (params_hash, key)})}
    return found  # type: ignore[no-any-return]


class Sharing:
    """The reads index of one run's store, as a run looks it up and adds to it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # experiment -> (stage, probe) -> shape -> (a recorded reads list, values -> entry),
        # or the one entry of a probe as a tuple (see _groups)
        self._index: dict[str, dict[tuple[str, str], Any]] = {}
        self._unwritten: dict[str, list[dict[str, Any]]] = {}
        self._since = 0.0  # when the oldest record held back was added
        # (id of a parameter set, shape) -> its values there: asked again as calls wait
        # and are decided again (the sets live as long as the run).
        self._current: dict[tuple[int, Shape], tuple[Any, tuple[str, ...] | None]] = {}

    def _values_of(self, params: Any, shape: Shape, reads: Any) -> tuple[str, ...] | None:
        """What `params` has at the paths of a group (`reads`: one of its recorded lists)."""
        key = (id(params), shape)
        found = self._current.get(key)
        if found is None or found[0] is not params:
            current = current_items(params, reads)
            found = self._current[key] = (params, None if current is None else _values(current))
        return found[1]

    def group(
        self, experiment: str, stage: str, probe: str, params: Any
    ) -> tuple[tuple[str, ...] | None, ...] | None:
        """What `params` has at the paths calls of this probe read, per way of reading seen
        (None before any is seen): calls of the same group are likely to share an entry."""
        groups = _groups(self._of(experiment).get((stage, probe)))
        if not groups:
            return None
        return tuple(self._values_of(params, shape, reads) for shape, (reads, _) in groups.items())

    def _of(self, experiment: str) -> dict[tuple[str, str], Any]:
        found = self._index.get(experiment)
        if found is None:
            found = self._index[experiment] = {}
            for record in self.store.read_index(experiment):
                self._put(found, record)
        return found

    @staticmethod
    def _put(index: dict[tuple[str, str], Any], record: dict[str, Any]) -> None:
        reads = record["reads"]
        shape, values = (_shape(reads), _values(reads)) if reads else ((), ())
        where = (record["stage"], record["probe"])
        found = index.get(where)
        if found is None:  # most probes have one entry: one flat tuple (a fifth of the memory)
            index[where] = (shape, reads, values, record["params_hash"], record["key"])
            return
        if type(found) is tuple:
            found = index[where] = {found[0]: (found[1], {found[2]: (found[3], found[4])})}
        group = found.setdefault(shape, (reads, {}))
        group[1][values] = (record["params_hash"], record["key"])

    def indexed(
        self, experiment: str, stage: str, probe: str
    ) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
        """(params hash, key, reads) of every indexed entry of this stage and probe."""
        groups = _groups(self._of(experiment).get((stage, probe)))
        for reads, by_values in (groups or {}).values():
            paths = [path for path, _ in reads]
            for values, (params_hash, key) in by_values.items():
                yield params_hash, key, list(zip(paths, values))

    def known(self, experiment: str, stage: str, probe: str) -> bool:
        """Whether any entry of this stage and probe is indexed (the index is read first)."""
        return (stage, probe) in self._of(experiment)

    def candidates(
        self, experiment: str, stage: str, probe: str, params: Any
    ) -> Iterator[tuple[str, str]]:
        """(params hash, key) of each indexed entry whose call read, at every path it read,
        the value `params` has there."""
        groups = _groups(self._of(experiment).get((stage, probe)))
        for shape, (reads, by_values) in (groups or {}).items():
            values = self._values_of(params, shape, reads)
            if values is not None:
                found = by_values.get(values)
                if found is not None:
                    yield found

    def find(
        self,
        experiment: str,
        stage: str,
        probe: str,
        record: str,
        params: Any,
        outputs: list[str],
        own: str,
    ) -> tuple[Entry, str] | None:
        """An entry another call computed that this call may use, and why; None when there
        is none. `probe`: its key but the parameters; `record`: its set's name; `own`: its
        own entry folder."""
        store = self.store
        for params_hash, key in self.candidates(experiment, stage, probe, params):
            directory = store.entry_dir(store.stage_prefix(experiment, params_hash, stage), key)
            if directory == own:
                continue
            entry, _problem = store.lookup(directory, key, outputs)
            if entry is None:
                continue  # removed, invalidated or damaged since: not a candidate
            meta = entry.meta
            reads = meta.get("reads")
            if (  # the index only says where to look: the entry itself must say the same
                meta.get("stage") == stage
                and probe_of(meta.get("key_parts") or {}) == probe
                and reads is not None
                and not reads["everything"]
                and reads_match(params, reads["items"])
            ):
                return entry, shared_reason(meta, record)
        return None

    def add(
        self,
        experiment: str,
        stage: str,
        probe: str,
        reads: dict[str, Any] | None,
        params_hash: str,
        key: str,
    ) -> None:
        """Index an entry just published (one that took the whole set is not shared)."""
        if reads is None or reads["everything"]:
            return
        record = {
            "stage": stage,
            "probe": probe,
            "reads": reads["items"],
            "params_hash": params_hash,
            "key": key,
        }
        self._put(self._of(experiment), record)
        self._hold(experiment, record)

    def _hold(self, experiment: str, record: dict[str, Any]) -> None:
        """Keep a record for the next batch (written when full, or once a second old)."""
        unwritten = self._unwritten.get(experiment)
        if unwritten is None:
            unwritten = self._unwritten[experiment] = []
            if not self._since:
                self._since = time.monotonic()
        unwritten.append(record)
        if len(unwritten) >= WRITE_BATCH or time.monotonic() - self._since >= WRITE_AFTER_S:
            self.write()

    def refresh(self, experiment: str) -> None:
        """Read the index of `experiment` again (another run added to it meanwhile), with
        what this run has not written yet."""
        if self._index.pop(experiment, None) is None:
            return
        index = self._of(experiment)
        for record in self._unwritten.get(experiment, ()):
            if "probe" in record:  # (not a use line)
                self._put(index, record)

    # (experiment, entry key, set hash, set name) of the uses recorded, per experiment
    _uses: dict[str, set[tuple[str, str, str]]] | None = None

    def use(
        self, experiment: str, stage: str, params_hash: str, key: str, by: str, record: str
    ) -> None:
        """Record, in the store's index, that set `record` (hash `by`) used the entry of
        another set (`params_hash`, `key`): once, whatever the number of runs doing so
        (the uses the store has are read with its index, which a run that shares has read)."""
        from curifactory_cli.store.reads_index import use_record

        if self._uses is None:
            self._uses = {}
        known = self._uses.get(experiment)
        if known is None:
            known = self._uses[experiment] = {
                (u["use"], u["by"], u["record"]) for u in self.store.read_uses(experiment)
            }
        mark = (key, by, record)
        if mark in known:
            return
        known.add(mark)
        self._hold(experiment, use_record(stage, params_hash, key, by, record))

    def write(self) -> None:
        """Add what this run indexed to the store's index (in batches: one write each)."""
        unwritten, self._unwritten, self._since = self._unwritten, {}, 0.0
        for experiment, records in unwritten.items():
            self.store.append_index(experiment, records)
