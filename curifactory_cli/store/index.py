"""What the cache commands compute over a store's entries: selection, addressing, ordering,
lineage, garbage and totals.

Only metadata (and, to verify them, the bytes of cached files) is read: no artifact is loaded
and no user code is imported here. Loading an output is `store.dump`'s job; reading, writing
and deleting are the store's.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError
from curifactory_cli.store.entry import (
    ENTRY_DIR_NAME,
    Entry,
    listed_files,
)
from curifactory_cli.store.file_checks import FileCheck, check_file
from curifactory_cli.store.local_tidy import GRACE_S
from curifactory_cli.wording import duration

if TYPE_CHECKING:
    from curifactory_cli.store.local import LocalStore
    from curifactory_cli.store.recorded import RecordedRun, RunSource

MIN_ID_LENGTH = 6  # shorter prefixes collide too easily to be safe for a delete
_HEX = re.compile(r"^[0-9a-f]+$")


def select(
    entries: Iterable[Entry],
    experiment: str | None = None,
    stage: str | None = None,
    params: str | None = None,
) -> list[Entry]:
    """Entries matching every given filter (`params` matches a set name or a hash prefix; a
    set named `params` wins over hash prefixes: `-p b` is set b, not hashes starting with b)."""
    out = list(entries)
    if experiment:
        wanted = experiment_name(experiment)
        out = [e for e in out if e.experiment == wanted]
    if stage:
        out = [e for e in out if e.stage == stage]
    if params:
        out = _by_params(out, params)
    return out


def _by_params(entries: list[Entry], params: str) -> list[Entry]:
    named = [e for e in entries if e.params_name == params]
    return named or [e for e in entries if e.params_hash.startswith(params)]


def experiment_name(text: str) -> str:
    """An experiment as the cache stores it: `sub/exp_a`, `sub.exp_a`, `experiments/sub/exp_a.py`
    are all `sub.exp_a` (the name `curi run` records)."""
    name = text.strip().removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
    return name.removeprefix("experiments.")


# ------------------------------------------------------------------------- safety
def require_mark(store: LocalStore, action: str) -> None:
    """Refuse to change a folder that is not marked as a cache: `--cache /` or a typo must
    not walk (and delete) other people's files. A folder that does not exist is harmless."""
    from curifactory_cli.store.local import LocalStore
    from curifactory_cli.store.local_folder import CACHEDIR_TAG, TAG_SIGNATURE, is_marked

    if not isinstance(store, LocalStore) or not store.root.exists() or is_marked(store.root):
        return
    raise ConfigError(
        f"refusing to {action} {store.root}: it is not marked as a curi cache "
        f"(no {CACHEDIR_TAG} in it)",
        hint="check --cache and the project's `cache` setting. A cache made by an older curi "
        "gets its mark from the next `curi run` using it (when it holds only cache entries); "
        f"or mark it yourself: printf '{TAG_SIGNATURE}\\n' > {store.root / CACHEDIR_TAG}",
    )


# ------------------------------------------------------------------------- current entries
def _finished_runs(registry: RunSource, experiment: str | None) -> Iterator[RecordedRun]:
    """Runs newest first, those still running (or that died running) left out: their stage
    calls are recorded when they end."""
    for run in registry.list_runs(experiment, limit=None, brief=True):
        if run.status not in ("running", "died"):
            yield run


def latest_runs(registry: RunSource, experiment: str | None = None) -> list[RecordedRun]:
    """The latest finished run of each experiment (or of one), with its stage calls."""
    seen: set[str] = set()
    out = []
    for run in _finished_runs(registry, experiment):
        if run.experiment not in seen:
            seen.add(run.experiment)
            out.append(registry.get_run(run.reference))
    return out


def used_by(entries: Iterable[Entry], runs: Iterable[RecordedRun]) -> list[Entry]:
    """The entries the runs' stage calls used (found by the folder a call names, which for a
    call served from another set's entry is that set's, else by key), each once."""
    listed = list(entries)
    by_key = {e.key: e for e in listed}
    by_folder = {_folder_tail(e.location): e for e in listed}
    out: dict[str, Entry] = {}
    for run in runs:
        for call in run.stages or ():
            if not call.entry:
                continue
            entry = by_folder.get(_folder_tail(call.entry)) or by_key.get(call.key or "")
            if entry is not None:
                out.setdefault(entry.key, entry)
    return list(out.values())


def _folder_tail(path: str) -> str:
    """`<experiment>/<params hash>/<stage>-<key>` of an entry's folder, wherever the cache."""
    return "/".join(path.replace(os.sep, "/").rsplit("/", 3)[-3:])


def current_entry(
    store: LocalStore,
    registry: RunSource,
    experiment: str,
    stage: str | None,
    params: str | None,
) -> Entry:
    """The one entry the latest run of `experiment` used for this stage and parameter set."""
    run, matched = current_entries(store, registry, experiment, stage, params)
    if len(matched) == 1:
        return matched[0]
    shown = "; ".join(f"{e.short_id} ({e.label()})" for e in matched[:8])
    raise ConfigError(
        f"the latest run of {experiment!r} ({run.reference}) used {len(matched)} matching entries",
        hint=f"narrow it with -s STAGE and -p SET; candidates: {shown}.",
    )


def current_entries(
    store: LocalStore,
    registry: RunSource,
    experiment: str,
    stage: str | None,
    params: str | None,
) -> tuple[RecordedRun, list[Entry]]:
    """The latest run of `experiment` and the entries it used that match the filters (at
    least one), in the run's order (its parameter sets' order for one stage), each once."""
    run, calls = current_calls(store, registry, experiment, stage, params)
    unique = {entry.key: entry for _, entry in calls}
    return run, list(unique.values())


def current_calls(
    store: LocalStore,
    registry: RunSource,
    experiment: str,
    stage: str | None,
    params: str | None,
) -> tuple[RecordedRun, list[tuple[str, Entry]]]:
    """The latest run of `experiment` and, for each of its stage calls matching the filters
    (at least one), in the run's order, its set's name and the entry it used: that set's
    own, or another set's that it shared (`-p` names the set of the call, not the folder)."""
    runs = latest_runs(registry, experiment_name(experiment))
    if not runs:
        raise ConfigError(
            f"no finished run of experiment {experiment!r} in {registry.path}",
            hint="run it first (`curi run ...`), or give an entry id from `curi cache ls`.",
        )
    run = runs[0]
    used = _calls_entries(store, run)
    matched = [(name, e) for name, e in used if not stage or e.stage == stage]
    if params:
        named = [(name, e) for name, e in matched if name == params]
        matched = named or [(n, e) for n, e in matched if e.params_hash.startswith(params)]
    if matched:
        return run, matched
    ref = run.reference
    if not used:
        raise ConfigError(
            f"none of the entries the latest run of {experiment!r} ({ref}) used is in {store.root}",
            hint=f"that run used the cache {run.cache_dir}: pass it with --cache.",
        )
    stages = ", ".join(sorted({e.stage for _, e in used}))
    sets = ", ".join(sorted({name for name, _ in used}))
    raise ConfigError(
        f"the latest run of {experiment!r} ({ref}) used no entry matching the filters",
        hint=f"its stages: {stages}; its parameter sets: {sets}.",
    )


def _calls_entries(store: LocalStore, run: RecordedRun) -> list[tuple[str, Entry]]:
    """(set name, entry) of each call of `run` whose entry the store has: found by the
    folder the call used (a call served from another set's entry names that set's folder),
    else by key."""
    entries = list(store.entries(run.experiment))
    root = store.root
    by_rel = {e.rel(root): e for e in entries}
    by_key = {e.key: e for e in entries}
    out = []
    for call in run.stages or ():
        if not call.entry:
            continue
        entry = by_rel.get(call.entry) or by_key.get(call.key or "")
        if entry is not None:
            out.append((call.record, entry))
    return out


# ------------------------------------------------------------------------- addressing
def resolve_entry(entries: list[Entry], ident: str, root: Path) -> Entry:
    """The one entry `ident` names: a key prefix (as `cache ls` prints), a folder name
    `<stage>-<key16>`, or the entry's path (relative to the cache root or the current dir).
    """
    text = ident.strip()
    if "/" in text or os.sep in text:
        matches = _by_path(entries, text, root)
    else:
        matches = _by_id(entries, text, ident)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"no cache entry {ident!r} in {root}",
            hint="list entries and their ids with `curi cache ls` (filters apply too).",
        )
    shown = "; ".join(f"{e.short_id} ({e.label()})" for e in matches[:8])
    more = f"; and {len(matches) - 8} more" if len(matches) > 8 else ""
    raise ConfigError(
        f"entry id {ident!r} is ambiguous: it matches {len(matches)} entries",
        hint=f"candidates: {shown}{more}. Give more characters or filter with -e/-s/-p.",
    )


def _by_id(entries: list[Entry], text: str, ident: str) -> list[Entry]:
    """Entries whose key starts with `text` (a hex id, or a folder name `<stage>-<key16>`)."""
    named = ENTRY_DIR_NAME.match(text)
    if named:
        text = named["key"]
        entries = [e for e in entries if e.stage == named["stage"]]
    text = text.lower()
    if not _HEX.match(text):
        raise ConfigError(
            f"{ident!r} is not a cache entry id",
            hint="entry ids are the hex ids in the first column of `curi cache ls`.",
        )
    if len(text) < MIN_ID_LENGTH:
        raise ConfigError(
            f"entry id {ident!r} is too short",
            hint=f"give at least {MIN_ID_LENGTH} characters of the id `curi cache ls` prints.",
        )
    return [e for e in entries if e.key.startswith(text)]


def is_entry_ref(text: str) -> bool:
    """Whether `text` has the form of an entry reference: an id, a folder name or a path."""
    if "/" in text or os.sep in text:
        return True
    named = ENTRY_DIR_NAME.match(text)
    bare = (named["key"] if named else text).lower()
    return bool(_HEX.match(bare)) and len(bare) >= MIN_ID_LENGTH


def _by_path(entries: list[Entry], text: str, root: Path) -> list[Entry]:
    wanted = {text.strip("/")}
    with contextlib.suppress(OSError, ValueError):  # a path outside the cache names nothing
        wanted.add(Path(text).resolve().relative_to(root.resolve()).as_posix())
    return [e for e in entries if e.rel(root) in wanted]


# ------------------------------------------------------------------------- ordering
SORT_KEYS = ("experiment", "params", "stage", "age", "size")


def sort_entries(entries: list[Entry], by: str | None = None) -> list[Entry]:
    """Entries by experiment, params, stage, newest first; `by` puts one criterion first
    (age: newest first, size: largest first)."""
    default = sorted(entries, key=lambda e: -e.created)  # sorts are stable: newest last wins
    default.sort(key=lambda e: (e.experiment, e.params_name, e.stage))
    if by in (None, "experiment"):
        return default
    if by == "age":
        return sorted(default, key=lambda e: -e.created)
    if by == "size":
        return sorted(default, key=lambda e: -e.size)
    if by == "params":
        return sorted(default, key=lambda e: e.params_name)
    if by == "stage":
        return sorted(default, key=lambda e: e.stage)
    raise ConfigError(f"cannot sort by {by!r}", hint="use one of: " + ", ".join(SORT_KEYS) + ".")


# ------------------------------------------------------------------------- lineage
def input_refs(meta: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(input name, producer reference) pairs; an aggregate's input holds one per record."""
    for name, value in (meta.get("inputs") or {}).items():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, dict):
                yield name, ref


class Lineage:
    """Which entries were computed from which, read from every entry's `inputs` metadata."""

    MAX_DEPTH = 64  # metadata is data: never trust it to be acyclic or shallow

    def __init__(self, root: Path, entries: list[Entry]) -> None:
        self.root = root
        self.by_path = {e.rel(root): e for e in entries}
        self.consumers: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            for rel in dict.fromkeys(r.get("entry") for _, r in input_refs(entry.meta)):
                if isinstance(rel, str):
                    self.consumers[rel].append(entry)

    def upstream(
        self, entry: Entry, _seen: set[str] | None = None, _depth: int = 0
    ) -> list[dict[str, Any]]:
        """The producers of `entry`'s inputs, each with its own producers (JSON-able)."""
        seen = _seen if _seen is not None else {entry.rel(self.root)}
        groups: dict[str, dict[str, Any]] = {}
        for name, ref in input_refs(entry.meta):
            rel = ref.get("entry")
            group_key = (
                rel if isinstance(rel, str) else f"memory:{ref.get('stage')}:{ref.get('record')}"
            )
            node = groups.get(group_key)
            if node is None:
                node = groups[group_key] = self._upstream_node(rel, ref)
            if name not in node["inputs"]:
                node["inputs"].append(name)
            if ref.get("output") not in node["outputs"]:
                node["outputs"].append(ref.get("output"))
        for node in groups.values():
            producer = self.by_path.get(node["path"] or "")
            if producer is None:
                continue
            if node["path"] in seen or _depth >= self.MAX_DEPTH:
                node["repeated"] = True
                continue
            seen.add(node["path"])
            node["upstream"] = self.upstream(producer, seen, _depth + 1)
        return list(groups.values())

    def _upstream_node(self, rel: Any, ref: dict[str, Any]) -> dict[str, Any]:
        producer = self.by_path.get(rel) if isinstance(rel, str) else None
        if not isinstance(rel, str):
            status = "memory"  # produced by a stage without cachers: nothing on disk
        elif producer is None:
            status = "deleted"
        else:
            status = "invalidated" if producer.invalidated else "cached"
        return {
            "inputs": [],
            "outputs": [],
            "stage": ref.get("stage"),
            "record": ref.get("record"),
            "path": rel if isinstance(rel, str) else None,
            "id": producer.short_id if producer else None,
            "status": status,
            "upstream": [],
        }

    def downstream(
        self, entry: Entry, _seen: set[str] | None = None, _depth: int = 0
    ) -> list[dict[str, Any]]:
        """The entries computed from `entry`, each with what was computed from it (JSON-able)."""
        rel = entry.rel(self.root)
        seen = _seen if _seen is not None else {rel}
        out = []
        for consumer in self.consumers.get(rel, []):
            crel = consumer.rel(self.root)
            names = [n for n, r in input_refs(consumer.meta) if r.get("entry") == rel]
            node: dict[str, Any] = {
                "inputs": list(dict.fromkeys(names)),
                "stage": consumer.stage,
                "record": consumer.params_name,
                "path": crel,
                "id": consumer.short_id,
                "status": "invalidated" if consumer.invalidated else "cached",
                "downstream": [],
            }
            if crel in seen or _depth >= self.MAX_DEPTH:
                node["repeated"] = True
            else:
                seen.add(crel)
                node["downstream"] = self.downstream(consumer, seen, _depth + 1)
            out.append(node)
        return out

    def descendants(self, entries: list[Entry]) -> list[Entry]:
        """Every entry computed, directly or transitively, from `entries` (not those)."""
        start = {e.rel(self.root) for e in entries}
        seen, todo, out = set(start), list(start), []
        while todo:
            for consumer in self.consumers.get(todo.pop(), []):
                crel = consumer.rel(self.root)
                if crel not in seen:
                    seen.add(crel)
                    todo.append(crel)
                    out.append(consumer)
        return out


# ------------------------------------------------------------------------- checking files
def check_files(store: LocalStore, entry: Entry, output: str | None = None) -> list[FileCheck]:
    """Every recorded file of the entry (or of one output) against its size and sha256."""
    directory = store.local_dir(entry)
    return [
        check_file(directory, name, info)
        for name, info in listed_files(entry.meta)
        if output is None or name == output
    ]


# ------------------------------------------------------------------------- garbage
@dataclass
class Garbage:
    """Something `cache gc` would remove, and why."""

    path: PurePath  # a local folder, or a folder in a bucket
    kind: str  # "leftover", "orphan", "old" or "superseded"
    size: int
    reason: str
    entry: Entry | None = field(default=None, repr=False)

    def to_json(self, root: Path) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "path": self.path.relative_to(root).as_posix(),
            "size": self.size,
            "reason": self.reason,
        }
        if self.entry is not None:
            data["id"] = self.entry.short_id
        return data


def leftovers(store: LocalStore, now: float, grace: float = GRACE_S) -> list[Garbage]:
    """Draft and trash folders of interrupted runs, and lock files nobody uses."""
    return [
        Garbage(path, "leftover", store.path_size(path), reason)
        for path, reason in store.leftovers(now, grace)
    ]


def orphans(store: LocalStore, now: float, grace: float = GRACE_S) -> list[Garbage]:
    """Entry-like folders without metadata, once older than the grace period."""
    return [
        Garbage(path, "orphan", store.path_size(path), "no readable meta.json")
        for path in store.orphan_dirs()
        if store.age_of(path, now) >= grace
    ]


def older_than(entries: list[Entry], seconds: float, now: float) -> list[Garbage]:
    return [
        Garbage(e.directory, "old", e.size, f"written {human_age(now - e.created)}", e)
        for e in entries
        if now - e.created > seconds
    ]


def superseded(entries: list[Entry], keep: int) -> list[Garbage]:
    """All but the `keep` newest entries of each (experiment, parameter set, stage): older
    versions left behind after the code or an input changed."""
    groups: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.experiment, entry.params_hash, entry.stage)].append(entry)
    out = []
    for group in groups.values():
        group.sort(key=lambda e: e.created, reverse=True)
        for entry in group[keep:]:
            reason = f"{len(group) - 1} newer version(s) of this stage and parameter set"
            out.append(Garbage(entry.directory, "superseded", entry.size, reason, entry))
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in '90s', '15m', '12h', '30d' or '2w' (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ConfigError(
            f"cannot read duration {text!r}",
            hint="write a number with a unit: 90s, 15m, 12h, 30d or 2w.",
        )
    return float(match[1]) * _UNITS[match[2] or "d"]


# ------------------------------------------------------------------------- totals
DU_GROUPS = ("experiment", "stage", "params")


def totals(entries: list[Entry], by: str) -> list[dict[str, Any]]:
    """Entry counts and sizes grouped by experiment, by (experiment, stage) or by
    (experiment, parameter set), largest first."""
    return totals_by(entries, [by])[0][by]


def totals_by(
    entries: Iterable[Entry], groupings: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """`totals` for several groupings, in one pass over entries that are not kept (a cache
    of any size fits), and the overall {entries, size}."""
    for by in groupings:
        if by not in DU_GROUPS:
            raise ConfigError(
                f"cannot group by {by!r}", hint="use one of: " + ", ".join(DU_GROUPS) + "."
            )
    groups: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {by: {} for by in groupings}
    overall = {"entries": 0, "size": 0}
    for entry in entries:
        size = entry.size
        overall["entries"] += 1
        overall["size"] += size
        for by in groupings:
            if by == "experiment":
                key: tuple[str, ...] = (entry.experiment,)
            elif by == "stage":
                key = (entry.experiment, entry.stage)
            else:
                key = (entry.experiment, entry.params_hash)
            group = groups[by].get(key)
            if group is None:
                group = groups[by][key] = {**_group_fields(entry, by), "entries": 0, "size": 0}
            group["entries"] += 1
            group["size"] += size
    ordered = {
        by: [g for _, g in sorted(found.items(), key=lambda item: (-item[1]["size"], item[0]))]
        for by, found in groups.items()
    }
    return ordered, overall


def _group_fields(entry: Entry, by: str) -> dict[str, Any]:
    if by == "experiment":
        return {"experiment": entry.experiment}
    if by == "stage":
        return {"experiment": entry.experiment, "stage": entry.stage}
    return {
        "experiment": entry.experiment,
        "params": entry.params_name,
        "params_hash": entry.params_hash[:16],
    }


# ------------------------------------------------------------------------- formatting
def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_age(seconds: float) -> str:
    return f"{duration(seconds, coarse=True)} ago"
