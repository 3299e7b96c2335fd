"""Where a result came from: git commit and dirty flag, library versions, the run itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from curifactory_cli.atomic import write_bytes_atomic


@lru_cache(maxsize=8)
def git_info(root: str) -> dict[str, Any]:
    """The full commit and whether the work tree has changes (untracked files count)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=normal")
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def library_versions() -> dict[str, str]:
    """Python, this package, and every installed distribution this process has imported."""
    from curifactory_cli._version import __version__

    return {
        "python": platform.python_version(),
        "curifactory_cli": __version__,
        **imported_distributions(),
    }


def merge_versions(base: dict[str, str], more: Iterable[Any]) -> dict[str, str]:
    """One table of versions from several (a run's own and those of the entries it used):
    a distribution seen at two versions shows both, `1.4.2 | 1.5.0`."""
    pairs = set(base.items())
    for versions in more:
        if isinstance(versions, dict):  # else an entry from before versions were kept per entry
            try:
                pairs.update(versions.items())  # most entries repeat the same pairs: in C
            except TypeError:  # a value that is not text (a damaged entry): left out below
                pairs.update((k, v) for k, v in versions.items() if isinstance(v, str))
    seen: dict[str, set[str]] = {}
    for name, version in pairs:
        if isinstance(name, str) and isinstance(version, str):
            seen.setdefault(name, set()).add(version)
    return {name: " | ".join(sorted(found)) for name, found in sorted(seen.items())}


# ------------------------------------------------------------- distributions a process imported
# Which installed distribution provides which top-level module is written in each
# distribution's RECORD; reading them all takes 0.2 s, so the answer is kept on disk per
# set of installed distributions (see _environment_signature), in a file of its own.
# The answer for a process's modules is reused while no module is added.

_OWN = frozenset({"curifactory-cli", "curifactory_cli"})
_index: tuple[str, dict[str, list[str]], dict[str, str]] | None = None
_last: tuple[int, dict[str, str]] = (-1, {})


def imported_distributions() -> dict[str, str]:
    """Installed distributions (by name) whose modules are imported in this process, with
    their versions: what a stage's results may depend on beyond the project's code."""
    global _last
    count = len(sys.modules)
    if _last[0] == count:
        return _last[1]
    modules, versions = _distribution_index()
    found: dict[str, str] = {}
    for name in list(sys.modules):
        if "." in name:
            continue
        for dist in modules.get(name, ()):
            if dist not in _OWN and dist in versions:
                found[dist] = versions[dist]
    _last = (count, dict(sorted(found.items())))
    return _last[1]


def _environment_signature() -> str:
    """The distributions installed on `sys.path`, by their metadata folders' names (which
    carry the version): installing, upgrading or removing one changes it; a project's own
    files being written (the project folder is on the path too) do not."""
    parts = [sys.prefix, sys.version]
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # gone, not a folder, or a zip archive
            continue
        found = sorted(n for n in names if n.endswith((".dist-info", ".egg-info")))
        if found:  # a folder without any (the project's own) does not count
            parts.append(entry)
            parts.extend(found)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


MEMOS_KEPT = 16  # memo files: one per set of installed distributions, the newest kept


def _memo_file(signature: str) -> str:
    """The memo for this set of installed distributions: one file each, so that projects
    (or checkouts) whose folders hold different distributions never overwrite each other's."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "curifactory-cli", f"distributions-{signature[:32]}.json")


def _prune_memos(folder: str) -> None:
    """Keep the MEMOS_KEPT newest memo files (each environment change leaves one behind)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith("distributions-")]
        if len(names) <= MEMOS_KEPT:
            return
        paths = sorted((os.path.join(folder, n) for n in names), key=os.path.getmtime)
        for old in paths[:-MEMOS_KEPT]:
            os.remove(old)
    except OSError:
        pass  # another process pruned first, or the folder is not ours to tidy


def _distribution_index() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(top-level module -> distributions, distribution -> version), for the environment as
    it is now: a notebook that installs a package mid-session sees it."""
    global _index
    signature = _environment_signature()
    if _index is not None and _index[0] == signature:
        return _index[1], _index[2]
    memo = _memo_file(signature)
    try:
        with open(memo, encoding="utf-8") as infile:
            data = json.load(infile)
        if data.get("signature") == signature:
            _index = (signature, dict(data["modules"]), dict(data["versions"]))
            return _index[1], _index[2]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    modules, versions = _read_distributions()
    _index = (signature, modules, versions)
    with contextlib.suppress(OSError):  # best effort: it only saves reading them again
        data = {"signature": signature, "modules": modules, "versions": versions}
        write_bytes_atomic(memo, json.dumps(data).encode("utf-8"))
        _prune_memos(os.path.dirname(memo))
    return modules, versions


def _read_distributions() -> tuple[dict[str, list[str]], dict[str, str]]:
    from importlib import metadata

    modules: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
            version = dist.version
        except Exception:  # a damaged dist-info folder names nothing
            continue
        if not name or name in versions:
            continue  # the first on sys.path is the one imported
        versions[name] = str(version)
        for top in _top_level(dist):
            modules.setdefault(top, []).append(name)
    return {k: sorted(v) for k, v in modules.items()}, versions


def _top_level(dist: Any) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.split() if line.strip()}
    tops = set()
    for path in dist.files or ():
        parts = path.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info")) or parts[0] == "..":
            continue
        top = parts[0]
        if len(parts) == 1:
            if not top.endswith(".py"):
                continue
            top = top[:-3]
        tops.add(top.split(".")[0])
    return tops


def process_command() -> list[str]:
    """The command line that started this process, as it was typed (`python nb.py`,
    `python -m pytest`): the kernel's copy where there is one, else Python and sys.argv."""
    try:
        with open("/proc/self/cmdline", "rb") as infile:
            words = infile.read().split(b"\0")
        if words and words[-1] == b"":
            words.pop()
        if words:
            return [os.fsdecode(w) for w in words]
    except OSError:
        pass
    return [os.path.basename(sys.executable) or "python", *sys.argv]


def script_command() -> str:
    """What runs this process's work again: its command when it runs a script file (`python
    nb.py`), else "-" (an interactive interpreter or a notebook's kernel has no such command)."""
    import shlex

    script = sys.argv[0] if sys.argv else ""
    if not script.endswith(".py") or "ipykernel" in sys.modules:
        return "-"
    return shlex.join(process_command())


# RunOptions field -> the `curi run` option that sets it; flags (True/False) and options with
# one value, repeated for each item of a tuple. --overwrite, --overwrite-stage, --notes and
# --store-full only change how a run is done, so a reproduce command leaves them out.
_RUN_OPTIONS = (
    ("names", "--names"),
    ("indices", "--indices"),
    ("overrides", "--set"),
    ("cache_dir", "--cache"),
    ("remote", "--remote"),
    ("lazy", "--lazy"),
    ("ignore_lazy", "--ignore-lazy"),
    ("dry", "--dry"),
    ("dry_cache", "--dry-cache"),
    ("keep_going", "--keep-going"),
    ("strict", "--strict"),
)


def curi_run_line(options: Any) -> str:
    """The `curi run ...` line that runs what `run_experiment(options)` ran (a RunOptions)."""
    import shlex

    words = ["curi", "run", options.experiment, *options.params]
    for field, flag in _RUN_OPTIONS:
        value = getattr(options, field, None)
        if value is True:
            words.append(flag)
        elif isinstance(value, (tuple, list)):
            for item in value:
                words.extend([flag, str(item)])
        elif value not in (None, False, "", ()):
            words.extend([flag, str(value)])
    return shlex.join(words)


def host_info() -> dict[str, Any]:
    return {"host": platform.node(), "pid": os.getpid(), "platform": platform.platform()}
