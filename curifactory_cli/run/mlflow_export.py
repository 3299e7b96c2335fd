"""`curi export mlflow`: recorded runs into an MLflow tracking store, read from the run
registry alone (no cache entry is opened).

Each curi run becomes a parent MLflow run (named by its reference, with its start and end,
status, git commit, command and notes), and each of its parameter sets a child run with the
set's parameters (nested ones flattened to dotted keys), the metrics its stage calls recorded
(the last value of a name), and tags naming the curi run, the set's hash, the git commit and
the cache entries of its calls. Metrics of records that are no parameter set (an aggregate's)
go on the parent. Runs are found again by their `curi.run` and `curi.set` tags: exporting a
run twice adds nothing and changes nothing.

MLflow (`pip install 'curifactory-cli[mlflow]'`, mlflow-skinny) is imported only here, when
the command runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError, CurifactoryError
from curifactory_cli.run.param_values import flat_values

if TYPE_CHECKING:
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.registry.records import RunRecord

RUN_TAG = "curi.run"
SET_TAG = "curi.set"
# MLflow's limits: a batch holds at most 100 parameters and 1000 items; a parameter's value
# at most 6000 characters, a tag's 8000 (longer ones are cut, and say so).
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 900
_PARAM_CHARS = 6000
_TAG_CHARS = 8000
_STATUS = {"complete": "FINISHED", "error": "FAILED", "died": "FAILED", "interrupted": "KILLED"}


@dataclass(frozen=True)
class Exported:
    """What exporting one curi run did: its parent MLflow run, the experiment it is in, and
    how many of its sets were added now and were there already."""

    reference: str
    experiment: str  # the MLflow experiment's name
    run_id: str
    added: int
    present: int
    new: bool  # the parent run was created now

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "sets_added": self.added,
            "sets_present": self.present,
            "created": self.new,
        }


def export_runs(
    registry: RunRegistry,
    references: list[str],
    tracking_uri: str,
    experiment_name: str | None = None,
) -> list[Exported]:
    """Export the runs (the newest run when `references` is empty) to `tracking_uri`, each in
    the MLflow experiment of its curi experiment's name (or `experiment_name`)."""
    runs = [registry.get_run(r) for r in references] if references else [_newest(registry)]
    client = _client(tracking_uri)
    return [_export(client, run, experiment_name or run.experiment) for run in runs]


def _newest(registry: RunRegistry) -> RunRecord:
    newest = registry.list_runs(limit=1, brief=True)
    if not newest:
        raise ConfigError(
            f"no runs recorded yet in {registry.path}",
            hint="`curi run EXPERIMENT PARAMS` records every run there.",
        )
    return registry.get_run(newest[0].reference)


def _client(tracking_uri: str) -> Any:
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        # MLflow 3 refuses its file store unless told it is wanted: a `file:` URI says so.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(
            f"`curi export mlflow` needs MLflow, which is not installed ({exc})",
            hint="pip install 'curifactory-cli[mlflow]' (mlflow-skinny).",
        ) from None
    return MlflowClient(tracking_uri=tracking_uri)


def _export(client: Any, run: RunRecord, experiment: str) -> Exported:
    from mlflow.exceptions import MlflowException

    try:
        return _export_run(client, run, experiment)
    except MlflowException as exc:
        raise CurifactoryError(
            f"MLflow refused the export of {run.reference}: {exc.message}",
            hint="check the tracking URI and that the store is writable.",
        ) from None


def _export_run(client: Any, run: RunRecord, experiment: str) -> Exported:
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    mine = _tagged_runs(client, experiment_id, run.reference)
    parent = next((r for r in mine if SET_TAG not in r.data.tags), None)
    children = {r.data.tags[SET_TAG] for r in mine if SET_TAG in r.data.tags}
    started, ended = _millis(run.started), _millis(run.finished)
    status = _STATUS.get(run.status)
    new = parent is None
    if parent is None:
        parent = client.create_run(
            experiment_id, start_time=started, tags=_run_tags(run), run_name=run.reference
        )
        parent_metrics = _metrics(_loose_metrics(run), ended or started)
        if parent_metrics:
            _log(client, parent.info.run_id, metrics=parent_metrics)
        if status:
            client.set_terminated(parent.info.run_id, status, end_time=ended)
    parent_id = parent.info.run_id
    per_set = _set_metrics(run)
    entries = _set_entries(run)
    added = 0
    for param_set in run.param_sets or []:
        if param_set.name in children:
            continue
        tags = {
            "mlflow.parentRunId": parent_id,
            RUN_TAG: run.reference,
            SET_TAG: param_set.name,
            "curi.set_hash": param_set.hash,
            "curi.entries": _cut(" ".join(entries.get(param_set.name, [])), _TAG_CHARS),
        }
        if run.git.commit:
            tags["mlflow.source.git.commit"] = run.git.commit
        child = client.create_run(
            experiment_id, start_time=started, tags=tags, run_name=param_set.name
        )
        params = [
            (key, _cut(_param_text(value), _PARAM_CHARS))
            for key, value in flat_values(param_set.values or {}).items()
        ]
        _log(
            client,
            child.info.run_id,
            params=params,
            metrics=_metrics(per_set.get(param_set.name, {}), ended or started),
        )
        if status:
            client.set_terminated(child.info.run_id, status, end_time=ended)
        added += 1
    present = len(children)
    return Exported(run.reference, experiment, parent_id, added, present, new)


def _tagged_runs(client: Any, experiment_id: str, reference: str) -> list[Any]:
    """The MLflow runs of the experiment tagged with this curi run (parent and sets)."""
    found: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{RUN_TAG}` = '{reference}'",
            max_results=1000,
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def _run_tags(run: RunRecord) -> dict[str, str]:
    tags = {
        RUN_TAG: run.reference,
        "curi.experiment": run.experiment,
        "curi.number": str(run.number),
        "curi.status": run.status,
        "curi.reproduce": _cut(run.reproduce or "", _TAG_CHARS),
    }
    if run.git.commit:
        tags["mlflow.source.git.commit"] = run.git.commit
        tags["curi.git_dirty"] = "true" if run.git.dirty else "false"
    if run.notes:
        tags["mlflow.note.content"] = _cut(run.notes, _TAG_CHARS)  # MLflow's run description
    return tags


def _set_metrics(run: RunRecord) -> dict[str, dict[str, Any]]:
    """Each record's metrics (the last value of a name), by record name."""
    out: dict[str, dict[str, Any]] = {}
    for call in run.stages or []:
        if call.metrics:
            out.setdefault(call.record, {}).update(call.metrics)
    return out


def _loose_metrics(run: RunRecord) -> dict[str, Any]:
    """The metrics of records that are no parameter set (an aggregate's): the parent's."""
    names = {s.name for s in run.param_sets or []}
    out: dict[str, Any] = {}
    for record, metrics in _set_metrics(run).items():
        if record not in names:
            out.update(metrics)
    return out


def _set_entries(run: RunRecord) -> dict[str, list[str]]:
    """The cache entries of each set's calls, as `stage:id` (the id `curi cache` shows)."""
    out: dict[str, list[str]] = {}
    for call in run.stages or []:
        if call.key and call.entry:
            out.setdefault(call.record, []).append(f"{call.stage}:{call.key[:10]}")
    return out


def _metrics(values: dict[str, Any], timestamp: int | None) -> list[tuple[str, float, int]]:
    when = timestamp or int(dt.datetime.now().timestamp() * 1000)
    return [(name, float(value), when) for name, value in values.items()]


def _log(
    client: Any,
    run_id: str,
    params: list[tuple[str, str]] | None = None,
    metrics: list[tuple[str, float, int]] | None = None,
) -> None:
    """Log in batches within MLflow's limits."""
    from mlflow.entities import Metric, Param

    params, metrics = params or [], metrics or []
    for start in range(0, len(params), _PARAMS_PER_BATCH):
        texts = params[start : start + _PARAMS_PER_BATCH]
        client.log_batch(run_id, params=[Param(k, v) for k, v in texts])
    for start in range(0, len(metrics), _METRICS_PER_BATCH):
        values = metrics[start : start + _METRICS_PER_BATCH]
        client.log_batch(run_id, metrics=[Metric(k, v, t, 0) for k, v, t in values])


def _param_text(value: Any) -> str:
    """A parameter as the parameter file would spell it (JSON for lists, null, bools)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ... (cut)"


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None
