# Copyright (c) 2022, UT Battelle, LLC. All rights reserved.
# BSD-3-Clause (see tests/curifactory_examples/LICENSE).
# Adapted from ORNL/curifactory v0.20.1 test/conftest.py: the same fixtures, but each test runs
# in its own tmp_path laid out as Curifactory's repository (test/examples/ inside it) and, as
# curi finds a project, with test/examples' experiments/ and params/ at its top; `mocker` is a
# small stand-in for pytest-mock's (not a dependency here).
"""Fixtures of Curifactory's test suite, adapted to run in a tmp_path per test."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest

from curifactory_cli.manager import ArtifactManager
from curifactory_cli.params import ExperimentParameters

VENDORED = Path(__file__).resolve().parents[1] / "curifactory_examples" / "test"
_NO_CACHE = shutil.ignore_patterns("__pycache__")
# The copy imported as the `test` package (outside the work tree: importing writes bytecode).
IMPORTED = Path(tempfile.mkdtemp(prefix="curifactory-suite-")) / "test"
shutil.copytree(VENDORED, IMPORTED, ignore=_NO_CACHE)
atexit.register(shutil.rmtree, IMPORTED.parent, True)
EXAMPLES = IMPORTED / "examples"


def _import_curifactory_test_package() -> None:
    """Make `import test.examples...` (as Curifactory's tests write it) reach a copy of
    Curifactory's test/ folder, not the standard library's `test` package."""
    loaded = sys.modules.get("test")
    if loaded is not None and Path(loaded.__file__ or "").parent == IMPORTED:
        return
    spec = importlib.util.spec_from_file_location(
        "test", IMPORTED / "__init__.py", submodule_search_locations=[str(IMPORTED)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["test"] = module
    spec.loader.exec_module(module)


_import_curifactory_test_package()
# test_base.py imports `experiments`, `params` and `stages` from test/examples at collection
# (it appends the relative "test/examples" to sys.path, as Curifactory's tests run from the
# repository's root): make them importable while collecting only (pytest_collection_finish).
sys.path.append(str(EXAMPLES))

_USER_MODULES = ("experiments", "params", "stages")


def _forget_example_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _USER_MODULES:
            del sys.modules[name]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "noautofixt: leave out the autouse curifactory_config.json (Curifactory's)"
    )


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this suite's skipped tests (a documented difference, or skipped in Curifactory
    itself) as `ported_difference`: the summary counts them in one line instead of listing
    each (tests/conftest.py). This hook sees every collected item: only ours are marked."""
    for item in items:
        if item.path.resolve().is_relative_to(HERE) and item.get_closest_marker("skip"):
            item.add_marker(pytest.mark.ported_difference)


def pytest_collection_finish(session: pytest.Session) -> None:
    for entry in (str(EXAMPLES), "test/examples"):
        while entry in sys.path:
            sys.path.remove(entry)
    _forget_example_modules()


@pytest.fixture(autouse=True)
def curifactory_repo(tmp_path, monkeypatch):
    """tmp_path as Curifactory's repository root while a test runs: test/examples/ in it, and
    its experiments/ and params/ at the top, where curi looks for them."""
    shutil.copytree(VENDORED, tmp_path / "test", ignore=_NO_CACHE)
    shutil.copytree(VENDORED / "examples" / "experiments", tmp_path / "experiments")
    shutil.copytree(VENDORED / "examples" / "params", tmp_path / "params", ignore=_NO_CACHE)
    monkeypatch.chdir(tmp_path)
    # Curifactory's examples extend sys.path when imported (simple_cache.py appends "../"),
    # and curi puts the project folder on it: leave it as it was for the next test.
    monkeypatch.setattr(sys, "path", list(sys.path))
    _forget_example_modules()
    yield tmp_path
    _forget_example_modules()


class _Patcher:
    def __init__(self, started: list) -> None:
        self._started = started

    def _start(self, patcher):
        self._started.append(patcher)
        return patcher.start()

    def __call__(self, target, *args, **kwargs):
        return self._start(mock.patch(target, *args, **kwargs))

    def object(self, target, attribute, *args, **kwargs):
        return self._start(mock.patch.object(target, attribute, *args, **kwargs))


class _Mocker:
    """The part of pytest-mock's `mocker` that Curifactory's tests use."""

    def __init__(self) -> None:
        self._started: list = []
        self.patch = _Patcher(self._started)

    def stopall(self) -> None:
        for patcher in reversed(self._started):
            patcher.stop()
        self._started.clear()


@pytest.fixture
def mocker():
    patches = _Mocker()
    yield patches
    patches.stopall()


def _close(manager) -> None:
    close = getattr(manager, "close", None)
    if callable(close):
        close()


@pytest.fixture()
def sample_args():
    return ExperimentParameters(name="sample_args", hash="sample_hash")


@pytest.fixture()
def clear_rank_env_vars():
    yield
    if "LOCAL_RANK" in os.environ:
        os.environ.pop("LOCAL_RANK")
    if "NODE_RANK" in os.environ:
        os.environ.pop("NODE_RANK")


@pytest.fixture(autouse=True)
def configuration_file(request, configuration, curifactory_repo):
    if "noautofixt" in request.keywords:
        yield
        return

    # Written as in Curifactory (curi itself reads curi.toml, not this file).
    with open("curifactory_config.json", "w") as outfile:
        json.dump(configuration, outfile)
    yield
    with contextlib.suppress(FileNotFoundError):
        os.remove("curifactory_config.json")


@pytest.fixture()
def project_folder(curifactory_repo):
    project_dir = "test/testprojects/myproject"

    current_dir = os.getcwd()
    os.makedirs(project_dir, exist_ok=True)
    os.chdir(project_dir)
    yield project_dir
    os.chdir(current_dir)
    shutil.rmtree(project_dir)


@pytest.fixture()
def configuration():
    config = {
        "experiments_module_name": "test.examples.experiments",
        "params_module_name": "test.examples.params",
        "manager_cache_path": "test/examples/data",
        "cache_path": "test/examples/data/cache",
        "runs_path": "test/examples/data/runs",
        "logs_path": "test/examples/logs",
        "notebooks_path": "test/examples/notebooks",
        "reports_path": "test/examples/reports",
        "report_css_path": "test/examples/reports/style.css",
    }
    return config


# Curifactory's three manager fixtures also patch curifactory.utils.get_configuration to give
# the configuration above; curi's settings come from curi.toml (README, "Compatibility with
# Curifactory"), so the managers here use the project's defaults (data/cache in tmp_path).
@pytest.fixture()
def configured_test_manager(curifactory_repo):
    manager = ArtifactManager("test", live_log_debug=True)
    yield manager
    _close(manager)


@pytest.fixture()
def configured_test_manager2(curifactory_repo):
    manager = ArtifactManager("test", live_log_debug=True)
    yield manager
    _close(manager)


@pytest.fixture()
def alternate_test_manager2(curifactory_repo):
    """Meant for tests where a second artifact manager with a different 'experiment'
    is needed."""
    manager = ArtifactManager("test2", live_log_debug=True)
    yield manager
    _close(manager)


@pytest.fixture()
def clear_filesystem(curifactory_repo):
    shutil.rmtree("test/examples/data", ignore_errors=True)
    yield
    shutil.rmtree("test/examples/data", ignore_errors=True)
