"""Cache files damaged between runs are detected where the scheduler looks up or a job loads
the entry, reported as a warning, recomputed, and never reach user code: the final results
equal a clean run's. With `CURI_CACHE_KEY`, an entry rewritten consistently (artifact and
checksums) by someone without the key is refused too."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from reliability_helpers import (
    EXPERIMENT,
    curi,
    entry_dirs,
    entry_problems,
    output_fingerprint,
    params_yaml,
)

from curifactory_cli.hashing import canonical_json, digest
from curifactory_cli.store import SIGNING_ENV, CorruptEntryError, LocalStore, verify_files

pytestmark = pytest.mark.usefixtures("job_runner")

N = 2_000
ARTIFACT = {
    "json": "out_json.json",
    "csv": "out_csv.csv",
    "pjson": "out_pjson.json",
    "pickle": "out_pickle.pkl",
    "multi": "out_multi",
}


def edit_consumer(project, kind, revision=2):
    """Change the consumer's code (not its result), so it re-executes and must load its input."""
    marker = f'    _log("digest_{kind}", record)\n'
    source = EXPERIMENT.replace(marker, marker + f"    revision = {revision}\n")
    assert source != EXPERIMENT
    project.write("experiments/faulty.py", source)


@pytest.fixture
def faulty(project):
    project.write("experiments/faulty.py", EXPERIMENT)
    project.write("params/p.yaml", params_yaml(N))
    return project


def run_kind(project, kind):
    result = project.run("faulty", "params/p.yaml", names=(kind,))
    assert result.ok, result.error
    return result


def snapshot(result, kind):
    """The consumer's digest of the data it received, and the bytes of every entry used."""
    record = result.records[0]
    fingerprints = {n.stage.name: output_fingerprint(n.entry_dir) for n in result.graph.nodes}
    return record.state[f"digest_{kind}"], fingerprints


def producer_entry(project, kind) -> Path:
    (entry,) = [e for e in entry_dirs(project.cache) if e.name.startswith(f"make_{kind}-")]
    return entry


# ------------------------------------------------------------------------------ damage
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot json at all {{{")


def wrong_shape(path: Path) -> None:
    path.write_text("[1, 2, 3]")


CASES = [
    # (kind, file in the producer's entry, damage, what the warning says)
    *[(k, ARTIFACT[k], truncate, "has the wrong size") for k in ARTIFACT],
    ("multi", "out_multi_model", truncate, "has the wrong size"),
    *[(k, ARTIFACT[k], flip_byte, "does not match its recorded checksum") for k in ARTIFACT],
    ("multi", "out_multi_model", flip_byte, "does not match its recorded checksum"),
    ("multi", "out_multi_model", os.remove, "is missing"),
    ("multi", "out_multi", os.remove, "is missing"),
    ("pickle", "meta.json", os.remove, "meta.json"),
    ("multi", "meta.json", os.remove, "meta.json"),
    ("json", "meta.json", garbage, "damaged metadata"),
    ("pickle", "meta.json", garbage, "damaged metadata"),
    ("csv", "meta.json", wrong_shape, "metadata"),
]


@pytest.mark.parametrize(
    ("kind", "target", "damage", "says"),
    CASES,
    ids=[f"{damage.__name__}-{kind}-{target}" for kind, target, damage, _ in CASES],
)
def test_damaged_input_is_detected_and_recomputed(faulty, kind, target, damage, says):
    clean = snapshot(run_kind(faulty, kind), kind)
    entry = producer_entry(faulty, kind)
    damage(entry / target)
    edit_consumer(faulty, kind)  # the consumer re-executes: it needs the damaged data
    result = run_kind(faulty, kind)

    assert len(result.warnings) == 1, result.warnings
    (warning,) = result.warnings
    assert f"make_{kind}" in warning and says in warning, warning
    assert ("recomputing" in warning) or ("ignoring cache entry" in warning), warning
    assert (f"make_{kind}", kind) in result.executed()
    assert (f"digest_{kind}", kind) in result.executed()
    digest_value, fingerprints = snapshot(result, kind)
    assert digest_value == clean[0]
    assert fingerprints[f"make_{kind}"] == clean[1][f"make_{kind}"]
    assert entry_problems(producer_entry(faulty, kind)) == []

    again = run_kind(faulty, kind)  # repaired for good
    assert again.warnings == [] and again.executed() == []
    assert snapshot(again, kind)[0] == clean[0]


@pytest.mark.parametrize(
    ("damage", "says"), [(truncate, "ignoring cache entry"), (flip_byte, "recomputing")]
)
def test_cli_reports_damage_on_stderr(faulty, damage, says):
    proc = curi(faulty.root, "run", "faulty", "params/p.yaml", "--names", "pickle")
    assert proc.returncode == 0, proc.stderr
    damage(producer_entry(faulty, "pickle") / ARTIFACT["pickle"])
    edit_consumer(faulty, "pickle")
    proc = curi(faulty.root, "run", "faulty", "params/p.yaml", "--names", "pickle", "--json")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "make_pickle" in warnings[0] and says in warnings[0], proc.stderr
    doc = json.loads(proc.stdout)
    executed = {n["stage"] for n in doc["nodes"] if n["outcome"] == "executed"}
    assert executed == {"make_pickle", "digest_pickle"}


def test_damaged_leaf_is_never_returned(faulty):
    """A cached leaf is not loaded by the run; reading it afterwards verifies its checksum, so
    user code gets either the clean value or a CorruptEntryError, never the damaged bytes."""
    clean = snapshot(run_kind(faulty, "pickle"), "pickle")[0]
    (leaf,) = [e for e in entry_dirs(faulty.cache) if e.name.startswith("digest_pickle-")]
    flip_byte(leaf / "digest_pickle.json")
    result = run_kind(faulty, "pickle")
    try:
        value = result.records[0].state["digest_pickle"]
    except CorruptEntryError as exc:
        assert "digest_pickle.json" in exc.message
    else:
        assert value == clean


# ------------------------------------------------------------------------------ signing
class Evil:
    """Unpickling this runs code: the attacker's payload writes a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('pwned')",))


def rewrite_consistently(entry: Path, output: str, filename: str, payload: bytes) -> None:
    """What an attacker without the key can do: replace the artifact and fix meta.json's size,
    checksum and version to match."""
    (entry / filename).write_bytes(payload)
    meta = json.loads((entry / "meta.json").read_text())
    info = meta["outputs"][output]
    (file_info,) = info["files"]
    file_info["size"] = len(payload)
    file_info["sha256"] = digest(payload)
    info["version"] = digest(
        canonical_json([info["cacher"], [(filename[len(output) :], digest(payload))]])
    )
    (entry / "meta.json").write_text(json.dumps(meta))


def test_signed_cache_refuses_consistently_rewritten_pickle(faulty, monkeypatch):
    monkeypatch.setenv(SIGNING_ENV, "correct horse battery staple")
    clean = snapshot(run_kind(faulty, "pickle"), "pickle")
    entry = producer_entry(faulty, "pickle")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta.get("signature")

    pwned = faulty.root / "PWNED"
    rewrite_consistently(entry, "out_pickle", "out_pickle.pkl", pickle.dumps(Evil(str(pwned))))
    store = LocalStore(faulty.cache)
    # Control: without the key the rewrite is indistinguishable from a genuine entry.
    monkeypatch.delenv(SIGNING_ENV)
    found, problem = store.lookup(str(entry), meta["key"], ["out_pickle"])
    assert found is not None and problem is None
    verify_files(entry, found.output_files("out_pickle"))
    monkeypatch.setenv(SIGNING_ENV, "correct horse battery staple")
    found, problem = store.lookup(str(entry), meta["key"], ["out_pickle"])
    assert found is None and SIGNING_ENV in problem

    edit_consumer(faulty, "pickle")  # the consumer re-executes and needs the pickle
    result = run_kind(faulty, "pickle")
    assert not pwned.exists(), "the tampered pickle was loaded"
    assert len(result.warnings) == 1 and SIGNING_ENV in result.warnings[0], result.warnings
    assert ("make_pickle", "pickle") in result.executed()
    assert snapshot(result, "pickle")[0] == clean[0]
    assert entry_problems(producer_entry(faulty, "pickle")) == []
    assert not pwned.exists()


def test_signed_cache_refuses_entries_signed_with_another_key(faulty, monkeypatch):
    monkeypatch.setenv(SIGNING_ENV, "first key")
    clean = snapshot(run_kind(faulty, "json"), "json")
    monkeypatch.setenv(SIGNING_ENV, "second key")
    result = run_kind(faulty, "json")
    assert result.warnings and all(SIGNING_ENV in w for w in result.warnings), result.warnings
    assert sorted(result.executed()) == [("digest_json", "json"), ("make_json", "json")]
    assert snapshot(result, "json")[0] == clean[0]
