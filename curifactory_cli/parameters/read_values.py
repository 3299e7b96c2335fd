"""What a parameter set has at a parameter path, and its digest there as the parameter hash
computes it (built-in fields, `hash_representations` opt-outs and functions respected, and
which class each nested dataclass is): how `parameters.reads` records a read, and how
another set is compared with what was read (`first_difference`, `reads_match`,
`current_items`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from curifactory_cli.errors import ParamsError
from curifactory_cli.hashing import (
    MAX_DEPTH,
    PARAMETERS_BLACKLIST,
    _representations,
    digest,
    hash_params,
    hash_value,
)
from curifactory_cli.parameters.paths import Key, Parts, parse_path
from curifactory_cli.parameters.sets import Params, hash_view

ABSENT_DIGEST = "absent"  # a path the set has no value at (never a hex digest)
UNHASHABLE_DIGEST = "unhashable"  # a value that cannot be hashed: never matches
ABSENT: Any = object()  # what a set has at a path it has no value at
_ABSENT = ABSENT


class RecordSets:
    """The parameter sets of the records an aggregate covers, in the order it gets them, as
    one object: what an aggregate call read of them are paths under each record's position
    (`[0].lr` is `records[0].params.lr`)."""

    __slots__ = ("sets",)

    def __init__(self, sets: tuple[Any, ...]) -> None:
        self.sets = sets


# --------------------------------------------------------------------------------------------
# Digests, as the parameter hash computes them


def _field_digest(container: Any, key: Key, value: Any, set_level: bool) -> str | None:
    """The digest of `container`'s field `key` holding `value`; None when the field is not
    part of the parameter hash. `set_level`: the container is a set or a dataclass, whose
    built-in fields and `hash_representations` count (a mapping's keys are all hashed)."""
    if value is _ABSENT:
        return ABSENT_DIGEST
    if set_level:
        if key in PARAMETERS_BLACKLIST:
            return None
        reps = _representations(container)
        if key in reps:
            rep = reps[key]
            if rep is None:
                return None
            if callable(rep):
                value = rep(container, value)
    return hash_value(hash_view(value), "parameter value")


def _whole_digest(params: Any) -> str:
    return _with_classes(hash_params(hash_view(params), "parameter set"), _classes(params))


def _with_classes(value_digest: str, classes: str) -> str:
    """A value's digest made to tell the classes of the dataclasses in it apart: the
    parameter hash leaves them out (as Curifactory's does), but code given the whole object
    sees them (`repr`, `isinstance`)."""
    return digest(f"{value_digest}{classes}", len(value_digest)) if classes else value_digest


def _classes(value: Any, depth: int = 0, own: bool = True) -> str:
    """Which class each dataclass in `value` is ("" when there is none); `own`: `value`'s
    own class too, when it is a dataclass."""
    if depth > MAX_DEPTH:
        return "..."
    cls = type(value)
    if hasattr(cls, "__dataclass_fields__") and not isinstance(value, type):
        inner = ",".join(
            _classes(getattr(value, f.name, None), depth + 1) for f in dataclasses.fields(value)
        )
        if not own:
            return inner if inner.strip(",") else ""
        return f":{cls.__module__}.{cls.__qualname__}({inner})"
    if isinstance(value, Params):
        value = value._data
    if isinstance(value, Mapping):
        inner = ",".join(_classes(value[k], depth + 1) for k in sorted(value, key=repr))
        return f"{{{inner}}}" if inner.strip("{}[],") else ""
    if isinstance(value, (list, tuple)):
        inner = ",".join(_classes(v, depth + 1) for v in value)
        return f"[{inner}]" if inner.strip("{}[],") else ""
    return ""


def _kind(value: Any) -> str | None:
    """What a stage learns of a nested object by taking it (before reading any of it): a
    mapping, or a dataclass of some class; None for a value no view is made of."""
    if isinstance(value, (Mapping, Params)):
        return "kind:mapping"
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        return f"kind:dataclass:{type(value).__module__}.{type(value).__qualname__}"
    return None


def _node_digest(container: Any, key: Key, value: Any, set_level: bool) -> str:
    field = _field_digest(container, key, value, set_level)
    if field is not None:  # its own class is its kind already: the classes inside it count
        field = _with_classes(field, _classes(value, own=False))
    return f"{_kind(value)}|{field}"


# --------------------------------------------------------------------------------------------
# Comparing a set with what was read of another


def first_difference(params: Any, reads: Any) -> str | None:
    """The first recorded path whose value in `params` has another digest ("" for the whole
    set), or None when every one is the same: a stage call that read those values of
    another set would read the same of this one."""
    items: Iterable[tuple[str, str]] = reads.items if hasattr(reads, "everything") else reads
    for path, recorded in sorted(items):  # (a Reads, or its items)
        try:
            current = _digest_at(params, parse_path(path), recorded)
        except (ParamsError, ValueError):
            return path
        if current != recorded or recorded == UNHASHABLE_DIGEST:
            return path
    return None


def differing_paths(params: Any, items: Iterable[tuple[str, str]]) -> list[str]:
    """Every recorded path ((path, digest) pairs, as `first_difference` takes them) whose
    value in `params` has another digest, sorted ("" for the whole set)."""
    return sorted(
        path for path, recorded in items if first_difference(params, [(path, recorded)]) is not None
    )


def reads_match(params: Any, reads: Any) -> bool:
    return first_difference(params, reads) is None


def current_items(params: Any, items: Iterable[Any]) -> tuple[tuple[str, str], ...] | None:
    """What `params` has at the paths of recorded `items` ((path, digest) pairs), digested
    as each was recorded; None when a path has no digest that could match."""
    out = []
    for path, recorded in items:
        try:
            current = _digest_at(params, parse_path(path), recorded)
        except (ParamsError, ValueError):
            return None
        if current is None or recorded == UNHASHABLE_DIGEST:
            return None
        out.append((path, current))
    return tuple(out)


def _digest_at(params: Any, parts: Parts, recorded: str) -> str | None:
    """The digest of `params` at `parts`, computed as `recorded` was."""
    if not parts:
        return _whole_digest(params)
    container, set_level, raw = params, True, False
    for key in parts[:-1]:
        value = _child(container, key)
        if isinstance(container, RecordSets):  # a record's set: its paths as a stage's
            if value is _ABSENT:
                return ABSENT_DIGEST
            container, set_level, raw = value, True, False
        elif hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
            container, set_level, raw = value, True, False
        elif isinstance(value, Mapping) and (raw or isinstance(container, Params)):
            container, set_level, raw = value, False, True
        else:
            return ABSENT_DIGEST  # a view is made only of those two kinds
    key = parts[-1]
    value = _child(container, key)
    if recorded.startswith("kind:"):  # a nested object taken (and maybe read whole)
        if isinstance(value, Mapping) and not (raw or isinstance(container, Params)):
            return None  # a mapping in a dataclass is a value, not a nested object
        if "|" in recorded:
            return _node_digest(hash_view(container), key, value, set_level)
        return _kind(value)
    digest = _field_digest(hash_view(container), key, value, set_level)
    return ABSENT_DIGEST if digest is None else digest


def value_at(params: Any, path: str) -> Any:
    """The value of `params` (a set, a dataclass or plain JSON data) at a rendered path, or
    ABSENT when it has none there."""
    value = params
    for key in parse_path(path):
        value = _child(value, key)
        if value is _ABSENT:
            break
    return value


def json_value(value: Any) -> Any:
    """A parameter's value as JSON data, as a reason's `changed` carries it (None for a value
    that is not there; the repr of what JSON cannot hold)."""
    if value is ABSENT:
        return None
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, default=repr))
    except (TypeError, ValueError):
        return repr(value)


def _child(container: Any, key: Key) -> Any:
    """A field of a set, a dataclass or a mapping (not a class attribute), or _ABSENT."""
    if isinstance(container, RecordSets):
        sets = container.sets
        return sets[key] if type(key) is int and 0 <= key < len(sets) else _ABSENT
    if isinstance(container, Params):
        container = container._data
    if isinstance(container, Mapping):
        return container.get(key, _ABSENT)
    if not isinstance(key, str):
        return _ABSENT
    if key in _field_names(type(container)):
        return getattr(container, key, _ABSENT)
    own = getattr(container, "__dict__", None)
    return own[key] if isinstance(own, dict) and key in own else _ABSENT


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    """A class's dataclass fields and slots: the fields not in an instance's __dict__."""
    known = _FIELD_NAMES.get(cls)
    if known is None:
        names = (
            {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        )
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            names.update([slots] if isinstance(slots, str) else slots)
        known = _FIELD_NAMES[cls] = frozenset(names - {"__dict__", "__weakref__"})
    return known
