"""Which values JSON keeps as they are, and the one JSON writer of `JsonCacher`."""

from __future__ import annotations

import json
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data, other objects as their `str()` (as Curifactory's metadata
    files store them), so the entry's metadata can always be written."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


_JSON_SCALARS = (bool, int, float, str)
_JSON_SCALAR_TYPES = frozenset({type(None), bool, int, float, str})
_JSON_MAX_DEPTH = 200
# JsonCacher's files: json.dumps's format, without its circular-reference check (a value
# with a cycle is refused first, as nested too deeply).
JSON_WRITER = json.JSONEncoder(check_circular=False)


def json_problem(obj: Any) -> str | None:
    """Where `obj` stops being plain JSON that loads back as the same value, or None."""
    found = json_trouble(obj, 0)
    if found is None:
        return None
    steps, message = found
    return "$" + "".join(reversed(steps)) + message


def json_trouble(obj: Any, depth: int) -> tuple[list[str], str] | None:
    """(the path to the trouble, innermost step first; what it is). The path is only built
    for a value that has trouble: a string per element made a long list slow to check."""
    if depth > _JSON_MAX_DEPTH:
        return [], " is nested too deeply"
    if obj is None or isinstance(obj, _JSON_SCALARS):
        return None  # NaN and infinity round-trip through Python's json module
    is_dict = isinstance(obj, dict)
    if is_dict:
        children, step = obj.items(), ".{}"
    elif isinstance(obj, (list, tuple)):
        children, step = enumerate(obj), "[{}]"
    else:
        return [], f" is a {type(obj).__name__}, which JSON cannot represent"
    # Elements that are plain scalars (by exact type) need no call; subclasses get one.
    plain = depth < _JSON_MAX_DEPTH
    for name, value in children:
        if is_dict and not isinstance(name, str):
            return [], (
                f" has a key {name!r} of type {type(name).__name__} "
                "(JSON keys are strings, so it would load back as a different key)"
            )
        if plain and type(value) in _JSON_SCALAR_TYPES:
            continue
        found = json_trouble(value, depth + 1)
        if found is not None:
            found[0].append(step.format(name))
            return found
    return None
