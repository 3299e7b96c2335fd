"""Each run's own folder, data/runs/<reference>: where a stage without cachers writes the files
it asks `record.get_path()`/`get_dir()` for, and Curifactory's manager surface around it
(`get_run_output_path`, `get_artifact_path`, `runs_path`, timestamps, `store()`)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

import curifactory_cli as cf
from curifactory_cli.run_paths import reproduction_line

SIDE_FILES = """
import os
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(None, ["n"])
def write_side(record):
    path = record.get_path("notes.txt", subdir="extra/deep")
    with open(path, "w") as f:
        f.write(f"a={record.params.a}")
    folder = record.get_dir("plots", prefix="mine")
    with open(os.path.join(folder, "p.txt"), "w") as f:
        f.write("plot")
    named = record.get_path("other.txt", stage_name="elsewhere")
    open(named, "w").close()
    print("SIDE", path)
    return record.params.a

@cf.stage(["n"], ["m"], [JsonCacher])
def cached_after(record, n):
    return n + 1

def run(param_sets, manager):
    for p in param_sets:
        cached_after(write_side(cf.Record(manager, p)))
"""

PARAMS = """
- name: one
  a: 1
- name: two
  a: 2
"""


def _set_hashes(result) -> dict[str, str]:
    return {p.name: p.hash for p in result.param_sets}


def test_a_stage_without_cachers_writes_its_files_in_the_runs_own_folder(project, job_runner):
    project.write("experiments/side.py", SIDE_FILES)
    project.write("params/p.yaml", PARAMS)
    result = project.run("side", "params/p.yaml")
    assert result.error is None
    folder = project.root / "data" / "runs" / result.run_id
    for name, set_hash in _set_hashes(result).items():
        # Curifactory's file name: <experiment>_<hash>_<stage>_<name>, under the subdir
        notes = folder / "extra" / "deep" / f"side_{set_hash}_write_side_notes.txt"
        assert notes.read_text() == f"a={1 if name == 'one' else 2}"
        assert (folder / f"mine_{set_hash}_write_side_plots" / "p.txt").read_text() == "plot"
        assert (folder / f"side_{set_hash}_elsewhere_other.txt").is_file()
    # nothing of it went into the cache: the cached stage's entries hold only its output
    for entry in project.entries():
        assert not (entry / "files").exists()


def test_each_run_has_its_own_folder_and_store_full_keeps_the_files(project, cli):
    project.write("experiments/side.py", SIDE_FILES)
    project.write("params/p.yaml", PARAMS)
    first = cli("run", "side", "p", "--no-progress")
    assert first.exit_code == 0, first.output
    # write_side runs again (downstream is cached, but --overwrite recomputes it all)
    second = cli("run", "side", "p", "--no-progress", "--overwrite", "--store-full")
    assert second.exit_code == 0, second.output
    runs = sorted((project.root / "data" / "runs").iterdir())
    assert len(runs) == 2
    for folder in runs:
        assert len(list((folder / "extra" / "deep").iterdir())) == 2
    stored = runs[1]
    assert (stored / "run.json").is_file() and (stored / "artifacts").is_dir()
    printed = [line.split(" ", 1)[1] for line in second.output.splitlines() if line[:5] == "SIDE "]
    assert len(printed) == 2 and all(Path(p).parent == stored / "extra" / "deep" for p in printed)


def test_a_dry_run_writes_no_run_folder_in_the_project(project):
    project.write("experiments/side.py", SIDE_FILES)
    project.write("params/p.yaml", PARAMS)
    result = project.run("side", "params/p.yaml", dry=True)
    assert result.error is None
    assert not (project.root / "data" / "runs").exists()
    assert not project.entries()


def test_a_path_out_of_the_runs_folder_is_refused(project, cli):
    project.write(
        "experiments/escape.py",
        """
        import curifactory_cli as cf

        @cf.stage(None, ["n"])
        def sneaky(record):
            return record.get_path("x.txt", subdir="../../elsewhere")

        def run(param_sets, manager):
            for p in param_sets:
                sneaky(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "- name: one\n  a: 1\n")
    result = cli("run", "escape", "p", "--no-progress")
    # raised in the stage's own call: the stage fails (exit 1), the message says why
    assert result.exit_code == 1, result.output
    assert "stage 'sneaky': invalid file name '..'" in result.output
    assert not (project.root / "data" / "elsewhere").exists()


RUN_PATHS = """
import curifactory_cli as cf

@cf.stage(None, ["n"])
def count(record):
    return 1

def run(param_sets, manager):
    path = manager.get_run_output_path("summary/run.txt")
    with open(path, "w") as f:
        f.write(" ".join([
            manager.get_reference_name(),
            str(manager.experiment_run_number),
            manager.get_str_timestamp(),
            manager.runs_path,
            manager.manager_cache_path,
        ]))
    for p in param_sets:
        count(cf.Record(manager, p))
"""


def test_run_asks_for_the_runs_folder_reference_and_timestamp(project):
    project.write("experiments/paths.py", RUN_PATHS)
    project.write("params/p.yaml", "- name: one\n  a: 1\n")
    for number in (1, 2):
        result = project.run("paths", "params/p.yaml")
        assert result.error is None
        written = project.root / "data" / "runs" / result.run_id / "summary" / "run.txt"
        reference, n, stamp, runs, data = written.read_text().split(" ")
        assert reference == result.run_id == f"paths_{number}_{stamp}"
        assert n == str(number)
        assert Path(runs) == project.root / "data" / "runs"
        assert Path(data) == project.root / "data"  # where runs.sqlite is
        assert (Path(data) / "runs.sqlite").is_file()


def test_plan_says_it_has_no_run_folder_to_give(project, cli):
    project.write("experiments/paths.py", RUN_PATHS)
    project.write("params/p.yaml", "- name: one\n  a: 1\n")
    result = cli("plan", "paths", "p")
    assert result.exit_code == 2, result.output
    assert "records no run" in result.output
    assert not (project.root / "data" / "runs").exists()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("curi run exp p --store-full", "curi run exp p"),
        ("curi run exp p --store-full -j 4", "curi run exp p -j 4"),
        ("curi run exp p --store-full -j 4 --overwrite", "curi run exp p -j 4"),
        (
            "curi run exp p --overwrite-stage fit --store-full",
            "curi run exp p --overwrite-stage fit",
        ),
    ],
)
def test_the_reproduction_line_drops_store_full_and_overwrite_wherever_they_are(line, expected):
    assert reproduction_line(line, "data/runs/r/artifacts") == (
        f"{expected} --cache data/runs/r/artifacts --dry-cache"
    )


def test_a_session_manager_has_the_runs_surface(project):
    project.write("params/p.yaml", "- name: one\n  a: 1\n")  # a project folder
    manager = cf.ArtifactManager("session")
    try:
        stamp = manager.get_str_timestamp()  # asking records the session's run
        assert manager.get_reference_name() == f"session_1_{stamp}" == manager.run_name
        folder = Path(manager.get_run_output_path())
        assert folder == project.root / "data" / "runs" / f"session_1_{stamp}"

        @cf.stage(None, ["x"])
        def side(record):
            assert manager.current_stage_name == "side"
            path = manager.get_artifact_path("y.json", record, subdir="q")
            Path(path).write_text("{}")
            return path

        record = cf.Record(manager, cf.ExperimentParameters(name="a"))
        side(record)
        expected = folder / "q" / f"session_{record.get_hash()}_side_y.json"
        assert record.state["x"] == str(expected) and expected.is_file()
        assert manager.current_stage_name == ""

        manager.run_line = "python nb.py --store-full --overwrite"
        manager.store_full = True
        info = manager.store()
        assert info is not None and info["reference"] == manager.run_name
        artifacts = folder / "artifacts"
        assert shlex.split(info["reproduce"]) == [
            "python",
            "nb.py",
            "--cache",
            str(artifacts),
            "--dry-cache",
        ]
        stored = json.loads((folder / "run_info.json").read_text())
        assert stored["reproduce"] == info["reproduce"]
        assert (folder / "requirements.txt").is_file()
        assert (folder / "environment_meta.txt").read_text()
    finally:
        manager.close()
