"""The layers hold: faces > run > engine > store and model (the import-linter contracts in
pyproject.toml), and the checker does catch an import that goes the wrong way."""

from __future__ import annotations

from pathlib import Path

import pytest

importlinter_cli = pytest.importorskip("importlinter.cli")

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    code = importlinter_cli.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True
    )
    assert code == 0


def test_a_reversed_layer_is_reported(monkeypatch, tmp_path, capsys):
    # The engine imports the store; a contract saying otherwise must break.
    config = tmp_path / "reversed.ini"
    config.write_text(
        "[importlinter]\nroot_package = curifactory_cli\n\n"
        "[importlinter:contract:reversed]\nname = reversed\ntype = layers\n"
        "layers =\n    curifactory_cli.store\n    curifactory_cli.engine\n"
    )
    monkeypatch.chdir(ROOT)
    code = importlinter_cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    assert code != 0
    assert "curifactory_cli.engine" in capsys.readouterr().out
