"""Wall-time and memory benchmark for `curi run`. Run by hand:

    python benchmarks/bench_run.py [--records R] [--stages S] [--lazy-records N] [--lazy-mb M]
                                   [--skip-lazy] [--repeat K] [--keep]

What it measures (every run is a separate `python -m curifactory_cli ...` subprocess):

* cold:   `curi run synthetic params/grid.yaml --quiet` on an empty cache (R records x S stages,
          each stage a JsonCacher'd small dict, stage_i consuming stage_{i-1}'s output);
* cached: the same command again, fully served from the cache (checked: nothing executes);
* --help: `curi --help`, median of 5;
* memory: `curi run lazybig params/big.yaml --quiet` (N records, each producing a Lazy M MiB
          numpy array cached with PickleCacher, plus a small JSON output that a consumer stage
          reads), run in-process inside a fresh interpreter that reports its own peak RSS.
          Reported as peak / (baseline + one object), where baseline is the peak RSS of
          `python -c "import curifactory_cli.cli, pandas, numpy"`.

Targets (2-core machine): cold < 3 s, cached < 1 s, memory ratio < 1.3.
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
import textwrap
import time
from pathlib import Path

COLD_TARGET_S = 3.0
CACHED_TARGET_S = 1.0
MEMORY_TARGET = 1.3
RSS_MARK = "__CURI_BENCH_MAXRSS_KB__="

# Runs the CLI in this interpreter, then reports its own peak RSS (KiB on Linux) on stderr.
RSS_WRAPPER = textwrap.dedent(
    f"""
    import resource, sys
    sys.argv = ["curi", *sys.argv[1:]]
    from curifactory_cli.cli import main
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    print("{RSS_MARK}%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    sys.exit(code)
    """
)

BASELINE_SNIPPET = textwrap.dedent(
    f"""
    import resource, sys
    import curifactory_cli.cli, pandas, numpy
    print("{RSS_MARK}%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    """
)


# ------------------------------------------------------------------------------ project files
def synthetic_experiment(stages: int) -> str:
    lines = [
        '"""Synthetic benchmark: a chain of small JSON-cached stages per record."""',
        "import curifactory_cli as cf",
        "from curifactory_cli.caching import JsonCacher",
        "",
        "",
        '@cf.stage(inputs=None, outputs=["out_0"], cachers=[JsonCacher])',
        "def stage_0(record):",
        '    return {"i": 0, "value": record.params.seed}',
        "",
    ]
    for i in range(1, stages):
        lines += [
            "",
            f'@cf.stage(inputs=["out_{i - 1}"], outputs=["out_{i}"], cachers=[JsonCacher])',
            f"def stage_{i}(record, out_{i - 1}):",
            f'    return {{"i": {i}, "value": out_{i - 1}["value"] * 2 + {i}}}',
            "",
        ]
    lines += [
        "",
        "STAGES = [" + ", ".join(f"stage_{i}" for i in range(stages)) + "]",
        "",
        "",
        "def run(param_sets, manager):",
        "    for params in param_sets:",
        "        record = cf.Record(manager, params)",
        "        for stage in STAGES:",
        "            record = stage(record)",
        "",
    ]
    return "\n".join(lines)


def grid_yaml(records: int) -> str:
    return "".join(f"- name: r{i}\n  seed: {i}\n" for i in range(records))


LAZYBIG_EXPERIMENT = '''\
"""Memory benchmark: big Lazy outputs that nothing downstream needs to reload."""
import numpy as np

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["summary", cf.Lazy("big")], cachers=[JsonCacher, PickleCacher])
def make_big(record):
    n = record.params.size_mb * 2**20 // 8
    big = np.full(n, float(record.params.index), dtype=np.float64)
    return {"index": record.params.index, "nbytes": int(big.nbytes)}, big


@cf.stage(inputs=["summary"], outputs=["checked"], cachers=[JsonCacher])
def consume(record, summary):
    return {"index": summary["index"], "mb": summary["nbytes"] / 2**20}


def run(param_sets, manager):
    for params in param_sets:
        consume(make_big(cf.Record(manager, params)))
'''


def big_yaml(records: int, mb: int) -> str:
    return "".join(f"- name: big_{i}\n  index: {i}\n  size_mb: {mb}\n" for i in range(records))


def make_project(
    records: int, stages: int, lazy_records: int, lazy_mb: int, tmpdir: str | None = None
) -> Path:
    project = Path(tempfile.mkdtemp(prefix="curi-bench-", dir=tmpdir))
    (project / "experiments").mkdir()
    (project / "params").mkdir()
    (project / "experiments" / "synthetic.py").write_text(synthetic_experiment(stages))
    (project / "params" / "grid.yaml").write_text(grid_yaml(records))
    (project / "experiments" / "lazybig.py").write_text(LAZYBIG_EXPERIMENT)
    (project / "params" / "big.yaml").write_text(big_yaml(lazy_records, lazy_mb))
    return project


# ------------------------------------------------------------------------------ running
def run_checked(
    args: list[str], cwd: Path, what: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(f"\n{what} failed with exit code {proc.returncode}: {' '.join(args)}\n")
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(1)
    return elapsed, proc


def curi(*args: str) -> list[str]:
    return [sys.executable, "-m", "curifactory_cli", *args]


def peak_rss_kib(proc: subprocess.CompletedProcess[str]) -> int:
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith(RSS_MARK):
            return int(line[len(RSS_MARK) :])
    raise RuntimeError("the child did not report its peak RSS:\n" + proc.stderr[-2000:])


def check_counts(project: Path, experiment: str, params: str, expected: dict[str, int]) -> None:
    """An untimed `--json` re-run: the cache must serve every node."""
    _, proc = run_checked(curi("run", experiment, params, "--json"), project, f"{experiment} check")
    counts = json.loads(proc.stdout)["counts"]
    if any(counts.get(k, 0) != v for k, v in expected.items()):
        raise SystemExit(f"{experiment}: unexpected outcome counts {counts}, expected {expected}")


def bench_synthetic(
    project: Path, records: int, stages: int, repeat: int
) -> dict[str, list[float]]:
    cmd = curi("run", "synthetic", "params/grid.yaml", "--quiet")
    cache = project / "data" / "cache"
    cold, cached = [], []
    for _ in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        elapsed, _ = run_checked(cmd, project, "cold run")
        cold.append(elapsed)
        elapsed, _ = run_checked(cmd, project, "cached run")
        cached.append(elapsed)
    check_counts(
        project,
        "synthetic",
        "params/grid.yaml",
        {"cached": records * stages, "executed": 0, "failed": 0},
    )
    return {"cold": cold, "cached": cached}


def bench_help(project: Path, times: int = 5) -> list[float]:
    script = Path(sys.executable).with_name("curi")
    cmd = [str(script), "--help"] if script.exists() else curi("--help")
    return [run_checked(cmd, project, "curi --help")[0] for _ in range(times)]


def bench_memory(project: Path, records: int, mb: int) -> dict[str, float]:
    _, base = run_checked([sys.executable, "-c", BASELINE_SNIPPET], project, "baseline")
    baseline = peak_rss_kib(base) * 1024
    wrapper = [sys.executable, "-c", RSS_WRAPPER, "run", "lazybig", "params/big.yaml", "--quiet"]
    cold_s, cold = run_checked(wrapper, project, "lazybig cold run")
    cached_s, cached = run_checked(wrapper, project, "lazybig cached run")
    check_counts(
        project, "lazybig", "params/big.yaml", {"cached": 2 * records, "executed": 0, "failed": 0}
    )
    obj = mb * 2**20 // 8 * 8
    peak = peak_rss_kib(cold) * 1024
    return {
        "baseline": baseline,
        "object": obj,
        "peak_cold": peak,
        "peak_cached": peak_rss_kib(cached) * 1024,
        "ratio": peak / (baseline + obj),
        "cold_s": cold_s,
        "cached_s": cached_s,
    }


# ------------------------------------------------------------------------------ report
def filesystem(path: Path) -> str:
    """The filesystem type holding `path`, from /proc/mounts (Linux), or "unknown"."""
    best, kind, target = "", "unknown", str(path.resolve())
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                mount = parts[1] if len(parts) > 2 else ""
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if mount and inside and len(mount) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def fmt_times(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} s"
    return f"{min(values):.3f} s (min of {len(values)}; median {statistics.median(values):.3f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000, help="parameter sets (default 1000)")
    parser.add_argument(
        "--stages", type=int, default=5, help="chained stages per record (default 5)"
    )
    parser.add_argument(
        "--lazy-records", type=int, default=5, help="records in lazybig (default 5)"
    )
    parser.add_argument(
        "--lazy-mb", type=int, default=200, help="MiB per Lazy object (default 200)"
    )
    parser.add_argument("--skip-lazy", action="store_true", help="skip the memory benchmark")
    parser.add_argument(
        "--repeat", type=int, default=1, help="repeat cold+cached K times (default 1)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp project and print its path"
    )
    parser.add_argument(
        "--tmpdir",
        default=None,
        help="where to create the temp project (default: tempfile's default, "
        "e.g. /tmp; try /dev/shm to take the disk out of the figures)",
    )
    opts = parser.parse_args()
    if opts.records < 1 or opts.stages < 1 or opts.lazy_records < 1 or opts.lazy_mb < 1:
        parser.error("counts and sizes must be positive")

    project = make_project(opts.records, opts.stages, opts.lazy_records, opts.lazy_mb, opts.tmpdir)
    try:
        # Compile the package's bytecode once so no timed run pays for it.
        run_checked(
            [sys.executable, "-c", "import curifactory_cli.cli, curifactory_cli.runner"],
            project,
            "warm-up import",
        )
        help_times = bench_help(project)
        synthetic = bench_synthetic(project, opts.records, opts.stages, max(1, opts.repeat))
        memory = None if opts.skip_lazy else bench_memory(project, opts.lazy_records, opts.lazy_mb)
    finally:
        if opts.keep:
            print(f"project kept at {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)

    cold, cached = min(synthetic["cold"]), min(synthetic["cached"])
    help_median = statistics.median(help_times)
    nodes = opts.records * opts.stages
    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}"
    )
    print(f"project dir: {project.parent} ({filesystem(project.parent)})")
    print(f"synthetic: {opts.records} records x {opts.stages} stages = {nodes} nodes (JsonCacher)")
    print()
    rows = [
        (
            "cold run (empty cache)",
            fmt_times(synthetic["cold"]),
            f"< {COLD_TARGET_S:g} s",
            verdict(cold < COLD_TARGET_S),
        ),
        ("  per node", f"{cold / nodes * 1e3:.3f} ms", "", ""),
        (
            "cached re-run",
            fmt_times(synthetic["cached"]),
            f"< {CACHED_TARGET_S:g} s",
            verdict(cached < CACHED_TARGET_S),
        ),
        ("  per node", f"{cached / nodes * 1e3:.3f} ms", "", ""),
        ("curi --help (median of 5)", f"{help_median:.3f} s", "", ""),
    ]
    if memory is not None:
        rows += [
            (f"lazybig: {opts.lazy_records} x {opts.lazy_mb} MiB Lazy (PickleCacher)", "", "", ""),
            ("  baseline (imports) RSS", mib(memory["baseline"]), "", ""),
            ("  one object", mib(memory["object"]), "", ""),
            ("  peak RSS, cold run", mib(memory["peak_cold"]), "", ""),
            (
                "  peak / (baseline + object)",
                f"{memory['ratio']:.3f}",
                f"< {MEMORY_TARGET:g}",
                verdict(memory["ratio"] < MEMORY_TARGET),
            ),
            ("  peak RSS, cached re-run", mib(memory["peak_cached"]), "", ""),
            (
                "  wall time cold / cached",
                f"{memory['cold_s']:.2f} s / {memory['cached_s']:.2f} s",
                "",
                "",
            ),
        ]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    header = ("measure", "value", "target", "")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line.rstrip())
    print("-" * len(line.rstrip()))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
