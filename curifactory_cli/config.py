"""Project settings from `[tool.curi]` in the project's `pyproject.toml`.

    [tool.curi]
    workers = 4            # or "auto": one per usable core (`curi run -j` overrides it)
    executor = "local"     # or "dask"
    scheduler = "tcp://10.0.0.5:8786"   # an existing Dask scheduler (with executor = "dask")

Command-line options win over these; these win over the defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curifactory_cli.errors import ConfigError, close_matches_hint

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class Settings:
    workers: int | str | None = None
    executor: str | None = None
    scheduler: str | None = None


_KEYS = {"workers": (int, str), "executor": (str,), "scheduler": (str,)}


def load_settings(root: Path) -> Settings:
    """The `[tool.curi]` table of `<root>/pyproject.toml`, checked; empty when there is none."""
    path = root / "pyproject.toml"
    try:
        data = path.read_bytes()
    except OSError:
        return Settings()
    if b"[tool.curi" not in data:
        return Settings()  # most projects: no need to parse the file
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        table: Any = tomllib.loads(data.decode("utf-8")).get("tool", {}).get("curi", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", hint="fix the file.") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.curi] must be a table")
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(
                f"{path}: unknown setting {key!r} in [tool.curi]",
                hint=close_matches_hint(key, list(_KEYS), "settings", "see the README"),
            )
        if not isinstance(value, _KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"{path}: [tool.curi] {key} = {value!r} has the wrong type")
    executor = table.get("executor")
    if executor is not None and executor not in EXECUTORS:
        raise ConfigError(
            f"{path}: [tool.curi] executor = {executor!r}",
            hint=f"use one of {', '.join(EXECUTORS)}.",
        )
    return Settings(table.get("workers"), executor, table.get("scheduler"))
