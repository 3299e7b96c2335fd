"""The run registry as `curi run` fills it, full stores and reproduction, and interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from curifactory_cli.registry.database import RunRegistry, registry_path
from curifactory_cli.registry.records import ParamSetRecord, RunRecord

EXPERIMENT = """
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["x"], cachers=[JsonCacher])
def first(record):
    return record.params.n

@cf.stage(inputs=["x"], outputs=["y"], cachers=[JsonCacher])
def second(record, x):
    if record.params.get("fail"):
        raise ValueError("boom")
    time.sleep(record.params.get("sleep", 0))
    return x * 2

def run(param_sets, manager):
    for p in param_sets:
        second(first(cf.Record(manager, p)))
"""


def setup(project, params="- name: a\n  n: 1\n- name: b\n  n: 2\n"):
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", params)


def registry(project):
    return RunRegistry(registry_path(project.root), read_only=True)


def test_runs_are_numbered_and_record_outcomes(project, cli):
    setup(project)
    assert cli("run", "exp", "p", "-q", "--notes", "baseline").exit_code == 0
    assert cli("run", "exp", "p", "-q").exit_code == 0
    runs = registry(project).list_runs()
    assert [r.number for r in runs] == [2, 1]
    first = registry(project).get_run(runs[1].reference)
    assert first.status == "complete" and first.notes == "baseline"
    assert first.counts == {"executed": 4, "cached": 0, "skipped": 0, "failed": 0}
    assert runs[0].counts["cached"] == 4
    assert [s.stage for s in first.stages] == ["first", "second", "first", "second"]
    assert first.param_files[0].path.endswith("p.yaml")
    assert first.reproduce.startswith("curi run exp p")


def test_cached_entries_name_the_run_that_made_them(project):
    setup(project)
    made = project.run("exp", "p")
    again = project.run("exp", "p")
    meta = json.loads((project.entries()[0] / "meta.json").read_text())
    assert meta["run"]["id"] == made.run_id != again.run_id


def test_failed_run_is_recorded_as_error_with_the_stage(project, cli):
    setup(project, "- name: a\n  n: 1\n  fail: true\n")
    result = cli("run", "exp", "p", "-q")
    assert result.exit_code == 1
    run = registry(project).list_runs()[0]
    assert run.status == "error" and run.failed_stage == "second"
    assert run.failed_record == "a" and "boom" in run.error


def test_setup_errors_and_dry_runs_record_nothing(project, cli):
    setup(project)
    assert cli("run", "exp", "nope").exit_code == 2
    assert cli("run", "exp", "p", "--dry", "-q").exit_code == 0
    assert not registry_path(project.root).exists()


# What `curi runs show --json` and `curi runs ls --json` give for a run, key by key, in order.
RUN_KEYS = [
    "reference",
    "experiment",
    "number",
    "status",
    "started",
    "finished",
    "duration_s",
    "command",
    "param_files",
    "param_sets",
    "git",
    "host",
    "versions",
    "notes",
    "doc",
    "reproduce",
    "cache_dir",
    "dry",
    "counts",
    "error",
    "failed_stage",
    "failed_record",
]
STAGE_KEYS = [
    "stage",
    "record",
    "outcome",
    "reason",
    "seconds",
    "key",
    "entry",
    "inputs",
    "aggregate",
]


def test_runs_json_gives_every_field_of_a_run_in_its_order(project, cli):
    setup(project, "- name: a\n  n: 1\n  model: {kind: rf}\n")
    assert cli("run", "exp", "p", "-q", "--notes", "why").exit_code == 0
    shown = json.loads(cli("runs", "show", "--json").stdout)
    # A run shows its stages' code fingerprints (a listing does not read them).
    assert list(shown) == [*RUN_KEYS, "code", "stages", "log"]
    assert list(shown["code"]) == ["first", "second"]
    assert (
        list(shown["code"]["second"]) == ["second"] and len(shown["code"]["second"]["second"]) == 64
    )
    assert shown["number"] == 1 and shown["status"] == "complete" and shown["notes"] == "why"
    assert shown["reproduce"] == "curi run exp p --quiet" and shown["dry"] is False
    assert shown["error"] is None and shown["failed_stage"] is None and shown["log"] is None
    assert shown["cache_dir"] == str(project.cache) and shown["doc"] is None
    assert shown["command"][1:] == ["run", "exp", "p", "--notes", "why", "--quiet"]
    assert shown["counts"] == {"cached": 0, "executed": 2, "failed": 0, "skipped": 0}
    assert list(shown["counts"]) == ["cached", "executed", "failed", "skipped"]  # as stored
    (params,) = shown["param_sets"]
    assert list(params) == ["hash", "name", "source", "values"]
    assert params["name"] == "a" and params["source"].endswith("p.yaml")
    assert params["values"] == {"model": {"kind": "rf"}, "n": 1}
    assert shown["param_files"] == [
        {"path": params["source"], "sets": [{"hash": params["hash"], "name": "a"}]}
    ]
    assert list(shown["git"]) == ["commit", "dirty"]
    assert list(shown["host"]) == ["host", "pid", "platform"]
    assert shown["versions"]["curifactory_cli"] and shown["versions"]["python"]
    first, second = shown["stages"]
    # The calls with cachers keep the data version (a checksum of the files) of each output.
    assert list(first) == list(second) == [*STAGE_KEYS, "outputs"]
    assert list(first["outputs"]) == ["x"] and list(second["outputs"]) == ["y"]
    assert [first[k] for k in ("stage", "record", "outcome", "inputs", "aggregate")] == [
        "first",
        "a",
        "executed",
        [],
        False,
    ]
    assert second["stage"] == "second" and second["inputs"] == [0] and second["reason"]
    assert second["entry"].startswith("exp/") and len(second["key"]) == 64

    listed = json.loads(cli("runs", "ls", "--json").stdout)
    assert list(listed) == ["registry", "runs"]
    (run,) = listed["runs"]
    assert list(run) == [*RUN_KEYS, "code"]  # no stages in a listing
    assert run == {k: v for k, v in shown.items() if k not in ("stages", "log")}

    # A run kept with --store-full: its folder before the log, its record in run.json.
    assert cli("run", "exp", "p", "-q", "--store-full").exit_code == 0
    stored = json.loads(cli("runs", "show", "--json").stdout)
    assert list(stored) == [*RUN_KEYS, "code", "stages", "full_store", "log"]
    folder = project.root / "data" / "runs" / stored["reference"]
    assert stored["full_store"] == str(folder)
    assert stored["reproduce"] == f"curi runs reproduce {stored['reference']}"
    kept = json.loads((folder / "run.json").read_text())
    assert list(kept) == [*RUN_KEYS, "code", "stages", "stored"]
    assert kept["stages"] == stored["stages"] and kept["reproduce"] == stored["reproduce"]


def test_store_full_then_reproduce_executes_nothing_and_writes_nothing(project, cli):
    setup(project)
    result = cli("run", "exp", "p", "--store-full", "--no-progress")
    assert result.exit_code == 0, result.output
    (folder,) = (project.root / "data" / "runs").iterdir()
    names = {p.name for p in folder.iterdir()}
    assert {
        "artifacts",
        "run.json",
        "run.log",
        "requirements.txt",
        "platform.txt",
        "reproduce",
    } <= names
    stored = json.loads((folder / "run.json").read_text())
    assert stored["status"] == "complete"
    assert stored["reproduce"] == f"curi runs reproduce {folder.name}"
    assert len(list((folder / "artifacts").rglob("meta.json"))) == 4
    before = {p: p.stat().st_mtime_ns for p in (folder / "artifacts").rglob("*")}
    import shutil

    shutil.rmtree(project.cache)  # the stored run alone must be enough
    args = stored["reproduce"].split()[1:]  # drop "curi"
    again = cli(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["executed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (folder / "artifacts").rglob("*")} == before
    assert not project.cache.exists()


@pytest.mark.parametrize(
    ("sig", "code", "says"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_or_sigterm_records_interrupted_and_leaves_no_partial_entry(
    project, sig, code, says
):
    setup(project, "- name: a\n  n: 1\n  sleep: 30\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "curifactory_cli", "run", "exp", "p", "--no-progress"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    while time.time() < deadline:  # wait until the slow stage is running
        runs = registry(project).list_runs() if registry_path(project.root).exists() else []
        if runs and list(project.cache.glob("exp/*/first-*/meta.json")):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and says in err
    assert registry(project).list_runs()[0].status == "interrupted"
    assert not any((project.cache / ".staging").glob("*"))  # the half-done stage was cleaned up
    assert not list(project.cache.glob("exp/*/second-*"))


SCRIPT = """
from curifactory_cli.run.runner import RunOptions, run_experiment

result = run_experiment(
    RunOptions(experiment="exp", params=("params/p.yaml",), names=("b",), overrides=("n=5",))
)
assert result.ok
"""

NOTEBOOK = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["x"], cachers=[JsonCacher])
def first(record):
    return record.params.n


class Params(cf.ExperimentParameters):
    n: int = 3


manager = cf.ArtifactManager("scripted")
first(cf.Record(manager, Params(name="a")))
"""


def run_script(project, name: str, text: str) -> None:
    project.write(name, text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project.root), *sys.path]))
    done = subprocess.run(
        [sys.executable, name], cwd=project.root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_run_from_a_script_records_its_command_and_the_curi_line_that_repeats_it(project, cli):
    setup(project)
    run_script(project, "sweep.py", SCRIPT)
    shown = json.loads(cli("runs", "show", "exp_1", "--json").stdout)
    assert shown["command"] == [sys.executable, "sweep.py"]
    assert shown["reproduce"] == "curi run exp params/p.yaml --names b --set n=5"
    listing = cli("runs", "ls").stdout
    assert "python" in listing and "sweep.py" in listing and "curi sweep.py" not in listing
    # The line does the same run: everything it computes is already cached.
    again = cli(*shown["reproduce"].split()[1:], "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["counts"]["executed"] == 0 and data["counts"]["cached"] == 2


def test_a_scripted_session_records_the_script_as_its_command(project, cli):
    run_script(project, "nb.py", NOTEBOOK)
    [run] = json.loads(cli("runs", "ls", "--json").stdout)["runs"]
    shown = json.loads(cli("runs", "show", run["reference"], "--json").stdout)
    assert shown["command"] == [sys.executable, "nb.py"]
    assert shown["reproduce"] == f"{sys.executable} nb.py"


# ------------------------------------------------------------- runs show / runs ls --param
NESTED = """
- name: a
  n: 1
  model: {kind: rf, depth: 3}
- name: b
  n: 2
  model: {kind: svm, depth: 3}
"""


def two_runs(project, cli) -> list[str]:
    setup(project, NESTED)
    assert cli("run", "exp", "p", "-q").exit_code == 0
    assert cli("run", "exp", "p", "-q", "--set", "n=5").exit_code == 0
    return [r.reference for r in registry(project).list_runs()]  # newest first


def test_runs_show_without_a_reference_shows_the_newest_run_with_its_values(project, cli):
    newest, oldest = two_runs(project, cli)
    result = cli("runs", "show")
    assert result.exit_code == 0, result.output
    assert newest in result.output and oldest not in result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "param sets (params/p.yaml)" in lines
    assert "set hash model.depth model.kind n" in lines, "\n".join(lines)
    hashes = {p.name: p.hash[:10] for p in registry(project).get_run(newest).param_sets}
    assert f"a {hashes['a']} 3 rf 5" in lines and f"b {hashes['b']} 3 svm 5" in lines


def test_runs_show_without_a_reference_and_no_runs_says_so(project, cli):
    result = cli("runs", "show")
    assert result.exit_code == 2 and "no runs recorded yet" in result.output


def test_runs_ls_param_keeps_the_runs_with_a_set_having_every_value(project, cli):
    newest, oldest = two_runs(project, cli)

    def listed(*conditions: str) -> list[str]:
        words = [w for c in conditions for w in ("--param", c)]
        result = cli("runs", "ls", *words, "--json")
        assert result.exit_code == 0, result.output
        return [r["reference"] for r in json.loads(result.stdout)["runs"]]

    assert listed("n=5") == [newest]
    assert listed("n=1.0") == [oldest]  # read as --set reads it: 1.0 is the number 1
    assert listed("model.kind=svm") == [newest, oldest]  # a nested parameter, dotted
    assert listed("model.kind=rf", "n=1") == [oldest]
    # Several conditions hold for one set: run 1 has an svm set and a set with n=1, not both.
    assert listed("model.kind=svm", "n=1") == []
    assert listed("model.depth=3", "n=2") == [oldest]
    text = cli("runs", "ls", "--param", "model.kind=rf", "--param", "n=5")
    assert text.exit_code == 0 and newest in text.stdout and oldest not in text.stdout
    typo = cli("runs", "ls", "--param", "model.knd=rf")
    assert typo.stdout == "no runs match the filters (no recorded parameter set has 'model.knd')\n"
    bad = cli("runs", "ls", "--param", "n")
    assert bad.exit_code == 2 and "--param 'n': expected KEY=VALUE" in bad.output


def test_param_conditions_compare_values_as_the_parameter_files_mean_them():
    from curifactory_cli.run.param_values import flat_values, matching_sets, parse_conditions

    on = {"flag": True, "layers": [1, 2], "opt": {"lr": 0.1}}
    run = RunRecord(
        reference="exp_1_2026-01-01-T000000",
        experiment="exp",
        number=1,
        status="complete",
        started="2026-01-01T00:00:00+00:00",
        param_sets=[
            ParamSetRecord(name="on", hash="1" * 32, values=on),
            ParamSetRecord(
                name="one", hash="2" * 32, values={"flag": 1, "layers": [1], "opt": {"lr": 1}}
            ),
            ParamSetRecord(name="old", hash="3" * 32),  # recorded before values were kept
        ],
    )
    assert flat_values(on) == {
        "flag": True,
        "layers": [1, 2],
        "opt.lr": 0.1,
    }
    assert matching_sets(run, parse_conditions(["flag=true"])) == ["on"]
    assert matching_sets(run, parse_conditions(["flag=1"])) == ["one"]
    assert matching_sets(run, parse_conditions(["layers=[1, 2]", "opt.lr=1e-1"])) == ["on"]
    assert matching_sets(run, parse_conditions(["opt.lr=1.0"])) == ["one"]
    assert matching_sets(run, []) == ["on", "one"]
