"""Parameter files: YAML files expanded into named sets, and the sets a Python
`get_params()` returns, validated and with `--set` overrides applied.

A YAML parameter file is either a list of sets, or a mapping with any of:

    defaults: {...}          # values shared by every set below
    sets: [{name: ..., ...}]  # named sets
    grid: {name: ..., vary: {key: [v1, v2], ...}, <fixed keys>: ...}   # or a list of grids

A grid expands to the cartesian product of its `vary` lists, in order, with generated names
like `sweep_lr=0.1_depth=3`. Dotted keys (`model.depth`) address nested mappings everywhere.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curifactory_cli.errors import ParamsError
from curifactory_cli.parameters.coerce import FieldError, build
from curifactory_cli.parameters.overrides import OverrideUse, override_object
from curifactory_cli.parameters.sets import Params, ParamSet, merge
from curifactory_cli.parameters.yaml_lines import check_size, key_lines, line_of, read_yaml, where

RESERVED_TOP_KEYS = ("defaults", "sets", "grid")


@dataclass
class RawSet:
    """A set as the file defines it, before validation and overrides."""

    name: str
    values: dict[str, Any]
    line: int | None
    key_lines: dict[str, int]


# --------------------------------------------------------------------------------------------
# A YAML document into raw sets


def expand(path: Path, doc: Any) -> list[RawSet]:
    """The sets a parameter file's document defines: its named sets, then its grids."""
    doc_map, defaults = _top_level(path, doc)
    out = _named_sets(path, doc_map, defaults)
    grids = doc_map.get("grid") or []
    for grid in grids if isinstance(grids, list) else [grids]:
        out.extend(_expand_grid(path, grid, defaults))
    if not out:
        raise ParamsError(f"{path}: defines no parameter sets", hint="add `sets:` or `grid:`.")
    _check_unique_names(path, out)
    return out


def _top_level(path: Path, doc: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The document as a mapping (a bare list is its `sets`), and its `defaults`."""
    if doc is None:
        raise ParamsError(
            f"{path}: the file is empty",
            hint="list parameter sets, e.g. `- name: small` then `  n_rows: 10`.",
        )
    if isinstance(doc, list):
        return {"sets": doc}, {}
    if not isinstance(doc, Mapping):
        raise ParamsError(
            f"{path}: expected a list of parameter sets or a mapping, got {type(doc).__name__}",
            hint="see the parameter file format in the README.",
        )
    unknown = [k for k in doc if k not in RESERVED_TOP_KEYS]
    if unknown:
        key = unknown[0]
        raise ParamsError(
            f"{where(path, line_of(doc, str(key)))}: unknown top-level key {key!r}",
            hint="a parameter file is a list of sets, or a mapping with "
            "`defaults`, `sets` and/or `grid`.",
        )
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ParamsError(f"{where(path, line_of(doc, 'defaults'))}: `defaults` must be a mapping")
    return doc, defaults


def _named_sets(
    path: Path, doc_map: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[RawSet]:
    sets = doc_map.get("sets") or []
    if not isinstance(sets, list):
        raise ParamsError(f"{where(path, line_of(doc_map, 'sets'))}: `sets` must be a list")
    out: list[RawSet] = []
    for i, entry in enumerate(sets):
        if not isinstance(entry, Mapping):
            line = line_of(doc_map, "sets")
            raise ParamsError(
                f"{where(path, line)}: set #{i} is a {type(entry).__name__}, not a mapping",
                hint="write each set as a mapping with a `name` key.",
            )
        name = entry.get("name")
        if not isinstance(name, (str, int)) or isinstance(name, bool) or name == "":
            raise ParamsError(
                f"{where(path, line_of(entry))}: set #{i} has no `name`",
                hint="give every set a unique `name: ...`.",
            )
        values = merge(defaults, {k: v for k, v in entry.items() if k != "name"})
        out.append(RawSet(str(name), values, line_of(entry), key_lines(entry, defaults)))
    return out


def _expand_grid(path: Path, grid: Any, defaults: Mapping[str, Any]) -> list[RawSet]:
    vary = _checked_vary(path, grid)
    prefix = grid.get("name")
    fixed = {k: v for k, v in grid.items() if k not in ("name", "vary")}
    base = merge(defaults, fixed)
    out = []
    keys = list(vary)
    for combo in itertools.product(*(vary[k] for k in keys)):
        label = "_".join(f"{k}={_format_value(v)}" for k, v in zip(keys, combo))
        name = f"{prefix}_{label}" if prefix else label
        values = merge(base, dict(zip(keys, combo)))
        out.append(RawSet(name, values, line_of(grid), key_lines(vary, grid, defaults)))
    return out


def _checked_vary(path: Path, grid: Any) -> Mapping[str, Any]:
    """A grid's `vary` mapping, each key with a non-empty list of values."""
    if not isinstance(grid, Mapping) or not isinstance(grid.get("vary"), Mapping):
        raise ParamsError(
            f"{where(path, line_of(grid))}: a grid needs a `vary` mapping of key: [values]",
            hint="e.g. `grid: {name: sweep, vary: {lr: [0.1, 0.01]}}`.",
        )
    vary: Mapping[str, Any] = grid["vary"]
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise ParamsError(
                f"{where(path, line_of(vary, str(key)))}: grid key {key!r} needs a non-empty list",
            )
    return vary


def _format_value(value: Any) -> str:
    """A value as it reads in a grid set's generated name."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return str(value)
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # keys JSON cannot write (dates, None mixed with ints)
        return str(value).replace(" ", "")


def _check_unique_names(path: Path, raws: list[RawSet]) -> None:
    seen: dict[str, int | None] = {}
    for raw in raws:
        if raw.name in seen:
            raise ParamsError(
                f"{where(path, raw.line)}: duplicate parameter set name {raw.name!r} "
                f"(first defined at line {seen[raw.name]})",
                hint="set names must be unique within a file.",
            )
        seen[raw.name] = raw.line


# --------------------------------------------------------------------------------------------
# Public entry points


def load_yaml_sets(
    path: Path,
    params_class: type | None = None,
    overrides: list[tuple[str, Any]] | None = None,
    uses: OverrideUse | None = None,
) -> list[ParamSet]:
    """Read and validate one YAML parameter file (`uses` learns which overrides matched)."""
    doc = read_yaml(path)
    check_size(path, doc)
    try:
        raws = expand(path, doc)
    except ParamsError as exc:
        if exc.message.startswith(str(path)):
            raise
        raise ParamsError(f"{path}: {exc.message}", exc.hint) from None
    out = []
    for index, raw in enumerate(raws):
        if uses is not None:
            _note_use(uses, raw.values, params_class)
        values = _overridden(raw, overrides)
        if params_class is not None:
            params = _typed(path, raw, values, params_class, overrides)
        else:
            params = Params(raw.name, values)
        out.append(ParamSet(raw.name, params, str(path), raw.line, index))
    return out


def _note_use(uses: OverrideUse, values: Mapping[str, Any], params_class: type | None) -> None:
    # A typed class already refuses keys it does not have: only untyped sets can grow a
    # parameter by mistake.
    if params_class is None:
        uses.note(values)
    else:
        uses.matched.update(uses.keys)


def _overridden(raw: RawSet, overrides: list[tuple[str, Any]] | None) -> dict[str, Any]:
    if not overrides:
        return raw.values
    try:
        return merge(raw.values, dict(overrides))
    except ParamsError as exc:
        raise ParamsError(f"--set: {exc.message} (set {raw.name!r})", exc.hint) from None


def _typed(
    path: Path,
    raw: RawSet,
    values: Mapping[str, Any],
    params_class: type,
    overrides: list[tuple[str, Any]] | None,
) -> Any:
    """The set as an instance of `params_class`; a refused value named by its line, or by
    the `--set` that gave it."""
    try:
        return build(params_class, {"name": raw.name, **values})
    except FieldError as exc:
        if overrides and any(k == exc.key or k.startswith(exc.key) for k, _ in overrides):
            raise ParamsError(f"--set {exc.key}: {exc.message}", exc.hint) from None
        root = exc.key.split(".")[0]
        line = raw.key_lines.get(exc.key) or raw.key_lines.get(root) or raw.line
        raise ParamsError(
            f"{where(path, line)}: set {raw.name!r}: {exc.message}", exc.hint
        ) from None


def sets_from_objects(
    objects: Any,
    source: str,
    overrides: list[tuple[str, Any]] | None,
    uses: OverrideUse | None = None,
) -> list[ParamSet]:
    """Parameter sets returned by a Python `get_params()` (`uses`: as for load_yaml_sets)."""
    _check_returned(objects, source)
    out = []
    seen: set[str] = set()
    for index, item in enumerate(objects):
        name, obj = _named(item, index, source)
        if str(name) in seen:
            raise ParamsError(
                f"{source}: duplicate parameter set name {name!r}",
                hint="set names must be unique within a file.",
            )
        seen.add(str(name))
        if uses is not None and overrides:
            uses.note_object(obj)
        for key, value in overrides or []:
            obj = override_object(obj, key, value, source)
        out.append(ParamSet(str(name), obj, source, None, index))
    return out


def _check_returned(objects: Any, source: str) -> None:
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


def _named(item: Any, index: int, source: str) -> tuple[Any, Any]:
    """An item of get_params() with its name (as given); a mapping becomes a Params view."""
    name = getattr(item, "name", None)
    if name is None and isinstance(item, Mapping):
        name = item.get("name")
        item = Params(str(name), {k: v for k, v in item.items() if k != "name"})
    if name is None:
        raise ParamsError(f"{source}: item #{index} of get_params() has no name")
    return name, item
