"""The `curi` command: a thin typer layer over the Python API.

Heavy modules (the runner, pandas, user code) are imported inside commands so that
`curi --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curifactory_cli.cli_cache import cache_app
from curifactory_cli.cli_common import (
    CacheOpt,
    JsonOpt,
    RemoteOpt,
    StrictOpt,
    console,
    err_console,
    fail,
    shown_path,
)
from curifactory_cli.cli_report import report_command
from curifactory_cli.cli_runs import runs_app
from curifactory_cli.errors import CurifactoryError, ExitCode, exit_code_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from curifactory_cli.runner import RunOptions

app = typer.Typer(
    name="curi",
    help="Run Curifactory-style experiments with a code- and lineage-aware cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from curifactory_cli import __version__

        console.print(f"curi {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Run Curifactory-style experiments with a code- and lineage-aware cache."""


app.add_typer(cache_app, name="cache")
app.add_typer(runs_app, name="runs")
app.command("report")(report_command)


ExperimentArg = Annotated[str, typer.Argument(help="Experiment name: experiments/NAME.py.")]
ParamsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Parameter files: paths, or names in params/ (YAML or Python)."),
]
NamesOpt = Annotated[
    list[str] | None, typer.Option("--names", "-n", help="Only the sets with these names.")
]
IndicesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--indices", help="Only these set positions in each file: 0,2 or 0-3 (3 excluded)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a parameter in every set: key=value (dotted keys nest)."),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Recompute every stage.")]
OverwriteStageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--overwrite-stage", help="Recompute this stage (and whatever its new outputs change)."
    ),
]
LazyOpt = Annotated[bool, typer.Option("--lazy", help="Treat every output as Lazy.")]
IgnoreLazyOpt = Annotated[bool, typer.Option("--ignore-lazy", help="Keep Lazy outputs in memory.")]


def _options(ctx: typer.Context) -> RunOptions:
    """RunOptions from the parsed command line (`run` and `plan` share the selection options)."""
    from curifactory_cli.runner import RunOptions

    given = ctx.params
    cache = given.get("cache")
    return RunOptions(
        experiment=given["experiment"],
        params=tuple(given.get("params") or ()),
        names=tuple(given.get("names") or ()),
        indices=tuple(given.get("indices") or ()),
        overrides=tuple(given.get("sets") or ()),
        overwrite=bool(given.get("overwrite")),
        overwrite_stages=tuple(given.get("overwrite_stage") or ()),
        dry=bool(given.get("dry")),
        cache_dir=str(cache) if cache else None,
        remote=given.get("remote"),
        lazy=bool(given.get("lazy")),
        ignore_lazy=bool(given.get("ignore_lazy")),
        notes=given.get("notes"),
        store_full=bool(given.get("store_full")),
        report=not given.get("no_report"),
        dry_cache=bool(given.get("dry_cache")),
        keep_going=bool(given.get("keep_going")),
        strict=bool(given.get("strict")),
        lock_timeout=given.get("lock_timeout"),
        workers=given.get("workers"),
        executor=given.get("executor"),
        scheduler=given.get("scheduler"),
        command=_command_line(ctx),
    )


def _command_line(ctx: typer.Context) -> tuple[str, ...]:
    """The command as typed, rebuilt from the parsed parameters (also right under test
    runners, where sys.argv belongs to someone else)."""
    words = ["curi", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value in (None, False, ()) or value == param.default:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words.extend(str(v) for v in values)
        elif value is True:
            words.append(param.opts[0])
        else:
            for v in values:
                words.extend([param.opts[0], str(v)])
    return tuple(words)


@app.command()
def run(
    ctx: typer.Context,
    experiment: ExperimentArg,
    params: ParamsArg = None,
    names: NamesOpt = None,
    indices: IndicesOpt = None,
    sets: SetOpt = None,
    overwrite: OverwriteOpt = False,
    overwrite_stage: OverwriteStageOpt = None,
    dry: Annotated[
        bool, typer.Option("--dry", help="Read the cache but write nothing at all.")
    ] = False,
    cache: CacheOpt = None,
    remote: RemoteOpt = None,
    lazy: LazyOpt = False,
    ignore_lazy: IgnoreLazyOpt = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="Only show what would run and why (as `curi plan`).")
    ] = False,
    notes: Annotated[
        str | None, typer.Option("--notes", help="Notes kept with the run in the registry.")
    ] = None,
    store_full: Annotated[
        bool,
        typer.Option(
            "--store-full",
            help="Copy every artifact the run used, its record, log and environment into "
            "data/runs/<reference>/.",
        ),
    ] = False,
    no_report: Annotated[
        bool,
        typer.Option(
            "--no-report",
            help="Do not write the HTML report (reports/<reference>/index.html) of this run.",
        ),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going", "-k", help="After a stage fails, still run what does not depend on it."
        ),
    ] = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            "--lock-timeout",
            metavar="SECONDS",
            min=0,
            help="Fail a stage whose cache entry another run has been computing for this long "
            "(default: wait; a wait over 10 s is said on stderr).",
        ),
    ] = None,
    strict: StrictOpt = False,
    dry_cache: Annotated[
        bool,
        typer.Option(
            "--dry-cache", help="Read the cache but never write to it (the run is still recorded)."
        ),
    ] = False,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            "-j",
            metavar="N",
            help="Stage calls to run at once, in worker processes: a number, or 'auto' for one "
            "per usable core. Default 1 (in this process), or [tool.curi] workers.",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            metavar="local|dask",
            help="Where stages run: 'local' (this process, or worker processes with -j) or "
            "'dask' (a local Dask cluster, or the one at --scheduler). Needs "
            "curifactory-cli[dask].",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Address of a running Dask scheduler (tcp://HOST:PORT); also "
            "DASK_SCHEDULER_ADDRESS. Implies --executor dask.",
        ),
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Plain lines instead of a live display.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run EXPERIMENT once per parameter set, reusing every valid cached stage."""
    from curifactory_cli import console as ui
    from curifactory_cli.engine.jobs import guard_streams
    from curifactory_cli.runner import run_experiment

    # `curi run ... | head`: a reader that goes away must not stop the computation; the run
    # finishes, is recorded and exits as its outcome says (other commands: click exits 1).
    guard_streams()
    options = _options(ctx)
    if plan:
        _show_plan(options, as_json)
        return
    out = err_console if as_json else console
    if quiet or as_json or no_progress or not console.is_terminal:
        reporter: ui.PlainReporter = ui.PlainReporter(out, err_console, quiet=quiet or as_json)
    else:
        reporter = ui.LiveReporter(console, err_console)
    try:
        with _stage_output_to_stderr() if as_json else contextlib.nullcontext():
            result = run_experiment(options, reporter=reporter)
    except (CurifactoryError, KeyboardInterrupt) as exc:
        if isinstance(reporter, ui.LiveReporter):
            reporter.close()
        if as_json:  # CI still gets a document on stdout
            error = {
                "message": getattr(exc, "message", "interrupted"),
                "hint": getattr(exc, "hint", None),
                "exit_code": int(exit_code_for(exc)),
            }
            console.out(
                json.dumps({"experiment": experiment, "ok": False, "error": error}, indent=2)
            )
        raise fail(exc) from None
    if result.error is not None:
        fail(result.error)
        for other in result.failures[1:]:  # --keep-going: the first is shown in full above
            err_console.print(f"also failed: {other.message}", markup=False, soft_wrap=True)
    if as_json:
        console.out(json.dumps(result.to_json(), indent=2))
    elif not quiet:
        ui.print_summary(console, result)
        if result.store_dir is not None:
            console.print(f"stored in {result.store_dir}", markup=False, soft_wrap=True)
        if result.report is not None:
            console.print(f"report: {shown_path(result.report)}", markup=False, soft_wrap=True)
    raise typer.Exit(code=int(ExitCode.OK if result.ok else exit_code_for(result.error)))


@contextlib.contextmanager
def _stage_output_to_stderr() -> Iterator[None]:
    """With --json, stdout carries the JSON document alone: while the run lasts, what the
    experiment's code prints goes to stderr, in this process (sys.stdout) and in what it
    starts (descriptor 1: worker processes, a Dask cluster, programs run by a stage)."""
    stdout = sys.stdout
    stdout.flush()
    saved = None
    if _descriptor(stdout) == 1 and _descriptor(sys.stderr) == 2:
        saved = os.dup(1)
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = stdout
        if saved is not None:
            sys.stderr.flush()
            with contextlib.suppress(OSError, ValueError):
                sys.__stdout__.flush()  # a library writing there bypassed sys.stdout
            os.dup2(saved, 1)
            os.close(saved)


def _descriptor(stream: object) -> int | None:
    """The stream's file descriptor; None for an in-memory stream (a test runner's)."""
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


@app.command("plan")
def plan_command(
    ctx: typer.Context,
    experiment: ExperimentArg,
    params: ParamsArg = None,
    names: NamesOpt = None,
    indices: IndicesOpt = None,
    sets: SetOpt = None,
    overwrite: OverwriteOpt = False,
    overwrite_stage: OverwriteStageOpt = None,
    cache: CacheOpt = None,
    remote: RemoteOpt = None,
    lazy: LazyOpt = False,
    ignore_lazy: IgnoreLazyOpt = False,
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show what `curi run` would do for each stage of each parameter set, and why.

    Writes nothing and loads no artifact. Each stage is cached, will run (with the reason:
    not computed yet, code changed, parameters changed, input data changed, forced, entry
    unusable, ...), may run (only if an upstream re-run changes its outputs), or is skipped
    because nothing that runs needs it.
    """
    _show_plan(_options(ctx), as_json)


def _show_plan(options: RunOptions, as_json: bool) -> None:
    from curifactory_cli import console as ui
    from curifactory_cli.engine.planner import headline
    from curifactory_cli.runner import plan_experiment

    try:
        result = plan_experiment(options)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        console.out(json.dumps(result.to_json(), indent=2))
        return
    ui.print_plan(console, headline(result.plans), result.plans)


@app.command("ls")
def list_project(as_json: JsonOpt = False) -> None:
    """List experiments and parameter files (without importing them)."""
    from curifactory_cli import discovery

    root = Path.cwd()
    experiments = discovery.list_experiments(root)
    params = discovery.list_param_files(root)
    if as_json:
        data = {
            "experiments": [
                {
                    "name": e.name,
                    "path": str(e.path.relative_to(root)),
                    "description": e.description,
                    "has_get_params": e.has_get_params,
                }
                for e in experiments
            ],
            "params": [
                {
                    "name": p.name,
                    "path": str(p.path.relative_to(root)),
                    "description": p.description,
                }
                for p in params
            ],
        }
        console.out(json.dumps(data, indent=2))
        return
    console.print("EXPERIMENTS", style="bold")
    for e in experiments:
        console.print(
            f"  {e.name}" + (f" - {e.description}" if e.description else ""), markup=False
        )
    if not experiments:
        console.print("  (none in experiments/)", style="dim")
    console.print("PARAMS", style="bold")
    for p in params:
        console.print(
            f"  {p.name}" + (f" - {p.description}" if p.description else ""), markup=False
        )
    if not params:
        console.print("  (none in params/)", style="dim")


@app.command("config")
def show_config(as_json: JsonOpt = False) -> None:
    """Show the project settings in force (cache, remote, workers, executor, scheduler,
    storage_options) and where each comes from: curi.toml or [tool.curi] in pyproject.toml,
    a CURI_* environment variable, or the default."""
    from curifactory_cli.config import KEYS, load_settings, resolve_cache
    from curifactory_cli.errors import CurifactoryError

    root = Path.cwd()
    try:
        settings = load_settings(root)
        cache = resolve_cache(root, settings)
    except CurifactoryError as exc:
        raise fail(exc) from None
    rows = []
    for name, (_, _, about) in KEYS.items():
        value = cache if name == "cache" else settings.get(name)
        rows.append({"name": name, "value": value, "source": settings.source(name), "about": about})
    if as_json:
        console.out(json.dumps({row["name"]: row for row in rows}, indent=2, default=str))
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        value = "-" if row["value"] is None else row["value"]
        if isinstance(value, dict):  # storage options: keys only, values may be secrets
            value = "{" + ", ".join(sorted(value)) + "}"
        console.print(
            f"{row['name']:<{width}}  {value}  ({row['source']})", markup=False, highlight=False
        )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command's own handling (SIGTERM: 143)
        raise SystemExit(fail(exc).exit_code) from None
