"""`curi cache ...`: see and tidy the artifact cache. Reads metadata only, never user code."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from curifactory_cli.cli_common import (
    CacheOpt,
    ExperimentFilter,
    JsonOpt,
    ParamsFilter,
    StageFilter,
    cache_root,
    console,
    err_console,
    fail,
)
from curifactory_cli.errors import CurifactoryError, ExitCode

cache_app = typer.Typer(help="See and tidy the artifact cache (data/cache/).", no_args_is_help=True)


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

    root = cache_root(cache)
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

    root = cache_root(cache)
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
        raise fail(exc) from None
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
