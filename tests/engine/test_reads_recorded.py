"""What a stage call read of its parameter set, as its cache entry records it: each path read
with the digest of its value, or the whole set; seen through `cache inspect`, carried back
from worker processes, and never changing what the stage itself sees."""

from __future__ import annotations

import json

import pytest

from curifactory_cli.graph import Outcome
from curifactory_cli.parameters.reads import first_difference
from curifactory_cli.params import Params

EXPERIMENT = """
import copy
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["a"], cachers=[JsonCacher])
def some(record):
    p = record.params
    return [p.lr, p["seed"], p.model.depth]

@cf.stage(outputs=["b"], cachers=[JsonCacher])
def whole(record):
    how = record.params.how
    p = record.params
    if how == "dict":
        return sorted(p.to_dict())
    if how == "repr":
        return repr(p)[:5]
    if how == "hash":
        return record.get_hash()[:4]
    if how == "copy":
        return copy.copy(p).lr
    if how == "make_copy":
        return record.make_copy().params.lr
    return "none"

@cf.stage(outputs=["c"], cachers=[JsonCacher])
def nothing(record):
    return 1

def run(param_sets, manager):
    for p in param_sets:
        r = cf.Record(manager, p)
        some(r)
        whole(r)
        nothing(r)
        # Outside its stage calls, the record holds the set itself, not a view.
        assert type(r.params) is type(p), type(r.params)
"""

PARAMS = """
- name: x
  lr: 0.1
  seed: 1
  how: dict
  unused: 5
  model: {depth: 3, width: 8}
- name: y
  lr: 0.1
  seed: 1
  how: repr
  unused: 6
  model: {depth: 3, width: 9}
- name: z
  lr: 0.1
  seed: 1
  how: hash
  unused: 7
  model: {depth: 3, width: 9}
- name: w
  lr: 0.1
  seed: 1
  how: copy
  unused: 7
  model: {depth: 3, width: 9}
- name: v
  lr: 0.1
  seed: 1
  how: make_copy
  unused: 7
  model: {depth: 3, width: 9}
"""


def metas(project) -> dict[tuple[str, str], dict]:
    out = {}
    for folder in project.entries():
        meta = json.loads((folder / "meta.json").read_text())
        out[(meta["stage"], meta["record"])] = meta
    return out


@pytest.mark.usefixtures("job_runner")
def test_an_entry_records_each_path_its_call_read(project):
    project.write("experiments/r.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    result = project.run("r", "params/p.yaml")
    assert result.ok, result.error
    found = metas(project)
    reads = found[("some", "x")]["reads"]
    assert reads["everything"] is False
    assert [path for path, _ in reads["items"]] == ["lr", "model", "model.depth", "seed"]
    # The digests are those of the values read: the same for a set that agrees on them,
    # another for a set that does not (named by the first path that differs).
    x = Params("x", {"lr": 0.1, "seed": 1, "model": {"depth": 3, "width": 1}, "unused": 0})
    assert first_difference(x, reads["items"]) is None
    other = Params("x", {"lr": 0.2, "seed": 1, "model": {"depth": 3}})
    assert first_difference(other, reads["items"]) == "lr"
    deeper = Params("x", {"lr": 0.1, "seed": 1, "model": {"depth": 4}})
    assert first_difference(deeper, reads["items"]) == "model.depth"
    assert found[("nothing", "x")]["reads"] == {"everything": False, "items": []}


@pytest.mark.parametrize("record", ["x", "y", "z", "w", "v"])
def test_taking_the_whole_set_reads_everything(project, record):
    """p.to_dict(), repr(p), record.get_hash(), copy.copy(p), record.make_copy(): each
    gives the stage something made from every field."""
    project.write("experiments/r.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert project.run("r", "params/p.yaml", names=(record,)).ok
    reads = metas(project)[("whole", record)]["reads"]
    assert reads["everything"] is True
    assert "" in [path for path, _ in reads["items"]]  # the whole set's own digest


DATACLASS_EXPERIMENT = """
from dataclasses import dataclass, field
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.params import ExperimentParameters

@dataclass
class Model:
    depth: int = 3
    width: int = 8

@dataclass
class Args(ExperimentParameters):
    lr: float = 0.1
    model: Model = field(default_factory=Model)

@cf.stage(outputs=["a"], cachers=[JsonCacher])
def fit(record):
    p = record.params
    assert isinstance(p, Args) and isinstance(p.model, Model)
    return [p.lr * 2, p.model.depth]

@cf.stage(outputs=["b"], cachers=[JsonCacher])
def fails(record):
    record.params.lr
    raise ValueError("no")

def run(param_sets, manager):
    for p in param_sets:
        r = cf.Record(manager, p)
        fit(r)
        try:
            fails(r)
        finally:
            assert r.params is p
"""


def test_a_dataclass_set_is_seen_as_itself_and_its_reads_recorded(project):
    project.write("experiments/d.py", DATACLASS_EXPERIMENT)
    project.write(
        "params/d.py",
        """
        from experiments.d import Args
        def get_params():
            return [Args(name="a", lr=0.5)]
        """,
    )
    result = project.run("d", "params/d.py")
    assert result.error is not None and result.error.stage == "fails"
    outcomes = {n.stage.name: n.outcome for n in result.graph.nodes}
    assert outcomes["fit"] is Outcome.EXECUTED
    reads = metas(project)[("fit", "a")]["reads"]
    assert [path for path, _ in reads["items"]] == ["lr", "model", "model.depth"]
    assert reads["everything"] is False


def test_cache_inspect_says_what_the_call_read(project, cli):
    project.write("experiments/r.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert project.run("r", "params/p.yaml", names=("x",)).ok
    listed = json.loads(cli("cache", "ls", "--json").stdout)["entries"]
    ids = {e["stage"]: e["id"] for e in listed}
    shown = cli("cache", "inspect", ids["some"])
    assert shown.exit_code == 0, shown.stdout
    assert "reads    lr, model, model.depth, seed (of its parameters)" in shown.stdout
    assert "whole parameter set" in cli("cache", "inspect", ids["whole"]).stdout
    assert "none of its parameters" in cli("cache", "inspect", ids["nothing"]).stdout
    data = json.loads(cli("cache", "inspect", ids["some"], "--json").stdout)
    read = [path for path, _ in data["params"]["reads"]["items"]]
    assert read == ["lr", "model", "model.depth", "seed"]
