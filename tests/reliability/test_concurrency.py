"""Concurrent `curi run`s of one experiment on one cache compute each stage exactly once, all
succeed, and all are recorded in the run registry; a lock holder killed with SIGKILL does not
block anyone (flock locks die with their process)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from reliability_helpers import (
    EXPERIMENT,
    RUN_TIMEOUT,
    curi,
    curi_args,
    entry_problems,
    env,
    output_fingerprint,
    params_yaml,
)

CONCURRENT = '''
"""Three records through load -> train -> evaluate, then one aggregate over them."""
import os
import time

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


def _log(stage, name):
    with open("exec.log", "a", encoding="utf-8") as out:
        out.write(f"{stage} {name} {os.getpid()}\\n")


@cf.stage(outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    _log("load", record.params.name)
    time.sleep(0.3)
    return list(range(record.params.n))


@cf.stage(inputs=["numbers"], outputs=["model"], cachers=[PickleCacher])
def train(record, numbers):
    _log("train", record.params.name)
    time.sleep(0.2)
    return {"weights": [x * 2 for x in numbers]}


@cf.stage(inputs=["model"], outputs=["score"], cachers=[JsonCacher])
def evaluate(record, model):
    _log("evaluate", record.params.name)
    return sum(model["weights"])


@cf.aggregate(inputs=["score"], outputs=["total"], cachers=[JsonCacher])
def summarize(record, records, score):
    _log("summarize", "aggregate")
    time.sleep(0.1)
    return sum(score.values())


def run(param_sets, manager):
    for p in param_sets:
        evaluate(train(load(cf.Record(manager, p))))
    summarize(cf.Record(manager, None))
'''

PARAMS = "- name: a\n  n: 10\n- name: b\n  n: 20\n- name: c\n  n: 30\n"
RUNS = 6


def start_runs(root: Path, count: int, *args: str) -> list[tuple[subprocess.Popen, Path]]:
    started = []
    for i in range(count):
        out = root / f"run{i}.json"
        with open(out, "w") as stdout:
            proc = subprocess.Popen(
                curi_args("run", *args, "--json"),
                cwd=root,
                env=env(),
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
        started.append((proc, out))
    return started


def finish(started: list[tuple[subprocess.Popen, Path]]) -> list[dict]:
    docs = []
    deadline = time.monotonic() + RUN_TIMEOUT
    for proc, out in started:
        try:
            _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _ in started:
                other.kill()
                other.wait(timeout=RUN_TIMEOUT)
            raise
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr and "warning:" not in stderr, stderr
        docs.append(json.loads(out.read_text()))
    return docs


def execution_counts(root: Path) -> Counter:
    lines = (root / "exec.log").read_text().splitlines()
    return Counter(tuple(line.split()[:2]) for line in lines)


def registry_runs(root: Path) -> list[dict]:
    proc = curi(root, "runs", "ls", "--json", "--limit", "1000")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["runs"]


# Whose output each stage of CONCURRENT reads (the aggregate reads every record's score).
CONSUMER = {"load": "train", "train": "evaluate", "evaluate": "summarize"}


def assert_only_unneeded_calls_skipped(outcomes: dict[tuple[str, str], str], doc: dict) -> None:
    """A concurrent run may skip a call it did not need, and which run does so depends on
    timing: it decided the call while another run was still computing it (no entry yet: it
    waits, deferred, until something needs its data), and by the time it decided the call's
    consumer another run had published that, found by its lineage key. The call's data was
    then never needed. That is the only legitimate skip: its consumer in the same run is
    cached (or skipped in turn), and the run's result, the aggregate, is never skipped."""
    reasons = {(n["stage"], n["record"]): n["reason"] for n in doc["nodes"]}
    for (stage, rec), outcome in outcomes.items():
        assert outcome in ("executed", "cached", "skipped"), (stage, rec, outcome)
        if outcome != "skipped":
            continue
        assert stage != "summarize", f"the run's result was skipped: {doc['nodes']}"
        assert "nothing that runs needs it" in (reasons[stage, rec] or ""), (stage, rec, reasons)
        consumer = (CONSUMER[stage], "aggregate" if stage == "evaluate" else rec)
        assert outcomes[consumer] in ("cached", "skipped"), (stage, rec, outcomes)


def test_concurrent_runs_execute_each_stage_once(project):
    project.write("experiments/conc.py", CONCURRENT)
    project.write("params/p.yaml", PARAMS)
    docs = finish(start_runs(project.root, RUNS, "conc", "params/p.yaml"))

    expected = {(s, r) for s in ("load", "train", "evaluate") for r in "abc"}
    expected.add(("summarize", "aggregate"))
    counts = execution_counts(project.root)
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), counts

    executed = Counter()
    entries: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        assert doc["ok"] and doc["warnings"] == []
        outcomes = {(n["stage"], n["record"]): n["outcome"] for n in doc["nodes"]}
        assert set(outcomes) == expected
        assert_only_unneeded_calls_skipped(outcomes, doc)
        for node in doc["nodes"]:
            if node["outcome"] == "executed":
                executed[node["stage"], node["record"]] += 1
            if node["outcome"] in ("executed", "cached"):
                entries.setdefault((node["stage"], node["record"]), set()).add(node["entry"])
    assert executed == Counter(dict.fromkeys(expected, 1))
    assert set(entries) == expected  # each call's entry was used by at least one run
    waited = sum("concurrent run" in (n["reason"] or "") for d in docs for n in d["nodes"])
    print(f"\n{RUNS} concurrent runs, {len(expected)} stage calls, {waited} found by waiting")
    # Every run used the same, whole entry for each stage call.
    assert all(len(dirs) == 1 for dirs in entries.values()), entries
    for (entry,) in entries.values():
        assert entry_problems(Path(entry)) == []
    (total_entry,) = entries["summarize", "aggregate"]
    assert json.loads(Path(total_entry, "total.json").read_text()) == 2 * sum(range(10)) + 2 * sum(
        range(20)
    ) + 2 * sum(range(30))

    runs = registry_runs(project.root)
    assert len(runs) == RUNS
    assert sorted(r["number"] for r in runs) == list(range(1, RUNS + 1))
    assert {r["status"] for r in runs} == {"complete"}
    assert {r["reference"] for r in runs} == {doc["run_id"] for doc in docs}


SHARED = """
import os
import time

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


def _log(stage, name):
    with open("exec.log", "a", encoding="utf-8") as out:
        out.write(f"{stage} {name} {os.getpid()}\\n")


@cf.stage(outputs=["data"], cachers=[JsonCacher])
def make_data(record):
    _log("make_data", record.name)
    time.sleep(1.5)
    return list(range(record.params.n_rows))


@cf.stage(inputs=["data"], outputs=["model"], cachers=[JsonCacher])
def train(record, data):
    _log("train", record.name)
    time.sleep(1.5)  # the first run is still busy when the second takes make_data's lock
    return sum(data) * record.params.lr


def run(param_sets, manager):
    for p in param_sets:
        train(make_data(cf.Record(manager, p)))
"""


def test_concurrent_runs_of_two_sets_compute_the_stage_they_share_once(project):
    # Two people sweep lr over the same data at once: the second run waits for the first's
    # make_data (the same computation on what it reads) and uses its entry.
    project.write("experiments/shared.py", SHARED)
    project.write("params/a.yaml", "- name: a\n  n_rows: 5\n  lr: 0.1\n")
    project.write("params/b.yaml", "- name: b\n  n_rows: 5\n  lr: 0.2\n")
    first = start_runs(project.root, 1, "shared", "params/a.yaml")
    log = project.root / "exec.log"
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (log.exists() and "make_data a" in log.read_text()):
        assert time.monotonic() < deadline and first[0][0].poll() is None
        time.sleep(0.02)
    with open(project.root / "second.json", "w") as stdout:
        second = subprocess.Popen(
            curi_args("run", "shared", "params/b.yaml", "--json"),
            cwd=project.root,
            env=env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    docs = finish([*first, (second, project.root / "second.json")])
    counts = execution_counts(project.root)
    assert counts == Counter({("make_data", "a"): 1, ("train", "a"): 1, ("train", "b"): 1})
    nodes = {(n["stage"], n["record"]): n for n in docs[1]["nodes"]}
    assert nodes["make_data", "b"]["outcome"] == "cached"
    assert nodes["make_data", "b"]["reason"] == (
        "shared with set 'a' (reads n_rows), computed by a concurrent run"
    )
    assert nodes["train", "b"]["outcome"] == "executed"


def test_concurrent_runs_of_overlapping_selections(project):
    """Runs selecting different, overlapping parameter sets share the stage calls they have
    in common (the aggregate differs per selection, so it is one entry per selection)."""
    project.write("experiments/conc.py", CONCURRENT)
    project.write("params/p.yaml", PARAMS)
    selections = [(), ("--names", "a"), ("--names", "a", "--names", "b"), ("--names", "c")]
    started = []
    for i, extra in enumerate(selections * 2):
        out = project.root / f"sel{i}.json"
        with open(out, "w") as stdout:
            proc = subprocess.Popen(
                curi_args("run", "conc", "params/p.yaml", *extra, "--json"),
                cwd=project.root,
                env=env(),
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
        started.append((proc, out))
    docs = finish(started)

    counts = execution_counts(project.root)
    per_record = {k: v for k, v in counts.items() if k[0] != "summarize"}
    assert per_record == {(s, r): 1 for s in ("load", "train", "evaluate") for r in "abc"}
    assert counts["summarize", "aggregate"] == len(set(selections))  # one per distinct selection
    executed = sum(n["outcome"] == "executed" for d in docs for n in d["nodes"])
    assert executed == sum(counts.values())
    runs = registry_runs(project.root)
    assert sorted(r["number"] for r in runs) == list(range(1, len(started) + 1))
    assert {r["status"] for r in runs} == {"complete"}


def test_killed_lock_holder_releases_its_lock(project):
    project.write("experiments/faulty.py", EXPERIMENT)
    project.write("params/p.yaml", params_yaml(1000, ("json",)))
    root = project.root
    holder = subprocess.Popen(
        curi_args("run", "faulty", "params/p.yaml", "--quiet"),
        cwd=root,
        env=env(CURI_TEST_HOLD="600"),  # sleeps inside the stage, holding the entry's lock
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waiter = None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (root / "started").exists():
            assert holder.poll() is None and time.monotonic() < deadline, "holder never started"
            time.sleep(0.01)
        waiter_out = root / "waiter.out"
        with open(waiter_out, "w") as stdout:
            waiter = subprocess.Popen(
                curi_args("run", "faulty", "params/p.yaml", "--no-progress"),
                cwd=root,
                env=env(),
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
        while "waiting" not in waiter_out.read_text():
            assert waiter.poll() is None, waiter_out.read_text()
            assert time.monotonic() < deadline, "the second run never waited for the lock"
            time.sleep(0.02)
        time.sleep(0.5)
        assert waiter.poll() is None, "the second run did not wait for the lock holder"
        assert holder.poll() is None

        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=RUN_TIMEOUT) == -signal.SIGKILL
        killed_at = time.monotonic()
        assert waiter.wait(timeout=60) == 0, waiter_out.read_text()
        assert time.monotonic() - killed_at < 30
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT)

    counts = execution_counts(root)
    assert counts == {("make_json", "json"): 2, ("digest_json", "json"): 1}
    output = waiter_out.read_text()
    assert "executed  make_json [json]" in output, output
    assert "warning" not in output, output
    runs = {r["number"]: r["status"] for r in registry_runs(root)}
    assert runs == {1: "died", 2: "complete"}  # the killed run never finished: its process is gone

    # A third run finds everything cached.
    proc = curi(root, "run", "faulty", "params/p.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [n["outcome"] for n in doc["nodes"]] == ["cached", "cached"]
    for node in doc["nodes"]:
        assert output_fingerprint(node["entry"])
