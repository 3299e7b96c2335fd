"""`ArtifactManager` as Curifactory users make it themselves, in a notebook or a script:

    manager = cf.ArtifactManager("notebook_example_0")
    r0 = get_initial_value(cf.Record(manager, MyParams(name="default")))
    print(r0.state)                   # {'initial_value': 5.0}

Made outside `curi run`, a manager runs each stage call at once (Curifactory's default), with
everything `curi run` gives a stage call: the same cache keys, locks, atomic publish and
verification, in the project found from the working directory (its `curi.toml` or
`[tool.curi]` settings, `data/cache`). The session is one run in the registry
(`curi runs ls`), updated after every stage call; `manager.generate_report()` writes its
HTML report. Inside `curi run`, `run(param_sets, manager)` receives a manager that records
stage calls into a graph first (see `record.ArtifactManager`).
"""

from __future__ import annotations

import datetime as dt
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli import record as _record
from curifactory_cli.events import Warned
from curifactory_cli.graph import Node, Outcome
from curifactory_cli.provenance import process_command, script_command
from curifactory_cli.record import Record
from curifactory_cli.run.rows import stage_row, transfer_counts

if TYPE_CHECKING:
    from curifactory_cli.registry.records import RunRecord, StageRecord

__all__ = ["ArtifactManager", "Record"]

# Curifactory options that change where its own logs, reports and run folders go, or how its
# CLI runs in parallel: they have no counterpart in a session here, and change no result.
_WITHOUT_EFFECT = frozenset(
    {
        "custom_name",
        "disable_non_cf_loggers",
        "live_log_debug",
        "logs_path",
        "manager_cache_path",
        "notebook_path",
        "notebooks_path",
        "parallel_lock",
        "parallel_mode",
        "prefix",
        "report_css_path",
        "reports_path",
        "run_line",
        "runs_path",
        "status_override",
        "suppress_live_log",
    }
)


class ArtifactManager(_record.ArtifactManager):
    """The records and stage calls of one interactive session (Curifactory's
    `ArtifactManager`): each stage call runs when it is made.

    Args:
        experiment_name: names the session's cache folder (`data/cache/<name>/...`) and its
            run in the registry.
        dry: run without writing anything (no cache entries, no registry).
        dry_cache: read the cache but never write to it (the run is still recorded).
        overwrite / overwrite_override: recompute every stage call.
        overwrite_stages: recompute these stages.
        cache_path: another cache folder or URL (default: the project's `cache` setting).
        lazy / ignore_lazy: treat every output as `Lazy` / keep `Lazy` outputs in memory.
        notes: kept with the run in the registry.
    """

    def __init__(
        self,
        experiment_name: str = "experiment",
        *,
        dry: bool = False,
        dry_cache: bool = False,
        lazy: bool = False,
        ignore_lazy: bool = False,
        overwrite: bool = False,
        overwrite_override: bool | None = None,
        overwrite_stages: list[str] | None = None,
        cache_path: str | None = None,
        notes: str | None = None,
        store_full: bool = False,
        **curifactory_options: Any,
    ) -> None:
        unknown = sorted(set(curifactory_options) - _WITHOUT_EFFECT)
        if unknown:
            raise TypeError(f"ArtifactManager() got an unexpected keyword argument {unknown[0]!r}")
        if store_full:
            raise NotImplementedError(
                "store_full is not available interactively: run the experiment with "
                "`curi run EXPERIMENT PARAMS --store-full`"
            )
        from curifactory_cli.discovery import project_root
        from curifactory_cli.run.settings import load_settings, resolve_cache

        root = project_root().resolve()  # a notebook in notebooks/ uses its project's
        settings = load_settings(root, {"cache": cache_path})
        super().__init__(
            experiment_name,
            dry=dry,
            lazy=lazy,
            ignore_lazy=ignore_lazy,
            overwrite=bool(overwrite or overwrite_override),
            overwrite_stages=overwrite_stages,
            cache_path=resolve_cache(root, settings),
        )
        self.dry_cache = dry_cache
        self.notes = notes
        self._root = root
        self._settings = settings
        self._session: _Session | None = None

    # Each stage call is traced into the graph like under `curi run`, then settled at once.
    def _add_node(self, node: Node) -> None:
        super()._add_node(node)
        if self._session is None:
            self._session = _Session(self)
        self._session.settle(node)

    @property
    def run_name(self) -> str | None:
        """The session's run reference in the registry, once a stage was called."""
        return None if self._session is None else self._session.reference

    def generate_report(self) -> Path | None:
        """Write the session's HTML report (reports/<run>/index.html) and the index of runs;
        returns the report's path (None before any stage call, or with `dry`)."""
        return None if self._session is None else self._session.report()

    def close(self) -> None:
        """Finish with the cache (a remote tier uploads what is queued). Also done at exit."""
        if self._session is not None:
            self._session.close()

    # ---------------------------------------------------------------- notebook display
    # As Curifactory's: shown at once in Jupyter; elsewhere the HTML comes back as an object
    # (its str() is the HTML), so a script can write it to a file.
    def display_info(self) -> HTMLFragment | None:
        """The session's run: status, counts, command, git commit, parameter sets."""
        from curifactory_cli.report import page

        run = self._run()
        return _show(page._info(run) + "<h3>Parameter sets</h3>" + page._params(run))

    def display_stage_graph(self) -> HTMLFragment | None:
        """The stage graph of the session so far, as in its report."""
        from curifactory_cli.report.layout import graph_svg, stage_summary

        calls = self._calls()
        svg, _ = graph_svg(calls, stage_summary(calls))
        return _show(f'<div class="graph-wrap">{svg}</div>')

    def display_all_reportables(self) -> HTMLFragment | None:
        """Every record's reportables, figures embedded."""
        return self._show_reportables(self.records)

    def display_record_reportables(self, record: Record) -> HTMLFragment | None:
        """One record's reportables, figures embedded."""
        return self._show_reportables([record])

    def _show_reportables(self, records: list[Record]) -> HTMLFragment | None:
        from curifactory_cli.report import items_from_records, reportables_html
        from curifactory_cli.report.inline import reportable_body

        items = items_from_records(records)
        body = reportables_html(
            self._calls(), items, lambda k, item: reportable_body(item.reportable), []
        )
        return _show(body)

    def _calls(self) -> list[StageRecord]:
        cache = Path(self.cache_path)
        return [stage_row(node, cache) for node in self.graph.nodes]

    def _run(self) -> RunRecord:
        from curifactory_cli.registry.records import ParamSetRecord, RunRecord

        session = self._session
        if session is not None and session.registry is not None and session.reference:
            return session.registry.get_run(session.reference)
        return RunRecord(  # nothing recorded (no stage call yet, or dry)
            reference="(not recorded)",
            experiment=self.experiment_name,
            number=0,
            status="running" if session is None else "complete",
            started="",
            command=process_command(),
            param_sets=[
                ParamSetRecord(name=r.name, hash=r.get_hash())
                for r in self.records
                if r.params is not None
            ],
            stages=self._calls(),
        )


class HTMLFragment:
    """HTML that Jupyter shows as such (`_repr_html_`); `str()` gives the HTML."""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _show(body: str) -> HTMLFragment | None:
    from curifactory_cli.report.inline import fragment

    shown = HTMLFragment(fragment(body))
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    if shell is None:
        return shown
    from IPython.display import HTML, display

    display(HTML(shown.html))
    return None


class _Session:
    """What a `curi run` sets up, for a manager's stage calls made one by one."""

    def __init__(self, manager: ArtifactManager) -> None:
        from curifactory_cli.engine.keys import KeyMaker
        from curifactory_cli.engine.runners import InlineRunner
        from curifactory_cli.engine.scheduler import Scheduler
        from curifactory_cli.fingerprint import CodeFingerprinter
        from curifactory_cli.provenance import git_info, host_info, library_versions
        from curifactory_cli.registry.database import RunRegistry, registry_path
        from curifactory_cli.registry.log import RunLog, log_path
        from curifactory_cli.registry.records import GitInfo, HostInfo
        from curifactory_cli.store import open_store

        self.manager = manager
        root, settings = manager._root, manager._settings
        self.store = open_store(
            manager.cache_path,
            remote=settings.get("remote"),
            dry=manager.dry or manager.dry_cache,
            storage_options=settings.get("storage_options"),
        )
        if not self.store.dry:
            self.store.prepare()
        self.started = dt.datetime.now()
        git = git_info(str(root))
        self.registry = None if manager.dry else RunRegistry(registry_path(root))
        self.reference: str | None = None
        self.log: RunLog | None = None
        if self.registry is not None:
            self.reference = self.registry.start_run(
                experiment=manager.experiment_name,
                command=process_command(),
                reproduce=script_command(),
                param_files=[],
                param_sets=[],
                git=GitInfo.from_json(git),
                host=HostInfo.from_json(host_info()),
                versions=library_versions(),
                notes=manager.notes,
                cache_dir=manager.cache_path,
                dry=manager.dry_cache,
                doc=_doc_of_main(),
            ).reference
            self.log = RunLog(log_path(self.registry.path, self.reference))
        self.warnings: list[str] = []
        reporter = _Warnings(self.warnings)
        if hasattr(self.store, "notify"):  # a remote tier left out is said under the cell
            self.store.notify = lambda message: reporter.emit(Warned(message))
        self.scheduler = Scheduler(
            store=self.store,
            # A dry session writes nothing, the memo of depends_on files' checksums included.
            keys=KeyMaker(
                manager.experiment_name, CodeFingerprinter(root), write_memo=not manager.dry
            ),
            runner=InlineRunner(),
            reporter=reporter,
            experiment=manager.experiment_name,
            overwrite=manager.overwrite,
            overwrite_stages=frozenset(manager.overwrite_stages),
            provenance={"run": {"id": self.reference, "host": host_info()["host"]}},
            logbook=self.log.add if self.log is not None else None,
        )
        self.failed: list[Any] = []
        # At exit, or when the session is collected: not an atexit hook holding the session
        # (and its whole graph) alive for the life of the process.
        self._closer = weakref.finalize(self, _close_store, self.store)
        if self.log is not None:
            weakref.finalize(self, self.log.close)

    def settle(self, node: Node) -> None:
        try:
            self.scheduler.settle(self.manager.graph.nodes, [node])
        except BaseException as exc:
            self.failed.append(exc)
            raise
        finally:
            self._record()

    def _record(self) -> None:
        """The registry's row for the session, as it stands after this stage call."""
        if self.registry is None or self.reference is None:
            return
        from curifactory_cli.params import display_values
        from curifactory_cli.registry.records import ParamSetRecord

        nodes = self.manager.graph.nodes
        counts = dict.fromkeys(("executed", "cached", "skipped", "failed"), 0)
        for node in nodes:
            outcome = (node.outcome or Outcome.SKIPPED).value
            counts[outcome] += 1
        # Pulled so far (uploads are batched until the session closes: not counted here).
        moved = transfer_counts(getattr(self.store, "transfers", None))
        counts.update({k: v for k, v in moved.items() if k.startswith("pulled")})
        failed = next((n for n in nodes if n.outcome is Outcome.FAILED), None)
        error = self.failed[-1] if self.failed else None
        sets = [
            ParamSetRecord(
                name=r.name,
                hash=r.get_hash(),
                source="(interactive)",
                values=display_values(r.params),
            )
            for r in self.manager.records
            if r.params is not None
        ]
        from curifactory_cli.provenance import library_versions, merge_versions

        self.registry.finish_run(
            self.reference,
            status="error" if failed is not None else "complete",
            duration_s=(dt.datetime.now() - self.started).total_seconds(),
            counts=counts,
            error=None if error is None else str(getattr(error, "message", error)),
            failed_stage=failed.stage.name if failed else None,
            failed_record=failed.record_name if failed else None,
            stages=[stage_row(n, self.store.root) for n in nodes],
            param_sets=sets,
            versions=merge_versions(library_versions(), (n.versions for n in nodes)),
        )

    def report(self) -> Path | None:
        if self.registry is None or self.reference is None:
            return None
        from curifactory_cli import report
        from curifactory_cli.registry.log import read_log

        run = self.registry.get_run(self.reference)
        logs = read_log(self.log.path) if self.log is not None else []
        items = report.items_from_records(self.manager.records)
        page = report.write_run_report(self.manager._root, run, items, [], logs)
        report.update_index(self.manager._root, self.registry.list_runs(limit=None, brief=True))
        return page

    def close(self) -> None:
        self._closer()  # runs once


def _close_store(store: Any) -> None:
    store.close()
    for warning in getattr(store, "warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)


class _Warnings:
    """Shows the session's warnings on stderr (a notebook shows them under the cell)."""

    progress = False

    def __init__(self, kept: list[str]) -> None:
        self.kept = kept

    def emit(self, event: Any) -> None:
        if isinstance(event, Warned):
            self.kept.append(event.message)
            print(f"warning: {event.message}", file=sys.stderr)


def _doc_of_main() -> str | None:
    main = sys.modules.get("__main__")
    doc = getattr(main, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None
