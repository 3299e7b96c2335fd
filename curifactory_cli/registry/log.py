"""A run's log: what each of its stage calls printed or logged, and the full traceback of a
failed one, kept next to the run registry in `logs/<run>.jsonl` (one JSON object a line).

The driver appends a line as each stage call ends, wherever the call ran (its output comes
back with the job's result), so a run that is killed keeps what its finished calls printed.
A call that printed nothing and did not fail adds no line; a cached call has no output in
this run. Only the standard library is used; rendering lives in `cli_runs.py` and `report/`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import IO, Any

LOGS_DIR = "logs"


def log_path(registry: Path, reference: str) -> Path:
    """Where the log of run `reference` lives, for the registry file `registry`."""
    return Path(registry).parent / LOGS_DIR / f"{reference}.jsonl"


class RunLog:
    """The log of one run being written (the file is made at its first line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.failed: str | None = None  # why it could not be written (said once)

    def add(self, entry: dict[str, Any]) -> None:
        if self.failed is not None:
            return
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            # One write per line, flushed: a reader (`curi runs show --log` during the run)
            # sees whole lines, and a killed run keeps all but the line being written.
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self.failed = f"the run's log {self.path} cannot be written: {exc}"

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def read_log(path: Path) -> list[dict[str, Any]]:
    """A run's log entries in the order its calls ended ([] if it has none); a line cut off
    by a killed run, or damaged, is left out."""
    try:
        with open(path, encoding="utf-8", errors="replace") as infile:
            lines = infile.readlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("stage"), str):
            entries.append(entry)
    return entries
