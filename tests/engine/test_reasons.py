"""`curi plan` and `curi run` decide by one procedure and say why in the same words.

Each scenario changes something (an invalidation, a code edit, a parameter edit, a deleted
entry), asks `curi plan --json`, then `curi run --json`, and compares the two per stage call:
what the plan said will happen happens, for the reason it gave. Only calls the plan marks
`maybe` (their fate depends on data that does not exist yet) are left out of the comparison.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_plan import PARAMS, PIPELINE  # the same pipeline: a stage of each kind

INVALIDATED = "invalidated by `curi cache invalidate`"
OUTCOMES = {"cached": {"cached"}, "run": {"executed"}, "skipped": {"skipped"}}


@pytest.fixture
def pipe(project, cli):
    project.write("experiments/pipe.py", PIPELINE)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    return project


def plan_then_run(cli) -> dict[tuple[str, str], tuple[str, str, str, str]]:
    """(stage, record) -> (plan, plan's reason, outcome, run's reason)."""
    planned = cli("plan", "pipe", "params/p.yaml", "--json")
    assert planned.exit_code == 0, planned.output
    ran = cli("run", "pipe", "params/p.yaml", "--json", "--no-report")
    assert ran.exit_code == 0, ran.output
    plan = {(n["stage"], n["record"]): n for n in json.loads(planned.stdout)["nodes"]}
    run = {(n["stage"], n["record"]): n for n in json.loads(ran.stdout)["nodes"]}
    assert plan.keys() == run.keys()
    return {
        k: (plan[k]["plan"], plan[k]["reason"], run[k]["outcome"], run[k]["reason"]) for k in plan
    }


def assert_same_words(calls: dict[tuple[str, str], tuple[str, str, str, str]]) -> None:
    for call, (plan, plan_reason, outcome, run_reason) in calls.items():
        if plan == "maybe":
            assert outcome in ("executed", "cached", "skipped"), (call, outcome)
            continue
        assert outcome in OUTCOMES[plan], (call, plan, plan_reason, outcome, run_reason)
        assert plan_reason == run_reason, (call, plan, outcome)


def entry_of(project, stage: str, record: str):
    for meta in project.cache.rglob("meta.json"):
        data = json.loads(meta.read_text())
        if data["stage"] == stage and data["record"] == record:
            return meta.parent
    raise AssertionError(f"no entry for {stage} [{record}]")


def test_after_invalidate_plan_and_run_both_rerun_what_was_marked(pipe, cli):
    result = cli("cache", "invalidate", "pipe", "-s", "load", "-p", "a")
    assert result.exit_code == 0, result.output
    calls = plan_then_run(cli)
    assert_same_words(calls)
    # What invalidate marked (load [a] and everything computed from it) runs, and says so.
    for call in [("load", "a"), ("scale", "a"), ("total", "a"), ("grand", "aggregate")]:
        assert calls[call] == ("run", INVALIDATED, "executed", INVALIDATED), call
    assert calls["describe", "a"][0::2] == ("run", "executed")  # in memory, read by total [a]
    assert {calls[k][0] for k in calls if k[1] == "b"} <= {"cached", "skipped"}


def test_after_a_code_edit_plan_and_run_name_the_change_alike(pipe, cli):
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace("x * record.params.factor", "x * record.params.factor + 1"),
    )
    calls = plan_then_run(cli)
    assert_same_words(calls)
    for record in ("a", "b"):
        reason = "stage code changed (scale)"
        assert calls["scale", record] == ("run", reason, "executed", reason)
        assert calls["load", record] == ("cached", "cached", "cached", "cached")
        # Its input changed: the plan could only say it may run; the run says why it did.
        plan, _, outcome, run_reason = calls["total", record]
        assert (plan, outcome, run_reason) == (
            "maybe",
            "executed",
            "input data changed (memo, scaled)",
        )


def test_after_a_parameter_edit_plan_and_run_name_the_change_alike(pipe, cli):
    pipe.write("params/p.yaml", PARAMS.replace("factor: 3", "factor: 5"))
    calls = plan_then_run(cli)
    assert_same_words(calls)
    unchanged = "what it reads is unchanged (n)"  # load reads n, not factor
    assert calls["load", "b"] == ("cached", unchanged, "cached", unchanged)
    # scale reads factor: the reason names it, with the old and the new value.
    changed = "parameters changed (factor: 3 -> 5)"
    assert calls["scale", "b"] == ("run", changed, "executed", changed)
    # total reads no parameter: a's entry (or b's own, of factor 3) would serve it if its
    # inputs came out as they were; they do not, and the run says so (not "parameters").
    assert calls["total", "b"] == (
        "maybe",
        "cached unless describe, scale produce(s) different outputs",
        "executed",
        "input data changed (memo, scaled)",
    )
    for stage in ("load", "scale", "total"):
        assert calls[stage, "a"][0::2] == ("cached", "cached"), stage
    needed = "needed by total [b]"
    assert calls["describe", "b"] == ("run", needed, "executed", needed)


def test_after_deleting_an_entry_plan_and_run_agree(pipe, cli):
    shutil.rmtree(entry_of(pipe, "grand", "aggregate"))
    calls = plan_then_run(cli)
    assert_same_words(calls)
    missing = "not computed yet"
    assert calls["grand", "aggregate"] == ("run", missing, "executed", missing)
    assert {v[2] for k, v in calls.items() if k[0] != "grand"} <= {"cached", "skipped"}


def test_every_reason_matches_when_several_things_changed_at_once(pipe, cli):
    cli("cache", "invalidate", "pipe", "-s", "total", "-p", "b")
    pipe.write("params/p.yaml", PARAMS.replace("n: 3", "n: 5"))
    shutil.rmtree(entry_of(pipe, "grand", "aggregate"))
    calls = plan_then_run(cli)
    assert_same_words(calls)
    assert calls["total", "b"] == ("run", INVALIDATED, "executed", INVALIDATED)
    assert calls["load", "a"][1] == calls["load", "a"][3] == "parameters changed (n: 3 -> 5)"


def test_a_skipped_call_reads_the_same_in_plan_and_run(pipe, cli):
    shutil.rmtree(entry_of(pipe, "scale", "a"))  # total [a] is still found by its lineage
    calls = plan_then_run(cli)
    assert calls["scale", "a"][0::2] == ("skipped", "skipped")
    assert calls["scale", "a"][1] == calls["scale", "a"][3]


def newest_entry(cli, stage: str, record: str):
    listed = json.loads(cli("cache", "ls", "-s", stage, "-p", record, "--json").stdout)
    return listed["entries"][0]  # newest first within a stage and set


def test_an_entry_verify_fix_removed_is_named_as_removed_not_as_changed(pipe, cli):
    # Two generations of grand: the older one was computed from other data.
    pipe.write("experiments/pipe.py", PIPELINE.replace("range(record.params.n)", "range(1, 9)"))
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    current = newest_entry(cli, "grand", "aggregate")
    (pipe.cache / current["path"] / "grand.json").write_text("-1")
    fixed = cli("cache", "verify", "--fix")
    assert fixed.exit_code == 1 and "removed 1 damaged entry" in fixed.output
    calls = plan_then_run(cli)
    assert_same_words(calls)
    reason = calls["grand", "aggregate"][1]
    assert calls["grand", "aggregate"][0::2] == ("run", "executed")
    assert reason.startswith("cache entry removed as damaged (corrupt grand.json) by "), reason
    assert "`curi cache verify --fix` on 20" in reason
    assert newest_entry(cli, "grand", "aggregate")["id"] == current["id"]  # recomputed


def test_an_entry_cleared_on_purpose_is_no_longer_called_damaged(pipe, cli):
    current = newest_entry(cli, "grand", "aggregate")
    (pipe.cache / current["path"] / "grand.json").write_text("[]")
    assert cli("cache", "verify", "--fix").exit_code == 1
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    cleared = cli("cache", "clear", "-s", "grand", "--yes")
    assert cleared.exit_code == 0, cleared.output
    calls = plan_then_run(cli)
    assert calls["grand", "aggregate"][1] == "not computed yet"


def test_a_miss_is_explained_against_the_newest_entry_of_the_stage(pipe, cli):
    """Two entries of `scale` (before and after a code edit); changing its cacher then is
    explained by what differs from the newer one: the cachers, not the code."""
    older = list(pipe.cache.glob("pipe/*/scale-*/meta.json"))
    for meta in older:  # written an hour ago
        os.utime(meta, (meta.stat().st_atime, meta.stat().st_mtime - 3600))
    edited = PIPELINE.replace("x * record.params.factor", "x * record.params.factor + 1")
    pipe.write("experiments/pipe.py", edited)
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    assert len(list(pipe.cache.glob("pipe/*/scale-*/meta.json"))) == 2 * len(older)
    pipe.write(
        "experiments/pipe.py",
        edited.replace(
            'outputs=["scaled"], cachers=[JsonCacher]', 'outputs=["scaled"], cachers=[PickleCacher]'
        ),
    )
    calls = plan_then_run(cli)
    assert_same_words(calls)
    changed = "cachers or outputs changed"
    assert calls["scale", "a"] == ("run", changed, "executed", changed)


def test_a_new_stage_of_a_parameter_set_seen_before_is_not_computed_yet(pipe, cli):
    """`parameters changed` says that this stage ran for the set under other values; a stage
    added to the experiment never ran for any set."""
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace(
            "def run(param_sets, manager):",
            '@cf.stage(inputs=["raw"], outputs=["count"], cachers=[JsonCacher])\n'
            "def count(record, raw):\n    return len(raw)\n\n\n"
            "def run(param_sets, manager):",
        ).replace(
            "total(describe(scale(load(cf.Record(manager, p)))))",
            "count(total(describe(scale(load(cf.Record(manager, p))))))",
        ),
    )
    calls = plan_then_run(cli)
    assert_same_words(calls)
    for record in ("a", "b"):
        assert calls["count", record] == ("run", "not computed yet", "executed", "not computed yet")


def test_a_stage_defined_outside_the_project_names_its_changed_code(
    project, cli, tmp_path_factory, monkeypatch
):
    """Stages shared from a folder outside any project: the plan still names what changed in
    them (the run's own fingerprinter explains the miss; none could be found from their file)."""
    import sys

    shared = tmp_path_factory.mktemp("shared")
    stages = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
def compute(record):
    return record.params.x + 1
"""
    (shared / "shared_stages.py").write_text(stages)
    monkeypatch.syspath_prepend(str(shared))
    project.write(
        "experiments/ext.py",
        """
        import curifactory_cli as cf
        from shared_stages import compute


        def run(param_sets, manager):
            for p in param_sets:
                compute(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    try:
        assert project.run("ext", "params/p.yaml").records[0].state["v"] == 2
        (shared / "shared_stages.py").write_text(stages.replace("x + 1", "x + 2"))
        sys.modules.pop("shared_stages", None)
        plan = json.loads(cli("plan", "ext", "params/p.yaml", "--json").stdout)
        assert [n["reason"] for n in plan["nodes"]] == ["stage code changed (compute)"]
    finally:
        sys.modules.pop("shared_stages", None)


def test_a_call_whose_inputs_are_not_known_yet_is_told_removed_by_its_lineage(pipe, cli):
    # load [a] and scale [a] both removed as damaged: the plan cannot know scale's key (load
    # runs first), so it finds the removal under scale's lineage key, and the run agrees.
    for stage, name in (("load", "raw"), ("scale", "scaled")):
        (entry_of(pipe, stage, "a") / f"{name}.json").write_text("[-1]")
    assert cli("cache", "verify", "--fix").exit_code == 1
    calls = plan_then_run(cli)
    assert_same_words(calls)
    for stage, name in (("load", "raw"), ("scale", "scaled")):
        plan, reason, outcome, _ = calls[stage, "a"]
        assert (plan, outcome) == ("run", "executed")
        assert reason.startswith(f"cache entry removed as damaged (corrupt {name}.json) by "), (
            stage,
            reason,
        )


# ------------------------------------------------------------------ which value changed
FIELDS = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def fit(record):
    p = record.params
    return [p.alpha, p.get("zeta"), p.model.depth]

def run(param_sets, manager):
    for p in param_sets:
        fit(cf.Record(manager, p))
"""


def _reason(project, stage="fit", record="b"):
    result = project.run("fields", "params/p.yaml")
    assert result.ok, result.error
    (node,) = [n for n in result.graph.nodes if (n.stage.name, n.record_name) == (stage, record)]
    return node.reason


def _sets(b_zeta, b_depth=3, b_extra=""):
    return (
        "- name: a\n  alpha: 1\n  zeta: 1\n  model: {depth: 3}\n"
        f"- name: b\n  alpha: 1\n  zeta: {b_zeta}\n  model: {{depth: {b_depth}}}\n{b_extra}"
    )


def test_a_miss_names_the_value_read_that_changed_against_the_sets_newest_entry(project):
    project.write("experiments/fields.py", FIELDS)
    project.write("params/p.yaml", _sets(2))
    assert _reason(project) == "not computed yet"
    project.write("params/p.yaml", _sets(3))
    # b's own entry (zeta 2), not a's (zeta 1).
    assert _reason(project) == "parameters changed (zeta: 2 -> 3)"
    project.write("params/p.yaml", _sets(4))
    assert _reason(project) == "parameters changed (zeta: 3 -> 4)"  # the newest one
    project.write("params/p.yaml", _sets(4, b_depth=5))
    assert _reason(project) == "parameters changed (model.depth: 3 -> 5)"
    project.write("params/p.yaml", _sets('"a long text value that goes on and on and on"', 5))
    assert _reason(project) == (
        'parameters changed (zeta: 4 -> "a long text value that goes on and on …)'
    )
    # A value that is not there any more is "(none)".
    project.write("params/p.yaml", "- name: a\n  alpha: 1\n  model: {depth: 3}\n")
    assert _reason(project, record="a") == "parameters changed (zeta: 1 -> (none))"


def test_a_value_in_a_reason_is_short_json():
    from curifactory_cli.engine.reasons import _shown
    from curifactory_cli.parameters.read_values import ABSENT

    assert _shown(0.5) == "0.5" and _shown("é") == '"é"' and _shown(ABSENT) == "(none)"
    assert _shown({1}) == '"{1}"'  # not JSON: its repr
    assert _shown("x" * 38) == '"' + "x" * 38 + '"'  # 40 characters: whole
    assert _shown("x" * 39) == '"' + "x" * 38 + "…"  # 41: cut to 39 and an ellipsis


SHARED_THEN_CHANGED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def fit(record):
    return record.params.alpha

@cf.stage(inputs=["out"], outputs=["tagged"], cachers=[JsonCacher])
def tag(record, out):
    return [out, record.params.tag]

def run(param_sets, manager):
    for p in param_sets:
        tag(fit(cf.Record(manager, p)))
"""


def test_a_call_that_shared_another_sets_entry_names_the_value_that_changed(project):
    """b's `fit` used a's entry (both read alpha 1); b has entries of its own (`tag`), so
    it ran before: once its alpha changes, the miss names it."""
    project.write("experiments/fields.py", SHARED_THEN_CHANGED)
    project.write(
        "params/p.yaml", "- name: a\n  alpha: 1\n  tag: x\n- name: b\n  alpha: 1\n  tag: y\n"
    )
    assert project.run("fields", "params/p.yaml").ok
    project.write(
        "params/p.yaml", "- name: a\n  alpha: 1\n  tag: x\n- name: b\n  alpha: 2\n  tag: y\n"
    )
    assert _reason(project) == "parameters changed (alpha: 1 -> 2)"
    # A set never run before: nothing changed for it, it was not computed.
    project.write("params/p.yaml", "- name: c\n  alpha: 3\n  tag: z\n")
    assert _reason(project, record="c") == "not computed yet"


def test_which_calls_may_share(project):
    from types import SimpleNamespace

    from curifactory_cli.engine.decide import FactFinder
    from curifactory_cli.engine.sharing import shareable

    def call(**changes):
        fields = {
            "index": len(changes),
            "is_cached_stage": True,
            "stage": SimpleNamespace(is_aggregate=False, params=None, name="s"),
            "record": SimpleNamespace(params=object(), input_records=[]),
        }
        return SimpleNamespace(**{**fields, **changes})

    assert shareable(call())
    assert not shareable(call(is_cached_stage=False))
    assert not shareable(call(stage=SimpleNamespace(is_aggregate=True, params=None)))
    assert not shareable(call(stage=SimpleNamespace(is_aggregate=False, params="all")))
    assert not shareable(call(record=SimpleNamespace(params=None, input_records=[])))
    assert FactFinder(None, "exp").shares(call())
    assert not FactFinder(None, "exp", whole_params=True).shares(call())
    assert not FactFinder(None, "exp", overwrite=True).shares(call())
    # Asked once per call: the answer is kept.
    finder = FactFinder(None, "exp")
    first = call()
    assert finder.shares(first)
    first.is_cached_stage = False
    assert finder.shares(first)


SHARED_ONLY = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def fit(record):
    return record.params.alpha

def run(param_sets, manager):
    for p in param_sets:
        fit(cf.Record(manager, p))
"""


def test_a_set_whose_only_earlier_call_was_served_from_another_sets_entry_names_the_change(
    project, cli
):
    """b never computed anything of its own: its one call used a's entry (both read alpha
    1). Once its alpha changes, the miss names the value (the run registry says which entry
    b used), in the plan, the run and their JSON."""
    project.write("experiments/fields.py", SHARED_ONLY)
    two = "- name: a\n  alpha: 1\n  tag: x\n- name: b\n  alpha: {b}\n  tag: y\n"
    project.write("params/p.yaml", two.format(b=1))
    ran = project.run("fields", "params/p.yaml")
    assert ran.executed() == [("fit", "a")]
    project.write("params/p.yaml", two.format(b=2) + "- name: c\n  alpha: 3\n  tag: z\n")
    planned = json.loads(cli("plan", "fields", "params/p.yaml", "--json").stdout)["nodes"]
    result = cli("run", "fields", "params/p.yaml", "--json", "--no-report")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["nodes"]
    changed = [{"part": "params", "path": "alpha", "old": 1, "new": 2}]
    for nodes in (planned, run):
        (b,) = [n for n in nodes if n["record"] == "b"]
        assert b["reason"] == "parameters changed (alpha: 1 -> 2)"
        assert b["changed"] == changed
    # c never ran: nothing changed for it (its plan says it may share b's call first).
    (c,) = [n for n in run if n["record"] == "c"]
    assert (c["reason"], c["changed"]) == ("not computed yet", [])
    (a,) = [n for n in run if n["record"] == "a"]
    assert (a["reason"], a["changed"]) == ("cached", [])


def test_a_deleted_entry_a_set_had_shared_is_not_told_as_a_parameter_change(project):
    """b used a's entry; once that entry is gone (and nothing changed), b's miss is not
    'parameters changed'."""
    project.write("experiments/fields.py", SHARED_ONLY)
    project.write("params/p.yaml", "- name: a\n  alpha: 1\n- name: b\n  alpha: 1\n")
    assert project.run("fields", "params/p.yaml").executed() == [("fit", "a")]
    shutil.rmtree(entry_of(project, "fit", "a"))
    project.write("params/p.yaml", "- name: b\n  alpha: 1\n")
    assert _reason(project) == "not computed yet"


def test_the_json_outputs_carry_what_changed_in_the_code(pipe, cli):
    """A helper and a constant the stage uses change: the reason names each by kind, and
    the JSON of the plan and of the run carries them as data."""
    pipe.write(
        "experiments/pipe.py",
        PIPELINE.replace(
            '@cf.stage(inputs=["raw"], outputs=["scaled"]',
            "OFFSET = 0\n\n\ndef _shift(x):\n    return x + OFFSET\n\n\n"
            '@cf.stage(inputs=["raw"], outputs=["scaled"]',
        ).replace("x * record.params.factor for", "_shift(x) * record.params.factor for"),
    )
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    pipe.write(
        "experiments/pipe.py",
        (pipe.root / "experiments/pipe.py")
        .read_text()
        .replace("OFFSET = 0", "OFFSET = 1")
        .replace("return x + OFFSET", "return x + OFFSET * 1"),
    )
    planned = json.loads(cli("plan", "pipe", "params/p.yaml", "--json").stdout)["nodes"]
    ran = json.loads(cli("run", "pipe", "params/p.yaml", "--json", "--no-report").stdout)
    for nodes in (planned, ran["nodes"]):
        (scale,) = [n for n in nodes if (n["stage"], n["record"]) == ("scale", "a")]
        assert scale["reason"] == "stage code changed (constant OFFSET, helper _shift)"
        assert scale["changed"] == [
            {"part": "code", "name": "OFFSET", "kind": "constant"},
            {"part": "code", "name": "_shift", "kind": "helper"},
        ]


def test_a_call_whose_inputs_and_read_value_changed_names_the_value(pipe, cli):
    """b's n and factor change: load reruns (it reads n); scale, whose input is recomputed
    first, is told against b's entry made under the old values: the value it reads changed,
    in the plan and the run alike; total reads none of them and ran for its inputs."""
    pipe.write("params/p.yaml", PARAMS.replace("n: 4", "n: 5").replace("factor: 3", "factor: 5"))
    calls = plan_then_run(cli)
    assert_same_words(calls)
    assert calls["load", "b"][1] == "parameters changed (n: 4 -> 5)"
    changed = "parameters changed (factor: 3 -> 5)"
    assert calls["scale", "b"] == ("run", changed, "executed", changed)
    assert calls["total", "b"][2:] == ("executed", "input data changed (memo, scaled)")
