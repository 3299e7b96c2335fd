"""`curi metrics [EXPERIMENT]`: the metrics stages recorded, one row per parameter set, as a
table that fits the terminal (a vertical view when it would not), Markdown, CSV or JSON.
The table itself is assembled by `run.metrics_table` from the run registry; this module
renders it."""

from __future__ import annotations

import csv
import io
import os
from enum import Enum
from typing import Annotated

import typer

from curifactory_cli.cli.common import RegistryOpt, console, err_console, fail, registry_file
from curifactory_cli.cli.console import CONTROL_ESCAPES, write_json, write_text
from curifactory_cli.errors import CurifactoryError


class Format(str, Enum):
    plain = "plain"
    md = "md"
    csv = "csv"
    json = "json"


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option's names (None when not given)."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def metrics_command(
    experiment: Annotated[
        str | None,
        typer.Argument(help="Experiment name (default: the experiment of the newest run)."),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            metavar="REF",
            help="A run reference, `<experiment>_<n>` or a unique prefix (repeatable; default: "
            "the experiment's newest run).",
        ),
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all-runs", help="Every run of the experiment, oldest first.")
    ] = False,
    all_params: Annotated[
        bool,
        typer.Option(
            "--all-params",
            help="A column for every parameter (default: those that differ between the rows).",
        ),
    ] = False,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", metavar="A,B", help="Only these metrics, in this order."),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="COND",
            help="Only the rows where a metric or parameter compares so: 'lr<0.1', "
            "\"model=='rf'\", 'converged==true' (operators < <= > >= == !=; repeatable: all "
            "must hold).",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            metavar="NAME",
            help="Sort by a metric or parameter, ascending; a leading '-' sorts descending "
            "(--sort=-accuracy). Rows without it come last.",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="PARAMS",
            help="One row per value of these parameters (comma-separated): each metric as "
            "mean ± sample std (n) over the group's rows.",
        ),
    ] = None,
    over: Annotated[
        str | None,
        typer.Option(
            "--over",
            metavar="PARAMS",
            help="Average over these parameters (e.g. --over seed): groups by every other "
            "parameter that differs.",
        ),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", help="plain (fits the terminal), md, csv or json."),
    ] = Format.plain,
    long: Annotated[
        bool,
        typer.Option("--long", help="One line per set and metric: run, set, metric, value."),
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Metrics recorded by stages (record.metric), one row per parameter set, with the
    parameters that differ between the rows. Read from the run registry alone."""
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.run.metrics_table import MetricsQuery, metrics_table

    query = MetricsQuery(
        experiment=experiment,
        runs=list(run or ()),
        all_runs=all_runs,
        all_params=all_params,
        metrics=_names(metrics),
        filters=list(filters or ()),
        sort=sort,
        group_by=_names(group_by),
        over=_names(over),
    )
    try:
        table = metrics_table(RunRegistry(registry_file(registry), read_only=True), query)
    except CurifactoryError as exc:
        raise fail(exc) from None
    for note in table.notes:
        err_console.print(note, markup=False, soft_wrap=True)
    if long:
        headers, rows = table.long()
        if fmt is Format.json:
            write_json(console, {"runs": table.runs, "rows": [dict(zip(headers, r)) for r in rows]})
            return
    else:
        if fmt is Format.json:
            write_json(console, table.to_json())
            return
        precise = fmt is Format.csv
        headers, rows = table.headers(precise), table.cells(precise)
    right = [False] * (len(headers) - len(table.metrics)) + [True] * len(table.metrics)
    if long:
        right = [False] * len(headers)
    if fmt is Format.csv:
        write_text(console, _csv(headers, rows))
    elif fmt is Format.md:
        write_text(console, _markdown(headers, rows, right))
    elif rows:
        safe = [[c.translate(CONTROL_ESCAPES) for c in r] for r in rows]  # names are data
        write_text(console, plain(headers, safe, right, None if long else _width()))
    elif not table.notes:
        err_console.print("no rows match the filters", markup=False)


def _width() -> int | None:
    """The terminal's width; a pipe or a file has none (every column, one line per row),
    unless COLUMNS sets it."""
    if console.is_terminal:
        return int(console.width)
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def plain(headers: list[str], rows: list[list[str]], right: list[bool], width: int | None) -> str:
    """Aligned columns; when they would not fit in `width`, one block per row instead, each
    value on its own line under its row's first cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    if width is None or sum(widths) + 2 * (len(widths) - 1) <= width:
        lines = [_line(headers, widths, right), *(_line(r, widths, right) for r in rows)]
        return "\n".join(lines) + "\n"
    lead = 2 if headers[:2] == ["run", "set"] else 1 if headers[:1] == ["set"] else 0
    name_width = max(len(h) for h in headers[lead:])
    blocks = []
    for row in rows:
        title = "  ".join(row[:lead]) if lead else ""
        lines = [title] if title else []
        indent = "  " if title else ""
        lines += [
            f"{indent}{h.ljust(name_width)}  {v}".rstrip()
            for h, v in zip(headers[lead:], row[lead:])
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _line(cells: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(
        c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)
    ).rstrip()


def _markdown(headers: list[str], rows: list[list[str]], right: list[bool]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("--:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _csv(headers: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()
