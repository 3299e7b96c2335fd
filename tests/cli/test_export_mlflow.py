"""`curi export mlflow`: each curi run a parent MLflow run, each parameter set a child with its
parameters (flattened), metrics and tags; from the registry alone; twice changes nothing.
Checked against a `file:` tracking store with MLflow's own `search_runs`."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys

import pytest

from curifactory_cli.registry.database import RunRegistry, registry_path

mlflow = pytest.importorskip("mlflow")

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["score"], cachers=[JsonCacher])
def fit(record):
    p = record.params
    score = p.lr * 10 + p.model.depth
    record.metrics({"score": score, "converged": p.lr < 0.5})
    return score

@cf.aggregate(inputs=["score"], outputs=["best"], cachers=[JsonCacher])
def best(record, records, score):
    top = max(score.values())
    record.metric("best", top)
    return top

def run(param_sets, manager):
    for p in param_sets:
        fit(cf.Record(manager, p))
    best(cf.Record(manager, None))
"""

PARAMS = """
- name: small
  lr: 0.1
  model: {depth: 2, kind: tree}
- name: large
  lr: 0.9
  model: {depth: 8, kind: tree}
"""


@pytest.fixture
def store(project, cli, tmp_path, monkeypatch):
    """A project with one run, and a `file:` tracking URI (the command itself allows MLflow's
    file store: the variable starts unset)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "unset below")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    uri = (tmp_path / "mlruns").as_uri()
    return uri


def mlflow_runs(uri: str) -> list:
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["exp"], output_format="list")


def test_a_run_exports_as_a_parent_with_a_child_per_set(store, project, cli):
    out = cli("export", "mlflow", "--tracking-uri", store)
    assert out.exit_code == 0, out.output
    run = RunRegistry(registry_path(project.root), read_only=True).get_run("exp_1")
    assert out.stdout.startswith(f"{run.reference}: MLflow run ")
    assert "in experiment 'exp' (2 sets added)" in out.stdout

    found = mlflow_runs(store)
    (parent,) = [r for r in found if "curi.set" not in r.data.tags]
    children = {r.data.tags["curi.set"]: r for r in found if "curi.set" in r.data.tags}
    assert sorted(children) == ["large", "small"] and len(found) == 3
    assert parent.info.run_name == run.reference and parent.info.status == "FINISHED"
    assert parent.data.tags["curi.run"] == run.reference
    assert parent.data.tags["curi.reproduce"] == run.reproduce
    started = int(dt.datetime.fromisoformat(run.started).timestamp() * 1000)
    assert parent.info.start_time == started
    assert parent.data.metrics == {"best": 17.0}  # the aggregate's, not a set's

    small = children["small"]
    assert small.info.run_name == "small" and small.info.status == "FINISHED"
    assert small.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert small.data.tags["curi.run"] == run.reference
    hashes = {s.name: s.hash for s in run.param_sets}
    assert small.data.tags["curi.set_hash"] == hashes["small"]
    (call,) = [c for c in run.stages if c.record == "small"]
    assert small.data.tags["curi.entries"] == f"fit:{call.key[:10]}"
    # Nested parameters flattened to dotted keys, as parameter files address them.
    assert small.data.params == {"lr": "0.1", "model.depth": "2", "model.kind": "tree"}
    assert small.data.metrics == {"score": 3.0, "converged": 1.0}
    assert children["large"].data.metrics == {"score": 17.0, "converged": 0.0}


def test_exporting_twice_changes_nothing_and_adds_only_what_is_missing(store, project, cli):
    assert cli("export", "mlflow", "--tracking-uri", store).exit_code == 0
    before = {
        r.info.run_id: (r.data.params, r.data.metrics, r.data.tags) for r in mlflow_runs(store)
    }
    again = cli("export", "mlflow", "--tracking-uri", store, "exp_1", "--json")
    assert again.exit_code == 0, again.output
    (done,) = json.loads(again.stdout)["runs"]
    assert done["sets_added"] == 0 and done["sets_present"] == 2 and done["created"] is False
    after = {
        r.info.run_id: (r.data.params, r.data.metrics, r.data.tags) for r in mlflow_runs(store)
    }
    assert after == before
    assert (
        "already exported, nothing changed"
        in cli("export", "mlflow", "--tracking-uri", store).stdout
    )
    # A set whose MLflow run was deleted is added back; the others stay as they were.
    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (small,) = [r for r in mlflow_runs(store) if r.data.tags.get("curi.set") == "small"]
    client.delete_run(small.info.run_id)
    out = cli("export", "mlflow", "--tracking-uri", store)
    assert out.exit_code == 0, out.output
    assert "(1 set added, 1 already there)" in out.stdout
    runs = mlflow_runs(store)
    assert len(runs) == 3 and sum(r.data.tags.get("curi.set") == "small" for r in runs) == 1


def test_a_run_whose_entries_are_gone_exports_from_the_registry(store, project, cli):
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0  # exp_2: all cached
    shutil.rmtree(project.cache)
    out = cli("export", "mlflow", "exp_1", "exp_2", "--tracking-uri", store)
    assert out.exit_code == 0, out.output
    runs = mlflow_runs(store)
    assert len(runs) == 6
    cached = [r for r in runs if r.data.tags["curi.run"].startswith("exp_2_")]
    small = next(r for r in cached if r.data.tags.get("curi.set") == "small")
    assert small.data.metrics == {"score": 3.0, "converged": 1.0}  # a cached call's metrics


def test_the_tracking_uri_comes_from_the_option_or_mlflows_variable(store, cli, monkeypatch):
    out = cli("export", "mlflow")
    assert out.exit_code == 2 and "no MLflow tracking URI given" in out.output
    assert "--tracking-uri" in out.output and "Traceback" not in out.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert cli("export", "mlflow").exit_code == 0
    assert len(mlflow_runs(store)) == 3


def test_bad_references_and_a_missing_mlflow_are_one_clear_message(store, cli, monkeypatch):
    out = cli("export", "mlflow", "nope", "--tracking-uri", store)
    assert out.exit_code == 2 and "no run 'nope' in the run registry" in out.output
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if not installed
    out = cli("export", "mlflow", "--tracking-uri", store)
    assert out.exit_code == 2
    assert "`curi export mlflow` needs MLflow" in out.output
    assert "pip install 'curifactory-cli[mlflow]'" in out.output
