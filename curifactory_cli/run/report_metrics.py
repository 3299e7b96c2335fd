"""The metrics the HTML pages show, from the run registry: the tables at the top of a run's
page and each run's summary on the index of runs. The numbers are `curi metrics`'s
(run.metrics_table); this module only lays them out as cells for report.metrics_html.

A run's page has the table of its parameter sets (only the parameters that differ between
them), and above it a table of means when asked (`curi report --group-by PARAMS`, as `curi
metrics --group-by`) or when sets are named alike but for a trailing seed number
(`lr=0.1_seed=1`, `lr=0.1_seed=2`, `base-seed3`): those are averaged together, one row per
name with the seed number left out (`lr=0.1_seed=*`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from curifactory_cli.report.metrics_html import Cell, Summary, Table, sort_number
from curifactory_cli.run.metrics_table import (
    MetricsQuery,
    MetricsTable,
    Row,
    Stat,
    metrics_table,
    stat,
)

if TYPE_CHECKING:
    from curifactory_cli.registry.database import RunRegistry

# A set name ending in a seed number: `seed`, an optional separator, digits.
SEED_NAME = re.compile(r"^(?P<stem>.*seed[_=.\-]?)(?P<number>\d+)$", re.IGNORECASE)


def run_metric_tables(
    registry: RunRegistry, reference: str, group_by: Sequence[str] | None = None
) -> list[Table]:
    """The metrics tables of a run's page (none when its stages recorded no metric): the
    means by `group_by` (or over seed-named sets), then every set. A `group_by` naming no
    parameter of the run is a ConfigError naming it."""
    sets = metrics_table(registry, MetricsQuery(runs=[reference]))
    if not sets.rows:
        return []
    tables = []
    if group_by:
        grouped = metrics_table(registry, MetricsQuery(runs=[reference], group_by=group_by))
        caption = f"Mean \u00b1 std (n) by {', '.join(grouped.params)}"
        tables.append(_grouped(grouped, caption))
    else:
        seeds = seed_groups(sets)
        if seeds is not None:
            tables.append(seeds)
    tables.append(_sets(sets))
    return tables


def _sets(table: MetricsTable) -> Table:
    columns = ["set", *table.params, *table.metrics]
    rows = []
    for row, texts in zip(table.rows, table.cells(), strict=True):
        values = [row.set, *(row.params.get(p) for p in table.params)]
        values += [row.metrics.get(m) for m in table.metrics]
        rows.append([Cell(text, sort_number(v)) for text, v in zip(texts, values, strict=True)])
    count = len(table.rows)
    return Table(
        f"By parameter set ({count} set{'s' if count != 1 else ''})",
        columns,
        rows,
        numeric=set(table.metrics),
        element_id="metrics-sets",
    )


def _grouped(table: MetricsTable, caption: str) -> Table:
    rows = []
    for row, texts in zip(table.rows, table.cells(), strict=True):
        values: list[Any] = [row.params.get(p) for p in table.params]
        values += [_mean(row.metrics.get(m)) for m in table.metrics]
        rows.append([Cell(text, sort_number(v)) for text, v in zip(texts, values, strict=True)])
    columns = [*table.params, *table.metrics]
    return Table(caption, columns, rows, numeric=set(table.metrics), element_id="metrics-groups")


def seed_groups(table: MetricsTable) -> Table | None:
    """The means over sets named alike but for their seed number (None when no two sets
    are): a row per name with the number left out (a set without a seed number is a row of
    its own), with the parameters that are the same within every group and differ between
    them, and each metric as mean ± std (n)."""
    groups: dict[str, list[Row]] = {}
    for row in table.rows:
        match = SEED_NAME.match(row.set)
        groups.setdefault(f"{match['stem']}*" if match else row.set, []).append(row)
    if all(len(members) < 2 for members in groups.values()):
        return None
    params = [p for p in table.params if all(_same(m, p) for m in groups.values())]
    # Each row's parameters as the table writes them (after its run and set columns).
    first = len(table.headers()) - len(table.params) - len(table.metrics)
    texts = {
        id(row): dict(zip(table.params, cells[first:], strict=False))
        for row, cells in zip(table.rows, table.cells(), strict=True)
    }
    rows = []
    for label, members in groups.items():
        cells = [Cell(label), Cell(str(len(members)), float(len(members)))]
        shown = texts[id(members[0])]
        cells += [Cell(shown[p], sort_number(members[0].params.get(p))) for p in params]
        for name in table.metrics:
            values = [m.metrics[name] for m in members if name in m.metrics]
            if not values:
                cells.append(Cell(""))
                continue
            summary = stat(values)
            cells.append(Cell(summary.text(), sort_number(summary.mean)))
        rows.append(cells)
    return Table(
        "Mean \u00b1 std (n) over the sets named alike but for their seed number",
        ["sets", "n", *params, *table.metrics],
        rows,
        numeric={"n", *table.metrics},
        element_id="metrics-groups",
    )


def _same(members: list[Row], param: str) -> bool:
    first = repr(members[0].params.get(param))
    return all(repr(m.params.get(param)) == first for m in members[1:])


def _mean(value: Any) -> Any:
    return value.mean if isinstance(value, Stat) else value


def index_summaries(
    registry: RunRegistry, references: Sequence[str]
) -> dict[str, dict[str, Summary]]:
    """Each run's metrics over its parameter sets (a metric several calls of a set
    recorded: the last), by reference; runs without metrics are left out. The index is
    rewritten after every run, over every run: this is its Python work per call, kept
    small."""
    out = {}
    for reference, calls in registry.call_metrics(references).items():
        records = {record for record, _ in calls}
        if len(records) == len(calls):  # a call with metrics per set: nothing to merge
            sets = [metrics for _, metrics in calls]
        else:
            per_set: dict[str, dict[str, Any]] = {}
            for record, metrics in calls:
                known = per_set.get(record)
                per_set[record] = metrics if known is None else {**known, **metrics}
            sets = list(per_set.values())
        names: dict[str, None] = {}
        for metrics in sets:
            names.update(metrics)  # the names in the order they come (values unused)
        out[reference] = {name: _summary([m[name] for m in sets if name in m]) for name in names}
    return out


def _summary(numbers: list[Any]) -> Summary:
    """Lowest and highest leaving NaN out (NaN when all are), the mean (NaN with a NaN)."""
    known = [v for v in numbers if v == v]  # NaN is not equal to itself
    low, high = (float(min(known)), float(max(known))) if known else (math.nan, math.nan)
    if len(known) < len(numbers):
        mean = math.nan
    else:
        try:
            mean = math.fsum(numbers) / len(numbers)
        except ValueError:  # inf and -inf
            mean = math.nan
    return Summary(low, high, mean, len(numbers))
