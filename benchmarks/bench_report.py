"""What the HTML report costs a run, and how big it gets. By hand:

    python benchmarks/bench_report.py [--records 1000] [--stages 5] [--repeat 5]
                                      [--runs 1000] [--tmpdir /dev/shm]

What it measures (each run a fresh `python -m curifactory_cli ...` subprocess):

* cold / cached: the chain of bench_run.py (`--records` x `--stages` small JSON stages),
  with the report and with `--no-report`, alternating, medians (cold: a fresh cache each);
* in-process: writing that run's report and the index, timed inside one interpreter
  (the part of a run the report adds, without the noise of whole-process timings);
* size: the run's index.html;
* index: reports/index.html over a registry of `--runs` runs (filled through the registry
  API), written by `update_index` from the registry.

Targets: the report adds at most 0.1 s to a fully cached run and 10% to a cold one at
1000 x 5; the page stays under 5 MB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import curi, grid_yaml, run_checked, synthetic_experiment


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f})"


def in_process(project: Path, repeat: int) -> tuple[float, float]:
    """Seconds to write the newest run's report, and the index, in this process."""
    from curifactory_cli import report
    from curifactory_cli.registry.database import RunRegistry, registry_path

    registry = RunRegistry(registry_path(project))
    write, index = [], []
    run = registry.get_run(registry.list_runs(limit=1)[0].reference)
    for _ in range(repeat):
        # As a run does: its row from the registry; its stage calls it has in memory.
        started = time.perf_counter()
        registry.get_run(run.reference, stages=False)
        report.write_run_report(project, run, [], [])
        middle = time.perf_counter()
        report.update_index(project, registry.list_runs(limit=None, brief=True))
        write.append(middle - started)
        index.append(time.perf_counter() - middle)
    return statistics.median(write), statistics.median(index)


def index_of_many(base: Path, runs: int) -> tuple[float, int]:
    from curifactory_cli import report
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.registry.records import GitInfo, HostInfo, ParamSetRecord

    project = base / "many"
    registry = RunRegistry(registry_path(project))
    for i in range(runs):
        run = registry.start_run(
            experiment=f"exp{i % 5}",
            command=["curi", "run", f"exp{i % 5}", "params/p.yaml"],
            param_files=[],
            param_sets=[ParamSetRecord(name="a", hash="0" * 32, source="params/p.yaml")],
            git=GitInfo(commit=f"{i:040x}", dirty=bool(i % 2)),
            host=HostInfo(host="box"),
            versions={},
            notes=f"note {i}" if i % 3 == 0 else None,
            cache_dir="data/cache",
            dry=False,
            doc="An experiment.",
        )
        registry.finish_run(
            run.reference,
            status="complete",
            duration_s=1.0,
            counts={"executed": 1, "cached": 4, "skipped": 0, "failed": 0},
            error=None,
            failed_stage=None,
            failed_record=None,
            stages=[],
        )
    times = []
    for _ in range(5):
        started = time.perf_counter()
        page = report.update_index(project, registry.list_runs(limit=None, brief=True))
        times.append(time.perf_counter() - started)
    return statistics.median(times), page.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--stages", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tmpdir", default=None)
    opts = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="curi-bench-report-", dir=opts.tmpdir))
    try:
        project = base / "chain"
        (project / "experiments").mkdir(parents=True)
        (project / "params").mkdir()
        (project / "experiments" / "synthetic.py").write_text(synthetic_experiment(opts.stages))
        (project / "params" / "grid.yaml").write_text(grid_yaml(opts.records))
        cmd = curi("run", "synthetic", "params/grid.yaml", "--quiet")
        variants = {"report": cmd, "--no-report": [*cmd, "--no-report"]}
        cold: dict[str, list[float]] = {k: [] for k in variants}
        cached: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(max(3, opts.repeat // 2)):
            for name, args in variants.items():
                shutil.rmtree(project / "data", ignore_errors=True)
                cold[name].append(run_checked(args, project, f"cold {name}")[0])
        for _ in range(opts.repeat):
            for name, args in variants.items():
                cached[name].append(run_checked(args, project, f"cached {name}")[0])
        write_s, index_s = in_process(project, opts.repeat)
        newest = sorted((project / "reports").glob("synthetic_*/index.html"))[-1]
        many_s, many_bytes = index_of_many(base, opts.runs)

        calls = opts.records * opts.stages
        print(f"\nchain: {opts.records} records x {opts.stages} stages ({calls} stage calls)")
        print(f"{'':28}{'with report':>26}{'--no-report':>26}")
        for label, data in (("cold", cold), ("cached", cached)):
            print(f"{label:28}{median(data['report']):>26}{median(data['--no-report']):>26}")
        extra = statistics.median(cached["report"]) - statistics.median(cached["--no-report"])
        cold_extra = statistics.median(cold["report"]) / statistics.median(cold["--no-report"])
        print(f"report cost, cached run (difference of medians): {extra:+.3f} s (target <= 0.1 s)")
        print(f"report cost, cold run (ratio of medians): {cold_extra:.2f}x (target <= 1.10x)")
        print(f"in one process: run page {write_s * 1000:.0f} ms, index {index_s * 1000:.0f} ms")
        print(f"run page size: {newest.stat().st_size / 2**20:.2f} MB (target < 5 MB)")
        print(
            f"index over {opts.runs} runs: {many_s * 1000:.0f} ms, "
            f"{many_bytes / 2**20:.2f} MB, from the registry"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
