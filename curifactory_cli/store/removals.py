"""Entries `curi cache verify --fix` removed as damaged, remembered so that a run or a plan
that misses one of them says so, rather than comparing with an older entry ("input data
changed") or with none ("not computed yet").

A JSON line per entry in `.removed-damaged.jsonl` at the root of a local cache: its key and
lineage key, when it was removed and why. `cache clear` and `cache gc` forget the entries they
remove (a deliberate removal is not damage). A remote store keeps no such log.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from curifactory_cli.atomic import write_bytes_atomic

LOG_NAME = ".removed-damaged.jsonl"
MAX_RECORDS = 10_000  # the newest are kept: a line is ~250 bytes


def log_root(store: Any) -> Path | None:
    """The local cache folder that keeps the log for `store` (a local store, or the local tier
    in front of a remote one); None for a store without one."""
    from curifactory_cli.store.local import LocalStore

    if isinstance(store, LocalStore):
        return store.root
    local = getattr(store, "local", None)
    return local.root if isinstance(local, LocalStore) else None


def read(root: Path | None) -> dict[str, dict[str, Any]]:
    """The removed entries by key, and by lineage key (`lineage:<key>`); {} without a log. A
    damaged line is skipped: the log only improves a message."""
    if root is None:
        return {}
    try:
        text = (root / LOG_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            found[record["key"]] = record
            if isinstance(record.get("lineage_key"), str):
                found["lineage:" + record["lineage_key"]] = record
    return found


def record(store: Any, entries: Iterable[Any], why: dict[str, str]) -> None:
    """Remember `entries` as removed because damaged (`why`: a problem per entry short id)."""
    root = log_root(store)
    if root is None:
        return
    when = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    new = [
        {
            "key": e.key,
            "lineage_key": e.meta.get("lineage_key"),
            "label": e.label(),
            "removed": when,
            "problem": why.get(e.short_id, "damaged"),
        }
        for e in entries
    ]
    keys = {r["key"] for r in new}
    _rewrite(root, [r for r in _records(root) if r.get("key") not in keys] + new)


def forget(store: Any, entries: Iterable[Any]) -> None:
    """Drop `entries` from the log (removed on purpose, by `cache clear` or `cache gc`)."""
    root = log_root(store)
    if root is None or not (root / LOG_NAME).exists():
        return
    keys = {e.key for e in entries}
    kept = [r for r in _records(root) if r.get("key") not in keys]
    _rewrite(root, kept)


def _records(root: Path) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for key, value in read(root).items():
        if not key.startswith("lineage:"):
            seen[key] = value
    return list(seen.values())


def _rewrite(root: Path, records: list[dict[str, Any]]) -> None:
    path = root / LOG_NAME
    records = records[-MAX_RECORDS:]
    if not records:
        path.unlink(missing_ok=True)
        return
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    write_bytes_atomic(path, text.encode("utf-8"))  # replaced whole: never read half-written
