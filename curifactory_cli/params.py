"""Parameter sets: the `ExperimentParameters` base, YAML files, grids, `--set` overrides.

A YAML parameter file is either a list of sets, or a mapping with any of:

    defaults: {...}          # values shared by every set below
    sets: [{name: ..., ...}]  # named sets
    grid: {name: ..., vary: {key: [v1, v2], ...}, <fixed keys>: ...}   # or a list of grids

A grid expands to the cartesian product of its `vary` lists, in order, with generated names
like `sweep_lr=0.1_depth=3`. Dotted keys (`model.depth`) address nested mappings everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curifactory_cli.errors import ParamsError
from curifactory_cli.hashing import (  # noqa: F401 - set_hash_functions: Curifactory's place
    MAX_DEPTH,
    PARAMETERS_BLACKLIST,
    hash_breakdown,
    hash_params,
    param_fields,
    set_hash_functions,
)
from curifactory_cli.hashing import MAX_NODES as MAX_VALUES

RESERVED_TOP_KEYS = ("defaults", "sets", "grid")


@dataclass
class ExperimentParameters:
    """Base class for typed parameter sets (subclass it as a `@dataclass`)."""

    name: str = "UNNAMED"
    hash: str | None = None
    overwrite: bool = False
    hash_representations: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # `field(default_factory=lambda: set_hash_functions(...))` leaves a field object
        # here (set_hash_functions is itself the field default): use what it stands for.
        reps = self.hash_representations
        if isinstance(reps, dataclasses.Field) and callable(reps.default_factory):
            self.hash_representations = reps.default_factory()

    def params_hash(self, dry: bool = False) -> Any:
        """The set's parameter hash (its name and built-in fields excluded); with `dry`, how
        each field takes part in it, as Curifactory shows it: {field: (how, hashed value)}."""
        if dry:
            return hash_breakdown(self)
        if self.hash is None:
            self.hash = hash_params(self, f"parameter set {self.name!r}")
        return self.hash


class Params:
    """Attribute access over a parameter mapping (`record.params.model.depth`); read-only."""

    __slots__ = ("_data", "name")

    def __init__(self, name: str, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_data", dict(data))

    def __getattr__(self, key: str) -> Any:
        try:
            return _wrap(self._data[key], key)
        except KeyError:
            known = ", ".join(sorted(self._data)) or "none"
            msg = f"parameter set {self.name!r} has no parameter {key!r} (it has: {known})"
            raise AttributeError(msg) from None

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key], key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterable[str]:
        return iter(self._data)

    def __setattr__(self, key: str, value: Any) -> None:
        msg = "parameters are read-only inside a run (they are part of the cache key)"
        raise AttributeError(msg)

    def get(self, key: str, default: Any = None) -> Any:
        return _wrap(self._data.get(key, default), key)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and other._data == self._data and other.name == self.name

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"Params(name={self.name!r}, {body})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Params, (self.name, self._data))


def _wrap(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return Params(key, value)
    return value


@dataclass
class ParamSet:
    """One parameter set as the runner sees it."""

    name: str
    params: Any  # an ExperimentParameters instance, a Params view, or any user object
    source: str  # the file (or experiment) it came from
    line: int | None = None
    index: int = 0  # position within its source file
    _hash: str | None = None

    @property
    def hash(self) -> str:
        if self._hash is None:
            self._hash = hash_params(
                _hash_view(self.params), f"{self.source}: parameter set {self.name!r}"
            )
            if isinstance(self.params, ExperimentParameters):
                self.params.hash = self._hash
        return self._hash


_SHOWN_CHARS = 200  # of a value that is not plain data: its repr, cut


def display_values(params: Any) -> dict[str, Any]:
    """A parameter set's values as plain JSON data, to show (in the registry and reports):
    dataclass fields or mapping keys, built-in fields left out; values that are not plain
    data shown by their (shortened) repr."""
    items = param_fields(_hash_view(params))
    return {str(k): _plain(v) for k, v in items if k not in PARAMETERS_BLACKLIST}


def _plain(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 6 and isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 6 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Params):
        return _plain(value._data, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and depth < 6:
        fields = dataclasses.fields(value)
        return {f.name: _plain(getattr(value, f.name), depth + 1) for f in fields}
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _hash_view(params: Any) -> Any:
    return params._data if isinstance(params, Params) else params


# --------------------------------------------------------------------------------------------
# YAML with line numbers


class _Mapping(dict):
    """A dict that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict[str, int]


class _LineError(Exception):
    def __init__(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = node.start_mark.line + 1, message, hint


# libyaml's parser when available (about 7x faster); the constructors stay the safe ones.
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[misc,valid-type] # yaml's C or Python loader
    """A safe YAML loader that records line numbers; no other constructors are added."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Iterable[_Mapping]:
    data = _Mapping()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _LineError(key_node, "a mapping key must be a plain value") from None
        if key in data:
            raise _LineError(
                key_node, f"duplicate key {key!r}", "each key may appear once per mapping."
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[str(key)] = key_node.start_mark.line + 1


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)

# PyYAML resolves plain scalars by YAML 1.1, where a float needs a dot and a signed exponent:
# `1e-3` and `1E5` stay strings, and typed sets fail or untyped ones compute with text. Floats
# are read as YAML 1.2's core schema writes them; this pattern only adds the forms 1.1 misses
# (an exponent without a dot or without a sign), so every value read before reads the same.
_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_LineLoader)
    except _LineError as exc:
        raise ParamsError(f"{path}:{exc.line}: {exc.message}", exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        hint = None
        if "constructor" in problem or "tag" in problem:
            hint = "only plain YAML is accepted (no python tags); values are loaded safely."
        raise ParamsError(f"{where}: {problem}", hint) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ParamsError(f"{path}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ParamsError(f"{path}: the document is nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # A scalar the safe constructors reject (`2001-13-45`, `!!int abc`, huge integers).
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ParamsError(
            f"{path}: a value cannot be read: {problem}",
            hint="quote values that are meant as text, e.g. '2001-13-45'.",
        ) from None


def _check_size(path: Path, doc: Any) -> None:
    """Refuse documents that contain themselves or expand (through aliases) beyond reason.

    Aliases make a small file describe a huge tree; merging sets and hashing would walk all of
    it, so it is measured once, here, before anything else touches it.
    """
    budget = MAX_VALUES
    active: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(doc, 0, False)]
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            active.discard(id(node))
            continue
        budget -= 1
        if budget < 0:
            raise ParamsError(
                f"{path}: the document expands to more than {MAX_VALUES:,} values",
                hint="is it an alias bomb? write the values out or use fewer aliases.",
            )
        if depth > MAX_DEPTH:
            raise ParamsError(f"{path}: the document is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, (dict, list)):
            if id(node) in active:
                raise ParamsError(
                    f"{path}: the document contains itself (an alias inside its own anchor)",
                    hint="an anchor cannot be used inside the value it names.",
                )
            active.add(id(node))
            stack.append((node, depth, True))
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1, False) for child in children)


def _line(mapping: Any, key: str | None = None) -> int | None:
    if not isinstance(mapping, _Mapping):
        return None
    if key is not None and key in mapping.key_lines:
        return mapping.key_lines[key]
    return mapping.line


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    current = target.get(head)
    if current is not None and not isinstance(current, Mapping):
        msg = f"cannot set {dotted!r}: {head!r} is {current!r}, not a mapping"
        raise ParamsError(msg, hint="set the whole value instead, or make it a mapping.")
    target[head] = _merge(current or {}, {rest: value})


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`; dotted keys address nested values in both."""
    out: dict[str, Any] = {}
    for source in (base, update):
        for key, value in source.items():
            if isinstance(value, Mapping):
                value = _merge({}, value)
            if "." in str(key):
                _set_dotted(out, str(key), value)
            elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return str(value)
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # keys JSON cannot write (dates, None mixed with ints)
        return str(value).replace(" ", "")


@dataclass
class _RawSet:
    name: str
    values: dict[str, Any]
    line: int | None
    key_lines: dict[str, int]


def _expand(path: Path, doc: Any) -> list[_RawSet]:
    if doc is None:
        raise ParamsError(
            f"{path}: the file is empty",
            hint="list parameter sets, e.g. `- name: small` then `  n_rows: 10`.",
        )
    if isinstance(doc, list):
        doc_map: Mapping[str, Any] = {"sets": doc}
        defaults: Mapping[str, Any] = {}
    elif isinstance(doc, Mapping):
        unknown = [k for k in doc if k not in RESERVED_TOP_KEYS]
        if unknown:
            key = unknown[0]
            raise ParamsError(
                f"{_where(path, _line(doc, str(key)))}: unknown top-level key {key!r}",
                hint="a parameter file is a list of sets, or a mapping with "
                "`defaults`, `sets` and/or `grid`.",
            )
        doc_map = doc
        defaults = doc.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise ParamsError(
                f"{_where(path, _line(doc, 'defaults'))}: `defaults` must be a mapping"
            )
    else:
        raise ParamsError(
            f"{path}: expected a list of parameter sets or a mapping, got {type(doc).__name__}",
            hint="see the parameter file format in the README.",
        )
    sets = doc_map.get("sets") or []
    if not isinstance(sets, list):
        raise ParamsError(f"{_where(path, _line(doc_map, 'sets'))}: `sets` must be a list")
    out: list[_RawSet] = []
    for i, entry in enumerate(sets):
        if not isinstance(entry, Mapping):
            line = _line(doc_map, "sets")
            raise ParamsError(
                f"{_where(path, line)}: set #{i} is a {type(entry).__name__}, not a mapping",
                hint="write each set as a mapping with a `name` key.",
            )
        name = entry.get("name")
        if not isinstance(name, (str, int)) or isinstance(name, bool) or name == "":
            raise ParamsError(
                f"{_where(path, _line(entry))}: set #{i} has no `name`",
                hint="give every set a unique `name: ...`.",
            )
        values = _merge(defaults, {k: v for k, v in entry.items() if k != "name"})
        out.append(_RawSet(str(name), values, _line(entry), _key_lines(entry, defaults)))
    grids = doc_map.get("grid") or []
    for grid in grids if isinstance(grids, list) else [grids]:
        out.extend(_expand_grid(path, grid, defaults))
    if not out:
        raise ParamsError(f"{path}: defines no parameter sets", hint="add `sets:` or `grid:`.")
    seen: dict[str, int | None] = {}
    for raw in out:
        if raw.name in seen:
            raise ParamsError(
                f"{_where(path, raw.line)}: duplicate parameter set name {raw.name!r} "
                f"(first defined at line {seen[raw.name]})",
                hint="set names must be unique within a file.",
            )
        seen[raw.name] = raw.line
    return out


def _key_lines(*mappings: Any) -> dict[str, int]:
    lines: dict[str, int] = {}
    for mapping in mappings:  # highest priority first
        if isinstance(mapping, _Mapping):
            for key, line in mapping.key_lines.items():
                lines.setdefault(key, line)
    return lines


def _expand_grid(path: Path, grid: Any, defaults: Mapping[str, Any]) -> list[_RawSet]:
    if not isinstance(grid, Mapping) or not isinstance(grid.get("vary"), Mapping):
        raise ParamsError(
            f"{_where(path, _line(grid))}: a grid needs a `vary` mapping of key: [values]",
            hint="e.g. `grid: {name: sweep, vary: {lr: [0.1, 0.01]}}`.",
        )
    vary = grid["vary"]
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise ParamsError(
                f"{_where(path, _line(vary, str(key)))}: grid key {key!r} needs a non-empty list",
            )
    prefix = grid.get("name")
    fixed = {k: v for k, v in grid.items() if k not in ("name", "vary")}
    base = _merge(defaults, fixed)
    out = []
    keys = list(vary)
    for combo in itertools.product(*(vary[k] for k in keys)):
        label = "_".join(f"{k}={_format_value(v)}" for k, v in zip(keys, combo))
        name = f"{prefix}_{label}" if prefix else label
        values = _merge(base, dict(zip(keys, combo)))
        out.append(_RawSet(name, values, _line(grid), _key_lines(vary, grid, defaults)))
    return out


# --------------------------------------------------------------------------------------------
# Validation into an ExperimentParameters subclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints become floats for float)."""
    if tp is Any or tp is typing.Any or isinstance(tp, (str, typing.TypeVar)):
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except _Mismatch as exc:
                errors.append(exc)
        raise _Mismatch(tp, value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch(tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch(tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch(tp, value)
    if tp in (str, bool):
        if type(value) is tp:
            return value
        raise _Mismatch(tp, value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, key)
        raise _Mismatch(tp, value)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        container = origin or tp
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(tp, value)
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _Mismatch(tp, value)
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        item_tp = args[0] if args else Any
        return container(_coerce(v, item_tp, key) for v in value)
    if origin is dict or tp is dict or origin is Mapping:
        if not isinstance(value, Mapping):
            raise _Mismatch(tp, value)
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)  # e.g. Path, Enum
        except Exception:
            raise _Mismatch(tp, value) from None
    return value


class _Mismatch(Exception):
    def __init__(self, tp: Any, value: Any) -> None:
        super().__init__(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


class _FieldError(Exception):
    def __init__(self, key: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint


@functools.lru_cache(maxsize=256)
def _type_hints(cls: type) -> dict[str, Any]:
    # Once per class: resolving string annotations compiles each of them, every time.
    return typing.get_type_hints(cls)


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields or key in ("hash",):
            known = sorted(k for k in fields if k not in ("name", "hash", "hash_representations"))
            raise _FieldError(
                full,
                f"unknown parameter {full!r} for {cls.__name__}",
                _suggest(str(key), known),
            )
        try:
            kwargs[key] = _coerce(value, hints.get(key, Any), full)
        except _Mismatch as exc:
            raise _FieldError(full, f"parameter {full!r}: {exc}") from None
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        full = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise _FieldError(full, f"missing required parameter {full!r} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except _FieldError:
        raise
    except Exception as exc:  # the user's __post_init__ validation
        raise _FieldError(prefix or "", f"{cls.__name__} rejected the values: {exc}") from None


def _suggest(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known parameters: " + (", ".join(known) or "none")


# --------------------------------------------------------------------------------------------
# Public entry points


def parse_override(text: str, option: str = "--set") -> tuple[str, Any]:
    """`key=value` from `--set` (or another `option`); the value is read as YAML (`3`, `0.1`,
    `true`, `[1,2]`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamsError(
            f"{option} {text!r}: expected KEY=VALUE", hint=f"e.g. {option} model.depth=3"
        )
    try:
        # The parameter files' loader, so `--set lr=1e-3` reads as a file would (a float).
        value = yaml.load(raw, Loader=_LineLoader) if raw.strip() else ""
    except (yaml.YAMLError, _LineError):
        value = raw
    return key, value


@dataclass
class OverrideUse:
    """Which `--set` keys name a parameter that some set has, over every file of a run.

    A key no set has is added to every set: for untyped parameters that silently changes
    every hash (a full recompute) while the code never reads the value."""

    keys: list[str]
    matched: set[str] = field(default_factory=set)
    samples: list[Mapping[str, Any]] = field(default_factory=list)  # for close-match hints

    def note(self, values: Mapping[str, Any]) -> None:
        """One set's values, before the overrides are applied."""
        if len(self.samples) < 20:
            self.samples.append(values)
        self.matched.update(k for k in self.keys if _has_path(values, k))

    def note_object(self, obj: Any) -> None:
        """A set from get_params(): a dataclass' own fields count even when not plain data."""
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            names = {f.name for f in dataclasses.fields(obj)}
            self.matched.update(k for k in self.keys if k in names)
        self.note(obj._data if isinstance(obj, Params) else display_values(obj))

    def unmatched(self) -> list[str]:
        return [k for k in dict.fromkeys(self.keys) if k not in self.matched]

    def hint(self, key: str) -> str:
        known = sorted({name for values in self.samples for name in _dotted_names(values)})
        return _suggest(key, known)


def _has_path(values: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, Mapping) or part not in values:
            return False
        values = values[part]
    return True


def _dotted_names(values: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterable[str]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping) and depth < 8:
            yield from _dotted_names(value, f"{name}.", depth + 1)


def load_yaml_sets(
    path: Path,
    params_class: type | None = None,
    overrides: list[tuple[str, Any]] | None = None,
    uses: OverrideUse | None = None,
) -> list[ParamSet]:
    """Read and validate one YAML parameter file (`uses` learns which overrides matched)."""
    doc = _read_yaml(path)
    _check_size(path, doc)
    try:
        raws = _expand(path, doc)
    except ParamsError as exc:
        if exc.message.startswith(str(path)):
            raise
        raise ParamsError(f"{path}: {exc.message}", exc.hint) from None
    out = []
    for index, raw in enumerate(raws):
        values = raw.values
        if uses is not None:
            # A typed class already refuses keys it does not have: only untyped sets can
            # grow a parameter by mistake.
            if params_class is None:
                uses.note(values)
            else:
                uses.matched.update(uses.keys)
        if overrides:
            try:
                values = _merge(values, dict(overrides))
            except ParamsError as exc:
                raise ParamsError(f"--set: {exc.message} (set {raw.name!r})", exc.hint) from None
        if params_class is not None:
            try:
                params = _build(params_class, {"name": raw.name, **values})
            except _FieldError as exc:
                root = exc.key.split(".")[0]
                line = raw.key_lines.get(exc.key) or raw.key_lines.get(root) or raw.line
                if overrides and any(k == exc.key or k.startswith(exc.key) for k, _ in overrides):
                    where = f"--set {exc.key}"
                    raise ParamsError(f"{where}: {exc.message}", exc.hint) from None
                raise ParamsError(
                    f"{_where(path, line)}: set {raw.name!r}: {exc.message}", exc.hint
                ) from None
        else:
            params = Params(raw.name, values)
        out.append(ParamSet(raw.name, params, str(path), raw.line, index))
    return out


def sets_from_objects(
    objects: Any,
    source: str,
    overrides: list[tuple[str, Any]] | None,
    uses: OverrideUse | None = None,
) -> list[ParamSet]:
    """Parameter sets returned by a Python `get_params()` (`uses`: as for load_yaml_sets)."""
    if not isinstance(objects, (list, tuple)):
        raise ParamsError(
            f"{source}: get_params() returned a {type(objects).__name__}, not a list",
            hint="return a list of ExperimentParameters instances.",
        )
    if not objects:
        raise ParamsError(
            f"{source}: get_params() returned no parameter sets",
            hint="return a list with at least one ExperimentParameters instance.",
        )
    out = []
    seen: set[str] = set()
    for index, obj in enumerate(objects):
        name = getattr(obj, "name", None)
        if name is None and isinstance(obj, Mapping):
            name = obj.get("name")
            obj = Params(str(name), {k: v for k, v in obj.items() if k != "name"})
        if name is None:
            raise ParamsError(f"{source}: item #{index} of get_params() has no name")
        if str(name) in seen:
            raise ParamsError(
                f"{source}: duplicate parameter set name {name!r}",
                hint="set names must be unique within a file.",
            )
        seen.add(str(name))
        if uses is not None and overrides:
            uses.note_object(obj)
        for key, value in overrides or []:
            obj = _override_object(obj, key, value, source)
        out.append(ParamSet(str(name), obj, source, None, index))
    return out


def _override_object(obj: Any, key: str, value: Any, source: str) -> Any:
    if isinstance(obj, Params):
        return Params(obj.name, _merge(obj.to_dict(), {key: value}))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        head, _, rest = key.partition(".")
        names = {f.name for f in dataclasses.fields(obj)}
        if head not in names:
            raise ParamsError(
                f"--set {key}: unknown parameter {head!r} for {type(obj).__name__} ({source})",
                _suggest(head, sorted(names - {"hash", "hash_representations"})),
            )
        current = getattr(obj, head)
        if rest:
            new_value = _override_object(current, rest, value, source)
        else:
            hints = _type_hints(type(obj))
            try:
                new_value = _coerce(value, hints.get(head, Any), key)
            except _Mismatch as exc:
                raise ParamsError(f"--set {key}: {exc}") from None
        obj = dataclasses.replace(obj, **{head: new_value})
        if hasattr(obj, "hash"):
            obj.hash = None
        return obj
    if isinstance(obj, dict):
        return _merge(obj, {key: value})
    raise ParamsError(f"--set {key}: cannot override parameters of a {type(obj).__name__}")
