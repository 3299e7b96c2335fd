"""How `run.runs_diff` compares values: parameters as parameter files mean them, metric
deltas and percentages, NaN and absent values."""

from __future__ import annotations

import math

import pytest

from curifactory_cli.run.runs_diff import ABSENT, Metric, _fields


def test_parameters_compare_as_values_not_as_python_types():
    a = {"lr": 1, "on": True, "x": float("nan"), "gone": 3, "name": "rf"}
    b = {"lr": 1.0, "on": 1, "x": float("nan"), "new": [1, 2], "name": "rf"}
    fields = _fields(a, b)
    # 1 and 1.0 are the same parameter (they hash alike); True and 1 are not; NaN is NaN.
    assert [(k, va, vb) for k, va, vb in fields if k in ("on", "gone", "new")] == [
        ("on", True, 1),
        ("gone", 3, ABSENT),
        ("new", ABSENT, [1, 2]),
    ]
    assert [k for k, _, _ in fields] == ["on", "gone", "new"]


@pytest.mark.parametrize(
    ("a", "b", "changed", "delta", "percent"),
    [
        (0.5, 0.75, True, 0.25, 50.0),
        (2, 1, True, -1.0, -50.0),
        (0.0, 1.0, True, 1.0, None),  # no percentage of zero
        (1.0, 1.0, False, 0.0, 0.0),
        (float("nan"), float("nan"), False, float("nan"), None),
        (True, False, True, None, None),  # a bool changes, it has no delta
        (1, True, True, None, None),
        (None, 3.0, True, None, None),  # only in B
        (float("inf"), 1.0, True, -math.inf, None),
    ],
)
def test_metric_deltas(a, b, changed, delta, percent):
    metric = Metric("s", "m", a, b)
    assert metric.changed is changed
    assert _same(metric.delta, delta) and _same(metric.percent, percent)


def _same(got, wanted) -> bool:
    if wanted is None or got is None:
        return got is wanted
    if math.isnan(wanted):
        return math.isnan(got)
    return got == pytest.approx(wanted)
