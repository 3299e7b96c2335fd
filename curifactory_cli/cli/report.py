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
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="PARAMS",
            help="Above the run's metrics, their mean ± std (n) per value of these parameters "
            "(comma-separated), as `curi metrics --group-by`.",
        ),
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            metavar="A B",
            help="Write a page comparing run A with run B instead (reports/compare/): what "
            "`curi runs diff A B` shows, and a chart per metric across their sets.",
        ),
    ] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a run's report (reports/<run>/index.html) and the index of all runs
    (reports/index.html) from the run registry and the reportables kept in the cache; or,
    with --compare A B, write the page comparing two runs."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.run.reports import rebuild, write_comparison

    if compare is not None and (reference is not None or group_by is not None):
        given = "RUN" if reference is not None else "--group-by"
        raise fail(
            ConfigError(
                f"--compare A B names the runs of the comparison page: {given} does not apply",
                hint="`curi report --compare A B` alone, or `curi report RUN --group-by PARAMS`.",
            )
        )
    groups = None
    if group_by is not None:
        groups = [name.strip() for name in group_by.split(",") if name.strip()]
    try:
        if compare is not None:
            compared = write_comparison(project_root(), registry_file(registry), *compare)
            page, folder = compared.page, compared.folder
            data: dict[str, Any] = {"a": compared.a, "b": compared.b, "compare": str(page)}
            warnings: list[str] = []
        else:
            built = rebuild(project_root(), registry_file(registry), reference, groups)
            page, folder, warnings = built.page, built.folder, built.warnings
            data = {"run": built.run, "report": str(page), "index": str(built.index)}
    except OSError as exc:
        raise fail(
            ConfigError(f"cannot write the report: {exc}", hint="check that reports/ is writable.")
        ) from None
    except CurifactoryError as exc:
        raise fail(exc) from None
    for warning in warnings:
        err_console.print(f"warning: {warning}", style="yellow", markup=False)
    if as_json:
        write_json(console, {**data, "warnings": warnings})
    else:
        what = "report" if compare is None else "compare"
        console.print(f"{what}: {shown_path(page)}", markup=False, soft_wrap=True)
    if open_ and not _open_in_browser(page):
        err_console.print(
            f"no web browser found here; open {page.resolve()} on a machine with one",
            markup=False,
        )
    if serve:
        _serve(folder, port, page.relative_to(folder).as_posix())


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
        f"serving {shown_path(folder)} at {address} (this page: {address}{page}); Ctrl-C stops",
        markup=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
