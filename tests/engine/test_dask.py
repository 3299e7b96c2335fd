"""`curi run --executor dask`: the same jobs on a dask.distributed cluster, a local one or an
existing scheduler with workers started as separate processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from test_progress import heartbeat_fractions
from test_progress import setup as setup_progress
from test_run_logs import last_run
from test_run_logs import setup as setup_talk
from test_workers import EXPERIMENT, PARAMS, entry_versions, executions, setup

from curifactory_cli.registry.database import registry_path

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def test_local_cluster_gives_the_serial_results(project):
    setup(project)
    result = project.run("work", "params/p.yaml", executor="dask", workers=2)
    assert result.ok, result.error
    runs = executions(project)
    assert set(Counter((s, r) for s, r, _ in runs).values()) == {1}
    assert os.getpid() not in {pid for *_, pid in runs}
    compare = next(r for r in result.records if r.name == "aggregate")
    assert compare.state["table"] == {f"s{i}": i * 10 * 2 + 1000 for i in range(6)}
    on_dask = entry_versions(project.cache)
    os.rename(project.cache, project.root / "dask-cache")
    assert project.run("work", "params/p.yaml").ok
    assert entry_versions(project.cache) == on_dask


def test_what_a_stage_prints_on_a_dask_worker_is_kept_in_the_runs_log(project, cli):
    setup_talk(project)
    result = cli("run", "talk", "p", "--executor", "dask", "-j", "2", "--keep-going")
    assert result.exit_code == 1, result.output
    shown = cli("runs", "show", last_run(project).reference, "--log")
    pids = {int(pid) for pid in re.findall(r"loading \d rows in pid (\d+)", shown.output)}
    assert len(pids) >= 1 and os.getpid() not in pids  # printed by the Dask workers
    assert "INFO talk: loaded b" in shown.output
    assert "== train [b]  failed" in shown.output and "    helper(data)" in shown.output


def test_a_stage_on_a_dask_worker_reports_its_progress(project, cli, monkeypatch):
    from curifactory_cli.cli import live

    setup_progress(project)
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.3)
    result = cli("run", "prog", "p", "--executor", "dask", "-j", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert heartbeat_fractions(result.output), result.output


def test_a_killed_dask_worker_fails_its_stage_and_the_next_run_resumes(project, cli):
    setup(project, "- name: ok\n  n: 1\n- name: doomed\n  n: 2\n  die: true\n")
    result = cli("run", "work", "p", "--executor", "dask", "-j", "2", "--no-progress")
    assert result.exit_code == 1, (result.output, result.exception)
    assert "stage 'fit' failed for parameter set 'doomed'" in result.output
    assert "WorkerDied: the worker process running it died" in result.output
    assert not any((project.cache / ".staging").glob("*"))
    again = project.run("work", "params/p.yaml", executor="dask", workers=2)
    assert again.ok, again.error
    assert again.counts()["executed"] >= 1


@pytest.fixture
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process, on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = {
        **os.environ,
        # A killed worker fails its task (instead of a retry on another worker).
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    bindir = os.path.dirname(sys.executable)
    dask = os.path.join(bindir, "dask")
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    procs.append(
        subprocess.Popen(
            [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"],
            env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its worker processes too: see the teardown
        )
    )  # fmt: skip
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield address
    # Each process group at once (the worker's nanny and the processes it started): a graceful
    # stop waited for the nanny to give up restarting the worker the test killed (8 s).
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=20)


def test_existing_cluster_runs_the_jobs_and_a_killed_worker_fails_its_stage(project, cli, cluster):
    setup(project)
    result = cli("run", "work", "p", "--scheduler", cluster, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert doc["counts"]["executed"] == 25
    workers = {pid for *_, pid in executions(project)}
    assert len(workers) == 2 and os.getpid() not in workers

    # DASK_SCHEDULER_ADDRESS is the usual way to name the cluster.
    project.write("params/p.yaml", PARAMS + "- name: doomed\n  n: 9\n  die: true\n")
    os.environ["DASK_SCHEDULER_ADDRESS"] = cluster
    try:
        result = cli("run", "work", "p", "--executor", "dask", "--no-progress")
    finally:
        del os.environ["DASK_SCHEDULER_ADDRESS"]
    assert result.exit_code == 1, (result.output, result.exception)
    assert "stage 'fit' failed for parameter set 'doomed'" in result.output
    assert "WorkerDied" in result.output and "Traceback" not in result.output
    # The restarted worker takes the next run.
    time.sleep(1)
    again = project.run("work", "params/p.yaml", executor="dask", scheduler=cluster)
    assert again.ok, again.error
    assert again.counts()["failed"] == 0


def test_missing_dask_is_a_clear_error(project, cli, monkeypatch):
    setup(project)
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = cli("run", "work", "p", "--executor", "dask")
    assert result.exit_code == 2
    assert "--executor dask needs dask.distributed" in result.output
    assert "pip install 'curifactory-cli[dask]'" in result.output


def test_unknown_executor_is_a_usage_error(project, cli):
    setup(project)
    result = cli("run", "work", "p", "--executor", "spark")
    assert result.exit_code == 2
    assert "--executor 'spark': unknown executor" in result.output


EXPERIMENT  # noqa: B018 - the subject of these tests, shared with test_workers


def test_an_unreachable_scheduler_is_a_clear_error(project, cli):
    setup(project)
    result = cli("run", "work", "p", "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
    assert not registry_path(project.root).exists()  # a setup error: nothing recorded


def test_a_bad_parameter_file_stops_the_cluster_started_early(project, cli):
    """The local cluster starts while the experiment loads; a load error still gives the
    usual message, and no worker process outlives the command."""
    import psutil

    setup(project, "- name: a\n  n: [1\n")

    def workers() -> set[int]:
        # multiprocessing's resource tracker and fork server live as long as this process;
        # the workers forked from the server are its children, so they are counted.
        helpers = ("resource_tracker", "forkserver")
        return {
            p.pid
            for p in psutil.Process().children(recursive=True)
            if not any(helper in " ".join(p.cmdline()) for helper in helpers)
        }

    before = workers()
    result = cli("run", "work", "p", "--executor", "dask", "-j", "2")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "p.yaml" in result.output and "Traceback" not in result.output
    assert not registry_path(project.root).exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = workers() - before
        if not left:
            break
        time.sleep(0.2)
    assert not left, "worker processes left behind"


def test_local_cluster_runs_without_the_statistical_profiler(project, cli):
    """No dashboard reads it, and it slows pure-Python stages by several per cent."""
    project.write(
        "experiments/prof.py",
        "import dask\nimport curifactory_cli as cf\n"
        "from curifactory_cli.caching import JsonCacher\n"
        "@cf.stage(inputs=None, outputs=['flag'], cachers=[JsonCacher])\n"
        "def probe(record):\n"
        "    return {'profile': dask.config.get('distributed.worker.profile.enabled')}\n"
        "def run(param_sets, manager):\n"
        "    for p in param_sets:\n        probe(cf.Record(manager, p))\n",
    )
    project.write("params/p.yaml", "- name: a\n")
    result = project.run("prof", "params/p.yaml", executor="dask", workers=1)
    assert result.ok, result.error
    assert result.records[0].state["flag"] == {"profile": False}


def test_local_cluster_workers_see_the_environment_of_this_run(project, monkeypatch):
    """Workers fork from a server that outlives a run (tests, notebooks, scripts calling
    run_experiment twice); each run's workers still get the environment as it is then."""
    project.write(
        "experiments/env.py",
        "import os\nimport curifactory_cli as cf\n"
        "from curifactory_cli.caching import JsonCacher\n"
        "@cf.stage(inputs=None, outputs=['seen'], cachers=[JsonCacher])\n"
        "def probe(record):\n"
        "    record.params.n  # each set its own call\n"
        "    return {'mark': os.environ.get('CURI_TEST_MARK'), 'pid': os.getpid()}\n"
        "def run(param_sets, manager):\n"
        "    for p in param_sets:\n        probe(cf.Record(manager, p))\n",
    )
    project.write("params/first.yaml", "- name: first\n  n: 1\n")
    project.write("params/second.yaml", "- name: second\n  n: 2\n")
    monkeypatch.delenv("CURI_TEST_MARK", raising=False)
    first = project.run("env", "params/first.yaml", executor="dask", workers=1)
    assert first.ok, first.error
    assert first.records[0].state["seen"]["mark"] is None
    monkeypatch.setenv("CURI_TEST_MARK", "set after the first run")
    second = project.run("env", "params/second.yaml", executor="dask", workers=1)
    assert second.ok, second.error
    seen = second.records[0].state["seen"]
    assert seen == {"mark": "set after the first run", "pid": seen["pid"]}
    assert seen["pid"] != os.getpid()


def test_dask_workers_upload_to_an_s3_cache(tmp_path, bucket):
    """Each worker uploads what it computed; the driver only commits the metadata."""
    from conftest import Project

    project = Project(tmp_path / "clone")
    setup(project)
    result = project.run("work", "p", executor="dask", workers=2, cache_dir=bucket)
    assert result.ok, result.error
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    metas = [k for k in fs.find(bucket.removeprefix("s3://")) if k.endswith("meta.json")]
    cached_stages = [n for n in result.graph.nodes if n.is_cached_stage]
    assert len(metas) == len(cached_stages) > 0
    again = Project(tmp_path / "other")
    setup(again)
    reused = again.run("work", "p", cache_dir=bucket)
    assert reused.ok and reused.executed() == []
