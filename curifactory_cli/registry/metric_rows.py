"""What `curi metrics` reads of runs from the registry: each run's parameter values by set
name and the metrics its stage calls recorded, in two queries per 500 runs (a run's calls
come back as one JSON array that SQLite concatenates from the stored text: the floats stay
exact)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunMetrics:
    """What `curi metrics` reads of a run: its parameter sets' values by name, and the
    metrics of its stage calls that recorded some, as (record, metrics) in call order."""

    reference: str
    experiment: str
    number: int
    values: dict[str, dict[str, Any]]
    calls: list[tuple[str, dict[str, Any]]]
    nested: bool = True  # False: no set's values hold a mapping (none to flatten)


def read_run_metrics(
    conn: sqlite3.Connection, references: Sequence[str], with_metrics: bool
) -> list[RunMetrics]:
    """The runs' `RunMetrics` in the order given (`with_metrics`: the file has the column)."""
    found: dict[str, RunMetrics] = {}
    # The sets of a sweep run again are parsed once.
    parsed: dict[str, tuple[dict[str, dict[str, Any]], bool]] = {}
    for start in range(0, len(references), 500):  # SQLite's limit on parameters
        chunk = list(references[start : start + 500])
        marks = ",".join("?" * len(chunk))
        ids = {}
        for run_id, reference, experiment, number, sets in conn.execute(
            "SELECT id, reference, experiment, number, param_sets FROM runs"
            f" WHERE reference IN ({marks})",
            chunk,
        ):
            known = parsed.get(sets)
            if known is None:
                known = parsed[sets] = _set_values(sets)
            values, nested = known
            ids[run_id] = reference
            found[reference] = RunMetrics(reference, experiment, number, values, [], nested)
        if not with_metrics or not ids:
            continue
        for run_id, calls in _calls(conn, list(ids)):
            found[ids[run_id]].calls.extend(calls)
    return [found[r] for r in dict.fromkeys(references) if r in found]


def read_call_metrics(
    conn: sqlite3.Connection, references: Sequence[str]
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The metrics of each run's stage calls that recorded some, as (record, metrics) in
    call order, by run reference (a run without metrics is left out); its parameter sets
    are not read (the index of all runs shows metrics, not parameters)."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for start in range(0, len(references), 500):  # SQLite's limit on parameters
        chunk = list(references[start : start + 500])
        ids = dict(
            conn.execute(
                f"SELECT id, reference FROM runs WHERE reference IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        )
        if ids:
            for run_id, calls in _calls(conn, list(ids)):
                found[ids[run_id]] = calls
    return found


def _calls(
    conn: sqlite3.Connection, run_ids: list[int]
) -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    # A run's calls with metrics as one JSON array [record, metrics, ...], parsed at
    # once: the metrics' text is written by Python, exact (NaN included).
    for run_id, text in conn.execute(
        "SELECT run_id, '[' || group_concat(json_quote(record) || ',' || metrics)"
        " || ']' FROM run_stages WHERE metrics IS NOT NULL AND run_id IN"
        f" ({','.join('?' * len(run_ids))}) GROUP BY run_id",
        run_ids,
    ):
        # Written by finish_run from checked metrics: read as they are.
        items = json.loads(text)
        yield run_id, list(zip(items[::2], items[1::2], strict=True))


def _set_values(text: str | None) -> tuple[dict[str, dict[str, Any]], bool]:
    """A run's parameter sets (its `param_sets` column) as name -> recorded values, and
    whether any value may be a mapping (to flatten)."""
    try:
        doc = json.loads(text) if text else []
    except ValueError:
        return {}, False
    out: dict[str, dict[str, Any]] = {}
    braces = 0  # those of the sets and of their values objects
    for item in doc if isinstance(doc, list) else ():
        if isinstance(item, dict):
            values = item.get("values")
            braces += 1 + isinstance(values, dict)
            out[str(item.get("name", ""))] = values if isinstance(values, dict) else {}
    # Any other brace is a nested mapping (or a brace inside a string: then flattened for
    # nothing); counting them is quicker than looking into every set.
    return out, text is not None and text.count("{") > braces


def metrics_text(metrics: dict[str, Any] | None) -> str | None:
    """A stage call's metrics as stored: a JSON object (NaN and infinities as Python's JSON
    writes them), or NULL for none."""
    if not metrics:
        return None
    return json.dumps(metrics)


def metrics_doc(doc: Any) -> dict[str, Any]:
    """Stored metrics as read: numbers and bools only (the file is data)."""
    if not isinstance(doc, dict):
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, (int, float))}
