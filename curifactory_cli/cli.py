"""The `curi` command: a thin typer layer over the Python API.

Heavy modules (the runner, pandas, user code) are imported inside commands so that
`curi --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from curifactory_cli.errors import (
    CurifactoryError,
    ExitCode,
    ExperimentImportError,
    StageError,
    exit_code_for,
)

app = typer.Typer(
    name="curi",
    help="Run Curifactory-style experiments with a code- and lineage-aware cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cache_app = typer.Typer(help="See and tidy the artifact cache (data/cache/).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

CacheOpt = Annotated[
    Path | None, typer.Option("--cache", "-c", help="Cache directory (default: data/cache).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(exc: BaseException) -> typer.Exit:
    """Show an error the way its kind deserves and return the exit to raise."""
    from curifactory_cli import report

    if isinstance(exc, (StageError, ExperimentImportError)):
        from curifactory_cli.executor import format_user_traceback

        report.print_traceback(err_console, format_user_traceback(exc.original))
    if isinstance(exc, CurifactoryError):
        report.print_error(err_console, exc.message, exc.hint)
    elif isinstance(exc, KeyboardInterrupt):
        report.print_error(err_console, "interrupted; finished stages stay cached")
    else:
        report.print_error(err_console, f"{type(exc).__name__}: {exc}")
    return typer.Exit(code=int(exit_code_for(exc)))


def _cache_root(cache: Path | None) -> Path:
    return cache if cache is not None else Path("data") / "cache"


@app.command()
def run(
    experiment: Annotated[str, typer.Argument(help="Experiment name: experiments/NAME.py.")],
    params: Annotated[
        list[str] | None,
        typer.Argument(help="Parameter files: paths, or names in params/ (YAML or Python)."),
    ] = None,
    names: Annotated[
        list[str] | None, typer.Option("--names", "-n", help="Only the sets with these names.")
    ] = None,
    indices: Annotated[
        list[str] | None,
        typer.Option(
            "--indices", help="Only these set positions in each file: 0,2 or 0-3 (3 excluded)."
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a parameter in every set: key=value (dotted keys nest)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute every stage.")] = False,
    overwrite_stage: Annotated[
        list[str] | None,
        typer.Option(
            "--overwrite-stage", help="Recompute this stage (and whatever its new outputs change)."
        ),
    ] = None,
    dry: Annotated[
        bool, typer.Option("--dry", help="Read the cache but write nothing at all.")
    ] = False,
    cache: CacheOpt = None,
    lazy: Annotated[bool, typer.Option("--lazy", help="Treat every output as Lazy.")] = False,
    ignore_lazy: Annotated[
        bool, typer.Option("--ignore-lazy", help="Keep Lazy outputs in memory.")
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Plain lines instead of a live display.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run EXPERIMENT once per parameter set, reusing every valid cached stage."""
    from curifactory_cli import report
    from curifactory_cli.runner import RunOptions, run_experiment

    options = RunOptions(
        experiment=experiment,
        params=tuple(params or ()),
        names=tuple(names or ()),
        indices=tuple(indices or ()),
        overrides=tuple(sets or ()),
        overwrite=overwrite,
        overwrite_stages=tuple(overwrite_stage or ()),
        dry=dry,
        cache_dir=str(cache) if cache else None,
        lazy=lazy,
        ignore_lazy=ignore_lazy,
        command=tuple(sys.argv),
    )
    out = err_console if as_json else console
    if quiet or as_json or no_progress or not console.is_terminal:
        reporter: report.PlainReporter = report.PlainReporter(
            out, err_console, quiet=quiet or as_json
        )
    else:
        reporter = report.LiveReporter(console, err_console)
    try:
        result = run_experiment(options, reporter=reporter)
    except (CurifactoryError, KeyboardInterrupt) as exc:
        if isinstance(reporter, report.LiveReporter):
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
        raise _fail(exc) from None
    if result.error is not None:
        _fail(result.error)
    if as_json:
        console.out(json.dumps(result.to_json(), indent=2))
    elif not quiet:
        report.print_summary(console, result)
    raise typer.Exit(code=int(ExitCode.OK if result.ok else exit_code_for(result.error)))


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


ExperimentFilter = Annotated[
    str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
]
StageFilter = Annotated[str | None, typer.Option("--stage", "-s", help="Only this stage.")]
ParamsFilter = Annotated[
    str | None,
    typer.Option("--params", "-p", help="Only this parameter set (name or hash prefix)."),
]


@cache_app.command("ls")
def cache_ls(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cached entries: experiment, parameter set, stage, outputs, size and age."""
    from curifactory_cli import cache_index, report

    root = _cache_root(cache)
    entries = cache_index.select(cache_index.iter_entries(root), experiment, stage, params)
    if as_json:
        data = {
            "cache_dir": str(root),
            "entries": [e.to_json(root) for e in entries],
            "total_size": sum(e.size for e in entries),
        }
        console.out(json.dumps(data, indent=2))
        return
    if not entries:
        console.print(
            f"no cached entries in {root}"
            + (" matching the filters" if (experiment or stage or params) else "")
        )
        return
    now = time.time()
    rows = []
    for e in entries:
        outputs = ", ".join(e.outputs) or "-"
        cachers = (
            ", ".join(
                sorted({str(o.get("cacher", "?")).rsplit(".", 1)[-1] for o in e.outputs.values()})
            )
            or "-"
        )
        rows.append(
            [
                e.short_id,
                e.experiment,
                e.params_name,
                e.stage,
                outputs,
                cachers,
                cache_index.human_size(e.size),
                cache_index.human_age(now - e.created),
            ]
        )
    total = cache_index.human_size(sum(e.size for e in entries))
    report.print_table(
        console,
        ["id", "experiment", "params", "stage", "outputs", "cacher", "size", "age"],
        rows,
        right=("size",),
        caption=f"{len(entries)} entries, {total}",
    )


@cache_app.command("clear")
def cache_clear(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached entries matching the filters (all entries if none is given)."""
    from curifactory_cli import cache_index

    root = _cache_root(cache)
    entries = cache_index.select(cache_index.iter_entries(root), experiment, stage, params)
    size = sum(e.size for e in entries)
    if as_json and (dry_run or not entries):
        console.out(
            json.dumps(
                {"removed": [], "would_remove": [e.to_json(root) for e in entries], "size": size},
                indent=2,
            )
        )
        return
    if not entries:
        console.print("nothing to remove")
        return
    if dry_run or not as_json:
        for e in entries:
            console.print(
                f"  {e.short_id}  {e.experiment} / {e.params_name} / {e.stage}", markup=False
            )
    summary = f"{len(entries)} entries, {cache_index.human_size(size)}"
    if dry_run:
        console.print(f"would remove {summary} (dry run)")
        return
    if not yes:
        if not sys.stdin.isatty():
            err_console.print(
                "error: refusing to delete without confirmation; pass --yes", style="red"
            )
            raise typer.Exit(code=int(ExitCode.USAGE))
        if not typer.confirm(f"Remove {summary}?", default=False):
            raise typer.Exit(code=int(ExitCode.OK))
    try:
        cache_index.remove_entries(root, entries)
    except CurifactoryError as exc:
        raise _fail(exc) from None
    if as_json:
        console.out(
            json.dumps(
                {
                    "removed": [e.to_json(root) | {"path": str(e.directory)} for e in entries],
                    "size": size,
                },
                indent=2,
                default=str,
            )
        )
    else:
        console.print(f"removed {summary}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("error: interrupted", style="red")
        sys.exit(int(ExitCode.INTERRUPTED))
