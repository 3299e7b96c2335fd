"""The `curi` command: a thin typer layer over the Python API.

Heavy modules (the runner, pandas, user code) are imported inside commands so that
`curi --help` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curifactory_cli.cli.common import (
    CacheOpt,
    JsonOpt,
    NoProgressOpt,
    NoRemoteOpt,
    NoReportOpt,
    QuietOpt,
    RemoteOpt,
    StrictOpt,
    console,
    err_console,
    execute_run,
    fail,
)
from curifactory_cli.cli.console import write_json, write_text
from curifactory_cli.errors import ConfigError, CurifactoryError

if TYPE_CHECKING:
    from collections.abc import Callable

    from curifactory_cli.engine.hpc import ClusterPlan
    from curifactory_cli.run.runner import RunOptions

# The commands defined here (run, plan, ls, config). The others live in their own modules,
# added by `full_app()` when the command line names them or asks for the list: a `curi run`
# does not import them. `app` (this module's attribute) is the whole command line.
_app = typer.Typer(
    name="curi",
    help="Run Curifactory-style experiments with a code- and lineage-aware cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from curifactory_cli._version import __version__

        console.print(f"curi {__version__}")
        raise typer.Exit()


@_app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Run Curifactory-style experiments with a code- and lineage-aware cache."""


def full_app() -> typer.Typer:
    """The `curi` application with every command (added once)."""
    if not _app.registered_groups:
        from curifactory_cli.cli.cache import cache_app
        from curifactory_cli.cli.export import export_app
        from curifactory_cli.cli.metrics import metrics_command
        from curifactory_cli.cli.report import report_command
        from curifactory_cli.cli.runs import runs_app
        from curifactory_cli.cli.runs_diff import runs_diff_command

        runs_app.command("diff")(runs_diff_command)
        _app.add_typer(cache_app, name="cache")
        _app.add_typer(runs_app, name="runs")
        _app.add_typer(export_app, name="export")
        _app.command("report")(report_command)
        _app.command("metrics")(metrics_command)
        # first in --help, after run: report, then metrics
        _app.registered_commands[:0] = [_app.registered_commands.pop() for _ in range(2)][::-1]
        # after plan: the same selection, one stage's calls part by part
        from curifactory_cli.cli.why import why_command

        plan = next(i for i, c in enumerate(_app.registered_commands) if _command_name(c) == "plan")
        _app.command("why")(why_command)
        _app.registered_commands.insert(plan + 1, _app.registered_commands.pop())
    return _app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


@dataclass(repr=False, eq=False)  # only read; each generated method costs every start
class _Given:
    """What `run` and `plan` were given, by parameter name: made from the parsed parameters,
    so a parameter these fields do not name (or a misspelt field) fails at once instead of
    reading as None."""

    experiment: str
    params: list[str] | None = None
    names: list[str] | None = None
    indices: list[str] | None = None
    sets: list[str] | None = None
    overwrite: bool = False
    overwrite_stage: list[str] | None = None
    dry: bool = False
    cache: str | None = None
    remote: str | None = None
    no_remote: bool = False
    lazy: bool = False
    ignore_lazy: bool = False
    plan: bool = False
    notes: str | None = None
    store_full: bool = False
    no_report: bool = False
    keep_going: bool = False
    lock_timeout: float | None = None
    strict: bool = False
    dry_cache: bool = False
    workers: str | None = None
    executor: str | None = None
    scheduler: str | None = None
    cluster_opt: list[str] | None = None
    no_progress: bool = False
    quiet: bool = False
    as_json: bool = False


def _options(ctx: typer.Context) -> RunOptions:
    """RunOptions from the parsed command line (`run` and `plan` share the selection options).
    The project is the nearest folder at or above the current one that is a project; paths on
    the command line stay relative to the current folder."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.run.runner import RunOptions

    given = _Given(**ctx.params)
    return RunOptions(
        experiment=given.experiment,
        root=str(project_root()),
        params=tuple(given.params or ()),
        names=tuple(given.names or ()),
        indices=tuple(given.indices or ()),
        overrides=tuple(given.sets or ()),
        overwrite=given.overwrite,
        overwrite_stages=tuple(given.overwrite_stage or ()),
        dry=given.dry,
        cache_dir=str(given.cache) if given.cache else None,
        remote=_remote(given),
        lazy=given.lazy,
        ignore_lazy=given.ignore_lazy,
        notes=given.notes,
        store_full=given.store_full,
        report=not given.no_report,
        dry_cache=given.dry_cache,
        keep_going=given.keep_going,
        strict=given.strict,
        lock_timeout=given.lock_timeout,
        workers=given.workers,
        executor=given.executor,
        scheduler=given.scheduler,
        cluster_opts=tuple(given.cluster_opt or ()),
        command=_command_line(ctx),
    )


def _remote(given: _Given) -> str | None:
    """--remote URL, or "" for --no-remote (the settings then leave the remote out)."""
    if not given.no_remote:
        return given.remote
    if given.remote:
        raise fail(
            ConfigError("--remote and --no-remote contradict each other", hint="give one of them.")
        )
    return ""


def _command_line(ctx: typer.Context) -> tuple[str, ...]:
    """The command as typed, rebuilt from the parsed parameters (also right under test
    runners, where sys.argv belongs to someone else)."""
    words = ["curi", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
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


ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        metavar="local|dask|slurm|pbs|lsf|sge|MODULE:CLASS",
        help="Where stages run: 'local' (this process, or worker processes with -j), "
        "'dask' (a local Dask cluster, or the one at --scheduler; needs "
        "curifactory-cli[dask]), 'slurm', 'pbs', 'lsf' or 'sge' (Dask workers as batch jobs, "
        "set in [tool.curi.slurm] and so on; needs curifactory-cli[hpc]), or a JobRunner "
        "class of your own as module:Class.",
    ),
]
ClusterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cluster-opt",
        metavar="KEY=VALUE",
        help="A batch executor's setting over [tool.curi.slurm] (or pbs, lsf, sge): "
        "walltime=02:00:00, max_jobs=8, queue=gpu... Repeatable.",
        show_default=False,
    ),
]


@_app.command()
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
    no_remote: NoRemoteOpt = False,
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
    no_report: NoReportOpt = False,
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
    executor: ExecutorOpt = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Address of a running Dask scheduler (tcp://HOST:PORT); also "
            "DASK_SCHEDULER_ADDRESS. Implies --executor dask.",
        ),
    ] = None,
    cluster_opt: ClusterOpt = None,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run EXPERIMENT once per parameter set, reusing every valid cached stage."""
    options = _options(ctx)
    if plan:
        _show_plan(options, as_json)
        return
    # --dry with a batch executor: the job script it would submit, then the stages here.
    check = partial(_dry_batch_plan, options) if dry else None
    execute_run(options, as_json=as_json, quiet=quiet, no_progress=no_progress, check=check)


@_app.command("plan")
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
    no_remote: NoRemoteOpt = False,
    lazy: LazyOpt = False,
    ignore_lazy: IgnoreLazyOpt = False,
    strict: StrictOpt = False,
    executor: ExecutorOpt = None,
    cluster_opt: ClusterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what `curi run` would do for each stage of each parameter set, and why.

    Writes nothing and loads no artifact. Each stage is cached, will run (with the reason:
    not computed yet, code changed, parameters changed, input data changed, forced, entry
    unusable, ...), may run (only if an upstream re-run changes its outputs, or
    it reads values another set's call of the same computation did not), or is skipped
    because nothing that runs needs it. With a batch executor (`--executor slurm`), also
    the job script it would submit and how many jobs at most (nothing is submitted).
    """
    _show_plan(_options(ctx), as_json)


def _show_plan(options: RunOptions, as_json: bool) -> None:
    from curifactory_cli.cli import console as ui
    from curifactory_cli.engine.planner import headline
    from curifactory_cli.run.runner import batch_plan, plan_experiment

    try:
        batch = batch_plan(options)  # wrong cluster settings stop it before anything shows
        result = plan_experiment(options)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        document = result.to_json()
        _show_batch_plan(batch, None, document)
        write_json(console, document)
        return
    for message in result.warnings:  # --set keys that match nothing, as `run` warns of them
        ui.print_warning(err_console, message)
    ui.print_plan(console, headline(result.plans), result.plans)
    _show_batch_plan(batch, console, None)


def _dry_batch_plan(options: RunOptions) -> None:
    """`run --dry` with a batch executor: the job script it would submit (on stderr)."""
    from curifactory_cli.run.runner import batch_plan

    _show_batch_plan(batch_plan(options), err_console, None)


def _show_batch_plan(
    plans: list[ClusterPlan] | None, out: Any, document: dict[str, Any] | None
) -> None:
    """With a batch executor: the job script of each pool and how many jobs at most,
    printed to `out` or kept in the JSON `document`; nothing is submitted."""
    if plans is None:
        return
    if document is not None:
        document["batch"] = [
            {
                "executor": plan.kind,
                "pool": plan.pool or None,
                "max_jobs": plan.max_jobs,
                "workers_per_job": plan.workers_per_job,
                "job_script": plan.script,
            }
            for plan in plans
        ]
        return
    for plan in plans:
        per = f"{plan.workers_per_job} worker{'s' if plan.workers_per_job > 1 else ''}"
        pool = f", pool {plan.pool}" if plan.pool else ""
        write_text(
            out,
            f"\nJob script ({plan.kind}{pool}: at most {plan.max_jobs} jobs of {per}, started "
            f"as stages are ready; nothing submitted):\n{plan.script.rstrip()}\n",
        )


@_app.command("ls")
def list_project(as_json: JsonOpt = False) -> None:
    """List experiments and parameter files (without importing them)."""
    from curifactory_cli import discovery
    from curifactory_cli.cli import console as ui

    root = discovery.project_root()
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
        write_json(console, data)
        return
    # Plain lines (never wrapped, whatever the width): a long description stays on its line.
    ui.print_heading(console, "EXPERIMENTS")
    for e in experiments:
        ui.write_line(console, f"  {e.name}" + (f" - {e.description}" if e.description else ""))
    if not experiments:
        ui.write_line(console, "  (none in experiments/)")
    ui.print_heading(console, "PARAMS")
    for p in params:
        ui.write_line(console, f"  {p.name}" + (f" - {p.description}" if p.description else ""))
    if not params:
        ui.write_line(console, "  (none in params/)")


@_app.command("config")
def show_config(as_json: JsonOpt = False) -> None:
    """Show the project settings in force (cache, remote, workers, executor, scheduler,
    storage_options) and where each comes from: curi.toml or [tool.curi] in pyproject.toml,
    a CURI_* environment variable, or the default."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.errors import CurifactoryError
    from curifactory_cli.run.settings import KEYS, load_settings, resolve_cache

    root = project_root()
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
        write_json(console, {row["name"]: row for row in rows})
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        value = "-" if row["value"] is None else row["value"]
        if isinstance(value, dict):  # storage options: keys only, values may be secrets
            value = "{" + ", ".join(sorted(value)) + "}"
        console.print(
            f"{row['name']:<{width}}  {value}  ({row['source']})", markup=False, highlight=False
        )


def app_for(first: list[str]) -> typer.Typer:
    """The application built for a command line whose first word is `first`: only the
    command (or command group) it names, as typer builds every command's options from its
    signature when it starts (15 ms a `curi run` does not need). Anything else (no command,
    an option first, an unknown name: click then suggests the nearest) gets them all."""
    name = first[0] if first else None
    own = [c for c in _app.registered_commands if _command_name(c) == name]
    if own:  # run, plan, ls or config: the other modules are not even imported
        _app.registered_commands = own
        return _app
    app = full_app()
    commands = [c for c in app.registered_commands if _command_name(c) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if commands or groups:
        app.registered_commands = commands
        app.registered_groups = groups
    return app


def _command_name(command: typer.models.CommandInfo) -> str:
    return command.name or typer.main.get_command_name(getattr(command.callback, "__name__", ""))


def run_app(app: Callable[[], object]) -> None:
    """Run the command line; ends with SystemExit, as a click application does."""
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command's own handling (SIGTERM: 143)
        raise SystemExit(fail(exc).exit_code) from None


def main() -> None:
    """Console-script entry point.

    Once the command is done, the process leaves without tearing the interpreter down:
    freeing every object of a large run one by one took a quarter of a cached run's time.
    Output is flushed and exit handlers run first (the registry and the cache are closed by
    then: commands close what they open).
    """
    gc.freeze()  # what importing created lives to the end: the collector need not walk it
    try:
        run_app(app_for(sys.argv[1:2]))
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message")
            print(exc.code, file=sys.stderr)
            code = 1
    import threading

    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        # A thread someone started is still working (a stage's, a pool's): the interpreter's
        # own shutdown waits for it.
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`| head`) is not an error
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)
