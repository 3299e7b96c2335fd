"""What every `curi` command shares: consoles, common options, and error display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curifactory_cli.console import SafeConsole
from curifactory_cli.errors import (
    CurifactoryError,
    ExperimentImportError,
    StageError,
    Terminated,
    exit_code_for,
)

if TYPE_CHECKING:
    from curifactory_cli.registry import RunRegistry

console = SafeConsole(highlight=False)
err_console = SafeConsole(stderr=True, highlight=False)

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
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
    """The project is the current directory, as for every other curi command."""
    from curifactory_cli.registry import registry_path

    return registry if registry is not None else registry_path(Path.cwd())


def open_registry(path: Path) -> RunRegistry:
    from curifactory_cli.registry import RunRegistry

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
    from curifactory_cli import console as ui

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
