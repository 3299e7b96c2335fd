"""Metrics a stage records (`record.metric`, `record.metrics`, `MetricReporter`): kept with
the call's cache entry (a file listed and checksummed in its metadata) and in the run
registry per stage call, so a cached run, a run in worker processes and a run on a remote
cache have the metrics of the run that computed them. A value that is not a number is a
usage error naming the metric and the stage."""

from __future__ import annotations

import json
import math
import uuid

import pytest

from curifactory_cli.errors import ExitCode, MetricError
from curifactory_cli.metrics import METRICS_FILE, metric_value
from curifactory_cli.registry.database import RunRegistry, registry_path

EXPERIMENT = '''
"""Metrics test subject."""
import curifactory_cli as cf
import numpy as np
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import MetricReporter


@cf.stage(outputs=["fit"], cachers=[JsonCacher])
def fit(record):
    p = record.params
    record.metric("error", p.lr * 2)
    record.metrics({"converged": np.bool_(p.lr < 0.5), "steps": np.int64(p.steps)})
    if p.name == "large":  # `small`: an entry of checksummed output files and metrics only
        record.report(MetricReporter())
    if p.get("bad") is not None:
        record.metric("broken", p.bad)
    return {"lr": p.lr}


@cf.stage(inputs=["fit"], outputs=["score"])
def score(record, fit):
    record.metric("score", np.float64(fit["lr"] + 1))
    return fit["lr"] + 1


@cf.aggregate(inputs=["fit"], outputs=["best"], cachers=[JsonCacher])
def best(record, records, fit):
    record.report(MetricReporter({"n_sets": len(fit), "nan_metric": float("nan")}))
    return min(f["lr"] for f in fit.values())


def run(param_sets, manager):
    for p in param_sets:
        score(fit(cf.Record(manager, p)))
    best(cf.Record(manager, None))
'''

PARAMS = """
- name: small
  lr: 0.1
  steps: 10
- name: large
  lr: 0.7
  steps: 20
"""

EXPECTED = {
    ("fit", "small"): {"error": 0.2, "converged": True, "steps": 10},
    ("fit", "large"): {"error": 1.4, "converged": False, "steps": 20},
    ("score", "small"): {"score": 1.1},
    ("score", "large"): {"score": 1.7},
}


def setup(project, params: str = PARAMS) -> None:
    project.write("experiments/measured.py", EXPERIMENT)
    project.write("params/p.yaml", params)


def recorded(project, reference: str) -> dict[tuple[str, str], dict]:
    run = RunRegistry(registry_path(project.root), read_only=True).get_run(reference)
    assert run.stages is not None
    return {(s.stage, s.record): s.metrics for s in run.stages if s.metrics}


def check(found: dict) -> None:
    """The expected metrics with their kinds (a bool stays a bool, an int an int), and the
    aggregate's NaN kept as NaN."""
    aggregate = found.pop(("best", "aggregate"))
    assert aggregate["n_sets"] == 2 and math.isnan(aggregate["nan_metric"])
    assert set(found) == set(EXPECTED)
    for call, metrics in EXPECTED.items():
        assert found[call] == pytest.approx(metrics)
        for name, value in metrics.items():
            assert type(found[call][name]) is type(value), (call, name)


def node_metrics(result) -> dict[tuple[str, str], dict]:
    return {(n.stage.name, n.record_name): n.metrics for n in result.graph.nodes if n.metrics}


def test_metrics_are_kept_with_the_entry_and_in_the_registry(project):
    setup(project)
    result = project.run("measured", "p")
    assert result.ok, result.error
    check(recorded(project, result.run_id))
    # The entry of a cached call lists the metrics file with its checksum, as its other files.
    (fit_small,) = [
        n for n in result.graph.nodes if n.stage.name == "fit" and n.record_name == "small"
    ]
    meta = json.loads((project.root / fit_small.entry_dir / "meta.json").read_text())
    listed = [f for f in meta["extra_files"] if f["path"] == METRICS_FILE]
    assert len(listed) == 1 and listed[0]["sha256"]
    kept = json.loads((project.root / fit_small.entry_dir / METRICS_FILE).read_text())
    assert kept == {"converged": True, "error": 0.2, "steps": 10}


def test_a_cached_run_has_the_metrics_of_the_run_that_computed_them(project):
    setup(project)
    first = project.run("measured", "p")
    assert first.ok, first.error
    again = project.run("measured", "p")
    assert again.ok, again.error
    # The stage without cachers runs again; every stage with cachers is reused.
    assert {n.stage.name for n in again.graph.nodes if n.outcome.value == "executed"} == {"score"}
    check(recorded(project, again.run_id))
    assert node_metrics(again).keys() == node_metrics(first).keys()


def test_metrics_of_calls_run_in_worker_processes(project):
    setup(project)
    result = project.run("measured", "p", workers=2)
    assert result.ok, result.error
    check(recorded(project, result.run_id))


@pytest.mark.parametrize("where", ["memory", "s3"])
def test_metrics_from_a_remote_cache(tmp_path, request, where):
    """A project that reuses entries another computed, from a store at a URL, records the
    same metrics (read from the entries it reused)."""
    from conftest import Project

    if where == "s3":
        pytest.importorskip("s3fs")
        cache = request.getfixturevalue("bucket")
    else:
        cache = f"memory://curi-{uuid.uuid4().hex}"
    first = Project(tmp_path / "alice")
    setup(first)
    made = first.run("measured", "p", cache_dir=cache)
    assert made.ok, made.error
    other = Project(tmp_path / "bob")
    setup(other)
    reused = other.run("measured", "p", cache_dir=cache)
    assert reused.ok, reused.error
    assert [n.stage.name for n in reused.graph.nodes if n.outcome.value == "executed"] == [
        "score",
        "score",
    ]
    check(recorded(other, reused.run_id))


def test_a_metric_reporter_shows_the_calls_metrics_in_the_report(project):
    setup(project)
    result = project.run("measured", "p")
    assert result.ok, result.error
    html = result.report.read_text()
    assert '<table class="metrics">' in html
    assert "<th>steps</th><td>20</td>" in html and "<th>nan_metric</th><td>nan</td>" in html
    assert "<th>steps</th><td>10</td>" not in html  # `small` reported none


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("'high'", "metric 'broken' in stage 'fit' (parameter set 'small') is a str ('high')"),
        ("[1, 2]", "metric 'broken' in stage 'fit' (parameter set 'small') is a list"),
    ],
)
def test_a_metric_that_is_not_a_number_is_a_usage_error(project, cli, bad, said):
    setup(project, "- name: small\n  lr: 0.1\n  steps: 1\n  bad: " + bad + "\n")
    out = cli("run", "measured", "p")
    assert out.exit_code == ExitCode.USAGE == 2, out.output
    assert said in out.output and "not a number" in out.output
    assert "Traceback" not in out.output


def test_metric_values_and_names_checked():
    import numpy as np

    where = "stage 'fit' (parameter set 'a')"
    assert metric_value("a", np.float32(0.5), where) == ("a", 0.5)
    assert type(metric_value("a", np.int32(3), where)[1]) is int
    assert metric_value("a", np.bool_(True), where)[1] is True
    assert math.isinf(metric_value("a", float("inf"), where)[1])
    for name, value in [("", 1), ("a\nb", 1), (3, 1), ("a", np.ones(2)), ("a", None)]:
        with pytest.raises(MetricError) as caught:
            metric_value(name, value, where)
        assert where in caught.value.message
    with pytest.raises(MetricError, match="too large"):
        metric_value("a", 2**70, where)


def test_a_metric_recorded_outside_a_stage_is_a_usage_error(project, cli):
    project.write(
        "experiments/early.py",
        """
        import curifactory_cli as cf

        @cf.stage(outputs=["x"])
        def make(record):
            return 1

        def run(param_sets, manager):
            for p in param_sets:
                r = cf.Record(manager, p)
                r.metric("acc", 1.0)
                make(r)
        """,
    )
    project.write("params/one.yaml", "- name: a\n  v: 1\n")
    out = cli("run", "early", "one", "--no-report")
    assert out.exit_code == 2, out.output
    assert "record.metric('acc') outside a stage (parameter set 'a')" in out.output
