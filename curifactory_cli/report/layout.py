"""The stage graph of a run as an SVG, laid out here (no graphviz).

Layered: a stage call's row is its depth (the longest chain of inputs above it), its column
its record's, so each record reads top to bottom as a column of boxes inside a labelled
band, and an aggregate draws the edges of every record it joins. Boxes are coloured by
outcome and carry their details in a `<title>` (shown on hover) and `data-i` (the call's
position, for the page's script).

A run too big to read that way (more than FULL_MAX calls or FULL_RECORDS records) is drawn
by stage instead: one box per stage with its number of calls by outcome, edges where any
call of one feeds a call of the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from curifactory_cli.registry.records import StageRecord

FULL_MAX = 400
FULL_RECORDS = 40

BOX_W, BOX_H = 150, 34
GAP_X, GAP_Y = 18, 34
BAND_PAD, LABEL_H, MARGIN = 8, 18, 12
CHARS = 21  # of a name that fits in a box
LINE_H = 14  # of each further line of a record's label
LABEL_LINES = 4  # a record's label wraps onto at most this many lines
BOLD_W = 8.0  # px per character of a band's (bold) label, with room for wide glyphs
BREAKS = "_.=-/, "  # a label line preferably ends after one of these


def depths(calls: Sequence[StageRecord]) -> list[int]:
    """Each call's depth; inputs always come earlier in trace order, so one pass does."""
    out: list[int] = []
    for call in calls:
        above = [out[i] for i in call.inputs or () if 0 <= i < len(out)]
        out.append(1 + max(above) if above else 0)
    return out


def graph_svg(calls: Sequence[StageRecord], summary: list[dict[str, Any]]) -> tuple[str, bool]:
    """The run's graph and whether it is the full one (False: summarised by stage, from
    `summary`, which is `stage_summary(calls)`)."""
    records = {call.record for call in calls}
    if len(calls) <= FULL_MAX and len(records) <= FULL_RECORDS:
        return _full(calls), True
    return _by_stage(calls, summary), False


def _short(text: str, chars: int = CHARS) -> str:
    """The text cut in the middle to `chars`: names told apart by their start (a stage's
    purpose) or by their end (a grid set's last value) both stay told apart."""
    if len(text) <= chars:
        return text
    head = chars // 2
    return text[:head] + "\u2026" + text[len(text) - (chars - 1 - head) :]


def wrap(text: str, chars: int, lines: int = LABEL_LINES) -> list[str]:
    """The text in lines of at most `chars`, broken after a separator where one is near the
    end of a line, preferably where a grid name's value ends (`sweep_slope=0.5_` /
    `n_rows=50`) when that takes no more lines; past `lines` lines, the last shown line
    ends with the text's end, so sets named alike keep what tells them apart."""
    chars = max(chars, 4)
    out = _lines(text, chars, by_value=True)
    dense = _lines(text, chars, by_value=False)
    if len(dense) < len(out):
        out = dense
    if len(out) > lines:
        out = [*out[: lines - 1], "\u2026" + text[len(text) - (chars - 1) :]]
    return out


def _lines(text: str, chars: int, by_value: bool) -> list[str]:
    out: list[str] = []
    rest = text
    while len(rest) > chars:
        cut = 0
        if by_value:  # the last "_" ending a "key=value", if it leaves a line well filled
            for i in range(chars - 1, (chars * 3) // 5 - 2, -1):
                eq = rest.rfind("=", 0, i)
                if rest[i] == "_" and eq >= 0 and "_" not in rest[eq:i]:
                    cut = i + 1
                    break
        cut = cut or max(rest.rfind(c, chars // 2, chars) for c in BREAKS) + 1 or chars
        out.append(rest[:cut])
        rest = rest[cut:]
    out.append(rest)
    return out


def _label(x: float, y: float, lines: list[str]) -> str:
    spans = "".join(
        f'<tspan x="{x:.0f}" dy="{LINE_H if k else 0}">{escape(line)}</tspan>'
        for k, line in enumerate(lines)
    )
    return f'<text x="{x:.0f}" y="{y:.0f}">{spans}</text>'


def _edge(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (y1 + y2) / 2
    curve = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}"
    return f'<path class="edge" d="{curve}"/>'


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(label)}">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/></marker>'
        "</defs>" + "".join(body) + "</svg>"
    )


def _full(calls: Sequence[StageRecord]) -> str:
    depth = depths(calls)
    joining = _joining(calls)
    order, slot, width_of = _slots(calls, depth, joining)
    left: dict[str, float] = {}
    labels: dict[str, list[str]] = {}
    x = MARGIN
    for record in order:
        left[record] = x
        inner = width_of[record] * (BOX_W + GAP_X) - GAP_X
        labels[record] = wrap(record, int(inner / BOLD_W))
        x += width_of[record] * (BOX_W + GAP_X) + 2 * BAND_PAD
    # Every band's label gets the lines of the longest, so the boxes of a row line up.
    label_h = LABEL_H + LINE_H * (max(map(len, labels.values()), default=1) - 1)
    top = MARGIN + label_h + BAND_PAD
    step = BOX_H + GAP_Y
    rows = 1 + max((depth[i] for i, c in enumerate(calls) if c.record not in joining), default=-1)
    where: dict[int, tuple[float, float]] = {}
    for i, call in enumerate(calls):
        if call.record not in joining:
            bx = left[call.record] + BAND_PAD + slot[i] * (BOX_W + GAP_X)
            where[i] = (bx, top + depth[i] * step)
    band_h = rows * step - GAP_Y + 2 * BAND_PAD if rows else 0
    _place_joining(calls, depth, joining, where, rows, top)
    width = max([x - GAP_X + MARGIN, 200] + [bx + BOX_W + MARGIN for bx, _ in where.values()])
    height = max(by for _, by in where.values()) + BOX_H + BAND_PAD + MARGIN if where else 60

    body: list[str] = []
    for record, x0 in left.items():
        w = width_of[record] * (BOX_W + GAP_X) - GAP_X + 2 * BAND_PAD
        body.append(
            f'<g class="band"><rect x="{x0:.0f}" y="{MARGIN}" width="{w:.0f}" '
            f'height="{band_h + label_h:.0f}" rx="6"/>'
            f"{_label(x0 + BAND_PAD, MARGIN + 13, labels[record])}"
            f"<title>{escape(record)}</title></g>"
        )
    body += _edges(calls, where)
    body += [_node_box(i, call, where[i], call.record in joining) for i, call in enumerate(calls)]
    return _svg(
        width,
        height + (14 if joining else 0),
        body,
        f"stage graph: {plural(len(calls), 'stage call')}",
    )


def _joining(calls: Sequence[StageRecord]) -> set[str]:
    """A record made only of aggregate calls (Record(manager, None)) has no column: its calls
    go in rows below all the others, each under the middle of the calls it joins."""
    joining = {c.record for c in calls}
    for call in calls:
        if not call.aggregate:
            joining.discard(call.record)
    return joining


def _slots(
    calls: Sequence[StageRecord], depth: list[int], joining: set[str]
) -> tuple[dict[str, int], list[int], dict[str, int]]:
    """Records with a column, in order of first appearance; each call's slot in its record
    at its depth; each record's width in slots."""
    order: dict[str, int] = {}
    slot: list[int] = []
    used: dict[tuple[str, int], int] = {}
    for i, call in enumerate(calls):
        if call.record not in joining:
            order.setdefault(call.record, len(order))
        cell = (call.record, depth[i])
        slot.append(used.get(cell, 0))
        used[cell] = slot[-1] + 1
    width_of = dict.fromkeys(order, 1)
    for (record, _), n in used.items():
        if record in width_of:
            width_of[record] = max(width_of[record], n)
    return order, slot, width_of


def _place_joining(
    calls: Sequence[StageRecord],
    depth: list[int],
    joining: set[str],
    where: dict[int, tuple[float, float]],
    rows: int,
    top: float,
) -> None:
    """The calls of joining records, in rows below the bands, each under the middle of
    the calls it joins (never overlapping the box before it in its row)."""
    step = BOX_H + GAP_Y
    lowest = min((depth[i] for i, c in enumerate(calls) if c.record in joining), default=0)
    right_edge: dict[int, float] = {}  # per joining row: where the next box may start
    for i, call in enumerate(calls):
        if call.record not in joining:
            continue
        row = rows + depth[i] - lowest
        above = [where[j][0] for j in call.inputs or () if j in where]
        bx = sum(above) / len(above) if above else MARGIN
        bx = max(bx, right_edge.get(row, MARGIN))
        right_edge[row] = bx + BOX_W + GAP_X
        where[i] = (bx, top + row * step + (LABEL_H if rows else 0))


def _edges(calls: Sequence[StageRecord], where: dict[int, tuple[float, float]]) -> list[str]:
    out = []
    for i, call in enumerate(calls):
        x2, y2 = where[i]
        for j in call.inputs or ():
            if j in where:
                x1, y1 = where[j]
                out.append(_edge(x1 + BOX_W / 2, y1 + BOX_H, x2 + BOX_W / 2, y2 - 1))
    return out


def _node_box(i: int, call: StageRecord, at: tuple[float, float], joining: bool) -> str:
    bx, by = at
    kind = " aggregate" if call.aggregate else ""
    label = ""
    if joining:  # its record's name, since it has no band
        label = (
            f'<text class="record" x="{bx + BOX_W / 2:.0f}" y="{by + BOX_H + 13:.0f}">'
            f"{escape(_short(call.record))}</text>"
        )
    return (
        f'<g class="node {escape(call.outcome)}{kind}" data-i="{i}" tabindex="0">'
        f"<title>{escape(_tooltip(call))}</title>"
        f'<rect x="{bx:.0f}" y="{by:.0f}" width="{BOX_W}" height="{BOX_H}" rx="5"/>'
        f'<text x="{bx + BOX_W / 2:.0f}" y="{by + BOX_H / 2 + 4:.0f}">'
        f"{escape(_short(call.stage))}</text>{label}</g>"
    )


def _tooltip(call: StageRecord) -> str:
    lines = [f"{call.stage} [{call.record}]", f"{call.outcome}"]
    if call.seconds:
        lines[-1] += f" in {call.seconds:.3f} s"
    if call.reason:
        lines.append(str(call.reason))
    if call.key:
        lines.append(f"key {call.key}")
    if call.entry:
        lines.append(f"entry {call.entry}")
    return "\n".join(lines)


OUTCOMES = ("executed", "cached", "failed", "skipped")


def stage_summary(calls: Sequence[StageRecord]) -> list[dict[str, Any]]:
    """Per stage, in order of first call: its calls by outcome and their time."""
    stages: dict[str, dict[str, Any]] = {}
    for call in calls:
        stage = call.stage
        row = stages.get(stage)
        if row is None:
            row = stages[stage] = {"stage": stage, "calls": 0, "seconds": 0.0, "max": 0.0}
            row.update(dict.fromkeys(OUTCOMES, 0))
        row["calls"] += 1
        outcome = call.outcome
        row[outcome] = row.get(outcome, 0) + 1
        seconds = call.seconds or 0.0
        if seconds:
            row["seconds"] += seconds
            if seconds > row["max"]:
                row["max"] = seconds
    return list(stages.values())


def _by_stage(calls: Sequence[StageRecord], stage_rows: list[dict[str, Any]]) -> str:
    depth = depths(calls)
    stage_depth: dict[str, int] = {}
    edges: set[tuple[str, str]] = set()
    for i, call in enumerate(calls):
        stage = call.stage
        stage_depth[stage] = max(stage_depth.get(stage, 0), depth[i])
        for j in call.inputs or ():
            if 0 <= j < len(calls) and calls[j].stage != stage:
                edges.add((calls[j].stage, stage))
    summary = {row["stage"]: row for row in stage_rows}
    rows: dict[int, list[str]] = {}
    for stage in summary:  # first-call order within a row
        rows.setdefault(stage_depth[stage], []).append(stage)
    # Stage rows keep their relative order of depth, without empty rows between them.
    levels = sorted(rows)
    widest = max(len(stages) for stages in rows.values())
    box_w, box_h = BOX_W + 40, BOX_H + 22
    width = MARGIN * 2 + widest * (box_w + GAP_X) - GAP_X
    height = MARGIN * 2 + len(levels) * (box_h + GAP_Y) - GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for level_index, level in enumerate(levels):
        stages = rows[level]
        offset = (widest - len(stages)) * (box_w + GAP_X) / 2
        for k, stage in enumerate(stages):
            where[stage] = (
                MARGIN + offset + k * (box_w + GAP_X),
                MARGIN + level_index * (box_h + GAP_Y),
            )
    body: list[str] = []
    for src, dst in sorted(edges):
        (x1, y1), (x2, y2) = where[src], where[dst]
        body.append(_edge(x1 + box_w / 2, y1 + box_h, x2 + box_w / 2, y2 - 1))
    for stage, (bx, by) in where.items():
        row = summary[stage]
        worst = next((o for o in ("failed", "executed", "cached") if row[o]), "skipped")
        counts = ", ".join(f"{row[o]} {o}" for o in OUTCOMES if row[o])
        tip = f"{stage}: {plural(row['calls'], 'call')} ({counts}); {row['seconds']:.3f} s in all"
        bar, x = [], bx + 8
        for outcome in OUTCOMES:
            if row[outcome]:
                w = (box_w - 16) * row[outcome] / row["calls"]
                bar.append(
                    f'<rect class="bar {outcome}" x="{x:.1f}" y="{by + box_h - 14:.0f}" '
                    f'width="{w:.1f}" height="7"/>'
                )
                x += w
        body.append(
            f'<g class="node stage {worst}" data-stage="{escape(stage)}" tabindex="0">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{bx:.0f}" y="{by:.0f}" width="{box_w}" height="{box_h}" rx="5"/>'
            f'<text x="{bx + box_w / 2:.0f}" y="{by + 19:.0f}">'
            f"{escape(_short(stage))} \u00d7{row['calls']}</text>{''.join(bar)}</g>"
        )
    return _svg(width, height, body, f"stage graph by stage: {plural(len(summary), 'stage')}")
