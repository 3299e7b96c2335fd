"""The run registry (data/runs.sqlite): numbering, lookup, concurrency, corruption, `curi runs`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from curifactory_cli.cli.runs import runs_app
from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.registry.database import SCHEMA_VERSION, RunRegistry
from curifactory_cli.registry.records import (
    GitInfo,
    HostInfo,
    ParamFileRecord,
    ParamSetRecord,
    StageRecord,
)
from curifactory_cli.registry.references import reproduce_command

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

STAGES = [
    StageRecord(
        stage="load",
        record="a",
        outcome="cached",
        reason="cache hit",
        seconds=0.0,
        key="k1" * 32,
        entry="exp/abcd/load/k1k1",
        inputs=[],
        aggregate=False,
    ),
    StageRecord(
        stage="total",
        record="a",
        outcome="failed",
        reason=None,
        seconds=0.25,
        key=None,
        entry=None,
        inputs=[0],
        aggregate=True,
    ),
]


def start(registry: RunRegistry, experiment: str = "exp", **changes):
    fields = {
        "experiment": experiment,
        "command": ["/venv/bin/curi", "run", experiment, "params/p.yaml"],
        "param_files": [
            ParamFileRecord("params/p.yaml", [ParamSetRecord(name="a", hash="h" * 32)])
        ],
        "param_sets": [ParamSetRecord(name="a", hash="h" * 32, source="params/p.yaml")],
        "git": GitInfo(commit="c" * 40, dirty=True),
        "host": HostInfo(host="box", pid=123, platform="Linux"),
        "versions": {"python": "3.11", "curifactory_cli": "0.1.0"},
        "notes": None,
        "cache_dir": "data/cache",
        "dry": False,
    }
    return registry.start_run(**(fields | changes))


def finish(registry: RunRegistry, reference: str, **changes) -> None:
    fields = {
        "status": "error",
        "duration_s": 1.5,
        "counts": {"executed": 0, "cached": 1, "skipped": 0, "failed": 1},
        "error": "stage 'total' failed for parameter set 'a': ZeroDivisionError",
        "failed_stage": "total",
        "failed_record": "a",
        "stages": STAGES,
    }
    registry.finish_run(reference, **(fields | changes))


@pytest.fixture
def registry(tmp_path) -> RunRegistry:
    return RunRegistry(tmp_path / "data" / "runs.sqlite")


# ----------------------------------------------------------------------------- API
def test_numbers_count_up_per_experiment(registry):
    runs = [start(registry, "exp") for _ in range(3)]
    other = [start(registry, "sub/other") for _ in range(2)]
    assert [r.number for r in runs] == [1, 2, 3]
    assert [r.number for r in other] == [1, 2]
    references = [r.reference for r in runs + other]
    assert len(set(references)) == 5
    assert runs[1].reference.startswith("exp_2_")
    # a subfolder experiment keeps its name but the reference has no '/'
    assert other[0].experiment == "sub/other"
    assert other[0].reference.startswith("sub.other_1_20")
    assert len(other[0].reference) == len("sub.other_1_") + len("2024-01-31-T120000")


def test_schema_is_versioned_and_in_wal_mode(registry):
    import sqlite3

    conn = sqlite3.connect(registry.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# The schema of the first release (version 1): no stage edges, no experiment docstring.
V1_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, reference TEXT NOT NULL UNIQUE,
  experiment TEXT NOT NULL, number INTEGER NOT NULL, status TEXT NOT NULL,
  started TEXT NOT NULL, finished TEXT, duration_s REAL, command TEXT NOT NULL,
  param_files TEXT NOT NULL, param_sets TEXT NOT NULL, git TEXT NOT NULL, host TEXT NOT NULL,
  versions TEXT NOT NULL, notes TEXT, cache_dir TEXT NOT NULL, dry INTEGER NOT NULL DEFAULT 0,
  counts TEXT, error TEXT, failed_stage TEXT, failed_record TEXT, UNIQUE (experiment, number));
CREATE TABLE run_stages (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL, stage TEXT NOT NULL, record TEXT NOT NULL, outcome TEXT NOT NULL,
  reason TEXT, seconds REAL, key TEXT, entry TEXT, PRIMARY KEY (run_id, position));
INSERT INTO runs VALUES (1, 'exp_1_2026-01-01-T000000', 'exp', 1, 'complete',
  '2026-01-01T00:00:00+00:00', NULL, 1.0, '["curi"]', '[]', '[]', '{}', '{}', '{}', NULL,
  'data/cache', 0, NULL, NULL, NULL, NULL);
INSERT INTO run_stages VALUES (1, 0, 'load', 'a', 'executed', 'new', 0.5, 'k', 'e');
PRAGMA user_version = 1;
"""


def test_a_registry_of_the_first_version_is_read_as_is_and_upgraded_by_a_writer(tmp_path):
    import sqlite3

    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    # Reading (curi runs, curi report) never changes the file.
    old = RunRegistry(path, read_only=True).get_run("exp_1")
    assert old.doc is None and old.stages[0].inputs is None
    assert old.stages[0].stage == "load"
    assert old.reproduce == "curi"  # from its command, as that version did
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    # The next run upgrades it in place, keeping what was there.
    writer = RunRegistry(path)
    new = start(writer)
    finish(writer, new.reference, status="complete")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert writer.get_run(old.reference).reproduce == "curi"
    assert [r.reference for r in writer.list_runs()] == [new.reference, old.reference]
    assert writer.get_run(new.reference).stages == STAGES


def _old_registry(path: Path, version: int) -> None:
    """A registry file as curi of `version` made it (its later columns come last)."""
    import sqlite3

    from curifactory_cli.registry.database import _MIGRATIONS

    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    for step in range(1, version):
        for statement in _MIGRATIONS[step]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_runs_of_an_older_file_read_as_json_in_the_order_of_its_columns(tmp_path, runs_cli):
    path = tmp_path / "data" / "runs.sqlite"
    path.parent.mkdir()
    _old_registry(path, 1)
    old = RunRegistry(path, read_only=True).get_run("exp_1").to_json()
    # Version 1 had no doc or reproduce columns: they follow its own, then the stages.
    assert list(old)[-5:] == ["failed_stage", "failed_record", "doc", "reproduce", "stages"]
    assert list(old["stages"][0]) == [*STAGE_KEYS[:7], "inputs", "aggregate"]
    writer = RunRegistry(path)  # upgrades it: the new columns are added last
    new = start(writer)
    finish(writer, new.reference, status="complete")
    for ref in ("exp_1", new.reference):
        data = json.loads(runs_cli("runs", "show", ref, "--json").output)
        tail = ["failed_stage", "failed_record", "doc", "reproduce", "stages", "log"]
        assert list(data)[-6:] == tail
    fresh = RunRegistry(tmp_path / "fresh.sqlite")  # made by this version: in the fields' order
    keys = list(fresh.get_run(start(fresh).reference).to_json())
    assert keys[keys.index("notes") :][:4] == ["notes", "doc", "reproduce", "cache_dir"]


def test_a_file_of_version_2_is_listed_read_only(tmp_path, runs_cli):
    path = tmp_path / "data" / "runs.sqlite"
    path.parent.mkdir()
    _old_registry(path, 2)  # it has a doc column, but no reproduce column yet
    (brief,) = RunRegistry(path, read_only=True).list_runs(brief=True)
    assert brief.reference == "exp_1_2026-01-01-T000000" and brief.reproduce == "curi"
    assert runs_cli("runs", "show").exit_code == 0  # finds the newest run by a brief listing


def test_finish_list_get_round_trip(registry):
    first = start(registry, notes="baseline\nsecond line")
    second = start(registry)
    finish(registry, first.reference)
    runs = registry.list_runs()
    assert [r.reference for r in runs] == [second.reference, first.reference]  # newest first
    assert runs[0].status == "running" and runs[0].counts is None
    got = registry.get_run(first.reference)
    assert got.status == "error"
    assert got.duration_s == 1.5
    assert got.failed_stage == "total" and got.failed_record == "a"
    assert got.counts == {"executed": 0, "cached": 1, "skipped": 0, "failed": 1}
    assert got.stages == STAGES
    assert got.git == GitInfo(commit="c" * 40, dirty=True)
    assert got.host == HostInfo(host="box", pid=123, platform="Linux")
    assert got.param_files[0].sets[0].name == "a"
    assert got.param_sets == [ParamSetRecord(name="a", hash="h" * 32, source="params/p.yaml")]
    assert got.notes == "baseline\nsecond line"
    assert got.reproduce == "curi run exp params/p.yaml"
    assert got.finished is not None and got.dry is False


def test_code_fingerprints_and_output_versions_round_trip_and_upgrade_a_file_of_version_4(
    tmp_path,
):
    """Each stage's code parts (per run) and each call's output versions are kept, so
    `curi runs diff` answers without cache entries; a file of version 4 gains the columns,
    its runs reading None (not recorded) for them."""
    import dataclasses
    import sqlite3

    path = tmp_path / "runs.sqlite"
    _old_registry(path, 4)
    writer = RunRegistry(path)
    old = writer.get_run("exp_1")
    assert old.code is None and old.stages[0].outputs is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    code = {"load": {"load": "f" * 64, "_helper": "e" * 64, "LIMIT": "d" * 64}}
    calls = [dataclasses.replace(STAGES[0], outputs={"data": "v" * 64, "extra": "w" * 64})]
    calls.append(STAGES[1])  # failed: no outputs
    run = start(writer)
    finish(writer, run.reference, stages=calls, code=code)
    got = writer.get_run(run.reference)
    assert got.code == code and got.stages == calls
    data = got.to_json()
    assert data["code"] == code
    assert data["stages"][0]["outputs"] == {"data": "v" * 64, "extra": "w" * 64}
    assert "outputs" not in data["stages"][1]
    # A listing of many runs does not read them.
    assert writer.list_runs(brief=True)[0].code is None


def test_list_filters(registry):
    a = start(registry, "exp")
    start(registry, "sub/other")
    finish(registry, a.reference, status="complete")
    assert [r.experiment for r in registry.list_runs(experiment="sub/other")] == ["sub/other"]
    assert [r.reference for r in registry.list_runs(status="complete")] == [a.reference]
    assert len(registry.list_runs(limit=1)) == 1
    assert len(registry.list_runs(limit=None)) == 2
    with pytest.raises(ConfigError, match="unknown run status"):
        registry.list_runs(status="done")


def test_finish_rejects_unknown_reference_and_status(registry):
    run = start(registry)
    with pytest.raises(ConfigError, match="no run"):
        finish(registry, "exp_99_2000-01-01-T000000")
    with pytest.raises(ConfigError, match="final status"):
        finish(registry, run.reference, status="running")


def test_finishing_twice_replaces_the_stages(registry):
    run = start(registry)
    finish(registry, run.reference)
    finish(registry, run.reference, status="complete", stages=STAGES[:1], error=None)
    got = registry.get_run(run.reference)
    assert got.status == "complete" and got.stages == STAGES[:1]


def test_prefix_lookup_and_ambiguity(registry):
    runs = [start(registry, "exp") for _ in range(10)]  # exp_1 ... exp_10
    other = start(registry, "expo")
    assert registry.get_run(runs[3].reference).number == 4
    # `<experiment>_<n>` picks that run although exp_10_... starts with "exp_1" too
    assert registry.get_run("exp_1").reference == runs[0].reference
    assert registry.get_run("expo").reference == other.reference  # unique prefix
    with pytest.raises(ConfigError, match="ambiguous") as info:
        registry.get_run("exp")
    assert "curi runs ls" in info.value.hint
    with pytest.raises(ConfigError, match="no run 'nope'") as info:
        registry.get_run("nope")
    assert "curi runs ls" in info.value.hint
    # '_' is literal, not a LIKE wildcard
    with pytest.raises(ConfigError, match="no run"):
        registry.get_run("exp_1X")


def test_read_only_never_creates_the_file(tmp_path):
    path = tmp_path / "data" / "runs.sqlite"
    reader = RunRegistry(path, read_only=True)
    assert reader.list_runs() == []
    with pytest.raises(ConfigError, match="no runs recorded yet"):
        reader.get_run("exp_1")
    with pytest.raises(ConfigError, match="read-only"):
        start(reader)
    assert not (tmp_path / "data").exists()


def test_read_only_sees_what_a_writer_recorded(registry):
    run = start(registry)
    reader = RunRegistry(registry.path, read_only=True)
    assert reader.get_run(run.reference).status == "running"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["/x/bin/curi", "run", "exp", "p.yaml"], "curi run exp p.yaml"),
        (
            ["curi", "run", "exp", "--overwrite", "--overwrite-stage", "load", "-n", "a"],
            "curi run exp -n a",
        ),
        (
            ["curi", "run", "exp", "--overwrite-stage=load", "--notes=why", "--store-full"],
            "curi run exp",
        ),
        (
            ["curi", "run", "exp", "--notes", "two words", "--set", "x=1 2"],
            "curi run exp --set 'x=1 2'",
        ),
        ([], ""),
    ],
)
def test_reproduce_strips_run_specific_flags(command, expected):
    assert reproduce_command(command) == expected


def test_corrupt_database_is_a_cache_error(tmp_path):
    path = tmp_path / "data" / "runs.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(CacheError, match="corrupt") as info:
        RunRegistry(path)
    assert str(path) in info.value.message and "move it aside" in info.value.hint
    with pytest.raises(CacheError, match="corrupt"):
        RunRegistry(path, read_only=True).list_runs()
    assert path.read_bytes().startswith(b"this is not sqlite")  # never deleted or rewritten


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.registry.records import GitInfo, HostInfo, StageRecord

    path, start_at = Path(sys.argv[1]), float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))  # start together: maximum contention
    registry = RunRegistry(path)  # also races to create the schema
    for _ in range(10):
        run = registry.start_run(
            experiment="exp", command=["curi", "run", "exp"], param_files=[], param_sets=[],
            git=GitInfo(), host=HostInfo(), versions={}, notes=None, cache_dir="data/cache",
            dry=False,
        )
        registry.finish_run(
            run.reference, status="complete", duration_s=0.1, counts={"executed": 1},
            error=None, failed_stage=None, failed_record=None,
            stages=[StageRecord(stage="s", record="r", outcome="executed", seconds=0.1)],
        )
    """
)


def test_concurrent_processes_never_share_a_number(tmp_path):
    path = tmp_path / "data" / "runs.sqlite"
    start_at = str(time.time() + 1.5)  # long enough for every interpreter to start
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    runs = RunRegistry(path, read_only=True).list_runs(limit=None)
    assert sorted(r.number for r in runs) == list(range(1, 81))
    assert len({r.reference for r in runs}) == 80
    assert {r.status for r in runs} == {"complete"}
    assert len(RunRegistry(path, read_only=True).get_run(runs[0].reference).stages) == 1


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def runs_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    app.add_typer(runs_app, name="runs")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def populate(root: Path) -> list[str]:
    registry = RunRegistry(root / "data" / "runs.sqlite")
    first = start(registry, notes="baseline run\nmore detail")
    finish(registry, first.reference)
    second = start(
        registry, command=["/venv/bin/curi", "run", "exp", "params/p.yaml", "--overwrite"]
    )
    finish(registry, second.reference, status="complete", error=None, failed_stage=None)
    return [first.reference, second.reference]


def test_cli_ls_table_and_json(tmp_path, runs_cli):
    first, second = populate(tmp_path)
    result = runs_cli("runs", "ls")
    assert result.exit_code == 0, result.output
    assert first in result.output and second in result.output
    assert "complete" in result.output and "error" in result.output
    assert result.output.index(second) < result.output.index(first)  # newest first

    data = json.loads(runs_cli("runs", "ls", "--json").output)
    assert data["registry"].endswith("runs.sqlite")
    assert [r["reference"] for r in data["runs"]] == [second, first]
    assert data["runs"][1]["counts"]["failed"] == 1
    assert "stages" not in data["runs"][0]

    only_errors = json.loads(runs_cli("runs", "ls", "--status", "error", "--json").output)
    assert [r["reference"] for r in only_errors["runs"]] == [first]
    assert runs_cli("runs", "ls", "--status", "bogus").exit_code == 2


def test_ls_table_adds_started_notes_and_command_when_they_fit(tmp_path):
    from rich.console import Console

    from curifactory_cli.cli.runs import _runs_table

    populate(tmp_path)
    runs = RunRegistry(tmp_path / "data" / "runs.sqlite").list_runs()
    wide = Console(width=200, record=True)
    wide.print(_runs_table(runs, 200))
    text = wide.export_text()
    for header in ("reference", "status", "started", "duration", "notes", "command"):
        assert header in text
    assert "baseline run" in text and "more detail" not in text  # first line of the notes
    assert "curi run exp params/p.yaml --overwrite" in text
    narrow = Console(width=80, record=True)
    narrow.print(_runs_table(runs, 80))
    lines = narrow.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "complete" in lines[1] and "\u2026" not in lines[1]  # left out, not squeezed


def test_cli_show_table_and_json(tmp_path, runs_cli):
    first, second = populate(tmp_path)
    result = runs_cli("runs", "show", first)
    assert result.exit_code == 0, result.output
    for text in ("error", "ZeroDivisionError", "total [a]", "load", "cached", "failed"):
        assert text in result.output
    assert "curi run exp params/p.yaml" in result.output  # reproduce
    assert "cccccccccccc (uncommitted changes)" in result.output

    data = json.loads(runs_cli("runs", "show", second, "--json").output)
    assert data["reference"] == second
    assert data["reproduce"] == "curi run exp params/p.yaml"  # --overwrite dropped
    assert [s["stage"] for s in data["stages"]] == ["load", "total"]
    assert set(data["stages"][0]) == {
        "stage",
        "record",
        "outcome",
        "reason",
        "seconds",
        "key",
        "entry",
        "inputs",
        "aggregate",
    }


def test_cli_errors(tmp_path, runs_cli):
    result = runs_cli("runs", "ls")
    assert result.exit_code == 0 and "no runs recorded yet" in result.output
    result = runs_cli("runs", "show", "exp_1")
    assert result.exit_code == 2 and "no runs recorded yet" in result.output
    assert not (tmp_path / "data").exists()  # reading never creates the registry

    populate(tmp_path)
    result = runs_cli("runs", "show", "exp")
    assert result.exit_code == 2 and "ambiguous" in result.output


def test_cli_registry_option(tmp_path, runs_cli):
    elsewhere = tmp_path / "other"
    (reference, _) = populate(elsewhere)
    result = runs_cli(
        "runs", "show", reference[:4], "--registry", str(elsewhere / "data" / "runs.sqlite")
    )
    assert result.exit_code == 2 and "ambiguous" in result.output
    result = runs_cli("runs", "ls", "--registry", str(elsewhere / "data" / "runs.sqlite"), "--json")
    assert len(json.loads(result.output)["runs"]) == 2


def test_the_entries_each_set_used_newest_run_first_over_the_last_runs(registry, tmp_path):
    """What a miss is explained against: (set, stage) -> the entries its calls used, newest
    run first, other experiments and calls with no entry left out, the last `runs` only."""

    def call(stage: str, record: str, entry: str | None) -> StageRecord:
        return StageRecord(stage=stage, record=record, outcome="cached", entry=entry)

    assert RunRegistry(tmp_path / "none.sqlite", read_only=True).entries_used("exp") == {}
    for number in (1, 2, 3):
        ref = start(registry).reference
        stages = [call("fit", "a", f"exp/h/fit-{number}"), call("fit", "b", None)]
        finish(registry, ref, stages=stages)
    finish(registry, start(registry, "other").reference, stages=[call("fit", "a", "x")])
    assert registry.entries_used("exp") == {
        ("a", "fit"): ["exp/h/fit-3", "exp/h/fit-2", "exp/h/fit-1"]
    }
    assert registry.entries_used("exp", runs=2) == {("a", "fit"): ["exp/h/fit-3", "exp/h/fit-2"]}
