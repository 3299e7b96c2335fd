"""What a run and each cache entry record of the installed packages their results were made
with: the distributions imported by the process that ran the stage, wherever it ran."""

from __future__ import annotations

import json
import sys

import pytest

from curifactory_cli import provenance
from curifactory_cli.registry.database import RunRegistry

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
def compute(record):
    import fakemod

    return fakemod.double(record.params.x)


def run(param_sets, manager):
    for p in param_sets:
        compute(cf.Record(manager, p))
"""


@pytest.fixture
def installed(tmp_path_factory, monkeypatch):
    """A distribution `fake-dist` 1.2.3 (module `fakemod`) installed outside the project, in a
    folder on the path of this process and of worker processes."""
    site = tmp_path_factory.mktemp("site-packages")
    (site / "fakemod").mkdir()
    (site / "fakemod" / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    info = site / "fake_dist-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-dist\nVersion: 1.2.3\n")
    (info / "RECORD").write_text("fakemod/__init__.py,,\nfake_dist-1.2.3.dist-info/METADATA,,\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    yield site
    sys.modules.pop("fakemod", None)


def run_versions(project, run_id: str) -> dict[str, str]:
    return RunRegistry(project.root / "data" / "runs.sqlite").get_run(run_id).versions


def test_entries_and_runs_record_the_packages_the_stage_imported(project, installed, job_runner):
    project.write("experiments/v.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  x: 2\n")
    first = project.run("v", "params/p.yaml")
    assert first.records[0].state["v"] == 4
    [meta_file] = project.cache.rglob("meta.json")
    meta = json.loads(meta_file.read_text())
    # Imported by the stage only (in a worker process, with -j): the entry knows it.
    assert meta["versions"]["fake-dist"] == "1.2.3"
    assert "curifactory-cli" not in meta["versions"]  # named curifactory_cli, by the run
    assert run_versions(project, first.run_id)["fake-dist"] == "1.2.3"
    # A fully cached run ran nothing, but its results were made with fake-dist 1.2.3.
    sys.modules.pop("fakemod", None)
    again = project.run("v", "params/p.yaml")
    assert again.executed() == []
    versions = run_versions(project, again.run_id)
    assert versions["fake-dist"] == "1.2.3"
    assert versions["python"] and versions["curifactory_cli"]


def test_cache_inspect_shows_the_entrys_own_versions(project, installed, cli):
    project.write("experiments/v.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  x: 2\n")
    assert cli("run", "v", "params/p.yaml").exit_code == 0
    [meta_file] = project.cache.rglob("meta.json")
    shown = json.loads(cli("cache", "inspect", str(meta_file.parent), "--json").stdout)
    assert shown["versions"]["fake-dist"] == "1.2.3"


def test_versions_of_several_results_are_merged_and_disagreements_kept():
    merged = provenance.merge_versions(
        {"python": "3.11.7", "numpy": "2.0.0"},
        [{"numpy": "2.0.0"}, {"numpy": "1.26.4", "scipy": "1.14.0"}, None, {"bad": 3}],
    )
    assert merged == {"numpy": "1.26.4 | 2.0.0", "python": "3.11.7", "scipy": "1.14.0"}


def test_installing_a_package_mid_session_is_seen(installed, tmp_path_factory, monkeypatch):
    """A notebook that installs a package after its first run: the memo of which module
    belongs to which distribution is keyed by what is installed."""
    import fakemod  # noqa: F401

    assert provenance.imported_distributions()["fake-dist"] == "1.2.3"
    later = tmp_path_factory.mktemp("later")
    (later / "latemod.py").write_text("X = 1\n")
    info = later / "late_dist-0.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-dist\nVersion: 0.4\n")
    (info / "RECORD").write_text("latemod.py,,\n")
    monkeypatch.syspath_prepend(str(later))
    import latemod  # noqa: F401

    try:
        assert provenance.imported_distributions()["late-dist"] == "0.4"
    finally:
        sys.modules.pop("latemod", None)


def test_the_distribution_memo_is_kept_across_projects(tmp_path, monkeypatch):
    """A project folder on the path (every run puts its own there) does not change which
    distributions are installed, so the memo read once is used by every project."""
    before = provenance._environment_signature()
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "some_module.py").write_text("")
    assert provenance._environment_signature() == before
    (tmp_path / "new_dist-1.0.dist-info").mkdir()
    assert provenance._environment_signature() != before


def test_two_environments_keep_a_memo_each(tmp_path, monkeypatch):
    """Two checkouts whose folders hold different distributions (an editable install's
    egg-info) alternate without reading every distribution again each time."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = provenance._environment_signature()
    provenance._distribution_index()
    checkout = tmp_path / "checkout"
    (checkout / "proj.egg-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(checkout))
    second = provenance._environment_signature()
    assert second != first
    provenance._distribution_index()
    memos = sorted(p.name for p in (tmp_path / "xdg" / "curifactory-cli").iterdir())
    assert memos == sorted(f"distributions-{s[:32]}.json" for s in (first, second))
