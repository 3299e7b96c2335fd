"""`curi why`: each call of a stage, its key part by part, and what differs from the closest
cache entry, field by field; planned as `curi plan` plans, so nothing runs."""

from __future__ import annotations

import json

import pytest
from test_plan import PARAMS, PIPELINE  # load reads n, scale reads factor


@pytest.fixture
def pipe(project, cli):
    project.write("experiments/pipe.py", PIPELINE)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    return project


def why_json(cli, *args: str) -> list[dict]:
    result = cli("why", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["calls"]


def registry_runs(project) -> int:
    import sqlite3

    with sqlite3.connect(project.root / "data" / "runs.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_why_names_the_value_read_that_changed_and_runs_nothing(pipe, cli):
    pipe.write("params/p.yaml", PARAMS.replace("factor: 3", "factor: 5"))
    entries = sorted(pipe.cache.rglob("meta.json"))
    runs = registry_runs(pipe)
    result = cli("why", "pipe", "params/p.yaml", "scale", "-p", "b")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "scale [b]: run: parameters changed (factor: 3 -> 5)"
    rows = {line[2:14].strip(): line[15:] for line in lines[1:]}
    assert rows["stage"] == "scale" and rows["experiment"] == "pipe"
    assert rows["cachers"] == "JsonCacher" and rows["outputs"] == "scaled"
    assert rows["code"].endswith("(scale)")
    assert rows["input data"].startswith("raw ") and rows["input data"].endswith("(from load [b])")
    assert rows["parameters"] == "reads factor = 5"
    assert "(same computation under other parameter values; set 'b'" in rows["closest"]
    assert rows["differs"] == "params factor: 3 -> 5"
    # Only b's call, and nothing ran, was written or recorded.
    assert "[a]" not in result.stdout
    assert sorted(pipe.cache.rglob("meta.json")) == entries
    assert registry_runs(pipe) == runs
    (call,) = why_json(cli, "pipe", "params/p.yaml", "scale", "-p", "b")
    change = {"part": "params", "path": "factor", "old": 3, "new": 5}
    assert call["differences"] == [change] and call["changed"] == [change]
    assert call["closest"]["record"] == "b"
    assert call["parts"]["params"]["reads"] == [{"path": "factor", "value": 5}]
    # total reads no parameter; scale runs first: told against b's entry of its old values,
    # its inputs not known yet.
    (total,) = why_json(cli, "pipe", "params/p.yaml", "total", "-p", "b")
    assert total["plan"] == "maybe"
    assert (
        total["closest"]["chosen"] == "this set's newest entry of the stage, under its old values"
    )
    assert total["closest"]["record"] == "b"
    assert {(d["part"], d["name"], d["new"]) for d in total["differences"]} == {
        ("inputs", "scaled", None),
        ("inputs", "memo", None),
    }
    assert total["parts"]["params"]["reads"] == []


def test_why_names_a_changed_helper_and_constant_by_kind(pipe, cli):
    helper = "OFFSET = 0\n\n\ndef _shift(x):\n    return x + OFFSET\n\n\n"
    source = PIPELINE.replace(
        '@cf.stage(inputs=["raw"], outputs=["scaled"]',
        helper + '@cf.stage(inputs=["raw"], outputs=["scaled"]',
    ).replace("x * record.params.factor for", "_shift(x) * record.params.factor for")
    pipe.write("experiments/pipe.py", source)
    assert cli("run", "pipe", "params/p.yaml", "-q", "--no-report").exit_code == 0
    pipe.write("experiments/pipe.py", source.replace("x + OFFSET", "x - OFFSET"))
    result = cli("why", "pipe", "params/p.yaml", "scale", "-p", "a")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "scale [a]: run: stage code changed (helper _shift)"
    assert "(scale, helper _shift, constant OFFSET)\n" in result.stdout  # the code's parts
    assert "this set's newest entry of the stage" in result.stdout
    assert "  differs      code helper _shift\n" in result.stdout
    (call,) = why_json(cli, "pipe", "params/p.yaml", "scale", "-p", "a")
    assert call["differences"] == [{"part": "code", "name": "_shift", "kind": "helper"}]
    kinds = {p["name"]: p["kind"] for p in call["parts"]["code"]["parts"]}
    assert kinds == {"scale": "stage", "_shift": "helper", "OFFSET": "constant"}


ONE_READ = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["out"], cachers=[JsonCacher])
def fit(record):
    return record.params.x * 10

def run(param_sets, manager):
    for p in param_sets:
        fit(cf.Record(manager, p))
"""


def test_the_closest_entry_with_several_sets(project, cli):
    """c used a's entry (both read x 1); b's entry (x 2) is newer. Once c reads x 3, its
    closest entry is the one it used, not the newest; a set served from another's entry is
    compared with that entry; a set never run is compared with the newest of the stage."""
    project.write("experiments/one.py", ONE_READ)
    # (tag: read by no stage, it makes each set's values, so its hash, its own)
    project.write("params/ac.yaml", "- name: a\n  x: 1\n  tag: a\n- name: c\n  x: 1\n  tag: c\n")
    project.write("params/b.yaml", "- name: b\n  x: 2\n  tag: b\n")
    assert project.run("one", "params/ac.yaml").executed() == [("fit", "a")]
    assert project.run("one", "params/b.yaml").executed() == [("fit", "b")]
    project.write(
        "params/all.yaml",
        "".join(f"- name: {n}\n  x: {x}\n  tag: {n}\n" for n, x in zip("abcd", (1, 1, 3, 4))),
    )
    calls = {c["record"]: c for c in why_json(cli, "one", "params/all.yaml", "fit")}
    assert list(calls) == ["a", "b", "c", "d"]
    a, b, c, d = (calls[k] for k in "abcd")
    assert (a["plan"], a["closest"]["chosen"], a["differences"]) == ("cached", "serves it", [])
    # b now reads x 1: a's entry serves it.
    assert (b["plan"], b["reason"]) == ("cached", "shared with set 'a' (reads x)")
    assert (b["closest"]["record"], b["differences"]) == ("a", [])
    # c: the entry it used before (a's), though b's is newer.
    assert c["reason"] == "parameters changed (x: 1 -> 3)"
    assert c["closest"]["record"] == "a"
    assert c["closest"]["chosen"] == "same computation under other parameter values"
    assert c["differences"] == [{"part": "params", "path": "x", "old": 1, "new": 3}]
    # d never ran (it may share c's call, planned to run): the newest entry of the stage
    # (b's), by what it read.
    assert (d["plan"], d["reason"]) == (
        "maybe",
        "shared with set 'c' if they read the same values; else not computed yet",
    )
    assert d["closest"]["record"] == "b"
    assert d["differences"] == [{"part": "params", "path": "x", "old": 2, "new": 4}]
    # -p picks sets; the plan still covers them all (c is compared as above).
    (only,) = why_json(cli, "one", "params/all.yaml", "fit", "-p", "c")
    assert only == c


def test_why_json_shape(pipe, cli):
    calls = why_json(cli, "pipe", "params/p.yaml", "grand")
    (call,) = calls
    assert set(call) == {
        "stage",
        "record",
        "plan",
        "reason",
        "changed",
        "key",
        "parts",
        "closest",
        "differences",
    }
    assert set(call["parts"]) == {
        "experiment",
        "stage",
        "code",
        "cachers",
        "outputs",
        "kwargs",
        "files",
        "inputs",
        "params",
    }
    assert (call["record"], call["plan"], call["closest"]["chosen"]) == (
        "aggregate",
        "cached",
        "serves it",
    )
    assert call["parts"]["params"]["own"] is False
    assert call["parts"]["cachers"] == ["curifactory_cli.caching.JsonCacher"]
    # A cached stage's input data is known, with where it comes from.
    (total,) = why_json(cli, "pipe", "params/p.yaml", "total", "-p", "a")
    assert total["parts"]["inputs"]["scaled"]["from"] == "scale [a]"
    assert len(total["parts"]["inputs"]["scaled"]["version"]) == 64


def test_why_a_stage_never_computed_has_no_closest_entry(project, cli):
    project.write("experiments/one.py", ONE_READ)
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    result = cli("why", "one", "params/p.yaml", "fit")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "fit [a]: run: not computed yet"
    assert "  closest      no entry of this stage in the cache" in result.stdout
    assert "not known until it runs" in result.stdout
    assert not project.cache.exists() or not list(project.cache.rglob("meta.json"))


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (
            ["scael"],
            "error: the experiment has no stage 'scael'",
            "hint: did you mean 'scale'? known stages: load, scale, describe, total, grand.",
        ),
        (
            ["scale", "-p", "c"],
            "error: no call of 'scale' has the parameter set 'c'",
            "hint: known parameter sets of 'scale': a, b.",
        ),
    ],
)
def test_why_bad_names_say_the_known_ones(pipe, cli, args, message, hint):
    result = cli("why", "pipe", "params/p.yaml", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [message, hint]
    assert "Traceback" not in result.output
