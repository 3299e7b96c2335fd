"""What every `curi` command shares: consoles, common options, and error display."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curifactory_cli.cli.console import Output, write_json
from curifactory_cli.errors import (
    CurifactoryError,
    ExitCode,
    ExperimentImportError,
    StageError,
    Terminated,
    exit_code_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.run.options import RunResult
    from curifactory_cli.run.runner import RunOptions

console = Output()
err_console = Output(stderr=True)

CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        "-c",
        help="Cache folder or fsspec URL such as s3://bucket/prefix (default: the project's "
        "`cache` setting, else data/cache).",
        show_default=False,
    ),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        help="A shared cache behind the local one (an fsspec URL such as s3://bucket/prefix; "
        "default: the project's `remote` setting).",
        show_default=False,
    ),
]
NoRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--no-remote",
        help="Leave the project's remote cache out of this run (as CURI_REMOTE= does): work "
        "from the local cache alone.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# The options of the commands that run an experiment (`curi run`, `curi runs reproduce`).
NoReportOpt = Annotated[
    bool,
    typer.Option(
        "--no-report",
        help="Do not write the HTML report (reports/<reference>/index.html) of this run.",
    ),
]
NoProgressOpt = Annotated[
    bool, typer.Option("--no-progress", help="Plain lines instead of a live display.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="A --set key that no parameter set has is an error, not a warning."
    ),
]
RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry file (default: data/runs.sqlite)."),
]


def shown_path(path: Path) -> str:
    """A path relative to the working folder when it is inside it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def registry_file(registry: Path | None) -> Path:
    """`--registry`, else the registry of the project the current folder is in (the nearest
    project folder at or above it, as for every other curi command)."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.registry.database import registry_path

    return registry if registry is not None else registry_path(project_root())


def open_registry(path: Path) -> RunRegistry:
    from curifactory_cli.registry.database import RunRegistry

    return RunRegistry(path, read_only=True)  # read-only: reading must not create the file


ExperimentFilter = Annotated[
    str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
]
StageFilter = Annotated[str | None, typer.Option("--stage", "-s", help="Only this stage.")]
ParamsFilter = Annotated[
    str | None,
    typer.Option("--params", "-p", help="Only this parameter set (name or hash prefix)."),
]


def fail(exc: BaseException) -> typer.Exit:
    """Show an error the way its kind deserves and return the exit to raise."""
    from curifactory_cli.cli import console as ui

    if isinstance(exc, (StageError, ExperimentImportError)):
        from curifactory_cli.engine.jobs import format_user_traceback

        text = getattr(exc, "traceback_text", None)
        if text is None:
            text = format_user_traceback(exc.original)
        if text:
            ui.print_traceback(err_console, text)
    if isinstance(exc, CurifactoryError):
        ui.print_error(err_console, exc.message, exc.hint)
    elif isinstance(exc, Terminated):
        ui.print_error(err_console, "terminated (SIGTERM); finished stages stay cached")
    elif isinstance(exc, KeyboardInterrupt):
        ui.print_error(err_console, "interrupted; finished stages stay cached")
    else:
        ui.print_error(err_console, f"{type(exc).__name__}: {exc}")
    return typer.Exit(code=int(exit_code_for(exc)))


def execute_run(
    options: RunOptions,
    *,
    as_json: bool = False,
    quiet: bool = False,
    no_progress: bool = False,
    check: Callable[[], None] | None = None,
) -> None:
    """Run, show the progress and the summary (or the --json document), and exit as the run
    ended: what `curi run` and `curi runs reproduce` share. `check` runs first, and a
    CurifactoryError it raises is reported like one from the run itself."""
    from curifactory_cli.cli import live
    from curifactory_cli.engine.worker import guard_streams
    from curifactory_cli.run.runner import run_experiment

    # `curi run ... | head`: a reader that goes away must not stop the computation; the run
    # finishes, is recorded and exits as its outcome says (other commands: click exits 1).
    guard_streams()
    out = err_console if as_json else console
    if quiet or as_json or no_progress or not console.is_terminal:
        events: live.PlainProgress = live.PlainProgress(out, err_console, quiet=quiet or as_json)
    else:
        events = live.LiveProgress(console, err_console)
    try:
        if check is not None:
            check()
        with _stage_output_to_stderr() if as_json else contextlib.nullcontext():
            result = run_experiment(options, events=events)
    except (CurifactoryError, KeyboardInterrupt) as exc:
        if isinstance(events, live.LiveProgress):
            events.close()
        if as_json:  # CI still gets a document on stdout
            _json_failure(options.experiment, exc)
        raise fail(exc) from None
    _show_result(result, events.warnings, as_json, quiet)
    code = ExitCode.OK if result.error is None else exit_code_for(result.error)
    raise typer.Exit(code=int(code))


def _json_failure(experiment: str, exc: BaseException) -> None:
    error = {
        "message": getattr(exc, "message", "interrupted"),
        "hint": getattr(exc, "hint", None),
        "exit_code": int(exit_code_for(exc)),
    }
    write_json(console, {"experiment": experiment, "ok": False, "error": error})


def _show_result(result: RunResult, shown: list[str], as_json: bool, quiet: bool) -> None:
    """What a finished run prints after its progress: the warnings not shown yet, its
    failures, then the summary (or the --json document)."""
    from curifactory_cli.cli import console as ui

    # Warnings found once the run was over (--store-full could not keep something): the live
    # output has shown the others already.
    for message in result.warnings[len(shown) :]:
        ui.print_warning(err_console, message)
    if result.error is not None:
        fail(result.error)
        for other in result.failures[1:]:  # --keep-going: the first is shown in full above
            err_console.print(f"also failed: {other.message}", markup=False, soft_wrap=True)
    if as_json:
        write_json(console, result.to_json())
    elif not quiet:
        ui.print_summary(console, result)
        if result.store_dir is not None:
            ui.write_line(console, f"stored in {result.store_dir}")
        if result.report is not None:
            ui.write_line(console, f"report: {shown_path(result.report)}")


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
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.__stdout__.flush()  # type: ignore[union-attr] # None only without a stdout
            os.dup2(saved, 1)
            os.close(saved)


def _descriptor(stream: object) -> int | None:
    """The stream's file descriptor; None for an in-memory stream (a test runner's)."""
    try:
        return int(getattr(stream, "fileno")())  # noqa: B009 - a stream may lack it
    except (AttributeError, OSError, ValueError):
        return None
