"""Parameter values checked against the annotations of an ExperimentParameters subclass.

`coerce(value, annotation, key)` applies the first rule of `_RULES` whose test accepts the
annotation: each rule returns the value (an int widened to a float for `float`, a mapping
built into its dataclass, a list made a tuple or a set) or raises Mismatch. `build(cls,
values)` checks a mapping against a dataclass and constructs it; a key it does not have, a
required one missing, or a value of the wrong type is a FieldError naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

Rule = Callable[[Any, Any, str], Any]  # (value, annotation, dotted key) -> the checked value

_NONE = type(None)
_COLLECTIONS = (list, tuple, set, frozenset)


class Mismatch(Exception):
    """A value that does not fit its annotation."""

    def __init__(self, tp: Any, value: Any) -> None:
        super().__init__(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


class FieldError(Exception):
    """A parameter `build` refused: its dotted key, the message and a hint."""

    def __init__(self, key: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints become floats for float)."""
    try:
        rule = _cached_rule(tp)
    except TypeError:  # an annotation that cannot be a cache key
        rule = _rule_for(tp)
    return rule(value, tp, key)


# --------------------------------------------------------------------------------------------
# The rules, one per kind of annotation


def _as_is(value: Any, tp: Any, key: str) -> Any:
    """Any, a TypeVar, an unresolved name, and annotations no rule knows: not checked."""
    return value


def _union(value: Any, tp: Any, key: str) -> Any:
    """`X | Y`, `Optional[X]`: None when allowed, else the first member that accepts it."""
    args = typing.get_args(tp)
    if value is None and _NONE in args:
        return None
    for arg in args:
        if arg is _NONE:
            continue
        try:
            return coerce(value, arg, key)
        except Mismatch:
            continue
    raise Mismatch(tp, value)


def _literal(value: Any, tp: Any, key: str) -> Any:
    if value in typing.get_args(tp):
        return value
    raise Mismatch(tp, value)


def _float(value: Any, tp: Any, key: str) -> float:
    """Ints are floats too (`lr: 1`), booleans are not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Mismatch(tp, value)


def _int(value: Any, tp: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Mismatch(tp, value)


def _exact(value: Any, tp: Any, key: str) -> Any:
    """str and bool take only themselves: 3 is not "3", 1 is not True."""
    if type(value) is tp:
        return value
    raise Mismatch(tp, value)


def _none(value: Any, tp: Any, key: str) -> None:
    if value is None:
        return None
    raise Mismatch(tp, value)


def _dataclass(value: Any, tp: Any, key: str) -> Any:
    """An instance as is; a mapping built into one (its keys checked in turn)."""
    if isinstance(value, tp):
        return value
    if isinstance(value, Mapping):
        return build(tp, value, key)
    raise Mismatch(tp, value)


def _collection(value: Any, tp: Any, key: str) -> Any:
    """list, tuple, set and frozenset, bare or of an item type, from a list (or tuple)."""
    if not isinstance(value, (list, tuple)):
        raise Mismatch(tp, value)
    container = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if container is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]
        if len(args) != len(value):
            raise Mismatch(tp, value)
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    item_tp = args[0] if args else Any
    return container(coerce(v, item_tp, key) for v in value)


def _mapping(value: Any, tp: Any, key: str) -> dict[Any, Any]:
    """dict and Mapping, bare or of a value type; keys are not checked."""
    if not isinstance(value, Mapping):
        raise Mismatch(tp, value)
    args = typing.get_args(tp)
    value_tp = args[1] if len(args) == 2 else Any
    return {k: coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}


def _by_constructor(value: Any, tp: Any, key: str) -> Any:
    """Any other class (Path, an Enum by value...): an instance as is, else `tp(value)`."""
    if isinstance(value, tp):
        return value
    try:
        return tp(value)
    except Exception:
        raise Mismatch(tp, value) from None


# (does the rule apply to this annotation, given its typing origin?, the rule); first wins.
_RULES: tuple[tuple[Callable[[Any, Any], bool], Rule], ...] = (
    (lambda tp, origin: tp is Any or isinstance(tp, (str, typing.TypeVar)), _as_is),
    (lambda tp, origin: origin in (typing.Union, types.UnionType), _union),
    (lambda tp, origin: origin is typing.Literal, _literal),
    (lambda tp, origin: tp is float, _float),
    (lambda tp, origin: tp is int, _int),
    (lambda tp, origin: tp in (str, bool), _exact),
    (lambda tp, origin: tp is _NONE, _none),
    (lambda tp, origin: dataclasses.is_dataclass(tp) and isinstance(tp, type), _dataclass),
    (lambda tp, origin: origin in _COLLECTIONS or tp in _COLLECTIONS, _collection),
    (lambda tp, origin: origin is dict or tp is dict or origin is Mapping, _mapping),
    (lambda tp, origin: isinstance(tp, type), _by_constructor),
)


def _rule_for(tp: Any) -> Rule:
    origin = typing.get_origin(tp)
    for applies, rule in _RULES:
        if applies(tp, origin):
            return rule
    return _as_is


# The rule depends on the annotation alone: chosen once per annotation, not once per value.
_cached_rule = functools.lru_cache(maxsize=512)(_rule_for)


# --------------------------------------------------------------------------------------------
# A mapping checked into a dataclass


@functools.lru_cache(maxsize=256)
def type_hints(cls: type) -> dict[str, Any]:
    # Once per class: resolving string annotations compiles each of them, every time.
    return typing.get_type_hints(cls)


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of the dataclass `cls` from `values`, each checked against its annotation;
    `prefix` is the dotted key of a nested dataclass, for messages."""
    hints = type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = _checked_values(cls, hints, fields, values, prefix)
    _check_required(cls, fields, kwargs, prefix)
    try:
        return cls(**kwargs)
    except FieldError:
        raise
    except Exception as exc:  # the user's __post_init__ validation
        raise FieldError(prefix or "", f"{cls.__name__} rejected the values: {exc}") from None


def _checked_values(
    cls: type,
    hints: Mapping[str, Any],
    fields: Mapping[str, Any],
    values: Mapping[str, Any],
    prefix: str,
) -> dict[str, Any]:
    """Each value checked against its field's annotation, in order; the first refused one
    (a key that is no field, or a value of the wrong type) is a FieldError."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields or key in ("hash",):
            known = sorted(k for k in fields if k not in ("name", "hash", "hash_representations"))
            message = f"unknown parameter {full!r} for {cls.__name__}"
            raise FieldError(full, message, suggest(str(key), known))
        try:
            out[key] = coerce(value, hints.get(key, Any), full)
        except Mismatch as exc:
            raise FieldError(full, f"parameter {full!r}: {exc}") from None
    return out


def _check_required(
    cls: type, fields: Mapping[str, dataclasses.Field[Any]], given: Mapping[str, Any], prefix: str
) -> None:
    missing = [
        name
        for name, f in fields.items()
        if name not in given
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        full = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise FieldError(full, f"missing required parameter {full!r} for {cls.__name__}")


def suggest(key: str, known: list[str]) -> str:
    """A hint for a key that is not a parameter: the closest known one, or all of them."""
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known parameters: " + (", ".join(known) or "none")
