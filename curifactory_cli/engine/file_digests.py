"""The files stages declare they read (`depends_on`): their content checksums, part of a
stage call's key, remembered between runs so an unchanged big file is not read again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from curifactory_cli.atomic import write_bytes_atomic
from curifactory_cli.errors import ConfigError

FILE_MEMO = os.path.join("data", "file_digests.json")


class FileDigests:
    """Content checksums of the files stages declare with `depends_on`, relative to the
    project root, globs allowed. A file whose size, mtime and inode are unchanged is not read
    again: the checksums are kept in `data/file_digests.json` between runs."""

    def __init__(self, root: str | os.PathLike[str], write: bool = True) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.write = write  # False: `--dry` and `curi plan` leave the project as it was
        self._memo: dict[str, list[Any]] | None = None
        self._changed = False
        self._runs: dict[tuple[str, ...], dict[str, str]] = {}  # once per run and patterns

    def digests(self, patterns: Sequence[str], stage: str) -> dict[str, str]:
        """Relative path -> sha256 of every file the patterns name."""
        done = self._runs.get(tuple(patterns))
        if done is None:
            done = self._runs[tuple(patterns)] = self._digests(patterns, stage)
        return done

    def _digests(self, patterns: Sequence[str], stage: str) -> dict[str, str]:
        import glob

        out: dict[str, str] = {}
        for pattern in patterns:
            base = pattern if os.path.isabs(pattern) else os.path.join(self.root, pattern)
            matches = sorted(p for p in glob.glob(base, recursive=True) if os.path.isfile(p))
            if not matches:
                raise ConfigError(
                    f"stage {stage!r} depends on {pattern!r}, which names no file "
                    f"(relative to the project folder {self.root})",
                    hint="create the file, or fix the path in depends_on=[...].",
                )
            for path in matches:
                rel = os.path.relpath(path, self.root).replace(os.sep, "/")
                out[rel] = self._digest(path, rel)
        self._save()
        return dict(sorted(out.items()))

    def _digest(self, path: str, rel: str) -> str:
        memo = self._load()
        info = os.stat(path)
        stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
        known = memo.get(rel)
        if known is not None and known[:3] == stamp:
            return str(known[3])
        h = hashlib.sha256()
        with open(path, "rb") as infile:
            while chunk := infile.read(1 << 20):
                h.update(chunk)
        memo[rel] = [*stamp, h.hexdigest()]
        self._changed = True
        return h.hexdigest()

    def _load(self) -> dict[str, list[Any]]:
        if self._memo is None:
            try:
                with open(os.path.join(self.root, FILE_MEMO), encoding="utf-8") as infile:
                    loaded = json.load(infile)
                self._memo = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def _save(self) -> None:
        """Write the memo (best effort: it only saves re-reading files)."""
        if not self._changed or self._memo is None or not self.write:
            return
        self._changed = False
        target = os.path.join(self.root, FILE_MEMO)
        with contextlib.suppress(OSError):
            write_bytes_atomic(target, json.dumps(self._memo).encode("utf-8"))
