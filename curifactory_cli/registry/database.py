"""The run registry: one SQLite database per project (`data/runs.sqlite`) recording every run.

Each `curi run` adds a row when it starts (status 'running') and completes it when it ends,
with its stage outcomes in a child table; it reads them back as typed records (`records.py`).
Many `curi run` processes may share the file at once, so the database is in WAL mode, waits up
to 30 s for locks, and numbers runs inside a `BEGIN IMMEDIATE` transaction. Only the standard
library is used; rendering lives in `cli/runs.py` and `report/`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.registry import entry_use, metric_rows, stage_rows
from curifactory_cli.registry.liveness import with_liveness
from curifactory_cli.registry.records import (
    BRIEF_COLUMNS,
    GitInfo,
    HostInfo,
    ParamFileRecord,
    ParamSetRecord,
    RunRecord,
    StageRecord,
)
from curifactory_cli.registry.references import make_reference, numbered

REGISTRY_FILE = Path("data") / "runs.sqlite"
SCHEMA_VERSION = 5
# What turns a file of an older version into the current one (each step in one transaction).
# Version 2: the stage graph's edges and the experiment's docstring, for the HTML report.
# Version 3: the command that runs a run again, for runs not started by `curi` itself.
# Version 4: the metrics of each stage call, for `curi metrics`.
# Version 5: each stage's code fingerprints, part by part, and each call's output versions
# (checksums of their bytes), so `curi runs diff` answers when entries are gone.
_MIGRATIONS = {
    1: (
        "ALTER TABLE runs ADD COLUMN doc TEXT",
        "ALTER TABLE run_stages ADD COLUMN inputs TEXT",
        "ALTER TABLE run_stages ADD COLUMN aggregate INTEGER NOT NULL DEFAULT 0",
    ),
    2: ("ALTER TABLE runs ADD COLUMN reproduce TEXT",),
    3: ("ALTER TABLE run_stages ADD COLUMN metrics TEXT",),
    4: (
        "ALTER TABLE runs ADD COLUMN code TEXT",
        "ALTER TABLE run_stages ADD COLUMN outputs TEXT",
    ),
}
BUSY_TIMEOUT_S = 30.0
FINAL_STATUSES = ("complete", "error", "interrupted")
# 'died' is never written: a 'running' run whose process is gone from this host reads so
# (killed by SIGKILL, out of memory, the machine rebooted), see `liveness.py`.
STATUSES = ("running", "complete", "error", "interrupted", "died")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY,
    reference     TEXT    NOT NULL UNIQUE,
    experiment    TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    started       TEXT    NOT NULL,
    finished      TEXT,
    duration_s    REAL,
    command       TEXT    NOT NULL,
    param_files   TEXT    NOT NULL,
    param_sets    TEXT    NOT NULL,
    git           TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    versions      TEXT    NOT NULL,
    notes         TEXT,
    doc           TEXT,
    reproduce     TEXT,
    cache_dir     TEXT    NOT NULL,
    dry           INTEGER NOT NULL DEFAULT 0,
    counts        TEXT,
    error         TEXT,
    failed_stage  TEXT,
    failed_record TEXT,
    code          TEXT,
    UNIQUE (experiment, number)
);
CREATE TABLE IF NOT EXISTS run_stages (
    run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    stage    TEXT    NOT NULL,
    record   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    reason   TEXT,
    seconds  REAL,
    key      TEXT,
    entry    TEXT,
    inputs   TEXT,
    aggregate INTEGER NOT NULL DEFAULT 0,
    metrics  TEXT,
    outputs  TEXT,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
"""

# What a brief listing reads: everything but the parameter sets and files and the versions.
_BRIEF = ", ".join(("id", *BRIEF_COLUMNS))


@dataclass(frozen=True)
class StartedRun:
    """The identity of a run just started: give `reference` back to `finish_run`."""

    reference: str
    number: int
    experiment: str
    started: str  # ISO 8601, local time with offset


def registry_path(root: Path) -> Path:
    """Where a project's registry lives."""
    return root / REGISTRY_FILE


class RunRegistry:
    """Access to one registry file. Connections are short-lived (one per call) so a long
    `curi run` holds no lock and a forked worker never inherits an open connection."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self._initialise()

    # ------------------------------------------------------------------------- writing
    def start_run(
        self,
        *,
        experiment: str,
        command: Sequence[str],
        param_files: Sequence[ParamFileRecord],
        param_sets: Sequence[ParamSetRecord],
        git: GitInfo,
        host: HostInfo,
        versions: dict[str, str],
        notes: str | None,
        cache_dir: str,
        dry: bool,
        doc: str | None = None,
        reproduce: str | None = None,
    ) -> StartedRun:
        """Record a run as 'running' and give it the next number of its experiment.
        `reproduce`: the command that runs it again, when `command` is not a `curi` command
        line (a script's run; without it, the reproduce command comes from `command`)."""
        self._require_writable()
        now = dt.datetime.now().astimezone()
        started = now.isoformat(timespec="seconds")
        with self._transaction() as conn:
            # IMMEDIATE took the write lock, so no other process can take the same number.
            (number,) = conn.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE experiment = ?",
                (experiment,),
            ).fetchone()
            reference = make_reference(experiment, number, now)
            conn.execute(
                "INSERT INTO runs (reference, experiment, number, status, started, command,"
                " param_files, param_sets, git, host, versions, notes, cache_dir, dry, doc,"
                " reproduce) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reference,
                    experiment,
                    number,
                    started,
                    _dumps(list(command)),
                    _dumps([f.to_json() for f in param_files]),
                    _dumps([p.to_json() for p in param_sets]),
                    _dumps(git.to_json()),
                    _dumps(host.to_json()),
                    _dumps(versions),
                    notes,
                    cache_dir,
                    int(dry),
                    doc,
                    reproduce,
                ),
            )
        return StartedRun(reference, number, experiment, started)

    def finish_run(
        self,
        reference: str,
        *,
        status: str,
        duration_s: float,
        counts: dict[str, int],
        error: str | None,
        failed_stage: str | None,
        failed_record: str | None,
        stages: Sequence[StageRecord],
        param_sets: Sequence[ParamSetRecord] | None = None,
        versions: dict[str, str] | None = None,
        code: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Store how a run ended and what each stage call did (replacing any earlier finish);
        `param_sets` replaces the sets recorded at the start (an interactive session learns
        them as it goes), `versions` the library versions (stages import pandas, numpy...
        as they run), `code` each stage's code fingerprints by part."""
        self._require_writable()
        if status not in FINAL_STATUSES:
            raise ConfigError(
                f"run status {status!r} is not a final status",
                hint="use one of: " + ", ".join(FINAL_STATUSES),
            )
        finished = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE reference = ?", (reference,)).fetchone()
            if row is None:
                raise ConfigError(
                    f"no run {reference!r} in the run registry {self.path}",
                    hint="finish_run takes the reference returned by start_run.",
                )
            run_id = row[0]
            conn.execute(
                "UPDATE runs SET status = ?, finished = ?, duration_s = ?, counts = ?, error = ?,"
                " failed_stage = ?, failed_record = ? WHERE id = ?",
                (
                    status,
                    finished,
                    float(duration_s),
                    _dumps(counts),
                    error,
                    failed_stage,
                    failed_record,
                    run_id,
                ),
            )
            if param_sets is not None:
                conn.execute(
                    "UPDATE runs SET param_sets = ? WHERE id = ?",
                    (_dumps([p.to_json() for p in param_sets]), run_id),
                )
            if versions is not None:
                conn.execute(
                    "UPDATE runs SET versions = ? WHERE id = ?", (_dumps(versions), run_id)
                )
            if code is not None:
                conn.execute("UPDATE runs SET code = ? WHERE id = ?", (_dumps(code), run_id))
            conn.execute("DELETE FROM run_stages WHERE run_id = ?", (run_id,))
            conn.executemany(
                stage_rows.INSERT,
                [stage_rows.row(run_id, position, s) for position, s in enumerate(stages)],
            )

    # ------------------------------------------------------------------------- reading
    def list_runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 50,
        brief: bool = False,
    ) -> list[RunRecord]:
        """Runs newest first (without their stages), optionally filtered; `limit=None`: all.
        `brief` leaves out the parameter sets, host and versions (what a listing of many
        runs does not show, and the bulk of a big sweep's row)."""
        if status is not None and status not in STATUSES:
            raise ConfigError(
                f"unknown run status {status!r}", hint="use one of: " + ", ".join(STATUSES)
            )
        where: list[str] = []
        args: list[Any] = []
        wanted = status
        if status in ("running", "died"):  # both are stored as 'running'
            status, limit, limit_after = "running", None, limit
        else:
            limit_after = None
        if experiment is not None:
            # Accept both spellings of a subfolder experiment: a/b and a.b.
            where.append("experiment IN (?, ?)")
            args += [experiment, experiment.replace("/", ".")]
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"  # ids grow in start order; clock changes cannot reorder
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._reader() as conn:
            if conn is None:
                return []
            # An older file (read-only, not upgraded) lacks some of the brief columns.
            brief = brief and self._schema_version(conn) >= SCHEMA_VERSION
            sql = sql.format(columns=_BRIEF if brief else "*")
            runs = [with_liveness(_run_record(row)) for row in conn.execute(sql, args)]
        if wanted in ("running", "died"):
            runs = [r for r in runs if r.status == wanted][:limit_after]
        return runs

    def get_run(self, reference: str, stages: bool = True) -> RunRecord:
        """One run with its stages, by exact reference, `<experiment>_<n>`, or unique prefix
        (`stages=False`: without them, for a caller that has them already)."""
        with self._reader() as conn:
            if conn is None:
                raise ConfigError(
                    f"no runs recorded yet (no run registry at {self.path})",
                    hint="`curi run` records every run there; pass --registry PATH for another "
                    "file.",
                )
            row = _find_run(conn, reference, self.path)
            calls = None
            if stages:
                columns = stage_rows.columns(self._schema_version(conn))
                calls = [
                    stage_rows.record(s)
                    for s in conn.execute(
                        f"SELECT {columns} FROM run_stages WHERE run_id = ? ORDER BY position",
                        (row["id"],),
                    )
                ]
            return with_liveness(_run_record(row, calls))

    def stage_seconds(self, experiment: str, runs: int = 10) -> dict[str, float]:
        """The mean time of a stage call that executed, per stage, over the experiment's last
        `runs` runs (what a run's time left is estimated from); read by run, through the
        stage table's key, so a large registry costs no more."""
        with self._reader() as conn:
            if conn is None:
                return {}
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM runs WHERE experiment = ? ORDER BY id DESC LIMIT ?",
                    (experiment, int(runs)),
                )
            ]
            if not ids:
                return {}
            rows = conn.execute(
                "SELECT stage, AVG(seconds) FROM run_stages WHERE run_id IN"
                f" ({','.join('?' * len(ids))}) AND outcome = 'executed'"
                " AND seconds IS NOT NULL GROUP BY stage",
                ids,
            )
            return {stage: float(seconds) for stage, seconds in rows}

    def entries_used(self, experiment: str, runs: int = 20) -> dict[tuple[str, str], list[str]]:
        """See `entry_use.entries_used` (nothing recorded yet: {})."""
        with self._reader() as conn:
            return {} if conn is None else entry_use.entries_used(conn, experiment, runs)

    def run_metrics(self, references: Sequence[str]) -> list[metric_rows.RunMetrics]:
        """The parameter values and stage-call metrics of the given runs, in the order given
        (none recorded in a file older than the metrics). Only the registry is read: no
        cache entry is opened."""
        with self._reader() as conn:
            if conn is None or not references:
                return []
            return metric_rows.read_run_metrics(conn, references, self._schema_version(conn) >= 4)

    def call_metrics(
        self, references: Sequence[str]
    ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """The metrics of the given runs' stage calls, by run (see `read_call_metrics`)."""
        with self._reader() as conn:
            if conn is None or not references or self._schema_version(conn) < 4:
                return {}
            return metric_rows.read_call_metrics(conn, references)

    # ------------------------------------------------------------------------- plumbing
    def _require_writable(self) -> None:
        if self.read_only:
            raise ConfigError(f"the run registry {self.path} was opened read-only")

    def _initialise(self) -> None:
        """Create the file if needed, with its schema."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the folder of the run registry {self.path} ({exc})",
                hint="check the permissions of the project's data/ folder.",
            ) from exc
        with self._connection() as conn:
            self._ensure_schema(conn)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (a persistent setting) and create the tables, once; bring
        a file of an older version up to date."""
        if self._schema_version(conn) >= SCHEMA_VERSION:
            return
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            # Read again under the lock: another process may have done it while we waited.
            version = self._schema_version(conn)
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _open(self) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit) with our pragmas."""
        if self.read_only:
            # mode=ro never creates the database file.
            target, uri = f"{self.path.resolve().as_uri()}?mode=ro", True
        else:
            target, uri = str(self.path), False
        conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not self.read_only:
                # NORMAL is durable enough in WAL mode and avoids an fsync per commit.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection closed afterwards, with sqlite errors turned into CacheError."""
        with self._guarded():
            conn = self._open()
            try:
                yield conn
            finally:
                conn.close()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        """A connection for reading, or None when nothing was recorded yet (read-only mode
        with no file, or a file a writer has not initialised yet)."""
        if self.read_only and not self.path.exists():
            yield None
            return
        with self._connection() as conn:
            # An older file reads as it is (read-only must not change it); writers migrate it.
            yield conn if self._schema_version(conn) >= 1 else None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the lock from its first statement."""
        with self._connection() as conn:
            # The file may have been moved aside since this registry was opened.
            self._ensure_schema(conn)
            _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        """The file's schema version; refuses files written by a newer curifactory_cli."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise CacheError(
                f"the run registry {self.path} has schema version {version}, newer than this "
                f"curifactory_cli understands ({SCHEMA_VERSION})",
                hint="upgrade curifactory_cli, or move the file aside to start a new one.",
            )
        return version

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _registry_error(self.path, exc) from exc


_T = TypeVar("_T")


def _retry_locked(action: Callable[[], _T], deadline_s: float = BUSY_TIMEOUT_S) -> _T:
    """Run `action`, retrying while the database is locked. SQLite skips the busy handler in
    some cases (switching to WAL, lock upgrades), so a short backoff loop covers those."""
    deadline = time.monotonic() + deadline_s
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _registry_error(path: Path, exc: sqlite3.Error) -> CacheError:
    """Explain a sqlite failure in terms of the registry file; never repair it by deleting."""
    if _is_locked(exc):
        return CacheError(
            f"the run registry {path} stayed locked for {BUSY_TIMEOUT_S:.0f} s ({exc})",
            hint="another curi process is writing to it; try again.",
        )
    if "unable to open" in str(exc).lower():
        return CacheError(
            f"cannot open the run registry {path} ({exc})",
            hint="check that the file and its folder exist and are readable and writable.",
        )
    return CacheError(
        f"the run registry {path} is unreadable or corrupt ({exc})",
        hint=f"move it aside (e.g. `mv {path} {path}.broken`); the next run starts a new one.",
    )


def _find_run(conn: sqlite3.Connection, reference: str, path: Path) -> sqlite3.Row:
    """Resolve a reference: exact, then `<experiment>_<n>` (so `exp_1` is not `exp_10`),
    then a unique prefix."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM runs WHERE reference = ?", (reference,)
    ).fetchone()
    if row is not None:
        return row
    # substr() rather than LIKE: references contain '_', a LIKE wildcard.
    matches: list[sqlite3.Row] = conn.execute(
        "SELECT * FROM runs WHERE substr(reference, 1, ?) = ? ORDER BY id DESC",
        (len(reference), reference),
    ).fetchall()
    named = [m for m in matches if numbered(m["experiment"], m["number"]) == reference]
    if len(named) == 1:
        return named[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"no run {reference!r} in the run registry {path}",
            hint="see `curi runs ls` for the references of recorded runs.",
        )
    shown = ", ".join(m["reference"] for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise ConfigError(
        f"run reference {reference!r} is ambiguous: it matches {len(matches)} runs ({shown})",
        hint="give more of the reference; see `curi runs ls`.",
    )


def _run_record(row: sqlite3.Row, stages: list[StageRecord] | None = None) -> RunRecord:
    return RunRecord.from_columns(dict(row), stages=stages)


def _dumps(value: Any) -> str:
    # default=str: provenance may hold Paths or other simple objects; never fail a run over it.
    return _ENCODER.encode(value)


_ENCODER = json.JSONEncoder(default=str, sort_keys=True)  # one for all: a row is one call
