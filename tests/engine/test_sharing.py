"""Entries shared between parameter sets: a call is served from another set's entry when the
two are the same computation (same stage, code and inputs) and this set has the values the
other call read; otherwise it runs. In one run, and across runs."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curifactory_cli.graph import Outcome

SWEEP = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["data"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n_rows))

@cf.stage(inputs=["data"], outputs=["clean"], cachers=[JsonCacher])
def clean(record, data):
    return [x * 2 for x in data]

@cf.stage(inputs=["clean"], outputs=["model"], cachers=[JsonCacher])
def train(record, clean):
    return sum(clean) * record.params.lr

@cf.stage(inputs=["model"], outputs=["score"], cachers=[JsonCacher])
def evaluate(record, model):
    return model + record.params.lr

def run(param_sets, manager):
    for p in param_sets:
        evaluate(train(clean(load(cf.Record(manager, p)))))
"""


def sweep_params(lrs, n_rows=10, extra=""):
    return "".join(f"- name: lr{lr}\n  n_rows: {n_rows}\n  lr: {lr}\n{extra}" for lr in lrs)


def executed(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    for stage, _ in result.executed():
        counts[stage] = counts.get(stage, 0) + 1
    return counts


def outcomes(result) -> dict[tuple[str, str], tuple[Outcome, str]]:
    return {(n.stage.name, n.record_name): (n.outcome, n.reason) for n in result.graph.nodes}


LRS = [round(0.01 * i, 2) for i in range(1, 21)]


@pytest.mark.usefixtures("job_runner")
def test_a_sweep_computes_the_stages_it_does_not_vary_once(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params(LRS))
    first = project.run("sweep", "params/p.yaml")
    assert first.ok, first.error
    assert executed(first) == {"load": 1, "clean": 1, "train": 20, "evaluate": 20}
    shared = outcomes(first)[("load", "lr0.02")]
    assert shared[0] is Outcome.CACHED
    assert shared[1].startswith("shared with set 'lr0.01' (reads n_rows)")
    # The values are the ones each set computes.
    for record in first.records:
        lr = record.params.lr
        assert record.state["score"] == pytest.approx(sum(range(0, 20, 2)) * lr + lr)
    # Nothing runs again; one more value runs only what reads it.
    assert executed(project.run("sweep", "params/p.yaml")) == {}
    project.write("params/p.yaml", sweep_params([*LRS, 0.5]))
    third = project.run("sweep", "params/p.yaml")
    assert executed(third) == {"train": 1, "evaluate": 1}
    assert third.records[-1].state["score"] == pytest.approx(90 * 0.5 + 0.5)


def test_a_parameter_no_stage_reads_changes_nothing(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    assert executed(project.run("sweep", "params/p.yaml")) == {
        "load": 1,
        "clean": 1,
        "train": 2,
        "evaluate": 2,
    }
    project.write("params/p.yaml", sweep_params([0.1, 0.2], extra="  unused_knob: 1\n"))
    again = project.run("sweep", "params/p.yaml")
    assert again.ok and executed(again) == {}
    project.write("params/p.yaml", sweep_params([0.1, 0.2], extra="  unused_knob: 2\n"))
    assert executed(project.run("sweep", "params/p.yaml")) == {}
    # What a stage reads still counts.
    project.write("params/p.yaml", sweep_params([0.1, 0.2], n_rows=11))
    assert executed(project.run("sweep", "params/p.yaml")) == {
        "load": 1,
        "clean": 1,
        "train": 2,
        "evaluate": 2,
    }


BRANCH = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def pick(record):
    p = record.params
    return p.a if p.mode == "a" else p.b

def run(param_sets, manager):
    for p in param_sets:
        pick(cf.Record(manager, p))
"""


def test_a_stage_that_reads_a_field_only_in_one_branch_shares_only_where_it_did_not(project):
    project.write("experiments/branch.py", BRANCH)
    project.write(
        "params/p.yaml",
        "- name: a1\n  mode: a\n  a: 1\n  b: 1\n- name: b1\n  mode: b\n  a: 1\n  b: 1\n",
    )
    assert executed(project.run("branch", "params/p.yaml")) == {"pick": 2}
    # b changed: only the call whose mode read b runs again.
    project.write(
        "params/p.yaml",
        "- name: a1\n  mode: a\n  a: 1\n  b: 2\n- name: b1\n  mode: b\n  a: 1\n  b: 2\n",
    )
    result = project.run("branch", "params/p.yaml")
    assert result.executed() == [("pick", "b1")]
    assert [r.state["out"] for r in result.records] == [1, 2]


WHOLE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def describe(record):
    return repr(record.params)[:0] + str(record.params.n)

def run(param_sets, manager):
    for p in param_sets:
        describe(cf.Record(manager, p))
"""


def test_a_call_that_takes_the_whole_set_shares_with_no_other_set(project):
    project.write("experiments/whole.py", WHOLE)
    project.write("params/p.yaml", "- name: x\n  n: 1\n  other: 1\n- name: y\n  n: 1\n  other: 2\n")
    assert executed(project.run("whole", "params/p.yaml")) == {"describe": 2}
    project.write("params/p.yaml", "- name: x\n  n: 1\n  other: 3\n")
    assert executed(project.run("whole", "params/p.yaml")) == {"describe": 1}


TOGETHER = """
import time
from pathlib import Path
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

MARKS = Path({marks!r})

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def describe(record):
    repr(record.params)  # the whole set: nothing to share
    me = record.name
    (MARKS / f"{{me}}.start").touch()
    deadline = time.time() + 2
    while time.time() < deadline:  # is another call running now?
        started = {{p.stem for p in MARKS.glob("*.start")}}
        done = {{p.stem for p in MARKS.glob("*.done")}}
        if started - done - {{me}}:
            break
        time.sleep(0.02)
    else:
        me = None
    (MARKS / f"{{record.name}}.done").touch()
    return me is not None

def run(param_sets, manager):
    for p in param_sets:
        describe(cf.Record(manager, p))
"""


@pytest.mark.slow
def test_calls_that_take_the_whole_set_run_side_by_side_after_the_first(project, tmp_path):
    # The first call of a stage runs alone (the others may share its entry); it took the
    # whole set, so the others then run on both workers at once, not one after another.
    marks = tmp_path / "marks"
    marks.mkdir()
    project.write("experiments/together.py", TOGETHER.format(marks=str(marks)))
    project.write("params/p.yaml", "".join(f"- name: s{i}\n  n: {i}\n" for i in range(3)))
    result = project.run("together", "params/p.yaml", workers=2)
    assert result.ok, result.error
    assert executed(result) == {"describe": 3}
    together = [r.state["out"] for r in result.records]
    assert together.count(True) >= 1, together


AGGREGATE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["score"], cachers=[JsonCacher])
def train(record):
    return record.params.lr * 10

@cf.aggregate(inputs=["score"], outputs=["table"], cachers=[JsonCacher])
def compare(record, records, score):
    # The records in the order given, each with what it read of its set and its score.
    return [[r.params.lr, score[r]{extra}] for r in records]

def run(param_sets, manager):
    records = [train(cf.Record(manager, p)) for p in param_sets]
    compare(cf.Record(manager, None, ), records)
"""


def sets(*pairs, extra=""):
    return "".join(f"- name: {name}\n  lr: {lr}\n{extra}" for name, lr in pairs)


def aggregate_project(project, extra=""):
    project.write("experiments/agg.py", AGGREGATE.format(extra=extra))
    project.write("params/p.yaml", sets(("a", 0.1), ("b", 0.2)))
    first = project.run("agg", "params/p.yaml")
    assert executed(first) == {"train": 2, "compare": 1}


def table(result):
    return next(r for r in result.records if r.params is None).state["table"]


def test_an_aggregate_is_keyed_on_what_it_reads_of_its_records(project):
    aggregate_project(project)
    # A parameter nothing reads: nothing runs, the aggregate's entry is used as it is.
    project.write("params/p.yaml", sets(("a", 0.1), ("b", 0.2), extra="  unused: 1\n"))
    again = project.run("agg", "params/p.yaml")
    assert executed(again) == {}
    assert outcomes(again)[("compare", "aggregate")][1] == (
        "what it reads is unchanged ([0].lr, [1].lr)"
    )
    assert table(again) == [[0.1, 1.0], [0.2, 2.0]]
    # A value it reads: it runs.
    project.write("params/p.yaml", sets(("a", 0.1), ("b", 0.3), extra="  unused: 1\n"))
    changed = project.run("agg", "params/p.yaml")
    assert executed(changed) == {"train": 1, "compare": 1}
    assert table(changed) == [[0.1, 1.0], [0.3, 3.0]]


def test_an_aggregate_over_its_records_in_another_order_runs_again(project):
    aggregate_project(project)
    project.write("params/p.yaml", sets(("b", 0.2), ("a", 0.1)))
    swapped = project.run("agg", "params/p.yaml")
    assert executed(swapped) == {"compare": 1}
    assert table(swapped) == [[0.2, 2.0], [0.1, 1.0]]


@pytest.mark.parametrize(
    "extra",
    [", r.get_hash()", ", repr(r.params)", ", record.get_hash()", ", record.combo_hash"],
    ids=["a record's hash", "a record's set printed", "its own hash", "its combo hash"],
)
def test_an_aggregate_that_takes_a_whole_set_runs_again_when_any_value_changes(project, extra):
    aggregate_project(project, extra=extra)
    metas = [json.loads(p.read_text()) for p in project.cache.rglob("meta.json")]
    (compare,) = [m for m in metas if m["stage"] == "compare"]
    assert compare["reads"]["everything"] is True
    project.write("params/p.yaml", sets(("a", 0.1), ("b", 0.2), extra="  unused: 1\n"))
    assert executed(project.run("agg", "params/p.yaml")) == {"compare": 1}


COUNTED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.aggregate(outputs=["summary"], cachers=[JsonCacher])
def summary(record, records):
    return [records[0].params.n, len(records)]

def run(param_sets, manager):
    summary(cf.Record(manager, None), [cf.Record(manager, p) for p in param_sets])
"""


def test_an_aggregate_over_more_records_is_not_served_what_fewer_computed(project):
    # It reads only the first record's n; how many records it covers is part of the
    # computation all the same.
    project.write("experiments/counted.py", COUNTED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    assert executed(project.run("counted", "params/p.yaml")) == {"summary": 1}
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n- name: c\n  n: 3\n")
    more = project.run("counted", "params/p.yaml")
    assert executed(more) == {"summary": 1}
    assert table_of_summary(more) == [1, 3]


def table_of_summary(result):
    return next(r for r in result.records if r.params is None).state["summary"]


def index_records(project) -> list[dict]:
    folder = project.cache / ".reads" / "sweep"
    return [
        json.loads(line)
        for f in folder.glob("*.jsonl")
        for line in f.read_text().split("\n")
        if line
    ]


def test_the_index_names_entries_and_a_forged_line_serves_nothing(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1], n_rows=10))
    assert project.run("sweep", "params/p.yaml").ok
    records = index_records(project)
    assert {r["stage"] for r in records} == {"load", "clean", "train", "evaluate"}
    load = next(r for r in records if r["stage"] == "load")
    assert [path for path, _ in load["reads"]] == ["n_rows"]
    # A line claiming that load's entry (made with n_rows 10) read a value of 12 there: the
    # entry's own metadata says otherwise, so a set with 12 rows computes its own.
    project.write("params/other.yaml", sweep_params([0.1], n_rows=12))
    from curifactory_cli.parameters.reads import current_items
    from curifactory_cli.params import Params

    forged = {
        **load,
        "reads": [list(i) for i in current_items(Params("x", {"n_rows": 12}), load["reads"])],
    }
    folder = project.cache / ".reads" / "sweep"
    (folder / "planted.jsonl").write_text(json.dumps(forged) + "\n" + '{"stage": "lo')  # torn
    result = project.run("sweep", "params/other.yaml")
    assert result.ok
    assert executed(result) == {"load": 1, "clean": 1, "train": 1, "evaluate": 1}
    assert result.records[0].state["data"] == list(range(12))


def test_overwrite_stage_is_not_bypassed_by_sharing(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    assert project.run("sweep", "params/p.yaml").ok
    forced = project.run("sweep", "params/p.yaml", overwrite_stages=("load",))
    assert executed(forced) == {"load": 2}  # the same data: what follows stays cached


@pytest.mark.usefixtures("job_runner")
def test_an_invalidated_shared_entry_is_computed_once_again(project, cli):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    assert project.run("sweep", "params/p.yaml").ok
    # The entry both sets use, invalidated (with what was computed from it, for both sets):
    # the next run computes it once again, and what follows it for each set.
    shown = cli("cache", "invalidate", "sweep", "-s", "load", "-p", "lr0.1")
    assert shown.exit_code == 0, shown.stdout
    again = project.run("sweep", "params/p.yaml")
    assert executed(again) == {"load": 1, "clean": 1, "train": 2, "evaluate": 2}


def test_a_dry_run_adds_nothing_to_the_index(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    result = project.run("sweep", "params/p.yaml", dry=True)
    assert result.ok
    assert [r.state["score"] for r in result.records] == [9.1, 18.2]
    assert not (project.cache / ".reads").exists()


def test_sets_share_through_a_cache_at_a_url(project):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1]))
    url = f"memory://sharing-{id(project)}"
    assert executed(project.run("sweep", "params/p.yaml", cache_dir=url))["load"] == 1
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    second = project.run("sweep", "params/p.yaml", cache_dir=url)
    assert executed(second) == {"train": 1, "evaluate": 1}


ALL = SWEEP.replace(
    '@cf.stage(outputs=["data"], cachers=[JsonCacher])',
    '@cf.stage(outputs=["data"], cachers=[JsonCacher], params="all")',
)


def test_params_all_keys_a_stage_on_its_whole_set(project):
    project.write("experiments/sweep.py", ALL)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    first = project.run("sweep", "params/p.yaml")
    # load gets the set itself and shares nothing; clean, downstream, still shares.
    assert executed(first) == {"load": 2, "clean": 1, "train": 2, "evaluate": 2}
    metas = [json.loads(p.read_text()) for p in project.cache.rglob("meta.json")]
    loads = [m for m in metas if m["stage"] == "load"]
    assert [m["reads"]["everything"] for m in loads] == [True, True]
    project.write("params/p.yaml", sweep_params([0.1, 0.2], extra="  unused: 1\n"))
    assert executed(project.run("sweep", "params/p.yaml")) == {"load": 2}


def test_params_all_in_the_settings_keys_every_stage_on_whole_sets(project, cli):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    project.write("curi.toml", 'params = "all"\n')
    first = project.run("sweep", "params/p.yaml")
    assert executed(first) == {"load": 2, "clean": 2, "train": 2, "evaluate": 2}
    assert not (project.cache / ".reads").exists()
    plan = json.loads(cli("plan", "sweep", "params/p.yaml", "--json").stdout)
    assert {n["plan"] for n in plan["nodes"]} == {"cached"}
    project.write("curi.toml", 'params = "some"\n')
    refused = cli("run", "sweep", "params/p.yaml")
    assert refused.exit_code != 0 and "params = 'some'" in refused.output


def test_a_stage_with_another_params_choice_is_refused(project, cli):
    project.write(
        "experiments/bad.py",
        SWEEP.replace(
            "cachers=[JsonCacher])\ndef load", 'cachers=[JsonCacher], params="some")\ndef load'
        ),
    )
    project.write("params/p.yaml", sweep_params([0.1]))
    result = cli("run", "bad", "params/p.yaml")
    assert result.exit_code != 0
    assert "stage 'load': params='some' is not a choice" in " ".join(result.output.split())


# ------------------------------------------------------------------ nothing wrong is served
PROGRAM = """
import json
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

PROGRAM = json.loads({program!r})

def evaluate(p, program):
    out = []
    for step in program:
        if step[0] == "read":
            out.append(getattr(p, step[1]) if step[1] != "m.x" else p.m.x)
        else:  # a branch: which field is read depends on a value
            _, test, high, low = step
            out.append(getattr(p, high) if getattr(p, test) > 1 else getattr(p, low))
    return out

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def body(record):
    return evaluate(record.params, PROGRAM)

@cf.stage(inputs=["out"], outputs=["twice"], cachers=[JsonCacher])
def after(record, out):
    return [out, record.params.c]

@cf.aggregate(inputs=["out"], outputs=["all"], cachers=[JsonCacher])
def gather(record, records, out):
    return [[r.params.d, evaluate(r.params, PROGRAM[::-1]), out[r]] for r in records]

def run(param_sets, manager):
    records = [after(body(cf.Record(manager, p))) for p in param_sets]
    gather(cf.Record(manager, None), records)
"""

_FIELDS = ["a", "b", "c", "d"]
_steps = st.one_of(
    st.tuples(st.just("read"), st.sampled_from([*_FIELDS, "m.x"])),
    st.tuples(
        st.just("branch"),
        st.sampled_from(_FIELDS),
        st.sampled_from(_FIELDS),
        st.sampled_from(_FIELDS),
    ),
)
_values = st.fixed_dictionaries(
    {k: st.integers(0, 2) for k in _FIELDS} | {"m": st.fixed_dictionaries({"x": st.integers(0, 1)})}
)


def _direct(values: dict, program: list) -> list:
    out = []
    for step in program:
        if step[0] == "read":
            out.append(values["m"]["x"] if step[1] == "m.x" else values[step[1]])
        else:
            _, test, high, low = step
            out.append(values[high] if values[test] > 1 else values[low])
    return out


def _yaml(sets: list[dict]) -> str:
    return json.dumps([{"name": f"s{i}", **values} for i, values in enumerate(sets)])


@settings(max_examples=25, deadline=None)
@given(
    program=st.lists(_steps, min_size=0, max_size=4),
    first=st.lists(_values, min_size=1, max_size=3),
    second=st.lists(_values, min_size=1, max_size=3),
)
def test_every_result_served_is_the_one_its_set_computes(tmp_path_factory, program, first, second):
    """Random stage bodies reading random fields (some only on a branch) of random sets, run
    over two sweeps in one cache: every value a run ends with, executed or served from an
    entry of another set, is what the body computes on that very set; and an aggregate's,
    reading its records' sets, is what it computes on those very records in their order."""
    from curifactory_cli.run.runner import RunOptions, run_experiment

    root = tmp_path_factory.mktemp("prop")
    (root / "experiments").mkdir()
    (root / "params").mkdir()
    (root / "experiments" / "prop.py").write_text(PROGRAM.format(program=json.dumps(program)))
    for sets in (first, second):
        (root / "params" / "p.yaml").write_text(_yaml(sets))
        for name in [n for n in sys.modules if n == "experiments" or n.startswith("experiments.")]:
            del sys.modules[name]
        result = run_experiment(RunOptions("prop", ("params/p.yaml",), root=str(root)))
        assert result.ok, result.error
        for record, values in zip(result.records, sets):
            assert record.state["out"] == _direct(values, program)
            assert record.state["twice"] == [_direct(values, program), values["c"]]
        (gathered,) = [r for r in result.records if r.params is None]
        assert gathered.state["all"] == [
            [values["d"], _direct(values, program[::-1]), _direct(values, program)]
            for values in sets
        ]
