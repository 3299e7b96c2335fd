"""What `python -m pytest` prints at the end: failures and errors listed, skips of the ported
Curifactory suite (documented differences) counted in one line, other skips listed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_output(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout + done.stderr


def test_ported_suite_skips_are_counted_not_listed():
    out = pytest_output("tests/curifactory_suite/test_base.py", "-k", "ensure_config")
    assert "1 ported Curifactory test skipped for documented differences" in out, out
    assert "SKIPPED [" not in out, out
    listed = pytest_output("tests/curifactory_suite/test_base.py", "-k", "ensure_config", "-rs")
    assert "SKIPPED [1] tests/curifactory_suite/test_base.py:26: curifactory_config.json" in listed


def test_failures_errors_and_other_skips_are_still_listed(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_fails():\n    assert 1 == 2\n\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError('no fixture')\n\n"
        "def test_errors(broken):\n    pass\n\n"
        "def test_skips():\n    pytest.skip('no GPU here')\n"
    )
    # The project's settings (pyproject's addopts, tests/conftest.py's summary) on a file
    # outside its tests folder.
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    out = pytest_output(*config, "test_sample.py", cwd=tmp_path)
    assert "FAILED test_sample.py::test_fails" in out, out
    assert "ERROR test_sample.py::test_errors" in out, out
    assert "SKIPPED [1] test_sample.py:14: no GPU here" in out, out
    assert "1 failed, 1 skipped, 1 error" in out, out
