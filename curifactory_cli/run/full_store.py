"""`curi run --store-full`: a self-contained copy of everything one run used or produced, and
what `curi runs reproduce` reads back.

data/runs/<reference>/
    artifacts/        the cache entries of the run (same layout: usable as `--cache`)
    experiment.py     the experiment's source as it ran
    params.yaml       the parameter sets as they ran (after --names, --indices and --set)
    run.json          the run's registry record, with `stored` (what is kept) and `reproduce`
    run.log           one line per stage call: outcome, stage, parameter set, reason
    requirements.txt  `pip freeze` of the environment
    platform.txt      Python and OS
    reproduce         the command that re-runs it: `curi runs reproduce <reference>`
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from curifactory_cli import discovery
from curifactory_cli.errors import CacheError, ConfigError, CurifactoryError
from curifactory_cli.graph import Outcome
from curifactory_cli.params import ExperimentParameters, Params, load_yaml_sets
from curifactory_cli.store import LocalStore
from curifactory_cli.store.reads_compact import copy_index
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from curifactory_cli.params import ParamSet
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.run.options import RunResult

RUNS_DIR = Path(discovery.RUNS_FOLDER)
SOURCE_FILE = "experiment.py"
PARAMS_FILE = "params.yaml"
ARTIFACTS_DIR = "artifacts"


def store_full_run(root: Path, result: RunResult, registry: RunRegistry) -> Path:
    target = root / RUNS_DIR / result.run_id
    try:
        # The run's own folder may hold what its stages wrote there (record.get_path()).
        target.mkdir(parents=True, exist_ok=True)
        untracked = _copy_entries(result, target / ARTIFACTS_DIR)
        # The registry's record, what is kept, and the command that reproduces it from here.
        run = registry.get_run(result.run_id).to_json()
        run["stored"] = _store_inputs(result, target)
        if untracked:
            # Curifactory's track=False: the file stays in the cache, not in the store; a
            # reproduction from the store computes it again.
            run["stored"]["untracked"] = untracked
        reproduce = reproduce_command(result.run_id)
        run["reproduce"] = reproduce
        (target / "run.json").write_text(json.dumps(run, indent=2, default=str))
        (target / "reproduce").write_text(reproduce + "\n")
        (target / "run.log").write_text(_log(result))
        if result.log is not None:  # what the stage calls printed (see runlog)
            shutil.copyfile(result.log, target / "output.jsonl")
        (target / "requirements.txt").write_text(_pip_freeze())
        (target / "platform.txt").write_text(
            f"python {platform.python_version()} ({sys.executable})\n{platform.platform()}\n"
        )
    except OSError as exc:
        raise CacheError(
            f"cannot write the full store of run {result.run_id} to {target}: "
            f"{exc.strerror or exc}",
            hint="the run itself completed and is cached; check free space and permissions.",
        ) from None
    return target


def _copy_entries(result: RunResult, artifacts: Path) -> list[str]:
    """Hard-link (or copy) every entry the run loaded, found cached or produced, but the files
    of outputs whose cacher said `track=False`; returns those files (paths in the store)."""
    # The run's own store: with a remote tier, an entry served from there is fetched first.
    store = result.store or LocalStore(result.cache_dir)
    untracked: list[str] = []
    copied: set[str] = set()
    experiments: set[str] = set()
    for node in result.graph.nodes:
        if node.outcome not in (Outcome.CACHED, Outcome.EXECUTED) or not node.entry_dir:
            continue
        # Calls of equal key (two sets of the same values) share one entry: copied once, as
        # a second copy onto its own hard links fails.
        if node.entry_dir in copied:
            continue
        copied.add(node.entry_dir)
        entry = store.entry_at(node.entry_dir)
        if entry is None:
            continue  # e.g. produced by --dry-cache: never published
        rel = entry.rel(store.root)
        store.export(entry, artifacts / rel)
        experiments.add(entry.experiment)
        for output in (entry.meta.get("outputs") or {}).values():
            if isinstance(output, dict) and output.get("track") is False:
                for info in output.get("files") or ():
                    name = f"{rel}/{info['path']}"
                    (artifacts / name).unlink(missing_ok=True)
                    untracked.append(name)
    artifacts.mkdir(parents=True, exist_ok=True)
    # The reads index of those entries: a call served from another set's entry is served so
    # again when the run is reproduced from here.
    kept = LocalStore(artifacts)
    for experiment in sorted(experiments):
        copy_index(store, kept, experiment, target_remote=False)
    return untracked


def reproduce_command(reference: str) -> str:
    return f"curi runs reproduce {reference}"


def stored_reproduce_command(folder: Path) -> str | None:
    """The command a full store says reproduces its run (None: the store cannot tell)."""
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = run.get("reproduce") if isinstance(run, dict) else None
    return command if isinstance(command, str) and command else None


# ------------------------------------------------------------------ what reproducing needs
def _store_inputs(result: RunResult, target: Path) -> dict[str, Any]:
    """Copy the experiment's source and write the parameter sets it ran with; say what was
    kept (`run.json` "stored"), and why the parameters could not be, if they could not."""
    stored: dict[str, Any] = {"experiment": None, "params": None, "params_problem": None}
    module = sys.modules.get(discovery.experiment_module(result.experiment))
    source = getattr(module, "__file__", None)
    if source and Path(source).is_file():
        shutil.copy2(source, target / SOURCE_FILE)
        stored["experiment"] = SOURCE_FILE
    problem = _write_params(result.param_sets, target / PARAMS_FILE)
    if problem is None:
        stored["params"] = PARAMS_FILE
    else:
        stored["params_problem"] = problem
        result.warnings.append(
            f"run {result.run_id} is stored, but `curi runs reproduce` cannot rebuild its "
            f"parameters from the store: {problem}"
        )
    stored["param_sets"] = [
        {"name": p.name, "hash": p.hash, "class": _class_name(p.params)} for p in result.param_sets
    ]
    return stored


def _class_name(params: Any) -> str | None:
    """The typed class a set was built into (None: a plain mapping)."""
    if isinstance(params, (Params, Mapping)):
        return None
    cls = type(params)
    return f"{cls.__module__}.{cls.__qualname__}"


class _NotData(Exception):
    """A parameter value that a YAML file cannot hold."""


def _write_params(param_sets: list[ParamSet], path: Path) -> str | None:
    """Write the sets as a parameter file that reads back to the same hashes; None when it
    does, else why not (and no file is left)."""
    sets = []
    for param_set in param_sets:
        try:
            values = _set_values(param_set.params)
        except _NotData as exc:
            return f"parameter set {param_set.name!r}: {exc}"
        sets.append({"name": param_set.name, **values})
    typed = [p for p in param_sets if isinstance(p.params, ExperimentParameters)]
    classes = {type(p.params) for p in typed}
    if len(classes) > 1 or (typed and len(typed) != len(param_sets)):
        return "the parameter sets are not all of one kind (several classes, or some untyped)"
    header = "# The parameter sets this run used, as it used them (written by --store-full).\n"
    try:
        text = yaml.dump(sets, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        return f"the parameter sets cannot be written as YAML ({exc})"
    path.write_text(header + text, encoding="utf-8")
    try:
        read = load_yaml_sets(path, classes.pop() if classes else None)
        same = [(p.name, p.hash) for p in read] == [(p.name, p.hash) for p in param_sets]
    except CurifactoryError as exc:
        same, why = False, exc.message
    else:
        why = "its values do not read back to the same parameter hash"
    if not same:
        path.unlink()
        return f"the parameter sets cannot be written as a parameter file ({why})"
    return None


def _set_values(params: Any) -> dict[str, Any]:
    if isinstance(params, Params):
        return {str(k): _data(v, str(k)) for k, v in params.to_dict().items()}
    if isinstance(params, ExperimentParameters):
        out = {}
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if f.name in ("name", "hash", "hash_representations") or (
                f.name == "overwrite" and not value
            ):
                continue
            out[f.name] = _data(value, f.name)
        return out
    raise _NotData(f"a {type(params).__name__} object, not a parameter mapping")


def _data(value: Any, where: str, depth: int = 0) -> Any:
    """`value` as plain YAML data (mappings, lists, scalars), or _NotData naming the value."""
    if value is None:
        return None
    for plain in (bool, int, float, str):  # numpy scalars, enums...: as the built-in type
        if isinstance(value, plain):
            return plain(value)
    if depth > 50:
        raise _NotData(f"{where!r} is nested too deeply")
    if isinstance(value, Params):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)):
                raise _NotData(f"{where!r} has a key of type {type(key).__name__}")
            out[key] = _data(item, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_data(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise _NotData(f"{where!r} holds a value of type {type(value).__name__}, not plain data")


class _Dumper(yaml.SafeDumper):
    """Quotes every string that curi's parameter reader would take for something else:
    PyYAML's own rules (YAML 1.1) plus the floats it reads as YAML 1.2 writes them (`1e-3`),
    see params._FLOAT_12."""


_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _log(result: RunResult) -> str:
    lines = [f"run {result.run_id}: {'ok' if result.ok else 'failed'} in {result.seconds:.2f}s"]
    for node in result.graph.nodes:
        outcome = (node.outcome or Outcome.SKIPPED).value
        lines.append(
            f"{outcome:>8}  {node.stage.name} [{node.record_name}] "
            f"{node.seconds:.3f}s  {node.reason}"
        )
    lines.extend(f"warning: {w}" for w in result.warnings)
    if result.error is not None:
        lines.append(f"error: {result.error.message}")
    return "\n".join(lines) + "\n"


def _pip_freeze() -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"# pip freeze failed: {exc}\n"
    return out.stdout if out.returncode == 0 else f"# pip freeze failed: {out.stderr.strip()}\n"


# ------------------------------------------------------------------ reading a full store
@dataclass(frozen=True)
class StoredRun:
    """A run kept with --store-full, as `curi runs reproduce` needs it."""

    reference: str
    folder: Path
    run: dict[str, Any]

    @property
    def experiment(self) -> str:
        return str(self.run["experiment"])

    @property
    def source(self) -> Path:
        return self.folder / SOURCE_FILE

    @property
    def params(self) -> Path:
        return self.folder / PARAMS_FILE

    @property
    def artifacts(self) -> Path:
        return self.folder / ARTIFACTS_DIR

    def check_param_sets(self, param_sets: list[ParamSet]) -> None:
        """The sets read back from the store must be the ones the run used: same names,
        order, hashes and classes (a class the experiment no longer names would rebuild
        the values into something else)."""
        recorded = self.run["stored"].get("param_sets") or []
        for was, now in zip(recorded, param_sets):
            problem = None
            if was.get("name") != now.name:
                problem = f"parameter set {now.name!r} is not the run's {was.get('name')!r}"
            elif was.get("hash") != now.hash:
                problem = (
                    f"parameter set {now.name!r} hashes to {now.hash}, not {was.get('hash')} "
                    "as when it ran"
                )
            elif was.get("class") != _class_name(now.params):
                built = _class_name(now.params) or "a plain mapping"
                problem = (
                    f"parameter set {now.name!r} was a {was.get('class') or 'plain mapping'} "
                    f"when it ran, and is now built into {built}"
                )
            if problem is not None:
                raise ConfigError(
                    f"cannot reproduce run {self.reference}: {problem}",
                    hint=f"{self.params} holds the values it ran with; the experiment's "
                    "parameter class (or a module it imports) has changed since.",
                )
        if len(recorded) != len(param_sets):
            raise ConfigError(
                f"cannot reproduce run {self.reference}: {self.params} holds "
                f"{plural(len(param_sets), 'parameter set')}, the run used {len(recorded)}",
                hint="the stored parameter file was edited; restore it from a copy.",
            )


def open_stored_run(root: Path, reference: str, registry: RunRegistry | None) -> StoredRun:
    """The full store of run `reference` (a reference, `<experiment>_<n>`, a unique prefix,
    or the store's folder); ConfigError saying what is missing, and how to get it, if the
    run cannot be reproduced from it."""
    folder = _store_folder(root, reference, registry)
    name = folder.name
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {folder / 'run.json'}: {exc}",
            hint="the full store is damaged; its artifacts/ can still be read with --cache.",
        ) from None
    stored = run.get("stored") if isinstance(run, dict) else None
    if not isinstance(stored, dict):
        command = run.get("reproduce") if isinstance(run, dict) else None
        raise ConfigError(
            f"the full store of run {name} ({folder}) keeps no copy of the experiment's source "
            "and parameter values (it was written by an older curi)",
            hint=f"`{command}` re-runs it from its artifacts, with the experiment and parameter "
            "files as they are now."
            if command
            else "re-run the experiment with --store-full.",
        )
    if stored.get("params") is None:
        raise ConfigError(
            f"run {name} cannot be reproduced from its full store: "
            f"{stored.get('params_problem') or 'its parameter values were not kept'}",
            hint="parameter sets must be plain values (numbers, strings, lists, mappings) or "
            "dataclass fields of them to be kept; re-run with its command and the same files.",
        )
    if stored.get("experiment") is None or not (folder / SOURCE_FILE).is_file():
        raise ConfigError(
            f"run {name} cannot be reproduced: its experiment source {folder / SOURCE_FILE} "
            "is missing",
            hint="the full store is incomplete; nothing else holds that version of the code.",
        )
    return StoredRun(name, folder, run)


def _store_folder(root: Path, reference: str, registry: RunRegistry | None) -> Path:
    given = Path(reference)
    if (given / "run.json").is_file():
        return given.resolve()
    runs = root / RUNS_DIR
    if (runs / reference / "run.json").is_file():
        return runs / reference
    if registry is not None and registry.path.is_file():
        run = registry.get_run(reference, stages=False)  # ConfigError: unknown or ambiguous
    else:
        names = sorted(p.name for p in runs.glob("*") if (p / "run.json").is_file())
        matches = [n for n in names if n.startswith(reference)]
        if len(matches) == 1:
            return runs / matches[0]
        raise ConfigError(
            f"no full store of run {reference!r} in {runs}"
            + (f" ({len(matches)} match)" if matches else ""),
            hint="give a reference from `curi runs ls`, or the store's folder.",
        )
    folder = runs / run.reference
    if not (folder / "run.json").is_file():
        command = run.command
        if command[1:3] == ["runs", "reproduce"] and len(command) > 3:
            hint = f"it reproduced {command[3]}: `curi runs reproduce {command[3]}` again."
        else:
            hint = (
                "only a full store keeps the source and parameter values a run used; "
                f"`{run.reproduce}` runs it again with the files as they are now, and "
                "adding --store-full keeps that run."
            )
        raise ConfigError(
            f"run {run.reference} was not stored with --store-full (no {folder})", hint=hint
        )
    return folder
