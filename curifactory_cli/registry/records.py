"""A run and its stage calls as the registry records them: typed, read by attribute.

Records are read-only by agreement, not frozen: a frozen dataclass costs four times as much
to make, and there is one per stage call of a run and one per run of a listing (give a
changed copy with `dataclasses.replace`).

`RunRecord` is one row of the `runs` table, `StageRecord` one row of `run_stages`; the small
JSON documents a run row holds (its parameter sets and files, git commit, host) have types of
their own. Everything that shows a run (`curi runs`, `cache inspect`, the HTML report, the
full store, a notebook's display) reads these; `to_json()` gives the data every `--json`
output and `run.json` print, key for key as the registry's rows always read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from curifactory_cli.registry.references import reproduce_command

# A field's metadata: how its column is stored (`decode` turns the column's value into the
# field's), and whether a brief listing leaves it out (then it is None, and so is its key).
Decode = Callable[[Any], Any]


def _column(decode: Decode | None = None, *, brief: bool = True) -> dict[str, Any]:
    return {"decode": decode, "brief": brief}


def _json_column(decode: Decode, *, brief: bool = True) -> dict[str, Any]:
    """A column holding a JSON document, decoded by `decode` after `json.loads`."""
    return _column(lambda text: None if text is None else decode(json.loads(text)), brief=brief)


def _mapping(value: Any) -> Mapping[str, Any]:
    """A stored JSON document that should be an object (anything else reads as empty)."""
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(slots=True)
class ParamSetRecord:
    """A parameter set as a run recorded it. `source` is the file it came from and `values`
    its values as plain data; None when not recorded (runs before values were kept; the sets
    a parameter file lists name only name and hash), and then left out of the JSON."""

    name: str
    hash: str
    source: str | None = None
    values: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # Keys in sorted order: as the registry stores (and so reads back) the document.
        out: dict[str, Any] = {"hash": self.hash, "name": self.name}
        if self.source is not None:
            out["source"] = self.source
        if self.values is not None:
            out["values"] = self.values
        return out

    @classmethod
    def from_json(cls, doc: Any) -> ParamSetRecord:
        doc = _mapping(doc)
        values = doc.get("values")
        return cls(
            name=str(doc.get("name", "")),
            hash=str(doc.get("hash", "")),
            source=_text(doc.get("source")),
            values=values if isinstance(values, dict) else None,
        )


@dataclass(slots=True)
class ParamFileRecord:
    """A parameter file a run read, and the sets it took from it (name and hash each)."""

    path: str
    sets: list[ParamSetRecord]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sets": [s.to_json() for s in self.sets]}

    @classmethod
    def from_json(cls, doc: Any) -> ParamFileRecord:
        doc = _mapping(doc)
        sets = doc.get("sets")
        return cls(
            path=str(doc.get("path", "")),
            sets=[ParamSetRecord.from_json(s) for s in sets] if isinstance(sets, list) else [],
        )


@dataclass(slots=True)
class GitInfo:
    """The project's commit when the run started, and whether its work tree had changes
    (both None outside a git repository)."""

    commit: str | None = None
    dirty: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty}

    @classmethod
    def from_json(cls, doc: Any) -> GitInfo:
        doc = _mapping(doc)
        dirty = doc.get("dirty")
        return cls(commit=_text(doc.get("commit")), dirty=None if dirty is None else bool(dirty))


@dataclass(slots=True)
class HostInfo:
    """The machine and process a run ran in (the pid tells a live run from a dead one)."""

    host: str | None = None
    pid: int | None = None
    platform: str | None = None

    def to_json(self) -> dict[str, Any]:
        # A key the stored document did not have stays out (as the registry reads it back).
        out: dict[str, Any] = {}
        for name in ("host", "pid", "platform"):  # sorted, as stored
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, doc: Any) -> HostInfo:
        doc = _mapping(doc)
        pid = doc.get("pid")
        return cls(
            host=_text(doc.get("host")),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            platform=_text(doc.get("platform")),
        )


def _params(doc: Any) -> list[ParamSetRecord]:
    return [ParamSetRecord.from_json(p) for p in doc] if isinstance(doc, list) else []


def _files(doc: Any) -> list[ParamFileRecord]:
    return [ParamFileRecord.from_json(f) for f in doc] if isinstance(doc, list) else []


def _strings(doc: Any) -> list[str]:
    return [str(item) for item in doc] if isinstance(doc, list) else []


def _table(doc: Any) -> dict[str, Any]:
    return dict(doc) if isinstance(doc, Mapping) else {}


def _counts(doc: Any) -> dict[str, int] | None:
    return None if doc is None else dict(_mapping(doc))


def _code(doc: Any) -> dict[str, dict[str, str]]:
    return {str(stage): dict(_mapping(parts)) for stage, parts in _mapping(doc).items()}


@dataclass(slots=True)
class StageRecord:
    """One stage call of a run (a row of `run_stages`): what it did and why, how long it
    took, its cache key and entry (relative to the run's cache), and the positions of the
    calls it took inputs from (None in a registry of the first version, which kept no
    edges). Its fields are the table's columns, in order, and `to_json()` gives them so: a
    new column is one field here (with its column in `database._SCHEMA`, its migration, and
    the INSERT of `finish_run`)."""

    stage: str
    record: str
    outcome: str  # executed, cached, skipped or failed
    reason: str | None = None
    seconds: float | None = None
    key: str | None = None
    entry: str | None = None
    inputs: list[int] | None = None
    aggregate: bool = False
    # The metrics it recorded, by name (a JSON object in its column): None when it recorded
    # none (or in a file older than metrics), and then left out of the JSON.
    metrics: dict[str, int | float | bool] | None = None
    # The data version of each output of a call with cachers (a checksum of its files: equal
    # versions, identical bytes), by output name; None for a call without cachers, one that
    # did not settle, or in a file older than them (and then left out of the JSON).
    outputs: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in STAGE_FIELDS}
        if self.metrics:
            out["metrics"] = self.metrics
        if self.outputs:
            out["outputs"] = self.outputs
        return out


STAGE_FIELDS = tuple(
    f.name for f in dataclasses.fields(StageRecord) if f.name not in ("metrics", "outputs")
)


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One run as the registry recorded it (a row of `runs`), with its stage calls when they
    were asked for.

    Each field is the column of the same name, in the table's order; its metadata says how
    the column is decoded (JSON documents into the types above) and whether a brief listing
    reads it. `to_json()` gives the fields in this order (in a file made by an older version,
    in the order of its columns: an upgrade adds columns last), each nested record as its own
    `to_json()`, leaving out those not read (a brief listing's parameter sets and versions;
    `stages` when not asked for). So a new column is one field here (reading, `to_json` and
    every `--json` output follow) and the column in `database._SCHEMA` with its migration.
    """

    reference: str
    experiment: str
    number: int
    status: str  # running, complete, error, interrupted, or died (read: the process is gone)
    started: str  # ISO 8601, local time with offset
    finished: str | None = None
    duration_s: float | None = None
    command: list[str] = field(default_factory=list, metadata=_json_column(_strings))
    param_files: list[ParamFileRecord] | None = field(
        default=None, metadata=_json_column(_files, brief=False)
    )
    param_sets: list[ParamSetRecord] | None = field(
        default=None, metadata=_json_column(_params, brief=False)
    )
    git: GitInfo = field(default_factory=GitInfo, metadata=_json_column(GitInfo.from_json))
    host: HostInfo = field(default_factory=HostInfo, metadata=_json_column(HostInfo.from_json))
    versions: dict[str, str] | None = field(
        default=None, metadata=_json_column(_table, brief=False)
    )
    notes: str | None = None
    doc: str | None = None  # the experiment's docstring (None in a file of the first version)
    reproduce: str = ""  # the command that runs it again (read: derived from `command` if NULL)
    cache_dir: str = ""
    dry: bool = field(default=False, metadata=_column(bool))
    counts: dict[str, int] | None = field(default=None, metadata=_json_column(_counts))
    error: str | None = None
    failed_stage: str | None = None
    failed_record: str | None = None
    # Each stage's code fingerprints by part (the stage function, the helpers and constants
    # it uses), as `curi runs diff` compares them; None in a file older than them.
    code: dict[str, dict[str, str]] | None = field(
        default=None, metadata=_json_column(_code, brief=False)
    )
    stages: list[StageRecord] | None = field(default=None, metadata={"column": False})
    # The columns of the file it was read from, in its order, where that is not the fields'.
    column_order: tuple[str, ...] = field(
        default=(), repr=False, compare=False, metadata={"column": False, "json": False}
    )

    def to_json(self) -> dict[str, Any]:
        fields = _JSON_FIELDS
        if self.column_order:
            fields = tuple(sorted(fields, key=lambda f: _rank(self.column_order, f[0])))
        out: dict[str, Any] = {}
        for name, omitted_when_none in fields:
            value = getattr(self, name)
            if value is None and omitted_when_none:
                continue
            out[name] = _plain(value)
        return out

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], **more: Any) -> RunRecord:
        """A record from a row's columns (those it has: a brief listing reads fewer, an
        older file has fewer), each decoded as its field says; `more` sets other fields. A
        run without a reproduce command (recorded before it was kept) gets the one its
        command line gives."""
        values: dict[str, Any] = {}
        for name, value in columns.items():
            if name in _DECODERS:  # not `id`
                decode = _DECODERS[name]
                values[name] = value if decode is None else decode(value)
        if not values.get("reproduce"):
            values["reproduce"] = reproduce_command(values.get("command") or [])
        order = _column_order(tuple(columns))
        if order:
            values["column_order"] = order
        values.update(more)
        return cls(**values)


def _column_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The order of a row's columns, when it is not the fields' (() when it is); one tuple
    for all the rows of a listing."""
    order = _ORDERS.get(keys)
    if order is None:
        order = tuple(name for name in keys if name in _COLUMN_SET)
        order = _ORDERS[keys] = () if order == _COLUMN_NAMES else order
    return order


def _rank(order: tuple[str, ...], name: str) -> int:
    """Where a field goes in the JSON of a record read from a file whose columns are in
    `order`: in that order; fields it has no column for after them, in the fields' order."""
    return order.index(name) if name in order else len(order)


def _plain(value: Any) -> Any:
    """A field's value as JSON data."""
    if isinstance(value, list):
        return [item.to_json() if hasattr(item, "to_json") else item for item in value]
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


# (name, decode) of every column; (name, left out of the JSON when None) of every field.
_COLUMNS = tuple(
    (f.name, f.metadata.get("decode"))
    for f in dataclasses.fields(RunRecord)
    if f.metadata.get("column", True)
)
_COLUMN_NAMES = tuple(name for name, _ in _COLUMNS)
_DECODERS = dict(_COLUMNS)
_COLUMN_SET = frozenset(_COLUMN_NAMES)
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}
_JSON_FIELDS = tuple(
    (f.name, not f.metadata.get("column", True) or not f.metadata.get("brief", True))
    for f in dataclasses.fields(RunRecord)
    if f.metadata.get("json", True)
)
# The columns a brief listing reads: all but the parameter sets and files and the versions
# (what a listing of many runs does not show, and the bulk of a big sweep's row).
BRIEF_COLUMNS = tuple(
    f.name
    for f in dataclasses.fields(RunRecord)
    if f.metadata.get("column", True) and f.metadata.get("brief", True)
)
