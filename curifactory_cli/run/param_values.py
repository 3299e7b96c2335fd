"""The parameter values a run recorded: nested parameters as dotted keys (`model.C`), and
which runs had a parameter set with given values (`curi runs ls --param KEY=VALUE`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from curifactory_cli.params import parse_override

if TYPE_CHECKING:
    from curifactory_cli.registry.records import RunRecord


def flat_values(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to dotted keys; lists and scalars are values."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_values(value, name + "."))
        else:
            out[name] = value
    return out


def parse_conditions(texts: Iterable[str]) -> list[tuple[str, Any]]:
    """`KEY=VALUE` conditions, each value read as `--set` reads one (YAML: `3`, `0.1`, `rf`)."""
    return [parse_override(text, option="--param") for text in texts]


def matching_sets(run: RunRecord, conditions: list[tuple[str, Any]]) -> list[str]:
    """The names of the run's parameter sets that have every one of `conditions` (a run whose
    values were not recorded has none)."""
    names = []
    for recorded in run.param_sets or []:
        values = recorded.values
        if values is not None and all(_has(values, key, wanted) for key, wanted in conditions):
            names.append(recorded.name)
    return names


def known_key(runs: Iterable[RunRecord], key: str) -> bool:
    """Whether any parameter set of `runs` has a parameter `key` (to tell a typo from a value
    that no run had)."""
    for run in runs:
        for recorded in run.param_sets or []:
            values = recorded.values
            if values is not None and _lookup(values, key) is not _MISSING:
                return True
    return False


_MISSING = object()


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key: `model.C` is values["model"]["C"] (a key that itself holds
    a dot is tried whole first)."""
    if key in values:
        return values[key]
    head, dot, rest = key.partition(".")
    while dot:
        inner = values.get(head, _MISSING)
        if isinstance(inner, Mapping):
            found = _lookup(inner, rest)
            if found is not _MISSING:
                return found
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return _MISSING


def _has(values: Mapping[str, Any], key: str, wanted: Any) -> bool:
    found = _lookup(values, key)
    return found is not _MISSING and _same(found, wanted)


def _same(recorded: Any, wanted: Any) -> bool:
    """Equal as the parameter files mean it: 3 and 3.0 are equal, true and 1 are not."""
    if isinstance(recorded, bool) or isinstance(wanted, bool):
        return type(recorded) is type(wanted) and recorded == wanted
    if isinstance(recorded, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(recorded) == len(wanted) and all(map(_same, recorded, wanted))
    if isinstance(recorded, Mapping) and isinstance(wanted, Mapping):
        return recorded.keys() == wanted.keys() and all(
            _same(recorded[k], wanted[k]) for k in wanted
        )
    return recorded == wanted
