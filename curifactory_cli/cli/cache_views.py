"""How `curi cache ...` shows what it found: entry tables, one entry in full, lineage trees,
value previews, problems and totals.

rich is imported inside the functions that draw: `curi cache ls` piped to a file or a script
imports none of it.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli.cli import console as ui
from curifactory_cli.cli.common import console
from curifactory_cli.cli.console import write_json
from curifactory_cli.store.reads_index import READS_DIR
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from curifactory_cli.store import LocalStore
    from curifactory_cli.store.entry import Entry
    from curifactory_cli.store.index import Garbage
    from curifactory_cli.store.reads_compact import Compaction
    from curifactory_cli.store.uses import UseBook


def print_json(data: Any) -> None:
    write_json(console, data)


def line(text: str, style: str | None = None) -> None:
    # markup off: parameter set names like "[a]" or "x=1" must print as they are.
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def human_size(size: float) -> str:
    from curifactory_cli.store.index import human_size as size_text

    return size_text(size)


# ---------------------------------------------------------------------------------- ls
def cacher_names(entry: Entry) -> str:
    names = {str(o.get("cacher", "?")).rsplit(".", 1)[-1] for o in entry.outputs.values()}
    return ", ".join(sorted(names)) or "-"


def entry_lines(entries: list[Entry], notes: dict[str, str] | None = None) -> None:
    for e in entries:
        shared = (notes or {}).get(e.key)
        line(f"  {e.short_id}  {e.label()}" + (f"  ({shared})" if shared else ""))


def counting(first: Entry | None, rest: Iterator[Entry], totals: dict[str, int]) -> Iterator[Entry]:
    """`first`, then `rest`, adding each entry to `totals` (count, size) as it goes by."""
    if first is None:
        return
    for entry in itertools.chain([first], rest):
        totals["count"] += 1
        totals["size"] += entry.size
        yield entry


def entry_table(
    listed: Iterable[Entry], totals: dict[str, int], book: UseBook, shared_from: dict[str, str]
) -> None:
    """The entries, a row each, streamed (the caption counts them once all are shown); the
    state says whether an entry is invalidated and which other sets share it."""
    from curifactory_cli.store.index import human_age
    from curifactory_cli.store.uses import note

    now = time.time()

    def rows() -> Iterator[list[str]]:
        for e in listed:
            row = [
                e.short_id,
                e.experiment,
                e.params_name,
                e.stage,
                ", ".join(e.outputs) or "-",
                cacher_names(e),
                human_size(e.size),
                human_age(now - e.created),
            ]
            shared = note(e, book, shared_from)
            state = ", ".join(s for s in ("invalidated" if e.invalidated else "", shared) if s)
            yield [*row, state] if state else row

    ui.stream_table(
        console,
        ["id", "experiment", "params", "stage", "outputs", "cacher", "size", "age"],
        rows(),
        right=("size",),
        caption=lambda: (
            f"{plural(totals['count'], 'entry', 'entries')}, {human_size(totals['size'])}"
        ),
    )


def _join_entries(chunk: list[str]) -> str:
    return "\n    " + ",\n    ".join(chunk)


def stream_json(location: str, items: Iterable[dict[str, Any]], totals: dict[str, int]) -> None:
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
def show_entry(store: LocalStore, entry: Entry, data: dict[str, Any]) -> None:
    """`cache inspect`: the entry, its key, parameters, run, files and lineage."""
    _grid(
        [
            ("entry", f"{entry.short_id}  {entry.label()}"),
            ("path", store.display(store.root / data["path"])),
            ("status", _entry_status(entry, data)),
            ("size", human_size(entry.size)),
            ("key", entry.key),
        ]
    )
    _grid(_key_rows(data["key_parts"]), indent=2)
    _show_params(entry, data["params"])
    _grid([("sets", _sets_text(data["used_by"]))])
    _show_run(data["run"] or {}, data["timings"] or {})
    _show_code(data["git"] or {}, data["versions"] or {})
    _show_files(data)
    _show_lineage(data["upstream"], data["downstream"])


def _entry_status(entry: Entry, data: dict[str, Any]) -> str:
    damaged = [f for f in data["files"] if f["status"] != "ok"]
    if entry.invalidated:
        return "INVALIDATED (the next run recomputes it)"
    if damaged:
        return f"DAMAGED ({plural(len(damaged), 'file')} missing or changed)"
    return "valid"


def _show_params(entry: Entry, params: dict[str, Any]) -> None:
    values = params["values"]
    head = f"{entry.params_name}  (hash {_short(entry.params_hash, 16)})"
    _grid([("params", head)])
    if isinstance(values, dict):
        _grid([(k, v) for k, v in _flat(values) if k != "name"], indent=2)
    if params["input_records"]:
        _grid([("records", ", ".join(params["input_records"]))], indent=2)
    _grid([("reads", _reads_text(params.get("reads")))])


def _sets_text(users: list[dict[str, Any]]) -> str:
    """The sets that used an entry, as `cache inspect` says it."""
    names = list(dict.fromkeys(u["name"] for u in users))
    if len(names) == 1:
        return f"{names[0]}  (no other set used it)"
    others = plural(len(names) - 1, "other set")
    return f"{', '.join(names)}  (computed for {names[0]}; shared with {others})"


def _reads_text(reads: dict[str, Any] | None) -> str:
    """What the call read of its parameters, as `cache inspect` says it."""
    if reads is None:
        return "(not recorded by the version that made it)"
    if reads["everything"]:
        return "the whole parameter set"
    paths = [path for path, _ in reads["items"]]
    return ", ".join(paths) + " (of its parameters)" if paths else "none of its parameters"


def _show_run(run: dict[str, Any], timings: dict[str, Any]) -> None:
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


def _show_code(git: dict[str, Any], versions: dict[str, Any]) -> None:
    if git.get("commit"):
        git_text = str(git["commit"]) + ("  (uncommitted changes)" if git.get("dirty") else "")
    else:
        git_text = "(not a git repository)"
    _grid(
        [
            ("git", git_text),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "(not recorded)"),
        ]
    )


def _show_files(data: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

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
            human_size(f["size"]),
            check,
        )
    for rel in data["orphan_files"]:
        table.add_row("", "", Text(rel), "", Text("not listed in meta.json", "yellow"))
    console.print(Text("files", style="bold"))
    ui.print_rows(console, table)


def _show_lineage(upstream: list[dict[str, Any]], downstream: list[dict[str, Any]]) -> None:
    from rich.text import Text
    from rich.tree import Tree

    up = Tree(Text("computed from", style="bold"))
    _upstream_tree(up, upstream)
    if not upstream:
        up.add(Text("(no cached inputs)", style="dim"))
    console.print(up)
    down = Tree(Text("used by", style="bold"))
    _downstream_tree(down, downstream)
    if not downstream:
        down.add(Text("(nothing cached was computed from it)", style="dim"))
    console.print(down)


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
    cachers = [_cacher_label(c) for c in parts.get("cachers") or []]
    rows.append(("cachers", ", ".join(cachers) or "none"))
    rows += [
        (f"input {name}", _version_label(v)) for name, v in (parts.get("inputs") or {}).items()
    ]
    known = {"format", "experiment", "stage", "params", "code", "outputs", "cachers", "inputs"}
    for name, value in parts.items():
        if name not in known:
            rows.append((name, _short(json.dumps(value, default=str), 80)))
    return rows


def _cacher_label(cacher: Any) -> str:
    if not isinstance(cacher, dict):
        return str(cacher)
    name = str(cacher.get("type", cacher)).rsplit(".", 1)[-1]
    return name + (" (configured)" if "config" in cacher else "")


def _version_label(version: Any) -> str:
    if isinstance(version, list):  # an aggregate: one (params hash, version) per record
        return f"{plural(len(version), 'version')} (aggregate)"
    return f"version {_short(version)}"


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
def show_value(value: Any, rows: int) -> None:
    from curifactory_cli.store import dump

    frame = dump.as_frame(value)
    if frame is not None:
        _show_frame(frame, rows, dump.type_name(value))
        return
    if dump.is_json(value):
        text, cut = dump.pretty_json(value)
    else:
        line(f"type: {dump.type_name(value)}", style="dim")
        text, cut = dump.readable_repr(value)
    line(text)
    if cut:
        line(f"… {cut} more lines (export everything with --out FILE.json)", style="dim")


def _show_frame(frame: Any, rows: int, kind: str) -> None:
    from rich.text import Text

    from curifactory_cli.store import dump

    n_rows, n_cols = frame.shape
    line(f"{kind.rsplit('.', 1)[-1]}: {plural(n_rows, 'row')} × {plural(n_cols, 'column')}")
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
    line(f"dtypes: {dtypes}", style="dim")


# ---------------------------------------------------------------------------------- verify
def show_problems(problems: list[dict[str, Any]]) -> None:
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


def show_verify(
    problems: list[dict[str, Any]],
    counts: dict[str, int],
    checked: int,
    files: int,
    removed: tuple[int, int, int, int] | None,
) -> None:
    """The problems, a summary line, and what --fix removed (damaged entries, orphaned
    folders, stray files, bytes freed) or how to remove them."""
    show_problems(problems)
    found = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n)
    line(
        f"checked {plural(checked, 'entry', 'entries')} ({plural(files, 'file')}): "
        + (found or "all fine"),
        style="red" if problems else "green",
    )
    if removed is not None:
        bad, dirs, stray, freed = removed
        line(
            f"removed {plural(bad, 'damaged entry', 'damaged entries')}, "
            f"{plural(dirs, 'orphaned folder')}, "
            f"{plural(stray, 'stray file')} ({human_size(freed)})"
        )
    elif problems:
        line("`curi cache verify --fix` removes them; the next run recomputes what it needs")


# ---------------------------------------------------------------------------------- gc, du
def show_garbage(
    garbage: list[Garbage], root: Path, yes: bool, compacted: list[Compaction] | None = None
) -> None:
    for c in compacted or ():
        line(f"{'index':<10} {'-':<10}  {READS_DIR}/{c.experiment}  {c.summary()}")
    if not garbage:
        if compacted:
            verb = "compacted" if yes else "would compact"
            what = plural(len(compacted), "experiment")
            line(f"{verb} the reads index of {what}; no other garbage")
        else:
            line("nothing to collect")
        return
    for g in garbage:  # one line each, never wrapped (paths stay whole)
        ident = g.entry.short_id if g.entry else "-"
        rel = g.path.relative_to(root).as_posix()
        line(f"{g.kind:<10} {ident:<10}  {rel}  {human_size(g.size)}  ({g.reason})")
    summary = f"{plural(len(garbage), 'item')}, {human_size(sum(g.size for g in garbage))}"
    if yes:
        line(f"removed {summary}")
    else:
        line(f"would remove {summary} (dry run; pass --yes to remove)")


def show_totals(
    location: str, tables: dict[str, list[dict[str, Any]]], total: dict[str, Any]
) -> None:
    """`cache du`: a table per grouping, with entry counts and sizes."""
    if not total["entries"]:
        console.print(f"no cached entries in {location}", markup=False)
        return
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


# ---------------------------------------------------------------------------------- invalidate
def show_invalidated(
    matched: list[Entry],
    downstream: list[Entry],
    changed: int,
    dry_run: bool,
    notes: dict[str, str] | None = None,
) -> None:
    notes = notes or {}
    for label, group in (("matched", matched), ("downstream", downstream)):
        for e in group:
            shared = notes.get(e.key) if label == "matched" else None
            line(f"  {e.short_id}  {e.label()}  ({label}{'; ' + shared if shared else ''})")
    total = len(matched) + len(downstream)
    summary = (
        f"{plural(total, 'entry', 'entries')} ({len(matched)} matched, "
        f"{len(downstream)} downstream)"
    )
    if dry_run:
        line(f"would invalidate {summary} (dry run)")
    else:
        already = total - changed
        note = f"; {already} already were" if already else ""
        line(f"invalidated {summary}{note}; the next run recomputes them")


# ---------------------------------------------------------------------------------- dump
def show_output(entry: Entry, name: str, value: Any, rows: int) -> None:
    """One output of one entry: a heading naming it, then its value."""
    info = entry.outputs[name]
    cacher = str(info.get("cacher", "?")).rsplit(".", 1)[-1]
    lazy = ", lazy" if info.get("lazy") else ""
    line(f"{name}  ({cacher}{lazy}; entry {entry.short_id} {entry.label()})", style="bold")
    show_value(value, rows)


def show_sets(
    entries: list[Entry],
    name: str,
    values: list[tuple[str, Any]],
    table: list[tuple[str, dict[str, Any]]] | None,
    rows: int,
) -> None:
    """One stage's output over parameter sets: a table, a row per set, or each value."""
    info = entries[0].outputs[name]
    cacher = str(info.get("cacher", "?")).rsplit(".", 1)[-1]
    where = f"{entries[0].experiment} / {entries[0].stage}, {plural(len(entries), 'parameter set')}"
    line(f"{name}  ({cacher}; {where})", style="bold")
    if table is not None:
        columns, cells = table_cells(table)
        ui.stream_table(console, columns, cells)
        return
    for entry, (set_name, value) in zip(entries, values):
        line(f"[{set_name}]  entry {entry.short_id}", style="bold")
        show_value(value, rows)


# ---------------------------------------------------------------------------------- sets as a table
def set_table(
    values: list[tuple[str, Any]], output: str
) -> list[tuple[str, dict[str, Any]]] | None:
    """One row per parameter set (`values`: set name, loaded value) when every value is a JSON
    mapping or scalar: the mapping's values (nested ones as `a.b`), or the scalar under the
    output's name. None when a value is anything else (a DataFrame, an array, a list): those
    do not fit a row."""
    from curifactory_cli.run.param_values import flat_values
    from curifactory_cli.store.dump import is_json

    rows = []
    for name, value in values:
        if isinstance(value, dict) and is_json(value):
            rows.append((name, flat_values({str(k): v for k, v in value.items()})))
        elif value is None or isinstance(value, (bool, int, float, str)):
            rows.append((name, {output: value}))
        else:
            return None
    return rows


def table_cells(table: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Columns (`set`, then every key in first-seen order) and display cells of a table."""
    keys = list(dict.fromkeys(k for _, row in table for k in row))
    cells = [[name, *(_json_cell(row[k]) if k in row else "" for k in keys)] for name, row in table]
    return ["set", *keys], cells


def _json_cell(value: Any) -> str:
    from curifactory_cli.store.dump import display_cell

    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return display_cell(value)
    return json.dumps(value, ensure_ascii=False)
