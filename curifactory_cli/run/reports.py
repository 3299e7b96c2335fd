"""A run's HTML report: written when the run ends, and rebuilt later (`curi report`) from
what the registry recorded and the reportables kept in the run's cache, read through the
store that cache opens as (a local folder, or a cache at a URL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli import report
from curifactory_cli.errors import ConfigError, CurifactoryError
from curifactory_cli.registry.database import RunRegistry
from curifactory_cli.registry.log import log_path, read_log
from curifactory_cli.run.report_metrics import index_summaries, run_metric_tables
from curifactory_cli.run.settings import load_settings
from curifactory_cli.run.stores import project_store

if TYPE_CHECKING:
    from curifactory_cli.registry.records import StageRecord
    from curifactory_cli.run.options import RunResult


def write_report(
    root: Path,
    registry: RunRegistry,
    reference: str,
    records: list[Any],
    log_file: Path | None,
    stages: list[StageRecord] | None = None,
    warnings: list[str] | None = None,
) -> Path:
    """A run's report from what the registry recorded (`stages`: its stage calls as just
    recorded, instead of reading them back) and its records' reportables in memory, and
    the index of all runs; returns the report's page."""
    run = registry.get_run(reference, stages=stages is None)
    if stages is not None:
        run = replace(run, stages=stages)
    items = report.items_from_records(records)
    logs = read_log(log_file) if log_file is not None else []
    metrics = run_metric_tables(registry, run.reference)
    page = report.write_run_report(
        root, run, items, [] if warnings is None else warnings, logs, metrics
    )
    _write_index(root, registry)
    return page


def _write_index(root: Path, registry: RunRegistry, runs: list[Any] | None = None) -> Path:
    """reports/index.html over every recorded run, with their metrics."""
    if runs is None:
        runs = registry.list_runs(limit=None, brief=True)
    summaries = index_summaries(registry, [r.reference for r in runs])
    return report.update_index(root, runs, summaries)


def write_for_run(
    root: Path,
    registry: RunRegistry,
    result: RunResult,
    stages: list[StageRecord],
    warn: Callable[[str], None],
) -> Path | None:
    """The report of a run that just ended. A report that cannot be written is a warning:
    the run's results stand."""
    warnings: list[str] = []
    path = None
    try:
        path = write_report(
            root, registry, result.run_id, result.records, result.log, stages, warnings
        )
    except (OSError, CurifactoryError) as exc:
        warnings.append(f"the run's report was not written: {exc}")
    for warning in warnings:
        warn(warning)
    return path


@dataclass
class Rebuilt:
    """A report rebuilt by `rebuild`: the run, its page, the index of all runs."""

    run: str
    page: Path
    index: Path
    folder: Path  # reports/, which holds every run's report
    warnings: list[str] = field(default_factory=list)


def rebuild(
    root: Path,
    registry_file: Path,
    reference: str | None = None,
    group_by: Sequence[str] | None = None,
) -> Rebuilt:
    """Rebuild a run's report (the newest run's when `reference` is None; `group_by`: its
    metrics' means by those parameters) and the index of all runs. Raises ConfigError when
    no run is recorded (or `group_by` names no parameter of the run), OSError when reports/
    cannot be written."""
    registry = RunRegistry(registry_file)
    listed = registry.list_runs(limit=None, brief=True)
    if not listed:
        raise ConfigError(
            "no runs recorded yet, so there is no report to build",
            hint="`curi run EXPERIMENT PARAMS` writes one for every run.",
        )
    run = registry.get_run(reference or listed[0].reference)
    metrics = run_metric_tables(registry, run.reference, group_by)
    warnings: list[str] = []
    cache = str(run.cache_dir or "")
    store = project_store(root, load_settings(root), cache=cache, dry=True, tiers=False)
    try:
        items = report.items_from_cache(run, warnings, store)
        logs = read_log(log_path(registry_file, run.reference))
        page = report.write_run_report(root, run, items, warnings, logs, metrics)
    finally:
        store.close()  # the downloaded entries go with the store's scratch folder
    index = _write_index(root, registry, listed)
    return Rebuilt(run.reference, page, index, report.reports_dir(root), warnings)


@dataclass
class Compared:
    """A comparison page written by `write_comparison`: its runs (A, B) and its path."""

    a: str
    b: str
    page: Path
    folder: Path  # reports/


def write_comparison(root: Path, registry_file: Path, first: str, second: str) -> Compared:
    """reports/compare/<A>-vs-<B>.html: the diff of run A and run B (`curi runs diff`'s) and
    a chart per metric; the runs' reports are linked where they exist. Raises ConfigError for
    a reference that matches no run (or several), OSError when reports/ cannot be written."""
    from curifactory_cli.report.compare import compare_page
    from curifactory_cli.run.runs_diff import diff_runs

    registry = RunRegistry(registry_file)
    a = registry.get_run(first, stages=False).reference
    b = registry.get_run(second, stages=False).reference
    diff = diff_runs(registry, a, b)
    base = report.reports_dir(root)
    present = {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
    a_name, b_name = diff.names
    page = report.write_compare_page(root, f"{a_name}-vs-{b_name}", compare_page(diff, present))
    return Compared(a, b, page, base)
