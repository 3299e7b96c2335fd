"""A failing stage: fail fast by default, or with --keep-going run all that does not need it."""

from __future__ import annotations

import json

import pytest

from curifactory_cli.graph import Outcome

pytestmark = pytest.mark.usefixtures("job_runner")

EXPERIMENT = """
import os
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["a"], cachers=[JsonCacher])
def one(record):
    return record.params.n

@cf.stage(inputs=["a"], outputs=["b"])
def two(record, a):  # in memory only: it runs when `three` needs it
    if a == 2 and os.path.exists("BROKEN"):  # the "bug" is fixed by deleting the file
        raise ValueError("two cannot take 2")
    return a * 10

@cf.stage(inputs=["b"], outputs=["c"], cachers=[JsonCacher])
def three(record, b):
    return b + 1

@cf.aggregate(inputs=["c"], outputs=["all"], cachers=[JsonCacher])
def collect(record, records, c):
    return sorted(c.values())

def run(param_sets, manager):
    for p in param_sets:
        three(two(one(cf.Record(manager, p))))
    collect(cf.Record(manager, None))
"""

PARAMS = "- name: x\n  n: 1\n- name: y\n  n: 2\n- name: z\n  n: 3\n"


def outcomes(result):
    return {(n.stage.name, n.record_name): n.outcome for n in result.graph.nodes}


def test_fail_fast_names_only_the_failing_stage_as_failed(project):
    project.write("BROKEN", "")
    project.write("experiments/kg.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    result = project.run("kg", "params/p.yaml")
    states = outcomes(result)
    assert [k for k, v in states.items() if v is Outcome.FAILED] == [("two", "y")]
    assert states[("three", "y")] is Outcome.SKIPPED  # it was waiting for two, not failing
    # The run stopped (with workers, z's first stage may have run alongside y's).
    stopped = {Outcome.SKIPPED} if project.workers == 1 else {Outcome.SKIPPED, Outcome.EXECUTED}
    assert states[("one", "z")] in stopped
    assert result.error.stage == "two" and result.error.record == "y"


def test_keep_going_runs_everything_that_does_not_need_the_failure(project, cli):
    project.write("BROKEN", "")
    project.write("experiments/kg.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    out = cli("run", "kg", "params/p.yaml", "--keep-going", "--json")
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    states = {(n["stage"], n["record"]): n["outcome"] for n in data["nodes"]}
    assert states[("three", "x")] == states[("three", "z")] == "executed"
    assert states[("two", "y")] == "failed"
    assert states[("three", "y")] == "skipped" and states[("collect", "aggregate")] == "skipped"
    assert [(f["stage"], f["record"]) for f in data["failures"]] == [("two", "y")]
    assert "two cannot take 2" in out.stderr

    # After the fix, only what failed or was cut off runs.
    (project.root / "BROKEN").unlink()
    again = project.run("kg", "params/p.yaml")
    assert again.ok
    assert sorted(again.executed()) == [
        ("collect", "aggregate"),
        ("three", "y"),
        ("two", "y"),
    ]
    assert again.records[-1].state["all"] == [11, 21, 31]


def test_keep_going_still_stops_at_the_tools_own_errors(project, cli):
    """--keep-going goes on past the user's failing stages only: an output its cacher cannot
    save is the tool's error (or the cache's), and the run stops there as without it."""
    broken = EXPERIMENT.replace(
        "def one(record):\n    return record.params.n",
        "def one(record):\n    n = record.params.n\n    return {n} if n == 2 else n",
    )
    assert broken != EXPERIMENT
    project.write("experiments/kg.py", broken)
    project.write("params/p.yaml", PARAMS)
    out = cli("run", "kg", "params/p.yaml", "--keep-going", "--json")
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["ok"] is False and "failures" not in data  # the run ended on the error
    assert "JsonCacher cannot save this value" in data["error"]["message"]
    assert "'one' (y)" in data["error"]["message"]
    written = {json.loads((e / "meta.json").read_text())["stage"] for e in project.entries()}
    assert "collect" not in written
    if project.workers == 1:
        # Stopped at once: nothing after `one` [y] ran (with workers, calls already sent to
        # one may finish).
        assert written == {"one"}
