"""`curi run --executor slurm` (and pbs): Dask workers as batch jobs through dask-jobqueue.

No cluster is needed: `fake_batch/` holds stand-ins for sbatch, squeue and scancel (qsub,
qstat, qdel for PBS) that record each call in $FAKE_BATCH_DIR/calls, start a job script as a
background session of its own (real Dask workers) and kill it when cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_workers import entry_versions, executions, setup

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

FAKES = Path(__file__).parent / "fake_batch"
SLURM = """
[tool.curi.slurm]
max_jobs = 2
walltime = "00:10:00"
job_directives = ["--qos=short"]
"""
# Six records whose `load` takes a second: enough ready calls for the second job.
SLOW_LOADS = "".join(f"- name: s{i}\n  n: {i}\n  sleep: 1\n" for i in range(6))


@pytest.fixture
def batch(project, monkeypatch) -> Path:
    """The fake batch system's folder: calls, job-<id>.sh/.pid/.log, cancelled."""
    folder = project.root.parent / f"{project.root.name}-batch"
    folder.mkdir()
    monkeypatch.setenv("FAKE_BATCH_DIR", str(folder))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    yield folder
    for pid in _job_pids(folder):  # whatever a failing test left: not into the next one
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _calls(folder: Path) -> list[list[str]]:
    path = folder / "calls"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _job_pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in folder.glob("job-*.pid")]


def _alive(folder: Path) -> list[int]:
    alive = []
    for pid in _job_pids(folder):
        try:
            os.killpg(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def _nothing_left(folder: Path, within: float = 10.0) -> bool:
    """Every job submitted was cancelled and none of their processes runs."""
    deadline = time.monotonic() + within
    while True:
        submitted = [c for c in _calls(folder) if c[0] in ("sbatch", "qsub")]
        path = folder / "cancelled"
        cancelled = path.read_text().split() if path.exists() else []
        done = len(set(cancelled)) == len(submitted) and not _alive(folder)
        if done or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


@pytest.mark.slow
def test_a_slurm_run_gives_the_local_results_on_two_jobs_and_cancels_them(project, batch):
    setup(project, SLOW_LOADS)
    project.write("pyproject.toml", SLURM)
    result = project.run("work", "params/p.yaml", executor="slurm")
    assert result.ok, result.error
    runs = executions(project)
    assert set(Counter((s, r) for s, r, _ in runs).values()) == {1}  # each call once
    assert len(runs) == 6 * 4 + 1
    assert os.getpid() not in {pid for *_, pid in runs}  # all ran in the jobs
    submitted = [c for c in _calls(batch) if c[0] == "sbatch"]
    assert len(submitted) == 2  # max_jobs, taken as six calls were ready
    assert len({pid for *_, pid in runs}) == 2  # both jobs' workers ran stages
    assert _nothing_left(batch)
    script = next(batch.glob("job-*.sh")).read_text()
    assert "#SBATCH -t 00:10:00" in script and "#SBATCH --qos=short" in script
    on_slurm = entry_versions(project.cache)

    # A local run in a fresh cache makes the very same entries.
    os.rename(project.cache, project.root / "slurm-cache")
    local = project.run("work", "params/p.yaml")
    assert local.ok and local.counts()["executed"] == 25
    assert entry_versions(project.cache) == on_slurm


@pytest.mark.slow
def test_a_pbs_run_submits_through_qsub(project, batch):
    setup(project, "- name: a\n  n: 1\n")
    project.write("pyproject.toml", '[tool.curi.pbs]\nqueue = "workq"\nmax_jobs = 1\n')
    result = project.run("work", "params/p.yaml", executor="pbs")
    assert result.ok, result.error
    assert [c[0] for c in _calls(batch)] == ["qsub", "qdel"]
    assert "#PBS -q workq" in next(batch.glob("job-*.sh")).read_text()
    assert _nothing_left(batch)


def _driver(project, params: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-m", "curifactory_cli", "run", "work", params, "--executor", "slurm"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(project, stage: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not any(s == stage for s, *_ in executions(project)):
        assert time.monotonic() < deadline, f"{stage} never started"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "says"),
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated"),
        (signal.SIGKILL, -9, None),  # no cleanup of its own: the watch process cancels
    ],
)
def test_a_stopped_driver_leaves_no_job_behind(project, batch, sig, code, says):
    setup(project, "- name: a\n  n: 1\n  fit_sleep: 60\n- name: b\n  n: 2\n  fit_sleep: 60\n")
    project.write("pyproject.toml", SLURM)
    driver = _driver(project, "p")
    try:
        _wait_for(project, "fit")
        assert _alive(batch)
        driver.send_signal(sig)
        output, _ = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == code, output
    if says:
        assert says in output and "Traceback" not in output
    assert _nothing_left(batch), (_calls(batch), output)


@pytest.mark.slow
def test_a_job_killed_mid_stage_fails_that_stage_and_the_next_run_resumes(project, batch):
    setup(project, "- name: ok\n  n: 1\n- name: doomed\n  n: 2\n  fit_sleep: 60\n")
    project.write("pyproject.toml", SLURM)
    driver = _driver(project, "p")
    try:
        deadline = time.monotonic() + 30
        while ("fit", "doomed") not in {(s, r) for s, r, _ in executions(project)}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        doomed = next(pid for s, r, pid in executions(project) if r == "doomed" and s == "fit")
        # As the batch system does at walltime: the job's processes are killed.
        job = next(p for p in _job_pids(batch) if os.getpgid(doomed) == p)
        os.killpg(job, signal.SIGKILL)
        output, _ = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 1, output
    assert "stage 'fit' failed for parameter set 'doomed'" in output
    assert "worker" in output and "Traceback" not in output
    assert not any((project.cache / ".staging").glob("*"))  # nothing half published
    assert _nothing_left(batch)
    before = Counter((s, r) for s, r, _ in executions(project))

    project.write("params/p.yaml", "- name: ok\n  n: 1\n- name: doomed\n  n: 2\n")
    again = project.run("work", "params/p.yaml")
    assert again.ok, again.error
    after = Counter((s, r) for s, r, _ in executions(project)) - before
    assert after[("load", "ok")] == 0 and after[("load", "doomed")] == 0  # kept
    assert after[("fit", "doomed")] == 1


@pytest.mark.slow
def test_a_refused_submission_stops_the_run_with_the_batch_systems_message(
    project, cli, batch, monkeypatch
):
    setup(project, "- name: a\n  n: 1\n")
    project.write("pyproject.toml", SLURM)
    monkeypatch.setenv("FAKE_BATCH_REFUSE", "invalid partition specified: nope")
    started = time.monotonic()
    result = cli("run", "work", "p", "--executor", "slurm", "--no-progress")
    assert time.monotonic() - started < 30  # not waiting for workers that never come
    assert result.exit_code == 2, result.output
    assert "cannot submit a slurm job" in result.output
    assert "sbatch: error: invalid partition specified: nope" in result.output
    assert "Traceback" not in result.output
    assert _alive(batch) == []


def test_plan_prints_the_job_script_and_submits_nothing(project, cli, batch):
    setup(project, "- name: a\n  n: 1\n")
    project.write("pyproject.toml", SLURM)
    result = cli("plan", "work", "p", "--executor", "slurm", "--cluster-opt", "walltime=02:00:00")
    assert result.exit_code == 0, result.output
    assert "Job script (slurm: at most 2 jobs of 1 worker" in result.output
    assert "#SBATCH -t 02:00:00" in result.output  # --cluster-opt over the file
    assert "#SBATCH --qos=short" in result.output
    assert "-m distributed.cli.dask_worker" in result.output
    as_json = json.loads(cli("plan", "work", "p", "--executor", "slurm", "--json").output)
    assert as_json["batch"][0]["max_jobs"] == 2 and "#SBATCH" in as_json["batch"][0]["job_script"]
    assert _calls(batch) == []


def test_a_dry_run_prints_the_job_script_and_runs_here(project, cli, batch):
    setup(project, "- name: a\n  n: 1\n")
    project.write("pyproject.toml", SLURM)
    result = cli("run", "work", "p", "--executor", "slurm", "--dry", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "#SBATCH --qos=short" in result.output
    assert {pid for *_, pid in executions(project)} == {os.getpid()}
    assert _calls(batch) == []


def test_cluster_settings_are_checked(project, cli, batch):
    setup(project, "- name: a\n  n: 1\n")
    project.write("pyproject.toml", "[tool.curi.slurm]\nwaltime = '01:00:00'\n")
    result = cli("plan", "work", "p", "--executor", "slurm")
    assert result.exit_code == 2, result.output
    assert "unknown slurm setting 'waltime'" in result.output and "walltime" in result.output
    project.write("pyproject.toml", "[tool.curi.slurm]\nmax_jobs = 'many'\n")
    result = cli("plan", "work", "p", "--executor", "slurm")
    assert result.exit_code == 2 and "slurm.max_jobs = 'many' must be a int" in result.output
    project.write("pyproject.toml", "[tool.curi.slurm.pools.gpu]\nresorces = {GPU = 1}\n")
    result = cli("plan", "work", "p", "--executor", "slurm")
    assert result.exit_code == 2 and "unknown slurm.pools.gpu setting 'resorces'" in result.output
    project.write("pyproject.toml", SLURM)
    result = cli("plan", "work", "p", "--executor", "slurm", "--cluster-opt", "cores")
    assert result.exit_code == 2 and "--cluster-opt 'cores': not KEY=VALUE" in result.output
    result = cli("run", "work", "p", "--executor", "slurm", "-j", "8")
    assert result.exit_code == 2 and "-j/--workers does not size --executor slurm" in result.output
    assert "--cluster-opt max_jobs=N" in result.output
    result = cli("run", "work", "p", "--cluster-opt", "cores=2")
    assert result.exit_code == 2 and "--cluster-opt goes with a batch executor" in result.output
    assert _calls(batch) == []


# ------------------------------------------------------------------ per-stage resources

GPU_EXPERIMENT = """
import json
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["data"], cachers=[JsonCacher])
def load(record):
    return [1, 2, 3]


@cf.stage(inputs=["data"], outputs=["model"], cachers=[JsonCacher]{resources})
def train(record, data):
    try:
        from distributed import get_worker
        has = get_worker().state.total_resources
        with open("train.worker", "a") as out:
            out.write(str(get_worker().name) + "\\n")
    except (ImportError, ValueError):
        has = None  # not on a Dask worker
    with open("train.log", "a") as out:
        out.write(json.dumps(has) + "\\n")
    return sum(data)


def run(param_sets, manager):
    for p in param_sets:
        train(load(cf.Record(manager, p)))
"""


def _gpu_project(project, resources: str) -> None:
    project.write("experiments/gpu.py", GPU_EXPERIMENT.format(resources=resources))
    project.write("params/p.yaml", "- name: a\n  n: 1\n")


def test_stage_resources_are_ignored_locally_and_not_in_the_cache_key(project):
    _gpu_project(project, "")
    assert project.run("gpu", "params/p.yaml").counts()["executed"] == 2
    _gpu_project(project, ', resources={"GPU": 1}')
    again = project.run("gpu", "params/p.yaml", workers=2)
    assert again.ok, again.error  # no GPU here: the key is ignored, the run does not wait
    assert again.counts()["executed"] == 0  # the same keys as without resources
    assert len((project.root / "train.log").read_text().splitlines()) == 1


def test_stage_resources_must_be_numbers(project, cli):
    _gpu_project(project, ', resources={"memory": "32GB"}')
    result = cli("run", "gpu", "p")
    assert result.exit_code == 2, result.output
    assert "stage 'train': resources={'memory': '32GB'} must map names to numbers" in (
        result.output
    )


@pytest.mark.slow
def test_a_gpu_stage_runs_on_workers_that_have_the_resource(project, batch):
    _gpu_project(project, ', resources={"GPU": 1}')
    project.write(
        "pyproject.toml",
        "[tool.curi.slurm]\nmax_jobs = 1\nresources = {GPU = 1}\n"
        'job_directives = ["--gres=gpu:1"]\n',
    )
    result = project.run("gpu", "params/p.yaml", executor="slurm")
    assert result.ok, result.error
    assert [json.loads(line) for line in (project.root / "train.log").read_text().splitlines()] == [
        {"GPU": 1.0}
    ]
    assert "#SBATCH --gres=gpu:1" in next(batch.glob("job-*.sh")).read_text()
    assert "--resources GPU=1" in next(batch.glob("job-*.sh")).read_text()
    assert _nothing_left(batch)


GPU_POOL = """
[tool.curi.slurm]
max_jobs = 1
job_directives = ["--qos=short"]

[tool.curi.slurm.pools.gpu]
max_jobs = 1
resources = {GPU = 1}
job_directives = ["--qos=short", "--gres=gpu:1"]
"""


def test_plan_prints_each_pools_job_script(project, cli, batch):
    _gpu_project(project, ', resources={"GPU": 1}')
    project.write("pyproject.toml", GPU_POOL)
    result = cli("plan", "gpu", "p", "--executor", "slurm")
    assert result.exit_code == 0, result.output
    main, gpu = result.output.split("Job script (slurm")[1:]
    assert "--gres" not in main and "--resources" not in main
    assert gpu.startswith(", pool gpu: at most 1 jobs of 1 worker")
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources GPU=1" in gpu
    assert _calls(batch) == []


@pytest.mark.slow
def test_a_gpu_stage_goes_to_the_gpu_pool_only(project, batch):
    _gpu_project(project, ', resources={"GPU": 1}')
    project.write("pyproject.toml", GPU_POOL)
    result = project.run("gpu", "params/p.yaml", executor="slurm")
    assert result.ok, result.error
    assert [json.loads(line) for line in (project.root / "train.log").read_text().splitlines()] == [
        {"GPU": 1.0}
    ]
    assert (project.root / "train.worker").read_text().split() == ["gpu-0"]  # the pool's job
    scripts = [p.read_text() for p in sorted(batch.glob("job-*.sh"))]
    gpu_jobs = [s for s in scripts if "#SBATCH --gres=gpu:1" in s]
    assert len(gpu_jobs) == 1 and "--resources GPU=1" in gpu_jobs[0]
    assert all("--resources" not in s for s in scripts if s not in gpu_jobs)
    assert _nothing_left(batch)


IDLE_POOL = """
import os
import time
import curifactory_cli as cf


@cf.stage(outputs=["model"], resources={"GPU": 1})
def train(record):
    return 1


@cf.stage(inputs=["model"], outputs=["score"])
def evaluate(record, model):
    time.sleep(8)  # long enough for the idle GPU job to be given back
    with open(os.path.join(os.environ["FAKE_BATCH_DIR"], "calls"), "a") as out:
        out.write("evaluate-done\\n")
    return model


def run(param_sets, manager):
    for p in param_sets:
        evaluate(train(cf.Record(manager, p)))
"""


@pytest.mark.slow
def test_an_idle_gpu_pool_job_is_given_back_while_the_run_goes_on(project, batch):
    project.write("experiments/idle.py", IDLE_POOL)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    project.write("pyproject.toml", GPU_POOL)
    result = project.run("idle", "params/p.yaml", executor="slurm")
    assert result.ok, result.error
    gpu = next(p.stem[4:] for p in batch.glob("job-*.sh") if "--gres" in p.read_text())
    calls = [" ".join(c) for c in _calls(batch)]
    assert calls.index(f"scancel {gpu}") < calls.index("evaluate-done"), calls
    assert _nothing_left(batch)


@pytest.mark.slow
def test_a_stage_asking_for_what_no_worker_has_fails_at_once(project, cli, batch):
    _gpu_project(project, ', resources={"GPU": 1}')
    project.write("pyproject.toml", SLURM)
    started = time.monotonic()
    result = cli("run", "gpu", "p", "--executor", "slurm", "--no-progress")
    assert time.monotonic() - started < 30  # no wait for a worker that never comes
    assert result.exit_code == 2, result.output
    assert "stage 'train' (a) needs GPU=1, which no worker of the cluster has" in result.output
    assert _nothing_left(batch)


def test_the_watch_cancels_what_is_left_when_its_input_ends(tmp_path, monkeypatch):
    from curifactory_cli.engine.job_watch import watch

    monkeypatch.setenv("FAKE_BATCH_DIR", str(tmp_path))
    left = watch(str(FAKES / "scancel"), iter(["+11\n", "+12\n", "-11\n", "+13\n"]))
    assert left == ["12", "13"]
    assert _calls(tmp_path) == [["scancel", "12", "13"]]
    assert watch(str(FAKES / "scancel"), iter(["+14\n", "-14\n"])) == []
    assert len(_calls(tmp_path)) == 1  # nothing left: no call
