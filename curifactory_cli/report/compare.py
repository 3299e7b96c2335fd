"""The comparison page of two runs (`curi report --compare A B`): what `curi runs diff`
shows, in the same order (parameter sets, code, stage calls, outputs, metric deltas), and per
metric a small chart of both runs' values across the sets. One file, inline CSS, script and
SVG; nothing fetched from the network.

The diff is run.runs_diff's, built from the registry by the run layer and handed in: this
module only writes it as HTML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from curifactory_cli.metrics import format_metric
from curifactory_cli.report.metrics_html import SORT_SCRIPT, Cell, Table, sort_number, table_html
from curifactory_cli.report.page import page_html

if TYPE_CHECKING:
    from curifactory_cli.registry.records import StageRecord
    from curifactory_cli.run.runs_diff import Call, Metric, RunsDiff

CHART_SETS = 40  # rows of a chart; with more sets, those whose value moved most
CHART_CSS = """
.charts { display: flex; flex-wrap: wrap; gap: 10px 36px; }
figure.chart { margin: 8px 0; }
figure.chart figcaption { font-weight: 600; margin-bottom: 2px; }
svg.chart text { font-size: 11px; fill: var(--ink); }
svg.chart text.tick { fill: var(--muted); text-anchor: middle; }
svg.chart line.grid { stroke: var(--line); }
svg.chart line.move { stroke: #9aa5b1; stroke-width: 2; }
svg.chart circle.a { fill: #fff; stroke: #2f7fc1; stroke-width: 2; }
svg.chart circle.b { fill: #e07b00; }
.key .a { color: #2f7fc1; } .key .b { color: #e07b00; }
"""
_LABEL, _LEFT, _RIGHT, _TOP, _ROW = 26, 190, 520, 30, 18  # label characters; the plot's box


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def compare_page(diff: RunsDiff, reports: set[str]) -> str:
    """The page comparing run A with run B (`reports`: the runs with a report folder, linked)."""
    a_name, b_name = diff.names
    sections = [  # (anchor, link, heading, content)
        ("runs", "Runs", "Runs", _runs(diff, reports)),
        ("params", "Parameters", _params_title(diff), _params(diff)),
        ("code", "Code", _code_title(diff), _code(diff)),
        ("calls", "Stage calls", _calls_title(diff), _calls(diff)),
        ("outputs", "Outputs", _outputs_title(diff), _outputs(diff)),
        ("metrics", "Metrics", _metrics_title(diff), _metrics(diff)),
        ("charts", "Charts", "Metrics across the sets", _charts(diff)),
    ]
    if diff.notes:
        notes = "".join(f"<li>{_e(n)}</li>" for n in diff.notes)
        sections.append(("notes", "Notes", "What this comparison cannot tell", f"<ul>{notes}</ul>"))
    nav = "".join(f'<a href="#{ident}">{link}</a>' for ident, link, _, _ in sections)
    body = (
        f"<header><h1>{_e(a_name)} <span class='muted'>\u2192</span> {_e(b_name)}</h1>"
        f'<div class="sub mono">{_e(diff.a.reference)} \u2192 {_e(diff.b.reference)}</div>'
        f'</header><nav>{nav}<a href="../index.html">All runs</a></nav><main>'
        + "".join(
            f'<section id="{i}"><h2>{_e(t)}</h2>{html}</section>' for i, _, t, html in sections
        )
        + "</main>"
    )
    return page_html(f"{a_name} \u2192 {b_name}", body, SORT_SCRIPT, CHART_CSS)


# ------------------------------------------------------------------------------ sections
def _runs(diff: RunsDiff, reports: set[str]) -> str:
    rows = []
    for label, run, name in (("A", diff.a, diff.names[0]), ("B", diff.b, diff.names[1])):
        ref = run.reference
        shown = f'<a href="../{_e(ref)}/index.html">{_e(ref)}</a>' if ref in reports else _e(ref)
        git = run.git
        commit = f"{git.commit[:12]}{'*' if git.dirty else ''}" if git.commit else "no git"
        rows.append(
            f"<tr><td><b>{label}</b></td><td class=mono>{_e(name)}</td><td class=mono>{shown}</td>"
            f'<td><span class="status {_e(run.status)}">{_e(run.status)}</span></td>'
            f"<td>{_e(run.started)}</td><td class=mono>{_e(commit)}</td></tr>"
        )
    head = "<tr><th></th><th>run</th><th>reference</th><th>status</th><th>started</th><th>git</th>"
    return f'<table class="grid"><thead>{head}</tr></thead>{"".join(rows)}</table>'


def _counted(pairs: Sequence[tuple[int, str]]) -> str:
    return ", ".join(f"{n} {what}" for n, what in pairs if n)


def _params_title(diff: RunsDiff) -> str:
    counts = _counted(
        [
            (len(diff.sets_changed), "changed"),
            (len(diff.sets_added), "added"),
            (len(diff.sets_removed), "removed"),
        ]
    )
    return "Parameter sets: " + (counts or "the same")


def _params(diff: RunsDiff) -> str:
    a_name, b_name = diff.names
    rows = []
    for change in diff.sets_changed:
        if change.unknown:
            rows.append(
                f"<tr><td>{_e(change.name)}</td><td colspan=3 class=muted>changed (its values "
                "were not recorded)</td></tr>"
            )
        for key, a, b in change.shown_fields():
            rows.append(
                f"<tr><td>{_e(change.name)}</td><td class=mono>{_e(key)}</td>"
                f"<td class=mono>{_e(a)}</td><td class=mono>{_e(b)}</td></tr>"
            )
    out = []
    if rows:
        head = f"<tr><th>set</th><th>parameter</th><th>{_e(a_name)}</th><th>{_e(b_name)}</th></tr>"
        out.append(f'<table class="grid" id="set-changes">{head}{"".join(rows)}</table>')
    for names, whose in ((diff.sets_added, b_name), (diff.sets_removed, a_name)):
        if names:
            listed = ", ".join(f"<b>{_e(n)}</b>" for n in names)
            out.append(f"<p>only in {_e(whose)}: {listed}</p>")
    return "".join(out)


def _code_title(diff: RunsDiff) -> str:
    if any(note.startswith("code:") for note in diff.notes):
        return "Code: unknown (see below)"
    n = len(diff.code)
    return f"Code: {n} stage{'s' if n != 1 else ''} changed" if n else "Code: the same"


def _code(diff: RunsDiff) -> str:
    a_name, b_name = diff.names
    rows = [
        f"<tr><td class=mono>{_e(c.stage)}</td><td class=mono>{_e(', '.join(c.changed))}</td>"
        f"<td class=mono>{_e(', '.join(c.added))}</td>"
        f"<td class=mono>{_e(', '.join(c.removed))}</td></tr>"
        for c in diff.code
    ]
    out = []
    if rows:
        head = "<tr><th>stage</th><th>changed</th><th>new</th><th>no longer used</th></tr>"
        out.append(f'<table class="grid" id="code-changes">{head}{"".join(rows)}</table>')
    for stages, whose in ((diff.stages_added, b_name), (diff.stages_removed, a_name)):
        if stages:
            out.append(f"<p>stages only {_e(whose)} calls: {_e(', '.join(stages))}</p>")
    return "".join(out)


def _calls_title(diff: RunsDiff) -> str:
    a_name, b_name = diff.names
    counts: dict[str, int] = {}
    for call in diff.shown_calls():
        kind = call.kind(a_name, b_name)
        counts[kind] = counts.get(kind, 0) + 1
    parts = [f"{n} {kind}" for kind, n in counts.items()]
    same = sum(c.same for c in diff.calls)
    if same:
        parts.append(f"{same} the same in both")
    return "Stage calls: " + ("; ".join(parts) or "none")


def _pill(call: StageRecord | None) -> str:
    if call is None:
        return '<span class="muted">\u2013</span>'
    return f'<span class="pill {_e(call.outcome)}">{_e(call.outcome)}</span>'


def _calls(diff: RunsDiff) -> str:
    calls: list[Call] = diff.shown_calls()
    if not calls:
        return '<p class="muted">Every stage call did the same in both runs.</p>'
    a_name, b_name = diff.names
    rows = [
        f"<tr><td class=mono>{_e(c.stage)}</td><td>{_e(c.record)}</td><td>{_pill(c.a)}</td>"
        f"<td>{_pill(c.b)}</td><td class=reason>{_e(c.reason)}</td></tr>"
        for c in calls
    ]
    head = (
        f"<tr><th>stage</th><th>set</th><th>{_e(a_name)}</th><th>{_e(b_name)}</th>"
        f"<th>why ({_e(b_name)})</th></tr>"
    )
    return f'<table class="grid" id="calls">{head}{"".join(rows)}</table>'


def _outputs_title(diff: RunsDiff) -> str:
    counts = diff.output_counts()
    text = _counted([(counts["differ"], "differ"), (counts["identical"], "identical")])
    if counts["unknown"]:
        text += (", " if text else "") + f"{counts['unknown']} unknown"
    return "Outputs (by checksum): " + (text or "none compared")


def _outputs(diff: RunsDiff) -> str:
    outputs = diff.shown_outputs()
    if not outputs:
        return ""
    rows = [
        f"<tr><td class=mono>{_e(o.stage)}</td><td>{_e(o.record)}</td>"
        f"<td class=mono>{_e(o.output or '?')}</td><td>{_e(o.status)}</td></tr>"
        for o in outputs
    ]
    head = "<tr><th>stage</th><th>set</th><th>output</th><th>bytes</th></tr>"
    return f'<table class="grid" id="outputs-differ">{head}{"".join(rows)}</table>'


def _metrics_title(diff: RunsDiff) -> str:
    if not diff.metrics:
        return "Metrics: none recorded"
    changed = sum(m.changed for m in diff.metrics)
    return "Metrics: " + _counted(
        [(changed, "changed"), (len(diff.metrics) - changed, "unchanged")]
    )


def _metrics(diff: RunsDiff) -> str:
    metrics = diff.shown_metrics()
    if not metrics:
        return ""
    a_name, b_name = diff.names
    rows = []
    for m in metrics:
        delta, percent = m.delta, m.percent
        rows.append(
            [
                Cell(m.set),
                Cell(m.metric),
                Cell("\u2013" if m.a is None else format_metric(m.a), sort_number(m.a)),
                Cell("\u2013" if m.b is None else format_metric(m.b), sort_number(m.b)),
                Cell("" if delta is None else _signed(format_metric(delta)), sort_number(delta)),
                Cell("" if percent is None else _signed(f"{percent:.1f}") + "%", percent),
            ]
        )
    columns = ["set", "metric", a_name, b_name, "delta", "%"]
    table = Table("", columns, rows, numeric=set(columns[2:]), element_id="metric-deltas")
    return table_html(table)


def _signed(text: str) -> str:
    return text if text.startswith(("-", "nan")) else "+" + text


# ------------------------------------------------------------------------------ charts
def _charts(diff: RunsDiff) -> str:
    by_metric: dict[str, list[Metric]] = {}
    for m in diff.metrics:
        by_metric.setdefault(m.metric, []).append(m)
    if not by_metric:
        return '<p class="muted">Neither run recorded a metric (record.metric).</p>'
    a_name, b_name = diff.names
    key = (
        f'<p class="key"><span class="a">\u25cb {_e(a_name)}</span> &nbsp; '
        f'<span class="b">\u25cf {_e(b_name)}</span> &nbsp; <span class="muted">one row per '
        "parameter set; a line joins its two values</span></p>"
    )
    figures = "".join(_chart(name, rows) for name, rows in by_metric.items())
    return f'{key}<div class="charts">{figures}</div>'


def _number(value: Any) -> float | None:
    if not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _chart(metric: str, rows: list[Metric]) -> str:
    """One metric's values in both runs, a row per set: A hollow, B filled."""
    shown = rows
    caption = metric
    if len(rows) > CHART_SETS:
        moved = sorted(rows, key=lambda m: -abs(_number(m.delta) or 0.0))
        keep = {id(m) for m in moved[:CHART_SETS]}
        shown = [m for m in rows if id(m) in keep]
        caption += f" (the {CHART_SETS} of {len(rows)} sets that moved most)"
    numbers = [v for m in shown for v in (_number(m.a), _number(m.b)) if v is not None]
    low, high = (min(numbers), max(numbers)) if numbers else (0.0, 1.0)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad

    def x(value: float) -> float:
        return _LEFT + (value - low) / (high - low) * (_RIGHT - _LEFT)

    height = _TOP + len(shown) * _ROW + 6
    parts = []
    for tick in (low, (low + high) / 2, high):
        at = round(x(tick), 1)
        parts.append(
            f'<line class="grid" x1="{at}" x2="{at}" y1="{_TOP - 8}" y2="{height - 4}"/>'
            f'<text class="tick" x="{at}" y="{_TOP - 14}">{_e(f"{tick:.3g}")}</text>'
        )
    for i, m in enumerate(shown):
        y = _TOP + i * _ROW + _ROW / 2
        # Cut in the middle: grid names differ at their end (the full name is the tooltip).
        label = m.set
        if len(label) > _LABEL:
            label = label[: _LABEL // 2 - 1] + "\u2026" + label[-(_LABEL // 2) :]
        title = f"{m.set}: {_shown(m.a)} \u2192 {_shown(m.b)}"
        parts.append(
            f'<g class="set"><title>{_e(title)}</title><text x="4" y="{y + 4}">{_e(label)}</text>'
        )
        a, b = _number(m.a), _number(m.b)
        if a is not None and b is not None:
            parts.append(f'<line class="move" x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y}" y2="{y}"/>')
        if a is not None:
            # Wider than B's point: a value the same in both is a dot in a ring.
            parts.append(f'<circle class="a" cx="{x(a):.1f}" cy="{y}" r="5.5"/>')
        if b is not None:
            parts.append(f'<circle class="b" cx="{x(b):.1f}" cy="{y}" r="3.5"/>')
        parts.append("</g>")
    svg = (
        f'<svg class="chart" width="{_RIGHT + 24}" height="{height}" '
        f'viewBox="0 0 {_RIGHT + 24} {height}" role="img" aria-label="{_e(metric)}">'
        f"{''.join(parts)}</svg>"
    )
    return (
        f'<figure class="chart" data-metric="{_e(metric)}">'
        f"<figcaption>{_e(caption)}</figcaption>{svg}</figure>"
    )


def _shown(value: Any) -> str:
    return "\u2013" if value is None else format_metric(value)
