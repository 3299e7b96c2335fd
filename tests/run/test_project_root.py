"""Every command finds its project by looking upward from the current folder, as git does;
paths typed on the command line stay relative to the current folder."""

from __future__ import annotations

import json

import pytest

from curifactory_cli.discovery import find_project_root
from curifactory_cli.errors import ExitCode

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["raw"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["raw"], outputs=["total"], cachers=[JsonCacher])
def total(record, raw):
    return sum(raw)


def run(param_sets, manager):
    for p in param_sets:
        total(load(cf.Record(manager, p)))
"""


@pytest.fixture
def deep(project, monkeypatch):
    """A project, with the current folder two levels inside it."""
    project.write("experiments/count.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 3\n- name: b\n  n: 4\n")
    sub = project.root / "notes" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    return sub


def test_run_plan_and_cache_ls_from_a_subfolder_use_the_project(project, cli, deep):
    ran = cli("run", "count", "p", "--json", "--no-report")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["counts"]["executed"] == 4
    assert len(project.entries()) == 4  # in the project's data/cache
    assert (project.root / "data" / "runs.sqlite").is_file()
    assert not (deep / "data").exists()

    planned = cli("plan", "count", "p", "--json")
    assert planned.exit_code == 0, planned.output
    assert {n["plan"] for n in json.loads(planned.stdout)["nodes"]} == {"cached"}

    listed = cli("cache", "ls", "--json")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)["entries"]) == 4

    runs = cli("runs", "ls", "--json")
    assert runs.exit_code == 0, runs.output
    assert len(json.loads(runs.stdout)["runs"]) == 1
    assert not (deep / "data").exists()


def test_paths_on_the_command_line_stay_relative_to_the_current_folder(project, cli, deep):
    (deep / "mine.yaml").write_text("- name: mine\n  n: 2\n")
    ran = cli("run", "count", "mine.yaml", "--cache", "scratch", "--json", "--no-report")
    assert ran.exit_code == 0, ran.output
    assert [p["name"] for p in json.loads(ran.stdout)["param_sets"]] == ["mine"]
    assert len(list((deep / "scratch").rglob("meta.json"))) == 2  # --cache: from here
    assert not project.cache.exists()

    upward = cli("run", "count", "../../params/p.yaml", "-q", "--no-report")
    assert upward.exit_code == 0, upward.output
    assert len(project.entries()) == 4


def test_the_nearest_project_wins(project, cli, deep, monkeypatch):
    inner = deep / "inner"
    (inner / "experiments").mkdir(parents=True)
    (inner / "experiments" / "count.py").write_text(EXPERIMENT)
    (inner / "params").mkdir()
    (inner / "params" / "p.yaml").write_text("- name: only\n  n: 1\n")
    (inner / "src").mkdir()
    monkeypatch.chdir(inner / "src")
    ran = cli("run", "count", "p", "--json", "--no-report")
    assert ran.exit_code == 0, ran.output
    assert [p["name"] for p in json.loads(ran.stdout)["param_sets"]] == ["only"]
    assert len(list((inner / "data" / "cache").rglob("meta.json"))) == 2
    assert not project.cache.exists()


def test_a_curi_toml_marks_the_project_and_its_settings_apply(project, cli, deep):
    project.write("curi.toml", 'cache = "shared/cache"\n')
    ran = cli("run", "count", "p", "-q", "--no-report")
    assert ran.exit_code == 0, ran.output
    assert len(list((project.root / "shared" / "cache").rglob("meta.json"))) == 4
    listed = json.loads(cli("cache", "ls", "--json").stdout)
    assert len(listed["entries"]) == 4


def test_outside_any_project_the_error_keeps_its_hint(tmp_path, cli, monkeypatch):
    outside = tmp_path / "elsewhere" / "below"
    outside.mkdir(parents=True)
    if find_project_root(outside) is not None:
        pytest.skip("a folder above the test's temporary folder is a project")
    monkeypatch.chdir(outside)
    result = cli("run", "count", "p")
    assert result.exit_code == ExitCode.USAGE
    out = " ".join(result.output.split())
    assert "no experiment named 'count'" in out
    assert f"neither {outside} nor any folder above it is a project" in out
    assert "Traceback" not in result.output
    assert not (outside / "data").exists()
