"""Reading the cache directory for `curi cache ...`: list, filter and remove entries.

Only metadata files are read; no artifact is loaded and no user code is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store import META_NAME


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
    def key(self) -> str:
        return str(self.meta.get("key", ""))

    @property
    def short_id(self) -> str:
        return self.key[:10]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.meta.get("outputs") or {}

    @property
    def size(self) -> int:
        total = 0
        for output in self.outputs.values():
            total += sum(int(f.get("size", 0)) for f in output.get("files", []))
        total += sum(int(f.get("size", 0)) for f in self.meta.get("extra_files") or [])
        return total

    @property
    def created(self) -> float:
        try:
            return (self.directory / META_NAME).stat().st_mtime
        except OSError:
            return 0.0

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
            "path": self.directory.relative_to(root).as_posix(),
        }


def iter_entries(root: Path) -> Iterator[CacheEntry]:
    """Every committed entry (a folder with a readable meta.json) under the cache root."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if META_NAME in filenames:
            dirnames[:] = []  # an entry's own subfolders belong to its outputs
            path = Path(dirpath)
            try:
                with open(path / META_NAME, encoding="utf-8") as infile:
                    meta = json.load(infile)
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and "key" in meta:
                yield CacheEntry(path, meta)


def select(
    entries: Iterator[CacheEntry] | list[CacheEntry],
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
        if (
            params
            and entry.params_name != params
            and not str(entry.meta.get("params_hash", "")).startswith(params)
        ):
            continue
        out.append(entry)
    return out


def remove_entries(root: Path, entries: list[CacheEntry]) -> int:
    """Delete entries (metadata first, so a half-deleted entry is never seen as valid)."""
    real_root = root.resolve()
    freed = 0
    for entry in entries:
        target = entry.directory
        resolved = target.resolve()
        if target.is_symlink() or not resolved.is_relative_to(real_root) or resolved == real_root:
            msg = f"refusing to delete {target}: it is not inside the cache directory {root}"
            raise CacheError(msg)
        freed += entry.size
        (target / META_NAME).unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        _prune_empty_parents(target.parent, real_root)
    return freed


def _prune_empty_parents(directory: Path, root: Path) -> None:
    while directory.resolve() != root and directory.resolve().is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
