"""Project settings, set once instead of on every command.

From `curi.toml` in the project folder (top-level keys), else `[tool.curi]` in its
`pyproject.toml`:

    cache = "data/cache"               # or an fsspec URL: "s3://bucket/prefix"
    remote = "s3://lab-bucket/curi"    # a shared second tier behind the local cache
    workers = 4                        # or "auto": one per usable core
    executor = "local"                 # or "dask", "slurm", "pbs", "lsf", "sge"
    scheduler = "tcp://10.0.0.5:8786"  # an existing Dask scheduler (with executor = "dask")
    params = "all"                     # key stages on whole parameter sets (no sharing)

    [slurm]                            # ([tool.curi.slurm]) for executor = "slurm"; also
    queue = "gpu"                      # [pbs], [lsf], [sge]: see engine.hpc.OPTIONS
    walltime = "02:00:00"

    [storage_options]                  # ([tool.curi.storage_options] in pyproject.toml)
    endpoint_url = "https://minio.lab.example:9000"   # passed to the fsspec filesystem

Each may also come from a `CURI_<NAME>` environment variable (`CURI_CACHE`, `CURI_REMOTE`,
`CURI_WORKERS`, `CURI_EXECUTOR`, `CURI_SCHEDULER`); an empty `CURI_REMOTE=` (or `--no-remote`)
turns a configured remote off. A command-line option wins over the
environment, which wins over the file, which wins over the default. `curi config` shows the
values in force and where each came from. Credentials never belong here: they come from the
storage library's own places (for S3: AWS environment variables and config files).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curifactory_cli.discovery import DEFAULT_CACHE, project_root
from curifactory_cli.errors import ConfigError, close_matches_hint

CONFIG_FILE = "curi.toml"
ENV_PREFIX = "CURI_"

# name -> (accepted types, default, what it is)
KEYS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "cache": ((str,), DEFAULT_CACHE, "the cache: a folder (relative to the project) or a URL"),
    "remote": ((str,), None, "a shared cache behind the local one (an fsspec URL)"),
    "workers": ((int, str), 1, "stage calls at once (a number or 'auto')"),
    "executor": (
        (str,),
        "local",
        "where stage calls run: local, dask, slurm (pbs, lsf, sge), or module:Class",
    ),
    "scheduler": ((str,), None, "an existing Dask scheduler's address"),
    "storage_options": ((dict,), None, "options for the fsspec filesystem of cache and remote"),
    "params": ((str,), None, "'all': key every stage on its whole parameter set"),
    "slurm": ((dict,), None, "the Slurm jobs of --executor slurm (queue, walltime, cores...)"),
    "pbs": ((dict,), None, "the PBS jobs of --executor pbs"),
    "lsf": ((dict,), None, "the LSF jobs of --executor lsf"),
    "sge": ((dict,), None, "the SGE jobs of --executor sge"),
}
# Tables: set in the file only (no CURI_<NAME> variable).
_TABLES = ("storage_options", "slurm", "pbs", "lsf", "sge")


@dataclass(frozen=True)
class Settings:
    """The values in force and where each came from ("default", a file, "CURI_X", "--x")."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.values.get(name, KEYS[name][1])

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    # Shorthands for what the run reads most.
    @property
    def workers(self) -> int | str | None:
        return self.values.get("workers")

    @property
    def executor(self) -> str | None:
        return self.values.get("executor")

    @property
    def scheduler(self) -> str | None:
        return self.values.get("scheduler")

    @property
    def whole_params(self) -> bool:
        """`params = "all"`: every stage keyed on its whole parameter set."""
        return self.values.get("params") == "all"


def _read_toml(path: Path, table_path: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if table_path and b"[tool.curi" not in data:
        return None  # most projects: no need to parse the file
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        table: Any = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", hint="fix the file.") from None
    for name in table_path:
        table = table.get(name, {}) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{'.'.join(table_path)}] must be a table")
    return table


def _check(where: str, key: str, value: Any) -> Any:
    if key not in KEYS:
        raise ConfigError(
            f"{where}: unknown setting {key!r}",
            hint=close_matches_hint(key, list(KEYS), "settings", "see `curi config`"),
        )
    if not isinstance(value, KEYS[key][0]) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} = {value!r} has the wrong type")
    if key == "executor":
        _check_executor(where, str(value))
    if key in ("slurm", "pbs", "lsf", "sge") and isinstance(value, dict):
        from curifactory_cli.engine.hpc import check_options

        check_options(key, where, value)
    if key == "params" and value != "all":
        raise ConfigError(
            f"{where}: params = {value!r}",
            hint='"all" keys every stage on its whole parameter set; leave it out to key each '
            "stage on the parameters it reads.",
        )
    return value


def _check_executor(where: str, value: str) -> None:
    # The engine's table of executors is the one list of names (imported only when a
    # setting names one: reading settings stays cheap for `curi cache ls`).
    from curifactory_cli.engine.executors import DOTTED_NAME, NAMES

    if value not in NAMES and not DOTTED_NAME.match(value):
        raise ConfigError(
            f"{where}: executor = {value!r}",
            hint=f"use one of {', '.join(NAMES)}, or a JobRunner class as module:Class.",
        )


def load_settings(root: Path, given: dict[str, Any] | None = None) -> Settings:
    """Settings for the project at `root` (or the project `root` is inside): `given`
    (command-line options, None when not given) over `CURI_*` variables over `curi.toml` or
    `[tool.curi]` over the defaults."""
    root = project_root(root)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    own = root / CONFIG_FILE
    table = _read_toml(own, ())
    where = str(own)
    if table is None:
        table = _read_toml(root / "pyproject.toml", ("tool", "curi"))
        where = f"{root / 'pyproject.toml'} [tool.curi]"
    for key, value in (table or {}).items():
        values[key] = _check(where, key, value)
        sources[key] = where
    for key in KEYS:
        env = os.environ.get(ENV_PREFIX + key.upper())
        if env is not None and key not in _TABLES and env.strip():
            values[key] = _check(ENV_PREFIX + key.upper(), key, env.strip())
            sources[key] = ENV_PREFIX + key.upper()
        elif env is not None and key == "remote":
            # `CURI_REMOTE=` turns a remote the project file sets off (working offline).
            values[key] = None
            sources[key] = ENV_PREFIX + key.upper()
    for key, value in (given or {}).items():
        if value == "" and key == "remote":  # `--no-remote`
            values[key] = None
            sources[key] = "--no-remote"
        elif value is not None:
            values[key] = value
            sources[key] = "--" + key.replace("_", "-")
    return Settings(values, sources)


def resolve_cache(root: Path, settings: Settings) -> str:
    """The cache as a URL, or an absolute folder (a relative one from a file or the default
    is relative to the project; from the command line or environment, to the current
    directory). `root`: the project folder, or a folder inside it."""
    cache = str(settings.get("cache"))
    if "://" in cache and not cache.startswith("file://"):
        return cache
    path = Path(cache.removeprefix("file://")).expanduser()
    if path.is_absolute():
        return str(path)
    from_cwd = settings.source("cache").startswith(("--", ENV_PREFIX))
    base = Path.cwd() if from_cwd else project_root(root)
    return str((base / path).resolve())
