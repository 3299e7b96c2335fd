"""HTML run reports: `reports/<run>/index.html` for each run, `reports/index.html` over all.

A run's report is built from what the registry recorded (its info, parameter sets, stage
calls and the edges between them) and its reportables; `curi report RUN` rebuilds it from
the registry and the reportables kept in the cache entries, so a report lost or deleted
comes back the same (a stage without cachers keeps its reportables in memory only: they
are in the report written by the run, not in a rebuilt one).

Every report folder is written beside its final place and swapped in, so it is never seen
half-written; the index is replaced atomically. Files a reportable refers to (figures,
images) are copied next to the page, so the report survives `curi cache clear`. Nothing in
a page is fetched from the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Protocol

from curifactory_cli.errors import CurifactoryError
from curifactory_cli.report import page
from curifactory_cli.report.layout import graph_svg, stage_summary
from curifactory_cli.report.logs import logs_html
from curifactory_cli.report.metrics_html import Summary, Table, metrics_section
from curifactory_cli.reporting import INDEX, PATH_TOKEN, CachedReportable, load_reportables
from curifactory_cli.store.entry import (
    safe_rel,
    signature_problem,
)
from curifactory_cli.store.file_checks import bytes_match

if TYPE_CHECKING:
    from curifactory_cli.registry.records import RunRecord, StageRecord
    from curifactory_cli.store.entry import Entry


class EntrySource(Protocol):
    """What a rebuilt report reads a cache through: any store's listing and local copies
    (a local folder's entries in place, a bucket's downloaded and verified)."""

    @property
    def root(self) -> PurePath: ...
    def entries(self, experiment: str | None = None) -> Iterator[Entry]: ...
    def local_dir(self, entry: Entry) -> str: ...


REPORTS_DIR = "reports"
LATEST = "_latest"
INDEX_PAGE = "index.html"
COMPARE_DIR = "compare"  # reports/compare/<A>-vs-<B>.html


@dataclass
class Item:
    """One reportable of the run, with the stage call that added it."""

    record: str
    stage: str
    reportable: Any


def reports_dir(root: Path) -> Path:
    return Path(root) / REPORTS_DIR


def items_from_records(records: Iterable[Any]) -> list[Item]:
    """The reportables of a finished run's records (as the scheduler left them)."""
    return [
        Item(str(record.name), str(getattr(r, "stage", "") or ""), r)
        for record in records
        for r in getattr(record, "reportables", ())
    ]


def items_from_cache(run: RunRecord, warnings: list[str], store: EntrySource) -> list[Item]:
    """The reportables kept in the cache entries of a run's stage calls (for a rebuild),
    read through the `store` the run's cache opens as: a local folder is read in place; a
    cache at a URL is listed once and the entries with reportables downloaded (each file
    verified against its checksum) into the store's scratch folder, kept until it closes."""
    calls: dict[str, StageRecord] = {}
    for call in run.stages or ():
        rel = safe_rel(call.entry)
        if rel is not None:
            calls.setdefault(rel, call)
    items: list[Item] = []
    for rel, entry in _entries(store, calls).items():
        call = calls[rel]
        try:
            loaded = _entry_reportables(Path(store.local_dir(entry)), entry.meta)
        except (OSError, ValueError, CurifactoryError) as exc:
            said = getattr(exc, "message", None) or exc
            warnings.append(f"{call.stage} [{call.record}]: reportables not read: {said}")
            continue
        items += [Item(call.record, call.stage, r) for r in loaded]
    return items


def _entries(store: EntrySource, calls: dict[str, StageRecord]) -> dict[str, Any]:
    """The entries of `calls` that are still in the cache with the key the run recorded
    and that carry reportables, by their path in the cache (one listing per experiment
    folder; an entry cleared since has nothing to show)."""
    found: dict[str, Any] = {}
    for namespace in sorted({rel.split("/", 1)[0] for rel in calls}):
        for entry in store.entries(namespace):
            rel = entry.rel(store.root)
            call = calls.get(rel)
            if call is None or entry.key != call.key:
                continue
            if any(f.get("path") == INDEX for f in _listed(entry.meta)):
                found[rel] = entry
    return {rel: found[rel] for rel in calls if rel in found}  # in the run's order


def _listed(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in meta.get("extra_files") or () if isinstance(f, dict)]


def _read_regular(path: Path) -> bytes:
    """A file's bytes, refusing a symbolic link (the cache may be shared ground)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as infile:
        return infile.read()


def _entry_reportables(directory: Path, meta: dict[str, Any]) -> list[CachedReportable]:
    problem = signature_problem(meta)
    if problem:
        raise ValueError(f"{directory}: {problem}")
    listed = _listed(meta)
    info = next((f for f in listed if f.get("path") == INDEX), None)
    if info is None:
        return []
    data = _read_regular(directory / INDEX)
    if not bytes_match(data, info):
        raise ValueError(f"{directory / INDEX} does not match its checksum")
    return load_reportables(str(directory), data, meta.get("extra_files"))


def write_run_report(
    root: Path,
    run: RunRecord,
    items: Sequence[Item],
    warnings: list[str],
    logs: Sequence[dict[str, Any]] = (),
    metrics: Sequence[Table] = (),
) -> Path:
    """Write (or replace) a run's report folder; returns its index.html. Problems with one
    reportable are shown in its place and added to `warnings`; `logs` is the run's log
    (runlog.read_log), `metrics` the tables of its metrics (shown first)."""
    base = reports_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    final = base / run.reference
    work = Path(tempfile.mkdtemp(prefix=f".{run.reference}.", dir=base))
    try:
        calls = run.stages or []
        summary = stage_summary(calls)
        graph, full = graph_svg(calls, summary)
        shown = reportables_html(
            calls, items, lambda k, item: _render(work, final, k, item), warnings
        )
        html = page.run_page(
            run,
            calls,
            summary,
            graph,
            full,
            shown,
            len(items),
            logs_html(calls, logs),
            metrics_section(metrics),
        )
        (work / INDEX_PAGE).write_text(html, encoding="utf-8")
        os.chmod(work, 0o755)  # mkdtemp makes it private; a report is for reading
        _swap_in(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _point_latest(base, run.reference)
    return final / INDEX_PAGE


def _swap_in(work: Path, final: Path) -> None:
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(work, final)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(work, final)


def _point_latest(base: Path, reference: str) -> None:
    """reports/_latest -> the newest report (replaced atomically; skipped where the file
    system has no symbolic links)."""
    link = base / LATEST
    temp = base / f".{LATEST}.{os.getpid()}"
    try:
        if temp.is_symlink():
            temp.unlink()
        os.symlink(reference, temp)
        os.replace(temp, link)
    except OSError:
        pass


def _order(calls: Sequence[StageRecord]) -> dict[tuple[str, str], int]:
    """(record, stage) -> the position of its first call: reportables follow the run."""
    first: dict[tuple[str, str], int] = {}
    for position, call in enumerate(calls):
        first.setdefault((call.record, call.stage), position)
    return first


def reportables_html(
    calls: Sequence[StageRecord],
    items: Sequence[Item],
    render: Callable[[int, Item], str],
    warnings: list[str],
) -> str:
    """The reportables by record (in run order) and then by group (grouped ones first, as in
    Curifactory), each titled; `render(k, item)` gives the body of the k-th."""
    if not items:
        return '<p class="muted">No stage of this run reported anything (record.report).</p>'
    first = _order(calls)
    records = {call.record: None for call in calls}  # record order of the run
    ordered = sorted(
        enumerate(items), key=lambda pair: first.get((pair[1].record, pair[1].stage), 1 << 30)
    )
    by_record: dict[str, list[tuple[int, Item]]] = {r: [] for r in records}
    for k, item in ordered:
        by_record.setdefault(item.record, []).append((k, item))
    out: list[str] = []
    for record, pairs in by_record.items():
        if not pairs:
            continue
        out.append(f"<h3>{page.escape(record)}</h3>")
        groups: dict[str | None, list[str]] = {}
        for k, item in pairs:
            reportable = item.reportable
            title = str(
                getattr(reportable, "qualified_name", None) or getattr(reportable, "name", k)
            )
            try:
                body = render(k, item)
            except Exception as exc:  # a user's reportable failing must not lose the rest
                warnings.append(f"reportable {title}: {type(exc).__name__}: {exc}")
                problem = page.escape(f"{type(exc).__name__}: {exc}")
                body = f'<div class="error-box">could not render: {problem}</div>'
            part = page.reportable_html(title, body)
            groups.setdefault(getattr(reportable, "group", None), []).append(part)
        for group, parts in sorted(groups.items(), key=lambda g: g[0] is None):
            if group is not None:
                out.append(f"<h4>group: {page.escape(group)}</h4>")
            out.append(f'<div class="record-reportables">{"".join(parts)}</div>')
    return "".join(out)


def _render(work: Path, final: Path, k: int, item: Item) -> str:
    """The k-th reportable's body, its files written to the report's reportables/k/."""
    reportable = item.reportable
    rel = f"reportables/{k}"
    folder = work / "reportables" / str(k)
    folder.mkdir(parents=True)
    if isinstance(reportable, CachedReportable):
        _copy_files(Path(reportable.path), folder, reportable.files)
        body: Any = reportable.stored_html.replace(PATH_TOKEN, rel)
    else:
        # A reportable of a stage without cachers, never rendered: render it here.
        reportable.path = str(folder)
        reportable.render()
        reportable.rendered = True
        reportable.path = rel
        try:
            body = reportable.html()
        finally:
            # Where its files end up: html() called later (a notebook) still finds them.
            reportable.path = str(final / rel)
    if isinstance(body, (list, tuple)):
        body = "\n".join(str(line) for line in body)
    return str(body)


def _copy_files(source: Path, target: Path, files: dict[str, dict[str, Any]]) -> None:
    """The reportable's files its entry lists, each checked against its checksum."""
    for name, info in files.items():
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            continue
        data = _read_regular(source / name)
        if not bytes_match(data, info):
            raise ValueError(f"{source / name} does not match its checksum")
        (target / name).write_bytes(data)


def update_index(
    root: Path, runs: Sequence[RunRecord], metrics: dict[str, dict[str, Summary]] | None = None
) -> Path:
    """Rewrite reports/index.html from the registry's runs (newest first); a run links to
    its report when its folder exists; `metrics`: each run's metrics over its sets."""
    base = reports_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    try:
        present = {e.name for e in os.scandir(base) if e.is_dir(follow_symlinks=False)}
    except OSError:
        present = set()
    _replace(base / INDEX_PAGE, page.index_page(runs, present, metrics))
    return base / INDEX_PAGE


def write_compare_page(root: Path, name: str, html: str) -> Path:
    """Write (or replace, atomically) reports/compare/<name>.html; returns its path."""
    folder = reports_dir(root) / COMPARE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.html"
    _replace(target, html)
    return target


def _replace(target: Path, html: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".html", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
