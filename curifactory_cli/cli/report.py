"""`curi report [RUN]`: rebuild a run's HTML report from the registry and the cache, open it,
or serve the reports folder on 127.0.0.1."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from curifactory_cli.cli.common import (
    JsonOpt,
    RegistryOpt,
    console,
    err_console,
    fail,
    registry_file,
    shown_path,
)
from curifactory_cli.cli.console import write_json
from curifactory_cli.errors import ConfigError, CurifactoryError


def report_command(
    reference: Annotated[
        str | None,
        typer.Argument(
            help="A run reference, `<experiment>_<n>`, or a unique prefix (default: the newest "
            "run)."
        ),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the report in the default web browser.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Serve the reports folder on 127.0.0.1 until Ctrl-C (after rebuilding)."
        ),
    ] = False,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port for --serve (0: any free one).")
    ] = 8765,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a run's report (reports/<run>/index.html) and the index of all runs
    (reports/index.html) from the run registry and the reportables kept in the cache."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.run.reports import rebuild

    try:
        built = rebuild(project_root(), registry_file(registry), reference)
    except OSError as exc:
        raise fail(
            ConfigError(f"cannot write the report: {exc}", hint="check that reports/ is writable.")
        ) from None
    except CurifactoryError as exc:
        raise fail(exc) from None
    for warning in built.warnings:
        err_console.print(f"warning: {warning}", style="yellow", markup=False)
    page = built.page
    if as_json:
        data: dict[str, Any] = {
            "run": built.run,
            "report": str(page),
            "index": str(built.index),
            "warnings": built.warnings,
        }
        write_json(console, data)
    else:
        console.print(f"report: {shown_path(page)}", markup=False, soft_wrap=True)
    if open_ and not _open_in_browser(page):
        err_console.print(
            f"no web browser found here; open {page.resolve()} on a machine with one",
            markup=False,
        )
    if serve:
        _serve(built.folder, port, f"{built.run}/index.html")


def _open_in_browser(page: Path) -> bool:
    import webbrowser

    return webbrowser.open(page.resolve().as_uri())


def _serve(folder: Path, port: int, page: str) -> None:
    """The reports folder over HTTP on the loopback interface only."""
    import http.server

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per request would bury the address printed above

    handler = functools.partial(QuietHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise fail(
            ConfigError(
                f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}",
                hint="choose another port with --port N (0 picks a free one).",
            )
        ) from None
    address = f"http://127.0.0.1:{server.server_address[1]}/"
    console.print(
        f"serving {shown_path(folder)} at {address} (this run: {address}{page}); Ctrl-C stops",
        markup=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
