"""`--filter 'lr<0.1'` of `curi metrics`: a name, a comparison and a value, parsed by hand
(never evaluated). The name is a metric or a parameter (dotted for a nested one: `model.C`);
the value a number, true/false, null, or text (quoted or bare)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curifactory_cli.errors import ConfigError

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "!=": operator.ne,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
# The name, then the first operator (two-character ones tried first), then the value.
_CONDITION = re.compile(r"^\s*([^<>=!\s]+)\s*(<=|>=|!=|==|<|>|=)\s*(.*?)\s*$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)$", re.I)


@dataclass(frozen=True)
class Condition:
    """One `--filter`: `name op value`, as typed in `text`."""

    text: str
    name: str
    op: str
    value: Any

    def holds(self, found: Any) -> bool:
        """Whether a row's value satisfies it: numbers (and bools) compare as numbers, text
        as text, a missing value equals only null; NaN, or an order between a number and
        text, never holds (but `!=` between different kinds does)."""
        if found is None or self.value is None:
            same = found is None and self.value is None
            return same if self.op in ("=", "==") else self.op == "!=" and not same
        if _is_nan(found) or _is_nan(self.value):
            return self.op == "!="
        compare = _OPERATORS[self.op]
        if _numeric(found) and _numeric(self.value):
            return bool(compare(float(found), float(self.value)))
        if isinstance(found, str) and isinstance(self.value, str):
            return bool(compare(found, self.value))
        return self.op == "!="  # different kinds: only `!=` holds


def parse_condition(text: str) -> Condition:
    """A condition from `--filter` text, or ConfigError saying how to write one."""
    found = _CONDITION.match(text)
    if found is None or not found.group(3):
        raise ConfigError(
            f"--filter {text!r} is not a comparison",
            hint="write NAME OP VALUE with OP one of < <= > >= == != (e.g. 'lr<0.1', "
            "\"model=='rf'\"), NAME a metric or a parameter.",
        )
    name, op, raw = found.groups()
    return Condition(text, name, op, _scalar(raw))


def _scalar(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    if _NUMBER.match(raw):
        value = float(raw)
        return int(raw) if re.fullmatch(r"[+-]?\d+", raw) else value
    return raw


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
