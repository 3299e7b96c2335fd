"""A remote tier (`--remote`, `remote` in curi.toml) that cannot be reached is left out of the
run, quickly and with one warning: offline work goes on from the local cache. Leaving it out
on purpose (`--no-remote`, `CURI_REMOTE=`). A bucket that is the cache still fails the run.
What a run pulled from (and pushed to) the remote, in its summary, `--json` and the registry.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import types

import pytest
from test_shared_cache import EXPECTED, PARAMS, clone, table_of

pytest.importorskip("s3fs")


def closed_endpoint() -> str:
    """An address on this machine where nothing listens (a connection is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("CURI_REMOTE", raising=False)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def offline_project(tmp_path, monkeypatch, endpoint: str):
    """A clone whose curi.toml names a remote at `endpoint`, as the current folder."""
    project = clone(tmp_path, "alice")
    project.write(
        "curi.toml",
        f'remote = "s3://lab-bucket/curi"\n[storage_options]\nendpoint_url = "{endpoint}"\n',
    )
    monkeypatch.chdir(project.root)
    return project


def curi(*args: str):
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import app

    return CliRunner().invoke(app, list(args))


UNREACHABLE = {
    "refused": closed_endpoint,
    "unresolvable host": lambda: "http://curi-no-such-host.invalid:9000",
}


@pytest.mark.parametrize("kind", list(UNREACHABLE))
def test_an_unreachable_remote_leaves_the_run_to_the_local_cache(
    tmp_path, monkeypatch, credentials, kind
):
    project = offline_project(tmp_path, monkeypatch, UNREACHABLE[kind]())
    started = time.perf_counter()
    result = curi("run", "team", "p", "--no-report")
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    (warning,) = warnings
    said = re.fullmatch(
        r"warning: remote s3://lab-bucket/curi cannot be reached \((?P<reason>.+)\): this run "
        r"uses the local cache only; what it computes stays there until a run reaches the "
        r"remote again or `curi cache push` uploads it\. To leave the remote out: "
        r"--no-remote, or CURI_REMOTE= \(empty\)",
        warning,
    )
    assert said is not None, warning
    assert said["reason"] not in ("", "None") and "cannot reach" not in said["reason"], warning
    assert "--no-remote" in warning and "CURI_REMOTE=" in warning
    assert "`curi cache push`" in warning
    assert "remote not reached (s3://lab-bucket/curi)" in result.stdout
    assert len(project.entries()) == 7  # all computed and kept locally
    # A refused connection or a name that does not resolve is known in about a second, not
    # after the storage library's 9-13 s of retries.
    assert elapsed < 5, f"{elapsed:.1f} s"

    again = curi("run", "team", "p", "--no-report", "--json")
    assert again.exit_code == 0, again.output
    document = json.loads(again.stdout)
    assert document["counts"]["cached"] == 7
    # Everything is local, but what the first run computed is still to upload: the remote
    # is asked (once, briefly), and the entries stay listed for a later run.
    assert document["remote"]["reached"] is False
    assert len(document["warnings"]) == 1
    assert len((project.cache / ".unpushed").read_text().split()) == 7


def test_plan_with_an_unreachable_remote_plans_from_the_local_cache(
    tmp_path, monkeypatch, credentials
):
    offline_project(tmp_path, monkeypatch, closed_endpoint())
    planned = curi("plan", "team", "p", "--json")
    assert planned.exit_code == 0, planned.output
    document = json.loads(planned.stdout)
    assert {n["plan"] for n in document["nodes"]} <= {"run", "maybe"}  # nothing cached
    assert any("cannot be reached" in w for w in document["warnings"])


@pytest.mark.parametrize("how", ["--no-remote", "CURI_REMOTE="])
def test_a_configured_remote_can_be_left_out(tmp_path, monkeypatch, credentials, how):
    project = offline_project(tmp_path, monkeypatch, closed_endpoint())
    args = ["run", "team", "p", "--no-report", "--json"]
    if how == "--no-remote":
        args.append("--no-remote")
    else:
        monkeypatch.setenv("CURI_REMOTE", "")
    result = curi(*args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["remote"] is None  # no remote tier at all: nothing probed, no warning
    assert document["warnings"] == [] and "warning" not in result.stderr
    assert len(project.entries()) == 7
    shown = curi("config", "--json")
    if how == "CURI_REMOTE=":
        remote = json.loads(shown.stdout)["remote"]
        assert remote["value"] is None and remote["source"] == "CURI_REMOTE"


def test_remote_and_no_remote_together_are_a_usage_error(tmp_path, monkeypatch, credentials):
    offline_project(tmp_path, monkeypatch, closed_endpoint())
    result = curi("run", "team", "p", "--remote", "s3://other/x", "--no-remote")
    assert result.exit_code == 2
    assert "--remote and --no-remote" in result.output and "Traceback" not in result.output


def test_an_unreachable_bucket_as_the_cache_fails_the_run_at_once(
    tmp_path, monkeypatch, credentials
):
    project = clone(tmp_path, "alice")
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint())
    started = time.perf_counter()
    result = curi("run", "team", "p", "--cache", "s3://lab-bucket/curi", "--no-report")
    elapsed = time.perf_counter() - started
    assert result.exit_code == 1, result.output  # a failed remote call (README: exit codes)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach s3://lab-bucket/curi" in errors[0]
    assert "Traceback" not in result.output
    assert "warning" not in result.stderr  # the only copy: no falling back
    assert elapsed < 5, f"{elapsed:.1f} s"


# ------------------------------------------------------------- the network goes away
class Link:
    """A TCP relay to the S3 server that can be cut: every connection through it is closed
    and new ones are refused, as when a laptop goes offline."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def off(self) -> None:
        self.cut = True
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


SWITCH = """
import sys

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["data"], cachers=[JsonCacher])
def make(record):
    if record.params.name == "a" and "network" in sys.modules:
        sys.modules["network"].off()  # the test's switch: the network goes away now
    return [record.params.n * i for i in range(5)]


@cf.stage(inputs=["data"], outputs=["total"], cachers=[PickleCacher])
def total(record, data):
    return {"sum": sum(data), "n": record.params.n}


def run(param_sets, manager):
    for params in param_sets:
        total(make(cf.Record(manager, params)))
"""


def test_a_remote_lost_mid_run_leaves_the_rest_to_the_local_cache(
    tmp_path, bucket, s3_endpoint, monkeypatch
):
    """Bob recomputes `make` (the same data as Alice's); the network goes away while make [a]
    runs. Alice's `total` entries on the bucket cannot be downloaded then: they are computed
    here, the run succeeds with one warning, everything stays in the local cache, and
    `curi cache push` uploads what the bucket lacks once back online."""
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    for project in (first, second):
        project.write("experiments/team.py", SWITCH)
    assert first.run("team", "p", remote=bucket).ok  # a, b, c: 6 entries on the bucket

    link = Link(s3_endpoint)
    monkeypatch.setitem(sys.modules, "network", types.SimpleNamespace(off=link.off))
    monkeypatch.setenv("AWS_ENDPOINT_URL", link.endpoint)
    # Once the link is cut, the first failed download says so at once (by default botocore
    # retries a refused connection for about 9 s, once: then the remote is left out).
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a client made for Alice's run knows no link
    second.write("params/p.yaml", PARAMS + "- name: d\n  n: 4\n")
    monkeypatch.chdir(second.root)
    result = curi("run", "team", "p", "--remote", bucket, "--overwrite-stage", "make",
                  "--no-report", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    executed = sorted((n["stage"], n["record"]) for n in document["nodes"]
                      if n["outcome"] == "executed")  # fmt: skip
    assert executed == [(stage, name) for stage in ("make", "total") for name in "abcd"]
    (warning,) = document["warnings"]
    assert f"remote {bucket} stopped answering" in warning and "--no-remote" in warning
    assert "the rest of this run uses the local cache only" in warning
    assert document["remote"]["reached"] is False
    assert document["remote"]["pushed"]["entries"] == 0
    assert len(second.entries()) == 8  # all computed and kept locally
    listed = (second.cache / ".unpushed").read_text().split()
    assert sorted(listed) == sorted(str(e.relative_to(second.cache)) for e in second.entries())

    # Back online: `curi cache push` uploads what the bucket lacks (d's two entries), and
    # no run need upload them any more.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    pushed = curi("cache", "push", "--remote", bucket, "--json")
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["pushed"] == 2
    assert not (second.cache / ".unpushed").exists()


def test_the_next_run_that_reaches_the_remote_uploads_what_an_offline_run_kept(
    tmp_path, bucket, s3_endpoint, monkeypatch
):
    import s3fs

    first = clone(tmp_path, "alice")
    monkeypatch.chdir(first.root)
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint())
    s3fs.S3FileSystem.clear_instance_cache()
    offline = curi("run", "team", "p", "--remote", bucket, "--no-report", "--json")
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["remote"]["reached"] is False
    assert len((first.cache / ".unpushed").read_text().split()) == 7

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # back online
    s3fs.S3FileSystem.clear_instance_cache()
    online = curi("run", "team", "p", "--remote", bucket, "--no-report", "--no-progress")
    assert online.exit_code == 0, online.output
    summary = online.stdout.strip().splitlines()[-1]
    assert summary.startswith("ok: 0 executed, 7 cached") and "; pushed 7 entries" in summary
    assert not (first.cache / ".unpushed").exists()
    # Nothing left to upload: the next warm run makes no remote call at all.
    again = first.run("team", "p", remote=bucket)
    assert again.store.remote.calls == 0

    other = clone(tmp_path, "bob").run("team", "p", remote=bucket)
    assert other.executed() == [] and table_of(other) == EXPECTED
    assert other.remote["pulled"]["entries"] == 7


# ------------------------------------------------------------- what the run moved
def test_a_run_says_how_much_it_pulled_from_the_remote(tmp_path, bucket, monkeypatch):
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.store.index import human_size

    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    monkeypatch.chdir(first.root)
    ran = curi("run", "team", "p", "--remote", bucket, "--no-report", "--json")
    assert ran.exit_code == 0, ran.output
    pushed = json.loads(ran.stdout)["remote"]["pushed"]
    assert pushed["entries"] == 7

    monkeypatch.chdir(second.root)
    result = curi("run", "team", "p", "--remote", bucket, "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    # The bytes of the entries' files, as they now are in the local cache.
    size = sum(
        f.stat().st_size
        for entry in second.entries()
        for f in entry.rglob("*")
        if f.is_file() and f.name != "meta.json"
    )
    assert size == pushed["bytes"]  # what alice uploaded is what bob downloaded
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("ok: 0 executed, 7 cached")
    assert summary.endswith(f"; pulled 7 entries, {human_size(size)} ({bucket})")

    registry = RunRegistry(registry_path(second.root))
    (run,) = registry.list_runs()
    assert run.counts["pulled"] == 7 and run.counts["pulled_bytes"] == size
    shown = curi("runs", "show", run.reference)
    assert f"counts  7 cached, 7 pulled ({human_size(size)})" in shown.stdout, shown.output

    again = second.run("team", "p", remote=bucket)
    assert again.executed() == [] and table_of(again) == EXPECTED
    assert again.remote["pulled"] == {"entries": 0, "bytes": 0}  # all local now


SESSION = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["total"], cachers=[JsonCacher])
def total(record):
    return {"sum": record.params.a + 1}


params = cf.ExperimentParameters(name="x")
params.a = 2
record = total(cf.Record(cf.ArtifactManager("sums"), params))
print("total", record.state["total"], flush=True)
"""


def test_an_interactive_session_works_offline_and_says_so_at_once(
    tmp_path, monkeypatch, credentials
):
    import subprocess

    project = offline_project(tmp_path, monkeypatch, closed_endpoint())
    project.write("nb.py", SESSION)
    proc = subprocess.run(
        [sys.executable, "nb.py"], cwd=project.root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    warned = [i for i, line in enumerate(lines) if line.startswith("warning:")]
    assert len(warned) == 1 and "cannot be reached" in lines[warned[0]], proc.stdout
    assert warned[0] < lines.index("total {'sum': 3}")  # under the cell that met it
    assert len(list(project.cache.rglob("meta.json"))) == 1


def test_an_offline_run_keeps_its_index_lines_for_the_remote_so_other_machines_share(
    tmp_path, bucket, s3_endpoint, monkeypatch
):
    # Sets that share entries, computed offline: the next run that reaches the bucket gives
    # it the entries and their index lines, so a new set on another machine shares them.
    import s3fs
    from test_sharing import SWEEP, executed, sweep_params

    first = clone(tmp_path, "alice")
    first.write("experiments/sweep.py", SWEEP)
    first.write("params/s.yaml", sweep_params([0.1, 0.2]))
    monkeypatch.chdir(first.root)
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint())
    s3fs.S3FileSystem.clear_instance_cache()
    offline = first.run("sweep", "params/s.yaml", remote=bucket)
    assert offline.ok and offline.remote["reached"] is False
    assert (first.cache / ".unpushed-reads").exists()

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # back online
    s3fs.S3FileSystem.clear_instance_cache()
    online = first.run("sweep", "params/s.yaml", remote=bucket)
    assert online.ok and online.remote["pushed"]["entries"] == 6
    assert not (first.cache / ".unpushed-reads").exists()

    other = clone(tmp_path, "bob")
    other.write("experiments/sweep.py", SWEEP)
    other.write("params/s.yaml", sweep_params([0.3]))
    monkeypatch.chdir(other.root)
    third = other.run("sweep", "params/s.yaml", remote=bucket)
    assert third.ok, third.error
    assert executed(third) == {"train": 1, "evaluate": 1}
