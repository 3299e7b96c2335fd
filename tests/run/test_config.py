"""Project settings: curi.toml or [tool.curi], CURI_* variables over them, flags over both,
and `curi config` saying which value is in force and why."""

from __future__ import annotations

import json

from curifactory_cli.run.settings import load_settings, resolve_cache

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher])
def make(record):
    return {"n": record.params.n}

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def setup(project) -> None:
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")


def test_precedence_flag_over_environment_over_file_over_default(project, monkeypatch):
    root = project.root
    assert load_settings(root).get("cache") == "data/cache"
    assert load_settings(root).source("cache") == "default"
    project.write("pyproject.toml", '[tool.curi]\ncache = "from-pyproject"\nworkers = 3\n')
    assert load_settings(root).get("cache") == "from-pyproject"
    project.write("curi.toml", 'cache = "from-curi-toml"\n')  # its own file wins
    settings = load_settings(root)
    assert settings.get("cache") == "from-curi-toml" and settings.get("workers") == 1
    assert settings.source("cache") == str(root / "curi.toml")
    monkeypatch.setenv("CURI_CACHE", "from-env")
    assert load_settings(root).get("cache") == "from-env"
    assert load_settings(root).source("cache") == "CURI_CACHE"
    flagged = load_settings(root, {"cache": "from-flag", "remote": None})
    assert flagged.get("cache") == "from-flag" and flagged.source("cache") == "--cache"
    assert flagged.source("remote") == "default"  # a flag not given changes nothing


def test_a_relative_cache_in_the_file_is_relative_to_the_project(project, monkeypatch, tmp_path):
    project.write("curi.toml", 'cache = "elsewhere/cache"\n')
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_cache(project.root, load_settings(project.root)) == str(
        project.root / "elsewhere" / "cache"
    )
    url = load_settings(project.root, {"cache": "s3://bucket/prefix"})
    assert resolve_cache(project.root, url) == "s3://bucket/prefix"


def test_the_configured_cache_is_the_one_runs_and_cache_commands_use(project, cli):
    setup(project)
    project.write("curi.toml", 'cache = "shared/cache"\n')
    result = cli("run", "e", "p")
    assert result.exit_code == 0, result.output
    assert list((project.root / "shared" / "cache").rglob("meta.json"))
    assert not (project.root / "data" / "cache").exists()
    listed = cli("cache", "ls", "--json")
    assert len(json.loads(listed.stdout)["entries"]) == 1


def test_bad_settings_are_clear_errors(project, cli):
    setup(project)
    project.write("curi.toml", "workerz = 2\n")
    result = cli("run", "e", "p")
    assert result.exit_code == 2
    assert "curi.toml: unknown setting 'workerz'" in result.output
    assert "did you mean 'workers'" in result.output
    project.write("curi.toml", "executor = 'spark'\n")
    assert "executor = 'spark'" in cli("config").output
    project.write("curi.toml", "remote = 3\n")
    assert "wrong type" in cli("config").output
    project.write("curi.toml", "cache = [\n")
    result = cli("config")
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_curi_config_shows_values_and_sources(project, cli, monkeypatch):
    project.write("pyproject.toml", '[tool.curi]\nremote = "s3://lab/curi"\n')
    monkeypatch.setenv("CURI_WORKERS", "auto")
    result = cli("config", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["remote"]["value"] == "s3://lab/curi"
    assert doc["remote"]["source"].endswith("pyproject.toml [tool.curi]")
    assert doc["workers"] == {**doc["workers"], "value": "auto", "source": "CURI_WORKERS"}
    assert doc["cache"]["value"] == str(project.root / "data" / "cache")
    text = cli("config").output
    assert "remote" in text and "s3://lab/curi" in text and "CURI_WORKERS" in text
