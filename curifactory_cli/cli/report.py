"""`curi report [RUN]`: rebuild a run's HTML report from the registry and the cache, open it,
or serve the reports folder on 127.0.0.1."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from curifactory_cli.cli.common import (
    JsonOpt,
    RegistryOpt,
    console,
    err_console,
    fail,
    open_registry,
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
    from curifactory_cli import report
    from curifactory_cli.discovery import project_root
    from curifactory_cli.registry.log import log_path, read_log

    root = project_root()
    warnings: list[str] = []
    try:
        path = registry_file(registry)
        runs = open_registry(path)
        listed = runs.list_runs(limit=None, brief=True)
        if not listed:
            raise ConfigError(
                "no runs recorded yet, so there is no report to build",
                hint="`curi run EXPERIMENT PARAMS` writes one for every run.",
            )
        run = runs.get_run(reference or listed[0].reference)
        store = _url_store(root, run.cache_dir)
        with tempfile.TemporaryDirectory(prefix="curi-report-") as scratch:
            items = report.items_from_cache(run, warnings, store, Path(scratch))
            logs = read_log(log_path(path, run.reference))
            page = report.write_run_report(root, run, items, warnings, logs)
        index = report.update_index(root, listed)
    except OSError as exc:
        raise fail(
            ConfigError(f"cannot write the report: {exc}", hint="check that reports/ is writable.")
        ) from None
    except CurifactoryError as exc:
        raise fail(exc) from None
    for warning in warnings:
        err_console.print(f"warning: {warning}", style="yellow", markup=False)
    if as_json:
        data: dict[str, Any] = {
            "run": run.reference,
            "report": str(page),
            "index": str(index),
            "warnings": warnings,
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
        _serve(report.reports_dir(root), port, f"{run.reference}/index.html")


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


def _url_store(root: Path, cache: str) -> Any:
    """The run's store when its cache is at a URL (`--cache s3://...`), opened with the
    project's storage options; None for a local folder, read in place."""
    from curifactory_cli.run.settings import load_settings
    from curifactory_cli.store import is_url
    from curifactory_cli.store.remote import FsspecStore

    if not is_url(cache):
        return None
    options = load_settings(root).get("storage_options")
    return FsspecStore(cache, dry=True, storage_options=options)  # read only
