"""What `curi metrics` costs over a large registry. By hand:

    python benchmarks/bench_metrics.py [--runs 1000] [--sets 100] [--repeat 5]
                                       [--tmpdir /dev/shm]

A registry of `--runs` runs of one experiment, each with `--sets` parameter sets (lr, seed,
width, and a batch size that differs in every run) and one stage call per set recording three
metrics, is filled through the registry
API (as `curi run` fills it). Then, each a fresh `python -m curifactory_cli metrics ...`
subprocess (what a user waits for), medians of `--repeat`:

* latest: `curi metrics bench` (the newest run's sets);
* all runs: `curi metrics bench --all-runs --format csv` (every set of every run);
* over seed: `curi metrics bench --all-runs --over seed` (averaged over the seeds);

and the same three built in this process with `run.metrics_table` (no interpreter start).

Target: each under 0.5 s at 1000 runs x 100 sets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def fill(project: Path, runs: int, sets: int) -> float:
    """Seconds to record the runs."""
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.registry.records import GitInfo, HostInfo, ParamSetRecord, StageRecord

    registry = RunRegistry(registry_path(project))
    started = time.perf_counter()
    for r in range(runs):
        # Every run's sets differ (`batch`): no parsing is shared between runs.
        param_sets = [
            ParamSetRecord(
                name=f"s{i}",
                hash=f"{r:016x}{i:016x}",
                source="params/grid.yaml",
                values={
                    "lr": [0.1, 0.01, 0.001, 0.0001][i % 4],
                    "seed": i // 4 % 5,
                    "width": 16 * (1 + i // 20),
                    "batch": 32 + r,
                },
            )
            for i in range(sets)
        ]
        run = registry.start_run(
            experiment="bench",
            command=["curi", "run", "bench", "grid"],
            param_files=[],
            param_sets=param_sets,
            git=GitInfo(),
            host=HostInfo(host="box"),
            versions={},
            notes=None,
            cache_dir="data/cache",
            dry=False,
        )
        stages = [
            StageRecord(
                stage="train",
                record=p.name,
                outcome="executed",
                seconds=0.1,
                metrics={"acc": (r * 7 + i) % 100 / 100, "loss": float(i + r), "steps": i},
            )
            for i, p in enumerate(param_sets)
        ]
        registry.finish_run(
            run.reference,
            status="complete",
            duration_s=1.0,
            counts={"executed": sets},
            error=None,
            failed_stage=None,
            failed_record=None,
            stages=stages,
        )
    return time.perf_counter() - started


CASES = {
    "latest": ["bench"],
    "all runs": ["bench", "--all-runs", "--format", "csv"],
    "over seed": ["bench", "--all-runs", "--over", "seed"],
}


def timed_cli(project: Path, args: list[str], repeat: int) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    times, lines = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "curifactory_cli", "metrics", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
        lines = len(out.stdout.splitlines())
    return statistics.median(times), lines


def timed_api(project: Path, args: list[str], repeat: int) -> float:
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.run.metrics_table import MetricsQuery, metrics_table

    query = MetricsQuery(
        experiment="bench",
        all_runs="--all-runs" in args,
        over=["seed"] if "--over" in args else None,
    )
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        table = metrics_table(RunRegistry(registry_path(project), read_only=True), query)
        table.cells()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="curi-bench-metrics-", dir=args.tmpdir))
    try:
        project = base / "project"
        (project / "experiments").mkdir(parents=True)
        seconds = fill(project, args.runs, args.sets)
        size = (project / "data" / "runs.sqlite").stat().st_size
        print(
            f"registry: {args.runs} runs x {args.sets} sets, 3 metrics each, filled in "
            f"{seconds:.1f} s, {size / 1e6:.1f} MB"
        )
        for name, case in CASES.items():
            wall, lines = timed_cli(project, case, args.repeat)
            api = timed_api(project, case, args.repeat)
            print(
                f"{name:>10}: curi metrics {' '.join(case)}: {wall:.3f} s ({lines} lines); "
                f"in-process {api:.3f} s"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
