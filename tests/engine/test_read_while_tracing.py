"""run() may read an output while it is traced: `curi run` settles just what that output needs,
then goes on tracing (Curifactory's DAG mode calls run() twice instead)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("job_runner")

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


def log(stage, record):
    with open("exec.log", "a") as out:
        out.write(f"{stage} {record.params.name}\\n")


@cf.stage(inputs=None, outputs=["fit"], cachers=[JsonCacher])
def fit(record):
    log("fit", record)
    if record.params.n < 0:
        raise ValueError("cannot fit a negative n")
    return {"score": record.params.n % 3}


@cf.stage(inputs=None, outputs=["side"], cachers=[JsonCacher])
def side(record):
    log("side", record)
    return 1


@cf.stage(inputs=["fit"], outputs=["best"], cachers=[JsonCacher])
def crown(record, fit):
    log("crown", record)
    return {"best": record.params.name, **fit}


def run(param_sets, manager):
    side(cf.Record(manager, param_sets[0]))  # traced first, not needed by the read below
    records = [fit(cf.Record(manager, p)) for p in param_sets]
    # Reading values while tracing: which record gets the next stage depends on them.
    best = max(records, key=lambda r: r.state["fit"]["score"])
    crown(best)
    return best.params.name
"""


@pytest.fixture
def reads(project):
    project.write("experiments/pick.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 5\n- name: c\n  n: 3\n")
    return project


def executed(project) -> list[str]:
    log = project.root / "exec.log"
    return log.read_text().splitlines() if log.exists() else []


def test_reading_an_output_while_tracing_settles_just_what_it_needs(reads, cli):
    result = cli("run", "pick", "p", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"] == {"executed": 5, "cached": 0, "skipped": 0, "failed": 0}
    ran = executed(reads)
    # The three fits ran while run() was traced; `side`, traced before the read but not
    # needed by it, ran after tracing, with the stage traced after the read.
    assert sorted(ran[:3]) == ["fit a", "fit b", "fit c"]
    assert sorted(ran[3:]) == ["crown b", "side a"]
    best = [n for n in out["nodes"] if n["stage"] == "crown"]
    assert [n["record"] for n in best] == ["b"]  # n=5: score 2

    again = json.loads(cli("run", "pick", "p", "--json").stdout)
    assert again["counts"] == {"executed": 0, "cached": 5, "skipped": 0, "failed": 0}
    assert executed(reads) == ran  # nothing ran twice
    report = (reads.root / "reports" / again["run_id"] / "index.html").read_text()
    assert report.count('class="node cached') == 5


def test_a_stage_that_fails_while_tracing_fails_the_run(reads, cli):
    reads.write("params/bad.yaml", "- name: a\n  n: 1\n- name: z\n  n: -1\n")
    result = cli("run", "pick", "bad", "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["error"] and "cannot fit a negative n" in out["error"]["message"]
    runs = cli("runs", "ls", "--json")
    (run,) = json.loads(runs.stdout)["runs"]
    assert run["status"] == "error" and run["failed_stage"] == "fit"
    assert "side a" not in executed(reads)  # the run stopped where run() failed


def test_plan_says_it_cannot_see_past_a_read(reads, cli):
    result = cli("plan", "pick", "p")
    assert result.exit_code == 2, result.output
    assert "run() reads an output of fit [a] while it is traced" in " ".join(result.output.split())
    assert not executed(reads)
