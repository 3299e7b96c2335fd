"""How runs are named (`<experiment>_<n>_<YYYY-MM-DD-THHMMSS>`) and the command that runs a
run again."""

from __future__ import annotations

import datetime as dt
import shlex

# Flags that make a run differ from "the same run again": dropped from the reproduce command.
_DROP_FLAGS = frozenset({"--overwrite", "--store-full"})
_DROP_OPTIONS = frozenset({"--overwrite-stage", "--notes"})  # each takes one value


def reproduce_command(command: list[str]) -> str:
    """The command line that runs the same thing again: `curi` + the original arguments,
    minus the flags that only change how (or with which notes) it ran."""
    if not command:
        return ""
    args: list[str] = []
    rest = iter(command[1:])
    for arg in rest:
        if arg == "--":  # everything after is positional: keep it verbatim
            args.extend([arg, *rest])
            break
        name = arg.split("=", 1)[0]
        if arg in _DROP_FLAGS:
            continue
        if name in _DROP_OPTIONS:
            if "=" not in arg:
                next(rest, None)  # the option's value is the next argument
            continue
        args.append(arg)
    return shlex.join(["curi", *args])


def make_reference(experiment: str, number: int, when: dt.datetime) -> str:
    """`<experiment>_<n>_<YYYY-MM-DD-THHMMSS>`; '/' becomes '.' so it is one path component."""
    return f"{numbered(experiment, number)}_{when.strftime('%Y-%m-%d-T%H%M%S')}"


def numbered(experiment: str, number: int) -> str:
    """`<experiment>_<n>`: the start of a reference, also accepted on its own by get_run."""
    return f"{experiment.replace('/', '.').replace(chr(92), '.')}_{number}"
