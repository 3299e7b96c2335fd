"""`curi export ...`: recorded runs into other tools' stores (`curi export mlflow`), from the
run registry. The export itself is `run.mlflow_export`'s."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from curifactory_cli.cli.common import (
    JsonOpt,
    RegistryOpt,
    console,
    fail,
    open_registry,
    registry_file,
)
from curifactory_cli.cli.console import write_json, write_line
from curifactory_cli.errors import ConfigError, CurifactoryError

export_app = typer.Typer(
    help="Export recorded runs to other tools (MLflow), instead of a tracking server.",
    no_args_is_help=True,
)


@export_app.command("mlflow")
def export_mlflow(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN]...",
            help="Run references, `<experiment>_<n>` or unique prefixes (default: the newest run).",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            metavar="URI",
            help="The MLflow tracking URI: file:./mlruns, http://host:5000, ... (default: "
            "MLFLOW_TRACKING_URI).",
        ),
    ] = None,
    experiment_name: Annotated[
        str | None,
        typer.Option(
            "--experiment-name",
            metavar="NAME",
            help="The MLflow experiment to export into (default: the curi experiment's name).",
        ),
    ] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One parent MLflow run per curi run, one child per parameter set with its parameters
    (flattened), metrics and tags (curi run, set hash, git commit, cache entries). Runs already
    exported are found by their tags: exporting again changes nothing. Needs MLflow
    (pip install 'curifactory-cli[mlflow]')."""
    from curifactory_cli.run.mlflow_export import export_runs

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        if not uri:
            raise ConfigError(
                "no MLflow tracking URI given",
                hint="pass --tracking-uri URI (file:./mlruns for a folder) or set "
                "MLFLOW_TRACKING_URI.",
            )
        done = export_runs(
            open_registry(registry_file(registry)), list(runs or ()), uri, experiment_name
        )
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        write_json(console, {"tracking_uri": uri, "runs": [e.to_json() for e in done]})
        return
    for e in done:
        if e.added:
            what = f"{e.added} set{'s' if e.added != 1 else ''} added"
            if e.present:
                what += f", {e.present} already there"
        else:
            what = "already exported, nothing changed"
        write_line(
            console, f"{e.reference}: MLflow run {e.run_id} in experiment {e.experiment!r} ({what})"
        )
