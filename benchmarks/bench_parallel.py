"""Parallel runs: speed-up on CPU-bound stages, and the overhead of worker processes. By hand:

    python benchmarks/bench_parallel.py [--sets 8] [--seconds 1.0] [--repeat 3]
                                        [--records 1000] [--stages 5] [--tmpdir /dev/shm]
                                        [--curifactory /path/to/venv/bin/experiment]

What it measures (each run a fresh `python -m curifactory_cli ...` subprocess, fresh cache):

* cpu:      `curi run cpu params/cpu.py` over `--sets` parameter sets, each one stage of about
            `--seconds` of pure-Python work, with -j 1, -j 2 and `--executor dask -j 2`
            (a LocalCluster, started inside the timed run). With `--curifactory`, the same
            experiment (imports changed) under Curifactory's `experiment cpu -p cpu
            --parallel 2`, which splits the sets over processes and then runs the whole
            experiment again in the main process.
* overhead: the chain benchmark of bench_run.py (`--records` x `--stages` tiny JSON stages),
            cold, with -j 1 and -j 2.

Targets (2-core machine): -j 2 >= 1.8x and dask >= 1.6x faster than -j 1 on cpu; the chain
with -j 2 no slower than 1.3x the serial run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import curi, filesystem, grid_yaml, run_checked, synthetic_experiment

CPU_EXPERIMENT = '''\
"""CPU-bound benchmark: one stage of pure-Python work per parameter set."""
import {package} as cf
from {package}.caching import JsonCacher


@cf.stage(inputs=None, outputs=["value"], cachers=[JsonCacher])
def burn(record):
    x = record.params.seed
    for _ in range(record.params.n):
        x = (x * 1103515245 + 12345) % 2147483648
    return {{"seed": record.params.seed, "value": x}}


def run(param_sets, manager):
    for params in param_sets:
        burn(cf.Record(manager, params))
'''

CPU_PARAMS = """\
from dataclasses import dataclass

import {package} as cf


@dataclass
class Params(cf.ExperimentParameters):
    seed: int = 0
    n: int = 0


def get_params():
    return [Params(name=f"set{{i}}", seed=i, n={n}) for i in range({sets})]
"""


def calibrate(seconds: float) -> int:
    """Loop iterations that take about `seconds` here, at the machine's best speed (the
    fastest of five samples: one slow moment would otherwise shrink every stage)."""
    n, x, pers = 200_000, 1, []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            x = (x * 1103515245 + 12345) % 2147483648
        pers.append((time.perf_counter() - started) / n)
    return int(seconds / min(pers))


def make_cpu_project(base: Path, package: str, sets: int, n: int) -> Path:
    project = base / package
    (project / "experiments").mkdir(parents=True)
    (project / "params").mkdir()
    (project / "experiments" / "cpu.py").write_text(CPU_EXPERIMENT.format(package=package))
    (project / "params" / "cpu.py").write_text(CPU_PARAMS.format(package=package, sets=sets, n=n))
    return project


FLOOR = """
import multiprocessing, sys

def burn(seed, n={n}):
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2147483648
    return x

if __name__ == "__main__":
    with multiprocessing.get_context("forkserver").Pool({workers}) as pool:
        pool.map(burn, range({sets}), chunksize=1)
"""


def start_dask_cluster(base: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1` on 127.0.0.1."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = base / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)  # the last start's
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": base}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            **quiet,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    procs.append(
        subprocess.Popen(
            [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
            **quiet,
        )
    )
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


def stop_dask_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(timeout=30)


def timed_runs(cmd: list[str], project: Path, repeat: int, what: str) -> list[float]:
    times = []
    for _ in range(repeat):
        for folder in ("data", "logs", "reports"):
            shutil.rmtree(project / folder, ignore_errors=True)
        elapsed, _ = run_checked(cmd, project, what)
        times.append(elapsed)
    return times


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--stages", type=int, default=5)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument(
        "--curifactory", default=None, help="Curifactory's `experiment` script, to compare"
    )
    opts = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="curi-bench-par-", dir=opts.tmpdir))
    try:
        n = calibrate(opts.seconds)
        project = make_cpu_project(base, "curifactory_cli", opts.sets, n)
        cpu = curi("run", "cpu", "params/cpu.py", "-q")
        variants: list[tuple[str, list[str], Path]] = []
        # What this machine gives two processes at all: the same loops, no caching, no curi.
        for workers in (1, 2):
            floor = base / f"floor{workers}.py"
            floor.write_text(FLOOR.format(n=n, workers=workers, sets=opts.sets))
            name = f"plain multiprocessing.Pool({workers})"
            variants.append((name, [sys.executable, str(floor)], base))
        variants += [
            ("curi -j 1", cpu, project),
            ("curi -j 2", [*cpu, "-j", "2"], project),
            ("curi --executor dask -j 2", [*cpu, "--executor", "dask", "-j", "2"], project),
        ]
        # An already running cluster (a scheduler and 2 one-thread workers): what a team or a
        # lab cluster uses, without the start and stop of a local one in every run. It is
        # started before and stopped after each of its own runs (untimed): left running, its
        # heartbeats took 6% of a core from every other variant, which hurt the two-process
        # runs and not the serial one.
        variants.append(("curi --scheduler (2 running workers)", [*cpu, "--scheduler"], project))
        if opts.curifactory:
            other = make_cpu_project(base, "curifactory", opts.sets, n)
            cf_cmd = [opts.curifactory, "cpu", "-p", "cpu", "--no-dag"]
            variants.append(("Curifactory 0.20.5 serial", cf_cmd, other))
            variants.append(
                ("Curifactory 0.20.5 --parallel 2", [*cf_cmd, "--parallel", "2"], other)
            )
        chain = base / "chain"
        (chain / "experiments").mkdir(parents=True)
        (chain / "params").mkdir()
        (chain / "experiments" / "synthetic.py").write_text(synthetic_experiment(opts.stages))
        (chain / "params" / "grid.yaml").write_text(grid_yaml(opts.records))
        chain_cmd = curi("run", "synthetic", "params/grid.yaml", "-q")
        variants += [
            ("chain curi -j 1", chain_cmd, chain),
            ("chain curi -j 2", [*chain_cmd, "-j", "2"], chain),
        ]
        # Round-robin, so that a machine whose speed drifts affects every variant alike.
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for _ in range(opts.repeat):
            for name, cmd, folder in variants:
                if cmd[-1] != "--scheduler":
                    times[name] += timed_runs(cmd, folder, 1, name)
                    continue
                address, cluster = start_dask_cluster(base)
                try:
                    times[name] += timed_runs([*cmd, address], folder, 1, name)
                finally:
                    stop_dask_cluster(cluster)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    cores = len(os.sched_getaffinity(0))
    print(f"\nmachine: {platform.machine()}, {cores} usable cores, ", end="")
    print(f"Python {platform.python_version()}; project on {filesystem(base.parent)}")
    print(f"cpu: {opts.sets} sets x 1 stage of ~{opts.seconds:.1f} s (n={n}), ", end="")
    print(f"medians of {opts.repeat}, each a fresh cache\n")
    cpu_rows = [name for name in times if not name.startswith("chain")]
    base_time = statistics.median(times["curi -j 1"])
    width = max(len(name) for name in times) + 2
    print(f"{'runner':<{width}}{'wall time':<24}speed-up vs curi -j 1")
    for name in cpu_rows:
        speed = base_time / statistics.median(times[name])
        print(f"{name:<{width}}{fmt(times[name]):<24}{speed:.2f}x")
    serial, parallel = times["chain curi -j 1"], times["chain curi -j 2"]
    ratio = statistics.median(parallel) / statistics.median(serial)
    print(f"\nchain: {opts.records} records x {opts.stages} stages, cold")
    print(f"{'curi -j 1':<{width}}{fmt(serial)}")
    print(f"{'curi -j 2':<{width}}{fmt(parallel):<24}{ratio:.2f}x the serial time (target <= 1.3x)")


if __name__ == "__main__":
    main()
