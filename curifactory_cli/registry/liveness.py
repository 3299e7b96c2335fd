"""Whether a run recorded as running still runs: a 'running' run whose process is gone from
this host reads as 'died' (killed by SIGKILL, out of memory, the machine rebooted)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform

from curifactory_cli.registry.records import RunRecord

PID_SLACK_S = 2.0  # a process started this long after its run: the pid was reused


def with_liveness(run: RunRecord) -> RunRecord:
    """The run, as 'died' when it is 'running' but its process is gone. Only read: the row
    is left as it is (a reader may be read-only, and the process may be on another machine,
    where its pid says nothing)."""
    if run.status != "running":
        return run
    pid = run.host.pid
    if run.host.host != platform.node() or pid is None:
        return run
    if not process_runs(pid, run.started):
        return dataclasses.replace(run, status="died")
    return run


def process_runs(pid: int, since: str | None) -> bool:
    """Whether process `pid` still runs and started before `since` (ISO time): a later one
    reuses the number of a process that is gone. Without /proc, kill(pid, 0) decides."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        pass  # another user's process: it exists
    started = process_start(pid)
    if started is None:
        return True
    if started == 0.0:  # a zombie: dead, not yet reaped by its parent
        return False
    try:
        run_started = dt.datetime.fromisoformat(since or "").timestamp()
    except ValueError:
        return True
    return started <= run_started + PID_SLACK_S


def process_start(pid: int) -> float | None:
    """When `pid` started (Unix time) from /proc; 0.0 for a zombie; None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as system:
            boot = next(line for line in system if line.startswith(b"btime"))
        if fields[0] in (b"Z", b"X"):
            return 0.0
        ticks = int(fields[19])  # field 22 of stat(5): start time after boot, in clock ticks
        return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
