"""Stage calls as tasks on a `dask.distributed` cluster (`curi run --executor dask`)."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import pickle
import threading
import time
from typing import Any

from curifactory_cli.capture import progress_to
from curifactory_cli.engine.jobs import Failure, Job, JobResult
from curifactory_cli.engine.runners import (
    WORKER_PRELOAD,
    died,
    forkserver_context,
    lost_job,
    main_hidden,
    pickle_job,
)
from curifactory_cli.engine.worker import Context, run_payload
from curifactory_cli.errors import ConfigError
from curifactory_cli.store import discard_draft

# The local cluster curi starts has no dashboard, so nothing reads the statistical profiler
# (a thread in each worker sampling the running stage every 10 ms: 4-8% slower pure-Python
# stages) or a fast event-loop tick (idle CPU taken from the stages on a small machine).
# A killed worker fails its stage (as with local workers) instead of the task being retried.
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
}


def _dask_entry(context: Context, topic: str, index: int, payload: bytes) -> bytes:
    with progress_to(_DaskProgress(topic, index)):
        return run_payload(context, payload)


class _DaskProgress:
    """A job's progress, sent to the driver as an event of the run's own topic."""

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.index = index

    def __call__(self, done: float, total: float | None) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, (self.index, done, total))


def _start_forkserver() -> bool:
    """Start the fork server the local cluster's workers fork from, importing dask's
    `distributed` while this process imports it too (on two cores the two imports overlap;
    with `spawn`, every worker imported it after this process had: 0.7 to 1 s more per run,
    and 0.2 s more to stop)."""
    from multiprocessing import forkserver

    if forkserver_context(("distributed", *WORKER_PRELOAD)) is None:
        return False
    forkserver.ensure_running()  # returns at once: the server imports in the background
    return True


def _keep_preload() -> None:
    """Dask sets its own preload the first time it uses the fork server, importing numpy and
    pandas here to do so; the server already runs with ours, so it would only cost time."""
    import distributed.utils

    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True


class Cluster:
    """A connection to a Dask cluster: a LocalCluster started here, or one at an address.

    Workers must see the cache at the same path (a local cluster, or a shared disk).
    """

    def __init__(self, workers: int, scheduler: str | None = None) -> None:
        if importlib.util.find_spec("distributed") is None:
            raise ConfigError(
                "--executor dask needs dask.distributed, which is not installed",
                hint="pip install 'curifactory-cli[dask]'",
            )
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        # A local cluster curi starts runs on worker processes that start and restart for as
        # long as it runs, without the driver's __main__.
        self._hidden = contextlib.ExitStack()
        forkserver = False
        if not address:
            self._hidden.enter_context(main_hidden())
            forkserver = _start_forkserver()
        self.local = None
        try:
            import dask
            from distributed import Client, LocalCluster

            if address:
                self.client = Client(address, timeout="10s")
            else:
                config = dict(LOCAL_CLUSTER_CONFIG)
                if forkserver:
                    config["distributed.worker.multiprocessing-method"] = "forkserver"
                    _keep_preload()
                with dask.config.set(config):
                    self.local = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=40,
                        # The fork server may predate this run (an earlier run in this
                        # process): workers get the driver's environment as it is now.
                        env=dict(os.environ),
                    )
                self.client = Client(self.local)
        except OSError as exc:
            self._hidden.close()
            if not address:
                msg = f"cannot start a local Dask cluster: {exc}"
                raise ConfigError(msg, hint="try -j with the local executor.") from None
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                hint="start one with `dask scheduler`, or leave out --scheduler for a local one.",
            ) from None
        except BaseException:
            self._hidden.close()
            raise
        if address:
            workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.workers = workers

    @property
    def shares_files(self) -> bool:
        """A cluster curi started runs here; workers of another one may be on other machines."""
        return self.local is not None

    # Stages' `resources=` mean nothing here: a local cluster's workers have none (None:
    # resources ignored; a batch cluster gives what its workers have).
    offered_resources: list[dict[str, float]] | None = None  # per pool of workers
    # A cluster that starts its workers as batch jobs says here why it could not.
    failure: ConfigError | None = None
    starts_workers = False

    def took(self, resources: dict[str, float] | None) -> None:
        """A call asking for `resources` was handed to the cluster (pools scale on it)."""

    def gave_back(self, resources: dict[str, float] | None) -> None:
        """That call is over."""

    def tick(self) -> None:
        """Once a second while the run waits (a batch cluster sizes its pools)."""

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()
        self._hidden.close()


class ClusterStart:
    """Starts (or connects to) the cluster in a thread, so the workers' start-up (about half
    a second of importing dask in each new process) overlaps importing and tracing the
    experiment."""

    def __init__(self, workers: int, scheduler: str | None = None) -> None:
        self._cluster: Cluster | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._start, args=(workers, scheduler), name="curi-dask-start", daemon=True
        )
        self._thread.start()

    def _start(self, workers: int, scheduler: str | None) -> None:
        try:
            self._cluster = Cluster(workers, scheduler)
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc

    def result(self) -> Cluster:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._cluster is not None
        return self._cluster

    def discard(self) -> None:
        """Not needed after all (the experiment failed to load, or has nothing to run)."""
        self._thread.join()
        if self._cluster is not None:
            self._cluster.close()


def _refused(job: Job, short: dict[str, float]) -> JobResult:
    """The result of a call that asks for resources no worker of the cluster has."""
    wanted = ", ".join(f"{k}={v:g}" for k, v in short.items())
    result = JobResult(job.index)
    result.failure = Failure(
        "error",
        f"stage {job.stage_name!r} ({job.record.name}) needs {wanted}, which no worker of "
        "the cluster has",
        hint="give the workers them (resources = {GPU = 1} in [tool.curi.slurm], with the job "
        "directives that request them), or leave resources= out of the stage.",
        error_type="curifactory_cli.errors:ConfigError",
    )
    return result


class DaskRunner:
    """Jobs as tasks on a cluster; the driver keeps the graph and publishes."""

    inline = False

    def __init__(self, cluster: Cluster, context: Context) -> None:
        self.context = context
        self._cluster = cluster
        self._client = cluster.client
        self.capacity = cluster.workers
        self.shares_files = cluster.shares_files
        self._offered = cluster.offered_resources
        self._refused: list[JobResult] = []  # calls no worker can take, failed at once
        self._futures: dict[Any, Job] = {}
        # Progress comes back as events of a topic of this run only (a shared scheduler may
        # serve other runs), appended by the client's thread and taken by progress().
        self._topic = f"curi-progress-{os.urandom(6).hex()}"
        self._updates: collections.deque[Any] = collections.deque()
        self._client.subscribe_topic(self._topic, self._updates.append)

    def submit(self, job: Job, record: Any, fn: Any = None) -> None:
        needs = job.resources if self._offered is not None else None
        if needs:
            assert self._offered is not None
            shorts = [
                {k: v for k, v in needs.items() if has.get(k, 0) < v} for has in self._offered
            ]
            short = min(shorts, key=len) if shorts and all(shorts) else {}
            if short:  # it would wait forever for a worker that never comes
                self._refused.append(_refused(job, short))
                return
        payload = pickle_job(job)
        future = self._client.submit(
            _dask_entry,
            self.context,
            self._topic,
            job.index,
            payload,
            pure=False,
            key=f"curi-{job.label}-{os.urandom(4).hex()}",
            # Only workers that have them take the call (a GPU pool's, say).
            resources=needs or None,
        )
        self._futures[future] = job
        self._cluster.took(needs)

    def wait(self, timeout: float | None) -> list[JobResult]:
        from distributed import wait
        from distributed.scheduler import KilledWorker

        if self._refused:
            refused, self._refused = self._refused, []
            return refused
        # A cluster that submits jobs is looked at every second: a failed submission stops
        # the run instead of leaving it waiting for workers that never come.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._cluster.starts_workers:
                self._cluster.tick()
            if self._cluster.failure is not None:
                raise self._cluster.failure
            step = timeout
            if self._cluster.starts_workers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                step = 1.0 if left is None else min(1.0, left)
            try:
                done, _ = wait(list(self._futures), timeout=step, return_when="FIRST_COMPLETED")
                break
            except TimeoutError:
                if step == timeout or (deadline is not None and time.monotonic() >= deadline):
                    return []
        results = []
        for future in done:
            job = self._futures.pop(future)
            self._cluster.gave_back(job.resources if self._offered is not None else None)
            try:
                results.append(pickle.loads(future.result()))
            except KilledWorker:
                discard_draft(job.draft)
                results.append(died(job, "the Dask worker running it was lost"))
            except Exception as exc:
                hint = (
                    "check that the workers run the same Python environment and see the "
                    "project and the cache at the same paths."
                )
                results.append(lost_job(job, "on a Dask worker", exc, hint))
        return results

    def progress(self) -> list[tuple[int, float, float | None]]:
        updates = []
        while self._updates:
            _when, (index, done, total) = self._updates.popleft()
            updates.append((index, done, total))
        return updates

    def close(self, cancel: bool = False) -> None:
        with contextlib.suppress(Exception):  # the cluster may be gone already
            self._client.unsubscribe_topic(self._topic)
        if cancel and self._futures:
            self._client.cancel(list(self._futures))
            for job in self._futures.values():
                discard_draft(job.draft)
        self._futures.clear()
        self._cluster.close()
