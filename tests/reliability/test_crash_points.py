"""Dying at each step of a publish (`CURI_FAULT=<point>` makes the process `os._exit(86)` there)
never leaves a loadable bad entry: for every built-in cacher and a multi-file custom cacher,
the next normal run succeeds without a warning and its results equal a clean run's. Only the
last point (after the rename) leaves an entry, which is whole and is reused."""

from __future__ import annotations

import pytest
from reliability_helpers import (
    EXPERIMENT,
    KINDS,
    curi,
    entry_dirs,
    entry_problems,
    output_fingerprint,
    params_yaml,
)

from curifactory_cli.store import FAULT_POINTS

N = 2_000


@pytest.fixture
def faulty(project):
    project.write("experiments/faulty.py", EXPERIMENT)
    project.write("params/p.yaml", params_yaml(N))
    return project


def clean_results(project, kind):
    """What a clean run produces: (consumer's digest, {stage: output fingerprint})."""
    result = project.run(
        "faulty", "params/p.yaml", names=(kind,), cache_dir=str(project.root / "clean-cache")
    )
    assert result.ok and result.warnings == []
    return results_of(result, kind)


def results_of(result, kind):
    record = result.records[0]
    record.state[f"out_{kind}"]  # loads (and checksums) the producer's output too
    fingerprints = {n.stage.name: output_fingerprint(n.entry_dir) for n in result.graph.nodes}
    return record.state[f"digest_{kind}"], fingerprints


def crash(project, kind, point):
    proc = curi(project.root, "run", "faulty", "params/p.yaml", "--names", kind, CURI_FAULT=point)
    assert proc.returncode == 86, (point, proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_fault_points_are_the_documented_ones():
    assert FAULT_POINTS == (
        "after-data",
        "before-meta",
        "mid-meta",
        "before-rename",
        "after-rename",
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_at_publish_step_then_recover(faulty, kind, point):
    clean = clean_results(faulty, kind)
    crash(faulty, kind, point)

    entries = entry_dirs(faulty.cache)
    staged = sorted((faulty.cache / ".staging").glob("*"))
    if point == "after-rename":
        assert [e.name.split("-")[0] for e in entries] == [f"make_{kind}"]
        assert entry_problems(entries[0]) == []
    else:
        assert entries == [], "a crash before the rename published an entry"
        assert len(staged) == 1, staged  # the half-published entry stays in draft
        has_meta = (staged[0] / "meta.json").exists()
        assert has_meta == (point in ("mid-meta", "before-rename")), point

    result = faulty.run("faulty", "params/p.yaml", names=(kind,))
    assert result.ok, result.error
    assert result.warnings == []
    expected = [(f"digest_{kind}", kind)]
    if point != "after-rename":
        expected.insert(0, (f"make_{kind}", kind))
    assert result.executed() == expected
    assert results_of(result, kind) == clean
    # The leftover draft folder is ignored, never adopted.
    for leftover in staged:
        assert leftover.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_crash_at_every_point_in_sequence_then_recover(faulty, kind):
    """The producer is published and the run dies (after-rename); then the consumer, which
    loads the producer's entry from disk, dies at every step of its own publish in turn."""
    clean = clean_results(faulty, kind)
    for point in ("after-rename", *FAULT_POINTS):
        crash(faulty, kind, point)
        for entry in entry_dirs(faulty.cache):
            assert entry_problems(entry) == [], point
    published = sorted(e.name.split("-")[0] for e in entry_dirs(faulty.cache))
    assert published == [f"digest_{kind}", f"make_{kind}"]
    assert len(list((faulty.cache / ".staging").glob("*"))) == 4

    result = faulty.run("faulty", "params/p.yaml", names=(kind,))
    assert result.ok and result.warnings == []
    assert result.executed() == []
    assert results_of(result, kind) == clean


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pickle", "multi"])
@pytest.mark.parametrize("point", FAULT_POINTS)
def test_crash_in_a_worker_or_in_its_driver_then_recover(faulty, kind, point):
    """With -j 2 the cachers write in a worker process and the driver publishes: a death while
    saving kills the worker (the driver fails the stage and removes its draft folder), a
    death while publishing kills the driver. Neither leaves a loadable bad entry."""
    clean = clean_results(faulty, kind)
    args = ("run", "faulty", "params/p.yaml", "--names", kind, "-j", "2")
    proc = curi(faulty.root, *args, CURI_FAULT=point)
    entries = entry_dirs(faulty.cache)
    staged = sorted((faulty.cache / ".staging").glob("*"))
    if point == "after-data":
        assert proc.returncode == 1, proc.stderr
        assert "the worker process running it died (it exited with code 86)" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert entries == [] and staged == []
    else:
        assert proc.returncode == 86, (proc.returncode, proc.stderr)
        if point == "after-rename":
            assert [e.name.split("-")[0] for e in entries] == [f"make_{kind}"]
            assert entry_problems(entries[0]) == []
        else:
            assert entries == [] and len(staged) == 1

    result = faulty.run("faulty", "params/p.yaml", names=(kind,), workers=2)
    assert result.ok, result.error
    assert result.warnings == []
    expected = {(f"digest_{kind}", kind)}
    if point != "after-rename":
        expected.add((f"make_{kind}", kind))
    assert set(result.executed()) == expected
    assert results_of(result, kind) == clean
