"""A parameter sweep that only pays for what changed. By hand:

    python benchmarks/bench_sweep.py [--values 20] [--clean-seconds 1.0] [--repeat 3]
                                     [--workers 1]

The workload: one dataset (`load`, 0.1 s; `clean`, --clean-seconds) and, per value of a
learning rate, `train` and `evaluate` (0.01 s each): --values parameter sets that differ only
in `lr`. `load` and `clean` read `n_rows` and `seed`, never `lr`, so keyed on what they read
they are computed once; keyed on the whole set (`params = "all"`, as Curifactory keys them)
once per set. Each figure is a fresh project and a fresh process: cold (empty cache), the
same again (everything cached), and one value added (only its `train` and `evaluate`).

Goal: cold at least 10x faster than keying on whole sets with a 1 s `clean` at 20 values.
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

EXPERIMENT = """
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(outputs=["data"], cachers=[JsonCacher])
def load(record):
    time.sleep(0.1)
    p = record.params
    return [(i * p.seed) % 97 for i in range(p.n_rows)]

@cf.stage(inputs=["data"], outputs=["clean"], cachers=[JsonCacher])
def clean(record, data):
    time.sleep({clean})
    return [x / 97 for x in data]

@cf.stage(inputs=["clean"], outputs=["model"], cachers=[JsonCacher])
def train(record, clean):
    time.sleep(0.01)
    return sum(clean) * record.params.lr

@cf.stage(inputs=["model"], outputs=["score"], cachers=[JsonCacher])
def evaluate(record, model):
    time.sleep(0.01)
    return model / record.params.n_rows

def run(param_sets, manager):
    for p in param_sets:
        evaluate(train(clean(load(cf.Record(manager, p)))))
"""


def sets(values: int) -> str:
    return "".join(
        f"- name: lr{i}\n  n_rows: 1000\n  seed: 7\n  lr: {0.001 * (i + 1):.3f}\n"
        for i in range(values)
    )


def project(base: str, values: int, clean: float, whole: bool) -> Path:
    root = Path(tempfile.mkdtemp(prefix="curi-sweep-", dir=base))
    (root / "experiments").mkdir()
    (root / "params").mkdir()
    (root / "experiments" / "sweep.py").write_text(EXPERIMENT.replace("{clean}", str(clean)))
    (root / "params" / "grid.yaml").write_text(sets(values))
    if whole:
        (root / "curi.toml").write_text('params = "all"\n')
    return root


def curi(root: Path, workers: int) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "curifactory_cli", "run", "sweep", "params/grid.yaml"]
    subprocess.run([*command, "-q", "--no-report", "-j", str(workers)], cwd=root, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=20)
    parser.add_argument("--clean-seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fs", default=tempfile.gettempdir())
    args = parser.parse_args()
    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for mode, whole in (("keyed on reads", False), ('params = "all"', True)):
            root = project(args.fs, args.values, args.clean_seconds, whole)
            try:
                figures.setdefault((mode, "cold"), []).append(curi(root, args.workers))
                figures.setdefault((mode, "cached"), []).append(curi(root, args.workers))
                (root / "params" / "grid.yaml").write_text(sets(args.values + 1))
                figures.setdefault((mode, "one value added"), []).append(curi(root, args.workers))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.values} values, clean {args.clean_seconds} s, -j {args.workers}, "
        f"{args.repeat} repeats (median, min) on {args.fs} ({os.cpu_count()} cores)"
    )
    for phase in ("cold", "cached", "one value added"):
        reads = figures[("keyed on reads", phase)]
        whole = figures[('params = "all"', phase)]
        print(
            f"{phase:16s} keyed on reads {statistics.median(reads):6.2f} s ({min(reads):.2f})"
            f"   params = all {statistics.median(whole):6.2f} s ({min(whole):.2f})"
            f"   {statistics.median(whole) / statistics.median(reads):5.1f}x"
        )


if __name__ == "__main__":
    main()
