"""What a stage call prints, kept for its run while the terminal still shows it, and the
progress a stage reports (`record.progress`), sent to wherever the run is shown.

Capture happens in the process that runs the stage (this one, a worker process, a Dask
worker): `sys.stdout` and `sys.stderr` are replaced, for the call only, by streams that write
through to what they replace (the user still sees every line as before) and keep a copy. The
root logger's stream handlers (`logging.basicConfig`) are pointed at the same streams for the
call, so log records are kept too. Not seen: output written to the file descriptors directly
(a subprocess, C code), and loggers with their own handlers that do not propagate to root.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

# Characters kept per stage call: the first quarter and the last three quarters (what led to
# the end, or to a failure), with a line saying how much was left out between them.
LOG_LIMIT = 256 * 1024
_HEAD = LOG_LIMIT // 4
_TAIL = LOG_LIMIT - _HEAD


class LogBuffer:
    """A stage call's output, bounded to LOG_LIMIT characters (memory included)."""

    def __init__(self) -> None:
        self._head: list[str] = []
        self._head_size = 0
        self._tail: list[str] = []
        self._tail_size = 0
        self._dropped = 0
        self._lock = threading.Lock()  # a stage's threads may print at once

    def add(self, text: str) -> None:
        with self._lock:
            if self._head_size < _HEAD:
                room = _HEAD - self._head_size
                part = text[:room]
                self._head.append(part)
                self._head_size += len(part)
                text = text[room:]
                if not text:
                    return
            self._tail.append(text)
            self._tail_size += len(text)
            if self._tail_size > 2 * _TAIL:  # trimmed now and then: linear in what is written
                self._trim()

    def _trim(self) -> None:
        joined = "".join(self._tail)
        if len(joined) > _TAIL:
            self._dropped += len(joined) - _TAIL
            joined = joined[-_TAIL:]
        self._tail = [joined]
        self._tail_size = len(joined)

    def text(self) -> str:
        if not self._head_size:
            return ""
        with self._lock:
            self._trim()
            gap = f"\n[... {self._dropped} characters left out ...]\n" if self._dropped else ""
            return overwritten("".join(self._head) + gap + "".join(self._tail))


_MOVES = re.compile(r"(\r|\n|\x1b\[\d*A)")


def overwritten(text: str) -> str:
    """`text` as a terminal leaves it: a carriage return goes back to the start of the line
    and `ESC [ n A` up n lines (a progress bar redrawn in place, nested bars), so each bar
    keeps only its last state; lines end without the spaces that erased what was there."""
    if "\r" not in text and "\x1b[" not in text:
        return text
    lines: list[list[str]] = [[]]
    row = col = 0
    for token in _MOVES.split(text):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append([])
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            row = max(0, row - int(token[2:-1] or 1))
        elif token:
            line = lines[row]
            if col > len(line):
                line.extend(" " * (col - len(line)))
            line[col : col + len(token)] = token
            col += len(token)
    return "\n".join("".join(line).rstrip(" ") for line in lines)


class Tee:
    """A stream writing through to `stream` and, while its call runs, into a LogBuffer.

    `curi_stream` is what curi's own output uses instead (a heartbeat line written while a
    stage runs in this process is not the stage's output); `rich_proxied_file` tells rich the
    same for a live display."""

    def __init__(self, stream: Any, buffer: LogBuffer, fd: int) -> None:
        self.curi_stream = stream
        self.buffer: LogBuffer | None = buffer
        self.fd = fd

    def write(self, text: str) -> int:
        buffer = self.buffer
        if buffer is not None and isinstance(text, str):
            buffer.add(text)
        if self.curi_stream is None:  # no console at all (pythonw)
            return len(text)
        return self.curi_stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.curi_stream is not None:
            self.curi_stream.flush()

    @property
    def rich_proxied_file(self) -> Any:
        return getattr(self.curi_stream, "rich_proxied_file", self.curi_stream)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.curi_stream, name)


def _fd_of(stream: Any) -> int | None:
    if isinstance(stream, Tee):
        return stream.fd
    try:
        return int(stream.fileno())
    except Exception:  # StringIO, a closed stream, a test runner's capture
        return None


def _console_fd(stream: Any, out: Any, err: Any) -> int | None:
    """1 or 2 when a logging handler writing to `stream` writes to the console."""
    if stream is out or stream is sys.__stdout__:
        return 1
    if stream is err or stream is sys.__stderr__:
        return 2
    fd = _fd_of(stream)
    return fd if fd in (1, 2) else None


class captured:
    """Keep what is printed and logged until the block ends, still showing it. (A class, not
    a generator function: it runs once per stage call.)"""

    def __enter__(self) -> LogBuffer:
        self.buffer = buffer = LogBuffer()
        self.out, self.err = out, err = sys.stdout, sys.stderr
        self.tees = tees = (Tee(out, buffer, 1), Tee(err, buffer, 2))
        sys.stdout, sys.stderr = tees
        self.pointed: list[tuple[logging.StreamHandler[Any], Any]] = []
        # Handlers exist only once logging is imported (importing it here costs a cached run
        # that executes nothing 10 ms).
        logs = sys.modules.get("logging")
        if logs is not None:
            self._point(logs.root.handlers, logs, out, err)
        return buffer

    def _point(self, handlers: list[Any], logs: Any, out: Any, err: Any) -> None:
        """The root logger's console handlers write to the tees for the call."""
        for handler in handlers:
            if not isinstance(handler, logs.StreamHandler) or isinstance(handler, logs.FileHandler):
                continue  # a file, a socket...: not the console
            fd = _console_fd(handler.stream, out, err)
            if fd is not None:
                self.pointed.append((handler, handler.stream))
                handler.stream = self.tees[fd - 1]

    def __exit__(self, *exc: object) -> None:
        out_tee, err_tee = self.tees
        out_tee.buffer = err_tee.buffer = None  # kept by whatever took it (a handler made inside)
        for handler, stream in self.pointed:
            if handler.stream is out_tee or handler.stream is err_tee:
                handler.stream = stream
        # A stage that replaced sys.stdout itself and did not put it back keeps its choice.
        if sys.stdout is out_tee:
            sys.stdout = self.out
        if sys.stderr is err_tee:
            sys.stderr = self.err


# ---------------------------------------------------------------------------------- progress

# Progress goes to the display at most this often per stage call (its last value at the end).
PROGRESS_EVERY_S = 0.25

Sink = Callable[[float, "float | None"], None]


class _Progress:
    """Where `record.progress` reports in this process: one stage call at a time (a worker
    runs one job at a time; the driver's own jobs run one at a time in its main thread)."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.last = 0.0
        self.pending: tuple[float, float | None] | None = None

    def report(self, done: float, total: float | None) -> None:
        sink = self.sink
        if sink is None:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and (total is None or done < total):
            self.pending = (done, total)
            return
        self.last = now
        self.pending = None
        with contextlib.suppress(Exception):  # the display must never fail the stage
            sink(done, total)


_progress = _Progress()


def report_progress(done: float, total: float | None = None) -> None:
    _progress.report(done, total)


@contextlib.contextmanager
def progress_to(sink: Sink | None) -> Iterator[None]:
    """Send what `record.progress` reports during the block to `sink`."""
    previous = _progress.sink, _progress.last, _progress.pending
    _progress.sink, _progress.last, _progress.pending = sink, 0.0, None
    try:
        yield
    finally:
        pending = _progress.pending
        if sink is not None and pending is not None:  # the last value, held back by the rate
            with contextlib.suppress(Exception):
                sink(*pending)
        _progress.sink, _progress.last, _progress.pending = previous
