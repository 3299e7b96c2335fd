"""`curi runs ...`: read the run registry (data/runs.sqlite). Never creates or writes it."""

from __future__ import annotations

import datetime as dt
import os
import shlex
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curifactory_cli.cli.common import (
    ExperimentFilter,
    JsonOpt,
    NoProgressOpt,
    NoReportOpt,
    QuietOpt,
    RegistryOpt,
    console,
    execute_run,
    fail,
    open_registry,
    registry_file,
    shown_path,
)
from curifactory_cli.cli.console import (
    CONTROL_ESCAPES,
    LOG_WIDTH,
    print_rows,
    print_traceback,
    write_json,
    write_text,
)
from curifactory_cli.errors import ConfigError, CurifactoryError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.table import Table
    from rich.text import Text

    from curifactory_cli.registry.records import (
        GitInfo,
        HostInfo,
        ParamSetRecord,
        RunRecord,
        StageRecord,
    )

runs_app = typer.Typer(
    help="The run registry: every curi run, its status and provenance.", no_args_is_help=True
)

STATUS_STYLE = {
    "running": "yellow",
    "complete": "green",
    "error": "bold red",
    "interrupted": "magenta",
    "died": "bold red",  # recorded as running, but its process is gone from this host
}
OUTCOME_STYLE = {"executed": "green", "cached": "cyan", "skipped": "dim", "failed": "bold red"}


@runs_app.command("ls")
def runs_ls(
    experiment: ExperimentFilter = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs with this status: running, complete, error, interrupted, or died "
            "(recorded as running, but its process is gone from this host).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Show at most this many runs (newest first).")
    ] = 50,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="KEY=VALUE",
            help="Only runs with a parameter set that has this value (`model.C=0.1` for a "
            "nested parameter; the value is read as --set reads it). Repeated: one set must "
            "have them all.",
        ),
    ] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recorded runs, newest first."""
    from curifactory_cli.run import param_values as run_params

    path = registry_file(registry)
    try:
        conditions = run_params.parse_conditions(param or [])
        runs = open_registry(path).list_runs(
            experiment=experiment, status=status, limit=None if conditions else limit
        )
    except CurifactoryError as exc:
        raise fail(exc) from None
    unknown = [k for k, _ in conditions if not run_params.known_key(runs, k)]
    if conditions:
        runs = [r for r in runs if run_params.matching_sets(r, conditions)][:limit]
    if as_json:
        write_json(console, {"registry": str(path), "runs": [r.to_json() for r in runs]})
        return
    if not runs:
        filtered = experiment is not None or status is not None or bool(conditions)
        note = "".join(f" (no recorded parameter set has {k!r})" for k in unknown)
        console.print(
            f"no runs match the filters{note}" if filtered else f"no runs recorded yet in {path}",
            markup=False,
        )
        return
    if console.is_terminal:
        console.print(_runs_table(runs, console.width))
    else:  # a log or a pipe: every column, nothing cut
        print_rows(console, _runs_table(runs, LOG_WIDTH, caps={}))


@runs_app.command("show")
def runs_show(
    reference: Annotated[
        str | None,
        typer.Argument(
            help="A run reference, `<experiment>_<n>`, or a unique prefix (default: the newest "
            "run)."
        ),
    ] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
    log: Annotated[
        bool,
        typer.Option(
            "--log",
            help="Show what each stage call printed or logged, and the traceback of a failed one.",
        ),
    ] = False,
    stage: Annotated[
        str | None,
        typer.Option("--stage", metavar="NAME", help="With --log: only this stage's calls."),
    ] = None,
) -> None:
    """Show one run: status, error, parameter values, command, provenance and its stages;
    with --log, what its stage calls printed or logged (data/logs/<run>.jsonl)."""
    from curifactory_cli.registry.log import log_path, read_log

    path = registry_file(registry)
    try:
        runs = open_registry(path)
        if reference is None:
            newest = runs.list_runs(limit=1, brief=True)
            if not newest:
                raise ConfigError(
                    f"no runs recorded yet in {path}",
                    hint="`curi run EXPERIMENT PARAMS` records every run there.",
                )
            reference = newest[0].reference
        run = runs.get_run(reference)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if stage is not None and not log:
        raise fail(ConfigError("--stage filters the log", hint="add --log.")) from None
    file = log_path(path, run.reference)
    entries = read_log(file)
    if log:
        _show_log(run, entries, file, stage, as_json)
        return
    run, full_store = _with_full_store(run)
    if as_json:
        data = run.to_json()
        if full_store is not None:
            data["full_store"] = full_store
        write_json(console, data | {"log": str(file) if entries else None})
        return
    _print_run(run, full_store, entries, file)


def _show_log(
    run: RunRecord, entries: list[dict], file: Path, stage: str | None, as_json: bool
) -> None:
    """The run's log as plain text: a header line per stage call, then what it printed."""
    calls = run.stages or []
    if stage is not None:
        if not any(c.stage == stage for c in calls):
            known = ", ".join(sorted({c.stage for c in calls})) or "none"
            raise fail(
                ConfigError(
                    f"run {run.reference} has no stage {stage!r}", hint=f"its stages: {known}."
                )
            ) from None
        entries = [e for e in entries if e["stage"] == stage]
        calls = [c for c in calls if c.stage == stage]
    cached: dict[str, list[str]] = {}
    for call in calls:
        if call.outcome == "cached":
            cached.setdefault(call.stage, []).append(call.record)
    if as_json:
        write_json(
            console,
            {
                "run": run.reference,
                "log": str(file) if file.exists() else None,
                "entries": entries,
                "cached": cached,
            },
        )
        return
    lines = [line for entry in entries for line in _entry_lines(entry)]
    for name, records in cached.items():
        n = len(records)
        lines.append(f"== {name}: {n} call{'s' if n != 1 else ''} cached (no output in this run)")
    if not lines:
        lines.append("no stage call of this run printed or logged anything")
    write_text(console, "\n".join(_safe_lines(lines)) + "\n")


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    """One stage call of the log: a header line (outcome, time, worker), then what it printed
    and its traceback or error."""
    facts = [str(entry.get("outcome") or "")]
    if entry.get("seconds") is not None:
        facts.append(f"{float(entry['seconds']):.2f}s")
    if entry.get("worker"):
        facts.append(str(entry["worker"]))
    lines = [f"== {entry['stage']} [{entry['record']}]  {'  '.join(facts)}"]
    text = entry.get("log") or ""
    if text:
        lines.append(text.rstrip("\n"))
    if entry.get("traceback"):
        lines.append(entry["traceback"].rstrip("\n"))
    elif entry.get("error"):
        lines.append(f"error: {entry['error']}")
    return lines


def _safe_lines(lines: list[str]) -> list[str]:
    """A stage's output as it printed it, but never a control character a terminal obeys
    (colours and cursor moves of a progress bar are shown escaped)."""
    return [line.translate(CONTROL_ESCAPES) for line in lines]


def _with_full_store(run: RunRecord) -> tuple[RunRecord, str | None]:
    """A run kept with --store-full is reproduced from its store, not from today's files:
    the run with that command, and the store's folder (None: not stored)."""
    import dataclasses

    from curifactory_cli.discovery import project_root
    from curifactory_cli.run.full_store import RUNS_DIR, stored_reproduce_command

    folder = project_root() / RUNS_DIR / run.reference
    if not (folder / "run.json").is_file():
        return run, None
    reproduce = stored_reproduce_command(folder) or run.reproduce
    return dataclasses.replace(run, reproduce=reproduce), str(folder)


@runs_app.command("reproduce")
def runs_reproduce(
    reference: Annotated[
        str,
        typer.Argument(
            help="A run stored with --store-full: its reference, `<experiment>_<n>`, a unique "
            "prefix, or the store's folder (data/runs/<reference>)."
        ),
    ],
    workers: Annotated[
        str | None,
        typer.Option("--workers", "-j", metavar="N", help="Stage calls to run at once."),
    ] = None,
    no_report: NoReportOpt = False,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a stored run again exactly as it ran: its experiment source and parameter values
    as stored by --store-full, against its stored artifacts, read-only. Nothing executes when
    they hold everything (only uncached leaf stages run). Recorded as a run of its own."""
    from curifactory_cli import discovery
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.run import full_store as runstore
    from curifactory_cli.run.runner import RunOptions
    from curifactory_cli.run.selection import load_param_sets

    root = discovery.project_root()
    path = registry_path(root)
    try:
        registry = RunRegistry(path, read_only=True) if path.is_file() else None
        stored = runstore.open_stored_run(root, reference, registry)
    except CurifactoryError as exc:
        raise fail(exc) from None
    options = RunOptions(
        experiment=stored.experiment,
        params=(str(stored.params),),
        root=str(root),
        cache_dir=str(stored.artifacts),
        dry_cache=True,  # the stored entries stay as they were
        workers=workers,
        report=not no_report,
        notes=f"reproduces {stored.reference}",
        command=("curi", "runs", "reproduce", stored.reference),
    )

    def check() -> None:
        """Before anything runs: the stored values read back as the sets the run used."""
        module = discovery.import_experiment(root, stored.experiment)
        stored.check_param_sets(load_param_sets(root, module, options))

    with discovery.experiment_source(stored.experiment, stored.source):
        execute_run(options, as_json=as_json, quiet=quiet, no_progress=no_progress, check=check)


# ------------------------------------------------------------------------------ helpers
def _runs_table(runs: list[RunRecord], width: int, caps: dict[str, int] | None = None) -> Table:
    """One line per run. The reference, status, duration and counts always show; started,
    notes and command are added while they fit in `width` (they are all in `runs show`),
    because rich would otherwise squeeze every column into unreadable ellipses. `caps`: the
    widest notes and command may be (default _MAX_WIDTH)."""
    from rich.text import Text

    caps = _MAX_WIDTH if caps is None else caps
    columns: dict[str, list[Text]] = {
        "reference": [Text(r.reference) for r in runs],
        "status": [_status_text(r.status) for r in runs],
        "duration": [Text(_duration(r.duration_s)) for r in runs],
    }
    for key, header in (("executed", "exec"), ("cached", "cached"), ("skipped", "skip")):
        columns[header] = [Text(_count(r.counts, key)) for r in runs]
    used = sum(_width(h, cells) for h, cells in columns.items()) + _GAP * (len(columns) - 1)
    optional = {
        "started": [Text(_when(r.started)) for r in runs],
        "notes": [Text(_first_line(r.notes)) for r in runs],
        "command": [Text(_short_command(r.command)) for r in runs],
    }
    widths: dict[str, int] = {}
    for header, cells in optional.items():
        if header == "notes" and not any(c.plain for c in cells):
            continue  # no run has notes: no empty column
        wanted = min(_width(header, cells), caps.get(header, width))
        room = width - used - _GAP
        # A cut timestamp is useless; notes and a command still say something when cut.
        if room < (wanted if header == "started" else min(wanted, _MIN_WIDTH)):
            continue
        widths[header] = min(wanted, room)
        used += widths[header] + _GAP
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, _GAP, 0, 0))
    order = ["reference", "status", "started", "duration", "exec", "cached", "skip"]
    shown = [h for h in [*order, "notes", "command"] if h in columns or h in widths]
    for header in shown:
        table.add_column(
            header,
            justify="right" if header in _RIGHT else "left",
            no_wrap=True,
            overflow="ellipsis",
            width=widths.get(header),
        )
    every: dict[str, list[Text]] = {**columns, **optional}
    for i in range(len(runs)):
        table.add_row(*(every[h][i] for h in shown))
    return table


_GAP = 2  # spaces between columns
_RIGHT = ("duration", "exec", "cached", "skip")
_MAX_WIDTH = {"notes": 30, "command": 60}
_MIN_WIDTH = 12  # narrower than this, an optional column is left out rather than cut


def _width(header: str, cells: list[Text]) -> int:
    return max([len(header), *(c.cell_len for c in cells)])


def _count(counts: dict[str, int] | None, key: str) -> str:
    return str(counts.get(key, 0)) if counts else "-"


def _print_run(
    run: RunRecord,
    full_store: str | None = None,
    entries: list[dict] | None = None,
    file: Path | None = None,
) -> None:
    """Key/value lines, then the stage calls as a table."""
    from rich.text import Text

    fields: list[tuple[str, Any]] = [
        ("reference", Text(run.reference, style="bold")),
        ("status", _status_text(run.status)),
        ("experiment", run.experiment),
        ("started", _when(run.started)),
        ("finished", _when(run.finished)),
        ("duration", _duration(run.duration_s)),
        ("counts", _counts_text(run.counts)),
    ]
    if run.error:
        fields.append(("error", Text(run.error, style="red")))
    if run.failed_stage:
        fields.append(("failed at", f"{run.failed_stage} [{run.failed_record or '?'}]"))
    entries = entries or []
    if entries and file is not None:
        n = len(entries)
        calls = f"{n} stage call{'s' if n != 1 else ''}"
        fields.append(("log", f"{shown_path(file)} ({calls}; show it with --log)"))
    if run.notes:
        fields.append(("notes", run.notes))
    fields += [
        ("command", shlex.join(run.command) or "-"),
        ("reproduce", run.reproduce or "-"),
        *([("stored in", full_store)] if full_store else []),
        ("git", _git_text(run.git)),
        ("host", _host_text(run.host)),
        ("versions", ", ".join(f"{k} {v}" for k, v in (run.versions or {}).items()) or "-"),
        ("cache", run.cache_dir or "-"),
    ]
    if run.dry:
        fields.append(("dry", "yes"))
    for label, value in fields:
        text = value if isinstance(value, Text) else Text(str(value))
        # Multi-line notes and errors stay in the value column.
        text = Text("\n" + " " * 12).join(text.split("\n"))
        console.print(Text(f"{label:>10}  ", style="dim") + text, soft_wrap=True)
    failed = [e for e in entries if e.get("traceback")]
    for entry in failed:
        console.print(Text(f"traceback of {entry['stage']} [{entry['record']}]", style="bold"))
        print_traceback(console, entry["traceback"])
    _print_params(run)
    _print_stages(run.stages or [])


def _print_params(run: RunRecord) -> None:
    """Each parameter set with its values, a table per parameter file: a column per parameter
    (nested ones as `model.C`), so the sets of a grid can be told apart at a glance."""
    from curifactory_cli.cli.console import print_heading, stream_table, write_line
    from curifactory_cli.run.param_values import flat_values

    by_file: dict[str, list[ParamSetRecord]] = {}
    for s in run.param_sets or []:
        by_file.setdefault(s.source or "", []).append(s)
    for source, group in by_file.items():
        flat = [flat_values(s.values) if s.values is not None else None for s in group]
        keys = list(dict.fromkeys(k for values in flat if values for k in values))
        print_heading(console, f"param sets ({source})" if source else "param sets")
        rows = [
            [s.name, s.hash[:10], *_value_cells(values, keys)] for s, values in zip(group, flat)
        ]
        if console.is_terminal and len(keys) > _WIDE_PARAMS:
            # Too many columns for a screen: one line per set, its values as KEY=VALUE.
            for name, short, *cells in rows:
                pairs = "  ".join(f"{k}={c}" for k, c in zip(keys, cells) if c)
                write_line(console, f"  {name}  {short}  {pairs or '(values not recorded)'}")
            continue
        stream_table(console, ["set", "hash", *keys], rows)


_WIDE_PARAMS = 8  # more parameters than this do not fit a terminal as columns


def _value_cells(values: dict | None, keys: list[str]) -> list[str]:
    if values is None:  # recorded by a curi that did not keep values
        return ["(values not recorded)", *[""] * (len(keys) - 1)] if keys else []
    return [_json_scalar(values[k]) if k in values else "" for k in keys]


def _json_scalar(value: Any) -> str:
    """A value as the parameter file would spell it (JSON for lists: `[1, 2]`)."""
    import json

    return value if isinstance(value, str) else json.dumps(value, default=str)


def _print_stages(stages: list[StageRecord]) -> None:
    from rich.text import Text

    if not stages:
        console.print(Text("no stage calls recorded", style="dim"))
        return
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, title="stages", title_justify="left")
    for column in ("stage", "record", "outcome", "time", "entry", "reason"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for s in stages:
        outcome = s.outcome or "?"
        seconds = s.seconds
        table.add_row(
            Text(s.stage),
            Text(s.record),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            f"{seconds:.2f}s" if outcome == "executed" and seconds is not None else "",
            Text(s.entry or ""),
            Text(s.reason or "", style="dim"),
        )
    print_rows(console, table)


def _status_text(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STATUS_STYLE.get(status, ""))


def _when(iso: str | None) -> str:
    """ISO timestamp as local 'YYYY-MM-DD HH:MM:SS'."""
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _duration(seconds: float | None) -> str:
    from curifactory_cli.wording import duration

    return "-" if seconds is None else duration(seconds)


def _counts_text(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    from curifactory_cli.store.index import human_size

    shown = []
    for key, value in counts.items():
        if not value or key.endswith("_bytes"):
            continue
        size = counts.get(f"{key}_bytes")  # pulled / pushed: what came from the remote
        shown.append(f"{value} {key}" + (f" ({human_size(size)})" if size else ""))
    return ", ".join(shown) or "nothing ran"


def _git_text(git: GitInfo) -> str:
    if not git.commit:
        return "not a git repository"
    return f"{git.commit[:12]}" + (" (uncommitted changes)" if git.dirty else "")


def _host_text(host: HostInfo) -> str:
    parts = [text for text in (host.host, host.platform) if text]
    if host.pid:
        parts.append(f"pid {host.pid}")
    return ", ".join(parts) or "-"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _short_command(command: list[str]) -> str:
    """`curi run exp params.yaml`, `python nb.py`: the program's folder adds nothing in a
    listing."""
    if not command:
        return "-"
    return shlex.join([os.path.basename(command[0]) or command[0], *command[1:]])
