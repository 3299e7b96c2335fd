"""Reading and tidying the cache directory for `curi cache ...`.

Only metadata files (and, to verify them, the bytes of cached files) are read: no artifact
is loaded and no user code is imported here. Loading an output is `cache_dump`'s job.

Every deletion goes through `_checked`, which refuses symlinks and anything that does not
resolve to a path strictly inside the cache directory.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.store import (
    LOCK_DIR,
    META_NAME,
    SIGNING_ENV,
    STAGING_DIR,
    TRASH_DIR,
    EntryLock,
    entry_signature,
    file_sha256,
)

MIN_ID_LENGTH = 6  # shorter prefixes collide too easily to be safe for a delete
GRACE_S = 3600.0  # leftovers younger than this may belong to a run still writing them
ENTRY_DIR_NAME = re.compile(r"^(?P<stage>.+)-(?P<key>[0-9a-f]{16})$")
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass
class CacheEntry:
    directory: Path
    meta: dict[str, Any]

    @property
    def experiment(self) -> str:
        return str(self.meta.get("experiment", "?"))

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", "?"))

    @property
    def params_name(self) -> str:
        return str(self.meta.get("record", "?"))

    @property
    def params_hash(self) -> str:
        return str(self.meta.get("params_hash") or "")

    @property
    def key(self) -> str:
        return str(self.meta.get("key", ""))

    @property
    def short_id(self) -> str:
        return self.key[:10]

    @property
    def invalidated(self) -> bool:
        return bool(self.meta.get("invalidated"))

    @property
    def outputs(self) -> dict[str, Any]:
        return self.meta.get("outputs") or {}

    @property
    def size(self) -> int:
        return sum(int(info.get("size", 0)) for _, info in listed_files(self.meta))

    @property
    def created(self) -> float:
        try:
            return (self.directory / META_NAME).stat().st_mtime
        except OSError:
            return 0.0

    def rel(self, root: Path) -> str:
        """The entry's path relative to the cache root, as the metadata's lineage names it."""
        return self.directory.relative_to(root).as_posix()

    def label(self) -> str:
        return f"{self.experiment} / {self.params_name} / {self.stage}"

    def to_json(self, root: Path) -> dict[str, Any]:
        return {
            "id": self.short_id,
            "key": self.key,
            "experiment": self.experiment,
            "params": self.params_name,
            "params_hash": self.meta.get("params_hash"),
            "stage": self.stage,
            "outputs": {
                name: {"cacher": out.get("cacher"), "lazy": out.get("lazy", False)}
                for name, out in self.outputs.items()
            },
            "size": self.size,
            "created": self.created,
            "age_s": round(time.time() - self.created, 1),
            "run": (self.meta.get("run") or {}).get("id"),
            "invalidated": self.invalidated,
            "path": self.rel(root),
        }


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The entry metadata in `directory`, or None when it is missing or not an entry's."""
    try:
        with open(directory / META_NAME, encoding="utf-8") as infile:
            meta = json.load(infile)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "key" in meta else None


def iter_entries(root: Path) -> Iterator[CacheEntry]:
    """Every committed entry (a folder with a readable meta.json) under the cache root."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if META_NAME in filenames:
            dirnames[:] = []  # an entry's own subfolders belong to its outputs
            path = Path(dirpath)
            meta = read_meta(path)
            if meta is not None:
                yield CacheEntry(path, meta)


def select(
    entries: Iterable[CacheEntry],
    experiment: str | None = None,
    stage: str | None = None,
    params: str | None = None,
) -> list[CacheEntry]:
    """Entries matching every given filter (`params` matches a set name or a hash prefix)."""
    out = []
    for entry in entries:
        if experiment and entry.experiment != experiment:
            continue
        if stage and entry.stage != stage:
            continue
        if params and entry.params_name != params and not entry.params_hash.startswith(params):
            continue
        out.append(entry)
    return out


# ------------------------------------------------------------------------- addressing
def resolve_entry(entries: list[CacheEntry], ident: str, root: Path) -> CacheEntry:
    """The one entry `ident` names: a key prefix (as `cache ls` prints), a folder name
    `<stage>-<key16>`, or the entry's path (relative to the cache root or the current dir).
    """
    text = ident.strip()
    if "/" in text or os.sep in text:
        matches = _by_path(entries, text, root)
    else:
        named = ENTRY_DIR_NAME.match(text)
        if named:
            text = named["key"]
            entries = [e for e in entries if e.stage == named["stage"]]
        text = text.lower()
        if not _HEX.match(text):
            raise ConfigError(
                f"{ident!r} is not a cache entry id",
                hint="entry ids are the hex ids in the first column of `curi cache ls`.",
            )
        if len(text) < MIN_ID_LENGTH:
            raise ConfigError(
                f"entry id {ident!r} is too short",
                hint=f"give at least {MIN_ID_LENGTH} characters of the id `curi cache ls` prints.",
            )
        matches = [e for e in entries if e.key.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"no cache entry {ident!r} in {root}",
            hint="list entries and their ids with `curi cache ls` (filters apply too).",
        )
    shown = "; ".join(f"{e.short_id} ({e.label()})" for e in matches[:8])
    more = f"; and {len(matches) - 8} more" if len(matches) > 8 else ""
    raise ConfigError(
        f"entry id {ident!r} is ambiguous: it matches {len(matches)} entries",
        hint=f"candidates: {shown}{more}. Give more characters or filter with -e/-s/-p.",
    )


def _by_path(entries: list[CacheEntry], text: str, root: Path) -> list[CacheEntry]:
    wanted = {text.strip("/")}
    with contextlib.suppress(OSError, ValueError):  # a path outside the cache names nothing
        wanted.add(Path(text).resolve().relative_to(root.resolve()).as_posix())
    return [e for e in entries if e.rel(root) in wanted]


# ------------------------------------------------------------------------- ordering
SORT_KEYS = ("experiment", "params", "stage", "age", "size")


def sort_entries(entries: list[CacheEntry], by: str | None = None) -> list[CacheEntry]:
    """Entries by experiment, params, stage, newest first; `by` puts one criterion first
    (age: newest first, size: largest first)."""
    default = sorted(entries, key=lambda e: -e.created)  # sorts are stable: newest last wins
    default.sort(key=lambda e: (e.experiment, e.params_name, e.stage))
    if by in (None, "experiment"):
        return default
    if by == "age":
        return sorted(default, key=lambda e: -e.created)
    if by == "size":
        return sorted(default, key=lambda e: -e.size)
    if by == "params":
        return sorted(default, key=lambda e: e.params_name)
    if by == "stage":
        return sorted(default, key=lambda e: e.stage)
    raise ConfigError(f"cannot sort by {by!r}", hint="use one of: " + ", ".join(SORT_KEYS) + ".")


# ------------------------------------------------------------------------- lineage
def input_refs(meta: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(input name, producer reference) pairs; an aggregate's input holds one per record."""
    for name, value in (meta.get("inputs") or {}).items():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, dict):
                yield name, ref


class Lineage:
    """Which entries were computed from which, read from every entry's `inputs` metadata."""

    MAX_DEPTH = 64  # metadata is data: never trust it to be acyclic or shallow

    def __init__(self, root: Path, entries: list[CacheEntry]) -> None:
        self.root = root
        self.by_path = {e.rel(root): e for e in entries}
        self.consumers: dict[str, list[CacheEntry]] = defaultdict(list)
        for entry in entries:
            for rel in dict.fromkeys(r.get("entry") for _, r in input_refs(entry.meta)):
                if isinstance(rel, str):
                    self.consumers[rel].append(entry)

    def upstream(
        self, entry: CacheEntry, _seen: set[str] | None = None, _depth: int = 0
    ) -> list[dict[str, Any]]:
        """The producers of `entry`'s inputs, each with its own producers (JSON-able)."""
        seen = _seen if _seen is not None else {entry.rel(self.root)}
        groups: dict[str, dict[str, Any]] = {}
        for name, ref in input_refs(entry.meta):
            rel = ref.get("entry")
            group_key = (
                rel if isinstance(rel, str) else f"memory:{ref.get('stage')}:{ref.get('record')}"
            )
            node = groups.get(group_key)
            if node is None:
                node = groups[group_key] = self._upstream_node(rel, ref)
            if name not in node["inputs"]:
                node["inputs"].append(name)
            if ref.get("output") not in node["outputs"]:
                node["outputs"].append(ref.get("output"))
        for node in groups.values():
            producer = self.by_path.get(node["path"] or "")
            if producer is None:
                continue
            if node["path"] in seen or _depth >= self.MAX_DEPTH:
                node["repeated"] = True
                continue
            seen.add(node["path"])
            node["upstream"] = self.upstream(producer, seen, _depth + 1)
        return list(groups.values())

    def _upstream_node(self, rel: Any, ref: dict[str, Any]) -> dict[str, Any]:
        producer = self.by_path.get(rel) if isinstance(rel, str) else None
        if not isinstance(rel, str):
            status = "memory"  # produced by a stage without cachers: nothing on disk
        elif producer is None:
            status = "deleted"
        else:
            status = "invalidated" if producer.invalidated else "cached"
        return {
            "inputs": [],
            "outputs": [],
            "stage": ref.get("stage"),
            "record": ref.get("record"),
            "path": rel if isinstance(rel, str) else None,
            "id": producer.short_id if producer else None,
            "status": status,
            "upstream": [],
        }

    def downstream(
        self, entry: CacheEntry, _seen: set[str] | None = None, _depth: int = 0
    ) -> list[dict[str, Any]]:
        """The entries computed from `entry`, each with what was computed from it (JSON-able)."""
        rel = entry.rel(self.root)
        seen = _seen if _seen is not None else {rel}
        out = []
        for consumer in self.consumers.get(rel, []):
            crel = consumer.rel(self.root)
            names = [n for n, r in input_refs(consumer.meta) if r.get("entry") == rel]
            node: dict[str, Any] = {
                "inputs": list(dict.fromkeys(names)),
                "stage": consumer.stage,
                "record": consumer.params_name,
                "path": crel,
                "id": consumer.short_id,
                "status": "invalidated" if consumer.invalidated else "cached",
                "downstream": [],
            }
            if crel in seen or _depth >= self.MAX_DEPTH:
                node["repeated"] = True
            else:
                seen.add(crel)
                node["downstream"] = self.downstream(consumer, seen, _depth + 1)
            out.append(node)
        return out

    def descendants(self, entries: list[CacheEntry]) -> list[CacheEntry]:
        """Every entry computed, directly or transitively, from `entries` (not those)."""
        start = {e.rel(self.root) for e in entries}
        seen, todo, out = set(start), list(start), []
        while todo:
            for consumer in self.consumers.get(todo.pop(), []):
                crel = consumer.rel(self.root)
                if crel not in seen:
                    seen.add(crel)
                    todo.append(crel)
                    out.append(consumer)
        return out


# ------------------------------------------------------------------------- checking files
def listed_files(meta: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(output name, file info) for every file the metadata lists ("" for extra files)."""
    for name, output in (meta.get("outputs") or {}).items():
        for info in output.get("files") or []:
            yield name, info
    for info in meta.get("extra_files") or []:
        yield "", info


@dataclass
class FileCheck:
    output: str
    path: str
    size: int  # as recorded
    status: str  # "ok", "missing" or "mismatch"
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "path": self.path,
            "size": self.size,
            "status": self.status,
            "detail": self.detail,
        }


def inside(directory: Path, rel: str) -> Path | None:
    """`directory/rel` if `rel` stays inside `directory` (metadata is never trusted)."""
    if not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        return None
    return directory / rel


def check_file(directory: Path, output: str, info: dict[str, Any]) -> FileCheck:
    """Recompute one recorded file's size and sha256."""
    rel, size = str(info.get("path", "")), int(info.get("size", 0))
    path = inside(directory, rel)
    if path is None:
        return FileCheck(output, rel, size, "mismatch", "path points outside the entry")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return FileCheck(output, rel, size, "mismatch", "not a regular file")
    try:
        actual = path.stat().st_size
        if actual != size:
            return FileCheck(output, rel, size, "mismatch", f"size {actual} B, recorded {size} B")
        if file_sha256(path) != info.get("sha256"):
            return FileCheck(output, rel, size, "mismatch", "sha256 differs from the recorded one")
    except FileNotFoundError:
        return FileCheck(output, rel, size, "missing", "file is missing")
    except OSError as exc:
        return FileCheck(output, rel, size, "mismatch", f"unreadable: {exc.strerror or exc}")
    return FileCheck(output, rel, size, "ok")


def check_files(entry: CacheEntry, output: str | None = None) -> list[FileCheck]:
    return [
        check_file(entry.directory, name, info)
        for name, info in listed_files(entry.meta)
        if output is None or name == output
    ]


def signature_problem(entry: CacheEntry) -> str | None:
    """Why the entry's signature fails when `CURI_CACHE_KEY` is set (else None): then only
    metadata written with that key is trusted."""
    secret = os.environ.get(SIGNING_ENV)
    if not secret:
        return None
    try:
        expected = entry_signature(entry.meta, secret.encode())
    except (KeyError, TypeError, AttributeError):
        return "metadata is incomplete"
    if not hmac.compare_digest(str(entry.meta.get("signature", "")), expected):
        return f"metadata is not signed with this {SIGNING_ENV}"
    return None


def orphan_files(entry: CacheEntry) -> list[str]:
    """Files inside the entry folder that its metadata does not list."""
    listed = {str(info.get("path")) for _, info in listed_files(entry.meta)} | {META_NAME}
    out = []
    for dirpath, dirnames, filenames in os.walk(entry.directory):
        dirnames.sort()
        for name in sorted(filenames):
            rel = Path(dirpath, name).relative_to(entry.directory).as_posix()
            if rel not in listed:
                out.append(rel)
    return out


def orphan_entry_dirs(root: Path) -> list[Path]:
    """Folders named like an entry (`<stage>-<16 hex>`) with no readable meta.json."""
    out: list[Path] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, _ in os.walk(root):
        keep = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            if (path / META_NAME).exists() and read_meta(path) is not None:
                continue  # an entry: its subfolders belong to its outputs
            if ENTRY_DIR_NAME.match(name) and Path(dirpath) != root:
                out.append(path)
            else:
                keep.append(name)
        dirnames[:] = keep
    return out


# ------------------------------------------------------------------------- invalidating
def mark_invalidated(entry: CacheEntry) -> bool:
    """Add `"invalidated": true` to the entry's metadata, atomically; False if already so.

    The rewritten file keeps its modification time, which `ls`, `gc` and `du` read as the
    entry's age: invalidating does not make an entry look new.
    """
    meta_path = entry.directory / META_NAME
    if meta_path.is_symlink():
        raise CacheError(f"refusing to rewrite {meta_path}: it is a symbolic link")
    meta = read_meta(entry.directory)
    if meta is None:
        raise CacheError(f"cannot read {meta_path}", hint="`curi cache verify` checks entries.")
    if meta.get("invalidated"):
        return False
    meta["invalidated"] = True
    st = meta_path.stat()
    fd, tmp = tempfile.mkstemp(dir=entry.directory, prefix=".meta-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as outfile:
            outfile.write(json.dumps(meta, separators=(",", ":"), default=str))
            outfile.flush()
            os.fsync(outfile.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))  # mkstemp makes it private
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, meta_path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CacheError(f"cannot rewrite {meta_path}: {exc.strerror or exc}") from None
    entry.meta = meta
    return True


# ------------------------------------------------------------------------- removing
def _checked(real_root: Path, target: Path) -> Path:
    """`target` if it may be deleted: strictly inside the cache directory, not a symlink."""
    resolved = target.resolve()
    if target.is_symlink() or not resolved.is_relative_to(real_root) or resolved == real_root:
        msg = f"refusing to delete {target}: it is not inside the cache directory {real_root}"
        raise CacheError(msg, hint="symbolic links in the cache are never followed or removed.")
    return resolved


def remove_entries(root: Path, entries: list[CacheEntry]) -> int:
    """Delete entries (metadata first, so a half-deleted entry is never seen as valid)."""
    real_root = root.resolve()
    freed = 0
    for entry in entries:
        target = entry.directory
        _checked(real_root, target)
        freed += entry.size
        (target / META_NAME).unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        _prune_empty_parents(target.parent, real_root)
    return freed


def remove_paths(root: Path, paths: list[Path]) -> int:
    """Delete leftover folders or stray files inside the cache; returns the bytes freed."""
    real_root = root.resolve()
    freed = 0
    for path in paths:
        _checked(real_root, path)
        if not path.exists():
            continue
        freed += path_size(path)
        if path.is_dir():
            (path / META_NAME).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        _prune_empty_parents(path.parent, real_root)
    return freed


def _prune_empty_parents(directory: Path, root: Path) -> None:
    while directory.resolve() != root and directory.resolve().is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file below a folder (symlinks are not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# ------------------------------------------------------------------------- garbage
@dataclass
class Garbage:
    """Something `cache gc` would remove, and why."""

    path: Path
    kind: str  # "leftover", "orphan", "old" or "superseded"
    size: int
    reason: str
    entry: CacheEntry | None = field(default=None, repr=False)

    def to_json(self, root: Path) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "path": self.path.relative_to(root).as_posix(),
            "size": self.size,
            "reason": self.reason,
        }
        if self.entry is not None:
            data["id"] = self.entry.short_id
        return data


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def leftovers(root: Path, now: float, grace: float = GRACE_S) -> list[Garbage]:
    """Staging and trash folders left behind by interrupted runs.

    Their names start with the writing process's id. A folder whose process is gone is a
    leftover at once. One whose process is still running is kept however old it is: a stage
    may compute for hours into its staging folder (and a reused pid only delays the cleanup).
    Without a readable pid, only the grace period tells.
    """
    out = []
    for sub in (STAGING_DIR, TRASH_DIR):
        base = root / sub
        if not base.is_dir() or base.is_symlink():
            continue
        for path in sorted(base.iterdir()):
            if path.is_symlink():
                continue  # never ours: not followed, not removed
            head = path.name.split("-", 1)[0]
            age = _age(path, now)
            if head.isdigit():
                if pid_running(int(head)):
                    continue
                reason = f"process {head} is not running"
            elif age >= grace:
                reason = f"older than {human_duration(grace)}"
            else:
                continue
            out.append(Garbage(path, "leftover", path_size(path), reason))
    out.extend(_stale_locks(root, now, grace))
    return out


def _stale_locks(root: Path, now: float, grace: float) -> list[Garbage]:
    """Lock files not used for the grace period and not held now (flock keeps its files)."""
    base = root / LOCK_DIR
    if not base.is_dir() or base.is_symlink():
        return []
    out = []
    for path in sorted(base.glob("*.lock")):
        if path.is_symlink() or _age(path, now) < grace:
            continue
        lock = EntryLock(str(path))
        if not lock.acquire_nowait():
            continue  # a run is computing this entry right now
        lock.release()
        out.append(Garbage(path, "leftover", 0, f"lock unused for {human_duration(grace)}"))
    return out


def orphans(root: Path, now: float, grace: float = GRACE_S) -> list[Garbage]:
    """Entry-like folders without metadata, once older than the grace period."""
    return [
        Garbage(path, "orphan", path_size(path), "no readable meta.json")
        for path in orphan_entry_dirs(root)
        if _age(path, now) >= grace
    ]


def older_than(entries: list[CacheEntry], seconds: float, now: float) -> list[Garbage]:
    return [
        Garbage(e.directory, "old", e.size, f"written {human_age(now - e.created)}", e)
        for e in entries
        if now - e.created > seconds
    ]


def superseded(entries: list[CacheEntry], keep: int) -> list[Garbage]:
    """All but the `keep` newest entries of each (experiment, parameter set, stage): older
    versions left behind after the code or an input changed."""
    groups: dict[tuple[str, str, str], list[CacheEntry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.experiment, entry.params_hash, entry.stage)].append(entry)
    out = []
    for group in groups.values():
        group.sort(key=lambda e: e.created, reverse=True)
        for entry in group[keep:]:
            reason = f"{len(group) - 1} newer version(s) of this stage and parameter set"
            out.append(Garbage(entry.directory, "superseded", entry.size, reason, entry))
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in '90s', '15m', '12h', '30d' or '2w' (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ConfigError(
            f"cannot read duration {text!r}",
            hint="write a number with a unit: 90s, 15m, 12h, 30d or 2w.",
        )
    return float(match[1]) * _UNITS[match[2] or "d"]


# ------------------------------------------------------------------------- totals
DU_GROUPS = ("experiment", "stage", "params")


def totals(entries: list[CacheEntry], by: str) -> list[dict[str, Any]]:
    """Entry counts and sizes grouped by experiment, by (experiment, stage) or by
    (experiment, parameter set), largest first."""
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in entries:
        if by == "experiment":
            key: tuple[str, ...] = (entry.experiment,)
            fields = {"experiment": entry.experiment}
        elif by == "stage":
            key = (entry.experiment, entry.stage)
            fields = {"experiment": entry.experiment, "stage": entry.stage}
        elif by == "params":
            key = (entry.experiment, entry.params_hash)
            fields = {
                "experiment": entry.experiment,
                "params": entry.params_name,
                "params_hash": entry.params_hash[:16],
            }
        else:
            raise ConfigError(
                f"cannot group by {by!r}", hint="use one of: " + ", ".join(DU_GROUPS) + "."
            )
        group = groups.setdefault(key, {**fields, "entries": 0, "size": 0})
        group["entries"] += 1
        group["size"] += entry.size
    ordered = sorted(groups.items(), key=lambda item: (-item[1]["size"], item[0]))
    return [group for _, group in ordered]


# ------------------------------------------------------------------------- formatting
def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def human_age(seconds: float) -> str:
    return f"{human_duration(seconds)} ago"
