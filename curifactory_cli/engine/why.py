"""`curi why`: a planned stage call's key, part by part, and what differs from the entry
closest to it.

The key of a call is made of its experiment, stage, code, cachers and outputs, call
arguments, input files, input data and the parameters it reads. The plan says whether an
entry serves the call; this says, part by part, how the call compares with the entry that
comes closest: the one that serves it; else this set's newest entry of the stage; else an
entry of the same computation under other parameter values (the one this set's calls used
before first: a set's own, or one it shared); else this set's newest entry of the stage
under its old values (or one its calls used); else the newest entry of the stage. Nothing
is run or loaded: it reads the plan's keys and the entries' metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.keys import params_json
from curifactory_cli.engine.planner import Plan
from curifactory_cli.engine.reasons import changes_of
from curifactory_cli.graph import OutputRef, entry_namespace
from curifactory_cli.parameters.read_values import ABSENT, differing_paths, json_value, value_at

if TYPE_CHECKING:
    from curifactory_cli.engine.planner import NodePlan, Planner
    from curifactory_cli.graph import Node
    from curifactory_cli.store import Entry

# Why an entry is the closest one.
SERVES = "serves it"
OWN_NEWEST = "this set's newest entry of the stage"
SAME_COMPUTATION = "same computation under other parameter values"
OWN_BEFORE = "this set's newest entry of the stage, under its old values"
USED_BEFORE = "the entry this set's call used before"
NEWEST_OF_STAGE = "newest entry of the stage"


@dataclass
class Closest:
    entry: Entry
    chosen: str  # SERVES, OWN_NEWEST, ...

    def to_json(self, root: str) -> dict[str, Any]:
        meta = self.entry.meta
        return {
            "entry": _rel(self.entry.location, root),
            "key": self.entry.key,
            "record": meta.get("record"),
            "finished": (meta.get("timings") or {}).get("finished"),
            "chosen": self.chosen,
        }


@dataclass
class CallWhy:
    """One stage call: its plan, its key's parts, and how they compare with the closest
    entry (`differences`: one dict per differing part, as the reasons' `changed`)."""

    item: NodePlan
    parts: dict[str, Any]
    code: list[dict[str, Any]]  # name, kind and digest of each part of the code's fingerprint
    inputs: dict[str, dict[str, Any]]  # input name -> its version (None: not known) and source
    reads: list[dict[str, Any]] | None  # what the closest entry's call read, with this set's values
    reads_everything: bool
    closest: Closest | None
    differences: list[dict[str, Any]] = field(default_factory=list)
    root: str = ""

    def to_json(self) -> dict[str, Any]:
        item, parts = self.item, self.parts
        return {
            "stage": item.node.stage.name,
            "record": item.node.record_name,
            "plan": item.plan.value if item.plan else None,
            "reason": item.reason,
            "changed": changes_of(item.reason),
            "key": item.key,
            "parts": {
                "experiment": parts.get("experiment"),
                "stage": parts.get("stage"),
                "code": {"fingerprint": parts.get("code"), "parts": self.code},
                "cachers": [c.get("type") for c in parts.get("cachers") or []],
                "outputs": parts.get("outputs") or [],
                "kwargs": _kwargs(item.node),
                "files": parts.get("files") or {},
                "inputs": self.inputs,
                "params": {
                    "hash": parts.get("params"),
                    "own": item.node.record.params is not None,  # not an aggregate's
                    "reads": self.reads,
                    "everything": self.reads_everything,
                },
            },
            "closest": None if self.closest is None else self.closest.to_json(self.root),
            "differences": self.differences,
        }


def explain_calls(planner: Planner, items: list[NodePlan]) -> list[CallWhy]:
    """Each planned call of `items`, part by part, against its closest entry."""
    return [_Explainer(planner).call(item) for item in items]


class _Explainer:
    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.store = planner.store
        self.finder = planner.finder
        self.explainer = planner.finder.explainer
        self.root = str(self.store.root)

    def call(self, item: NodePlan) -> CallWhy:
        node = item.node
        parts = self.planner.call_parts(node)
        closest = self._closest(item, parts) if node.is_cached_stage else None
        meta = closest.entry.meta if closest is not None else None
        fingerprinter = self.planner.keys.fingerprinter
        breakdown, kinds = (
            fingerprinter.breakdown(node.stage.fn),
            fingerprinter.kinds(node.stage.fn),
        )
        code = [{"name": n, "kind": kinds.get(n), "digest": d} for n, d in breakdown.items()]
        reads, everything = _reads(node, meta)
        return CallWhy(
            item,
            parts,
            code,
            self._inputs(node, parts),
            reads,
            everything,
            closest,
            [] if meta is None else self._differences(node, parts, meta),
            self.root,
        )

    # ------------------------------------------------------------------ the closest entry
    def _closest(self, item: NodePlan, parts: dict[str, Any]) -> Closest | None:
        node = item.node
        outputs = [ref.name for ref in node.outputs]
        if item.plan is Plan.CACHED and item.entry and item.key:
            entry, _ = self.store.lookup(item.entry, item.key, outputs)
            if entry is not None:
                return Closest(entry, SERVES)
        prefix = self.finder.stage_prefix(node)
        own = self.store.stage_entries(prefix)
        if own:
            return Closest(own[0], OWN_NEWEST)
        used = self.explainer.used_elsewhere(node, prefix)
        if all(v is not None for v in parts["inputs"].values()):
            same = self.explainer.closest_same_computation(node, parts, used)
            if same is not None:
                return Closest(same[0], SAME_COMPUTATION)
        best: tuple[Any, Entry, str] | None = None
        namespace = entry_namespace(node, self.planner.experiment)
        for entry in self.store.entries(namespace):
            if entry.stage != node.stage.name:
                continue
            chosen = NEWEST_OF_STAGE
            if entry.params_name == node.record_name:
                chosen = OWN_BEFORE
            elif _rel(entry.location, self.root) in used:
                chosen = USED_BEFORE
            finished = str((entry.meta.get("timings") or {}).get("finished", ""))
            rank = (chosen != NEWEST_OF_STAGE, finished, entry.created)
            if best is None or rank > best[0]:
                best = (rank, entry, chosen)
        return None if best is None else Closest(best[1], best[2])

    # ------------------------------------------------------------------ the parts
    def _inputs(self, node: Node, parts: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for name, version in parts["inputs"].items():
            src = node.inputs.get(name)
            source = (
                f"{src.node.stage.name} [{src.node.record_name}]"
                if isinstance(src, OutputRef)
                else ("several sets" if name in node.aggregate_inputs else "a value")
            )
            out[name] = {"version": version, "from": source}
        return out

    def _differences(
        self, node: Node, parts: dict[str, Any], meta: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """What differs between the call's parts and the entry's, part by part."""
        stored: dict[str, Any] = meta.get("key_parts") or {}
        out: list[dict[str, Any]] = []
        if stored.get("experiment") != parts.get("experiment"):
            out.append(_change("experiment", stored.get("experiment"), parts.get("experiment")))
        if stored.get("code") != parts.get("code"):
            names, kinds = self.explainer.changed_code(node, meta.get("code_parts") or {})
            out += [{"part": "code", "name": n, "kind": kinds.get(n)} for n in names] or [
                {"part": "code"}
            ]
        for part in ("cachers", "outputs"):
            if stored.get(part) != parts.get(part):
                out.append(_change(part, _shown_part(part, stored), _shown_part(part, parts)))
        if stored.get("kwargs") != parts.get("kwargs"):
            out.append({"part": "kwargs"})
        old_files, new_files = stored.get("files") or {}, parts.get("files") or {}
        for path in sorted(old_files.keys() | new_files.keys()):
            if old_files.get(path) != new_files.get(path):
                out.append(
                    {
                        "part": "files",
                        "path": path,
                        "old": old_files.get(path),
                        "new": new_files.get(path),
                    }
                )
        old_inputs = stored.get("inputs") or {}
        for name, version in parts["inputs"].items():
            if name in node.aggregate_inputs:  # [set hash, version] pairs: by set
                records = _differing_sets(node, name, old_inputs.get(name), version)
                if records:
                    out.append({"part": "inputs", "name": name, "records": records})
            elif version is None or old_inputs.get(name) != version:
                out.append(
                    {"part": "inputs", "name": name, "old": old_inputs.get(name), "new": version}
                )
        return out + _param_differences(node, parts, meta)


def _param_differences(
    node: Node, parts: dict[str, Any], meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """The parameters the entry's call read whose value differs in this set (every field,
    when it read the whole set or what it read was not recorded)."""
    params = node.record.params
    stored = meta.get("key_parts") or {}
    old_values = meta.get("params") or {}
    reads = meta.get("reads")
    if params is None:  # an aggregate's hash covers its records' sets (see its inputs)
        if stored.get("params") == parts.get("params"):
            return []
        return [{"part": "params", "old": stored.get("params"), "new": parts.get("params")}]
    if isinstance(reads, dict) and not reads.get("everything"):
        paths = differing_paths(params, reads.get("items") or [])
    elif stored.get("params") != parts.get("params"):
        new_values = params_json(params) or {}
        paths = sorted(
            k
            for k in old_values.keys() | new_values.keys()
            if k != "name" and old_values.get(k, ABSENT) != new_values.get(k, ABSENT)
        )
    else:
        paths = []
    return [
        {
            "part": "params",
            "path": path,
            "old": json_value(value_at(old_values, path)),
            "new": json_value(value_at(params, path)),
        }
        for path in paths
    ]


def _reads(node: Node, meta: dict[str, Any] | None) -> tuple[list[dict[str, Any]] | None, bool]:
    """The paths the entry's call read, with this set's values there (None: not known, as
    no entry is close); whether it read the whole set."""
    params = node.record.params
    if meta is None or params is None:
        return None, False
    reads = meta.get("reads")
    if not isinstance(reads, dict) or reads.get("everything"):
        return None, True
    paths = sorted({path for path, _ in reads.get("items") or []})
    return [{"path": p, "value": json_value(value_at(params, p))} for p in paths], False


def _differing_sets(node: Node, name: str, old: Any, new: Any) -> list[str]:
    """The sets whose data differs (or is not known yet) between an aggregate's input pairs
    ([set hash, version]) in an entry (`old`) and in the call (`new`), by name."""
    names = {rec.get_hash(): rec.name for rec, _ in node.aggregate_inputs.get(name, [])}
    before = {str(h): v for h, v in old or [] if isinstance(h, str)}
    now = {str(h): v for h, v in new or []}
    keys = before.keys() | now.keys()
    return sorted(
        names.get(h, f"a set it no longer covers ({h[:12]})")
        for h in keys
        if now.get(h) is None or before.get(h) != now.get(h)
    )


def _change(part: str, old: Any, new: Any) -> dict[str, Any]:
    return {"part": part, "old": old, "new": new}


def _shown_part(part: str, parts: dict[str, Any]) -> Any:
    if part == "cachers":
        return [str(c.get("type", "?")).rsplit(".", 1)[-1] for c in parts.get(part) or []]
    return parts.get(part)


def _kwargs(node: Node) -> dict[str, Any]:
    return {str(k): json_value(v) for k, v in (node.kwargs or {}).items()}


def _rel(location: str, root: str) -> str:
    rel = location[len(root) :] if location.startswith(root) else location
    return rel.lstrip("/\\").replace("\\", "/")
