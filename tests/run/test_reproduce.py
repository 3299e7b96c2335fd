"""`curi run --store-full` keeps the experiment's source and the parameter values a run used;
`curi runs reproduce REF` runs exactly that again, from the stored artifacts, whatever changed
in the project since."""

from __future__ import annotations

import json
import shutil

import pytest

from curifactory_cli.errors import ExitCode

EXPERIMENT = """
import json
from pathlib import Path

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

VERSION = 1


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    return [record.params.n] * 3


@cf.stage(inputs=["raw"], outputs=["total"], cachers=[JsonCacher])
def total(record, raw):
    return sum(raw) * record.params.factor + VERSION


@cf.stage(inputs=["total"], outputs=["shown"])
def show(record, total):
    # An uncached leaf: runs every time, and says what it was given.
    Path(f"shown_{record.params.name}.json").write_text(json.dumps(total))
    return total


def run(param_sets, manager):
    for p in param_sets:
        show(total(load(cf.Record(manager, p))))
"""

PARAMS = """
- name: a
  n: 1
  factor: 2
- name: b
  n: 2
  factor: 3
- name: c
  n: 3
  factor: 1
"""


def flat(text: str) -> str:
    return " ".join(text.split())


def numbered(reference: str) -> str:
    """`exp_1_2026-...` -> `exp_1`, which `curi runs` accepts too."""
    return "_".join(reference.split("_")[:2])


@pytest.fixture
def stored(project, cli):
    """A run of sets a and b with --set factor=10, stored in full; returns (reference, nodes)."""
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    result = cli(
        "run", "exp", "p", "-n", "a", "-n", "b", "--set", "factor=10", "--store-full", "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return doc["run_id"], {(n["stage"], n["record"]): n for n in doc["nodes"]}


def change_everything(project) -> None:
    """The experiment's code and its parameter file, edited after the stored run."""
    project.write(
        "experiments/exp.py",
        EXPERIMENT.replace("VERSION = 1", "VERSION = 2").replace("* 3", "* 4"),
    )
    project.write("params/p.yaml", PARAMS.replace("n: 1", "n: 7"))
    for name in ("a", "b"):
        (project.root / f"shown_{name}.json").unlink()


def test_the_full_store_keeps_the_source_and_the_values_used(project, stored):
    reference, _ = stored
    folder = project.root / "data" / "runs" / reference
    assert (folder / "experiment.py").read_text() == (
        project.root / "experiments/exp.py"
    ).read_text()
    text = (folder / "params.yaml").read_text()
    assert "name: a" in text and "name: b" in text and "name: c" not in text  # -n a -n b
    assert "factor: 10" in text  # --set, as applied
    assert (folder / "reproduce").read_text().strip() == f"curi runs reproduce {reference}"
    run = json.loads((folder / "run.json").read_text())
    assert run["reproduce"] == f"curi runs reproduce {reference}"
    assert run["stored"]["experiment"] == "experiment.py"
    assert run["stored"]["params"] == "params.yaml"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reproduce_after_edits_uses_what_was_stored_and_executes_nothing(
    project, cli, stored, workers
):
    reference, first = stored
    change_everything(project)
    # The project as it is now would recompute everything (b's calls the same as a's, if
    # they read the same values: "maybe").
    planned = json.loads(cli("plan", "exp", "p", "-n", "a", "-n", "b", "--json").stdout)
    plans = {(n["stage"], n["record"]): n["plan"] for n in planned["nodes"] if n["stage"] != "show"}
    assert set(plans.values()) <= {"run", "maybe"}
    assert {p for (_, record), p in plans.items() if record == "a"} == {"run"}
    artifacts = project.root / "data" / "runs" / reference / "artifacts"
    before = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*")}
    cache_before = {p: p.stat().st_mtime_ns for p in project.cache.rglob("*")}

    again = cli("runs", "reproduce", numbered(reference), "-j", workers, "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["counts"]["executed"] == 2  # the uncached leaf `show`, once per set
    nodes = {(n["stage"], n["record"]): n for n in doc["nodes"]}
    for call in [("load", "a"), ("total", "a"), ("load", "b"), ("total", "b")]:
        assert nodes[call]["outcome"] == "cached", call
        assert nodes[call]["key"] == first[call]["key"], call  # the same results
    assert [p["name"] for p in doc["param_sets"]] == ["a", "b"]
    assert json.loads((project.root / "shown_a.json").read_text()) == 3 * 10 + 1  # as stored
    assert json.loads((project.root / "shown_b.json").read_text()) == 6 * 10 + 1
    # Read-only: neither the stored artifacts nor the project's cache changed.
    assert {p: p.stat().st_mtime_ns for p in artifacts.rglob("*")} == before
    assert {p: p.stat().st_mtime_ns for p in project.cache.rglob("*")} == cache_before


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_lost_stored_entry_is_recomputed_with_the_stored_code_and_values(
    project, cli, stored, workers
):
    reference, first = stored
    change_everything(project)
    store = project.root / "data" / "runs" / reference / "artifacts"
    metas = {m.parent: json.loads(m.read_text()) for m in store.rglob("meta.json")}
    (lost,) = [d for d, meta in metas.items() if (meta["stage"], meta["record"]) == ("total", "a")]
    shutil.rmtree(lost)
    again = cli("runs", "reproduce", reference, "-j", workers, "--json", "--no-report")
    assert again.exit_code == 0, again.output
    nodes = {(n["stage"], n["record"]): n for n in json.loads(again.stdout)["nodes"]}
    assert nodes["total", "a"]["outcome"] == "executed"
    assert nodes["total", "a"]["key"] == first["total", "a"]["key"]  # same code, same values
    assert json.loads((project.root / "shown_a.json").read_text()) == 3 * 10 + 1
    assert not lost.exists()  # --dry-cache: nothing written back


def test_runs_show_gives_the_reproduce_command_of_a_stored_run(project, cli, stored):
    reference, _ = stored
    shown = cli("runs", "show", reference)
    assert shown.exit_code == 0, shown.output
    assert f"curi runs reproduce {reference}" in shown.output
    data = json.loads(cli("runs", "show", reference, "--json").stdout)
    assert data["reproduce"] == f"curi runs reproduce {reference}"


def test_typed_parameters_round_trip_through_the_store(project, cli):
    project.write(
        "experiments/typed.py",
        """
        from dataclasses import dataclass, field
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher

        @dataclass
        class Params(cf.ExperimentParameters):
            lr: float = 0.1
            label: str = "x"
            sizes: tuple = (1, 2)
            extra: dict = field(default_factory=dict)
            unset: float | None = None

        @cf.stage(outputs=["out"], cachers=[JsonCacher])
        def make(record):
            p = record.params
            return [p.lr, p.label, list(p.sizes), p.extra]

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write(
        "params/t.yaml",
        "- name: a\n  lr: 1e-3\n  label: '1e-3'\n  sizes: [3, 4]\n"
        "  extra: {deep: {x: .inf, y: 'true', z: null}}\n- name: b\n  label: 'yes'\n",
    )
    first = cli("run", "typed", "t", "--store-full", "-q", "--no-report")
    assert first.exit_code == 0, first.output
    project.write("params/t.yaml", "- name: a\n  lr: 0.5\n- name: b\n")
    again = cli("runs", "reproduce", "typed_1", "--json", "--no-report")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"] == {
        "executed": 0,
        "cached": 2,
        "skipped": 0,
        "failed": 0,
    }


def test_a_run_not_stored_in_full_is_refused_with_its_command(project, cli):
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    result = cli("runs", "reproduce", "exp_1")
    assert result.exit_code == ExitCode.USAGE
    out = flat(result.output)
    assert "was not stored with --store-full" in out
    assert "`curi run exp p" in out  # the command that re-runs it from today's files
    assert "Traceback" not in result.output
    unknown = cli("runs", "reproduce", "nope")
    assert unknown.exit_code == ExitCode.USAGE and "no run 'nope'" in flat(unknown.output)


def test_values_that_are_not_plain_data_are_not_kept_and_reproduce_says_why(project, cli):
    project.write("experiments/exp.py", EXPERIMENT)
    project.write(
        "params/when.py",
        """
        import datetime
        def get_params():
            return [{"name": "a", "n": 1, "factor": 2, "day": datetime.date(2020, 1, 2)}]
        """,
    )
    first = cli("run", "exp", "when", "--store-full", "--no-report", "--no-progress")
    assert first.exit_code == 0, first.output
    assert "cannot rebuild its parameters" in flat(first.output)  # said when storing
    result = cli("runs", "reproduce", "exp_1")
    assert result.exit_code == ExitCode.USAGE
    out = flat(result.output)
    assert (
        "cannot be reproduced from its full store" in out
        and "'day' holds a value of type date" in out
    )


def test_a_tampered_stored_parameter_file_is_refused_before_anything_runs(project, cli, stored):
    reference, _ = stored
    params = project.root / "data" / "runs" / reference / "params.yaml"
    params.write_text(params.read_text().replace("factor: 10", "factor: 11", 1))
    (project.root / "shown_a.json").unlink()
    result = cli("runs", "reproduce", reference)
    assert result.exit_code == ExitCode.USAGE
    assert "parameter set 'a' hashes to" in flat(result.output)
    assert not (project.root / "shown_a.json").exists()  # nothing ran


def test_track_false_keeps_a_file_out_of_the_store_and_reproducing_does_without_it(project, cli):
    # Curifactory's track=False: the output stays cached, but --store-full does not copy it.
    project.write(
        "experiments/exp.py",
        EXPERIMENT.replace(
            '@cf.stage(outputs=["raw"], cachers=[JsonCacher])',
            '@cf.stage(outputs=["raw"], cachers=[JsonCacher(track=False)])',
        ),
    )
    project.write("params/p.yaml", PARAMS)
    made = cli("run", "exp", "p", "-n", "a", "--store-full", "--json")
    assert made.exit_code == 0, made.output
    reference = json.loads(made.stdout)["run_id"]
    folder = project.root / "data" / "runs" / reference
    stored = json.loads((folder / "run.json").read_text())["stored"]
    [untracked] = stored["untracked"]
    assert untracked.endswith("/raw.json") and "/load-" in untracked
    assert not (folder / "artifacts" / untracked).exists()
    assert (project.cache / untracked).exists()  # the cache keeps it
    again = cli("runs", "reproduce", reference, "--json")
    assert again.exit_code == 0, again.output
    nodes = {(n["stage"], n["record"]): n["outcome"] for n in json.loads(again.stdout)["nodes"]}
    # What reads it is found by lineage, so the untracked output is not even needed again.
    assert nodes[("total", "a")] == "cached"
    assert nodes[("load", "a")] == "skipped"


def test_a_full_store_keeps_an_entry_two_sets_share_once(project, cli):
    # Two sets with the same values share their entries: the second copy of an entry into the
    # run's folder finds its hard links already there.
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS + "- name: twin\n  n: 1\n  factor: 2\n")
    result = cli("run", "exp", "p", "-n", "a", "-n", "twin", "--store-full", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    folders = {n["entry"] for n in doc["nodes"] if n["stage"] == "load"}
    assert len(folders) == 1  # one entry for both sets
    artifacts = project.root / "data" / "runs" / doc["run_id"] / "artifacts"
    kept = [p for p in artifacts.rglob("meta.json") if p.parent.name.startswith("load-")]
    assert len(kept) == 1 and (kept[0].parent / "raw.json").read_text().strip() == "[1, 1, 1]"


def test_a_reproduced_sweep_serves_shared_entries_from_the_store_again(project, cli):
    # Three sets share load and clean: the full store keeps the index lines saying so, and
    # the reproduction, on the stored artifacts alone, executes nothing.
    from test_sharing import SWEEP, sweep_params

    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2, 0.3]))
    made = cli("run", "sweep", "p", "--store-full", "--json")
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    shared = [n for n in doc["nodes"] if n["outcome"] == "cached"]
    assert {n["stage"] for n in shared} == {"load", "clean"} and len(shared) == 4
    again = cli("runs", "reproduce", doc["run_id"], "--json")
    assert again.exit_code == 0, again.output
    nodes = json.loads(again.stdout)["nodes"]
    assert {n["outcome"] for n in nodes} == {"cached"}
    assert [n["reason"] for n in nodes if (n["stage"], n["record"]) == ("load", "lr0.2")] == [
        "shared with set 'lr0.1' (reads n_rows)"
    ]
