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

import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli import record as _record
from curifactory_cli.events import Warned
from curifactory_cli.graph import Node
from curifactory_cli.provenance import process_command, script_command
from curifactory_cli.record import Record
from curifactory_cli.run.rows import stage_row

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


class ArtifactManager(_record.TracingManager):
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
        # Curifactory's custom name: it names the files of the run's folder (get_path()).
        self.prefix = curifactory_options.get("prefix")
        self._root = root
        self._settings = settings
        self._session: _Session | None = None
        self._begin = self._start

    # Each stage call is traced into the graph like under `curi run`, then settled at once.
    def _add_node(self, node: Node) -> None:
        super()._add_node(node)
        self._start()
        assert self._session is not None
        self._session.settle(node)

    def _start(self) -> None:
        """The session's run, recorded at its first stage call, or when its reference or
        folder is asked for."""
        if self._session is None:
            self._session = _Session(self)
            self._session.run.bind(self)

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
    """A manager's stage calls, made one by one, as one run: the orchestrator of `curi run`
    (`run.orchestrator.Run`) settling each call when it is made and recording the run as
    it stands after each."""

    def __init__(self, manager: ArtifactManager) -> None:
        from curifactory_cli.engine.runners import InlineRunner
        from curifactory_cli.run.orchestrator import Run, RunSpec

        self.manager = manager
        spec = RunSpec(
            root=manager._root,
            settings=manager._settings,
            experiment=manager.experiment_name,
            cache=manager.cache_path,
            dry=manager.dry,
            dry_cache=manager.dry_cache,
            overwrite=manager.overwrite,
            overwrite_stages=frozenset(manager.overwrite_stages),
            reproduce=script_command(),
            notes=manager.notes,
            doc=_doc_of_main(),
            report=False,  # written on demand: manager.generate_report()
            progress=False,
        )
        self.warnings: list[str] = []
        self.run = Run(spec, _Warnings(self.warnings))
        result = self.run.start(manager.records, manager.graph, [], InlineRunner)
        self.registry = self.run.registry
        self.reference = None if self.registry is None else result.run_id
        # At exit, or when the session is collected: not an atexit hook holding the session
        # (and its whole graph) alive for the life of the process.
        self._closer = weakref.finalize(self, _close, self.run.store, self.run.log)

    def settle(self, node: Node) -> None:
        try:
            self.run.settle([node])
        except BaseException as exc:
            self.run.failed.append(exc)
            raise
        finally:
            self._record()

    def _record(self) -> None:
        """The registry's row for the session, as it stands after this stage call."""
        from curifactory_cli.params import display_values
        from curifactory_cli.registry.records import ParamSetRecord

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
        self.run.checkpoint(sets)

    def report(self) -> Path | None:
        if self.registry is None or self.reference is None:
            return None
        from curifactory_cli.run.reports import write_report

        log = self.run.log
        return write_report(
            self.manager._root,
            self.registry,
            self.reference,
            self.manager.records,
            None if log is None else log.path,
        )

    def close(self) -> None:
        self._closer()  # runs once


def _close(store: Any, log: Any) -> None:
    if log is not None:
        log.close()
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
