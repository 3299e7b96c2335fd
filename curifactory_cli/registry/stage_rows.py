"""How a stage call is kept as a row of `run_stages`: the columns a file of each version has,
the row a `StageRecord` is written as, and the record a row reads back as.

There is one row per stage call of a run (10,000 in a big sweep), so writing and reading
them avoids the general JSON encoder where a column's shape is known.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from curifactory_cli.registry import metric_rows
from curifactory_cli.registry.records import StageRecord

# The columns read of a call, in `StageRecord`'s order; a file of an older version reads
# NULL (or 0) for those it lacks: before the second no edges or aggregates, before the
# fourth no metrics, before the fifth no output versions.
_READ = {
    5: "stage, record, outcome, reason, seconds, key, entry, inputs, aggregate, metrics, outputs",
    4: "stage, record, outcome, reason, seconds, key, entry, inputs, aggregate, metrics, NULL",
    2: "stage, record, outcome, reason, seconds, key, entry, inputs, aggregate, NULL, NULL",
    1: "stage, record, outcome, reason, seconds, key, entry, NULL, 0, NULL, NULL",
}

INSERT = (
    "INSERT INTO run_stages (run_id, position, stage, record, outcome, reason, seconds, key,"
    " entry, inputs, aggregate, metrics, outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_ENCODER = json.JSONEncoder(default=str, sort_keys=True)


def columns(version: int) -> str:
    """What to SELECT of a stage call in a file of schema `version`."""
    return _READ[max(v for v in _READ if v <= max(version, 1))]


def row(run_id: int, position: int, s: StageRecord) -> tuple[Any, ...]:
    """The values of `INSERT` for a stage call."""
    return (
        run_id,
        position,
        s.stage,
        s.record,
        s.outcome,
        s.reason,
        s.seconds,
        s.key,
        s.entry,
        _int_list(s.inputs),
        int(s.aggregate),
        metric_rows.metrics_text(s.metrics),
        _ENCODER.encode(s.outputs) if s.outputs else None,
    )


def record(values: sqlite3.Row | tuple[Any, ...]) -> StageRecord:
    """A stage call of a run, from the columns `columns()` selects."""
    stage, name, outcome, reason, seconds, key, entry, inputs, aggregate, metrics, outputs = values
    return StageRecord(
        stage=stage,
        record=name,
        outcome=outcome,
        reason=reason,
        seconds=seconds,
        key=key,
        entry=entry,
        inputs=None if inputs is None else json.loads(inputs),
        aggregate=bool(aggregate),
        metrics=None if metrics is None else metric_rows.metrics_doc(json.loads(metrics)),
        outputs=None if outputs is None else _versions(json.loads(outputs)),
    )


def _versions(doc: Any) -> dict[str, str] | None:
    """Stored output versions as read: text by output name (the file is data)."""
    if not isinstance(doc, dict):
        return None
    return {str(k): v for k, v in doc.items() if isinstance(v, str)}


def _int_list(value: list[int] | None) -> str | None:
    """A stage row's inputs (positions) as the encoder writes them, without it when they
    are plain ints (almost always)."""
    if value is None:
        return None
    if all(type(v) is int for v in value):
        return "[" + ", ".join(map(str, value)) + "]"
    return _ENCODER.encode(value)
