"""`curi cache ...`: see and steer the artifact cache.

Every command but `dump` reads metadata only (and, to verify files, their bytes): no user
code and no pandas is imported. `dump` loads one output through its cacher, after checking
its files against their recorded checksums.
"""

from __future__ import annotations

import enum
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curifactory_cli import cli_cache_views as views
from curifactory_cli import console as ui
from curifactory_cli.cli_common import (
    CacheOpt,
    ExperimentFilter,
    JsonOpt,
    ParamsFilter,
    RemoteOpt,
    StageFilter,
    console,
    err_console,
    fail,
)
from curifactory_cli.console import write_json
from curifactory_cli.errors import ConfigError, CurifactoryError, ExitCode
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from curifactory_cli.store import LocalStore
    from curifactory_cli.store.entry import FileCheck
    from curifactory_cli.store.index import CacheEntry
    from curifactory_cli.store.remote import FsspecStore

cache_app = typer.Typer(
    help="See and steer the artifact cache (data/cache/).", no_args_is_help=True
)

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


# ---------------------------------------------------------------------------------- helpers
def _print_json(data: Any) -> None:
    write_json(console, data)


def _line(text: str, style: str | None = None) -> None:
    # markup off: parameter set names like "[a]" or "x=1" must print as they are.
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _store(cache: str | None) -> LocalStore:
    """The store a cache command works on: --cache, else CURI_CACHE or the project's
    `cache` setting, else data/cache; a URL opens the remote store itself."""
    from curifactory_cli.config import load_settings, resolve_cache
    from curifactory_cli.store import LocalStore, is_url

    root = Path.cwd()
    try:
        settings = load_settings(root, {"cache": cache})
        location = resolve_cache(root, settings)
        if is_url(location):
            from curifactory_cli.store.remote import FsspecStore

            options = settings.get("storage_options")
            # Listing and tidying only: an FsspecStore is a full Store but for local locks.
            return FsspecStore(location, storage_options=options)  # type: ignore[return-value]
    except CurifactoryError as exc:
        raise fail(exc) from None
    return LocalStore(location)


def _stores(cache: str | None, remote: str | None) -> tuple[LocalStore, FsspecStore]:
    """The local cache and the remote one, for push and pull."""
    from curifactory_cli.config import load_settings
    from curifactory_cli.store import is_url

    try:
        settings = load_settings(Path.cwd(), {"remote": remote})
        url = settings.get("remote")
        if not url:
            raise ConfigError(
                "no remote cache to push to or pull from",
                hint="give --remote s3://bucket/prefix (any fsspec URL), or set `remote` in "
                "curi.toml, [tool.curi] or CURI_REMOTE.",
            )
        local = _store(cache)
        if is_url(local.location):
            raise ConfigError(
                f"--cache {local.location} is not a local folder",
                hint="push and pull move entries between a local cache and a remote one.",
            )
        from curifactory_cli.store.remote import FsspecStore

        return local, FsspecStore(url, storage_options=settings.get("storage_options"))
    except CurifactoryError as exc:
        raise fail(exc) from None


def _entries(
    store: LocalStore, experiment: str | None, stage: str | None, params: str | None
) -> list[CacheEntry]:
    from curifactory_cli.store import index as cache_index

    return cache_index.select(store.entries(), experiment, stage, params)


def _one_entry(
    store: LocalStore, ident: str, experiment: str | None, stage: str | None, params: str | None
) -> CacheEntry:
    from curifactory_cli.store import index as cache_index

    entries = _entries(store, experiment, stage, params)
    return cache_index.resolve_entry(entries, ident, store.root)


def _confirm_or_exit(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        err_console.print("error: refusing to delete without confirmation; pass --yes", style="red")
        raise typer.Exit(code=int(ExitCode.USAGE))
    if not typer.confirm(question, default=False):
        raise typer.Exit(code=int(ExitCode.OK))


def _registry() -> Any:
    """The project's run registry, read-only (reading never creates it)."""
    from curifactory_cli.cli_common import open_registry, registry_file

    return open_registry(registry_file(None))


def _cacher_names(entry: CacheEntry) -> str:
    names = {str(o.get("cacher", "?")).rsplit(".", 1)[-1] for o in entry.outputs.values()}
    return ", ".join(sorted(names)) or "-"


# ---------------------------------------------------------------------------------- ls
def _stale_only(entries: list, experiment: str, params: list[str] | None, location: str) -> list:
    """Plan the experiment (this imports its code) and keep the entries it would not reuse."""
    from curifactory_cli.discovery import project_root
    from curifactory_cli.engine.planner import stale_keys
    from curifactory_cli.runner import RunOptions, plan_experiment

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


@cache_app.command("ls")
def cache_ls(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    sort: Annotated[
        SortKey | None,
        typer.Option(
            "--sort",
            help="Order by this first (age: newest first, size: largest first). "
            "Default: experiment, params, stage, newest first.",
            show_default=False,
        ),
    ] = None,
    stale: Annotated[
        str | None,
        typer.Option(
            "--stale",
            metavar="EXPERIMENT",
            help="Only entries that EXPERIMENT's current code and parameters no longer produce "
            "(imports the experiment; parameters as `curi run EXPERIMENT` would use them).",
        ),
    ] = None,
    stale_params: Annotated[
        list[str] | None,
        typer.Option(
            "--stale-params", help="Parameter files for --stale (default: as `curi run`)."
        ),
    ] = None,
    current: Annotated[
        bool,
        typer.Option(
            "--current",
            help="Only the entries the latest run of each experiment used (from the run "
            "registry, data/runs.sqlite).",
        ),
    ] = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cached entries: id, experiment, parameter set, stage, outputs, size and age."""
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    root = store.root
    groups: Iterable[list[CacheEntry]]
    try:
        if current or stale or (sort is not None and sort is not SortKey.experiment):
            entries = _entries(store, stale or experiment, stage, params)
            if current:
                runs = cache_index.latest_runs(_registry(), None)
                entries = cache_index.used_by(entries, runs)
            if stale:
                entries = _stale_only(entries, stale, stale_params, store.location)
            groups = [cache_index.sort_entries(entries, sort.value if sort else None)]
        elif hasattr(store, "entry_groups"):
            # The default order, streamed a parameter set at a time: memory stays flat
            # whatever the size of the cache.
            wanted = cache_index.experiment_name(experiment) if experiment else None
            groups = store.entry_groups(wanted, stage, params)
        else:
            groups = [cache_index.sort_entries(_entries(store, experiment, stage, params))]
        listed: Iterator[CacheEntry] = (entry for group in groups for entry in group)
        first = next(listed, None)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if first is not None:
        listed = itertools.chain([first], listed)
    totals = {"count": 0, "size": 0}

    def counted() -> Iterator[CacheEntry]:
        for entry in listed if first is not None else ():
            totals["count"] += 1
            totals["size"] += entry.size
            yield entry

    if as_json:
        _stream_json(store.location, (e.to_json(root) for e in counted()), totals)
        return
    if first is None:
        filtered = " matching the filters" if (experiment or stage or params) else ""
        what = f"no stale entries of {stale!r}" if stale else "no cached entries"
        what += " used by the latest runs" if current else ""
        console.print(f"{what} in {store.location}{filtered}", markup=False)
        return
    now = time.time()

    def rows() -> Iterator[list[str]]:
        for e in counted():
            row = [
                e.short_id,
                e.experiment,
                e.params_name,
                e.stage,
                ", ".join(e.outputs) or "-",
                _cacher_names(e),
                cache_index.human_size(e.size),
                cache_index.human_age(now - e.created),
            ]
            yield [*row, "invalidated"] if e.invalidated else row

    ui.stream_table(
        console,
        ["id", "experiment", "params", "stage", "outputs", "cacher", "size", "age"],
        rows(),
        right=("size",),
        caption=lambda: (
            f"{plural(totals['count'], 'entry', 'entries')}, "
            f"{cache_index.human_size(totals['size'])}"
        ),
    )


def _join_entries(chunk: list[str]) -> str:
    return "\n    " + ",\n    ".join(chunk)


def _stream_json(location: str, items: Iterable[dict[str, Any]], totals: dict[str, int]) -> None:
    """`{"cache_dir", "entries": [...], "count", "total_size"}` written an entry at a time
    (one line each): memory stays flat, and the output can be grepped."""
    write = console.file.write
    write('{\n  "cache_dir": ' + json.dumps(location) + ',\n  "entries": [')
    encode = json.JSONEncoder(default=str).encode  # one encoder for every entry
    chunk: list[str] = []
    for item in items:
        chunk.append(encode(item))
        if len(chunk) == 1000:  # a write per thousand entries
            write(("," if totals["count"] > len(chunk) else "") + _join_entries(chunk))
            chunk = []
    if chunk:
        write(("," if totals["count"] > len(chunk) else "") + _join_entries(chunk))
    write(("\n  " if totals["count"] else "") + "],\n")
    write(f'  "count": {totals["count"]},\n  "total_size": {totals["size"]}\n}}\n')
    console.file.flush()


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
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    root = store.root
    try:
        every = list(store.entries())
        found = cache_index.resolve_entry(
            cache_index.select(every, experiment, stage, params), entry, root
        )
    except CurifactoryError as exc:
        raise fail(exc) from None
    data = _inspect_data(store, found, cache_index.Lineage(root, every))
    if as_json:
        _print_json(data)
    else:
        _render_inspect(store, found, data)


def _inspect_data(store: LocalStore, entry: CacheEntry, lineage: Any) -> dict[str, Any]:
    from curifactory_cli.store import index as cache_index

    root = store.root
    meta = entry.meta
    checks = cache_index.check_files(store, entry)
    return {
        "id": entry.short_id,
        "key": entry.key,
        "path": entry.rel(root),
        "directory": str(entry.directory),
        "experiment": entry.experiment,
        "stage": entry.stage,
        "stage_ref": meta.get("stage_ref"),
        "aggregate": bool(meta.get("aggregate")),
        "params": {
            "name": entry.params_name,
            "hash": entry.params_hash,
            "values": meta.get("params"),
            "input_records": meta.get("input_records") or [],
        },
        "invalidated": entry.invalidated,
        "key_parts": meta.get("key_parts"),
        "lineage_key": meta.get("lineage_key"),
        "outputs": {
            name: {k: out.get(k) for k in ("cacher", "lazy", "version", "extra")}
            for name, out in entry.outputs.items()
        },
        "files": [c.to_json() for c in checks],
        "orphan_files": store.orphan_files(entry),
        "files_ok": all(c.status == "ok" for c in checks),
        "size": entry.size,
        "created": entry.created,
        **_run_provenance(meta),
        "timings": meta.get("timings"),
        "upstream": lineage.upstream(entry),
        "downstream": lineage.downstream(entry),
    }


def _run_provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The run that made an entry ({run, git, versions}): an entry names its run, whose
    command, commit and library versions the run registry keeps once (an entry written by
    another machine's run, in a shared cache, names just the run and its host)."""
    run = dict(meta.get("run") or {}) if isinstance(meta.get("run"), dict) else {}
    git, versions = meta.get("git"), meta.get("versions")  # entries of older versions
    recorded = None
    if isinstance(run.get("id"), str) and (git is None or versions is None):
        try:
            recorded = _registry().get_run(run["id"], stages=False)
        except (CurifactoryError, OSError):
            recorded = None
    if recorded is not None:
        host = recorded.get("host") or {}
        run.setdefault("started", recorded.get("started"))
        run.setdefault("command", recorded.get("command"))
        for field in ("host", "pid", "platform"):
            if host.get(field) is not None:
                run.setdefault(field, host[field])
        git = git if git is not None else recorded.get("git")
        versions = versions if versions is not None else recorded.get("versions")
    return {"run": run or None, "git": git, "versions": versions}


def _grid(rows: list[tuple[str, str]], indent: int = 0) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(Text(" " * indent + label), Text(value))
    ui.print_rows(console, table)


def _short(value: Any, width: int = 12) -> str:
    text = str(value)
    return text[:width] if len(text) > width else text


def _flat(values: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested parameter values as dotted `key = value` pairs."""
    if not isinstance(values, dict):
        return [(prefix or "value", json.dumps(values, default=str))]
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.extend(_flat(value, name))
        else:
            out.append((name, json.dumps(value, default=str)))
    return out


def _key_rows(parts: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not parts:
        return [("parts", "(not recorded)")]
    rows = [
        ("params hash", str(parts.get("params"))),
        ("code", _short(parts.get("code"), 16) + "…  (fingerprint of the stage's code)"),
        ("stage", str(parts.get("stage"))),
        ("outputs", ", ".join(map(str, parts.get("outputs") or [])) or "-"),
    ]
    cachers = [
        str(c.get("type", c)).rsplit(".", 1)[-1] + (" (configured)" if "config" in c else "")
        if isinstance(c, dict)
        else str(c)
        for c in parts.get("cachers") or []
    ]
    rows.append(("cachers", ", ".join(cachers) or "none"))
    for name, version in (parts.get("inputs") or {}).items():
        if isinstance(version, list):  # an aggregate: one (params hash, version) per record
            rows.append((f"input {name}", f"{plural(len(version), 'version')} (aggregate)"))
        else:
            rows.append((f"input {name}", f"version {_short(version)}"))
    known = {"format", "experiment", "stage", "params", "code", "outputs", "cachers", "inputs"}
    for name, value in parts.items():
        if name not in known:
            rows.append((name, _short(json.dumps(value, default=str), 80)))
    return rows


def _render_inspect(store: LocalStore, entry: CacheEntry, data: dict[str, Any]) -> None:
    from rich.text import Text

    from curifactory_cli.store import index as cache_index

    damaged = [f for f in data["files"] if f["status"] != "ok"]
    if entry.invalidated:
        status = "INVALIDATED (the next run recomputes it)"
    elif damaged:
        status = f"DAMAGED ({plural(len(damaged), 'file')} missing or changed)"
    else:
        status = "valid"
    _grid(
        [
            ("entry", f"{entry.short_id}  {entry.label()}"),
            ("path", store.display(store.root / data["path"])),
            ("status", status),
            ("size", cache_index.human_size(entry.size)),
            ("key", entry.key),
        ]
    )
    _grid(_key_rows(data["key_parts"]), indent=2)

    values = data["params"]["values"]
    head = f"{entry.params_name}  (hash {_short(entry.params_hash, 16)})"
    _grid([("params", head)])
    if isinstance(values, dict):
        _grid([(k, v) for k, v in _flat(values) if k != "name"], indent=2)
    if data["params"]["input_records"]:
        _grid([("records", ", ".join(data["params"]["input_records"]))], indent=2)

    run, timings = data["run"] or {}, data["timings"] or {}
    _grid([("run", str(run.get("id", "(not recorded)")))])
    rows = [
        ("started", str(run.get("started", "?"))),
        ("finished", str(timings.get("finished", "?"))),
    ]
    compute, save = timings.get("compute_s"), timings.get("save_s")
    if isinstance(compute, (int, float)) and isinstance(save, (int, float)):
        rows.append(("took", f"compute {compute:.3f}s, save {save:.3f}s"))
    if run.get("command"):
        rows.append(("command", " ".join(map(str, run["command"]))))
    if run.get("host"):
        rows.append(("host", f"{run['host']} (pid {run.get('pid', '?')})"))
    _grid(rows, indent=2)

    git = data["git"] or {}
    if git.get("commit"):
        git_text = str(git["commit"]) + ("  (uncommitted changes)" if git.get("dirty") else "")
    else:
        git_text = "(not a git repository)"
    versions = data["versions"] or {}
    _grid(
        [
            ("git", git_text),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "(not recorded)"),
        ]
    )

    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, title=None)
    for column in ("output", "cacher", "file", "size", "checksum"):
        table.add_column(column, justify="right" if column == "size" else "left")
    outputs = data["outputs"]
    for f in data["files"]:
        info = outputs.get(f["output"], {})
        cacher = str(info.get("cacher", "")).rsplit(".", 1)[-1] + (
            " lazy" if info.get("lazy") else ""
        )
        check = {"ok": Text("ok", "green"), "missing": Text("missing", "bold red")}.get(
            f["status"], Text(f"MISMATCH: {f['detail']}", "bold red")
        )
        table.add_row(
            Text(f["output"] or "(extra)"),
            Text(cacher),
            Text(f["path"]),
            cache_index.human_size(f["size"]),
            check,
        )
    for rel in data["orphan_files"]:
        table.add_row("", "", Text(rel), "", Text("not listed in meta.json", "yellow"))
    console.print(Text("files", style="bold"))
    ui.print_rows(console, table)

    from rich.tree import Tree

    up = Tree(Text("computed from", style="bold"))
    _upstream_tree(up, data["upstream"])
    if not data["upstream"]:
        up.add(Text("(no cached inputs)", style="dim"))
    console.print(up)
    down = Tree(Text("used by", style="bold"))
    _downstream_tree(down, data["downstream"])
    if not data["downstream"]:
        down.add(Text("(nothing cached was computed from it)", style="dim"))
    console.print(down)


_STATUS_STYLE = {"deleted": "bold red", "memory": "dim", "invalidated": "yellow", "cached": ""}


def _lineage_label(node: dict[str, Any], via: str) -> Text:
    from rich.text import Text

    label = Text.assemble(
        (node["id"] or "-" * 10, "cyan"), f"  {node['stage']} [{node['record']}]", f"  {via}"
    )
    status = node["status"]
    if status == "deleted":
        label.append("  (deleted)", _STATUS_STYLE[status])
    elif status == "memory":
        label.append("  (in memory, not cached)", _STATUS_STYLE[status])
    elif status == "invalidated":
        label.append("  (invalidated)", _STATUS_STYLE[status])
    if node.get("repeated"):
        label.append("  (shown above)", "dim")
    return label


def _upstream_tree(tree: Tree, nodes: list[dict[str, Any]]) -> None:
    for node in nodes:
        via = "→ " + ", ".join(node["inputs"])
        branch = tree.add(_lineage_label(node, via))
        _upstream_tree(branch, node.get("upstream") or [])


def _downstream_tree(tree: Tree, nodes: list[dict[str, Any]]) -> None:
    for node in nodes:
        via = "as " + ", ".join(node["inputs"])
        branch = tree.add(_lineage_label(node, via))
        _downstream_tree(branch, node.get("downstream") or [])


# ---------------------------------------------------------------------------------- dump
@cache_app.command("dump")
def cache_dump(
    entry: Annotated[
        str | None,
        typer.Argument(
            help="Entry id as `curi cache ls` prints it, or the entry's folder path. Without "
            "it, -e EXPERIMENT (with -s/-p) names the entry the experiment's latest run used.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Argument(help="Output name (optional when the entry has one).", show_default=False),
    ] = None,
    rows: Annotated[
        int, typer.Option("--rows", min=0, help="DataFrame rows to show from each end.")
    ] = 5,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Export instead of printing: .csv, .json or .parquet (needs pyarrow) for a "
            "DataFrame, .json for plain JSON values, .npy for a numpy array, .pkl for anything "
            "(a table of several sets: .csv or .json).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Let --out replace an existing file.")
    ] = False,
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
    from curifactory_cli.store import dump

    store = _store(cache)
    root = store.root
    try:
        targets, output = _dump_targets(store, entry, output, experiment, stage, params)
        if len(targets) > 1:
            _dump_sets(store, targets, output, rows, out, force, as_json)
            return
        found = targets[0]
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
            _print_json({**where, "out": str(out), "format": fmt})
        else:
            _line(f"wrote {out} ({fmt}) from {found.short_id} {found.label()} / {name}")
        return
    if as_json:
        _print_json({**where, **dump.summary(value, rows)})
        return
    cacher = str(info.get("cacher", "?")).rsplit(".", 1)[-1]
    lazy = ", lazy" if info.get("lazy") else ""
    _line(f"{name}  ({cacher}{lazy}; entry {found.short_id} {found.label()})", style="bold")
    _render_value(value, rows)


def _dump_targets(
    store: LocalStore,
    entry: str | None,
    output: str | None,
    experiment: str | None,
    stage: str | None,
    params: str | None,
) -> tuple[list[CacheEntry], str | None]:
    """The entries to dump (one, or one stage's entries over several parameter sets) and the
    output asked for. With -e and no entry id, the one word given is the OUTPUT (an entry id
    is hex, or a path): `dump -e demo -s fit model`."""
    from curifactory_cli.store import index as cache_index

    if entry is not None and experiment and output is None and not cache_index.is_entry_ref(entry):
        entry, output = None, entry
    if entry is not None:
        return [_one_entry(store, entry, experiment, stage, params)], output
    if not experiment:
        raise ConfigError(
            "cache dump needs an ENTRY id, or -e EXPERIMENT to dump what its latest run used",
            hint="e.g. `curi cache dump -e demo -s fit_line -p clean`, or an id from "
            "`curi cache ls`.",
        )
    registry = _registry()
    _, matched = cache_index.current_entries(store, registry, experiment, stage, params)
    if len(matched) > 1 and stage and len({e.stage for e in matched}) == 1:
        return matched, output  # one stage over the sets the run ran
    return [cache_index.current_entry(store, registry, experiment, stage, params)], output


def _dump_sets(
    store: LocalStore,
    entries: list[CacheEntry],
    output: str | None,
    rows: int,
    out: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """One stage's output over the parameter sets of a run: a row per set when each value is
    a JSON mapping or scalar, else each value in turn."""
    from curifactory_cli.store import dump

    name = dump.pick_output(entries[0], output)
    try:
        values = [
            (e.params_name, dump.load_output(store, e, dump.pick_output(e, name))) for e in entries
        ]
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
        _line(f"wrote {out} ({fmt}) from {plural(len(entries), 'parameter set')}: {what}")
        return
    if as_json:
        sets = [
            {"params": e.params_name, "id": e.short_id, "entry": e.rel(store.root)}
            | dump.summary(value, rows)
            for e, (_, value) in zip(entries, values)
        ]
        columns = views.table_cells(table)[0] if table is not None else None
        _print_json({"stage": stage, "output": name, "columns": columns, "sets": sets})
        return
    info = entries[0].outputs[name]
    cacher = str(info.get("cacher", "?")).rsplit(".", 1)[-1]
    where = f"{entries[0].experiment} / {stage}, {plural(len(entries), 'parameter set')}"
    _line(f"{name}  ({cacher}; {where})", style="bold")
    if table is not None:
        columns, cells = views.table_cells(table)
        ui.stream_table(console, columns, cells)
        return
    for entry, (set_name, value) in zip(entries, values):
        _line(f"[{set_name}]  entry {entry.short_id}", style="bold")
        _render_value(value, rows)


def _render_value(value: Any, rows: int) -> None:
    from curifactory_cli.store import dump

    frame = dump.as_frame(value)
    if frame is not None:
        _render_frame(frame, rows, dump.type_name(value))
        return
    if dump.is_json(value):
        text, cut = dump.pretty_json(value)
    else:
        _line(f"type: {dump.type_name(value)}", style="dim")
        text, cut = dump.readable_repr(value)
    _line(text)
    if cut:
        _line(f"… {cut} more lines (export everything with --out FILE.json)", style="dim")


def _render_frame(frame: Any, rows: int, kind: str) -> None:
    from rich.text import Text

    from curifactory_cli.store import dump

    n_rows, n_cols = frame.shape
    _line(f"{kind.rsplit('.', 1)[-1]}: {plural(n_rows, 'row')} × {plural(n_cols, 'column')}")
    head, tail = dump.frame_parts(frame, rows)
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column(Text(str(frame.index.name or "")), style="dim")
    for column in frame.columns:
        table.add_column(Text(str(column)), justify="right")
    for cells in dump.preview_cells(head):
        table.add_row(*map(Text, cells))
    if tail is not None:
        table.add_row(*(["…"] * (n_cols + 1)))
        for cells in dump.preview_cells(tail):
            table.add_row(*map(Text, cells))
    ui.print_rows(console, table)
    dtypes = ", ".join(f"{c} {t}" for c, t in frame.dtypes.items())
    _line(f"dtypes: {dtypes}", style="dim")


# ---------------------------------------------------------------------------------- invalidate
@cache_app.command("invalidate")
def cache_invalidate(
    experiment: Annotated[str, typer.Argument(help="Experiment whose entries to invalidate.")],
    stage: StageFilter = None,
    params: ParamsFilter = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be invalidated.")
    ] = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark matching entries, and every entry computed from them, as stale: the next run
    recomputes them. Nothing is deleted; each meta.json gets "invalidated": true."""
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    root = store.root
    try:
        cache_index.require_mark(store, "invalidate entries in")
        every = list(store.entries())
        matched = _invalidation_targets(every, experiment, stage, params)
        downstream = cache_index.Lineage(root, every).descendants(matched)
        changed = 0
        if not dry_run:
            for entry in [*matched, *downstream]:
                changed += store.mark_invalidated(entry)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json(
            {
                "dry_run": dry_run,
                "matched": [e.to_json(root) for e in matched],
                "downstream": [e.to_json(root) for e in downstream],
                "invalidated": changed,
            }
        )
        return
    for label, group in (("matched", matched), ("downstream", downstream)):
        for e in group:
            _line(f"  {e.short_id}  {e.label()}  ({label})")
    total = len(matched) + len(downstream)
    summary = (
        f"{plural(total, 'entry', 'entries')} ({len(matched)} matched, "
        f"{len(downstream)} downstream)"
    )
    if dry_run:
        _line(f"would invalidate {summary} (dry run)")
    else:
        already = total - changed
        note = f"; {already} already were" if already else ""
        _line(f"invalidated {summary}{note}; the next run recomputes them")


def _invalidation_targets(
    every: list[CacheEntry], experiment: str, stage: str | None, params: str | None
) -> list[CacheEntry]:
    from curifactory_cli.errors import close_matches_hint
    from curifactory_cli.store import index as cache_index

    mine = cache_index.select(every, experiment)
    if not mine:
        known = sorted({e.experiment for e in every})
        hint = close_matches_hint(experiment, known, "experiments", "`curi cache ls`")
        raise ConfigError(f"no cached entries of experiment {experiment!r}", hint=hint)
    matched = cache_index.select(mine, None, stage, params)
    if not matched:
        stages = sorted({e.stage for e in mine})
        sets = sorted({e.params_name for e in mine})
        raise ConfigError(
            f"no cached entries of experiment {experiment!r} match the filters",
            hint=f"its stages: {', '.join(stages)}; its parameter sets: {', '.join(sets)}.",
        )
    return matched


# ---------------------------------------------------------------------------------- verify
@cache_app.command("verify")
def cache_verify(
    entry: Annotated[
        str | None,
        typer.Argument(help="Only this entry (id or path); default: all.", show_default=False),
    ] = None,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Remove entries with missing or changed files, folders that look like "
            "entries but have no metadata, and files no metadata lists.",
        ),
    ] = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every entry's checksums; report missing, corrupt and orphaned files.

    Exit code: 0 when everything is fine, 1 when a problem was found (also with --fix, so
    that scripts notice; run again to see it clean), 2 on a usage error.
    """
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    try:
        if fix:  # only --fix deletes: checking is harmless anywhere
            cache_index.require_mark(store, "fix")
        if entry is not None:
            entries = [_one_entry(store, entry, experiment, stage, params)]
            orphan_dirs: list[Path] = []
        else:
            entries = _entries(store, experiment, stage, params)
            orphan_dirs = _filtered_orphans(store, experiment, stage, params)
        problems, bad, stray = _verify(store, entries, orphan_dirs)
        freed = 0
        if fix and problems:
            from curifactory_cli.store import removals

            freed = store.remove(bad)
            freed += store.remove_paths([*stray, *orphan_dirs])
            # So that the next plan and run say why these entries are missing.
            why: dict[str, str] = {}
            for p in problems:  # the first problem of each entry
                if p["id"] and p["kind"] in ("missing", "corrupt"):
                    file = p["path"].rsplit("/", 1)[-1]
                    why.setdefault(p["id"], f"{p['kind']} {file}")
            removals.record(store, bad, why)
    except CurifactoryError as exc:
        raise fail(exc) from None
    counts = {kind: sum(p["kind"] == kind for p in problems) for kind in _PROBLEM_KINDS}
    from curifactory_cli.store.entry import listed_files as entry_files

    files = sum(len(list(entry_files(e.meta))) for e in entries)
    if as_json:
        _print_json(
            {
                "ok": not problems,
                "checked": {"entries": len(entries), "files": files},
                "problems": problems,
                "counts": counts,
                "fixed": bool(fix and problems),
                "freed": freed,
            }
        )
    else:
        _render_problems(problems)
        found = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n)
        _line(
            f"checked {plural(len(entries), 'entry', 'entries')} ({plural(files, 'file')}): "
            + (found or "all fine"),
            style="red" if problems else "green",
        )
        if fix and problems:
            _line(
                f"removed {plural(len(bad), 'damaged entry', 'damaged entries')}, "
                f"{plural(len(orphan_dirs), 'orphaned folder')}, "
                f"{plural(len(stray), 'stray file')} ({cache_index.human_size(freed)})"
            )
        elif problems:
            _line("`curi cache verify --fix` removes them; the next run recomputes what it needs")
    if problems:
        raise typer.Exit(code=1)


_PROBLEM_KINDS = ("missing", "corrupt", "orphan_file", "orphan_dir")


def _filtered_orphans(
    store: LocalStore, experiment: str | None, stage: str | None, params: str | None
) -> list[Path]:
    """Entry-like folders without metadata; they have no parameter set name, so `--params`
    matches only a hash prefix (the folder's parent)."""
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store.entry import ENTRY_DIR_NAME

    out = []
    wanted = cache_index.experiment_name(experiment) if experiment else None
    for path in store.orphan_dirs():
        rel = path.relative_to(store.root).as_posix()
        named = ENTRY_DIR_NAME.match(path.name)
        if wanted and not rel.startswith(wanted + "/"):
            continue
        if stage and (named is None or named["stage"] != stage):
            continue
        if params and not path.parent.name.startswith(params):
            continue
        out.append(path)
    return out


def _verify(
    store: LocalStore, entries: list[CacheEntry], orphan_dirs: list[Path]
) -> tuple[list[dict[str, Any]], list[CacheEntry], list[PurePath]]:
    """Problems found (JSON-able), entries to remove, and stray files in good entries."""
    from curifactory_cli.store import index as cache_index
    from curifactory_cli.store.entry import signature_problem

    root = store.root
    problems: list[dict[str, Any]] = []
    bad: list[CacheEntry] = []
    stray: list[PurePath] = []
    for entry in entries:
        checks: list[FileCheck] = cache_index.check_files(store, entry)
        broken = [c for c in checks if c.status != "ok"]
        for c in broken:
            kind = "missing" if c.status == "missing" else "corrupt"
            problems.append(_problem(root, kind, entry.directory / c.path, entry, c.detail))
        unsigned = signature_problem(entry.meta)
        if unsigned:  # only checked when CURI_CACHE_KEY is set
            problems.append(
                _problem(root, "corrupt", entry.directory / "meta.json", entry, unsigned)
            )
        for rel in store.orphan_files(entry):
            problems.append(
                _problem(root, "orphan_file", entry.directory / rel, entry, "not in meta.json")
            )
            if not (broken or unsigned):
                stray.append(entry.directory / rel)
        if broken or unsigned:
            bad.append(entry)
    for path in orphan_dirs:
        problems.append(_problem(root, "orphan_dir", path, None, "no readable meta.json"))
    return problems, bad, stray


def _problem(
    root: Path, kind: str, path: PurePath, entry: CacheEntry | None, detail: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "path": path.relative_to(root).as_posix(),
        "id": entry.short_id if entry else None,
        "entry": entry.label() if entry else None,
        "detail": detail,
    }


def _render_problems(problems: list[dict[str, Any]]) -> None:
    # One line per problem, never wrapped: paths stay whole for copying and grepping.
    from rich.text import Text

    for p in problems:
        console.print(
            Text.assemble(
                (f"{p['kind'].replace('_', ' '):<12}", "red"),
                f"{p['id'] or '-':<10}  {p['path']}  ({p['detail']})",
            ),
            soft_wrap=True,
        )


# ---------------------------------------------------------------------------------- gc
@cache_app.command("gc")
def cache_gc(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Also remove entries written longer ago than this: 90s, 15m, 12h, 30d, 2w.",
            show_default=False,
        ),
    ] = None,
    keep_latest: Annotated[
        int | None,
        typer.Option(
            "--keep-latest",
            min=1,
            help="Also remove all but the N newest entries of each experiment, parameter set "
            "and stage (versions superseded after code or input changes).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove; without it, only list (dry run).")
    ] = False,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove what is no longer useful. A dry run unless --yes.

    Always: staging and trash folders left by interrupted runs (whose process is gone, or
    without a process id and older than an hour), and folders that look like entries but
    have no metadata (older than an hour). Entries only with --older-than / --keep-latest.
    """
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    root = store.root
    now = time.time()
    try:
        cache_index.require_mark(store, "collect garbage in")
        garbage = cache_index.leftovers(store, now) + cache_index.orphans(store, now)
        if older_than is not None or keep_latest is not None:
            every = list(store.entries())
            picked: list[Any] = []
            if older_than is not None:
                picked += cache_index.older_than(every, cache_index.parse_duration(older_than), now)
            if keep_latest is not None:
                picked += cache_index.superseded(every, keep_latest)
            seen = set()
            for g in picked:  # an entry both old and superseded is listed once
                if g.path not in seen:
                    seen.add(g.path)
                    garbage.append(g)
        entries = [g.entry for g in garbage if g.entry is not None]
        others = [g.path for g in garbage if g.entry is None]
        if yes and garbage:
            from curifactory_cli.store import removals

            store.remove(entries)
            store.remove_paths(others)
            removals.forget(store, entries)
    except CurifactoryError as exc:
        raise fail(exc) from None
    size = sum(g.size for g in garbage)
    if as_json:
        _print_json(
            {
                "dry_run": not yes,
                "items": [g.to_json(root) for g in garbage],
                "count": len(garbage),
                "size": size,
            }
        )
        return
    if not garbage:
        _line("nothing to collect")
        return
    for g in garbage:  # one line each, never wrapped (paths stay whole)
        ident = g.entry.short_id if g.entry else "-"
        shown = cache_index.human_size(g.size)
        rel = g.path.relative_to(root).as_posix()
        _line(f"{g.kind:<10} {ident:<10}  {rel}  {shown}  ({g.reason})")
    summary = f"{plural(len(garbage), 'item')}, {cache_index.human_size(size)}"
    if yes:
        _line(f"removed {summary}")
    else:
        _line(f"would remove {summary} (dry run; pass --yes to remove)")


# ---------------------------------------------------------------------------------- du
@cache_app.command("du")
def cache_du(
    by: Annotated[
        DuGroup | None,
        typer.Option(
            "--by",
            help="Only this grouping (default: experiment, stage, then params).",
            show_default=False,
        ),
    ] = None,
    experiment: ExperimentFilter = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disk use of cached entries (their data files) with entry counts."""
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    groups = [by.value] if by else list(cache_index.DU_GROUPS)
    wanted = cache_index.experiment_name(experiment) if experiment else None
    try:
        tables, total = cache_index.totals_by(store.entries(wanted), groups)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json(
            {
                "cache_dir": store.location,
                "total": total,
                **{f"by_{g}": t for g, t in tables.items()},
            }
        )
        return
    if not total["entries"]:
        console.print(f"no cached entries in {store.location}", markup=False)
        return
    human_size = cache_index.human_size
    caption = f"{plural(total['entries'], 'entry', 'entries')}, {human_size(total['size'])}"
    for group, rows in tables.items():
        columns = [k for k in rows[0] if k not in ("entries", "size")]
        ui.print_heading(console, f"by {group}")
        ui.stream_table(
            console,
            [*columns, "entries", "size"],
            [
                [*(str(row[c]) for c in columns), str(row["entries"]), human_size(row["size"])]
                for row in rows
            ],
            right=("entries", "size"),
            caption=lambda: caption,
        )


# ---------------------------------------------------------------------------------- clear
@cache_app.command("clear")
def cache_clear(
    entry: Annotated[
        str | None,
        typer.Argument(help="Only this entry (id or path).", show_default=False),
    ] = None,
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    cache: CacheOpt = None,
    yes: YesOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove cached entries: one ENTRY, or all matching the filters (all if none given)."""
    from curifactory_cli.store import index as cache_index

    store = _store(cache)
    root = store.root
    try:
        cache_index.require_mark(store, "clear")
        if entry is not None:
            entries = [_one_entry(store, entry, experiment, stage, params)]
        else:
            entries = _entries(store, experiment, stage, params)
    except CurifactoryError as exc:
        raise fail(exc) from None
    size = sum(e.size for e in entries)
    if as_json and (dry_run or not entries):
        _print_json(
            {"removed": [], "would_remove": [e.to_json(root) for e in entries], "size": size}
        )
        return
    if not entries:
        console.print("nothing to remove")
        return
    if dry_run or not as_json:
        for e in entries:
            _line(f"  {e.short_id}  {e.label()}")
    summary = f"{plural(len(entries), 'entry', 'entries')}, {cache_index.human_size(size)}"
    if dry_run:
        console.print(f"would remove {summary} (dry run)")
        return
    _confirm_or_exit(f"Remove {summary}?", yes)
    try:
        from curifactory_cli.store import removals

        store.remove(entries)
        removals.forget(store, entries)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        _print_json(
            {
                "removed": [
                    e.to_json(root) | {"path": store.display(e.directory)} for e in entries
                ],
                "size": size,
            }
        )
    else:
        console.print(f"removed {summary}")


# ---------------------------------------------------------------------------------- push, pull
@cache_app.command("push")
def cache_push(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    remote: RemoteOpt = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload local entries the remote cache lacks (all, or those matching the filters)."""
    from curifactory_cli.store.local import UNPUSHED
    from curifactory_cli.store.tiered import push_entry

    local, shared = _stores(cache, remote)
    try:
        there = {e.rel(shared.root): e.key for e in shared.entries()}
        todo = [
            e
            for e in _entries(local, experiment, stage, params)
            if there.get(e.rel(local.root)) != e.key and not e.invalidated
        ]
        pushed = sum(push_entry(local, shared, entry) for entry in todo)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if not (experiment or stage or params):  # all there now: no run need upload them
        (local.root / UNPUSHED).unlink(missing_ok=True)
    _moved("pushed", pushed, len(todo), shared.url, as_json)


@cache_app.command("pull")
def cache_pull(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    remote: RemoteOpt = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download remote entries the local cache lacks (all, or those matching the filters);
    every file is verified against its checksum (and signature) before it is kept."""
    from curifactory_cli.store.tiered import pull_entry

    local, shared = _stores(cache, remote)
    try:
        here = {e.rel(local.root): e.key for e in local.entries()}
        todo = [
            e
            # _entries takes a LocalStore; it only lists, which the remote store does too.
            for e in _entries(shared, experiment, stage, params)  # type: ignore[arg-type]
            if here.get(e.rel(shared.root)) != e.key and not e.invalidated
        ]
        local.prepare()
        for entry in todo:
            pull_entry(local, shared, entry)
    except CurifactoryError as exc:
        raise fail(exc) from None
    _moved("pulled", len(todo), len(todo), shared.url, as_json)


def _moved(verb: str, done: int, tried: int, url: str, as_json: bool) -> None:
    if as_json:
        _print_json({verb: done, "remote": url, "already_there": tried - done})
        return
    where = "to" if verb == "pushed" else "from"
    console.print(f"{verb} {plural(done, 'entry', 'entries')} {where} {url}", markup=False)
