"""Which cacher for a DataFrame: save and load times, file sizes, and which dtypes survive. By hand:

    python benchmarks/bench_dataframe.py [--rows 1000000] [--repeat 3]

A DataFrame of `--rows` rows x 10 columns of mixed types (int64, float64, float32, bool, str,
category, datetime64, tz-aware datetime, timedelta, nullable Int64) goes through each built-in
DataFrame cacher in a temporary folder: `PandasParquetCacher` (pyarrow), `PandasCacher` with
format feather, `PickleCacher`, `PandasCsvCacher` and `PandasJsonCacher`. Cachers whose
optional library is missing are skipped. Times are the fastest of `--repeat`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from curifactory_cli.caching import (
    PandasCacher,
    PandasCsvCacher,
    PandasJsonCacher,
    PandasParquetCacher,
    PickleCacher,
)


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2024-01-01")
    return pd.DataFrame(
        {
            "int": rng.integers(0, 1_000_000, rows),
            "float": rng.random(rows),
            "float32": rng.random(rows).astype("float32"),
            "flag": rng.random(rows) > 0.5,
            "text": pd.Series(rng.integers(0, 10_000, rows)).map("id-{}".format),
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], rows)),
            "when": start + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s"),
            "when_utc": (
                start + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s")
            ).tz_localize("UTC"),
            "took": pd.to_timedelta(rng.integers(0, 10**4, rows), unit="ms"),
            "maybe": pd.array(
                np.where(rng.random(rows) > 0.9, None, rng.integers(0, 100, rows)), dtype="Int64"
            ),
        }
    )


CACHERS = {
    "PandasParquetCacher": PandasParquetCacher,
    "PandasCacher(format='feather')": lambda: PandasCacher(format="feather"),
    "PickleCacher": PickleCacher,
    "PandasCsvCacher": PandasCsvCacher,
    "PandasJsonCacher": PandasJsonCacher,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    df = frame(opts.rows)
    print(
        f"{opts.rows:,} rows x {df.shape[1]} columns, "
        f"{df.memory_usage(deep=True).sum() / 2**20:.0f} MiB in memory"
    )
    print(f"{'cacher':<32} {'save':>8} {'load':>8} {'file':>10}  dtypes kept")
    folder = tempfile.mkdtemp(prefix="curi-bench-df-")
    try:
        for name, make in CACHERS.items():
            saves, loads = [], []
            try:
                for i in range(opts.repeat):
                    cacher = make()
                    cacher.path = f"{folder}/{i}{cacher.extension}"
                    started = time.perf_counter()
                    cacher.save(df)
                    saves.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    back = cacher.load()
                    loads.append(time.perf_counter() - started)
            except Exception as exc:  # a missing optional library: say so, go on
                print(f"{name:<32} skipped: {type(exc).__name__}: {str(exc)[:60]}")
                continue
            size = sum(p.stat().st_size for p in Path(folder).glob("0*"))
            kept = [c for c in df.columns if c in back.columns and back[c].dtype == df[c].dtype]
            print(
                f"{name:<32} {min(saves):7.2f}s {min(loads):7.2f}s {size / 2**20:8.1f} MB  "
                f"{len(kept)}/{df.shape[1]}"
                + (
                    ""
                    if len(kept) == df.shape[1]
                    else f" (lost: {', '.join(c for c in df.columns if c not in kept)})"
                )
            )
            for path in Path(folder).iterdir():
                path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
