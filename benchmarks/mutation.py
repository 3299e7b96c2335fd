"""Mutation testing of the cache's core: how many small bugs the tests catch. By hand, never in
CI (a module takes minutes to tens of minutes on 2 cores):

    pip install -e '.[dev]'          # mutmut, with the test extra
    python benchmarks/mutation.py                  # keys, decide, entry, remote, tiered
    python benchmarks/mutation.py engine/keys.py   # one module (or several)
    python benchmarks/mutation.py --all            # also hashing.py and params.py
    python benchmarks/mutation.py --jobs 2 --show  # the diff of every surviving mutant

For each module, mutmut makes small changes to its functions (a comparison flipped, a constant
changed, an argument dropped, a line removed), one at a time, and runs the tests of that
module's selection that reach the changed function. A mutant is killed when a test fails.
The script prints, per module, the mutants killed (a timeout counts as killed), those that
survived, and the kill rate: killed / (killed + survived + no tests). A survivor is either a
missing test or an equivalent mutant (one that changes no behaviour): read it with `--show`.
The equivalent ones found so far are listed, with why, in `benchmarks/mutation-survivors.md`.

Each module runs in its own folder `.mutation/<module>/` (a copy of the package and the
tests, and a pyproject.toml with that module's [tool.mutmut] settings), where mutmut keeps
its `mutants/` copy and its results: run again after editing a test or the module, and only
the mutants whose functions changed, and the earlier survivors, are run again (`--fresh`
starts over).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
PACKAGE = "curifactory_cli"

# Module -> the tests that pin it, chosen to be fast (each mutant runs only those of them
# that reach the mutated function, fastest first, and stops at the first failure).
SELECTION: dict[str, list[str]] = {
    "engine/keys.py": [
        "tests/engine/test_keys.py",
        "tests/engine/test_key_components.py",
        "tests/engine/test_reasons.py",
        "tests/engine/test_fingerprint_reach.py",
    ],
    "engine/decide.py": [
        "tests/engine/test_decide.py",
        "tests/engine/test_reasons.py",
        "tests/engine/test_plan.py",
        "tests/engine/test_key_components.py",
    ],
    # entry.py and file_checks.py were one module (the verifier of cached files moved out).
    **{
        module: [
            "tests/store/test_hostile_meta.py",
            "tests/store/test_file_checks.py",
            "tests/store/test_store_contract.py",
            "tests/store/test_entry_files.py",
            "tests/cli/test_cache_commands.py",  # `cache verify`, `cache ls --json`
        ]
        for module in ("store/entry.py", "store/file_checks.py")
    },
    # The contract's local and memory:// cases and the tiers over memory://: its S3 cases and
    # the runs over a bucket (test_shared_cache) reach the same code of FsspecStore through
    # moto's server, many times slower per mutant. store/remote.py is FsspecStore made of four
    # parts, each run on its own.
    **{
        f"store/remote_{part}.py": [
            "tests/store/test_remote_folder.py",
            "tests/store/test_remote_store.py",
            "tests/store/test_store_contract.py",
            "tests/store/test_tiers.py",
        ]
        for part in ("folder", "read", "write", "tidy")
    },
    # Only the tests that build a TieredStore reach it: the contract's cases of tiers over
    # memory://, the tiers' own tests, and the runs with a remote that goes offline or comes
    # back (test_remote_tier; test_shared_cache's runs over a bucket reach the same code).
    "store/tiered.py": [
        "tests/store/test_store_contract.py",
        "tests/store/test_tiers.py",
        "tests/store/test_remote_tier.py",
    ],
    "hashing.py": ["tests/model/test_hashing.py", "tests/engine/test_fingerprint_reach.py"],
    "params.py": ["tests/run/test_params.py", "tests/run/test_params_as_written.py"],
}
# Cases left out of a module's selection (a pytest -k expression): each store of the
# contract runs the same cases, and those over S3 (moto's server, started in every mutant's
# process, and a request over HTTP for each call) cost the most while reaching the same code
# as the local and memory:// cases. Measured on 2 cores: of the remote parts' selection, the
# S3 cases take 15 s, the other 80 cases 4 s.
LEFT_OUT: dict[str, str] = {
    "store/entry.py": "s3 or tiered",
    "store/file_checks.py": "s3 or tiered",
    **{f"store/remote_{part}.py": "s3 or tiered" for part in ("folder", "read", "tidy")},
    # The concurrent conditional creates of a batch run on an async filesystem only (s3fs):
    # the batch cases over S3 are kept for them.
    "store/remote_write.py": "tiered or (s3 and not batch)",
    "store/tiered.py": "s3",
}
CORE = [
    "engine/keys.py",
    "engine/decide.py",
    "store/entry.py",
    "store/file_checks.py",
    "store/remote_folder.py",
    "store/remote_read.py",
    "store/remote_write.py",
    "store/remote_tidy.py",
    "store/tiered.py",
]
# Tests that start Python processes running curi (a moved project in a subprocess, the
# `-j 2` variants' workers, a writer killed mid-upload, a notebook session, the import check
# of the read-only commands) are left out: mutmut's first pass, which maps each test to the
# functions it reaches, works in-process only, and those children import the installed
# package, not the mutated copy.
SUBPROCESS_TESTS = (
    "workers",
    "moved_project",
    "killed_mid_upload",
    "interactive_session",
    "import_no_user_code",
)
DESELECT = " and ".join(f"not {name}" for name in SUBPROCESS_TESTS)
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
COUNTED = KILLED | {"survived", "no tests"}


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def prepare(module: str, fresh: bool) -> Path:
    """The module's folder: a fresh copy of the package and the tests, and its settings."""
    folder = WORK / module.replace("/", "_").removesuffix(".py")
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (PACKAGE, "tests"):
        target = folder / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / name, target, ignore=ignore)
    deselect = DESELECT + (f" and not ({LEFT_OUT[module]})" if module in LEFT_OUT else "")
    settings = f"""
[tool.mutmut]
source_paths = ["{PACKAGE}/"]
only_mutate = ["{PACKAGE}/{module}"]
pytest_add_cli_args_test_selection = {toml_list(SELECTION[module])}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-k", "{deselect}"]
use_git_change_detection = false
"""
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + settings)
    return folder


def mutmut() -> list[str]:
    beside = Path(sys.executable).with_name("mutmut")
    found = str(beside) if beside.exists() else shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: pip install -e '.[dev]'")
    return [found]


def environment() -> dict[str, str]:
    # The tests must import the mutated copy, never the checkout on PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def results(folder: Path) -> dict[str, str]:
    """Mutant name -> status, as mutmut recorded them."""
    out = subprocess.run(
        [*mutmut(), "results", "--all", "true"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"paths under {PACKAGE}/ (default: the core)")
    parser.add_argument("--all", action="store_true", help="every module with a selection")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args()
    modules = list(SELECTION) if args.all else (args.modules or CORE)
    unknown = [m for m in modules if m not in SELECTION]
    if unknown:
        parser.error(f"no test selection for {', '.join(unknown)} (known: {', '.join(SELECTION)})")

    rows = []
    for module in modules:
        folder = prepare(module, args.fresh)
        print(f"== {module}: {', '.join(SELECTION[module])}", flush=True)
        # mutmut keeps a verdict until the mutated function changes: the survivors of an
        # earlier run are run again explicitly, since the tests may have changed since.
        before = results(folder) if (folder / "mutants").is_dir() else {}
        again = sorted(n for n, s in before.items() if s in COUNTED and s not in KILLED)
        started = time.perf_counter()
        for names in ([], again) if again else ([],):
            run = subprocess.run(
                [*mutmut(), "run", "--max-children", str(args.jobs), *names],
                cwd=folder,
                env=environment(),
                stdout=subprocess.DEVNULL,
            )
            if run.returncode != 0:
                print(f"mutmut failed on {module} (exit {run.returncode})", file=sys.stderr)
                return 1
        seconds = time.perf_counter() - started
        status = results(folder)
        counted = [s for s in status.values() if s in COUNTED]
        killed = sum(s in KILLED for s in counted)
        survivors = sorted(n for n, s in status.items() if s in COUNTED and s not in KILLED)
        rate = killed / len(counted) if counted else 1.0
        rows.append((module, killed, len(counted), rate, seconds))
        print(f"   {killed}/{len(counted)} killed ({rate:.0%}) in {seconds:.0f} s")
        for name in survivors:
            print(f"   {status[name]}: {name}")
            if args.show:
                diff = subprocess.run(
                    [*mutmut(), "show", name],
                    cwd=folder,
                    env=environment(),
                    capture_output=True,
                    text=True,
                ).stdout
                print("\n".join("      " + line for line in diff.splitlines()[1:]))

    print(f"\n{'module':<20} {'killed':>8} {'mutants':>8} {'rate':>6} {'time':>7}")
    for module, killed, total, rate, seconds in rows:
        print(f"{module:<20} {killed:>8} {total:>8} {rate:>6.0%} {seconds:>6.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
