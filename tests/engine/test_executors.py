"""Where stage calls run: executors by name, and a JobRunner class of the user's own named by
its dotted path (`--executor mypkg.runners:Recording`), with the same cache and outcomes."""

from __future__ import annotations

import json

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher])
def make(record):
    return record.params.n


@cf.stage(inputs=["x"], outputs=["y"], cachers=[JsonCacher])
def double(record, x):
    return 2 * x


def run(param_sets, manager):
    for p in param_sets:
        double(make(cf.Record(manager, p)))
"""

RUNNER = """
from curifactory_cli.engine.runners import InlineRunner


class Recording(InlineRunner):
    \"\"\"Runs each job it is given in this process, as a worker would (from the job alone),
    and notes it.\"\"\"

    inline = False  # an inline runner's jobs are run by the scheduler itself

    def __init__(self, workers, context):
        super().__init__()
        self.capacity = workers
        self.noted = open("submitted.txt", "a")

    def submit(self, job, record, fn=None):
        self.noted.write(f"{job.stage_ref} {self.capacity}\\n")
        self.noted.flush()
        super().submit(job, record, fn)

    def close(self, cancel=False):
        self.noted.close()
"""


def setup(project) -> None:
    project.write("experiments/ex.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    project.write("myrunners.py", RUNNER)


def test_a_runner_class_named_by_its_path_runs_the_stage_calls(project, cli):
    setup(project)
    result = cli("run", "ex", "params/p.yaml", "--executor", "myrunners:Recording", "-j", "3")
    assert result.exit_code == 0, result.output
    noted = (project.root / "submitted.txt").read_text().splitlines()
    calls = ["experiments.ex:make 3", "experiments.ex:double 3"]
    assert sorted(noted) == sorted(calls * 2)
    # Its results are the cache's like any other runner's: a local run reuses them all.
    again = json.loads(cli("run", "ex", "params/p.yaml", "--json").stdout)
    assert again["counts"]["cached"] == 4 and again["counts"]["executed"] == 0


def test_a_runner_class_in_the_project_settings(project, cli):
    setup(project)
    project.write("curi.toml", 'executor = "myrunners.Recording"\n')
    result = cli("run", "ex", "params/p.yaml")
    assert result.exit_code == 0, result.output
    assert len((project.root / "submitted.txt").read_text().splitlines()) == 4


def test_a_runner_path_that_names_nothing_usable_is_a_clear_error(project, cli):
    setup(project)
    project.write("notrunners.py", "class Plain:\n    pass\n")
    cases = {
        "nosuchmodule:Runner": "cannot import 'nosuchmodule'",
        "myrunners:Missing": "myrunners.Missing is no such class",
        "notrunners:Plain": "notrunners.Plain is not a JobRunner (no submit, wait, progress",
    }
    for name, message in cases.items():
        result = cli("run", "ex", "params/p.yaml", "--executor", name)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
    # Nothing ran, nothing was cached.
    assert project.entries() == []


def test_an_unknown_executor_name_in_the_settings_says_what_is_accepted(project, cli):
    setup(project)
    project.write("curi.toml", 'executor = "spark"\n')
    result = cli("run", "ex", "params/p.yaml")
    assert result.exit_code == 2
    assert "local, dask, slurm, pbs, lsf, sge, or a JobRunner class as module:Class" in " ".join(
        result.output.split()
    )
