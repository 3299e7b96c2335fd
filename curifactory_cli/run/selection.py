"""Which parameter sets a run runs: parameter files (YAML or an experiment's own
`get_params()`), `--names`, `--indices` and `--set`, each slip named with its file and fix."""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from curifactory_cli import discovery
from curifactory_cli.errors import ConfigError, CurifactoryError, ParamsError, close_matches_hint
from curifactory_cli.params import (
    ExperimentParameters,
    OverrideUse,
    ParamSet,
    load_yaml_sets,
    parse_override,
    sets_from_objects,
)
from curifactory_cli.store.entry import has_control_characters

if TYPE_CHECKING:
    from curifactory_cli.run.options import RunOptions


def parse_indices(specs: tuple[str, ...]) -> set[int]:
    """`--indices 0-2,5` -> {0, 1, 5}: `A-B` is A up to but excluding B, as in Curifactory."""
    out: set[int] = set()
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    low, high = (int(x) for x in part.split("-", 1))
                    if high <= low:
                        raise ValueError
                    out.update(range(low, high))
                else:
                    out.add(int(part))
            except ValueError:
                raise ConfigError(
                    f"--indices {spec!r}: expected numbers or ranges like 0-3 (3 excluded)",
                    hint="e.g. --indices 0-2,5",
                ) from None
    return out


def find_params_class(module: ModuleType) -> type | None:
    """The ExperimentParameters subclass the experiment uses, if it defines or imports one.

    `PARAMS_CLASS = MyParams` in the module decides; otherwise the one subclass in view (one
    defined in the module itself wins over imported ones).
    """
    explicit = getattr(module, "PARAMS_CLASS", None)
    if explicit is not None:
        return explicit
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ExperimentParameters)
        and value is not ExperimentParameters
        and dataclasses.is_dataclass(value)
    ]
    own = [c for c in found if c.__module__ == module.__name__]
    candidates = own or found
    if len(candidates) > 1:
        names = ", ".join(sorted(c.__name__ for c in candidates))
        raise ParamsError(
            f"experiment {module.__name__} has several parameter classes ({names})",
            hint="set `PARAMS_CLASS = MyParams` in the experiment module.",
        )
    return candidates[0] if candidates else None


def load_param_sets(
    root: Path,
    module: ModuleType,
    options: RunOptions,
    warn: Callable[[str], None] | None = None,
) -> list[ParamSet]:
    """The selected parameter sets, `--set` applied; `warn` hears about suspicious options."""
    overrides = [parse_override(text) for text in options.overrides]
    uses = OverrideUse([key for key, _ in overrides])
    sources = _sources(root, module, options, overrides, uses)
    _check_overrides(uses, options.strict, warn)
    indices = parse_indices(options.indices) if options.indices else None
    if indices:
        _check_indices(indices, sources)
    selected = [
        param_set
        for sets in sources
        for position, param_set in enumerate(sets)
        if indices is None or position in indices
    ]
    if options.names:
        selected = _named(selected, options.names)
    if not selected:
        raise ParamsError("no parameter sets selected", hint="check --names and --indices.")
    _check_selected(selected)
    return selected


def _sources(
    root: Path,
    module: ModuleType,
    options: RunOptions,
    overrides: list[tuple[str, Any]],
    uses: OverrideUse,
) -> list[list[ParamSet]]:
    """The parameter sets of each source, in order: the files given, else the experiment's
    get_params(), else its parameter file of the same name."""
    params_class = find_params_class(module)
    specs = list(options.params)
    if not specs and callable(getattr(module, "get_params", None)):
        source = f"experiments/{options.experiment}.py"
        return [_sets_from_get_params(module, source, overrides, uses)]
    if not specs:
        try:
            specs = [str(discovery.resolve_param_file(root, options.experiment))]
        except CurifactoryError:
            raise ConfigError(
                f"no parameters given for experiment {options.experiment!r}",
                hint=f"pass a file: `curi run {options.experiment} params/FILE.yaml`, or "
                "define get_params() in the experiment.",
            ) from None
    sources: list[list[ParamSet]] = []
    for spec in specs:
        path = _display_path(discovery.resolve_param_file(root, spec))
        if path.suffix == ".py":
            param_module = discovery.import_param_module(root, path)
            sources.append(_sets_from_get_params(param_module, str(path), overrides, uses))
        else:
            sources.append(load_yaml_sets(path, params_class, overrides, uses))
    return sources


def _named(selected: list[ParamSet], names: Sequence[str]) -> list[ParamSet]:
    """The sets `--names` selects; a name no set has is an error, not an empty run."""
    available = [p.name for p in selected]
    for name in names:
        if name not in available:
            raise ParamsError(
                f"--names {name!r}: no parameter set of that name",
                hint=close_matches_hint(name, available, "sets", "see the parameter file"),
            )
    wanted = set(names)
    return [p for p in selected if p.name in wanted]


def _check_selected(selected: list[ParamSet]) -> None:
    """Names unique and printable, and every set hashable, before any stage runs."""
    names = Counter(p.name for p in selected)
    duplicates = [n for n, count in names.items() if count > 1]
    if duplicates:
        raise ParamsError(
            f"parameter set name {duplicates[0]!r} appears in more than one file",
            hint="set names must be unique within a run; rename one of them.",
        )
    for param_set in selected:
        if has_control_characters(param_set.name):
            raise ParamsError(
                f"{param_set.source}: parameter set name {param_set.name!r} contains control "
                "characters",
                hint="names are shown in terminals and reports: use printable characters.",
            )
        param_set.hash  # noqa: B018 - hash now, so a bad value fails before any stage runs


def _check_overrides(uses: OverrideUse, strict: bool, warn: Callable[[str], None] | None) -> None:
    """A --set key that no set has would be added to every set: a typo that recomputes
    everything (untyped parameters) while the code never reads the value."""
    for key in uses.unmatched():
        message = f"--set {key}: no parameter set has a parameter {key!r}"
        if strict:
            raise ParamsError(
                message, hint=f"{uses.hint(key)} (without --strict it is added to every set)."
            )
        if warn is not None:
            warn(
                f"{message}; it is added to every set, which changes their hashes "
                f"({uses.hint(key)}; --strict makes this an error)"
            )


def _check_indices(indices: set[int], sources: list[list[ParamSet]]) -> None:
    """An index past the end of every file would silently select nothing for it."""
    largest = max(len(sets) for sets in sources)
    beyond = sorted(i for i in indices if i >= largest)
    if not beyond:
        return
    counts = ", ".join(f"{sets[0].source} has {len(sets)}" for sets in sources if sets)
    raise ConfigError(
        f"--indices {beyond[0]} selects no parameter sets: out of range ({counts})",
        hint=f"--indices counts from 0 within each file: use 0 to {largest - 1} "
        "(`A-B` excludes B).",
    )


def _display_path(path: Path) -> Path:
    """Relative to the working directory when inside it, so messages read like the command."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _sets_from_get_params(
    module: ModuleType,
    source: str,
    overrides: list[tuple[str, Any]],
    uses: OverrideUse | None = None,
) -> list[ParamSet]:
    from curifactory_cli.errors import ExperimentImportError

    try:
        objects = module.get_params()
    except Exception as exc:
        raise ExperimentImportError(
            f"{source}: get_params() raised {type(exc).__name__}: {exc}", exc
        ) from exc
    return sets_from_objects(objects, source, overrides, uses)
