"""`run_experiment` with Curifactory's signature (`curifactory.experiment.run_experiment`),
for code that runs experiments from Python: returns `(results, manager)` as there.

    results, manager = run_experiment("iris", ["iris"], param_set_names=["base"])

It is `curi run` underneath (`curifactory_cli.run.runner.run_experiment` takes RunOptions and
returns a RunResult with more in it). A stage that fails raises its StageError here, as the
exception did in Curifactory; setup problems raise CurifactoryError subclasses.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_experiment"]

# Options that only change how Curifactory printed or logged: nothing to do here.
_OUTPUT_ONLY = frozenset(
    {
        "log",
        "log_debug",
        "log_errors",
        "no_color",
        "quiet",
        "progress",
        "plain",
        "all_loggers",
        "run_string",
        "no_dag",  # run() is traced once here; there is no second, non-DAG mode
    }
)
# Options whose job curi does another way: what to use instead.
_REPLACED = {
    "mngr": "curi makes the manager; interactive use: cf.ArtifactManager(...) runs stages at once",
    "prefix": "the cache layout is curi's own (README, 'How caching works')",
    "build_docker": "not provided",
    "build_notebook": "not provided",
    "map_only": "curi plan EXPERIMENT PARAMS",
    "hashes_only": "curi plan EXPERIMENT PARAMS --json (each set's hash)",
    "paths_only": "curi plan EXPERIMENT PARAMS --json (each entry's folder)",
    "print_params": "curi runs show REF, or the run's report",
    "parallel_mode": "workers=N (curi run -j N)",
    "parallel_lock": "workers=N (curi run -j N)",
    "parallel_queue": "workers=N (curi run -j N)",
    "run_num_override": "runs are numbered by the registry",
    "run_ts_override": "runs are numbered by the registry",
    "global_param_set_indices": "param_set_indices (per file)",
}


def run_experiment(
    experiment_name: str,
    param_files: list[str] | str | None = None,
    overwrite_override: bool | None = None,
    cache_dir_override: str | None = None,
    dry: bool = False,
    dry_cache: bool = False,
    store_full: bool = False,
    stage_overwrites: list[str] | None = None,
    param_set_names: list[str] | None = None,
    param_set_indices: list[str] | None = None,
    parallel: int | None = None,
    lazy: bool = False,
    ignore_lazy: bool = False,
    report: bool = True,
    notes: str | None = None,
    **options: Any,
) -> tuple[Any, Any]:
    """Run an experiment over its parameter files; returns (what run() returned, manager).

    `param_files` are names in params/ (or paths); none: the experiment's own get_params().
    `parallel=N` runs up to N stage calls at once in worker processes.
    """
    from curifactory_cli.run.runner import RunOptions
    from curifactory_cli.run.runner import run_experiment as run

    _check_options(options)
    if isinstance(param_files, str):
        param_files = [param_files]
    result = run(
        RunOptions(
            experiment=experiment_name,
            params=tuple(param_files or ()),
            names=tuple(param_set_names or ()),
            indices=tuple(param_set_indices or ()),
            overwrite=bool(overwrite_override),
            overwrite_stages=tuple(stage_overwrites or ()),
            dry=dry,
            dry_cache=dry_cache,
            cache_dir=cache_dir_override,
            lazy=lazy,
            ignore_lazy=ignore_lazy,
            notes=notes,
            store_full=store_full,
            report=report,
            workers=parallel,
        )
    )
    if result.error is not None:
        raise result.error
    if result.manager is not None:
        _describe_parameter_files(
            result.manager, list(param_files or ()), experiment_name, result.param_sets
        )
    return result.results, result.manager


def _check_options(options: dict[str, Any]) -> None:
    """Curifactory's other options: those that only changed its output are accepted (and
    do nothing); one whose job curi does another way says what to use instead."""
    from curifactory_cli.errors import ConfigError

    for name, value in options.items():
        if name in _OUTPUT_ONLY or value in (None, False):
            continue
        if name in _REPLACED:
            raise ConfigError(f"run_experiment({name}=...) is not supported", hint=_REPLACED[name])
        raise TypeError(f"run_experiment() got an unexpected keyword argument {name!r}")


def _describe_parameter_files(
    manager: Any, specs: list[str], experiment_name: str, param_sets: list[Any]
) -> None:
    """Curifactory's manager attributes about what ran: `parameter_files` (as given, or the
    experiment's name for its own get_params()) and `param_file_param_sets`, the
    `(name, hash)` of each set that ran, by parameter file."""
    import contextlib
    from pathlib import Path

    from curifactory_cli import discovery
    from curifactory_cli.errors import CurifactoryError

    root = Path.cwd().resolve()

    def where(source: str) -> Path:
        path = Path(source)
        return (path if path.is_absolute() else root / path).resolve()

    by_file: dict[str, list[tuple[str, str]]] = {}
    files: dict[Path, str] = {}
    for spec in specs or [experiment_name]:
        by_file[spec] = []
        with contextlib.suppress(CurifactoryError):  # else: the experiment's own get_params()
            files[where(str(discovery.resolve_param_file(root, spec)))] = spec
    for param_set in param_sets:
        found = files.get(where(param_set.source), specs[0] if len(specs) == 1 else None)
        by_file.setdefault(found or experiment_name, []).append((param_set.name, param_set.hash))
    manager.parameter_files = list(by_file)
    manager.param_file_param_sets = by_file
