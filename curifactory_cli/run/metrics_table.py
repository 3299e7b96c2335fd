"""The table `curi metrics` shows: the metrics stage calls recorded, one row per parameter set
of each run chosen, with the parameters that tell the rows apart, from the run registry alone
(no cache entry is opened).

`metrics_table(registry, MetricsQuery(...))` picks the runs (the experiment's latest, given
references, or all its runs), gathers each set's metrics (a name recorded by several stage
calls of one set keeps the value of the last call), filters, selects, groups (mean, sample
standard deviation and count over the rows of a group) and sorts. What the faces render is
the `MetricsTable` it returns: its rows, `to_json()`, or `cells()` (text per column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError, close_matches_hint
from curifactory_cli.metrics import format_metric
from curifactory_cli.registry.references import numbered
from curifactory_cli.run.metric_filters import parse_condition
from curifactory_cli.run.param_values import flat_values

if TYPE_CHECKING:
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.registry.records import RunRecord

LISTING = "see `curi runs ls`"
COLUMNS = "`curi metrics --all-params` shows them all"


@dataclass
class MetricsQuery:
    """What `curi metrics` was asked (its options, parsed)."""

    experiment: str | None = None
    runs: Sequence[str] = ()  # run references; empty: the experiment's latest run
    all_runs: bool = False
    all_params: bool = False
    metrics: Sequence[str] | None = None  # only these, in this order
    filters: Sequence[str] = ()
    sort: str | None = None  # a metric or parameter; a leading '-': descending
    group_by: Sequence[str] | None = None
    over: Sequence[str] | None = None


@dataclass
class Row:
    """A parameter set of a run (or, grouped, a group of them) and its metrics. Grouped, each
    metric is a `Stat`; `params` holds the group's values."""

    run: str  # `<experiment>_<n>` ("" for a group)
    set: str  # the set's name ("" for a group)
    params: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Stat:
    """A metric over the rows of a group: mean, sample standard deviation (None for one
    value) and count. A NaN among the values makes the mean NaN."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        shown = format_metric(self.mean)
        if self.std is not None:
            shown += f" ± {format_metric(self.std)}"
        return f"{shown} ({self.n})"

    def to_json(self) -> dict[str, Any]:
        return {"mean": _json_number(self.mean), "std": _json_number(self.std), "n": self.n}


@dataclass
class MetricsTable:
    """The rows and columns to show, and which runs they come from."""

    runs: list[str]  # the runs' references, oldest first
    params: list[str]  # the parameter columns (dotted keys)
    metrics: list[str]  # the metric columns
    rows: list[Row]
    grouped: bool = False
    notes: list[str] = field(default_factory=list)  # what the reader should know (no metrics)

    @property
    def several_runs(self) -> bool:
        first = self.rows[0].run if self.rows else ""
        return any(r.run != first for r in self.rows)

    def headers(self, precise: bool = False) -> list[str]:
        """The column names (`precise`: a grouped metric as three columns, NAME_mean,
        NAME_std and NAME_n, as `cells(precise=True)` gives them)."""
        if self.grouped:
            if precise:
                stats = [f"{m}_{part}" for m in self.metrics for part in ("mean", "std", "n")]
                return [*self.params, *stats]
            return [*self.params, *self.metrics]
        first = ["run", "set"] if self.several_runs else ["set"]
        return [*first, *self.params, *self.metrics]

    def cells(self, precise: bool = False) -> list[list[str]]:
        """Each row as text, column by column (`precise`: numbers in full, for csv)."""
        several = self.several_runs
        out = []
        for row in self.rows:
            first = [] if self.grouped else ([row.run, row.set] if several else [row.set])
            params = [_param_text(row.params[p]) if p in row.params else "" for p in self.params]
            values: list[str] = []
            for name in self.metrics:
                value = row.metrics.get(name)
                if precise and self.grouped:
                    values += _stat_cells(value)
                else:
                    values.append(_metric_cell(value, precise))
            out.append([*first, *params, *values])
        return out

    def long(self) -> tuple[list[str], list[list[str]]]:
        """One line per set and metric (`--long`): run, set (or the group), metric, value."""
        if self.grouped:
            headers = ["group", "metric", "mean", "std", "n"]
            rows = []
            for row in self.rows:
                group = ",".join(f"{p}={_param_text(row.params.get(p))}" for p in self.params)
                for name in self.metrics:
                    stat = row.metrics.get(name)
                    if isinstance(stat, Stat):
                        std = "" if stat.std is None else repr(stat.std)
                        rows.append([group, name, repr(stat.mean), std, str(stat.n)])
            return headers, rows
        lines = [
            [row.run, row.set, name, _metric_cell(row.metrics[name], True)]
            for row in self.rows
            for name in self.metrics
            if name in row.metrics
        ]
        return ["run", "set", "metric", "value"], lines

    def to_json(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for row in self.rows:
            metrics = {
                k: v.to_json() if isinstance(v, Stat) else _json_number(v)
                for k, v in row.metrics.items()
            }
            if self.grouped:
                rows.append({"group": row.params, "metrics": metrics})
            else:
                rows.append(
                    {"run": row.run, "set": row.set, "params": row.params, "metrics": metrics}
                )
        return {
            "runs": self.runs,
            "params": self.params,
            "metrics": self.metrics,
            "grouped": self.grouped,
            "rows": rows,
        }


def metrics_table(registry: RunRegistry, query: MetricsQuery) -> MetricsTable:
    """The table for `query`, from the registry (ConfigError naming an unknown experiment,
    run, metric or parameter, with the closest names)."""
    if query.group_by and query.over:
        raise ConfigError(
            "--group-by and --over both choose the groups: give one of them",
            hint="--group-by PARAMS keeps those parameters; --over PARAMS averages over them.",
        )
    runs = _chosen_runs(registry, query)
    rows = _rows(registry, runs)
    notes = []
    if not rows:
        shown = ", ".join(numbered(r.experiment, r.number) for r in runs[-3:])
        notes.append(
            f"no metrics recorded in {shown}"
            + (" (or earlier runs)" if len(runs) > 3 else "")
            + ": stages record them with record.metric(name, value)"
        )
    metric_names = _metric_names(rows, query.metrics)
    for text in query.filters:
        condition = parse_condition(text)
        _check_name(condition.name, rows, metric_names, "--filter")
        rows = [r for r in rows if condition.holds(_value(r, condition.name))]
    if query.metrics is not None:
        rows = [r for r in rows if any(m in r.metrics for m in metric_names)]
    if query.group_by or query.over:
        params, rows = _grouped(rows, metric_names, query)
    else:
        params = _param_columns(rows, query.all_params)
    table = MetricsTable(
        runs=[r.reference for r in runs],
        params=params,
        metrics=metric_names,
        rows=rows,
        grouped=bool(query.group_by or query.over),
        notes=notes,
    )
    if query.sort:
        _sort(table, query.sort)
    return table


# ----------------------------------------------------------------------------- the runs
def _chosen_runs(registry: RunRegistry, query: MetricsQuery) -> list[RunRecord]:
    """The runs to show, oldest first."""
    if query.runs:
        if query.all_runs:
            raise ConfigError(
                "--run and --all-runs both choose the runs: give one of them",
                hint="--run REF (repeatable) names runs; --all-runs takes every run.",
            )
        chosen = [registry.get_run(ref, stages=False) for ref in query.runs]
        return list({r.reference: r for r in chosen}.values())
    listed = registry.list_runs(
        experiment=query.experiment, limit=None if query.all_runs else 1, brief=True
    )
    if not listed:
        _no_runs(registry, query.experiment)
    if not query.all_runs and query.experiment is None:
        return listed[:1]
    if query.experiment is None:  # --all-runs of the latest run's experiment
        listed = registry.list_runs(experiment=listed[0].experiment, limit=None, brief=True)
    return listed[::-1]


def _no_runs(registry: RunRegistry, experiment: str | None) -> None:
    if experiment is None:
        raise ConfigError(
            f"no runs recorded yet in {registry.path}",
            hint="`curi run EXPERIMENT PARAMS` records a run; its stages record metrics with "
            "record.metric(name, value).",
        )
    known = sorted({r.experiment for r in registry.list_runs(limit=None, brief=True)})
    raise ConfigError(
        f"no runs of experiment {experiment!r} in the run registry",
        hint=close_matches_hint(experiment, known, "experiments with runs", LISTING),
    )


def _rows(registry: RunRegistry, runs: list[RunRecord]) -> list[Row]:
    """A row per (run, record) with metrics, in the order of `runs`, each run's records in
    the order of their first call with metrics."""
    rows: list[Row] = []
    flat: dict[int, dict[str, Any]] = {}  # by id of the recorded values (shared by reruns)
    for run in registry.run_metrics([r.reference for r in runs]):
        label = numbered(run.experiment, run.number)
        mine: dict[str, Row] = {}
        for record, metrics in run.calls:
            row = mine.get(record)
            if row is None:
                values = run.values.get(record, {})
                params = values if not run.nested else flat.get(id(values))
                if params is None:
                    params = flat[id(values)] = flat_values(values)
                row = mine[record] = Row(label, record, params, {})
                rows.append(row)
            row.metrics.update(metrics)
    return rows


# ----------------------------------------------------------------------------- columns
def _metric_names(rows: list[Row], wanted: Sequence[str] | None) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.metrics))
    if wanted is None:
        return list(seen)
    for name in wanted:
        if name not in seen:
            raise ConfigError(
                f"no metric {name!r} in the runs shown",
                hint=close_matches_hint(name, list(seen), "metrics", "leave out --metrics"),
            )
    return list(dict.fromkeys(wanted))


def _param_columns(rows: list[Row], every: bool) -> list[str]:
    """The parameters whose values differ between the rows (`every`: all of them), in the
    order they first appear."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.params))
    if every:
        return list(names)
    out = []
    for name in names:
        first = _key(rows[0].params.get(name, _MISSING))
        if any(_key(r.params.get(name, _MISSING)) != first for r in rows[1:]):
            out.append(name)
    return out


def _check_name(name: str, rows: list[Row], metrics: list[str], option: str) -> None:
    known = set(metrics) | {p for r in rows for p in r.params} | {"set", "run"}
    if name not in known and rows:
        raise ConfigError(
            f"{option}: {name!r} is neither a metric nor a parameter of the rows shown",
            hint=close_matches_hint(name, sorted(known), "metrics and parameters", COLUMNS),
        )


def _value(row: Row, name: str) -> Any:
    if name in row.metrics:
        value = row.metrics[name]
        return value.mean if isinstance(value, Stat) else value
    if name == "set" and "set" not in row.params:
        return row.set
    if name == "run" and "run" not in row.params:
        return row.run
    return row.params.get(name)


# ----------------------------------------------------------------------------- grouping
def _grouped(
    rows: list[Row], metrics: list[str], query: MetricsQuery
) -> tuple[list[str], list[Row]]:
    """The groups' rows: the parameters kept (`--group-by`, or every differing parameter
    but those of `--over`) and, per metric, its `Stat` over the group's rows."""
    known = {p for r in rows for p in r.params}
    named = list(query.group_by or query.over or ())
    option = "--group-by" if query.group_by else "--over"
    for name in named:
        if name not in known and rows:
            raise ConfigError(
                f"{option}: no parameter {name!r} in the rows shown",
                hint=close_matches_hint(name, sorted(known), "parameters", COLUMNS),
            )
    differing = [] if query.group_by else _param_columns(rows, False)
    keep = named if query.group_by else [p for p in differing if p not in named]
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(_key(row.params.get(p)) for p in keep), []).append(row)
    out = []
    for members in groups.values():
        stats = {}
        for name in metrics:
            values = [r.metrics[name] for r in members if name in r.metrics]
            if values:
                stats[name] = stat(values)
        params = {p: members[0].params.get(p) for p in keep}
        out.append(Row("", "", params, stats))
    return keep, out


def stat(values: list[Any]) -> Stat:
    # Two passes with exact sums (statistics.stdev computes in fractions: 50x slower here).
    numbers = [float(v) for v in values]
    n = len(numbers)
    try:
        total = math.fsum(numbers)  # NaN with a NaN among them, inf with an infinity
    except ValueError:  # inf and -inf
        total = math.nan
    mean = total / n
    if n < 2:
        return Stat(mean, None, n)
    if not math.isfinite(total):
        return Stat(mean, math.nan, n)
    std = math.sqrt(math.fsum([(v - mean) ** 2 for v in numbers]) / (n - 1))
    return Stat(mean, std, n)


# ----------------------------------------------------------------------------- sorting
def _sort(table: MetricsTable, spec: str) -> None:
    """Sorted by a metric or parameter, ascending (descending with a leading '-'); rows
    without it (or NaN) last either way."""
    descending = spec.startswith("-")
    name = spec[1:] if descending else spec
    _check_name(name, table.rows, table.metrics, "--sort")

    def key(row: Row) -> tuple[int, Any]:
        value = _value(row, name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (2, 0)
        if isinstance(value, (int, float)):
            return (0, -value if descending else value)
        return (1, str(value))

    table.rows.sort(key=key)
    if descending:  # text sorts descending too (numbers already are)
        text = [r for r in table.rows if key(r)[0] == 1]
        if text:
            text.reverse()
            numbers = [r for r in table.rows if key(r)[0] == 0]
            rest = [r for r in table.rows if key(r)[0] == 2]
            table.rows[:] = numbers + text + rest


# ----------------------------------------------------------------------------- helpers
_MISSING = object()


def _key(value: Any) -> Any:
    """A value as a dict key and for comparison (lists and dicts by their text)."""
    if value is _MISSING:
        return ("<missing>",)
    if isinstance(value, (list, dict)):
        return repr(value)
    if isinstance(value, bool):  # True and 1 are different parameter values
        return ("bool", value)
    return value


def _param_text(value: Any) -> str:
    """A parameter as written (floats in full: `0.1`, `2.0`). Tested by exact type first:
    a table of every run's sets formats hundreds of thousands of them."""
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value - value == 0 else format_metric(value)  # not inf or nan
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return str(value)


def _metric_cell(value: Any, precise: bool) -> str:
    kind = type(value)
    if kind is float and value - value == 0:  # finite
        return repr(value) if precise else f"{value:.6g}"
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, Stat):
        return value.text()
    return format_metric(value)


def _stat_cells(value: Any) -> list[str]:
    if not isinstance(value, Stat):
        return ["", "", ""]
    std = "" if value.std is None else _metric_cell(value.std, True)
    return [_metric_cell(value.mean, True), std, str(value.n)]


def _json_number(value: Any) -> Any:
    """A metric in JSON output: NaN as null, infinities as "inf"/"-inf" (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
