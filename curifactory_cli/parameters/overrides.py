"""`--set KEY=VALUE` overrides: reading them, applying them to a set from get_params(), and
noting which keys name a parameter some set has."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from curifactory_cli.errors import ParamsError
from curifactory_cli.parameters.coerce import Mismatch, coerce, suggest, type_hints
from curifactory_cli.parameters.sets import Params, display_values, dotted_names, has_path, merge
from curifactory_cli.parameters.yaml_lines import LineError, LineLoader


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
        value = yaml.load(raw, Loader=LineLoader) if raw.strip() else ""
    except (yaml.YAMLError, LineError):
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
        self.matched.update(k for k in self.keys if has_path(values, k))

    def note_object(self, obj: Any) -> None:
        """A set from get_params(): a dataclass' own fields count even when not plain data."""
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            names = {f.name for f in dataclasses.fields(obj)}
            self.matched.update(k for k in self.keys if k in names)
        self.note(obj._data if isinstance(obj, Params) else display_values(obj))

    def unmatched(self) -> list[str]:
        return [k for k in dict.fromkeys(self.keys) if k not in self.matched]

    def hint(self, key: str) -> str:
        known = sorted({name for values in self.samples for name in dotted_names(values)})
        return suggest(key, known)


def override_object(obj: Any, key: str, value: Any, source: str) -> Any:
    """A set from get_params() with `key` (dotted for nested dataclasses) set to `value`,
    checked against the field's annotation; the object given is left as it was."""
    if isinstance(obj, Params):
        return Params(obj.name, merge(obj.to_dict(), {key: value}))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _override_field(obj, key, value, source)
    if isinstance(obj, dict):
        return merge(obj, {key: value})
    raise ParamsError(f"--set {key}: cannot override parameters of a {type(obj).__name__}")


def _override_field(obj: Any, key: str, value: Any, source: str) -> Any:
    cls: type = type(obj)
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise ParamsError(
            f"--set {key}: unknown parameter {head!r} for {cls.__name__} ({source})",
            suggest(head, sorted(names - {"hash", "hash_representations"})),
        )
    current = getattr(obj, head)
    if rest:
        new_value = override_object(current, rest, value, source)
    else:
        try:
            new_value = coerce(value, type_hints(cls).get(head, Any), key)
        except Mismatch as exc:
            raise ParamsError(f"--set {key}: {exc}") from None
    obj = dataclasses.replace(obj, **{head: new_value})
    if hasattr(obj, "hash"):
        obj.hash = None
    return obj
