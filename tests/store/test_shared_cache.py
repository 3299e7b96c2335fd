"""A cache shared through S3 (moto's server on 127.0.0.1, through s3fs): two clones of a
project share one bucket, as a team or a CI job would; damage on the bucket is caught; a
writer killed mid-upload leaves nothing that loads; the cache commands work on the bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import Project

pytest.importorskip("s3fs")

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["data"], cachers=[JsonCacher])
def make(record):
    record.state.setdefault("calls", []).append("make")
    return [record.params.n * i for i in range(5)]


@cf.stage(inputs=["data"], outputs=["total"], cachers=[PickleCacher])
def total(record, data):
    return {"sum": sum(data), "n": record.params.n}


@cf.aggregate(inputs=["total"], outputs=["table"], cachers=[JsonCacher])
def table(record, records, total):
    return {r.params.name: total[r]["sum"] for r in records}


def run(param_sets, manager):
    records = []
    for params in param_sets:
        record = cf.Record(manager, params)
        total(make(record))
        records.append(record)
    table(cf.Record(manager, None), records)
"""

PARAMS = "- name: a\n  n: 1\n- name: b\n  n: 2\n- name: c\n  n: 3\n"
EXPECTED = {"a": 10, "b": 20, "c": 30}


def clone(base, name: str) -> Project:
    project = Project(base / name)
    project.write("experiments/team.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    return project


def table_of(result) -> dict:
    return next(r for r in result.records if r.params is None).state["table"]


def test_a_second_clone_reuses_what_the_first_computed(tmp_path, bucket):
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    ran = first.run("team", "p", remote=bucket)
    assert ran.ok, ran.error
    assert ran.counts()["executed"] == 7
    assert table_of(ran) == EXPECTED

    again = second.run("team", "p", remote=bucket)
    assert again.ok, again.error
    assert again.executed() == []
    assert table_of(again) == EXPECTED
    # Now local: a third run makes no remote call at all.
    assert len(second.entries()) == 7
    third = second.run("team", "p", remote=bucket)
    assert third.store.remote.calls == 0
    assert third.executed() == []


def test_the_bucket_as_the_only_cache(tmp_path, bucket, monkeypatch):
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", cache_dir=bucket).ok
    assert not first.cache.exists()  # nothing kept in the project
    monkeypatch.setenv("CURI_CACHE", bucket)  # the cache from the environment this time
    again = second.run("team", "p")
    assert again.ok, again.error
    assert again.executed() == [] and table_of(again) == EXPECTED


def _bucket_files(url: str) -> dict[str, int]:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    path = url.removeprefix("s3://")
    return {k: v["size"] for k, v in fs.find(path, detail=True).items()}


def _overwrite(url: str, suffix: str, data: bytes) -> str:
    import s3fs

    fs = s3fs.S3FileSystem()
    name = sorted(k for k in _bucket_files(url) if k.endswith(suffix))[0]
    fs.pipe_file(name, data)
    return name


@pytest.mark.parametrize("damage", ["same size", "truncated"])
def test_a_damaged_object_is_detected_and_recomputed(tmp_path, bucket, damage):
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", remote=bucket).ok
    # The aggregate's table: what the run returns, so it must be loaded.
    files = _bucket_files(bucket)
    (name,) = [k for k in files if "/table-" in k and k.endswith("table.json")]
    bad = b"x" * files[name] if damage == "same size" else b"{"
    _overwrite(bucket, "table.json", bad)
    result = second.run("team", "p", remote=bucket)
    assert result.ok, result.error
    assert table_of(result) == EXPECTED
    assert [stage for stage, _ in result.executed()] == ["table"]  # computed again
    warned = " ".join(result.warnings)
    assert "remote entry unusable" in warned or "wrong size" in warned


def test_a_writer_killed_mid_upload_leaves_no_entry_that_loads(tmp_path, bucket):
    project = clone(tmp_path, "alice")
    env = {**os.environ, "CURI_FAULT": "remote-before-meta"}
    proc = subprocess.run(
        [sys.executable, "-m", "curifactory_cli", "run", "team", "params/p.yaml", "-q",
         "--cache", bucket],
        cwd=project.root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 86, proc.stderr  # died between the upload and the commit
    uploaded = _bucket_files(bucket)
    assert uploaded and not any(k.endswith("meta.json") for k in uploaded)

    other = clone(tmp_path, "bob")
    result = other.run("team", "p", cache_dir=bucket)
    assert result.ok and table_of(result) == EXPECTED
    assert result.counts()["executed"] == 7  # nothing half-written was taken for cached

    # `cache gc` removes the abandoned upload once it is older than the grace period.
    from curifactory_cli.store.remote import FsspecStore

    store = FsspecStore(bucket)
    assert store.leftovers(time.time()) == []  # young: a writer may still be uploading
    left = store.leftovers(time.time() + 7200)
    assert left and all("no meta.json names it" in reason for _, reason in left)


def test_workers_upload_to_the_bucket(tmp_path, bucket):
    project = clone(tmp_path, "alice")
    result = project.run("team", "p", cache_dir=bucket, workers=2)
    assert result.ok, result.error and table_of(result) == EXPECTED
    metas = [k for k in _bucket_files(bucket) if k.endswith("meta.json")]
    assert len(metas) == 7


# ------------------------------------------------------------------ the cache commands
def test_cache_commands_work_on_the_bucket(tmp_path, bucket, monkeypatch):
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    project = clone(tmp_path, "alice")
    assert project.run("team", "p", cache_dir=bucket).ok
    monkeypatch.chdir(project.root)
    runner = CliRunner()

    listed = runner.invoke(app, ["cache", "ls", "--cache", bucket, "--json"])
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert doc["cache_dir"] == bucket
    assert sorted({e["stage"] for e in doc["entries"]}) == ["make", "table", "total"]
    assert len(doc["entries"]) == 7

    some = doc["entries"][0]["id"]
    shown = runner.invoke(app, ["cache", "inspect", some, "--cache", bucket])
    assert shown.exit_code == 0, shown.output
    assert bucket in shown.output

    dumped = runner.invoke(app, ["cache", "dump", some, "--cache", bucket, "--json"])
    assert dumped.exit_code == 0, dumped.output

    verified = runner.invoke(app, ["cache", "verify", "--cache", bucket])
    assert verified.exit_code == 0, verified.output
    _overwrite(bucket, "total.pkl", b"\x80" * 3)  # damage one
    verified = runner.invoke(app, ["cache", "verify", "--cache", bucket, "--json"])
    assert verified.exit_code == 1, verified.output

    du = runner.invoke(app, ["cache", "du", "--cache", bucket, "--json"])
    assert du.exit_code == 0 and json.loads(du.stdout)["total"]["entries"] == 7

    cleared = runner.invoke(app, ["cache", "clear", "--cache", bucket, "-s", "make", "--yes"])
    assert cleared.exit_code == 0, cleared.output
    left = json.loads(runner.invoke(app, ["cache", "ls", "--cache", bucket, "--json"]).stdout)
    assert sorted({e["stage"] for e in left["entries"]}) == ["table", "total"]


def test_push_and_pull(tmp_path, bucket, monkeypatch):
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    runner = CliRunner()
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p").ok  # local only

    monkeypatch.chdir(first.root)
    pushed = runner.invoke(app, ["cache", "push", "--remote", bucket, "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["pushed"] == 7
    again = runner.invoke(app, ["cache", "push", "--remote", bucket, "--json"])
    assert json.loads(again.stdout)["pushed"] == 0  # already there

    monkeypatch.chdir(second.root)
    # The remote from the project settings this time.
    second.write("curi.toml", f'remote = "{bucket}"\n')
    pulled = runner.invoke(app, ["cache", "pull", "-s", "make", "--json"])
    assert pulled.exit_code == 0, pulled.output
    assert json.loads(pulled.stdout)["pulled"] == 3
    assert len(second.entries()) == 3
    rest = runner.invoke(app, ["cache", "pull"])
    assert rest.exit_code == 0, rest.output
    assert len(second.entries()) == 7
    result = second.run("team", "p")
    assert result.executed() == [] and table_of(result) == EXPECTED


def test_push_without_a_remote_is_a_clear_error(project, cli):
    result = cli("cache", "push")
    assert result.exit_code == 2
    assert "no remote" in result.output and "--remote" in result.output


class ElsewhereRunner:
    """Runs jobs as a worker on another machine would: it sees neither the driver's draft
    folders nor its local cache tier, only the bucket."""

    capacity = 2
    inline = False
    shares_files = False

    def __init__(self) -> None:
        self.done: list = []
        self.jobs: list = []

    @staticmethod
    def _away(source):
        from dataclasses import replace

        from curifactory_cli.engine.jobs import InputEntry

        if isinstance(source, InputEntry):
            return replace(source, directory="/elsewhere" + source.directory)
        return source

    def submit(self, job, record, fn=None) -> None:
        from dataclasses import replace

        from curifactory_cli.engine.execute import run_job

        job = replace(
            job,
            draft=None if job.draft is None else "/elsewhere" + job.draft,
            inputs=tuple((n, self._away(s)) for n, s in job.inputs),
            aggregate_inputs=tuple(
                (n, tuple((i, self._away(s)) for i, s in pairs))
                for n, pairs in job.aggregate_inputs
            ),
        )
        self.jobs.append(job)
        self.done.append(run_job(job))

    def wait(self, timeout):
        done, self.done = self.done, []
        return done

    def close(self, cancel: bool = False) -> None:
        self.done.clear()


def test_workers_on_other_machines_read_and_write_the_bucket(tmp_path, bucket, monkeypatch):
    import curifactory_cli.run.runner as runner_module

    runner = ElsewhereRunner()
    ordinary = runner_module._make_runner
    monkeypatch.setattr(runner_module, "_make_runner", lambda *a: runner)
    project = clone(tmp_path, "alice")
    result = project.run("team", "p", cache_dir=bucket)
    assert result.ok, result.error
    assert table_of(result) == EXPECTED
    assert len(runner.jobs) == 7  # every stage call ran "elsewhere"
    assert all(j.upload is not None for j in runner.jobs)
    assert not os.path.exists("/elsewhere")  # nothing was staged at the driver's paths
    metas = [k for k in _bucket_files(bucket) if k.endswith("meta.json")]
    assert len(metas) == 7
    # Another clone, with an ordinary local runner, reuses all of it.
    monkeypatch.setattr(runner_module, "_make_runner", ordinary)
    again = clone(tmp_path, "bob").run("team", "p", cache_dir=bucket)
    assert again.ok and again.executed() == [] and table_of(again) == EXPECTED


def test_a_store_whose_library_is_missing_is_a_clear_error(project, cli):
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed")
    project.write("experiments/team.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    result = cli("run", "team", "p", "--cache", "gs://lab-bucket/cache")
    assert result.exit_code == 2, result.output
    assert "gs:// filesystem is not installed" in result.output
    assert "pip install 'curifactory-cli[gcs]'" in result.output
    listed = cli("cache", "ls", "--cache", "gs://lab-bucket/cache")
    assert listed.exit_code == 2 and "curifactory-cli[gcs]" in listed.output


def test_an_unreachable_store_is_a_clear_error(project, cli, monkeypatch, s3_endpoint):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    project.write("experiments/team.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    result = cli("cache", "ls", "--cache", "s3://nowhere/cache")
    assert result.exit_code == 1
    assert "cannot list" in result.output and "Traceback" not in result.output


def test_gc_on_the_bucket_removes_abandoned_uploads(tmp_path, bucket, monkeypatch):
    import time as clock

    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    project = clone(tmp_path, "alice")
    assert project.run("team", "p", cache_dir=bucket).ok
    (meta,) = [k for k in _bucket_files(bucket) if "/table-" in k and k.endswith("meta.json")]
    _overwrite(bucket, meta, b"{not json")  # one entry's commit record is damaged
    import s3fs

    fs = s3fs.S3FileSystem()
    name = sorted(k for k in _bucket_files(bucket) if "/make-" in k and k.endswith("data.json"))[0]
    stray = name.rsplit("/", 2)[0] + "/" + "0" * 32 + "/data.json"
    fs.pipe_file(stray, b"[1]")  # an upload whose writer died before committing
    monkeypatch.chdir(project.root)
    real = clock.time
    monkeypatch.setattr(clock, "time", lambda: real() + 7200)  # both are two hours old
    runner = CliRunner()
    planned = runner.invoke(app, ["cache", "gc", "--cache", bucket, "--json"])
    assert planned.exit_code == 0, planned.output
    kinds = sorted(item["kind"] for item in json.loads(planned.stdout)["items"])
    assert kinds == ["leftover", "orphan"]
    done = runner.invoke(app, ["cache", "gc", "--cache", bucket, "--yes"])
    assert done.exit_code == 0, done.output
    files = _bucket_files(bucket)
    assert stray not in files
    assert len([k for k in files if k.endswith("meta.json")]) == 6


def test_dry_runs_read_the_bucket_and_write_nothing_locally(tmp_path, bucket):
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", remote=bucket).ok
    before = second.snapshot()
    result = second.run("team", "p", remote=bucket, dry=True)
    assert result.ok, result.error
    assert result.executed() == [] and table_of(result) == EXPECTED
    assert second.snapshot() == before


def test_invalidating_on_the_bucket_makes_every_clone_recompute(tmp_path, bucket, monkeypatch):
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", cache_dir=bucket).ok
    monkeypatch.chdir(first.root)
    done = CliRunner().invoke(
        app, ["cache", "invalidate", "team", "-s", "total", "-p", "a", "--cache", bucket]
    )
    assert done.exit_code == 0, done.output
    result = second.run("team", "p", cache_dir=bucket)
    assert result.ok and table_of(result) == EXPECTED
    assert sorted(s for s, _ in result.executed()) == ["table", "total"]
    # The recomputed entries replaced the invalidated ones on the bucket.
    third = clone(tmp_path, "carol").run("team", "p", cache_dir=bucket)
    assert third.executed() == []


def test_a_damaged_input_in_the_bucket_is_recomputed_when_loaded(tmp_path, bucket):
    """With the bucket as the cache, entries are downloaded only when loaded: a damaged
    input found then is recomputed and the consumer runs again."""
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", cache_dir=bucket).ok
    files = _bucket_files(bucket)
    name = sorted(k for k in files if "/total-" in k and k.endswith("total.pkl"))[0]
    _overwrite(bucket, name, b"\x00" * files[name])  # same size: only the checksum tells
    result = second.run("team", "p", cache_dir=bucket, overwrite_stages=("table",))
    assert result.ok, result.error
    assert table_of(result) == EXPECTED
    assert sorted(s for s, _ in result.executed()) == ["table", "total"]
    assert any("recomputing" in w for w in result.warnings)


def test_a_bucket_that_does_not_exist_is_not_an_empty_cache(project, cli, bucket):
    missing = "s3://no-such-bucket-" + bucket.split("-", 1)[1]
    result = cli("cache", "ls", "--cache", missing)
    assert result.exit_code == 1, result.output
    assert "there is no bucket" in result.output


def test_plan_reads_the_bucket_and_downloads_nothing(tmp_path, bucket, monkeypatch):
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", remote=bucket).ok
    monkeypatch.chdir(second.root)
    planned = CliRunner().invoke(app, ["plan", "team", "p", "--remote", bucket, "--json"])
    assert planned.exit_code == 0, planned.output
    doc = json.loads(planned.stdout)
    assert {n["plan"] for n in doc["nodes"]} == {"cached"}
    assert not second.cache.exists()  # decided from metadata only


def test_store_full_copies_entries_served_from_the_bucket(tmp_path, bucket):
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    assert first.run("team", "p", cache_dir=bucket).ok
    result = second.run("team", "p", cache_dir=bucket, store_full=True)
    assert result.ok and result.executed() == []
    copied = sorted(p.parent.name for p in (result.store_dir / "artifacts").rglob("meta.json"))
    assert len(copied) == 7
