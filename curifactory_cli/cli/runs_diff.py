"""`curi runs diff [A [B]]`: what differs between two recorded runs, as text (sections in a
fixed order, each table only what changed unless --all), JSON, or Markdown for a pull-request
comment. The diff itself is `run.runs_diff`'s, from the run registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from curifactory_cli.cli.common import (
    JsonOpt,
    RegistryOpt,
    console,
    fail,
    open_registry,
    registry_file,
)
from curifactory_cli.cli.console import (
    CONTROL_ESCAPES,
    print_heading,
    stream_table,
    write_json,
    write_line,
    write_text,
)
from curifactory_cli.errors import ConfigError, CurifactoryError

if TYPE_CHECKING:
    from curifactory_cli.run.runs_diff import Call, RunsDiff


def runs_diff_command(
    first: Annotated[
        str | None,
        typer.Argument(
            metavar="[A]",
            help="A run reference, `<experiment>_<n>` or a unique prefix (default: the run "
            "before B).",
        ),
    ] = None,
    second: Annotated[
        str | None,
        typer.Argument(
            metavar="[B]",
            help="The run to compare A with (default: the newest run of A's experiment).",
        ),
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Also the calls, outputs and metrics that are the same in both."
        ),
    ] = False,
    md: Annotated[bool, typer.Option("--md", help="Markdown (a pull-request comment).")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What differs between two runs: parameter sets (field by field), the code of each
    stage, the stage calls run in one and reused in the other (and why), whether outputs are
    byte-identical (by checksum), and the metrics' deltas. Without B: A against the newest
    run of its experiment (A being the newest: the run before it against A); without A
    either: the newest run against the one before it. Read from the run registry (a run
    recorded by an older curi: from its entries' metadata while they exist)."""
    from curifactory_cli.run.runs_diff import chosen_runs, diff_runs

    if as_json and md:
        raise fail(ConfigError("--json and --md both choose the format", hint="give one."))
    try:
        runs = open_registry(registry_file(registry))
        diff = diff_runs(runs, *chosen_runs(runs, first, second))
    except CurifactoryError as exc:
        raise fail(exc) from None
    if as_json:
        write_json(console, diff.to_json(every))
    elif md:
        write_text(console, markdown(diff, every))
    else:
        _print_text(diff, every)


# ------------------------------------------------------------------------------ text
def _print_text(diff: RunsDiff, every: bool) -> None:
    a_name, b_name = diff.names
    for label, run, name in (("A", diff.a, a_name), ("B", diff.b, b_name)):
        line = f"{label}  {name:<{_width(diff)}}  {run.reference}  {_run_text(run)}"
        write_line(console, _safe(line))
    for title, lines in _sections(diff):
        write_line(console, "")
        print_heading(console, _safe(title))
        for line in lines:
            write_line(console, _safe(f"  {line}"))
    calls = diff.shown_calls(every)
    write_line(console, "")
    print_heading(console, _calls_title(diff, every))
    if calls:
        stream_table(
            console, ["stage", "set", a_name, b_name, f"why ({b_name})"], _call_rows(calls)
        )
    outputs = diff.shown_outputs(every)
    write_line(console, "")
    print_heading(console, _outputs_title(diff))
    if outputs:
        stream_table(
            console,
            ["stage", "set", "output", "bytes"],
            ([o.stage, o.record, o.output or "?", o.status] for o in outputs),
        )
    metrics = diff.shown_metrics(every)
    write_line(console, "")
    print_heading(console, _metrics_title(diff))
    if metrics:
        stream_table(
            console,
            ["set", "metric", a_name, b_name, "delta", "%"],
            _metric_rows(metrics),
            right=(a_name, b_name, "delta", "%"),
        )
    for note in diff.notes:
        write_line(console, "")
        write_line(console, _safe(f"note: {note}"))


def _width(diff: RunsDiff) -> int:
    return max(len(n) for n in diff.names)


def _run_text(run: Any) -> str:
    git = run.git
    where = f"git {git.commit[:12]}{'*' if git.dirty else ''}" if git.commit else "no git"
    return f"{run.status}, {where}"


def _sections(diff: RunsDiff) -> list[tuple[str, list[str]]]:
    """The parameter and code sections: a title with counts, then a line per change."""
    lines = []
    for s in diff.sets_changed:
        if s.unknown:
            lines.append(f"{s.name}  changed (its values were not recorded)")
        else:
            lines.append(
                f"{s.name}  " + ", ".join(f"{k} {a} -> {b}" for k, a, b in s.shown_fields())
            )
    lines += [f"added    {name}" for name in diff.sets_added]
    lines += [f"removed  {name}" for name in diff.sets_removed]
    counts = _counted(
        [
            (len(diff.sets_changed), "changed"),
            (len(diff.sets_added), "added"),
            (len(diff.sets_removed), "removed"),
        ]
    )
    sets = ("parameter sets: " + (counts or "the same"), lines)
    code_lines = [f"{c.stage}  {_code_text(c)}" for c in diff.code]
    code_lines += [f"added    {s} (a stage B calls and A did not)" for s in diff.stages_added]
    code_lines += [f"removed  {s} (a stage A called and B does not)" for s in diff.stages_removed]
    n = len(diff.code)
    unknown = any(note.startswith("code:") for note in diff.notes)
    title = "code: " + (
        "unknown (see the note below)"
        if unknown
        else f"{n} stage{'s' if n != 1 else ''} changed"
        if n
        else "the same"
    )
    return [sets, (title, code_lines)]


def _counted(pairs: list[tuple[int, str]]) -> str:
    return ", ".join(f"{n} {what}" for n, what in pairs if n)


def _code_text(change: Any) -> str:
    parts = []
    if change.changed:
        parts.append("changed: " + ", ".join(change.changed))
    if change.added:
        parts.append("new: " + ", ".join(change.added))
    if change.removed:
        parts.append("no longer used: " + ", ".join(change.removed))
    return "; ".join(parts)


def _calls_title(diff: RunsDiff, every: bool) -> str:
    a_name, b_name = diff.names
    counts: dict[str, int] = {}
    for call in diff.shown_calls():
        kind = call.kind(a_name, b_name)
        counts[kind] = counts.get(kind, 0) + 1
    same = sum(c.same for c in diff.calls)
    parts = [f"{n} {kind}" for kind, n in counts.items()]
    if same:
        parts.append(f"{same} the same in both" + ("" if every else " (--all lists them)"))
    return "stage calls: " + ("; ".join(parts) or "none")


def _call_rows(calls: list[Call]) -> list[list[str]]:
    return [
        [
            c.stage,
            c.record,
            c.a.outcome if c.a is not None else "-",
            c.b.outcome if c.b is not None else "-",
            c.reason,
        ]
        for c in calls
    ]


def _outputs_title(diff: RunsDiff) -> str:
    counts = diff.output_counts()
    text = _counted([(counts["differ"], "differ"), (counts["identical"], "identical")])
    if counts["unknown"]:
        text += (", " if text else "") + f"{counts['unknown']} unknown"
    return "outputs (by checksum): " + (text or "none compared")


def _metrics_title(diff: RunsDiff) -> str:
    changed = sum(m.changed for m in diff.metrics)
    unchanged = len(diff.metrics) - changed
    if not diff.metrics:
        return "metrics: none recorded"
    return "metrics: " + _counted([(changed, "changed"), (unchanged, "unchanged")])


def _metric_rows(metrics: list[Any]) -> list[list[str]]:
    from curifactory_cli.metrics import format_metric

    rows = []
    for m in metrics:
        delta, percent = m.delta, m.percent
        rows.append(
            [
                m.set,
                m.metric,
                "-" if m.a is None else format_metric(m.a),
                "-" if m.b is None else format_metric(m.b),
                "" if delta is None else _signed(format_metric(delta)),
                "" if percent is None else _signed(f"{percent:.1f}") + "%",
            ]
        )
    return rows


def _signed(text: str) -> str:
    return text if text.startswith(("-", "nan")) else "+" + text


def _safe(text: str) -> str:
    return text.translate(CONTROL_ESCAPES)  # names and values are data


# ------------------------------------------------------------------------------ Markdown
def markdown(diff: RunsDiff, every: bool = False) -> str:
    """The diff as Markdown: the runs, each section's title, and its changes."""
    a_name, b_name = diff.names
    out = [f"### `{a_name}` -> `{b_name}`", ""]
    out += [f"- A: `{diff.a.reference}` ({_run_text(diff.a)})"]
    out += [f"- B: `{diff.b.reference}` ({_run_text(diff.b)})", ""]
    for title, lines in _sections(diff):
        out.append(f"**{title}**")
        out += ["", *(f"- {_md_cell(line)}" for line in lines), ""] if lines else [""]
    out += [f"**{_calls_title(diff, every)}**", ""]
    calls = diff.shown_calls(every)
    if calls:
        headers = ["stage", "set", a_name, b_name, f"why ({b_name})"]
        out += [*_md_table(headers, _call_rows(calls), ()), ""]
    out += [f"**{_outputs_title(diff)}**", ""]
    outputs = diff.shown_outputs(every)
    if outputs:
        rows = [[o.stage, o.record, o.output or "?", o.status] for o in outputs]
        out += [*_md_table(["stage", "set", "output", "bytes"], rows, ()), ""]
    out += [f"**{_metrics_title(diff)}**", ""]
    metrics = diff.shown_metrics(every)
    if metrics:
        headers = ["set", "metric", a_name, b_name, "delta", "%"]
        out += [*_md_table(headers, _metric_rows(metrics), (2, 3, 4, 5)), ""]
    out += [f"> {_md_cell(note)}" for note in diff.notes]
    return "\n".join(out).rstrip("\n") + "\n"


def _md_table(headers: list[str], rows: list[list[str]], right: tuple[int, ...]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("--:" if i in right else "---" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _md_cell(text: str) -> str:
    return _safe(text).replace("|", "\\|").replace("\n", " ")
