"""Stage calls on an HPC batch system (`curi run --executor slurm`, `pbs`, `lsf`, `sge`):
Dask workers started as batch jobs through dask-jobqueue, the scheduler in this process.

The cluster adapts between 0 jobs and `max_jobs` as stage calls are ready (no idle job
burns allocation), and every job it submitted is cancelled when the run ends, however it
ends: closed at the end of the run and on Ctrl-C or SIGTERM, and, when this process is
killed, by a watch process of its own that cancels what is left (see engine.job_watch).
dask-jobqueue is imported only here, when one of these executors is chosen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError

if TYPE_CHECKING:
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.engine.worker import Context

# executor name -> the dask_jobqueue cluster class
KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster", "sge": "SGECluster"}

# Our settings (`[tool.curi.slurm]`, `--cluster-opt`) -> (accepted types, what it is). The
# jobqueue names are longer or differ between batch systems; these stay the same for all.
OPTIONS: dict[str, tuple[tuple[type, ...], str]] = {
    "queue": ((str,), "the queue or partition (-p)"),
    "account": ((str,), "the account charged (-A)"),
    "walltime": ((str,), "a job's time limit, e.g. 02:00:00"),
    "cores": ((int,), "cores per job (default 1)"),
    "memory": ((str,), "memory per job, e.g. 16GB (default 4GB)"),
    "processes": ((int,), "Dask worker processes per job (default: cores, one thread each)"),
    "max_jobs": ((int,), "jobs at most at once (default 4)"),
    "job_directives": ((list,), "more job directives, e.g. ['--gres=gpu:1']"),
    "prologue": ((list,), "shell lines the job runs first, e.g. ['source .venv/bin/activate']"),
    "python": ((str,), "the Python the job runs (default: the one running curi)"),
    "interface": ((str,), "the network interface of scheduler and workers, e.g. ib0"),
    "log_directory": ((str,), "where the batch system writes the jobs' output"),
    "local_directory": ((str,), "node-local scratch for the workers"),
    "death_timeout": ((int,), "seconds a worker waits for a lost scheduler (default 60)"),
    "resources": ((dict,), "Dask resources each worker has, e.g. {GPU = 1}"),
    "pools": ((dict,), "more pools of jobs, each a table of these settings: pools.gpu"),
}
DEFAULTS: dict[str, Any] = {"cores": 1, "memory": "4GB", "max_jobs": 4}


def check_options(kind: str, where: str, table: dict[str, Any]) -> dict[str, Any]:
    """`table` checked key by key (a wrong one named with where it was set)."""
    from curifactory_cli.errors import close_matches_hint

    for key, given in table.items():
        if key not in OPTIONS:
            raise ConfigError(
                f"{where}: unknown {kind} setting {key!r}",
                hint=close_matches_hint(key, list(OPTIONS), "settings", "see `curi config`"),
            )
        types, _ = OPTIONS[key]
        value: Any = given
        if not _of_type(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{where}: {kind}.{key} = {value!r} must be a {names}")
        if key in ("cores", "processes", "max_jobs") and value < 1:
            raise ConfigError(f"{where}: {kind}.{key} = {value!r} must be at least 1")
        if key in ("job_directives", "prologue") and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {kind}.{key} must be a list of strings")
        if key == "pools":
            for name, pool in value.items():
                if not isinstance(pool, dict) or "pools" in pool:
                    raise ConfigError(
                        f"{where}: {kind}.pools.{name} must be a table of settings (no pools)",
                        hint=f"[tool.curi.{kind}.pools.{name}] with resources, job_directives...",
                    )
                check_options(f"{kind}.pools.{name}", where, pool)
        if key == "resources" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
        ):
            raise ConfigError(f"{where}: {kind}.resources must map names to numbers")
    return table


def _of_type(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not isinstance(value, bool)


def parse_cluster_opts(kind: str, given: tuple[str, ...]) -> dict[str, Any]:
    """`--cluster-opt key=value` pairs: text settings as typed (`walltime=02:00:00`), the
    others read as TOML values (`cores=8`, `job_directives=["--gres=gpu:1"]`)."""
    import tomllib

    table: dict[str, Any] = {}
    for pair in given:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(
                f"--cluster-opt {pair!r}: not KEY=VALUE",
                hint="e.g. --cluster-opt walltime=02:00:00",
            )
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        # A setting that is text stays as typed (TOML reads 02:00:00 as a time of day).
        if key in OPTIONS and OPTIONS[key][0] == (str,):
            value = text
        table[key] = value
    return check_options(kind, "--cluster-opt", table)


@dataclass(frozen=True)
class ClusterPlan:
    """What the executor would submit: the job script and how many jobs at most."""

    kind: str
    script: str
    max_jobs: int
    workers_per_job: int
    pool: str = ""  # "" for the main pool, else the name of one of `pools`


def _jobqueue(kind: str) -> Any:
    if importlib.util.find_spec("dask_jobqueue") is None:
        raise ConfigError(
            f"--executor {kind} needs dask-jobqueue, which is not installed",
            hint="pip install 'curifactory-cli[hpc]'",
        )
    # Importing dask_jobqueue (its runner module) makes Ctrl-C exit the process at once
    # with status 0; the run's own handler must stay, to stop the run and cancel its jobs.
    # The import happens here first, in the main thread (signal handlers live there).
    before = signal.getsignal(signal.SIGINT)
    import dask_jobqueue

    if signal.getsignal(signal.SIGINT) is not before and before is not None:
        signal.signal(signal.SIGINT, before)
    return getattr(dask_jobqueue, KINDS[kind])


def _job_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """dask-jobqueue's keyword arguments for our settings."""
    cores = config.get("cores", DEFAULTS["cores"])
    kwargs: dict[str, Any] = {
        "cores": cores,
        "memory": config.get("memory", DEFAULTS["memory"]),
        # One thread per worker process: a stage call runs alone in its process (stages are
        # not written to share one).
        "processes": config.get("processes", cores),
        "job_name": "curi-worker",
        "python": config.get("python", sys.executable),
    }
    for ours, theirs in (
        ("queue", "queue"),
        ("account", "account"),
        ("walltime", "walltime"),
        ("job_directives", "job_extra_directives"),
        ("prologue", "job_script_prologue"),
        ("interface", "interface"),
        ("log_directory", "log_directory"),
        ("local_directory", "local_directory"),
        ("death_timeout", "death_timeout"),
    ):
        if ours in config:
            kwargs[theirs] = config[ours]
    resources = config.get("resources")
    if resources:
        spec = ",".join(f"{name}={amount}" for name, amount in resources.items())
        kwargs["worker_extra_args"] = ["--resources", spec]
    return kwargs


def pool_settings(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each extra pool's settings: its own over the main table's."""
    base = {k: v for k, v in config.items() if k not in ("pools", "max_jobs")}
    return {name: {**base, **table} for name, table in config.get("pools", {}).items()}


def plan_cluster(kind: str, config: dict[str, Any]) -> list[ClusterPlan]:
    """The job scripts the executor would submit (the main pool's, then each extra pool's),
    made without a scheduler or a submission."""
    cluster_cls = _jobqueue(kind)
    plans = []
    for pool, table in [("", config), *pool_settings(config).items()]:
        kwargs = _job_kwargs(table)
        name = f"{pool}-worker" if pool else "curi-worker"
        try:
            job = cluster_cls.job_cls(
                "tcp://<this-host>:<port>", name=name, config_name=kind, **kwargs
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[tool.curi.{kind}]: {exc}") from None
        max_jobs = table.get("max_jobs", DEFAULTS["max_jobs"])
        plans.append(ClusterPlan(kind, job.job_script(), max_jobs, kwargs["processes"], pool))
    return plans


class _Pool:
    """Jobs of one extra pool (a GPU pool): started as calls that only its workers can take
    are handed to the cluster, retired when none is left."""

    IDLE_S = 3.0  # as the main pool's adaptive scaling: 3 checks a second apart

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.kwargs = _job_kwargs(config)
        self.max_jobs: int = config.get("max_jobs", DEFAULTS["max_jobs"])
        self.offered = {k: float(v) for k, v in config.get("resources", {}).items()}
        self.calls = 0  # its calls handed to the cluster and not over
        self.jobs: list[Any] = []
        self.started = 0
        self.idle_since: float | None = None

    def covers(self, resources: dict[str, float]) -> bool:
        return all(self.offered.get(k, 0) >= v for k, v in resources.items())


class _Watch:
    """A process of its own that cancels the jobs still listed when this one dies (killed
    with SIGKILL, out of memory): closing the cluster cancels them otherwise."""

    def __init__(self, cancel_command: str) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "curifactory_cli.engine.job_watch", cancel_command],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C to the terminal's process group spares it
            text=True,
        )

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()

    def submitted(self, job_id: str) -> None:
        self._send(f"+{job_id}")

    def cancelled(self, job_id: str) -> None:
        self._send(f"-{job_id}")

    def close(self) -> None:
        """The cluster is closed: the watch cancels what may be left, and ends."""
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=30)


def _watched_job_cls(job_cls: Any, watch: _Watch, failed: Callable[[BaseException], None]) -> Any:
    """The jobqueue job class, telling the watch each job it submits and cancels, and
    `failed` a submission that failed (the run stops instead of waiting for workers)."""

    class Watched(job_cls):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                from distributed.core import Status

                self.status = Status.failed  # else closing the cluster waits for it
                failed(exc)
                raise

        def _job_id_from_submit_output(self, out: str) -> str:
            # Right after the submission returns: the id is known to the watch before
            # anything else can happen to this process.
            job_id: str = super()._job_id_from_submit_output(out)
            watch.submitted(job_id)
            return job_id

        async def close(self) -> None:
            await super().close()
            if self.job_id:
                watch.cancelled(self.job_id)

    Watched.__name__ = job_cls.__name__
    return Watched


class BatchCluster:
    """A dask-jobqueue cluster of this run, with its client; the shape `DaskRunner` uses."""

    local = None
    # Workers on other nodes see the project and the cache at the same paths (a shared
    # file system, see the README): they read inputs and write entries there themselves.
    shares_files = True
    starts_workers = True  # DaskRunner watches `failure` while it waits

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        cluster_cls = _jobqueue(kind)
        import dask
        from distributed import Client

        from curifactory_cli.engine.dask_runner import LOCAL_CLUSTER_CONFIG

        kwargs = _job_kwargs(config)
        self.kind = kind
        self.failure: ConfigError | None = None  # a submission that failed
        self.max_jobs = config.get("max_jobs", DEFAULTS["max_jobs"])
        # What each worker has (`resources`): stages asking for it run only there.
        self.offered_resources: Any = {k: float(v) for k, v in config.get("resources", {}).items()}
        self.pools = [_Pool(name, table) for name, table in pool_settings(config).items()]
        main_offers = self.offered_resources
        self.offered_resources = [main_offers, *(pool.offered for pool in self.pools)]
        self.workers = self.max_jobs * kwargs["processes"] + sum(
            pool.max_jobs * pool.kwargs["processes"] for pool in self.pools
        )
        self._watch = _Watch(cluster_cls.job_cls.cancel_command)
        self._job_cls = _watched_job_cls(cluster_cls.job_cls, self._watch, self._failed)
        try:
            # A job lost to walltime or preemption fails its stage (its draft discarded, the
            # next run resumes) instead of rerunning it over a half-written draft.
            with dask.config.set(LOCAL_CLUSTER_CONFIG):
                self.cluster = cluster_cls(
                    job_cls=self._job_cls,
                    config_name=kind,
                    scheduler_options={"dashboard_address": None},
                    # A failed submission is reported as the run's error, once (Dask would log
                    # it with a traceback at each attempt).
                    silence_logs=logging.CRITICAL,
                    **kwargs,
                )
                # As many jobs as calls handed to the cluster (ready or running), up to
                # max_jobs: Dask asks for a worker per target_duration of queued work, at
                # most one per task, so a tiny target means one per call.
                self.cluster.adapt(
                    minimum_jobs=0, maximum_jobs=self.max_jobs, target_duration="10ms"
                )
                self.client = Client(self.cluster)
        except BaseException:
            self._watch.close()
            raise

    def _failed(self, exc: BaseException) -> None:
        if self.failure is None:
            command = self.cluster.job_cls.submit_command.split()[0]
            # dask-jobqueue's message holds the command's whole output: its stderr says why.
            said = str(exc).rpartition("stderr:")[2].strip() or str(exc).strip() or repr(exc)
            self.failure = ConfigError(
                f"cannot submit a {self.kind} job: {said}",
                hint=f"check [tool.curi.{self.kind}] (see `curi plan --executor {self.kind}`) "
                f"and that `{command}` works here.",
            )

    def _pool_of(self, resources: dict[str, float] | None) -> _Pool | None:
        """The extra pool a call goes to: None when the main pool's workers can take it."""
        if not resources or all(
            self.offered_resources[0].get(k, 0) >= v for k, v in resources.items()
        ):
            return None
        return next((pool for pool in self.pools if pool.covers(resources)), None)

    def took(self, resources: dict[str, float] | None) -> None:
        pool = self._pool_of(resources)
        if pool is not None:
            pool.calls += 1
            self.tick()  # its first job is submitted now, not a second later

    def gave_back(self, resources: dict[str, float] | None) -> None:
        pool = self._pool_of(resources)
        if pool is not None:
            pool.calls -= 1

    def tick(self) -> None:
        """Size each extra pool: a job per `processes` of its calls, up to its max_jobs."""
        from distributed.core import Status

        now = time.monotonic()
        for pool in self.pools:
            pool.jobs = [j for j in pool.jobs if j.status not in (Status.closed, Status.failed)]
            wanted = min(pool.max_jobs, -(-pool.calls // pool.kwargs["processes"]))
            while len(pool.jobs) < wanted and self.failure is None:
                self._start(pool)
            if pool.calls or not pool.jobs:
                pool.idle_since = None
            elif pool.idle_since is None:
                pool.idle_since = now
            elif now - pool.idle_since >= pool.IDLE_S:
                self._retire(pool)

    def _start(self, pool: _Pool) -> None:
        job = self._job_cls(
            scheduler=self.cluster.scheduler_address,
            name=f"{pool.name}-{pool.started}",
            config_name=self.kind,
            **pool.kwargs,
        )
        pool.started += 1
        pool.jobs.append(job)
        with contextlib.suppress(Exception):  # a failed submission is self.failure
            self.cluster.sync(job.start)

    def _retire(self, pool: _Pool) -> None:
        """Its workers may run calls that any worker takes: they move elsewhere first."""
        names = {job.name for job in pool.jobs}
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        mine = [
            a
            for a, w in workers.items()
            if str(w.get("name", "")).rsplit("-", 1)[0] in names or w.get("name") in names
        ]
        with contextlib.suppress(Exception):
            self.client.retire_workers(mine, close_workers=True)
        for job in pool.jobs:
            with contextlib.suppress(Exception):
                self.cluster.sync(job.close)
        pool.jobs = []
        pool.idle_since = None

    def close(self) -> None:
        try:
            for pool in self.pools:
                for job in pool.jobs:
                    with contextlib.suppress(Exception):
                        self.cluster.sync(job.close, callback_timeout=30)
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
            # Cancels every job it submitted; the watch cancels what is left if it fails.
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=30)
        finally:
            self._watch.close()


class BatchStart:
    """Starts the cluster's scheduler in a thread (the jobs are submitted only once stage
    calls are ready), as `dask_runner.ClusterStart` does for a local cluster."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self._cluster: BatchCluster | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._start, args=(kind, config), name="curi-hpc-start", daemon=True
        )
        self._thread.start()

    def _start(self, kind: str, config: dict[str, Any]) -> None:
        try:
            self._cluster = BatchCluster(kind, config)
        except BaseException as exc:  # handed to the main thread by runner()
            self._error = exc

    def runner(self, context: Context) -> JobRunner:
        from curifactory_cli.engine.dask_runner import DaskRunner

        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._cluster is not None
        return DaskRunner(self._cluster, context)  # type: ignore[arg-type]

    def discard(self) -> None:
        self._thread.join()
        if self._cluster is not None:
            self._cluster.close()


class BatchExecutor:
    """Dask workers as jobs of a batch system (Slurm, PBS, LSF, SGE)."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self.name = kind
        self.config = config

    def default_workers(self) -> int:
        return 1  # the cluster's size comes from max_jobs and processes, not -j

    def start(self, workers: int, scheduler: str | None) -> BatchStart:
        if scheduler:
            raise ConfigError(
                f"--executor {self.name} starts its own scheduler: leave out --scheduler",
                hint="--scheduler goes with --executor dask.",
            )
        _jobqueue(self.name)  # a missing extra stops the run before anything starts
        return BatchStart(self.name, self.config)
