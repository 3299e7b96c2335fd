"""Which cache entries each parameter set's stage calls used, as the registry recorded them:
what a miss is explained against when a set has no entry of its own (it may have used
another set's)."""

from __future__ import annotations

import sqlite3


def entries_used(
    conn: sqlite3.Connection, experiment: str, runs: int
) -> dict[tuple[str, str], list[str]]:
    """(set name, stage) -> the entries (relative to the cache) its calls used, computed or
    shared with another set, in the experiment's last `runs` runs, newest first (bounded: a
    long history costs no more)."""
    used: dict[tuple[str, str], list[str]] = {}
    for record, stage, entry in conn.execute(
        "SELECT record, stage, entry FROM run_stages WHERE run_id IN (SELECT id FROM"
        " runs WHERE experiment = ? ORDER BY id DESC LIMIT ?) AND entry IS NOT NULL"
        " ORDER BY run_id DESC, position",
        (experiment, int(runs)),
    ):
        used.setdefault((record, stage), []).append(entry)
    return used
