"""Pins for parts of the cache key and of the cache commands that a mutation test of the
suite found unpinned: each test changes one thing a user relies on and asserts what runs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from experiments_src import CHAIN, CHAIN_PARAMS, edit

from curifactory_cli.graph import Outcome


@pytest.fixture(autouse=True)
def _no_bytecode(monkeypatch):
    # Experiments are rewritten within a test; never let a stale .pyc be imported.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


# ---------------------------------------------------------------------------------- helpers
def node(result, stage: str, rec: str):
    found = [n for n in result.graph.nodes if n.stage.name == stage and n.record_name == rec]
    assert len(found) == 1, f"expected one node {stage}/{rec}, got {found}"
    return found[0]


def state(result, rec: str):
    return next(r for r in result.records if r.name == rec).state


def meta_of(result, stage: str, rec: str) -> dict:
    return json.loads((Path(node(result, stage, rec).entry_dir) / "meta.json").read_text())


def first_run(project, name: str, source: str, params: str):
    project.write(f"experiments/{name}.py", source)
    project.write("params/p.yaml", params)
    result = project.run(name, "params/p.yaml")
    assert result.ok, result.error
    return result


def ok(cli, *args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def as_json(cli, *args: str):
    return json.loads(ok(cli, *args, "--json").stdout)


# ---------------------------------------------------------------------------------- key parts
KWARGS = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return [1, 2, 3]


@cf.stage(inputs=["numbers"], outputs=["scaled"], cachers=[JsonCacher])
def scale(record, numbers, factor=1):
    return [x * factor for x in numbers]


def run(param_sets, manager):
    for p in param_sets:
        scale(load(cf.Record(manager, p)), factor=2)
"""


def test_stage_call_keyword_arguments_are_in_the_key(project):
    first = first_run(project, "kw", KWARGS, "- name: a\n")
    assert state(first, "a")["scaled"] == [2, 4, 6]

    project.write("experiments/kw.py", edit(KWARGS, "factor=2)", "factor=3)"))
    result = project.run("kw", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("scale", "a")]
    assert state(result, "a")["scaled"] == [3, 6, 9]
    assert node(result, "scale", "a").key != node(first, "scale", "a").key


CACHER_SWITCH = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(outputs=["value"], cachers=[JsonCacher])
def make(record):
    return {"n": record.params.n}


@cf.stage(inputs=["value"], outputs=["doubled"], cachers=[JsonCacher])
def use(record, value):
    return value["n"] * 2


def run(param_sets, manager):
    for p in param_sets:
        use(make(cf.Record(manager, p)))
"""


def test_switching_the_cacher_reruns_the_stage(project):
    first_run(project, "switch", CACHER_SWITCH, "- name: a\n  n: 4\n")

    project.write(
        "experiments/switch.py",
        edit(
            CACHER_SWITCH,
            'outputs=["value"], cachers=[JsonCacher]',
            'outputs=["value"], cachers=[PickleCacher]',
        ),
    )
    result = project.run("switch", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("make", "a"), ("use", "a")]
    meta = meta_of(result, "make", "a")
    assert meta["outputs"]["value"]["cacher"] == "curifactory_cli.caching.PickleCacher"
    assert [f["path"] for f in meta["outputs"]["value"]["files"]] == ["value.pkl"]
    assert state(result, "a")["value"] == {"n": 4}
    assert state(result, "a")["doubled"] == 8


AGG_SWAP = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["score"], cachers=[JsonCacher])
def score(record):
    return record.params.n


@cf.aggregate(inputs=["score"], outputs=["by_set"], cachers=[JsonCacher])
def collect(record, records, score):
    return {r.name: v for r, v in score.items()}


def run(param_sets, manager):
    for p in param_sets:
        score(cf.Record(manager, p))
    collect(cf.Record(manager, None))
"""


def test_aggregate_key_follows_which_record_produced_which_value(project):
    first = first_run(project, "swap", AGG_SWAP, "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    assert state(first, "aggregate")["by_set"] == {"a": 1, "b": 2}

    # Same parameters, same set of output bytes: only who produced which value changes.
    project.write(
        "experiments/swap.py",
        edit(AGG_SWAP, "return record.params.n", "return 3 - record.params.n"),
    )
    result = project.run("swap", "params/p.yaml")

    assert result.ok, result.error
    assert sorted(result.executed()) == [("collect", "aggregate"), ("score", "a"), ("score", "b")]
    assert state(result, "aggregate")["by_set"] == {"a": 2, "b": 1}


MEMORY_MIDDLE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    return record.params.n


@cf.stage(inputs=["raw"], outputs=["prepared"], cachers=None)
def prep(record, raw):
    return raw * 10


@cf.stage(inputs=["prepared"], outputs=["result"], cachers=[JsonCacher])
def use(record, prepared):
    return prepared + 1


def run(param_sets, manager):
    for p in param_sets:
        use(prep(load(cf.Record(manager, p))))
"""


def test_change_above_an_in_memory_stage_reaches_the_cached_stage_below(project):
    first = first_run(project, "mid", MEMORY_MIDDLE, "- name: a\n  n: 1\n")
    assert state(first, "a")["result"] == 11
    again = project.run("mid", "params/p.yaml")
    assert again.executed() == [] and node(again, "prep", "a").outcome is Outcome.SKIPPED

    project.write(
        "experiments/mid.py",
        edit(MEMORY_MIDDLE, "return record.params.n", "return record.params.n + 1"),
    )
    result = project.run("mid", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("load", "a"), ("prep", "a"), ("use", "a")]
    assert state(result, "a")["result"] == 21


def test_overwrite_true_in_a_parameter_set_forces_only_that_sets_stages(project):
    first = first_run(project, "chain", CHAIN, CHAIN_PARAMS)
    assert len(first.executed()) == 6  # `load` and `count` read nothing: once for both sets

    project.write("params/p.yaml", CHAIN_PARAMS.replace("  k: 1\n", "  k: 1\n  overwrite: true\n"))
    result = project.run("chain", "params/p.yaml")

    assert result.ok, result.error
    assert sorted(result.executed()) == [
        ("count", "a"),
        ("double", "a"),
        ("load", "a"),
        ("total", "a"),
    ]
    for stage in ("load", "double", "total", "count"):
        assert node(result, stage, "b").outcome is Outcome.CACHED
    assert state(result, "a")["total"] == 12


# ---------------------------------------------------------------------------------- cachers
LAZY_DAMAGE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=[cf.Lazy("big")], cachers=[JsonCacher])
def make(record):
    return [record.params.n] * 3


@cf.stage(inputs=["big"], outputs=["total"], cachers=[JsonCacher])
def use(record, big):
    return sum(big)


def run(param_sets, manager):
    for p in param_sets:
        use(make(cf.Record(manager, p)))
"""


def test_damaged_lazy_artifact_is_detected_by_checksum_and_recomputed(project):
    first = first_run(project, "lazyd", LAZY_DAMAGE, "- name: a\n  n: 1\n")
    artifact = Path(node(first, "make", "a").entry_dir) / "big.json"
    data = artifact.read_bytes()
    damaged = data.replace(b"1", b"7", 1)  # still valid JSON, same size, another value
    assert damaged != data and len(damaged) == len(data)
    artifact.write_bytes(damaged)

    # The consumer has to execute now, so it loads the (damaged) lazy output.
    project.write(
        "experiments/lazyd.py", edit(LAZY_DAMAGE, "return sum(big)", "return sum(x for x in big)")
    )
    result = project.run("lazyd", "params/p.yaml")

    assert result.ok, result.error
    assert state(result, "a")["total"] == 3  # not 9, from the damaged bytes
    assert sorted(result.executed()) == [("make", "a"), ("use", "a")]
    assert any("checksum" in w for w in result.warnings), result.warnings
    assert json.loads(artifact.read_text()) == [1, 1, 1]


LAZY_HANDLE_DAMAGE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=[cf.Lazy("big", resolve=False)], cachers=[JsonCacher])
def make(record):
    return [record.params.n] * 3


@cf.stage(inputs=["big"], outputs=["total"], cachers=[JsonCacher])
def use(record, big):
    return sum(big.load())


def run(param_sets, manager):
    for p in param_sets:
        use(make(cf.Record(manager, p)))
"""


def damage_handle_and_rerun_consumer(project):
    first = first_run(project, "lazyh", LAZY_HANDLE_DAMAGE, "- name: a\n  n: 1\n")
    artifact = Path(node(first, "make", "a").entry_dir) / "big.json"
    data = artifact.read_bytes()
    artifact.write_bytes(data.replace(b"1", b"7", 1))  # same size, valid JSON: [7, 1, 1]
    project.write(
        "experiments/lazyh.py",
        edit(LAZY_HANDLE_DAMAGE, "return sum(big.load())", "return sum(x for x in big.load())"),
    )
    return project.run("lazyh", "params/p.yaml"), artifact


def test_damaged_lazy_handle_is_detected_by_checksum_before_the_stage_reads_it(project):
    result, _ = damage_handle_and_rerun_consumer(project)

    said = " ".join([str(result.error or ""), *result.warnings])
    assert "does not match its recorded checksum" in said, said
    assert "big.json" in said
    totals = [json.loads(p.read_text()) for p in project.cache.rglob("total.json")]
    assert 9 not in totals, "the damaged bytes reached the stage"
    if result.ok:
        assert state(result, "a")["total"] == 3


def test_damaged_lazy_handle_is_recomputed(project):
    result, artifact = damage_handle_and_rerun_consumer(project)

    assert result.ok, result.error
    assert sorted(result.executed()) == [("make", "a"), ("use", "a")]
    assert any("checksum" in w for w in result.warnings), result.warnings
    assert state(result, "a")["total"] == 3
    assert json.loads(artifact.read_text()) == [1, 1, 1]


SHARED_INSTANCE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["value"], cachers=[JsonCacher()])
def make(record):
    record.stage_cachers[0].extra_metadata.setdefault("made_for", []).append(record.params.name)
    return record.params.n


def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def test_cacher_instances_are_never_shared_between_records(project):
    result = first_run(project, "shared", SHARED_INSTANCE, "- name: a\n  n: 1\n- name: b\n  n: 2\n")

    for rec in ("a", "b"):
        extra = meta_of(result, "make", rec)["outputs"]["value"]["extra"]
        assert extra == {"made_for": [rec]}, (rec, extra)
    assert state(result, "b")["value"] == 2


# ---------------------------------------------------------------------------------- commands
PIPELINE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["raw"], outputs=["memo"])
def describe(record, raw):
    return {"n": len(raw)}


@cf.stage(inputs=["raw", "memo"], outputs=["total"], cachers=[JsonCacher])
def total(record, raw, memo):
    return sum(raw) + memo["n"]


@cf.aggregate(inputs=["total"], outputs=["grand"], cachers=[JsonCacher])
def grand(record, records, total):
    return sum(total.values())


def run(param_sets, manager):
    for p in param_sets:
        total(describe(load(cf.Record(manager, p))))
    grand(cf.Record(manager, None))
"""
PIPE_PARAMS = "- name: a\n  n: 3\n- name: b\n  n: 4\n"


def test_plan_marks_in_memory_inputs_of_a_stage_that_will_run_as_run(project, cli):
    first_run(project, "pipe", PIPELINE, PIPE_PARAMS)
    project.write(
        "experiments/pipe.py", edit(PIPELINE, 'sum(raw) + memo["n"]', 'sum(raw) + 2 * memo["n"]')
    )

    plan = as_json(cli, "plan", "pipe", "params/p.yaml")
    plans = {(n["stage"], n["record"]): n["plan"] for n in plan["nodes"]}

    assert plans[("total", "a")] == "run" and plans[("total", "b")] == "run"
    assert plans[("describe", "a")] == "run" and plans[("describe", "b")] == "run"
    assert plans[("load", "a")] == "cached"
    result = project.run("pipe", "params/p.yaml")
    assert result.ok, result.error
    ran = {k for k, v in plans.items() if v == "run"}
    assert set(result.executed()) - {("grand", "aggregate")} == ran


def test_cache_ls_stale_lists_entries_of_a_set_whose_values_changed(project, cli):
    first_run(project, "pipe", PIPELINE, PIPE_PARAMS)
    stale_args = ("cache", "ls", "--stale", "pipe", "--stale-params", "params/p.yaml")
    assert as_json(cli, *stale_args)["entries"] == []

    project.write("params/p.yaml", PIPE_PARAMS.replace("n: 4", "n: 5"))
    stale = as_json(cli, *stale_args)["entries"]

    assert sorted((e["stage"], e["params"]) for e in stale) == [
        ("grand", "aggregate"),
        ("load", "b"),
        ("total", "b"),
    ]


def test_cache_invalidate_keeps_each_entrys_age(project, cli):
    first_run(project, "chain", CHAIN, "- name: a\n  k: 1\n")
    two_hours_ago = time.time() - 7200
    for meta in project.cache.rglob("meta.json"):
        os.utime(meta, (two_hours_ago, two_hours_ago))
    # A new version of total: the old entry is now superseded by a newer one.
    project.write(
        "experiments/chain.py", edit(CHAIN, "return sum(doubled)", "return sum(doubled) + 1")
    )
    assert project.run("chain", "params/p.yaml").executed() == [("total", "a")]
    before = {e["path"]: e["created"] for e in as_json(cli, "cache", "ls")["entries"]}
    (old_total,) = [p for p, c in before.items() if "/total-" in p and c < time.time() - 3600]

    data = as_json(cli, "cache", "invalidate", "chain", "--stage", "total")
    assert data["invalidated"] == 2

    after = {
        e["path"]: (e["created"], e["invalidated"]) for e in as_json(cli, "cache", "ls")["entries"]
    }
    assert {p: c for p, (c, _) in after.items()} == before
    assert after[old_total][1] is True
    gc = as_json(cli, "cache", "gc", "--keep-latest", "1")
    assert [i["path"] for i in gc["items"] if i["kind"] == "superseded"] == [old_total]


# ---------------------------------------------------------------------------------- params
TYPED = """
from dataclasses import dataclass

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@dataclass
class Params(cf.ExperimentParameters):
    lr: float = 0.1
    shape: tuple[int, int] = (2, 3)


@cf.stage(outputs=["area"], cachers=[JsonCacher])
def area(record):
    return record.params.shape[0] * record.params.shape[1] * record.params.lr


def run(param_sets, manager):
    for p in param_sets:
        area(cf.Record(manager, p))
"""


@pytest.mark.parametrize(
    "line, says",
    [
        ("lr: true", ["parameter 'lr': expected float", "got bool True"]),
        ("shape: [1, 2, 3]", ["parameter 'shape': expected tuple", "got list [1, 2, 3]"]),
    ],
    ids=["bool-for-float", "three-items-for-pair"],
)
def test_typed_parameters_refuse_a_bool_for_float_and_a_wrong_length_tuple(
    project, cli, line, says
):
    project.write("experiments/typed.py", TYPED)
    project.write(
        "params/p.yaml", f"- name: good\n  lr: 0.5\n  shape: [4, 5]\n- name: bad\n  {line}\n"
    )
    before = project.snapshot()

    result = cli("run", "typed", "params/p.yaml")

    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "set 'bad'" in result.output
    text = " ".join(result.output.split())
    assert all(part in text for part in says), text
    assert project.snapshot() == before


# ---------------------------------------------------------------------------------- fingerprint
EXEC_STAGE = '''
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

FACTOR = 3

# Made by exec, as in a notebook cell or generated code: inspect.getsource cannot find it.
exec("""
@cf.stage(outputs=["value"], cachers=[JsonCacher])
def compute(record):
    return record.params.n * FACTOR + 100
""")


def run(param_sets, manager):
    for p in param_sets:
        compute(cf.Record(manager, p))
'''


@pytest.mark.parametrize(
    "old, new, value",
    [("FACTOR = 3", "FACTOR = 4", 108), ("* FACTOR + 100", "* FACTOR + 200", 206)],
    ids=["module-constant", "literal"],
)
def test_fingerprint_of_a_stage_without_source_follows_its_constants(project, old, new, value):
    first = first_run(project, "gen", EXEC_STAGE, "- name: a\n  n: 2\n")
    assert state(first, "a")["value"] == 106
    assert project.run("gen", "params/p.yaml").executed() == []

    project.write("experiments/gen.py", edit(EXEC_STAGE, old, new))
    result = project.run("gen", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("compute", "a")]
    assert state(result, "a")["value"] == value
