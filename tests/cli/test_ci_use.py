"""`curi` in CI: --json keeps stdout for JSON, SIGTERM and dead processes are
recorded, a closed stdout does not stop a run, logs hold whole table rows, and long stages
show a heartbeat."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from curifactory_cli.registry.database import RunRegistry, registry_path

# `first` prints (a lot with `chatty`, enough to fill a pipe's buffer) and starts a program
# that writes to the same stdout; `second` can sleep or fail.
EXPERIMENT = """
import os
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

if os.environ.get("SLOW_IMPORT"):
    open("importing", "w").close()
    time.sleep(30)

@cf.stage(outputs=["x"], cachers=[JsonCacher])
def first(record):
    print("stage-says-hello", record.name)
    for _ in range(record.params.get("chatty", 0)):
        print("x" * 1000, flush=True)
    os.system("echo program-says-hello")
    time.sleep(0.01)  # long enough to go to a worker with -j
    return record.params.n

@cf.stage(inputs=["x"], outputs=["y"], cachers=[JsonCacher])
def second(record, x):
    if record.params.get("fail"):
        raise ValueError("boom")
    time.sleep(record.params.get("sleep", 0))
    return x * 2

def run(param_sets, manager):
    for p in param_sets:
        second(first(cf.Record(manager, p)))
"""

TWO_SETS = "- name: a\n  n: 1\n- name: b\n  n: 2\n"


def setup(project, params=TWO_SETS):
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", params)


def curi(project, *args, **popen):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **popen.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "curifactory_cli", *args],
        cwd=project.root,
        env=env,
        text=True,
        **popen,
    )


def runs(project):
    return RunRegistry(registry_path(project.root), read_only=True).list_runs()


def wait_for(condition, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except Exception:  # e.g. the registry file exists but is not initialised yet
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


# ------------------------------------------------------------------ 1. --json: stdout is JSON
@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_stdout_holds_only_the_document_and_stage_output_goes_to_stderr(project, workers):
    setup(project)
    proc = curi(project, "run", "exp", "p", "--json", "-j", workers, stdout=-1, stderr=-1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["counts"]["executed"] == 4  # nothing before the `{`
    assert err.count("stage-says-hello") == 2
    assert err.count("program-says-hello") == 2  # a program's output, via descriptor 1


def test_json_in_process_sends_prints_to_stderr(project, cli):
    setup(project)
    result = cli("run", "exp", "p", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert "stage-says-hello" in result.stderr


# ------------------------------------------------------------------------- 2. SIGTERM, death
def test_sigterm_while_the_experiment_is_imported_exits_143_with_one_line(project):
    setup(project)
    proc = curi(project, "run", "exp", "p", stdout=-1, stderr=-1, env={"SLOW_IMPORT": "1"})
    wait_for(lambda: (project.root / "importing").exists())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["error: terminated (SIGTERM); finished stages stay cached"]
    assert not registry_path(project.root).exists()  # a run not started is not recorded


def test_a_ci_timeout_stops_workers_and_records_the_run(project):
    # `timeout` signals the whole process group: the driver and its workers at once.
    setup(project, "- name: a\n  n: 1\n  sleep: 60\n")
    command = [sys.executable, "-m", "curifactory_cli", "run", "exp", "p", "-j", "2", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        ["timeout", "6", *command],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 124, proc.stderr  # timeout's own code: it timed out
    assert "Traceback" not in proc.stderr
    assert "error: terminated (SIGTERM); finished stages stay cached" in proc.stderr
    assert runs(project)[0].status == "interrupted"
    assert not any((project.cache / ".staging").glob("*"))


def test_a_killed_run_reads_as_died_but_stays_recorded_as_running(project, cli):
    setup(project, "- name: a\n  n: 1\n  sleep: 60\n")
    proc = curi(project, "run", "exp", "p", stdout=-3, stderr=-3)
    wait_for(lambda: registry_path(project.root).exists() and runs(project))
    assert runs(project)[0].status == "running"
    proc.kill()
    proc.wait(timeout=30)
    listed = json.loads(cli("runs", "ls", "--json").stdout)["runs"]
    assert [r["status"] for r in listed] == ["died"]
    shown = cli("runs", "show", listed[0]["reference"])
    assert "died" in shown.stdout
    assert "died" in cli("runs", "ls").stdout
    assert len(runs_with(cli, "died")) == 1 and runs_with(cli, "running") == []
    with sqlite3.connect(registry_path(project.root)) as db:  # listing wrote nothing
        assert db.execute("SELECT status FROM runs").fetchall() == [("running",)]


def runs_with(cli, status):
    return json.loads(cli("runs", "ls", "--status", status, "--json").stdout)["runs"]


def test_a_live_run_reads_as_running_and_a_reused_pid_as_died():
    from curifactory_cli.registry.liveness import process_runs

    assert process_runs(os.getpid(), "2000-01-01T00:00:00+00:00")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_runs(sleeper.pid, "2999-01-01T00:00:00+00:00")
        if os.path.exists(f"/proc/{sleeper.pid}/stat"):
            # The pid's process started long after the run: the number was reused.
            assert not process_runs(sleeper.pid, "2000-01-01T00:00:00+00:00")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not process_runs(sleeper.pid, "2999-01-01T00:00:00+00:00")


def test_a_run_stopped_by_an_unexpected_exception_records_it(project):
    from curifactory_cli.events import NodeFinished
    from curifactory_cli.run.runner import RunOptions, run_experiment

    class Broken:
        progress = True

        def __init__(self):
            self.warnings = []

        def emit(self, event):
            if isinstance(event, NodeFinished):
                raise RuntimeError("the display broke")

    setup(project)
    with pytest.raises(RuntimeError):
        run_experiment(RunOptions("exp", ("params/p.yaml",), root=str(project.root)), Broken())
    run = runs(project)[0]
    assert run.status == "error" and run.error == "RuntimeError: the display broke"


def test_signals_wait_while_a_run_records_how_it_ended():
    from curifactory_cli.errors import Terminated
    from curifactory_cli.run.signals import signals_deferred

    went_on = []
    with pytest.raises(Terminated), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        went_on.append(True)
    assert went_on == [True]


def test_a_terminate_outside_a_command_exits_143(capsys):
    from curifactory_cli.cli import app as cli
    from curifactory_cli.errors import Terminated

    def app():
        raise Terminated

    with pytest.raises(SystemExit) as stopped:
        cli.run_app(app)
    assert stopped.value.code == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err


# ------------------------------------------------------------------ 3. a closed stdout (| head)
@pytest.mark.parametrize(
    ("workers", "merged", "quiet"),
    [("1", False, False), ("1", True, True), ("2", False, False), ("2", True, True)],
)
def test_a_closed_stdout_does_not_stop_the_run(project, workers, merged, quiet):
    # Quiet, the first write to meet the closed pipe is a stage's print(), in a worker with -j.
    setup(project, "- name: a\n  n: 1\n  chatty: 300\n- name: b\n  n: 2\n  chatty: 300\n")
    stderr = subprocess.STDOUT if merged else subprocess.PIPE
    args = ["run", "exp", "p", "-j", workers, *(["-q"] if quiet else [])]
    proc = curi(project, *args, stdout=-1, stderr=stderr)
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = "" if merged else proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    run = runs(project)[0]
    assert run.status == "complete" and run.counts["executed"] == 4


def test_a_closed_stdout_still_exits_as_the_run_ended(project):
    setup(project, "- name: a\n  n: 1\n  fail: true\n")
    proc = curi(project, "run", "exp", "p", stdout=-1, stderr=-3)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 1
    run = runs(project)[0]
    assert run.status == "error" and "boom" in run.error


# -------------------------------------------------------------------- 4. whole rows in logs
LONG = "a_parameter_set_with_a_name_long_enough_to_overflow_an_eighty_column_table"


def test_outside_a_terminal_tables_keep_whole_rows(project, cli):
    setup(project, f"- name: {LONG}_one\n  n: 1\n- name: {LONG}_two\n  n: 2\n")
    plan = cli("plan", "exp", "p").stdout.splitlines()
    for name in (f"{LONG}_one", f"{LONG}_two"):
        rows = [line for line in plan if line.startswith(name + " ")]
        assert [row.split()[1] for row in rows] == ["first", "second"], plan
    notes = "notes that say a great deal about why this run was started at all"
    ran = cli("run", "exp", "p", "--no-progress", "--notes", notes)
    assert ran.exit_code == 0, ran.output
    assert any(line.split()[:2] == ["second", "2"] for line in ran.stdout.splitlines())
    listed = cli("runs", "ls").stdout.splitlines()
    reference = runs(project)[0].reference
    (row,) = [line for line in listed if line.startswith(reference)]
    assert notes in row and row.endswith(f"--notes '{notes}' --no-progress"), row
    assert all(line == line.rstrip() for line in listed)


# -------------------------------------------------------------------------- 5. heartbeat
def test_a_long_stage_call_gets_heartbeat_lines_in_a_log(project, cli, monkeypatch):
    from curifactory_cli.cli import live

    monkeypatch.setattr(live, "HEARTBEAT_S", 0.2)
    setup(project, "- name: a\n  n: 1\n  sleep: 1.2\n")
    result = cli("run", "exp", "p", "--no-progress")
    assert result.exit_code == 0, result.output
    beats = [line.split() for line in result.stdout.splitlines() if line.startswith(" running")]
    assert len(beats) >= 2, result.stdout
    assert all(beat[:3] == ["running", "second", "[a]"] for beat in beats)
    quiet = cli("run", "exp", "p", "-q", "--overwrite")
    assert " running" not in quiet.stdout


# ------------------------------------------------------------------ leaving the process
THREADED = """
import threading
import time

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher])
def make(record):
    def later():
        time.sleep(2)  # well after the run is recorded and its report written
        with open("late.txt", "w") as out:
            out.write("done")

    threading.Thread(target=later).start()  # not a daemon: Python waits for it at exit
    return 1


def run(param_sets, manager):
    for params in param_sets:
        make(cf.Record(manager, params))
"""


def test_a_thread_a_stage_left_running_finishes_before_curi_exits(project):
    # curi skips the interpreter's teardown to exit fast, but not while such a thread works.
    project.write("experiments/threaded.py", THREADED)
    project.write("params/p.yaml", "- name: a\n")
    proc = curi(project, "run", "threaded", "p", "-q", stdout=-1, stderr=-1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (project.root / "late.txt").read_text() == "done"
