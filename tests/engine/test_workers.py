"""Stage calls in local worker processes (`curi run -j N`): same results as a serial run, each
stage executed once, and failures, dead workers and interruptions handled as in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from curifactory_cli.registry.database import RunRegistry, registry_path

# Every execution appends "<stage> <record> <pid>" to exec.log. `fit` can be made to raise
# (`fail`), to kill its own process (`die`: once, while a marker file is absent) or to sleep.
EXPERIMENT = '''
"""Worker test subject."""
import os
import signal
import time

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher
from curifactory_cli.reporting import JsonReporter


def _log(stage, record):
    with open("exec.log", "a", encoding="utf-8") as out:
        out.write(f"{stage} {record.name} {os.getpid()}\\n")
    time.sleep(0.01)  # long enough to be worth a worker (quicker stages run in the driver)


@cf.stage(outputs=["data"], cachers=[JsonCacher])
def load(record):
    _log("load", record)
    time.sleep(record.params.get("sleep", 0))
    return [record.params.n * i for i in range(5)]


@cf.stage(inputs=["data"], outputs=["scale"])
def scale(record, data):
    _log("scale", record)
    return {"factor": 2, "data": data}


@cf.stage(inputs=["scale"], outputs=["model", cf.Lazy("big")], cachers=[JsonCacher, PickleCacher])
def fit(record, scale):
    _log("fit", record)
    if record.params.get("fail"):
        raise ValueError(f"boom in {record.name}")
    if record.params.get("die") and not os.path.exists("died-once"):
        open("died-once", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(record.params.get("fit_sleep", 0))
    return sum(scale["data"]) * scale["factor"], list(range(1000))


@cf.stage(inputs=["model", "big"], outputs=["score"], cachers=[JsonCacher])
def evaluate(record, model, big):
    _log("evaluate", record)
    record.report(JsonReporter(f"score of {record.name}"))
    return model + len(big)


@cf.aggregate(inputs=["score"], outputs=["table"], cachers=[JsonCacher])
def compare(record, records, score):
    _log("compare", record)
    return {r.name: score[r] for r in records if r in score}


def run(param_sets, manager):
    for p in param_sets:
        evaluate(fit(scale(load(cf.Record(manager, p)))))
    compare(cf.Record(manager, None))
'''

PARAMS = "".join(f"- name: s{i}\n  n: {i}\n" for i in range(6))


def setup(project, params: str = PARAMS) -> None:
    project.write("experiments/work.py", EXPERIMENT)
    project.write("params/p.yaml", params)


def executions(project) -> list[tuple[str, str, int]]:
    log = project.root / "exec.log"
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(stage, record, int(pid)) for stage, record, pid in rows]


def entry_versions(cache) -> dict[str, dict[str, str]]:
    """Entry folder (relative) -> output versions: what a run left in the cache."""
    out = {}
    for meta_path in cache.rglob("meta.json"):
        meta = json.loads(meta_path.read_text())
        rel = meta_path.parent.relative_to(cache).as_posix()
        out[rel] = {name: info["version"] for name, info in meta["outputs"].items()}
    return out


def test_workers_give_the_serial_results_and_run_each_stage_once(project):
    setup(project)
    parallel = project.run("work", "params/p.yaml", workers=2)
    assert parallel.ok, parallel.error
    runs = executions(project)
    calls = Counter((stage, record) for stage, record, _ in runs)
    assert set(calls.values()) == {1}, calls  # every stage executed exactly once
    assert len(calls) == 6 * 4 + 1
    assert os.getpid() not in {pid for *_, pid in runs}  # none ran in this process
    assert len({pid for *_, pid in runs}) == 2  # both workers took part
    # The aggregate saw every record's value; values and reportables travelled back.
    compare = next(r for r in parallel.records if r.name == "aggregate")
    assert compare.state["table"] == {f"s{i}": i * 10 * 2 + 1000 for i in range(6)}
    first = parallel.records[0]
    assert first.state["model"] == 0
    assert [r.html() for r in first.reportables] == ["<pre>\n&quot;score of s0&quot;\n</pre>"]
    in_parallel = entry_versions(project.cache)

    # A serial run in a fresh cache produces the very same entries and versions.
    os.rename(project.cache, project.root / "parallel-cache")
    serial = project.run("work", "params/p.yaml")
    assert serial.ok and serial.counts()["executed"] == 25
    assert entry_versions(project.cache) == in_parallel

    # And a parallel re-run finds everything cached.
    again = project.run("work", "params/p.yaml", workers=2)
    assert again.counts() == Counter({"cached": 25 - 6, "skipped": 6})  # `scale` is not needed


def test_a_consumer_starts_while_other_records_still_run(project):
    # s0's chain must not wait for s1's slow load: with 2 workers, s0 finishes first.
    setup(project, "- name: s0\n  n: 1\n- name: s1\n  n: 2\n  sleep: 1.5\n")
    result = project.run("work", "params/p.yaml", workers=2)
    assert result.ok
    order = [(stage, record) for stage, record, _ in executions(project)]
    # s1's chain can only go on after its load (1.5 s): s0's whole chain ran meanwhile.
    assert order.index(("evaluate", "s0")) < order.index(("scale", "s1"))
    assert order[-1] == ("compare", "aggregate")


def test_plan_and_run_agree_with_workers(project, cli):
    setup(project)
    assert project.run("work", "params/p.yaml", workers=2).ok
    project.write("params/p.yaml", PARAMS.replace("n: 3", "n: 30"))
    plan = json.loads(cli("plan", "work", "params/p.yaml", "--json").stdout)
    planned = {(n["stage"], n["record"]): n["plan"] for n in plan["nodes"]}
    result = project.run("work", "params/p.yaml", workers=2)
    ran = {(n.stage.name, n.record_name): n.outcome.value for n in result.graph.nodes}
    maybe = {"executed", "cached", "skipped"}  # decided by data the plan does not have
    expected = {"run": {"executed"}, "cached": {"cached"}, "skipped": {"skipped"}, "maybe": maybe}
    assert planned.keys() == ran.keys()
    for call, plan in planned.items():
        assert ran[call] in expected[plan], (call, plan, ran[call])


def test_a_failing_stage_in_a_worker_fails_the_run_like_in_process(project, cli):
    setup(project, "- name: good\n  n: 1\n- name: bad\n  n: 2\n  fail: true\n")
    result = cli("run", "work", "p", "-j", "2", "--no-progress")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "error: stage 'fit' failed for parameter set 'bad': ValueError: boom in bad" in out
    # The user's traceback, their file and line, none of our frames.
    assert f'File "{project.root / "experiments" / "work.py"}"' in out.replace("\n", "")
    assert 'raise ValueError(f"boom in {record.name}")' in out
    assert "curifactory_cli" + os.sep not in out
    assert not any((project.cache / ".staging").glob("*"))

    # --keep-going: everything that does not depend on the failure still runs.
    result = cli("run", "work", "p", "-j", "2", "--keep-going", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    outcomes = {(n["stage"], n["record"]): n["outcome"] for n in doc["nodes"]}
    assert outcomes[("fit", "bad")] == "failed"
    assert outcomes[("evaluate", "bad")] == "skipped"
    assert outcomes[("evaluate", "good")] in ("executed", "cached")
    assert outcomes[("compare", "aggregate")] == "skipped"  # it needs every record's score


def test_a_killed_worker_fails_its_stage_and_the_next_run_resumes(project, cli):
    setup(project, "- name: ok\n  n: 1\n- name: doomed\n  n: 2\n  die: true\n")
    started = time.monotonic()
    result = cli("run", "work", "p", "-j", "2", "--no-progress")
    assert time.monotonic() - started < 60  # no hang
    assert result.exit_code == 1, (result.output, result.exception)
    assert "stage 'fit' failed for parameter set 'doomed'" in result.output, repr(result.exception)
    assert "the worker process running it died (killed by SIGKILL" in result.output
    assert "Traceback" not in result.output
    assert not any((project.cache / ".staging").glob("*"))  # nothing half published
    assert not list(project.cache.glob("work/*/fit-*/fit-*"))
    before = Counter((s, r) for s, r, _ in executions(project))

    again = project.run("work", "params/p.yaml", workers=2)
    assert again.ok, again.error
    after = Counter((s, r) for s, r, _ in executions(project)) - before
    # Only what was not published before runs again: the dead fit, and what depends on it.
    assert after[("load", "doomed")] == 0 and after[("fit", "doomed")] == 1
    assert after[("load", "ok")] == 0


def test_quick_stages_run_in_the_driver_once_timed(project):
    # Stages of well under 5 ms: the first calls go to workers, later ones run in this
    # process, where a call costs less than the round trip. Results are the same.
    project.write(
        "experiments/quick.py",
        """
        import os
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher

        @cf.stage(outputs=["x"], cachers=[JsonCacher])
        def tiny(record):
            with open("exec.log", "a") as out:
                out.write(f"tiny {record.name} {os.getpid()}\\n")
            return record.params.n + 1

        def run(param_sets, manager):
            for p in param_sets:
                tiny(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "".join(f"- name: q{i}\n  n: {i}\n" for i in range(12)))
    result = project.run("quick", "params/p.yaml", workers=2)
    assert result.ok
    pids = [pid for *_, pid in executions(project)]
    assert len(pids) == 12
    assert os.getpid() not in pids[:3]  # timed in workers first
    assert os.getpid() in pids[3:]  # then run here
    assert [r.state["x"] for r in result.records] == [i + 1 for i in range(12)]


def test_unpicklable_in_memory_value_is_a_clear_error(project, cli):
    project.write(
        "experiments/lam.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher

        @cf.stage(outputs=["fn"])
        def make(record):
            return lambda x: x + 1

        @cf.stage(inputs=["fn"], outputs=["y"], cachers=[JsonCacher])
        def use(record, fn):
            return fn(1)

        def run(param_sets, manager):
            for p in param_sets:
                use(make(cf.Record(manager, p)))
        """,
    )
    project.write("params/p.yaml", "- name: a\n")
    result = cli("run", "lam", "p", "-j", "2")
    assert result.exit_code == 1, result.output
    assert "stage 'make' (a) returned a value that cannot be sent back from a worker" in squash(
        result.output
    )
    assert "give the stage a cacher for that output, or run with -j 1" in squash(result.output)
    assert "Traceback" not in result.output
    assert cli("run", "lam", "p", "-j", "1").exit_code == 0


def test_bad_workers_value_is_a_usage_error(project, cli):
    setup(project)
    result = cli("run", "work", "p", "-j", "zero")
    assert result.exit_code == 2
    assert "--workers 'zero': expected a positive number or 'auto'" in result.output
    assert not registry_path(project.root).exists()  # nothing was recorded


def test_workers_from_project_config_and_auto(project):
    setup(project)
    project.write("pyproject.toml", "[tool.curi]\nworkers = 2\n")
    assert project.run("work", "params/p.yaml").ok
    assert os.getpid() not in {pid for *_, pid in executions(project)}
    project.write("pyproject.toml", "[tool.curi]\nworkerz = 2\n")
    with pytest.raises(Exception, match="unknown setting 'workerz'"):
        project.run("work", "params/p.yaml")
    project.write("pyproject.toml", "[tool.curi]\nworkers = 1\n")
    (project.root / "exec.log").unlink()
    assert project.run("work", "params/p.yaml", overwrite=True, workers="auto").ok


def squash(text: str) -> str:
    return " ".join(text.split())


def _pids_alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie is dead too
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    continue
        except OSError:
            continue
        alive.add(pid)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_workers_records_the_run_and_cleans_up(project, sig, code):
    setup(project, "".join(f"- name: s{i}\n  n: {i}\n  fit_sleep: 60\n" for i in range(3)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "curifactory_cli", "run", "work", "p", "-j", "2", "--no-progress"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until two slow fits are running
        if sum(1 for s, *_ in executions(project) if s == "fit") >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    workers = {pid for *_, pid in executions(project)}
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    runs = RunRegistry(registry_path(project.root), read_only=True).list_runs()
    assert runs[0].status == "interrupted"
    assert not any((project.cache / ".staging").glob("*"))
    time.sleep(0.5)
    assert not _pids_alive(workers), "worker processes outlived the run"


def test_a_script_without_a_main_guard_is_not_run_again_by_workers(project):
    # multiprocessing re-imports the parent's __main__ in new workers; a plain script calling
    # run_experiment at top level would then start over in every worker.
    setup(project)
    project.write(
        "script.py",
        """
        from curifactory_cli import RunOptions, run_experiment

        with open("script.log", "a") as log:
            log.write("started\\n")
        result = run_experiment(RunOptions("work", ("params/p.yaml",), workers=2))
        print("ok" if result.ok else "failed", result.counts()["executed"])
        """,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "script.py"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "25"]
    assert (project.root / "script.log").read_text() == "started\n"
    assert len({pid for *_, pid in executions(project)}) == 2  # the two workers


def test_events_say_which_worker_runs_what(project):
    from curifactory_cli.events import NodeFinished, NodeStarted, NullSink, RunStarted
    from curifactory_cli.run.runner import RunOptions, run_experiment

    setup(project, "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    events = NullSink(keep=True)
    options = RunOptions("work", ("params/p.yaml",), root=str(project.root), workers=2)
    assert run_experiment(options, events=events).ok
    events = events.events
    assert isinstance(events[0], RunStarted) and events[0].workers == 2 and events[0].total == 9
    started = [e for e in events if isinstance(e, NodeStarted)]
    assert {e.worker for e in started} == {"worker 1", "worker 2"}
    finished = {(e.stage, e.record): e.outcome for e in events if isinstance(e, NodeFinished)}
    assert finished[("compare", "aggregate")] == "executed"
    with pytest.raises(AttributeError):  # frozen: a report or a log can keep them as they are
        started[0].worker = "x"


def test_live_display_shows_what_each_worker_runs():
    import io

    from rich.console import Console

    from curifactory_cli.cli.live import LiveProgress
    from curifactory_cli.events import NodeFinished, NodeStarted, RunStarted

    out = Console(file=io.StringIO(), width=120)
    live = LiveProgress(out, out)
    live.show(RunStarted("r", "e", 2, (("fit", 2),), 2))
    live.show(NodeStarted(0, "fit", "a", "no cache entry", "worker 1"))
    live.show(NodeStarted(1, "fit", "b", "no cache entry", "worker 2"))
    render = io.StringIO()
    Console(file=render, width=120).print(live._render())
    assert "running a (w1), b (w2)" in render.getvalue()
    assert "2 workers" in render.getvalue()
    live.show(NodeFinished(0, "fit", "a", "executed", "no cache entry", 1.0))
    render = io.StringIO()
    Console(file=render, width=120).print(live._render())
    assert "running b (w2)" in render.getvalue() and "a (w1)" not in render.getvalue()
    live.close()
