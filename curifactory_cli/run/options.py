"""What a run is given and what it gives back: `RunOptions` (everything `curi run` accepts)
and `RunResult` (what the run did), shared by the runner, full stores and the faces."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli.graph import Outcome

if TYPE_CHECKING:
    from curifactory_cli.errors import CurifactoryError, StageError
    from curifactory_cli.graph import Graph, Node
    from curifactory_cli.params import ParamSet
    from curifactory_cli.record import Record, TracingManager


@dataclass(frozen=True)
class RunOptions:
    """Everything `curi run` accepts (see `curi run --help`)."""

    experiment: str
    params: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    indices: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    overwrite: bool = False
    overwrite_stages: tuple[str, ...] = ()
    dry: bool = False
    cache_dir: str | None = None
    lazy: bool = False
    ignore_lazy: bool = False
    root: str | None = None  # the project folder (default: the current directory)
    command: tuple[str, ...] = ()
    notes: str | None = None
    dry_cache: bool = False  # read the cache, never write to it (the registry is still written)
    store_full: bool = False  # copy everything the run used into data/runs/<reference>/
    report: bool = True  # write reports/<reference>/index.html and update reports/index.html
    keep_going: bool = False  # after a failing stage, still run everything not depending on it
    # Stage calls run at once: 1 runs them in this process, "auto" one per usable core.
    # None: [tool.curi] in pyproject.toml decides, else 1 (Dask: one per usable core).
    workers: int | str | None = None
    executor: str | None = None  # "local", "dask", a batch system ("slurm"...) or module:Class
    scheduler: str | None = None  # address of an existing Dask scheduler
    # KEY=VALUE over the batch executor's settings table ([tool.curi.slurm] for slurm)
    cluster_opts: tuple[str, ...] = ()
    remote: str | None = None  # a shared cache behind the local one (an fsspec URL)
    strict: bool = False  # a --set key no parameter set has is an error (else a warning)
    lock_timeout: float | None = None  # seconds to wait for another run's entry lock


@dataclass
class StageSummary:
    stage: str
    executed: int = 0
    cached: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class RunResult:
    """What a run did. `ok` is False when a stage failed."""

    experiment: str
    run_id: str
    param_sets: list[ParamSet]
    records: list[Record]
    graph: Graph
    cache_dir: Path
    seconds: float = 0.0
    error: CurifactoryError | None = None
    warnings: list[str] = field(default_factory=list)
    results: Any = None  # what the experiment's run() returned
    store_dir: Path | None = None  # the --store-full folder
    report: Path | None = None  # the run's HTML report (reports/<reference>/index.html)
    store: Any = None  # the store it used (a temporary local tier lives as long as it)
    manager: TracingManager | None = None  # the manager run() received
    failures: list[StageError] = field(default_factory=list)  # several with --keep-going
    # With a remote tier: its URL, whether it was reached, what was pulled and pushed.
    remote: dict[str, Any] | None = None
    log: Path | None = None  # what its stage calls printed (see runlog), once one did

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failed_node(self) -> Node | None:
        return next((n for n in self.graph.nodes if n.outcome is Outcome.FAILED), None)

    def counts(self) -> Counter[str]:
        return Counter(n.outcome.value if n.outcome else "skipped" for n in self.graph.nodes)

    def executed(self) -> list[tuple[str, str]]:
        """(stage, record name) of every node whose function ran, in order of execution."""
        return [
            (n.stage.name, n.record_name) for n in self.graph.nodes if n.outcome is Outcome.EXECUTED
        ]

    def stage_summaries(self) -> list[StageSummary]:
        by_stage: dict[str, StageSummary] = {}
        for node in self.graph.nodes:
            summary = by_stage.setdefault(node.stage.name, StageSummary(node.stage.name))
            outcome = node.outcome or Outcome.SKIPPED
            setattr(summary, outcome.value, getattr(summary, outcome.value) + 1)
            summary.seconds += node.seconds
        return list(by_stage.values())

    def to_json(self) -> dict[str, Any]:
        from curifactory_cli.engine.reasons import changes_of

        failed = self.failed_node
        return {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "cache_dir": str(self.cache_dir),
            "param_sets": [
                {"name": p.name, "hash": p.hash, "source": p.source} for p in self.param_sets
            ],
            "counts": {
                k: self.counts().get(k, 0) for k in ("executed", "cached", "skipped", "failed")
            },
            "stages": [
                dataclasses.asdict(s) | {"seconds": round(s.seconds, 4)}
                for s in self.stage_summaries()
            ],
            "nodes": [
                {
                    "stage": n.stage.name,
                    "record": n.record_name,
                    "outcome": (n.outcome or Outcome.SKIPPED).value,
                    "reason": n.reason,
                    "changed": changes_of(n.reason),
                    "seconds": round(n.seconds, 4),
                    "key": n.key,
                    "entry": n.entry_dir,
                }
                for n in self.graph.nodes
            ],
            "failures": [
                {"stage": f.stage, "record": f.record, "message": f.message} for f in self.failures
            ],
            "error": None
            if self.error is None
            else {
                "message": self.error.message,
                "stage": failed.stage.name if failed else None,
                "record": failed.record_name if failed else None,
            },
            "warnings": self.warnings,
            "remote": self.remote,
            "log": str(self.log) if self.log is not None else None,
            "store_dir": str(self.store_dir) if self.store_dir else None,
            "report": str(self.report) if self.report else None,
        }
