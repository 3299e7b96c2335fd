"""Shared fixtures: a throwaway project folder with experiments/, params/ and a cache."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curifactory_cli.run.runner import RunOptions, run_experiment

# The tests mirror the package (tests/engine, tests/store, ...); a test module may reuse
# another's helpers (`from test_workers import setup`) whichever folder it is in.
for _folder in ("cli", "engine", "model", "report", "run", "store"):
    sys.path.insert(0, str(Path(__file__).parent / _folder))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ported_difference: a test of Curifactory's suite skipped for a documented difference "
        "(tests/curifactory_suite/differences.py); counted, not listed, in the summary",
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Skips, listed unless they are ported-suite differences: those are one line with their
    count (README, "Compatibility with Curifactory", has them by file and reason). `-rs` or
    `-ra` on the command line lists every skip, as pytest does."""
    if "s" in _report_chars(config):
        return  # pytest lists every skip itself
    skipped = terminalreporter.stats.get("skipped", [])
    ported = [r for r in skipped if "ported_difference" in r.keywords]
    others: dict[tuple[str, str], int] = {}
    for report in skipped:
        if "ported_difference" not in report.keywords and isinstance(report.longrepr, tuple):
            path, line, reason = report.longrepr
            with contextlib.suppress(ValueError):  # as pytest shows it: from the rootdir
                path = Path(path).relative_to(config.rootpath)
            where = f"{path}:{line}" if line is not None else str(path)
            what = (where, reason.removeprefix("Skipped: "))
            others[what] = others.get(what, 0) + 1
    if not ported and not others:
        return
    terminalreporter.section("skipped", sep="-")
    for (where, reason), count in others.items():
        terminalreporter.line(f"SKIPPED [{count}] {where}: {reason}")
    if ported:
        tests = "test" if len(ported) == 1 else "tests"
        terminalreporter.line(
            f"{len(ported)} ported Curifactory {tests} skipped for documented differences "
            "(tests/curifactory_suite/differences.py; -rs lists them)"
        )


def _report_chars(config: pytest.Config) -> str:
    chars = config.getoption("reportchars") or ""
    return "fEsxXpP" if "a" in chars or "A" in chars else chars


class Project:
    """A temporary project; `write` files into it, `run` experiments through the Python API."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "data" / "cache"
        self.workers = 1  # the `job_runner` fixture runs a test with worker processes too

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        # Make edits visible to a re-import within the same second.
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        return path

    def run(self, experiment: str, *params: str, **options):
        """Run through the Python API; returns the RunResult (a failed stage is result.error)."""
        _forget_user_modules()
        if self.workers > 1:
            options.setdefault("workers", self.workers)
        return run_experiment(
            RunOptions(experiment=experiment, params=params, root=str(self.root), **options)
        )

    def entries(self) -> list[Path]:
        return sorted(p.parent for p in self.cache.rglob("meta.json"))

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under the project with its size and mtime, to prove nothing changed.

        Empty lock files under the cache's `.locks/` are coordination state, not cached data
        (flock-based locks keep their file), and the run registry and the reports record
        every run that started, failed ones included, so they are left out.
        """
        out = {}
        for path in sorted(self.root.rglob("*")):
            if ".locks" in path.parts and path.suffix == ".lock" and path.stat().st_size == 0:
                continue
            if path.name.startswith("runs.sqlite"):  # the registry records failed runs too
                continue
            if path.relative_to(self.root).parts[0] == "reports":  # so do the reports
                continue
            if path.parent.name == "logs" and path.suffix == ".jsonl":  # and the run logs
                continue
            if path.is_file() and "__pycache__" not in path.parts:
                st = path.stat()
                out[str(path.relative_to(self.root))] = (st.st_size, st.st_mtime_ns)
        return out


def _forget_user_modules() -> None:
    for name in list(sys.modules):
        if (
            name == "experiments"
            or name.startswith(("experiments.", "params."))
            or name == "params"
        ):
            del sys.modules[name]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # An experiment may configure logging (basicConfig(force=True)): its handler would write
    # to a stream of this test (closed by then) in every later test.
    handlers, level = list(logging.root.handlers), logging.root.level
    yield Project(tmp_path)
    _forget_user_modules()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


@pytest.fixture
def cli(project):
    """Invoke `curi` in the project folder: cli("run", "exp", "params/p.yaml")."""
    from curifactory_cli.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        _forget_user_modules()
        words = list(args)
        if project.workers > 1 and words[:1] == ["run"] and "-j" not in words:
            words[1:1] = ["-j", str(project.workers)]
        return runner.invoke(app, words, input=input)

    return invoke


@pytest.fixture(params=[1, 2], ids=["inline", "workers"])
def job_runner(request, project) -> int:
    """Run the test twice: stages in this process, then in 2 worker processes."""
    project.workers = request.param
    return request.param


# ------------------------------------------------------------------------------ S3 (moto)
@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API on 127.0.0.1: moto's server, in a thread of the test process."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch) -> str:
    """A fresh bucket; credentials and endpoint the standard way (AWS environment
    variables), which subprocesses inherit too. Returns s3://<bucket>/team-cache."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    name = f"curi-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}/team-cache"
