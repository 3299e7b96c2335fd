"""A project written for Curifactory runs with only its import lines changed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("job_runner")

PARAMS_INIT = """
from dataclasses import dataclass, field

import curifactory_cli as cf


@dataclass
class Params(cf.ExperimentParameters):
    n_rows: int = 5
    scale: float = 1.0
    n_workers: int = 1
    hash_representations: dict = cf.set_hash_functions(n_workers=None)
"""

PARAMS_TWO = '''
"""Two sizes of data."""
from params import Params


def get_params():
    return [Params(name="small", n_rows=5), Params(name="big", n_rows=8, scale=2.5)]
'''

EXPERIMENT = '''
"""Curifactory's demo experiment, imports changed."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PandasCsvCacher, PickleCacher, Lazy

from params import Params  # noqa: F401


@cf.stage(inputs=None, outputs=["df"], cachers=[PandasCsvCacher])
def make_df(record):
    import pandas as pd
    n = record.params.n_rows
    return pd.DataFrame({"x": range(n), "y": [i * record.params.scale for i in range(n)]})


@cf.stage(inputs=["df"], outputs=["summary"], cachers=[JsonCacher])
def summarize(record, df):
    return {"rows": len(df), "y_sum": float(df["y"].sum())}


@cf.stage(inputs=["df", "summary"], outputs=[Lazy("blob")], cachers=[PickleCacher])
def make_blob(record, df, summary):
    return {"n": summary["rows"], "values": list(df["y"])}


@cf.aggregate(inputs=["summary", "blob"], outputs=["totals"], cachers=[JsonCacher])
def combine(record, records, summary, blob):
    return {r.params.name: [summary[r]["y_sum"], blob[r]["n"]] for r in records}


def run(param_sets, manager):
    for p in param_sets:
        make_blob(summarize(make_df(cf.Record(manager, p))))
    combine(cf.Record(manager, None))
'''


def write_project(project):
    project.write("params/__init__.py", PARAMS_INIT)
    project.write("params/two.py", PARAMS_TWO)
    project.write("experiments/demo.py", EXPERIMENT)


def test_curifactory_project_runs_and_aggregates_each_records_lazy(project, cli):
    write_project(project)
    result = cli("run", "demo", "two", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "10 executed" not in result.output and "7 executed" in result.output
    again = project.run("demo", "two")
    assert again.executed() == []
    aggregate = again.records[-1]
    # Each record's Lazy blob is its own: small has 5 rows, big has 8.
    assert aggregate.state["totals"] == {"small": [10.0, 5], "big": [70.0, 8]}
    small, big = again.records[0], again.records[1]
    assert small.state["blob"]["n"] == 5 and big.state["blob"]["n"] == 8


def test_hash_representation_none_field_does_not_invalidate(project):
    write_project(project)
    project.run("demo", "two")
    project.write("params/two.py", PARAMS_TWO.replace("n_rows=5)", "n_rows=5, n_workers=4)"))
    assert project.run("demo", "two").executed() == []


def test_code_edit_reruns_the_stage_and_its_dependants_only(project):
    write_project(project)
    project.run("demo", "two")
    project.write(
        "experiments/demo.py",
        EXPERIMENT.replace('float(df["y"].sum())', 'float(df["y"].sum()) * 1000'),
    )
    result = project.run("demo", "two")
    ran = {stage for stage, _ in result.executed()}
    assert ran == {"summarize", "make_blob", "combine"}  # make_df is untouched
    assert result.records[-1].state["totals"]["small"][0] == 10_000.0


def test_overwrite_stage_reaches_downstream_when_outputs_change(project):
    write_project(project)
    project.run("demo", "two")
    # Same code, same params: forcing make_df reproduces identical bytes, nothing else runs.
    result = project.run("demo", "two", overwrite_stages=("make_df",))
    assert sorted(result.executed()) == [("make_df", "big"), ("make_df", "small")]


def test_record_output_is_the_last_stage_value_after_the_run(project):
    write_project(project)
    result = project.run("demo", "two")
    small = result.records[0]
    blob = small.output  # make_blob's single Lazy output: a handle, as in Curifactory
    assert blob.load()["n"] == 5
    again = project.run("demo", "two")
    assert again.records[0].output.load()["n"] == 5


TWO_CLASSES = """
from dataclasses import dataclass
import curifactory_cli as cf

@dataclass
class Small(cf.ExperimentParameters):
    n: int = 1

@dataclass
class Large(cf.ExperimentParameters):
    n: int = 100
    width: int = 3

PARAMS_CLASS = Large

@cf.stage(outputs=["w"])
def show(record):
    return record.params.width * record.params.n

def run(param_sets, manager):
    for p in param_sets:
        show(cf.Record(manager, p))
"""


def test_params_class_chooses_among_several(project):
    project.write("experiments/two.py", TWO_CLASSES)
    project.write("params/p.yaml", "- name: a\n  width: 2\n")
    result = project.run("two", "params/p.yaml")
    assert result.ok and result.records[0].state["w"] == 200
    assert type(result.records[0].params).__name__ == "Large"
