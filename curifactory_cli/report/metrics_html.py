"""Metrics in the HTML pages: the sortable tables of a run's page (and of the comparison
page), and the compact summary of a run's metrics on the index of runs.

What is shown comes in as plain cells (text, and the value a column sorts by), built by the
run layer from the registry: this module only writes HTML. Sorting is done by the page's own
script (`SORT_SCRIPT`), so the page stays one offline file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from curifactory_cli.metrics import format_metric


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, the number it sorts by (None: by its text; a cell without
    text sorts last either way), and an optional tooltip."""

    text: str
    number: float | None = None
    title: str | None = None


@dataclass
class Table:
    """A sortable table: its caption (one line above it), column names, and which columns
    hold numbers (right-aligned)."""

    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    numeric: set[str] = field(default_factory=set)
    element_id: str = ""


@dataclass(frozen=True)
class Summary:
    """A metric over a run's parameter sets, for the index: lowest, highest, mean (NaN
    where a value is NaN) and how many sets recorded it."""

    low: float
    high: float
    mean: float
    n: int


INDEX_METRICS = 4  # metric columns per experiment on the index; the runs' pages have all

CSS = """
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th::after { content: " \\2195"; color: #b5bcc3; font-weight: 400; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; color: var(--ink); }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; color: var(--ink); }
table.sortable th:focus-visible { outline: 2px solid #ffb000; }
p.caption { margin: 14px 0 4px; }
td.range { font-variant-numeric: tabular-nums; }
/* In a scrolling box a sticky header would stick to the box, over its first rows. */
.table-wrap table.grid th { position: static; }
"""

# Click (or Enter on) a header: sort by it, ascending, then descending. Numbers compare as
# numbers, text as text (numbers first); empty cells stay last; ties keep the first order.
SORT_SCRIPT = """
(function () {
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(body.rows, function (tr, i) { tr.dataset.i = i; });
    function key(tr, col) {
      var td = tr.cells[col];
      if (td.dataset.n !== undefined) { return [0, parseFloat(td.dataset.n)]; }
      var text = td.textContent.trim();
      return text ? [1, text.toLowerCase()] : [2, ''];
    }
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var up = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a, col), y = key(b, col);
          if (x[0] !== y[0]) { return x[0] - y[0]; }
          if (x[0] < 2 && x[1] !== y[1]) { return (x[1] < y[1] ? -1 : 1) * (up ? 1 : -1); }
          return a.dataset.i - b.dataset.i;
        });
        rows.forEach(function (tr) { body.appendChild(tr); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); }
      });
    });
  });
})();
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def sort_number(value: Any) -> float | None:
    """The number a value sorts by (None for text, NaN and a missing value: they sort by
    their text, NaN and missing last)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def table_html(table: Table) -> str:
    """A `Table` as a sortable <table class="grid sortable">, its caption above it."""
    numeric = table.numeric
    head = "".join(
        f"<th{' class=num' if name in numeric else ''} scope=col>{_e(name)}</th>"
        for name in table.columns
    )
    rows = []
    for row in table.rows:
        cells = []
        for name, cell in zip(table.columns, row, strict=True):
            attrs = " class=num" if name in numeric else ""
            if cell.number is not None:
                attrs += f' data-n="{cell.number!r}"'
            if cell.title:
                attrs += f' title="{_e(cell.title)}"'
            cells.append(f"<td{attrs}>{_e(cell.text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    ident = f' id="{_e(table.element_id)}"' if table.element_id else ""
    caption = f'<p class="caption">{_e(table.caption)}</p>' if table.caption else ""
    return (
        f'{caption}<div class="table-wrap"><table class="grid sortable metrics"{ident}>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def metrics_section(tables: Sequence[Table]) -> str:
    """The metrics section of a run's page ("" when its stages recorded none)."""
    if not tables:
        return ""
    return (
        '<section id="metrics"><h2>Metrics</h2><p class="muted">What the stages recorded with '
        "<code>record.metric</code>; only the parameters that differ between the sets are "
        "columns. Click a column to sort by it.</p>"
        f"{''.join(table_html(t) for t in tables)}</section>"
    )


def index_metric_names(per_run: Sequence[dict[str, Summary]]) -> tuple[list[str], int]:
    """The metric columns of an experiment on the index (the newest run's first, then those
    of older runs as they appear), at most INDEX_METRICS, and how many more there are."""
    names: dict[str, None] = {}
    for summaries in per_run:
        names.update(dict.fromkeys(summaries))
    shown = list(names)
    return shown[:INDEX_METRICS], max(0, len(shown) - INDEX_METRICS)


def summary_cell(summary: Summary | None) -> str:
    """A metric of a run on the index: its value when one set recorded it, or when every
    set has the same; else its range over the sets, to 3 digits (the tooltip has them to 6,
    the mean and the count)."""
    if summary is None:
        return "<td class=range></td>"
    low, high = format_metric(summary.low), format_metric(summary.high)
    sets = f"{summary.n} set{'s' if summary.n != 1 else ''}"
    if low == high:
        title = f"{sets}: {low}"
        text = f"<span class=nowrap>{_e(_short(summary.low))}</span>"
    else:
        title = f"{sets}: {low} to {high}, mean {format_metric(summary.mean)}"
        text = (
            f"<span class=nowrap>{_e(_short(summary.low))} \u2013</span> "
            f"<span class=nowrap>{_e(_short(summary.high))}</span>"
        )
    return f'<td class=range title="{_e(title)}">{text}</td>'


def _short(value: float) -> str:
    """A number to 3 significant digits (an index cell is a glance; nan and inf as such)."""
    if math.isfinite(value) and value != int(value):
        return f"{value:.3g}"
    return format_metric(int(value) if math.isfinite(value) else value)
