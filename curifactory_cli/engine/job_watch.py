"""`python -m curifactory_cli.engine.job_watch CANCEL_COMMAND`: cancels the batch jobs a run
submitted once the run can no longer do it itself.

The run writes `+ID` for each job it submits and `-ID` for each it cancelled on its standard
input; when that input closes (the run closed its cluster, or died: SIGKILL, out of memory),
this process cancels every job still listed, then ends. It runs in a session of its own, so
a Ctrl-C to the run's terminal does not stop it first.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import sys


def watch(cancel_command: str, lines: object) -> list[str]:
    """Read `lines` to their end; cancel the jobs left; return their ids."""
    left: dict[str, None] = {}  # in submission order
    for line in lines:  # type: ignore[attr-defined]
        sign, job_id = line[:1], line[1:].strip()
        if sign == "+" and job_id:
            left[job_id] = None
        elif sign == "-":
            left.pop(job_id, None)
    ids = list(left)
    if ids:
        # Errors are not reported: the run that could report them is gone.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [*shlex.split(cancel_command), *ids],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
    return ids


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's Ctrl-C is not for this process
    watch(sys.argv[1], sys.stdin)
