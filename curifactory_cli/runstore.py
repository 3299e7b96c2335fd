"""`curi run --store-full`: a self-contained copy of everything one run used or produced.

data/runs/<reference>/
    artifacts/        the cache entries of the run (same layout: usable as `--cache`)
    run.json          the run's registry record, with the `reproduce` command
    run.log           one line per stage call: outcome, stage, parameter set, reason
    requirements.txt  `pip freeze` of the environment
    platform.txt      Python and OS
    reproduce         the command that re-runs it from the copied artifacts only
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from curifactory_cli.errors import CacheError
from curifactory_cli.graph import Outcome
from curifactory_cli.store import LocalStore

if TYPE_CHECKING:
    from curifactory_cli.registry import RunRegistry
    from curifactory_cli.runner import RunResult

RUNS_DIR = Path("data") / "runs"


def store_full_run(root: Path, result: RunResult, registry: RunRegistry) -> Path:
    target = root / RUNS_DIR / result.run_id
    try:
        target.mkdir(parents=True, exist_ok=False)
        _copy_entries(result, target / "artifacts")
        run = registry.get_run(result.run_id)
        reproduce = _reproduce(run.get("reproduce") or "", target / "artifacts", root)
        run["reproduce"] = reproduce
        (target / "run.json").write_text(json.dumps(run, indent=2, default=str))
        (target / "reproduce").write_text(reproduce + "\n")
        (target / "run.log").write_text(_log(result))
        (target / "requirements.txt").write_text(_pip_freeze())
        (target / "platform.txt").write_text(
            f"python {platform.python_version()} ({sys.executable})\n{platform.platform()}\n"
        )
    except OSError as exc:
        raise CacheError(
            f"cannot write the full store of run {result.run_id} to {target}: "
            f"{exc.strerror or exc}",
            hint="the run itself completed and is cached; check free space and permissions.",
        ) from None
    return target


def _copy_entries(result: RunResult, artifacts: Path) -> None:
    """Hard-link (or copy) every entry the run loaded, found cached or produced."""
    # The run's own store: with a remote tier, an entry served from there is fetched first.
    store = result.store or LocalStore(result.cache_dir)
    for node in result.graph.nodes:
        if node.outcome not in (Outcome.CACHED, Outcome.EXECUTED) or not node.entry_dir:
            continue
        entry = store.entry_at(node.entry_dir)
        if entry is None:
            continue  # e.g. produced by --dry-cache: never published
        store.export(entry, artifacts / entry.rel(store.root))
    artifacts.mkdir(parents=True, exist_ok=True)


def _reproduce(command: str, artifacts: Path, root: Path) -> str:
    rel = os.path.relpath(artifacts, root)
    return f"{command} --cache {shlex.quote(rel)} --dry-cache".strip()


def _log(result: RunResult) -> str:
    lines = [f"run {result.run_id}: {'ok' if result.ok else 'failed'} in {result.seconds:.2f}s"]
    for node in result.graph.nodes:
        outcome = (node.outcome or Outcome.SKIPPED).value
        lines.append(
            f"{outcome:>8}  {node.stage.name} [{node.record_name}] "
            f"{node.seconds:.3f}s  {node.reason}"
        )
    lines.extend(f"warning: {w}" for w in result.warnings)
    if result.error is not None:
        lines.append(f"error: {result.error.message}")
    return "\n".join(lines) + "\n"


def _pip_freeze() -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"# pip freeze failed: {exc}\n"
    return out.stdout if out.returncode == 0 else f"# pip freeze failed: {out.stderr.strip()}\n"
