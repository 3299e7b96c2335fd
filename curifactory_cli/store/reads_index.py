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

A call served from another set's entry adds a *use* line, in the same batches, so that the
cache itself (shared by several clones, or in a bucket) says which sets use an entry
(`curi cache ls -p`, `cache inspect`, `cache invalidate -p`):

        {"use": <key>, "stage": ..., "params_hash": <the entry's>, "by": <the set's hash>,
         "record": <the set's name>}

A run looking for entries skips use lines unparsed (they start with `{"use"`); the cache
commands read them. Each writer appends only to its own file, holding an `flock` on it while
it may write: `curi cache gc` compacts the files no writer holds (`store.reads_compact`).

Nothing in it is trusted: a line only says where to look. A call is served from an entry
only after the store's own lookup (metadata, signature, files) and a check that the entry's
metadata has the same key parts apart from the parameters and that the set has the values
the entry's call read (see `engine.sharing`). So a line that is torn (a writer killed
mid-line), stale (its entry removed) or forged costs a look, never a wrong result.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator
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
USE_PREFIX = b'{"use"'
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_NAME = 4096  # a set's name in a use line


def use_record(stage: str, params_hash: str, key: str, by: str, record: str) -> dict[str, Any]:
    """A use line: the set (`by`, its hash; `record`, its name) used the entry (`stage`,
    `params_hash`, `key`) of another set."""
    return {"use": key, "stage": stage, "params_hash": params_hash, "by": by, "record": record}


def writer_name() -> str:
    """A name no other writer (run, process, machine) picks."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def record_line(record: dict[str, Any]) -> str:
    if "use" in record:  # a set's name may hold any character: encoded
        name = json.dumps(record["record"], ensure_ascii=True)
        return (
            f'{{"use":"{record["use"]}","stage":"{record["stage"]}",'
            f'"params_hash":"{record["params_hash"]}","by":"{record["by"]}","record":{name}}}\n'
        )
    # Built by hand: a run writes one per entry it publishes. Stage names, digests and keys
    # hold no character JSON escapes (see names.check_name); the reads are encoded.
    items = record["reads"]
    reads = json.dumps(items, separators=(",", ":"), ensure_ascii=True) if items else "[]"
    return (
        f'{{"stage":"{record["stage"]}","probe":"{record["probe"]}","reads":{reads},'
        f'"params_hash":"{record["params_hash"]}","key":"{record["key"]}"}}\n'
    )


def _json_lines(data: bytes, uses: bool) -> Iterator[Any]:
    """The decoded lines of a file's bytes, within the bounds: the use lines (`uses`) or
    the others (a line that is not JSON is skipped)."""
    for line in data[:MAX_FILE_BYTES].split(b"\n"):
        if not line or len(line) > MAX_LINE_BYTES or line.startswith(USE_PREFIX) != uses:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The well-formed records of a file's bytes (anything else is skipped)."""
    return [
        record
        for record in _json_lines(data, uses=False)
        if isinstance(record, dict)
        and all(type(record.get(k)) is t for k, t in _FIELDS.items())
        and all(_pair(item) for item in record["reads"])
        and _HEX.match(record["params_hash"])
        and _HEX.match(record["key"])
    ]


def _pair(item: Any) -> bool:
    return type(item) is list and [type(x) for x in item] == [str, str]


def parse_uses(data: bytes) -> list[dict[str, Any]]:
    """The well-formed use lines of a file's bytes (anything else is skipped)."""
    if USE_PREFIX not in data:  # most files: no set shared another's entry
        return []
    return [
        record
        for record in _json_lines(data, uses=True)
        if isinstance(record, dict)
        and all(type(record.get(k)) is str for k in ("use", "stage", "params_hash", "by"))
        and type(record.get("record")) is str
        and 0 < len(record["record"]) <= MAX_NAME
        and not _CONTROL.search(record["record"])  # a name printed to a terminal
        and record["stage"]
        and all(_HEX.match(record[k]) for k in ("use", "params_hash", "by"))
    ]


def read_regular(path: str) -> bytes | None:
    """A regular file's bytes (up to the bound), never following a link nor waiting on a
    FIFO planted under an index file's name; None for anything else."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as infile:
            return infile.read(MAX_FILE_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


class LocalIndexFiles:
    """The reads index of a local cache folder: read in full, appended line by line (a
    write of whole lines to a file this writer alone appends to, under its `flock`)."""

    def __init__(self, root: str, dry: bool) -> None:
        self._root = root
        self._dry = dry
        self._name = writer_name()
        self._files: dict[str, Any] = {}
        self._uses: dict[str, list[dict[str, Any]]] = {}  # read with the records

    def folder(self, experiment: str) -> str:
        return os.path.join(self._root, READS_DIR, experiment)

    def _contents(self, experiment: str) -> list[bytes]:
        folder = self.folder(experiment)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
        except OSError:
            return []
        out = []
        for name in names:
            data = read_regular(os.path.join(folder, name))
            if data is not None:
                out.append(data)
        return out

    def read(self, experiment: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        uses: list[dict[str, Any]] = []
        for data in self._contents(experiment):
            records += parse_lines(data)
            if USE_PREFIX in data:
                uses += parse_uses(data)
        self._uses[experiment] = uses
        return records

    def read_uses(self, experiment: str) -> list[dict[str, Any]]:
        """The use lines of the experiment's index (those read with its records, if they
        were: a run that shares has read them already)."""
        found = self._uses.get(experiment)
        if found is None:
            found = [u for data in self._contents(experiment) for u in parse_uses(data)]
        return found

    def append(self, experiment: str, records: list[dict[str, Any]]) -> None:
        if self._dry or not records:
            return
        out = self._files.get(experiment)
        if out is None:
            out = self._files[experiment] = self._open(experiment)
        # One write per call: another run reading it sees whole lines or none of the last.
        out.write("".join(record_line(r) for r in records))
        out.flush()
        known = self._uses.get(experiment)
        if known is not None:
            known += [r for r in records if "use" in r]

    def _open(self, experiment: str) -> Any:
        """This writer's file, locked for as long as it may write to it: compaction takes
        only files no writer holds, and removes them while it holds them (a writer that
        opened one just before finds it gone once it has the lock, and opens it again)."""
        folder = self.folder(experiment)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, self._name + SUFFIX)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        while True:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                    return os.fdopen(fd, "a", encoding="utf-8")
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def close(self) -> None:
        files, self._files = self._files, {}
        for out in files.values():
            out.close()
