"""Demo: build a noisy dataset per parameter set, fit a line, and compare the fits."""

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PandasCsvCacher, PandasJsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["data"], cachers=[PandasCsvCacher])
def make_data(record):
    """Sample y = slope * x + noise."""
    import numpy as np
    import pandas as pd

    p = record.params
    rng = np.random.default_rng(p.seed)
    x = np.linspace(0, 10, p.n_rows)
    y = p.slope * x + rng.normal(0, p.noise, p.n_rows)
    return pd.DataFrame({"x": x, "y": y})


def _line(x, slope, intercept):
    """The fitted line at x (a helper: its code is part of fit_line's fingerprint)."""
    return slope * x + intercept


@cf.stage(
    inputs=["data"], outputs=["fit", cf.Lazy("residuals")], cachers=[JsonCacher, PandasJsonCacher]
)
def fit_line(record, data):
    """Least-squares line through the data."""
    import numpy as np

    slope, intercept = np.polyfit(data["x"], data["y"], 1)
    line = _line(data["x"], slope, intercept)
    residuals = data.assign(residual=data["y"] - line)
    record.report(
        cf.reporting.LinePlotReporter(
            {"data": list(data["y"]), "fit": list(line)},
            x={"data": list(data["x"]), "fit": list(data["x"])},
            name="fit",
            plot_kwargs={"linewidth": 1},
        )
    )
    return {"slope": float(slope), "intercept": float(intercept)}, residuals


@cf.stage(inputs=["fit", "residuals"], outputs=["report"], cachers=[PickleCacher])
def summarize(record, fit, residuals):
    """Collect the fit and the residual spread."""
    summary = {
        "params": record.params.name,
        "slope_error": abs(fit["slope"] - record.params.slope),
        "residual_std": float(residuals["residual"].std()),
    }
    record.report(cf.reporting.JsonReporter(summary, name="summary"))
    # Kept with the entry and in the run registry: `curi metrics demo` tables them.
    record.metrics({k: summary[k] for k in ("slope_error", "residual_std")})
    return summary


@cf.aggregate(inputs=["report"], outputs=["comparison"], cachers=[PandasCsvCacher])
def compare(record, records, report):
    """One row per parameter set, best fit first."""
    import pandas as pd

    rows = [dict(report[r]) for r in records if r in report]
    table = pd.DataFrame(rows).sort_values("slope_error").reset_index(drop=True)
    record.report(cf.reporting.DFReporter(table, name="comparison"))
    return table


def run(param_sets, manager):
    for params in param_sets:
        summarize(fit_line(make_data(cf.Record(manager, params))))
    compare(cf.Record(manager, None))
