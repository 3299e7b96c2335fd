"""The reads index of a cache: which entry a stage call computed, under what it read of its
parameter set, so that a call of another set that reads the same values finds it.

An entry lives in the folder of the set that computed it (see `store.entry`); the index is
how another set reaches it. It is a folder of JSON-lines files, one per writer (a run's
store), appended to as entries are published:

    <cache>/.reads/<experiment>/<writer>.jsonl
        {"stage": ..., "probe": ..., "reads": [[path, digest], ...], "params_hash": ...,
         "key": ...}

`probe` digests the call's key parts but its parameters, `reads` is what it read (each path
with the digest of the value read); `params_hash` and `key` name the entry (its folder is
the store's own layout of them: a line names no path).

Nothing in it is trusted: a line only says where to look. A call is served from an entry
only after the store's own lookup (metadata, signature, files) and a check that the entry's
metadata has the same key parts apart from the parameters and that the set has the values
the entry's call read (see `engine.sharing`). So a line that is torn (a writer killed
mid-line), stale (its entry removed) or forged costs a look, never a wrong result.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

READS_DIR = ".reads"
SUFFIX = ".jsonl"
MAX_FILE_BYTES = 64 << 20  # a bound on what a planted file makes every run read
MAX_LINE_BYTES = 64 << 10
_FIELDS = {
    "stage": str,
    "probe": str,
    "reads": list,
    "params_hash": str,
    "key": str,
}
_HEX = re.compile(r"^[0-9a-f]{16,64}$")


def writer_name() -> str:
    """A name no other writer (run, process, machine) picks."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def record_line(record: dict[str, Any]) -> str:
    # Built by hand: a run writes one per entry it publishes. Stage names, digests and keys
    # hold no character JSON escapes (see names.check_name); the reads are encoded.
    items = record["reads"]
    reads = json.dumps(items, separators=(",", ":"), ensure_ascii=True) if items else "[]"
    return (
        f'{{"stage":"{record["stage"]}","probe":"{record["probe"]}","reads":{reads},'
        f'"params_hash":"{record["params_hash"]}","key":"{record["key"]}"}}\n'
    )


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The well-formed records of a file's bytes (anything else is skipped)."""
    out = []
    for line in data[:MAX_FILE_BYTES].split(b"\n"):
        if not line or len(line) > MAX_LINE_BYTES:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and all(type(record.get(k)) is t for k, t in _FIELDS.items())
            and all(
                type(item) is list and [type(x) for x in item] == [str, str]
                for item in record["reads"]
            )
            and _HEX.match(record["params_hash"])
            and _HEX.match(record["key"])
        ):
            out.append(record)
    return out


class LocalIndexFiles:
    """The reads index of a local cache folder: read in full, appended line by line (a
    write of whole lines to a file this writer alone appends to)."""

    def __init__(self, root: str, dry: bool) -> None:
        self._root = root
        self._dry = dry
        self._name = writer_name()
        self._files: dict[str, Any] = {}

    def folder(self, experiment: str) -> str:
        return os.path.join(self._root, READS_DIR, experiment)

    def read(self, experiment: str) -> list[dict[str, Any]]:
        folder = self.folder(experiment)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
        except OSError:
            return []
        records = []
        for name in names:
            try:
                with open(os.path.join(folder, name), "rb") as infile:
                    records += parse_lines(infile.read(MAX_FILE_BYTES))
            except OSError:
                continue
        return records

    def append(self, experiment: str, records: list[dict[str, Any]]) -> None:
        if self._dry or not records:
            return
        out = self._files.get(experiment)
        if out is None:
            folder = self.folder(experiment)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, self._name + SUFFIX)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
            out = self._files[experiment] = os.fdopen(
                os.open(path, flags, 0o644), "a", encoding="utf-8"
            )
        # One write per call: another run reading it sees whole lines or none of the last.
        out.write("".join(record_line(r) for r in records))
        out.flush()

    def close(self) -> None:
        files, self._files = self._files, {}
        for out in files.values():
            out.close()
