"""Curifactory's run-level manager surface, on every manager (`curi run`'s and a notebook's):
the run's reference and timestamp, its own folder `data/runs/<reference>` (Curifactory's run
folder: what `manager.get_run_output_path()` and `record.get_path()` in a stage without
cachers give), Curifactory's artifact file names, `store()` with the run's information and
the line that reproduces it, and `write_run_env_output()`.

The run is recorded by `run.orchestrator`, which gives the manager its reference and folder
(`Run.bind`); run() asking for them while it is traced records the run then (`_begin`).
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import CacheError

if TYPE_CHECKING:
    from collections.abc import Callable

TIMESTAMP_FORMAT = "%Y-%m-%d-T%H%M%S"  # of a run's reference, as Curifactory's

# Flags a reproduction from a run's stored artifacts leaves out (as Curifactory's run line
# sanitisation): it reads that cache as it is, and stores nothing again.
_NOT_REPRODUCED = frozenset({"--overwrite", "--store-full"})


class RunPaths:
    """The run-level part of `ArtifactManager` (a mixin of `record.TracingManager`)."""

    experiment_name: str
    dry: bool
    _every_record: list[Any]  # the records (record.Record)

    def __init__(self) -> None:
        self._run_reference: str | None = None
        self._run_dir: str | None = None
        self._begin: Callable[[], None] | None = None
        # The run's registry record as JSON (set with the reference): what store() gives.
        self._run_record: Callable[[], dict[str, Any]] | None = None
        self._stage_name: str | None = None  # current_stage_name, when set by hand
        self.prefix: str | None = None  # names the run folder's files instead of the experiment
        self.store_full = False
        self.run_line: str | None = None  # the command line; the run's own by default
        self.run_info: dict[str, Any] | None = None  # set by store()
        self.reproduction_line: str | None = None

    # ------------------------------------------------------------------ the run
    def get_reference_name(self) -> str:
        """The run's reference (`<experiment>_<number>_<timestamp>`, as in Curifactory and
        `curi runs ls`); the experiment's name while no run is recorded for it."""
        return self._run_reference or self.experiment_name

    def _reference(self) -> str:
        if self._run_reference is None and self._begin is not None:
            self._begin()  # asked for while run() is traced: the run is recorded now
        if self._run_reference is None:
            raise CacheError(
                f"experiment {self.experiment_name!r}: no run is recorded yet, so it has no "
                "reference, timestamp or folder",
                hint="ask for them inside run() or a stage, once the run has started.",
            )
        return self._run_reference

    def _run_folder(self) -> str:
        """The run's own folder, `data/runs/<reference>` (a temporary one with --dry)."""
        self._reference()
        assert self._run_dir is not None  # given with the reference (Run.bind)
        return self._run_dir

    @property
    def experiment_run_number(self) -> int:
        """The run's number among the experiment's runs, as in its reference."""
        return int(self._reference().rsplit("_", 2)[-2])

    @property
    def run_timestamp(self) -> datetime.datetime:
        """When the run started (to the second, as in its reference)."""
        stamp = self._reference().rsplit("_", 1)[-1]
        return datetime.datetime.strptime(stamp, TIMESTAMP_FORMAT)

    def get_str_timestamp(self) -> str:
        """The run's timestamp as its reference writes it (`2026-12-07-T163732`)."""
        return self.run_timestamp.strftime(TIMESTAMP_FORMAT)

    @property
    def runs_path(self) -> str:
        """The folder of the runs' own folders: `data/runs` in the project."""
        return os.path.dirname(self._run_folder())

    @property
    def manager_cache_path(self) -> str:
        """Where the manager keeps what it knows of runs: the folder of the run registry
        (`data/`, holding `runs.sqlite`), Curifactory's folder of its run store."""
        return os.path.dirname(self.runs_path)

    # ------------------------------------------------------------------ paths
    @property
    def current_stage_name(self) -> str:
        """The stage running now in this process (Curifactory's manager attribute); may be
        set, as Curifactory's tests do, to name the stage of the paths asked for next."""
        if self._stage_name is not None:
            return self._stage_name
        for record in reversed(self._every_record):
            if record._running_stage is not None:
                return record._running_stage
        return ""

    @current_stage_name.setter
    def current_stage_name(self, value: str | None) -> None:
        self._stage_name = value

    def get_artifact_filename(
        self,
        obj_name: str,
        record: Any,
        prefix: str | None = None,
        stage_name: str | None = None,
    ) -> str:
        """Curifactory's file name of an artifact, `<prefix>_<parameter hash>_<stage>_<obj_name>`
        (`prefix`: the experiment's name unless given; `stage_name`: the running stage, or the
        record's last one)."""
        if stage_name is None:
            stage_name = self._stage_name or record._current_stage()
        if prefix is None:  # Curifactory's custom name for the experiment's files, if set
            prefix = self.prefix
        own = prefix if prefix is not None else self.experiment_name
        return f"{own}_{record._own_hash()}_{stage_name}_{obj_name}"

    def get_artifact_path(
        self,
        obj_name: str,
        record: Any,
        subdir: str | None = None,
        prefix: str | None = None,
        stage_name: str | None = None,
        store: bool = False,
    ) -> str:
        """`record.get_path(obj_name, subdir, prefix, stage_name)`: in the running stage's
        cache entry when it has cachers, else in the run's own folder under Curifactory's
        file name. `store` has nothing to choose: `--store-full` keeps the run's folder and
        every entry the run used."""
        return record.get_path(obj_name, subdir, prefix, stage_name)

    def get_run_output_path(self, obj_name: str | None = None) -> str:
        """The run's own folder, `data/runs/<reference>` (Curifactory's run folder), or the
        path `obj_name` in it; the folders are created, as in Curifactory."""
        folder = self._run_folder()
        if obj_name is None:
            os.makedirs(folder, exist_ok=True)
            return folder
        path = os.path.join(folder, obj_name)
        if not os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep):
            raise CacheError(
                f"get_run_output_path({obj_name!r}) is outside the run's folder {folder}",
                hint="give a path relative to the run's folder, without '..'.",
            )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    # ------------------------------------------------------------------ storing
    def store(self) -> dict[str, Any] | None:
        """The run's information as the registry holds it (`run_info`; `curi runs show`
        prints it), with `reproduce` when `store_full` is set: the command line without
        `--store-full` and `--overwrite`, reading the run folder's artifacts as its cache
        (`--cache <run folder>/artifacts --dry-cache`). With `store_full`, the environment
        files are written to the run's folder too (`write_run_env_output()`). Nothing with
        `dry`: a dry run is not recorded."""
        if self.dry:
            return None
        self._reference()
        info = dict(self._run_record()) if self._run_record is not None else {}
        if self.run_line is None:
            command = info.get("command")
            self.run_line = shlex.join(command) if isinstance(command, list) else ""
        info["full_store"] = self.store_full
        info["cli"] = self.run_line
        if self.store_full:
            self.reproduction_line = reproduction_line(
                self.run_line, os.path.join(self._run_folder(), "artifacts")
            )
            info["reproduce"] = self.reproduction_line
        self.run_info = info
        if self.store_full:
            self.write_run_env_output()
        return info

    def write_run_env_output(self) -> None:
        """Write the environment into the run's folder, as Curifactory's --store-full:
        `requirements.txt` (pip freeze), `environment.yml` (in a conda environment),
        `environment_meta.txt` (the OS) and `run_info.json` (once `store()` made it)."""
        from curifactory_cli import utils

        with open(self.get_run_output_path("requirements.txt"), "w", newline="") as out:
            out.write(utils.get_pip_freeze())
        conda = utils.get_conda_env()
        if conda:
            with open(self.get_run_output_path("environment.yml"), "w", newline="") as out:
                out.write(conda)
        with open(self.get_run_output_path("environment_meta.txt"), "w") as out:
            out.write(utils.get_os())
        if self.run_info is not None:
            with open(self.get_run_output_path("run_info.json"), "w") as out:
                json.dump(self.run_info, out, indent=4, default=str)


def reproduction_line(run_line: str, artifacts: str) -> str:
    """The command that runs a stored run again from its artifacts, read-only: `run_line`
    without `--store-full` and `--overwrite` (wherever they are), then `--cache ARTIFACTS
    --dry-cache` (Curifactory's reproduction line)."""
    kept = [word for word in shlex.split(run_line) if word not in _NOT_REPRODUCED]
    return shlex.join([*kept, "--cache", artifacts, "--dry-cache"])
