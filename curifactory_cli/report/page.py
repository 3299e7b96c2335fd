"""The HTML of the run report and of the index of runs: one file each, inline CSS and
script, nothing fetched from the network."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from curifactory_cli.report import metrics_html
from curifactory_cli.report.layout import OUTCOMES

if TYPE_CHECKING:
    from curifactory_cli.registry.records import GitInfo, ParamSetRecord, RunRecord, StageRecord
    from curifactory_cli.report.metrics_html import Summary

CSS = (
    """
:root { --executed: #2e9d4f; --cached: #2f7fc1; --failed: #d23b3b; --skipped: #9aa0a6;
  --ink: #1d232a; --muted: #5f6b76; --line: #dde2e7; --band: #f5f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0; background: #fff; }
header { padding: 18px 28px 12px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .sub { color: var(--muted); }
nav { padding: 8px 28px; border-bottom: 1px solid var(--line); position: sticky; top: 0;
  background: #fff; z-index: 2; }
nav a { margin-right: 16px; color: var(--ink); text-decoration: none; font-weight: 600; }
main { padding: 8px 28px 40px; max-width: 1400px; }
h2 { font-size: 18px; margin: 26px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
h4 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
table { border-collapse: collapse; }
td, th { padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
table.grid td, table.grid th { border-bottom: 1px solid var(--line); padding: 4px 10px; }
table.grid td.reason { overflow-wrap: anywhere; min-width: 12em; }  /* a set name: one long word */
table.grid th { background: var(--band); position: sticky; top: 38px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.info th { color: var(--muted); font-weight: 500; white-space: nowrap; }
.info pre { white-space: pre-wrap; overflow-wrap: anywhere; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
pre { background: var(--band); padding: 8px 10px; border-radius: 4px; overflow: auto;
  max-height: 480px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-weight: 600; font-size: 12px; }
.status.complete { background: var(--executed); } .status.error { background: var(--failed); }
.status.interrupted { background: #c77c02; } .status.running { background: var(--cached); }
.status.died { background: #6b4c9a; }
.error-box { border-left: 4px solid var(--failed); background: #fdf0f0; padding: 8px 12px; }
.pill { display: inline-block; padding: 0 6px; border-radius: 8px; color: #fff; font-size: 12px; }
.pill.executed { background: var(--executed); } .pill.cached { background: var(--cached); }
.pill.failed { background: var(--failed); } .pill.skipped { background: var(--skipped); }
.shared { display: block; font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.counts { white-space: nowrap; }
.graph-wrap { overflow: auto; border: 1px solid var(--line); border-radius: 6px;
  max-height: 720px; background: #fff; }
svg.graph text { font-size: 12px; text-anchor: middle; fill: #fff; pointer-events: none; }
svg.graph .band rect { fill: var(--band); stroke: var(--line); }
svg.graph .band text { text-anchor: start; fill: var(--muted); font-weight: 600; }
svg.graph .edge { fill: none; stroke: #9aa5b1; stroke-width: 1.2; marker-end: url(#arrow); }
svg.graph .arrowhead { fill: #9aa5b1; }
svg.graph .node { cursor: pointer; }
svg.graph .node rect { stroke: rgba(0,0,0,.18); }
svg.graph .node.executed > rect { fill: var(--executed); }
svg.graph .node.cached > rect { fill: var(--cached); }
svg.graph .node.failed > rect { fill: var(--failed); }
svg.graph .node.skipped > rect { fill: var(--skipped); stroke-dasharray: 4 3; }
svg.graph .node.aggregate > rect { stroke: #1d232a; stroke-width: 2; }
svg.graph .node text.record { fill: var(--muted); font-size: 11px; }
svg.graph .node.stage > rect { fill: #fff; stroke: #7b8794; }
svg.graph .node.stage text { fill: var(--ink); }
svg.graph .bar.executed { fill: var(--executed); } svg.graph .bar.cached { fill: var(--cached); }
svg.graph .bar.failed { fill: var(--failed); } svg.graph .bar.skipped { fill: var(--skipped); }
svg.graph .node.selected > rect { stroke: #ffb000; stroke-width: 3; }
#details { margin: 10px 0; min-height: 1em; }
.legend span { margin-right: 12px; }
.record-reportables { display: flex; flex-wrap: wrap; gap: 6px 28px; align-items: flex-start; }
.reportable { margin: 6px 0 18px; flex: 1 1 440px; max-width: 100%; min-width: 0; overflow: auto; }
.reportable:has(table), .reportable:has(pre) { flex-basis: auto; }
.reportable h4 { color: var(--ink); }
.reportable img { max-width: 100%; max-height: 520px; }
.reportable table.df td, .reportable table.df th { border-bottom: 1px solid var(--line);
  padding: 2px 8px; font-variant-numeric: tabular-nums; }
.shape { color: var(--muted); margin: 2px 0; }
details > summary { cursor: pointer; }
details.stage-log { margin: 4px 0; } details.call { margin: 4px 0 4px 20px; }
details.call.failed > summary { color: var(--failed); }
details.call > :not(summary) { margin-left: 16px; }
input#filter { padding: 4px 8px; width: 320px; margin: 6px 0; }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
.dirty { color: var(--failed); font-weight: 700; }
.table-wrap { overflow-x: auto; max-width: 100%; }
"""
    + metrics_html.CSS
)

SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('run-data').textContent);
  var calls = data.calls, body = document.getElementById('calls-body');
  var details = document.getElementById('details');
  function cell(row, text, cls) {
    var td = document.createElement('td'); td.textContent = text;
    if (cls) td.className = cls; row.appendChild(td); return td;
  }
  var rows = [];
  calls.forEach(function (c, i) {
    var tr = document.createElement('tr'); tr.id = 'call-' + i; tr.dataset.i = i;
    cell(tr, i, 'num'); cell(tr, data.stages[c[0]]); cell(tr, data.records[c[1]]);
    var out = cell(tr, ''); var pill = document.createElement('span');
    pill.className = 'pill ' + data.outcomes[c[2]]; pill.textContent = data.outcomes[c[2]];
    out.appendChild(pill);
    if (data.shared[i] !== undefined) {
      var from = document.createElement('span'); from.className = 'shared';
      from.textContent = 'shared from ' + data.shared[i]; out.appendChild(from);
    }
    cell(tr, c[3] ? c[3].toFixed(3) : '', 'num'); cell(tr, data.reasons[c[6]] || '', 'reason');
    cell(tr, (c[4] || '').slice(0, 16), 'mono').title = c[4] || ''; cell(tr, c[5] || '', 'mono');
    body.appendChild(tr); rows.push(tr);
  });
  document.getElementById('calls-count').textContent = calls.length;
  var filter = document.getElementById('filter');
  filter.addEventListener('input', function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    rows.forEach(function (tr) {
      var text = tr.textContent.toLowerCase();
      tr.style.display = words.every(function (w) { return text.indexOf(w) >= 0; }) ? '' : 'none';
    });
  });
  function show(i) {
    var c = calls[i];
    details.textContent = '';
    var b = document.createElement('b');
    b.textContent = data.stages[c[0]] + ' [' + data.records[c[1]] + ']: ' + data.outcomes[c[2]];
    details.appendChild(b);
    var lines = [c[3] ? 'time: ' + c[3].toFixed(3) + ' s' : '', data.reasons[c[6]] || '',
      data.shared[i] !== undefined ? 'shared from: ' + data.shared[i] : '',
      c[4] ? 'key: ' + c[4] : '', c[5] ? 'entry: ' + c[5] : '',
      c[7].length ? 'inputs from: ' + c[7].map(function (j) {
        return data.stages[calls[j][0]] + ' [' + data.records[calls[j][1]] + ']';
      }).join(', ') : ''];
    lines.forEach(function (t) { if (t) { details.appendChild(document.createElement('br'));
      details.appendChild(document.createTextNode(t)); } });
  }
  document.querySelectorAll('svg.graph .node').forEach(function (g) {
    g.addEventListener('click', function () {
      document.querySelectorAll('svg.graph .selected').forEach(function (s) {
        s.classList.remove('selected'); });
      g.classList.add('selected');
      if (g.dataset.i !== undefined) { show(+g.dataset.i); }
      else { filter.value = g.dataset.stage; filter.dispatchEvent(new Event('input'));
        details.textContent = g.querySelector('title').textContent; }
    });
  });
})();
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def page_html(title: str, body: str, script: str = "", css: str = "") -> str:
    """A whole page: `body` and `script` with the shared CSS (and `css`), nothing fetched."""
    tail = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}{css}</style></head><body>{body}{tail}</body></html>\n"
    )


def embed_json(value: Any) -> str:
    """JSON that cannot end its <script> element early."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def shared_from(
    calls: Sequence[StageRecord], sets: Sequence[ParamSetRecord] | None
) -> dict[int, str]:
    """Call index -> the set whose entry a cached call used, for the calls served from
    another set's entry (its folder is not the call's set's): that set's name when the run
    ran it, else its hash (it ran in an earlier run)."""
    folders = {s.hash[:16]: s.name for s in sets or ()}
    own = {s.name: s.hash[:16] for s in sets or ()}
    out: dict[int, str] = {}
    for i, c in enumerate(calls):
        if c.outcome != "cached" or c.aggregate or not c.entry or c.record not in own:
            continue
        folder = c.entry.rsplit("/", 2)[-2] if c.entry.count("/") >= 2 else ""
        if folder and folder != own[c.record]:
            out[i] = folders.get(folder) or f"a set of hash {folder[:12]}"
    return out


def run_data(
    calls: Sequence[StageRecord], sets: Sequence[ParamSetRecord] | None = None
) -> dict[str, Any]:
    """The run's stage calls once, compactly: repeated names and reasons as indexes; and
    which set's entry each call served from another set's entry used (`shared`)."""
    stages: dict[str, int] = {}
    records: dict[str, int] = {}
    reasons: dict[str, int] = {}
    outcome_index = {o: i for i, o in enumerate(OUTCOMES)}
    skipped = outcome_index["skipped"]
    rows = []
    for c in calls:
        stage, record, reason = c.stage, c.record, c.reason or ""
        rows.append(
            [
                stages.setdefault(stage, len(stages)),
                records.setdefault(record, len(records)),
                outcome_index.get(c.outcome, skipped),
                round(c.seconds or 0.0, 4),
                c.key or "",
                c.entry or "",
                reasons.setdefault(reason, len(reasons)),
                c.inputs or [],
            ]
        )
    return {
        "stages": list(stages),
        "records": list(records),
        "reasons": list(reasons),
        "outcomes": list(OUTCOMES),
        "calls": rows,
        "shared": {str(i): name for i, name in shared_from(calls, sets).items()},
    }


def _counts(counts: dict[str, int] | None) -> str:
    """The outcomes that happened, as badges kept on one line (a zero is left out: a red
    "0 failed" reads as a failure at a glance)."""
    counts = counts or {}
    shown = [f'<span class="pill {o}">{counts[o]} {o}</span>' for o in OUTCOMES if counts.get(o)]
    if not shown:
        return '<span class="muted">none</span>'
    return f'<span class="counts">{" ".join(shown)}</span>'


def _git(git: GitInfo) -> str:
    if not git.commit:
        return '<span class="muted">not a git repository</span>'
    dirty = ' <span class="dirty" title="uncommitted changes">*</span>' if git.dirty else ""
    return f"<code>{_e(git.commit[:12])}</code>{dirty}"


def _info(run: RunRecord) -> str:
    rows = [
        ("status", f'<span class="status {_e(run.status)}">{_e(run.status)}</span>'),
        ("experiment", f"<code>{_e(run.experiment)}</code>"),
        ("started", _e(run.started)),
        ("duration", "" if run.duration_s is None else f"{float(run.duration_s):.2f} s"),
        ("stage calls", _counts(run.counts)),
        ("command", f"<code>{_e(' '.join(run.command))}</code>"),
        ("reproduce", f"<code>{_e(run.reproduce)}</code>"),
        ("git", _git(run.git)),
        ("host", _e(run.host.host)),
        ("cache", f"<code>{_e(run.cache_dir)}</code>{' (dry)' if run.dry else ''}"),
    ]
    if run.notes:
        rows.append(("notes", f"<pre>{_e(run.notes)}</pre>"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    parts = [f'<table class="info">{body}</table>']
    if run.error:
        where = ""
        if run.failed_stage:
            where = f" in <code>{_e(run.failed_stage)}</code> [{_e(run.failed_record)}]"
        error = f"<pre>{_e(run.error)}</pre>"
        parts.append(f'<div class="error-box"><b>error</b>{where}{error}</div>')
    if run.doc:
        parts.append(f"<h3>About the experiment</h3><pre>{_e(run.doc)}</pre>")
    return "".join(parts)


WIDE = 12  # parameters shown as table columns; more and each set shows its JSON


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, as parameter files address them (`model.C`), so a
    column holds one value; lists and empty mappings stay whole."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td>{value}</td>"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > 80:
        return f'<td title="{_e(text)}">{_e(text[:79])}\u2026</td>'
    return f"<td>{_e(text)}</td>"


def _params(run: RunRecord) -> str:
    sets = run.param_sets or []
    by_file: dict[str, list[ParamSetRecord]] = {}
    for p in sets:
        by_file.setdefault(p.source or "", []).append(p)
    out = [f"<p>{len(sets)} parameter set{'s' if len(sets) != 1 else ''}</p>"]
    for source, group in by_file.items():
        out.append(f"<h3><code>{_e(source)}</code></h3>")
        flat = [None if p.values is None else flatten(p.values) for p in group]
        keys: dict[str, None] = {}
        for values in flat:
            keys.update(dict.fromkeys(values or {}))
        if len(keys) > WIDE:
            for p in group:
                head = f"<b>{_e(p.name)}</b> <code class='muted'>{_e(p.hash)}</code>"
                text = json.dumps(p.values, indent=2, default=str)
                out.append(f"<details><summary>{head}</summary><pre>{_e(text)}</pre></details>")
            continue
        # Parameters with the same value in every set are greyed: the others tell them apart.
        varying = {
            k
            for k in keys
            if len({json.dumps((values or {}).get(k), default=str) for values in flat}) > 1
        }
        head = "".join(f"<th{'' if k in varying else ' class=muted'}>{_e(k)}</th>" for k in keys)
        rows = []
        for p, values in zip(group, flat, strict=True):
            cells = (
                "".join(_cell(values.get(k)) if k in values else "<td></td>" for k in keys)
                if values is not None
                else f'<td colspan="{len(keys) or 1}" class="muted">values not recorded</td>'
            )
            rows.append(
                f"<tr><td><b>{_e(p.name)}</b></td>"
                f"<td class=mono title='{_e(p.hash)}'>{_e(p.hash[:12])}</td>"
                f"{cells}</tr>"
            )
        out.append(
            f'<table class="grid params"><tr><th>name</th><th>hash</th>{head}</tr>'
            f"{''.join(rows)}</table>"
        )
    return "".join(out)


def _timing(summary: list[dict[str, Any]]) -> str:
    head = "".join(
        f"<th{' class=num' if c != 'stage' else ''}>{c}</th>"
        for c in ("stage", "calls", *OUTCOMES, "total s", "mean s", "max s")
    )
    rows = []
    for row in summary:
        mean = row["seconds"] / row["calls"] if row["calls"] else 0.0
        cells = [f"<td><code>{_e(row['stage'])}</code></td>", f"<td class=num>{row['calls']}</td>"]
        cells += [f"<td class=num>{row[o] or ''}</td>" for o in OUTCOMES]
        cells += [f"<td class=num>{v:.3f}</td>" for v in (row["seconds"], mean, row["max"])]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="grid"><tr>{head}</tr>{"".join(rows)}</table>'


def run_page(
    run: RunRecord,
    calls: Sequence[StageRecord],
    summary: list[dict[str, Any]],
    graph: str,
    full_graph: bool,
    reportables: str,
    n_reportables: int,
    logs: str = "",
    metrics: str = "",
) -> str:
    """A run's page; `metrics` is its metrics section (metrics_html.metrics_section), shown
    first."""
    title = run.reference
    data = embed_json(run_data(calls, run.param_sets))
    legend = " ".join(f'<span class="pill {o}">{o}</span>' for o in OUTCOMES)
    graph_note = (
        "One box per stage call, a column per record; click a box for its details."
        if full_graph
        else f"{len(calls)} stage calls, drawn by stage (too many to draw one by one); "
        "click a stage to list its calls below."
    )
    metrics_link = '<a href="#metrics">Metrics</a>' if metrics else ""
    body = f"""
<header><h1>{_e(run.experiment)} <span class="muted">#{_e(run.number)}</span>
 <span class="status {_e(run.status)}">{_e(run.status)}</span></h1>
<div class="sub mono">{_e(run.reference)}</div></header>
<nav>{metrics_link}<a href="#run">Run</a><a href="#params">Parameters</a>
<a href="#graph">Stage graph</a>
<a href="#timing">Timing</a><a href="#logs">Logs</a>
<a href="#reportables">Reportables ({n_reportables})</a><a href="../index.html">All runs</a></nav>
<main>{metrics}
<section id="run"><h2>Run</h2>{_info(run)}</section>
<section id="params"><h2>Parameter sets</h2>{_params(run)}</section>
<section id="graph"><h2>Stage graph</h2><p class="legend">{legend}
<span class="muted">{graph_note}</span></p>
<div class="graph-wrap">{graph}</div><div id="details" class="mono"></div></section>
<section id="timing"><h2>Timing</h2>{_timing(summary)}
<h3>Stage calls (<span id="calls-count">{len(calls)}</span>)</h3>
<input id="filter" type="search" placeholder="filter: stage, record, outcome, key...">
<table class="grid" id="calls"><thead><tr><th class=num>#</th><th>stage</th><th>record</th>
<th>outcome</th><th class=num>s</th><th>reason</th><th>key</th><th>entry</th></tr></thead>
<tbody id="calls-body"></tbody></table></section>
<section id="logs"><h2>Logs</h2>{logs}</section>
<section id="reportables"><h2>Reportables</h2>{reportables}</section>
</main>
<script type="application/json" id="run-data">{data}</script>"""
    return page_html(title, body, SCRIPT + metrics_html.SORT_SCRIPT)


def reportable_html(title: str, body: str) -> str:
    anchor = "".join(c if c.isalnum() or c in "-_" else "-" for c in title)
    return f'<div class="reportable" id="r-{_e(anchor)}"><h4>{_e(title)}</h4>{body}</div>'


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _when(started: Any) -> str:
    """A start time that may break between its date and its time, and nowhere else: the
    index's columns then fit beside long notes and commands."""
    date, sep, time = str(started or "").partition("T")
    if not sep:
        return f"<span class=nowrap>{_e(started)}</span>"
    return f"<span class=nowrap>{_e(date)}T</span><wbr><span class=nowrap>{_e(time)}</span>"


def index_page(
    runs: Sequence[RunRecord],
    reports: set[str],
    metrics: dict[str, dict[str, Summary]] | None = None,
) -> str:
    """The index of runs, by experiment, newest first; `metrics`: each run's metrics over its
    sets (by reference), shown as columns of its experiment (see metrics_html.summary_cell)."""
    metrics = metrics or {}
    by_experiment: dict[str, list[RunRecord]] = {}
    for run in runs:  # newest first already
        by_experiment.setdefault(run.experiment, []).append(run)
    out = [
        "<header><h1>Runs</h1>"
        f'<div class="sub">{_count(len(runs), "run")} of '
        f"{_count(len(by_experiment), 'experiment')}</div></header>"
        "<main>"
    ]
    for experiment, group in sorted(by_experiment.items()):
        doc = next((r.doc for r in group if r.doc), None)
        about = f'<p class="muted">{_e(doc.strip().splitlines()[0])}</p>' if doc else ""
        names, more = metrics_html.index_metric_names([metrics.get(r.reference, {}) for r in group])
        if names:
            note = "metrics over each run's sets: one value, or lowest – highest"
            if more:
                note += f"; {_count(more, 'more metric')} on the runs' pages"
            about += f'<p class="muted">{_e(note)}</p>'
        head = (
            "<tr><th>run</th><th>status</th><th>started</th><th class=num>duration</th>"
            "<th>stage calls</th>"
            + "".join(f"<th class=metric>{_e(n)}</th>" for n in names)
            + "<th>git</th><th>notes</th><th>command</th></tr>"
        )
        rows = []
        for run in group:
            ref = run.reference
            name = f'<a href="{_e(ref)}/index.html">{_e(ref)}</a>' if ref in reports else _e(ref)
            duration = "" if run.duration_s is None else f"{run.duration_s:.2f} s"
            notes = (run.notes or "").strip().splitlines()
            error = f'<div class="muted">{_e(run.error)}</div>' if run.error else ""
            summaries = metrics.get(ref, {})
            cells = "".join(metrics_html.summary_cell(summaries.get(n)) for n in names)
            rows.append(
                f"<tr><td class='mono nowrap'>{name}</td>"
                f'<td><span class="status {_e(run.status)}">{_e(run.status)}</span>'
                f"{error}</td><td>{_when(run.started)}</td>"
                f"<td class=num>{duration}</td>"
                f"<td>{_counts(run.counts)}</td>{cells}<td>{_git(run.git)}</td>"
                f"<td>{_e(notes[0] if notes else '')}</td>"
                f"<td><code>{_e(' '.join(run.command))}</code></td></tr>"
            )
        out.append(
            f"<h2><code>{_e(experiment)}</code> <span class='muted'>({len(group)})</span></h2>"
            f'{about}<table class="grid">{head}{"".join(rows)}</table>'
        )
    out.append("</main>")
    return page_html("curi runs", "".join(out))
