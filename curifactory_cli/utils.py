"""Curifactory's small helpers (`curifactory.utils`), for code that imports them.

Ported from Curifactory 0.20 (BSD-3). Differences: `get_command_output` drops exactly the
final newline (Curifactory cuts two characters, the last one of the output included), and
the logging setup helpers are not here (curi's output is its own).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess

__all__ = [
    "check_git_dirty_workingdir",
    "get_command_output",
    "get_conda_env",
    "get_current_commit",
    "get_os",
    "get_pip_freeze",
    "get_py_opening_comment",
    "human_readable_mem_usage",
    "human_readable_time",
    "run_command",
]


def human_readable_mem_usage(byte_count: int) -> str:
    """`1500000` -> `"1.50MB"` (decimal units, as Curifactory)."""
    sign = "-" if byte_count < 0 else ""
    value = float(abs(byte_count))
    suffix = "B"
    for limit, name in ((10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if value > limit:
            value, suffix = value / limit, name
            break
    return f"{sign}{value:.2f}{suffix}"


def human_readable_time(seconds: float) -> str:
    """`0.005` -> `"5.00ms"`, `90` -> `"1.50m"`."""
    converted, suffix = seconds, "s"
    if seconds > 60 * 60:
        converted, suffix = seconds / (60 * 60), "h"
    elif seconds > 60:
        converted, suffix = seconds / 60, "m"
    elif seconds < 0.0000001:
        converted, suffix = seconds * 10**9, "ns"
    elif seconds < 0.0001:
        converted, suffix = seconds * 10**6, "us"
    elif seconds < 0.1:
        converted, suffix = seconds * 10**3, "ms"
    return f"{converted:.2f}{suffix}"


def get_command_output(cmd: list[str] | str, silent: bool = False) -> str:
    """A command's standard output without its final newline; "" if it fails."""
    try:
        done = subprocess.run(cmd, capture_output=True)
    except OSError:
        if not silent:
            logging.warning("Unable to run command '%s'", cmd)
        return ""
    if done.returncode != 0:
        return ""
    output = done.stdout.decode("utf-8")
    return output[:-1] if output.endswith("\n") else output


def run_command(cmd: list[str]) -> None:
    """Run a command, printing its output as it comes."""
    print(*cmd)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=1, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="")


def get_current_commit() -> str:
    """`git rev-parse HEAD` in the working directory."""
    if not os.path.exists(".git"):
        return "No git repository found"
    return get_command_output(["git", "rev-parse", "HEAD"])


def check_git_dirty_workingdir() -> bool:
    """Whether the working directory has changes git sees (True without a repository)."""
    if not os.path.exists(".git"):
        return True
    return get_command_output(["git", "diff", "--stat"]) != ""


def get_pip_freeze() -> str:
    return get_command_output(["pip", "freeze"])


def get_conda_env() -> str:
    """`conda env export --from-history` (or mamba's, micromamba's); "" outside conda."""
    for tool in ("conda", "mamba", "micromamba"):
        output = get_command_output([tool, "env", "export", "--from-history"], silent=True)
        if output:
            return output
    return ""


def get_os() -> str:
    return str(platform.platform())


def get_py_opening_comment(lines: list[str]) -> str:
    """The docstring at the top of a Python file's lines, on one line."""
    if not lines:
        return ""
    first = lines[0]
    quote = first[:3]
    if quote not in ('"""', "'''") or len(first) <= 3:
        return ""
    text = first[3:]
    if quote in text:
        content = text[: text.index(quote)]
    else:
        content = text
        for line in lines[1:]:
            if quote in line:
                content += " " + line[: line.index(quote)]
                break
            content += " " + line
    return " ".join(content.replace("\n", " ").split())
