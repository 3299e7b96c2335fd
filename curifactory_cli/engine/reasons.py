"""Reasons as data: the words of a reason, with what changed (the part, the field, the old
and the new value; the function, helper, class or constant) for the JSON outputs. The
vocabulary itself is `engine.decide`'s."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from curifactory_cli.parameters.read_values import ABSENT, json_value

PARAMS_CHANGED = "parameters changed"


class Reason(str):
    """A reason's words, with what changed as data (`changed`: one dict per changed part,
    `{"part": "params", "path": "lr", "old": 0.1, "new": 0.01}`, `{"part": "code", "name":
    "_residuals", "kind": "helper"}`, ...) for the JSON outputs. It is the string it says
    everywhere else (the registry, the tables, comparisons)."""

    changed: tuple[dict[str, Any], ...]

    def __new__(cls, text: str, changed: Iterable[dict[str, Any]] = ()) -> Reason:
        made = super().__new__(cls, text)
        made.changed = tuple(changed)
        return made


def changes_of(reason: str) -> list[dict[str, Any]]:
    """What a reason says changed, as data ([] when it says nothing of the kind)."""
    return list(getattr(reason, "changed", ()))


def code_changed(names: list[str], kinds: dict[str, str] | None = None) -> str:
    """`names`: what differs in the code's breakdown; `kinds`: what each name is in the
    current code (a name it no longer has is said to be gone)."""
    if not names:
        return Reason("stage code changed", [{"part": "code"}])
    kinds = kinds or {}
    stage = [n for n in names if kinds.get(n) == "stage"]
    ordered = stage + [n for n in names if n not in stage]
    words = [_code_word(name, kinds.get(name), bool(kinds)) for name in ordered]
    return Reason(
        f"stage code changed ({', '.join(words)})",
        [{"part": "code", "name": name, "kind": kinds.get(name)} for name in ordered],
    )


def _code_word(name: str, kind: str | None, known: bool) -> str:
    """A changed name in a reason: the stage itself bare, the others with their kind."""
    if kind == "stage" or not known:
        return name
    return f"{kind} {name}" if kind else f"removed {name}"


def files_changed(paths: list[str]) -> str:
    return Reason(
        f"input files changed ({', '.join(paths)})", [{"part": "files", "path": p} for p in paths]
    )


def inputs_changed(names: list[str]) -> str:
    return Reason(
        f"input data changed ({', '.join(names)})", [{"part": "inputs", "name": n} for n in names]
    )


def params_changed(path: str, old: Any, new: Any) -> str:
    """A value the call reads changed: `parameters changed (lr: 0.1 -> 0.01)`."""
    return Reason(
        f"{PARAMS_CHANGED} ({path}: {_shown(old)} -> {_shown(new)})",
        [{"part": "params", "path": path, "old": json_value(old), "new": json_value(new)}],
    )


def _shown(value: Any) -> str:
    """A parameter's value in a reason: short, JSON where it can be."""
    if value is ABSENT:
        return "(none)"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


RECORDS_REORDERED = "its records come in another order"
# An aggregate entry made before its key held the order of its records.
RECORDS_KEYED = "its key now holds the order of its records: computed again once"


def records_reordered(stored: dict[str, Any], parts: dict[str, Any]) -> str | None:
    """For an aggregate: whether it is given the same records in another order (other
    records are other parameters or inputs, told as such), or its entry was keyed before
    its key held their order."""
    records = parts.get("records")
    if records is None or stored.get("records") == records:
        return None
    if "records" not in stored:
        return RECORDS_KEYED
    return RECORDS_REORDERED if sorted(stored["records"]) == sorted(records) else None
