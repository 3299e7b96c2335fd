"""What the arguments and options of the `curi cache ...` commands are (typer reads a
command's parameters from these annotated types) and what they resolve to: --cache and
--remote to stores, filters and ENTRY to entries, --stale to a plan, --yes to a confirmation.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curifactory_cli.cli.common import err_console, fail
from curifactory_cli.errors import ConfigError, CurifactoryError, ExitCode

if TYPE_CHECKING:
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.store import LocalStore
    from curifactory_cli.store.entry import Entry
    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.uses import UseBook

EntryArg = Annotated[
    str,
    typer.Argument(
        help="Entry id as `curi cache ls` prints it (any unique prefix of 6+ characters), "
        "or the entry's folder path.",
        show_default=False,
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class SortKey(str, enum.Enum):
    experiment = "experiment"
    params = "params"
    stage = "stage"
    age = "age"
    size = "size"


class DuGroup(str, enum.Enum):
    experiment = "experiment"
    stage = "stage"
    params = "params"


SortOpt = Annotated[
    SortKey | None,
    typer.Option(
        "--sort",
        help="Order by this first (age: newest first, size: largest first). "
        "Default: experiment, params, stage, newest first.",
        show_default=False,
    ),
]

StaleOpt = Annotated[
    str | None,
    typer.Option(
        "--stale",
        metavar="EXPERIMENT",
        help="Only entries that EXPERIMENT's current code and parameters no longer produce "
        "(imports the experiment; parameters as `curi run EXPERIMENT` would use them).",
    ),
]

StaleParamsOpt = Annotated[
    list[str] | None,
    typer.Option("--stale-params", help="Parameter files for --stale (default: as `curi run`)."),
]

CurrentOpt = Annotated[
    bool,
    typer.Option(
        "--current",
        help="Only the entries the latest run of each experiment used (from the run "
        "registry, data/runs.sqlite).",
    ),
]

DumpEntryArg = Annotated[
    str | None,
    typer.Argument(
        help="Entry id as `curi cache ls` prints it, or the entry's folder path. Without "
        "it, -e EXPERIMENT (with -s/-p) names the entry the experiment's latest run used.",
        show_default=False,
    ),
]

OutputArg = Annotated[
    str | None,
    typer.Argument(help="Output name (optional when the entry has one).", show_default=False),
]

RowsOpt = Annotated[
    int, typer.Option("--rows", min=0, help="DataFrame rows to show from each end.")
]

OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Export instead of printing: .csv, .json or .parquet (needs pyarrow) for a "
        "DataFrame, .json for plain JSON values, .npy for a numpy array, .pkl for anything "
        "(a table of several sets: .csv or .json).",
        show_default=False,
    ),
]

ForceOpt = Annotated[bool, typer.Option("--force", help="Let --out replace an existing file.")]

InvalidateExperimentArg = Annotated[
    str, typer.Argument(help="Experiment whose entries to invalidate.")
]

InvalidateDryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Only list what would be invalidated.")
]

VerifyEntryArg = Annotated[
    str | None,
    typer.Argument(help="Only this entry (id or path); default: all.", show_default=False),
]

FixOpt = Annotated[
    bool,
    typer.Option(
        "--fix",
        help="Remove entries with missing or changed files, folders that look like "
        "entries but have no metadata, and files no metadata lists.",
    ),
]

OlderThanOpt = Annotated[
    str | None,
    typer.Option(
        "--older-than",
        help="Also remove entries written longer ago than this: 90s, 15m, 12h, 30d, 2w.",
        show_default=False,
    ),
]

KeepLatestOpt = Annotated[
    int | None,
    typer.Option(
        "--keep-latest",
        min=1,
        help="Also remove all but the N newest entries of each experiment, parameter set "
        "and stage (versions superseded after code or input changes).",
        show_default=False,
    ),
]

GcYesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Remove; without it, only list (dry run).")
]

ByOpt = Annotated[
    DuGroup | None,
    typer.Option(
        "--by",
        help="Only this grouping (default: experiment, stage, then params).",
        show_default=False,
    ),
]

ClearEntryArg = Annotated[
    str | None,
    typer.Argument(help="Only this entry (id or path).", show_default=False),
]

ClearDryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")]


# ------------------------------------------------------------------ what they resolve to
def cache_store(cache: str | None) -> LocalStore:
    """The store a cache command works on: --cache, else CURI_CACHE or the project's
    `cache` setting, else data/cache; a URL opens the remote store itself."""
    from curifactory_cli.run.settings import load_settings
    from curifactory_cli.run.stores import project_store

    root = Path.cwd()
    try:
        store = project_store(root, load_settings(root, {"cache": cache}), tiers=False)
    except CurifactoryError as exc:
        raise fail(exc) from None
    # Listing and tidying only: an FsspecStore answers every LocalStore method these
    # commands call (the store contract suite runs them on both).
    return store  # type: ignore[return-value]


def remote_pair(cache: str | None, remote: str | None) -> tuple[LocalStore, FsspecStore]:
    """The local cache and the remote one, for push and pull."""
    from curifactory_cli.run.settings import load_settings
    from curifactory_cli.run.stores import remote_store
    from curifactory_cli.store import is_url

    try:
        settings = load_settings(Path.cwd(), {"remote": remote})
        shared = remote_store(settings)
        local = cache_store(cache)
        if is_url(local.location):
            raise ConfigError(
                f"--cache {local.location} is not a local folder",
                hint="push and pull move entries between a local cache and a remote one.",
            )
        return local, shared
    except CurifactoryError as exc:
        raise fail(exc) from None


def select_entries(
    store: LocalStore | FsspecStore, experiment: str | None, stage: str | None, params: str | None
) -> list[Entry]:
    from curifactory_cli.store import index as cache_index

    return cache_index.select(store.entries(), experiment, stage, params)


def one_entry(
    store: LocalStore, ident: str, experiment: str | None, stage: str | None, params: str | None
) -> Entry:
    from curifactory_cli.store import index as cache_index

    entries = select_entries(store, experiment, stage, params)
    return cache_index.resolve_entry(entries, ident, store.root)


def named_entries(
    store: LocalStore,
    entry: str | None,
    experiment: str | None,
    stage: str | None,
    params: str | None,
) -> list[Entry]:
    """ENTRY when given (within the filters), else every entry matching the filters."""
    if entry is not None:
        return [one_entry(store, entry, experiment, stage, params)]
    return select_entries(store, experiment, stage, params)


def confirm_or_exit(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        err_console.print("error: refusing to delete without confirmation; pass --yes", style="red")
        raise typer.Exit(code=int(ExitCode.USAGE))
    if not typer.confirm(question, default=False):
        raise typer.Exit(code=int(ExitCode.OK))


def run_registry() -> RunRegistry:
    """The project's run registry, read-only (reading never creates it)."""
    from curifactory_cli.cli.common import open_registry, registry_file

    return open_registry(registry_file(None))


def stale_only(entries: list, experiment: str, params: list[str] | None, location: str) -> list:
    """Plan the experiment (this imports its code) and keep the entries it would not reuse."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.engine.planner import stale_keys
    from curifactory_cli.run.runner import RunOptions, plan_experiment

    plan = plan_experiment(
        RunOptions(
            experiment=experiment,
            params=tuple(params or ()),
            cache_dir=location,
            root=str(project_root()),
        )
    )
    keys = stale_keys(plan.plans, entries)
    return [e for e in entries if e.key in keys]


def listed_entries(
    store: LocalStore,
    experiment: str | None,
    stage: str | None,
    params: str | None,
    sort: SortKey | None,
    current: bool,
    stale: str | None,
    stale_params: list[str] | None,
    book: UseBook,
    shared_from: dict[str, str],
) -> Iterator[Entry]:
    """The entries `cache ls` lists, in its order. With `-p SET`, the set's own entries and
    then those of other sets its calls used (each noted in `shared_from`)."""
    from curifactory_cli.store import index
    from curifactory_cli.store.uses import then_shared

    wanted = index.experiment_name(experiment) if experiment else None
    if current or stale or (sort is not None and sort is not SortKey.experiment):
        entries = select_entries(store, stale or experiment, stage, params)
        if params and not stale:
            entries = list(then_shared(entries, book, wanted, stage, params, shared_from))
        entries = _narrowed(store, entries, current, stale, stale_params)
        return iter(index.sort_entries(entries, sort.value if sort else None))
    if hasattr(store, "entry_groups"):
        # The default order, streamed a parameter set at a time: memory stays flat whatever
        # the size of the cache.
        listed: Iterator[Entry] = (
            entry for group in store.entry_groups(wanted, stage, params) for entry in group
        )
    else:
        listed = iter(index.sort_entries(select_entries(store, experiment, stage, params)))
    if params:
        return then_shared(listed, book, wanted, stage, params, shared_from)
    return listed


def _narrowed(
    store: LocalStore,
    entries: list[Entry],
    current: bool,
    stale: str | None,
    stale_params: list[str] | None,
) -> list[Entry]:
    """--current: only what the latest runs used; --stale: only what a run would not reuse."""
    from curifactory_cli.store import index

    if current:
        entries = index.used_by(entries, index.latest_runs(run_registry(), None))
    if stale:
        entries = stale_only(entries, stale, stale_params, store.location)
    return entries
