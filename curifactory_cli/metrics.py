"""Named scalar metrics a stage call records (`record.metric(name, value)`): what a value may
be, and the file that keeps them with the call's cache entry.

A metric is a number: int, float, bool, or a numpy scalar of those kinds (kept as the plain
Python value). NaN and infinities are kept as they are (a diverged loss is a result, not a
usage error): the entry's file writes them as JSON's common extension (`NaN`, `Infinity`),
the registry as NULL and its infinities. Anything else raises `MetricError`, which names the
metric and the stage (exit code 2). A name recorded twice by one call keeps its last value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from curifactory_cli.errors import MetricError

METRICS_FILE = "_metrics.json"  # in the entry's folder, listed (and checksummed) in its metadata
MAX_NAME = 200
_INT64 = 2**63

Metric = int | float | bool


def metric_value(name: Any, value: Any, where: str) -> tuple[str, Metric]:
    """The name and plain value of a metric, or MetricError saying what is wrong with it.
    `where` names the stage call (`stage 'fit' (set 'a')`)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise MetricError(
            f"metric name {name!r} in {where} is not a usable name",
            hint=f"name a metric with a non-empty string of at most {MAX_NAME} characters.",
        )
    if any(c in name for c in "\n\r\t"):
        raise MetricError(
            f"metric name {name!r} in {where} contains a line break or tab",
            hint="name a metric on one line, e.g. 'val_accuracy'.",
        )
    plain = _plain(value)
    if plain is None:
        raise MetricError(
            f"metric {name!r} in {where} is a {type(value).__name__} ({_short(value)}), not a "
            "number",
            hint="record an int, float, bool or numpy scalar; for an array, record a summary "
            "of it (its mean, its last value).",
        )
    if isinstance(plain, int) and not isinstance(plain, bool) and not -_INT64 <= plain < _INT64:
        raise MetricError(
            f"metric {name!r} in {where} is an integer too large to keep ({_short(value)})",
            hint="record it as a float, or in another unit.",
        )
    return name, plain


def _plain(value: Any) -> Metric | None:
    """The Python number of an accepted value, None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # an int subclass (an IntEnum) as the plain number
    if isinstance(value, float):
        return float(value)  # numpy.float64 is a float subclass
    # numpy (and numpy-like) scalars, without importing numpy: a 0-d value with .item().
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        kind = getattr(getattr(value, "dtype", None), "kind", "")
        if kind and kind in "biuf":
            item = value.item()
            if isinstance(item, (bool, int, float)):
                return item
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dump_metrics(metrics: dict[str, Metric]) -> bytes:
    """The bytes of an entry's metrics file (sorted by name: the same metrics, the same
    bytes)."""
    return json.dumps(metrics, sort_keys=True).encode()


def load_metrics(data: bytes) -> dict[str, Metric]:
    """The metrics of an entry's (verified) metrics file; a value of another kind is left
    out (metadata is data: a hand-edited file must not put an object in a table)."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("the metrics file is not a JSON object")
    return {str(k): v for k, v in doc.items() if isinstance(v, (int, float)) and isinstance(k, str)}


def format_metric(value: Any) -> str:
    """A metric as a table shows it: a bool as true/false, an int as it is, a float to 6
    significant digits (nan, inf and -inf as such)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)
