"""`curi cache ...`: see and steer the artifact cache.

Every command but `dump` reads metadata only (and, to verify files, their bytes): no user
code and no pandas is imported. `dump` loads one output through its cacher, after checking
its files against their recorded checksums.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from curifactory_cli.cli.cache_args import (
    ByOpt,
    ClearDryRunOpt,
    ClearEntryArg,
    CurrentOpt,
    DumpEntryArg,
    EntryArg,
    FixOpt,
    ForceOpt,
    GcYesOpt,
    InvalidateDryRunOpt,
    InvalidateExperimentArg,
    KeepLatestOpt,
    OlderThanOpt,
    OutOpt,
    OutputArg,
    RowsOpt,
    SortOpt,
    StaleOpt,
    StaleParamsOpt,
    VerifyEntryArg,
    YesOpt,
    cache_store,
    confirm_or_exit,
    listed_entries,
    named_entries,
    one_entry,
    run_registry,
)
from curifactory_cli.cli.common import (
    CacheOpt,
    ExperimentFilter,
    JsonOpt,
    ParamsFilter,
    StageFilter,
    console,
    fail,
)
from curifactory_cli.errors import ConfigError, CurifactoryError
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from curifactory_cli.registry.records import RunRecord
    from curifactory_cli.store import LocalStore
    from curifactory_cli.store.entry import Entry

cache_app = typer.Typer(
    help="See and steer the artifact cache (data/cache/).", no_args_is_help=True
)


@cache_app.command("ls")
def cache_ls(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    sort: SortOpt = None,
    stale: StaleOpt = None,
    stale_params: StaleParamsOpt = None,
    current: CurrentOpt = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cached entries: id, experiment, parameter set, stage, outputs, size and age."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store.uses import UseBook, json_fields

    store = cache_store(cache)
    book = UseBook(store)  # which sets use each entry, read from the cache when asked
    shared_from: dict[str, str] = {}  # with -p: entries of other sets that the set used
    try:
        listed = listed_entries(
            store, experiment, stage, params, sort, current, stale, stale_params, book, shared_from
        )
        first = next(listed, None)
    except CurifactoryError as exc:
        raise fail(exc) from None
    totals = {"count": 0, "size": 0}
    counted = views.counting(first, listed, totals)
    if as_json:
        root = store.root
        views.stream_json(
            store.location,
            (e.to_json(root) | json_fields(e, book, shared_from) for e in counted),
            totals,
        )
    elif first is None:
        filtered = " matching the filters" if (experiment or stage or params) else ""
        what = f"no stale entries of {stale!r}" if stale else "no cached entries"
        what += " used by the latest runs" if current else ""
        console.print(f"{what} in {store.location}{filtered}", markup=False)
    else:
        views.entry_table(counted, totals, book, shared_from)


# ---------------------------------------------------------------------------------- inspect
@cache_app.command("inspect")
def cache_inspect(
    entry: EntryArg,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry: its key and what went into it, parameters, the run that made it,
    its files (checksums recomputed now) and its lineage, upstream and downstream."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store import upkeep

    store = cache_store(cache)
    root = store.root
    try:
        every = list(store.entries())
        found = cache_index.resolve_entry(
            cache_index.select(every, experiment, stage, params), entry, root
        )
    except CurifactoryError as exc:
        raise fail(exc) from None
    lineage = cache_index.Lineage(root, every)
    data = upkeep.inspect_data(store, found, lineage, _lookup_run)
    if as_json:
        views.print_json(data)
    else:
        views.show_entry(store, found, data)


def _lookup_run(run_id: str) -> RunRecord:
    return run_registry().get_run(run_id, stages=False)


# ---------------------------------------------------------------------------------- dump
@cache_app.command("dump")
def cache_dump(
    entry: DumpEntryArg = None,
    output: OutputArg = None,
    rows: RowsOpt = 5,
    out: OutOpt = None,
    force: ForceOpt = False,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a cached output holds: a DataFrame's shape, dtypes and first/last rows, JSON
    pretty-printed, anything else as a shortened repr.

    The output is loaded through the cacher recorded in its metadata (a custom cacher's
    module is imported), and only after every file of it matched its recorded sha256.
    Pickles are only loaded when their checksum matches the metadata this tool wrote
    when caching them: a changed pickle is refused, never unpickled.

    `curi cache dump -e EXPERIMENT -s STAGE -p SET [OUTPUT]` (no entry id) dumps the entry
    the experiment's latest run used for that stage and set. Without -p, the output of every
    set it ran: one table, a row per set, when each is a JSON mapping or scalar.
    """
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import dump

    store = cache_store(cache)
    root = store.root
    try:
        targets, output = _dump_targets(store, entry, output, experiment, stage, params)
        if len(targets) > 1:
            _dump_sets(store, targets, output, rows, out, force, as_json)
            return
        found = targets[0][1]
        name = dump.pick_output(found, output)
        value = dump.load_output(store, found, name)
        if out is not None:
            fmt = dump.export(value, out, force=force)
    except CurifactoryError as exc:
        raise fail(exc) from None
    info = found.outputs[name]
    where = {
        "id": found.short_id,
        "entry": found.rel(root),
        "output": name,
        "cacher": info.get("cacher"),
        "lazy": bool(info.get("lazy")),
    }
    if out is not None:
        if as_json:
            views.print_json({**where, "out": str(out), "format": fmt})
        else:
            views.line(f"wrote {out} ({fmt}) from {found.short_id} {found.label()} / {name}")
    elif as_json:
        views.print_json({**where, **dump.summary(value, rows)})
    else:
        views.show_output(found, name, value, rows)


def _dump_targets(
    store: LocalStore,
    entry: str | None,
    output: str | None,
    experiment: str | None,
    stage: str | None,
    params: str | None,
) -> tuple[list[tuple[str, Entry]], str | None]:
    """The entries to dump, each with the set it is dumped for (one, or one stage's entries
    over several parameter sets) and the output asked for. With -e and no entry id, the one
    word given is the OUTPUT (an entry id is hex, or a path): `dump -e demo -s fit model`."""
    from curifactory_cli.store import index as cache_index

    if entry is not None and experiment and output is None and not cache_index.is_entry_ref(entry):
        entry, output = None, entry
    if entry is not None:
        found = one_entry(store, entry, experiment, stage, params)
        return [(found.params_name, found)], output
    if not experiment:
        raise ConfigError(
            "cache dump needs an ENTRY id, or -e EXPERIMENT to dump what its latest run used",
            hint="e.g. `curi cache dump -e demo -s fit_line -p clean`, or an id from "
            "`curi cache ls`.",
        )
    registry = run_registry()
    _, calls = cache_index.current_calls(store, registry, experiment, stage, params)
    if len(calls) > 1 and stage and len({e.stage for _, e in calls}) == 1:
        return calls, output  # one stage over the sets the run ran (shared entries too)
    found = cache_index.current_entry(store, registry, experiment, stage, params)
    return [(found.params_name, found)], output


def _dump_sets(
    store: LocalStore,
    targets: list[tuple[str, Entry]],
    output: str | None,
    rows: int,
    out: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """One stage's output over the parameter sets of a run: a row per set when each value is
    a JSON mapping or scalar, else each value in turn."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import dump

    entries = [e for _, e in targets]
    name = dump.pick_output(entries[0], output)
    try:
        loaded: dict[str, Any] = {}  # an entry sets share is loaded once
        for e in entries:
            if e.key not in loaded:
                loaded[e.key] = dump.load_output(store, e, dump.pick_output(e, name))
        values = [(set_name, loaded[e.key]) for set_name, e in targets]
        table = views.set_table(values, name)
        if out is not None:
            if table is None:
                raise ConfigError(
                    f"output {name!r} of stage {entries[0].stage!r} is not a JSON mapping or "
                    f"value in every set, so the {len(entries)} sets make no table to export",
                    hint="name one set with -p SET to export its value.",
                )
            fmt = dump.export_table(values, table, out, force=force)
    except CurifactoryError as exc:
        raise fail(exc) from None
    stage = entries[0].stage
    if out is not None:
        what = f"{entries[0].experiment} / {stage} / {name}"
        views.line(f"wrote {out} ({fmt}) from {plural(len(entries), 'parameter set')}: {what}")
    elif as_json:
        sets = [
            {"params": set_name, "id": e.short_id, "entry": e.rel(store.root)}
            | dump.summary(value, rows)
            for e, (set_name, value) in zip(entries, values)
        ]
        columns = views.table_cells(table)[0] if table is not None else None
        views.print_json({"stage": stage, "output": name, "columns": columns, "sets": sets})
    else:
        views.show_sets(entries, name, values, table, rows)


# ---------------------------------------------------------------------------------- invalidate
@cache_app.command("invalidate")
def cache_invalidate(
    experiment: InvalidateExperimentArg,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    dry_run: InvalidateDryRunOpt = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark matching entries, and every entry computed from them, as stale: the next run
    recomputes them. Nothing is deleted; each meta.json gets "invalidated": true.

    With -p SET, the entries the set's calls used are matched, also those that live in
    another set's folder (shared): invalidating one invalidates it for every set using it,
    and each such set is named."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store import upkeep
    from curifactory_cli.store.uses import UseBook, sharing_fields, sharing_notes

    store = cache_store(cache)
    root = store.root
    book = UseBook(store)
    try:
        cache_index.require_mark(store, "invalidate entries in")
        every = list(store.entries())
        matched, shared_from = upkeep.invalidation_targets(
            store, every, experiment, stage, params, book
        )
        downstream = cache_index.Lineage(root, every).descendants(matched)
        changed = 0
        if not dry_run:
            for entry in [*matched, *downstream]:
                changed += store.mark_invalidated(entry)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        views.print_json(
            {
                "dry_run": dry_run,
                "matched": [
                    e.to_json(root) | sharing_fields(e, book, shared_from, params) for e in matched
                ],
                "downstream": [e.to_json(root) for e in downstream],
                "invalidated": changed,
            }
        )
        return
    notes = sharing_notes(matched, book, shared_from, params)
    views.show_invalidated(matched, downstream, changed, dry_run, notes)


# ---------------------------------------------------------------------------------- verify
@cache_app.command("verify")
def cache_verify(
    entry: VerifyEntryArg = None,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    fix: FixOpt = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every entry's checksums; report missing, corrupt and orphaned files.

    Exit code: 0 when everything is fine, 1 when a problem was found (also with --fix, so
    that scripts notice; run again to see it clean), 2 on a usage error.
    """
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store import upkeep
    from curifactory_cli.store.entry import listed_files

    store = cache_store(cache)
    try:
        if fix:  # only --fix deletes: checking is harmless anywhere
            cache_index.require_mark(store, "fix")
        entries = named_entries(store, entry, experiment, stage, params)
        if entry is None and params:  # and the entries of other sets that the set used
            from curifactory_cli.store.uses import with_shared

            wanted = cache_index.experiment_name(experiment) if experiment else None
            entries, _ = with_shared(store, entries, wanted, stage, params)
        orphan_dirs: list[Path] = []
        if entry is None:
            orphan_dirs = upkeep.filtered_orphans(store, experiment, stage, params)
        problems, bad, stray = upkeep.verify(store, entries, orphan_dirs)
        fixed = fix and bool(problems)
        freed = _remove_damaged(store, bad, [*stray, *orphan_dirs], problems) if fixed else 0
    except CurifactoryError as exc:
        raise fail(exc) from None
    counts = upkeep.problem_counts(problems)
    files = sum(len(list(listed_files(e.meta))) for e in entries)
    if as_json:
        views.print_json(
            {
                "ok": not problems,
                "checked": {"entries": len(entries), "files": files},
                "problems": problems,
                "counts": counts,
                "fixed": fixed,
                "freed": freed,
            }
        )
    else:
        removed = (len(bad), len(orphan_dirs), len(stray), freed) if fixed else None
        views.show_verify(problems, counts, len(entries), files, removed)
    if problems:
        raise typer.Exit(code=1)


def _remove_damaged(
    store: LocalStore,
    bad: list[Entry],
    paths: list[Any],
    problems: list[dict[str, Any]],
) -> int:
    """`verify --fix`: remove damaged entries and stray paths, and record why (so that the
    next plan and run say why these entries are missing); returns the bytes freed."""
    from curifactory_cli.store import removals, upkeep

    freed = store.remove(bad)
    freed += store.remove_paths(paths)
    removals.record(store, bad, upkeep.removal_reasons(problems))
    return freed


# ---------------------------------------------------------------------------------- gc
@cache_app.command("gc")
def cache_gc(
    older_than: OlderThanOpt = None,
    keep_latest: KeepLatestOpt = None,
    yes: GcYesOpt = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove what is no longer useful. A dry run unless --yes.

    Always: draft and trash folders left by interrupted runs (whose process is gone, or
    without a process id and older than an hour), and folders that look like entries but
    have no metadata (older than an hour). Entries only with --older-than / --keep-latest.
    The reads index (.reads/) of each experiment is compacted into one file, without the
    lines of entries that no longer exist; files runs are still writing are left alone.
    """
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store import upkeep
    from curifactory_cli.store.reads_compact import compact

    store = cache_store(cache)
    try:
        cache_index.require_mark(store, "collect garbage in")
        garbage = upkeep.garbage(store, time.time(), older_than, keep_latest)
        if yes and garbage:
            entries = [g.entry for g in garbage if g.entry is not None]
            _remove(store, entries, [g.path for g in garbage if g.entry is None])
        # The reads index, compacted once entries are removed (a dry run counts the lines of
        # those it would remove as gone).
        gone = frozenset(g.entry.key for g in garbage if g.entry is not None and not yes)
        compacted = compact(store, dry=not yes, gone=gone)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        views.print_json(
            {
                "dry_run": not yes,
                "items": [g.to_json(store.root) for g in garbage],
                "count": len(garbage),
                "size": sum(g.size for g in garbage),
                "index": [c.to_json() for c in compacted],
            }
        )
    else:
        views.show_garbage(garbage, store.root, yes, compacted)


def _remove(store: LocalStore, entries: list[Entry], paths: list[Any]) -> None:
    """Remove entries (and other paths): what a run knew of them is forgotten too."""
    from curifactory_cli.store import removals

    store.remove(entries)
    if paths:
        store.remove_paths(paths)
    removals.forget(store, entries)


# ---------------------------------------------------------------------------------- du
@cache_app.command("du")
def cache_du(
    by: ByOpt = None,
    experiment: ExperimentFilter = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disk use of cached entries (their data files) with entry counts."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index

    store = cache_store(cache)
    groups = [by.value] if by else list(cache_index.DU_GROUPS)
    wanted = cache_index.experiment_name(experiment) if experiment else None
    try:
        tables, total = cache_index.totals_by(store.entries(wanted), groups)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        views.print_json(
            {
                "cache_dir": store.location,
                "total": total,
                **{f"by_{g}": t for g, t in tables.items()},
            }
        )
    else:
        views.show_totals(store.location, tables, total)


# ---------------------------------------------------------------------------------- clear
@cache_app.command("clear")
def cache_clear(
    entry: ClearEntryArg = None,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    yes: YesOpt = False,
    dry_run: ClearDryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached entries: one ENTRY, or all matching the filters (all if none given).

    With -p SET, the entries the set's calls used are removed, also those that live in
    another set's folder (shared): each such entry is gone for every set using it, and
    those sets are named."""
    from curifactory_cli.cli import cache_views as views
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store.uses import UseBook, sharing_fields, sharing_notes, with_shared

    store = cache_store(cache)
    root = store.root
    book = UseBook(store)
    shared_from: dict[str, str] = {}
    try:
        cache_index.require_mark(store, "clear")
        entries = named_entries(store, entry, experiment, stage, params)
        if entry is None and params:
            wanted = cache_index.experiment_name(experiment) if experiment else None
            entries, shared_from = with_shared(store, entries, wanted, stage, params, book)
    except CurifactoryError as exc:
        raise fail(exc) from None
    size = sum(e.size for e in entries)
    if as_json and (dry_run or not entries):
        would = [e.to_json(root) | sharing_fields(e, book, shared_from, params) for e in entries]
        views.print_json({"removed": [], "would_remove": would, "size": size})
        return
    if not entries:
        console.print("nothing to remove")
        return
    if dry_run or not as_json:
        views.entry_lines(entries, sharing_notes(entries, book, shared_from, params))
    summary = f"{plural(len(entries), 'entry', 'entries')}, {views.human_size(size)}"
    if dry_run:
        console.print(f"would remove {summary} (dry run)")
        return
    confirm_or_exit(f"Remove {summary}?", yes)
    _clear(store, entries, summary, as_json)


def _clear(store: LocalStore, entries: list[Entry], summary: str, as_json: bool) -> None:
    from curifactory_cli.cli import cache_views as views

    try:
        _remove(store, entries, [])
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        root = store.root
        removed = [e.to_json(root) | {"path": store.display(e.directory)} for e in entries]
        views.print_json({"removed": removed, "size": sum(e.size for e in entries)})
    else:
        console.print(f"removed {summary}")


# ---------------------------------------------------------------------------------- push, pull
from curifactory_cli.cli.cache_transfer import cache_pull, cache_push  # noqa: E402

cache_app.command("push")(cache_push)
cache_app.command("pull")(cache_pull)
