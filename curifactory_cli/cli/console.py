"""What the commands print: plain lines, tables and JSON written straight to the stream, and
rich (imported when first needed) for live progress and what is styled on a terminal."""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from curifactory_cli.run.runner import RunResult

# Control characters in data (names, metadata fields) are shown escaped, never sent to a terminal.
CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if chr(c) not in "\n\t"}
# Set, these make rich decide a stream is a terminal even when it is not a tty.
_TERMINAL_ENV = ("FORCE_TERMINAL", "TTY_COMPATIBLE", "FORCE_COLOR")


class Output:
    """stdout or stderr as the commands write to it.

    Plain lines, long tables and JSON go straight to the stream. Whatever is styled, laid out
    for a terminal or shown live goes through a rich console, made when first needed:
    importing rich takes 20 ms that `curi --help`, a `--quiet` or `--json` run and output to
    a pipe or a log do not need. The stream is looked up at each use (test runners swap
    sys.stdout); anything else a rich Console offers is its console's.
    """

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._rich: Console | None = None

    @property
    def file(self) -> IO[str]:
        stream = sys.stderr if self.stderr else sys.stdout
        # While a stage runs in this process, its output is kept (capture.Tee): curi's own
        # lines (a heartbeat) are not the stage's.
        return getattr(stream, "curi_stream", stream)

    @property
    def rich(self) -> Console:
        if self._rich is None:
            self._rich = _safe_console_class()(stderr=self.stderr, highlight=False)
        return self._rich

    @property
    def is_terminal(self) -> bool:
        if self._rich is None and not _may_be_terminal(self.file):
            return False  # what rich would say, without importing it
        return self.rich.is_terminal

    def print(self, *objects: Any, **options: Any) -> None:
        if not self.is_terminal:  # a log or a pipe: a long line stays one line (grep, copy)
            options.setdefault("soft_wrap", True)
        self.rich.print(*objects, **options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (a copy being made): never rich's
            raise AttributeError(name)
        return getattr(self.rich, name)


@functools.cache
def _safe_console_class() -> type[Console]:
    """The rich console class, made when rich is first needed (it subclasses rich's)."""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """A console that never sends a terminal the control characters found in data (a set
        name, a field of a shared cache's metadata): they are shown escaped (`\\x1b`). rich's
        own styling codes are added after this, so colours still work."""

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(
                segment
                if segment.control
                else Segment(segment.text.translate(CONTROL_ESCAPES), segment.style)
                for segment in buffer
            )

    return SafeConsole


def _may_be_terminal(stream: Any) -> bool:
    """False when rich would certainly find `stream` is no terminal: not a tty, and none of
    the settings (or a notebook) that make rich decide otherwise."""
    if any(name in os.environ for name in _TERMINAL_ENV) or "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def rich_of(console: Console | Output) -> Console:
    """The rich console itself (what rich's own classes, such as Live, must be given)."""
    return console.rich if isinstance(console, Output) else console


_SUMMARY_COLUMNS = {  # column -> its style on a terminal
    "stage": None,
    "executed": "green",
    "cached": "cyan",
    "skipped": "dim",
    "failed": "red",
    "time": None,
}


def print_summary(console: Console | Output, result: RunResult) -> None:
    """A row per stage (how many calls executed, were cached, skipped, failed; the time),
    then the outcome of the run."""
    rows = [
        [
            summary.stage,
            str(summary.executed),
            str(summary.cached),
            str(summary.skipped),
            str(summary.failed) if summary.failed else "",
            f"{summary.seconds:.2f}s",
        ]
        for summary in result.stage_summaries()
    ]
    counts = result.counts()
    status = "ok" if result.ok else "failed"
    tail = (
        f": {counts.get('executed', 0)} executed, {counts.get('cached', 0)} cached, "
        f"{counts.get('skipped', 0)} skipped"
        + (f", {counts['failed']} failed" if counts.get("failed") else "")
        + f" in {result.seconds:.2f}s (run {result.run_id})"
        + remote_summary(result.remote)
    )
    columns = list(_SUMMARY_COLUMNS)
    if not console.is_terminal or len(rows) > RICH_ROWS:
        stream_table(console, columns, rows, right=tuple(columns[1:]))
        write_line(console, status + tail)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=None, box=None, show_edge=False, pad_edge=False)
    for column, style in _SUMMARY_COLUMNS.items():
        table.add_column(column, justify="left" if column == "stage" else "right", style=style)
    for row in rows:
        table.add_row(Text(row[0]), *row[1:])
    console.print(table)
    line = Text.assemble(Text(status, style="green" if result.ok else "bold red"), tail)
    console.print(line, highlight=False, soft_wrap=True)


def remote_summary(remote: dict[str, Any] | None) -> str:
    """What a run moved between its remote tier and the local one ("" without a remote)."""
    if remote is None:
        return ""
    from curifactory_cli.store.index import human_size

    moved = [
        f"{way} {remote[way]['entries']} entries, {human_size(remote[way]['bytes'])}"
        for way in ("pulled", "pushed")
        if remote[way]["entries"]
    ]
    if not remote["reached"]:
        moved.append("remote not reached")
    return f"; {', '.join(moved or ['nothing pulled or pushed'])} ({remote['url']})"


LOG_WIDTH = 100_000  # outside a terminal, a table row is one line however long its values


RICH_ROWS = 200  # more rows than a screen shows: plain text, rich's layout takes seconds


def print_rows(console: Console | Output, table: Table) -> None:
    """On a terminal a table fits the screen. In a log or a pipe, rich would wrap or cut it to
    80 columns: there every row is printed on one line with its full values, so that a log
    can be grepped for a run, a set or a stage. So are tables longer than a screen: laid out
    by rich, 5,000 rows take seconds; as aligned plain text, milliseconds."""
    if console.is_terminal and table.row_count <= RICH_ROWS:
        console.print(table)
        return
    lines = plain_table(table)
    write_text(console, "\n".join(lines) + "\n" if lines else "")


def stream_table(
    console: Console | Output,
    columns: list[str],
    rows: Iterable[list[str]],
    *,
    right: tuple[str, ...] = (),
    caption: Callable[[], str] | None = None,
) -> None:
    """A table of rows that may not fit in memory: up to a screenful on a terminal is laid out
    by rich; otherwise rows are written as plain text in blocks as they come, each column as
    wide as its widest cell so far (control characters escaped). `caption` is called once
    every row is out. A row may carry one more cell than there are columns (a rare "state").
    Rows given as a list are laid out as one block."""
    source = iter(rows)
    block = list(itertools.islice(source, RICH_ROWS + 1))
    # The extra column is shown when the first rows have it (later rows may add it).
    header = [*columns, "state"] if any(len(r) > len(columns) for r in block) else list(columns)
    if console.is_terminal and len(block) <= RICH_ROWS:
        from rich.text import Text

        print_table(
            console,
            header,
            # Text cells: no markup in names; folded, never cut: "n_rows=5…" could be 500.
            [
                [Text(c, overflow="fold") for c in [*r, *[""] * (len(header) - len(r))]]
                for r in block
            ],
            right=right,
            caption=caption() if caption else None,
        )
        return
    if isinstance(rows, list):
        block += list(source)  # given whole: one block, each column as wide as its widest cell
    widths = [_width(c) for c in header]
    rights = [c in right for c in header]
    lines: list[str] | None = None
    while block:
        cells = [[_safe(c) for c in row] for row in block]
        for row in cells:
            for i, text in enumerate(row):
                if i >= len(widths):
                    widths.append(0)
                    rights.append(False)
                width = _width(text)
                if width > widths[i]:
                    widths[i] = width
        if lines is None:
            lines = [_line(header, widths, rights)]
        lines.extend(_line(row, widths, rights) for row in cells)
        write_text(console, "\n".join(lines) + "\n")
        lines = []
        block = list(itertools.islice(source, 1000))
    if caption:
        write_text(console, caption() + "\n")


def plain_table(table: Table) -> list[str]:
    """The table as aligned lines of plain text (title, header, rows, caption), full values,
    control characters escaped."""
    columns = [
        [*([_plain(column.header)] if table.show_header else []), *map(_plain, column.cells)]
        for column in table.columns
    ]
    if not columns:
        return []
    _, right, _, left = table.padding
    gap = " " * max(1, left + right)
    widths = [max(map(_width, cells)) for cells in columns]
    rights = [column.justify == "right" for column in table.columns]
    lines = [_plain(table.title)] if table.title else []
    lines.extend(_line(row, widths, rights, gap) for row in zip(*columns))
    if table.caption:
        lines.append(_plain(table.caption))
    return lines


def _plain(cell: object) -> str:
    from rich.text import Text  # a rich table's cells: rich is imported already

    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text.translate(CONTROL_ESCAPES)


def _line(cells: Iterable[str], widths: list[int], rights: list[bool], gap: str = "  ") -> str:
    """One row of aligned plain text."""
    return gap.join(_pad(t, w, r) for t, w, r in zip(cells, widths, rights)).rstrip()


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def _width(text: str) -> int:
    """Terminal cells `text` takes (an ASCII string: its length, without rich's lookup)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _safe(cell: object) -> str:
    """A cell as text with control characters escaped (most need no translation)."""
    text = cell if isinstance(cell, str) else str(cell)
    return text if text.isprintable() else text.translate(CONTROL_ESCAPES)


def write_text(console: Console | Output, text: str) -> None:
    """Text written to the console's stream as it is (no markup, no wrapping, no layout)."""
    console.file.write(text)
    console.file.flush()


def write_line(console: Console | Output, text: str) -> None:
    """One line of plain text, control characters escaped (what rich prints for an unstyled
    line, without rich)."""
    write_text(console, _safe(text) + "\n")


def write_json(console: Console | Output, data: object) -> None:
    """A JSON document on the console's stream, written straight: through rich's text layout
    a document of thousands of stage calls costs more than the run (JSON escapes control
    characters itself)."""
    write_text(console, json.dumps(data, indent=2, default=str) + "\n")


_PLAN_STYLE = {"cached": "cyan", "run": "green", "maybe": "yellow", "skipped": "dim"}


def _plan_row(item: Any) -> list[str]:
    value = item.plan.value if item.plan else "skipped"
    return [
        item.node.record_name,
        item.node.stage.name,
        value,
        "" if item.reason == "cached" else item.reason,  # a shared entry says whose
    ]


def print_plan(console: Console | Output, title: str, plans: list) -> None:
    """One row per (record, stage) node: what will happen and why."""
    columns = ("parameter set", "stage", "plan", "why")
    # In a log (or a plan longer than a screen) each row names its set, so grepping for a
    # set finds all its stages.
    if not console.is_terminal or len(plans) > RICH_ROWS:
        write_line(console, title)
        stream_table(console, list(columns), (_plan_row(item) for item in plans))
        return
    from rich.table import Table
    from rich.text import Text

    console.print(Text(title, style="bold"), soft_wrap=True)
    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    previous = None
    for item in plans:
        record = item.node.record_name
        value = item.plan.value if item.plan else "skipped"
        table.add_row(
            Text(record if record != previous else ""),
            Text(item.node.stage.name),
            Text(value, style=_PLAN_STYLE.get(value, "")),
            Text(item.reason if item.reason != "cached" else ""),
        )
        previous = record
    console.print(table)


def print_heading(console: Console | Output, text: str) -> None:
    """A line that heads a table: bold on a terminal, plain in a log or a pipe."""
    if console.is_terminal:
        console.print(text, style="bold", markup=False, highlight=False, soft_wrap=True)
    else:
        write_line(console, text)


def print_warning(console: Console | Output, message: str) -> None:
    console.print(
        f"warning: {message}", style="yellow", markup=False, highlight=False, soft_wrap=True
    )


def print_error(console: Console | Output, message: str, hint: str | None = None) -> None:
    from rich.text import Text

    # soft_wrap: long paths and messages must stay copy-pasteable, not hard-wrapped.
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    if hint:
        console.print(Text.assemble(("hint: ", "yellow"), hint), highlight=False, soft_wrap=True)


def print_traceback(console: Console | Output, text: str) -> None:
    from rich.text import Text

    console.print(Text(text.rstrip(), style="red"), highlight=False, soft_wrap=True)


def print_table(
    console: Console | Output,
    columns: list[str],
    rows: list[list[Any]],  # str, or rich Text
    *,
    right: tuple[str, ...] = (),
    caption: str | None = None,
) -> None:
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, caption=caption)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    print_rows(console, table)
