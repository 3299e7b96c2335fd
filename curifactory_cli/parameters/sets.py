"""Parameter sets as a run holds them: the read-only `Params` view of an untyped set,
`ParamSet` (a set with its name, source and hash), the deep merge of parameter values, and
the plain-data view of a set shown in the registry and reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from curifactory_cli.errors import ParamsError
from curifactory_cli.hashing import PARAMETERS_BLACKLIST, hash_params, param_fields


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

    def __iter__(self) -> Iterator[str]:
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


def hash_view(params: Any) -> Any:
    """What a set's hash is computed over: a Params view's mapping, any other object itself."""
    return params._data if isinstance(params, Params) else params


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
                hash_view(self.params), f"{self.source}: parameter set {self.name!r}"
            )
            # ExperimentParameters keeps its hash (`params.hash`, as in Curifactory); it says
            # so with this flag, as this layer cannot import the class.
            if getattr(type(self.params), "_keeps_run_hash", False):
                self.params.hash = self._hash
        return self._hash


# --------------------------------------------------------------------------------------------
# Merging values: dotted keys (`model.depth`) address nested mappings


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`; dotted keys address nested values in both."""
    out: dict[str, Any] = {}
    for source in (base, update):
        for key, value in source.items():
            if isinstance(value, Mapping):
                value = merge({}, value)
            if "." in str(key):
                _set_dotted(out, str(key), value)
            elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    current = target.get(head)
    if current is not None and not isinstance(current, Mapping):
        msg = f"cannot set {dotted!r}: {head!r} is {current!r}, not a mapping"
        raise ParamsError(msg, hint="set the whole value instead, or make it a mapping.")
    target[head] = merge(current or {}, {rest: value})


def has_path(values: Any, dotted: str) -> bool:
    """Whether nested mappings hold a value at a dotted key."""
    for part in dotted.split("."):
        if not isinstance(values, Mapping) or part not in values:
            return False
        values = values[part]
    return True


def dotted_names(values: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterable[str]:
    """Every key of nested mappings, dotted (`model`, `model.depth`)."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping) and depth < 8:
            yield from dotted_names(value, f"{name}.", depth + 1)


# --------------------------------------------------------------------------------------------
# The values shown for a set

_SHOWN_CHARS = 200  # of a value that is not plain data: its repr, cut
_SHOWN_DEPTH = 6  # nested containers shown as data down to this depth, then by repr


def display_values(params: Any) -> dict[str, Any]:
    """A parameter set's values as plain JSON data, to show (in the registry and reports):
    dataclass fields or mapping keys, built-in fields left out; values that are not plain
    data shown by their (shortened) repr."""
    items = param_fields(hash_view(params))
    return {str(k): _plain(v) for k, v in items if k not in PARAMETERS_BLACKLIST}


def _plain(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Params):
        return _plain(value._data, depth + 1)
    if depth < _SHOWN_DEPTH:
        shown = _plain_container(value, depth)
        if shown is not None:
            return shown
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _plain_container(value: Any, depth: int) -> dict[str, Any] | list[Any] | None:
    """A mapping, list, tuple or dataclass instance as plain data; None for anything else."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return {f.name: _plain(getattr(value, f.name), depth + 1) for f in fields}
    return None
