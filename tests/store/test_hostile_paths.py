"""Links planted in a shared cache never redirect what curi reads or writes out of it."""

from __future__ import annotations

import os
import shutil

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


def test_a_parameter_set_folder_replaced_by_a_link_is_refused(project, cli, tmp_path_factory):
    setup(project)
    assert cli("run", "e", "p").exit_code == 0
    (entry,) = project.entries()
    folder = entry.parent
    outside = tmp_path_factory.mktemp("outside")
    shutil.move(str(folder), str(outside / "moved"))
    os.symlink(outside / "moved", folder)
    before = sorted(p.name for p in (outside / "moved").iterdir())
    result = cli("run", "e", "p", "--overwrite")
    assert result.exit_code == 1, result.output
    assert "symbolic link inside the cache" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (outside / "moved").iterdir()) == before  # nothing new
    planned = cli("plan", "e", "p")
    assert planned.exit_code == 1 and "symbolic link" in planned.output


def test_an_entry_folder_that_is_a_link_is_not_loaded(project, cli, tmp_path_factory):
    setup(project)
    assert cli("run", "e", "p").exit_code == 0
    (entry,) = project.entries()
    outside = tmp_path_factory.mktemp("outside") / "entry"
    shutil.move(str(entry), str(outside))
    os.symlink(outside, entry)
    result = project.run("e", "params/p.yaml")
    assert result.ok and result.executed() == [("make", "a")]
    assert any("symbolic link" in w for w in result.warnings)


def test_links_in_the_cache_bookkeeping_create_nothing_outside(project, cli, tmp_path_factory):
    setup(project)
    outside = tmp_path_factory.mktemp("outside")
    project.cache.mkdir(parents=True)
    os.symlink(outside / "planted-gitignore", project.cache / ".gitignore")  # dangling
    os.symlink(outside, project.cache / ".locks")
    result = cli("run", "e", "p")
    assert result.exit_code == 1, result.output
    assert "symbolic link inside the cache" in result.output
    assert list(outside.iterdir()) == []


def test_planted_lock_paths_and_a_draft_file_get_clear_answers(project, cli, tmp_path_factory):
    setup(project)
    # Forced, the call locks its entry (the lock the forced runs below take).
    assert cli("run", "e", "p", "--overwrite").exit_code == 0
    locks = project.cache / ".locks"
    (real,) = [p for p in locks.iterdir() if p.suffix == ".lock"]
    real.unlink()
    real.mkdir()  # a folder where the entry's lock file goes
    outside = tmp_path_factory.mktemp("outside") / "target"
    outside.write_text("keep me")
    os.symlink(outside, locks / "planted.lock")
    result = cli("run", "e", "p", "--overwrite")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot open lock file" in result.output and "curi cache gc" in result.output
    gc = cli("cache", "gc", "--yes")
    assert gc.exit_code == 0, gc.output
    assert not real.exists() and not os.path.lexists(locks / "planted.lock")
    assert outside.read_text() == "keep me"  # the link is removed, never its target
    assert cli("run", "e", "p", "--overwrite").exit_code == 0

    shutil.rmtree(project.cache / ".staging", ignore_errors=True)
    (project.cache / ".staging").write_text("not a folder")
    staged = cli("run", "e", "p", "--overwrite")
    assert staged.exit_code != 0 and "Traceback" not in staged.output
    assert ".staging exists and is not a folder" in " ".join(staged.output.split())


def test_a_long_wait_for_another_runs_lock_is_said(project, monkeypatch):
    import threading

    from curifactory_cli.engine import dispatch
    from curifactory_cli.store.local import LocalStore

    setup(project)
    first = project.run("e", "params/p.yaml")
    key = first.graph.nodes[0].key
    monkeypatch.setattr(dispatch, "LOCK_NOTICE_S", 0.2)
    held = LocalStore(str(project.cache)).entry_lock(key)
    assert held.acquire_nowait()  # another run computing the same entry
    threading.Timer(1.0, held.release).start()
    again = project.run("e", "params/p.yaml", overwrite=True)
    assert again.ok
    said = "waiting for another run computing the same cache entry"
    assert any(said in w for w in again.warnings)


def test_lock_timeout_fails_the_stage_instead_of_waiting(project, cli):
    from curifactory_cli.store.local import LocalStore

    setup(project)
    first = project.run("e", "params/p.yaml")
    held = LocalStore(str(project.cache)).entry_lock(first.graph.nodes[0].key)
    assert held.acquire_nowait()  # another run computing the same entry, for good
    try:
        result = cli("run", "e", "p", "--overwrite", "--lock-timeout", "0.5", "-q")
    finally:
        held.release()
    assert result.exit_code == 1, result.output
    assert "waited" in result.output and "held by another run" in result.output
