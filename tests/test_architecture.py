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


def _imports(path: Path, module: str, package: str, known: set[str]) -> set[str]:
    """The package's modules `path` imports: anywhere in it (inside functions and under
    TYPE_CHECKING too), a name imported from a module counted as that module."""
    import ast

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(owner(a.name) for a in node.names if a.name.startswith("curifactory_cli"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.startswith("curifactory_cli"):
                found.update(owner(f"{base}.{a.name}") or owner(base) for a in node.names)
    found.discard(None)
    found.discard(module)
    return {f for f in found if f is not None}


def import_circles() -> list[list[str]]:
    """Groups of the package's modules that import each other, directly or not (Tarjan's
    strongly connected components over every import)."""
    files = {}
    for path in (ROOT / "curifactory_cli").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = _imports(path, module, package, set(files))
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return circles


def test_no_module_imports_itself_through_others():
    """No import circle, counting imports inside functions and under TYPE_CHECKING."""
    assert import_circles() == []


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "curifactory_cli"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from curifactory_cli import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from curifactory_cli.a import f\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert import_circles() == [["curifactory_cli.a", "curifactory_cli.b"]]
