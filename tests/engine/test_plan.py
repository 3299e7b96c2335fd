"""`curi plan` tells the truth: it agrees with what `curi run` then does."""

from __future__ import annotations

import json
import shutil

import pytest

from curifactory_cli.engine.planner import Plan
from curifactory_cli.graph import Outcome
from curifactory_cli.run.runner import RunOptions, plan_experiment

pytestmark = pytest.mark.usefixtures("job_runner")

PIPELINE = """
import random
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["raw"], outputs=["scaled"], cachers=[JsonCacher])
def scale(record, raw):
    # a comment
    return [x * record.params.factor for x in raw]


@cf.stage(inputs=["scaled"], outputs=["memo"])
def describe(record, scaled):
    return {"n": len(scaled)}


@cf.stage(inputs=["scaled", "memo"], outputs=["total"], cachers=[PickleCacher])
def total(record, scaled, memo):
    return sum(scaled) + memo["n"]


@cf.aggregate(inputs=["total"], outputs=["grand"], cachers=[JsonCacher])
def grand(record, records, total):
    return sum(total.values())


def run(param_sets, manager):
    for p in param_sets:
        total(describe(scale(load(cf.Record(manager, p)))))
    grand(cf.Record(manager, None))
"""

PARAMS = "- name: a\n  n: 3\n  factor: 2\n- name: b\n  n: 4\n  factor: 3\n"


def plan_and_run(project, **options):
    plan = plan_experiment(
        RunOptions("pipe", ("params/p.yaml",), root=str(project.root), **options)
    )
    result = project.run("pipe", "params/p.yaml", **options)
    assert result.ok, result.error
    outcomes = {(n.stage.name, n.record_name): n.outcome for n in result.graph.nodes}
    planned = {(p.node.stage.name, p.node.record_name): p for p in plan.plans}
    assert planned.keys() == outcomes.keys()
    allowed = {
        Plan.CACHED: {Outcome.CACHED},
        Plan.RUN: {Outcome.EXECUTED},
        Plan.SKIPPED: {Outcome.SKIPPED},
        # decided by upstream data that does not exist yet
        Plan.MAYBE: {Outcome.EXECUTED, Outcome.CACHED, Outcome.SKIPPED},
    }
    for node, item in planned.items():
        assert outcomes[node] in allowed[item.plan], (node, item.plan, item.reason, outcomes[node])
    return (
        {k: v.plan for k, v in planned.items()},
        {k: v.reason for k, v in planned.items()},
        result,
    )


@pytest.fixture
def pipe(project):
    project.write("experiments/pipe.py", PIPELINE)
    project.write("params/p.yaml", PARAMS)
    return project


def test_plan_of_an_empty_cache_runs_everything(pipe):
    plans, reasons, result = plan_and_run(pipe)
    # Set b's calls may share set a's entries (a run lets them wait for a's): they do if
    # they read the same values (b reads n: 4, a n: 3, so here they run).
    assert set(plans.values()) == {Plan.RUN, Plan.MAYBE}
    assert reasons[("load", "a")] == "not computed yet"
    assert plans[("load", "b")] is Plan.MAYBE
    assert reasons[("load", "b")] == (
        "shared with set 'a' if they read the same values; else not computed yet"
    )
    assert ("load", "b") in result.executed()


def test_plan_of_a_full_cache_is_all_cached(pipe):
    plan_and_run(pipe)
    plans, _, result = plan_and_run(pipe)
    assert result.executed() == []
    assert plans[("describe", "a")] is Plan.SKIPPED  # in memory only, nobody needs it
    assert {p for k, p in plans.items() if k[0] != "describe"} == {Plan.CACHED}


def test_plan_names_a_code_change_and_what_may_follow(pipe):
    plan_and_run(pipe)
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace("x * record.params.factor", "x * record.params.factor + 1"),
    )
    plans, reasons, result = plan_and_run(pipe)
    assert (
        plans[("scale", "a")] is Plan.RUN
        and reasons[("scale", "a")] == "stage code changed (scale)"
    )
    assert plans[("total", "a")] is Plan.MAYBE
    assert ("total", "a") in result.executed()  # its input did change


def test_plan_of_a_comment_edit_is_all_cached(pipe):
    plan_and_run(pipe)
    pipe.write("experiments/pipe.py", PIPELINE.replace("# a comment", "# another comment"))
    plans, _, result = plan_and_run(pipe)
    assert Plan.RUN not in plans.values() and result.executed() == []


def test_plan_names_a_parameter_change(pipe):
    plan_and_run(pipe)
    pipe.write("params/p.yaml", PARAMS.replace("factor: 3", "factor: 5"))
    plans, reasons, _ = plan_and_run(pipe)
    # load reads n, not factor: its entry serves the edited set.
    assert plans[("load", "b")] is Plan.CACHED
    assert reasons[("load", "b")] == "what it reads is unchanged (n)"
    assert reasons[("scale", "b")].startswith("parameters changed")
    assert plans[("load", "a")] is Plan.CACHED
    assert plans[("grand", "aggregate")] in (Plan.RUN, Plan.MAYBE)


def test_plan_with_a_deleted_intermediate_entry_skips_it(pipe):
    _, _, first = plan_and_run(pipe)
    scale_a = next(n for n in first.graph.nodes if (n.stage.name, n.record_name) == ("scale", "a"))
    shutil.rmtree(scale_a.entry_dir)
    plans, reasons, result = plan_and_run(pipe)
    assert (
        plans[("scale", "a")] is Plan.SKIPPED
        and "nothing that runs needs it" in reasons[("scale", "a")]
    )
    assert result.executed() == []


def test_plan_with_a_deleted_leaf_entry_runs_it(pipe):
    _, _, first = plan_and_run(pipe)
    grand = next(n for n in first.graph.nodes if n.stage.name == "grand")
    shutil.rmtree(grand.entry_dir)
    plans, _, result = plan_and_run(pipe)
    assert plans[("grand", "aggregate")] is Plan.RUN
    assert result.executed() == [("grand", "aggregate")]


def test_plan_of_a_forced_stage(pipe):
    plan_and_run(pipe)
    plans, reasons, result = plan_and_run(pipe, overwrite_stages=("scale",))
    assert reasons[("scale", "a")] == "forced by --overwrite-stage"
    assert plans[("total", "b")] is Plan.MAYBE
    assert sorted(result.executed()) == [("scale", "a"), ("scale", "b")]  # identical outputs


def test_plan_of_a_forced_nondeterministic_stage(pipe):
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace(
            "return list(range(record.params.n))",
            "return [random.random() for _ in range(record.params.n)]",
        ),
    )
    plan_and_run(pipe)
    plans, _, result = plan_and_run(pipe, overwrite_stages=("load",))
    assert plans[("scale", "a")] is Plan.MAYBE
    assert ("scale", "a") in result.executed() and ("grand", "aggregate") in result.executed()


def test_plan_cli_json_and_headline(pipe, cli):
    assert cli("run", "pipe", "params/p.yaml", "-q").exit_code == 0
    pipe.write("params/p.yaml", PARAMS.replace("factor: 3", "factor: 5"))
    before = pipe.snapshot()
    text = cli("plan", "pipe", "params/p.yaml")
    assert text.exit_code == 0, text.output
    assert "of 9 stages cached" in text.output and "parameters changed" in text.output
    data = json.loads(cli("run", "pipe", "params/p.yaml", "--plan", "--json").output)
    assert (
        data["counts"]["cached"]
        + data["counts"]["run"]
        + data["counts"]["maybe"]
        + data["counts"]["skipped"]
        == 9
    )
    node = next(n for n in data["nodes"] if n["stage"] == "scale" and n["record"] == "b")
    assert node["plan"] == "run" and node["reason"] == "parameters changed (factor: 3 -> 5)"
    assert pipe.snapshot() == before  # planning writes nothing


def test_plan_warns_of_a_set_key_no_parameter_set_has_as_run_does(pipe, cli):
    expected = "warning: --set facter: no parameter set has a parameter 'facter'"
    for command in (("plan",), ("run", "--plan"), ("run", "-q")):
        result = cli(*command, "pipe", "params/p.yaml", "--set", "facter=2")
        assert result.exit_code == 0, result.output
        assert expected in " ".join(result.output.split()), command
        assert "did you mean 'factor'?" in " ".join(result.output.split()), command
    data = json.loads(cli("plan", "pipe", "params/p.yaml", "--set", "facter=2", "--json").stdout)
    assert any(w.startswith("--set facter:") for w in data["warnings"])


def test_cache_ls_stale_lists_what_current_code_no_longer_produces(pipe, cli):
    assert cli("run", "pipe", "params/p.yaml", "-q").exit_code == 0
    quiet = cli("cache", "ls", "--stale", "pipe", "--stale-params", "params/p.yaml", "--json")
    assert json.loads(quiet.stdout)["entries"] == []
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace("x * record.params.factor", "x * record.params.factor + 1"),
    )
    stale = json.loads(
        cli("cache", "ls", "--stale", "pipe", "--stale-params", "params/p.yaml", "--json").stdout
    )
    # scale's entries are superseded; total's may still be reused (its inputs are not known yet)
    assert sorted((e["stage"], e["params"]) for e in stale["entries"]) == [
        ("scale", "a"),
        ("scale", "b"),
    ]


QUIET = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    if record.params.verbose:
        print("loading")
    return list(range(record.params.n))


@cf.stage(inputs=["raw"], outputs=["scaled"], cachers=[JsonCacher])
def scale(record, raw):
    return [x * record.params.factor for x in raw]


def run(param_sets, manager):
    for p in param_sets:
        scale(load(cf.Record(manager, p)))
"""


def test_a_call_an_entry_of_other_values_may_serve_may_run_rather_than_runs(project):
    """load reads `verbose`, which changes nothing it returns. Once it changes, load runs;
    scale reads only `factor`, so the entry it made before (or another set's, of the same
    factor) serves it if load's output comes out the same, as it does: the plan says it
    may run, and the run serves it. A set whose factor is new runs scale."""
    project.write("experiments/pipe.py", QUIET)
    sets = "- name: a\n  n: 3\n  factor: 2\n  verbose: {v}\n"
    project.write("params/p.yaml", sets.format(v="false"))
    assert project.run("pipe", "params/p.yaml").ok
    new = "- name: {name}\n  n: 3\n  factor: {f}\n  verbose: 3\n"
    project.write("params/p.yaml", sets.format(v="true") + new.format(name="c2", f=2))
    plans, reasons, result = plan_and_run(project)
    assert plans["load", "a"] is Plan.RUN  # (c2's may share a's call: both in this run)
    for record in ("a", "c2"):
        assert plans["scale", record] is Plan.MAYBE, reasons["scale", record]
        assert reasons["scale", record] == "cached unless load produce(s) different outputs"
    outcomes = {(n.stage.name, n.record_name): (n.outcome, n.reason) for n in result.graph.nodes}
    assert outcomes["scale", "a"] == (Outcome.CACHED, "what it reads is unchanged (factor)")
    assert outcomes["scale", "c2"] == (Outcome.CACHED, "shared with set 'a' (reads factor)")
    project.write("params/p.yaml", new.format(name="c", f=7))
    plans, reasons, _ = plan_and_run(project)
    assert plans["scale", "c"] is Plan.RUN  # no entry read factor 7
