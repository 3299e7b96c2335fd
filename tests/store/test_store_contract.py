"""One suite, every store: a local folder, an fsspec `memory://` store, S3 (moto's server on
127.0.0.1, through s3fs), and a local tier in front of S3 or of `memory://`. Each must publish
whole entries, find them by key and by lineage, refuse what does not match, and tidy up."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from curifactory_cli.store import (
    FORMAT_VERSION,
    INVALIDATED,
    SIGNING_ENV,
    CorruptEntryError,
    LocalStore,
    describe_files,
    make_draft,
    verify_files,
)
from curifactory_cli.store.entry import META_NAME, dump_meta, parse_meta
from curifactory_cli.store.remote_folder import mtime_of

pytest.importorskip("fsspec")

KEY = "a" * 64
OTHER = "b" * 64
PARAMS = "c" * 64


# The tiers over memory:// reach the same code as over S3, without a server: the mutation
# study runs those (benchmarks/mutation.py leaves out the cases named s3).
@pytest.fixture(params=["local", "memory", "s3", "tiered_s3", "tiered_memory"])
def store(request, tmp_path):
    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    kind = request.param
    if kind == "local":
        made = LocalStore(tmp_path / "cache")
    elif kind == "memory":
        made = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    elif kind == "s3":
        made = FsspecStore(request.getfixturevalue("bucket"))
    elif kind == "tiered_s3":
        made = TieredStore(
            LocalStore(tmp_path / "cache"), FsspecStore(request.getfixturevalue("bucket"))
        )
    else:
        made = TieredStore(
            LocalStore(tmp_path / "cache"), FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
        )
    yield made
    made.close()


def stage_files(store, files: dict[str, bytes]) -> str:
    draft = store.draft_path()
    os.makedirs(os.path.dirname(draft), exist_ok=True)
    make_draft(draft)
    for rel, data in files.items():
        path = Path(draft, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return draft


FILES = {"model.json": b'{"w": 1}', "table.csv": b"a,b\n1,2\n"}


def publish(store, stage="fit", key=KEY, files=None, lineage="L" * 64, record="set1", outputs=None):
    files = files or FILES
    draft = stage_files(store, files)
    outputs = outputs or sorted({rel.split(".")[0] for rel in files})
    described = describe_files(draft, outputs)
    meta = {
        "format": FORMAT_VERSION,
        "key": key,
        "lineage_key": lineage,
        "experiment": "exp",
        "stage": stage,
        "record": record,
        "params_hash": PARAMS,
        "outputs": {
            name: {"version": f"v-{name}", "cacher": "JsonCacher", "files": described[name]}
            for name in outputs
        },
        "extra_files": described[""],
    }
    prefix = store.stage_prefix("exp", PARAMS, stage)
    final = store.entry_dir(prefix, key)
    store.publish(draft, final, meta)
    if hasattr(store, "flush"):
        store.flush()  # a tiered store uploads in batches
    return prefix, final, outputs


def read_back(store, entry) -> dict[str, bytes]:
    folder = store.local_dir(entry)
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name != META_NAME:
                path = Path(root, name)
                out[path.relative_to(folder).as_posix()] = path.read_bytes()
    return out


# ------------------------------------------------------------------------------ the suite
def test_a_published_entry_is_found_by_key_with_its_files(store):
    _prefix, final, outputs = publish(store)
    entry, problem = store.lookup(final, KEY, outputs)
    assert problem is None and entry is not None
    assert entry.key == KEY and entry.stage == "fit" and entry.params_name == "set1"
    assert read_back(store, entry) == {"model.json": b'{"w": 1}', "table.csv": b"a,b\n1,2\n"}
    verify_files(store.local_dir(entry), entry.output_files("model"))


def test_an_entrys_other_files_are_kept_counted_and_verified(store):
    """Files no output claims (a reportable's, a cacher's extra files) belong to the entry."""
    files = {**FILES, "notes.txt": b"extra"}
    _prefix, final, outputs = publish(store, files=files, outputs=["model", "table"])
    entry, problem = store.lookup(final, KEY, outputs)
    assert problem is None and read_back(store, entry) == files
    assert entry.size == sum(len(data) for data in files.values())
    assert entry.meta["extra_files"][0]["path"] == "notes.txt"
    _damage(store, final, "notes.txt", b"extr")
    if not hasattr(store, "remote"):  # a tier would serve its remote's whole copy
        entry, problem = store.lookup(final, KEY, outputs)
        assert entry is None and "notes.txt" in problem


def test_nothing_there_is_a_plain_miss(store):
    prefix = store.stage_prefix("exp", PARAMS, "fit")
    assert store.lookup(store.entry_dir(prefix, KEY), KEY, ["model"]) == (None, None)
    assert store.find_by_lineage(prefix, "L" * 64, ["model"]) is None
    assert list(store.entries()) == []


def test_other_outputs_or_another_key_are_refused(store):
    _prefix, final, outputs = publish(store)
    entry, problem = store.lookup(final, KEY, ["model"])
    assert entry is None and "other outputs" in problem
    entry, problem = store.lookup(final, OTHER, outputs)
    assert entry is None and "another key" in problem


def test_found_by_lineage_only_in_its_own_folder(store):
    prefix, _final, outputs = publish(store, lineage="L" * 64)
    found = store.find_by_lineage(prefix, "L" * 64, outputs)
    assert found is not None and found.key == KEY
    assert store.find_by_lineage(prefix, "M" * 64, outputs) is None


def test_entries_lists_every_entry_once_with_its_metadata(store):
    publish(store, stage="fit")
    publish(store, stage="score", key=OTHER)
    entries = sorted(store.entries(), key=lambda e: e.stage)
    assert [(e.stage, e.key, e.experiment) for e in entries] == [
        ("fit", KEY, "exp"),
        ("score", OTHER, "exp"),
    ]
    assert entries[0].size == len(b'{"w": 1}') + len(b"a,b\n1,2\n")
    assert [e.stage for e in store.entries("exp")] == ["fit", "score"]
    assert list(store.entries("nope")) == []
    assert len(store.stage_entries(store.stage_prefix("exp", PARAMS, "fit"))) == 1


def test_invalidated_entries_are_not_served_and_removed_ones_are_gone(store):
    _prefix, final, outputs = publish(store)
    (entry,) = store.entries()
    assert store.mark_invalidated(entry) is True
    assert store.mark_invalidated(entry) is False
    assert store.lookup(final, KEY, outputs) == (None, INVALIDATED)
    (entry,) = store.entries()
    assert entry.invalidated
    store.remove([entry])
    assert list(store.entries()) == []
    if hasattr(store, "remote"):
        # Removing from the local tier only: the shared tier serves it again.
        assert store.lookup(final, KEY, outputs)[0] is not None
    else:
        assert store.lookup(final, KEY, outputs) == (None, None)


def test_publishing_the_same_key_again_leaves_one_whole_entry(store):
    _prefix, final, outputs = publish(store)
    publish(store, files={"model.json": b'{"w": 2}', "table.csv": b"a,b\n3,4\n"})
    entry, problem = store.lookup(final, KEY, outputs)
    assert problem is None
    files = read_back(store, entry)
    # Either writer's files, never a mix of both.
    assert files in (
        {"model.json": b'{"w": 1}', "table.csv": b"a,b\n1,2\n"},
        {"model.json": b'{"w": 2}', "table.csv": b"a,b\n3,4\n"},
    )
    assert len(list(store.entries())) == 1


def test_a_free_entry_lock_is_taken_at_once_and_given_back(store):
    store.prepare()
    lock = store.entry_lock(KEY)
    assert lock.acquire_nowait() is True
    lock.release()
    assert lock.acquire_within(0.5) is True
    lock.release()
    lock.acquire()
    lock.release()


def test_an_exported_entry_is_a_local_entry(store, tmp_path):
    _prefix, _final, outputs = publish(store)
    (entry,) = store.entries()
    target = tmp_path / "exports" / "copy"  # made, parents too
    store.export(entry, target)
    again = LocalStore(tmp_path).lookup(str(target), KEY, outputs)[0]
    assert again is not None and "objects" not in again.meta  # files beside meta.json
    assert (target / "model.json").read_bytes() == b'{"w": 1}'
    assert sorted(os.listdir(target)) == ["meta.json", "model.json", "table.csv"]


def test_a_signed_cache_refuses_unsigned_metadata(store, monkeypatch):
    monkeypatch.setenv(SIGNING_ENV, "s3cret")
    _prefix, final, outputs = publish(store)
    assert store.lookup(final, KEY, outputs)[0] is not None
    monkeypatch.setenv(SIGNING_ENV, "another key")
    entry, problem = store.lookup(final, KEY, outputs)
    assert entry is None and SIGNING_ENV in problem


# ------------------------------------------------------------------ damage, per store kind
def _damage(store, final: str, rel: str, data: bytes) -> None:
    """Overwrite one file of a committed entry, where that store keeps it."""
    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    if isinstance(store, TieredStore):
        store = store.local
    if isinstance(store, FsspecStore):
        meta = parse_meta(store.fs.cat_file(f"{final}/{META_NAME}"))
        store.fs.pipe_file(f"{final}/{meta['objects']}/{rel}", data)
    else:
        Path(final, rel).write_bytes(data)


def test_a_truncated_file_makes_the_entry_unusable(store):
    _prefix, final, outputs = publish(store)
    _damage(store, final, "model.json", b"{")
    entry, problem = store.lookup(final, KEY, outputs)
    if entry is not None:  # a tiered store may fetch the whole copy from its remote tier
        assert read_back(store, entry)["model.json"] == b'{"w": 1}'
    else:
        assert "wrong size" in problem


def test_same_size_corruption_is_caught_before_loading(store):
    _prefix, final, outputs = publish(store)
    _damage(store, final, "model.json", b'{"w": 9}')
    entry, _ = store.lookup(final, KEY, outputs)
    assert entry is not None  # sizes match: only the checksum tells
    with pytest.raises(CorruptEntryError):
        verify_files(store.local_dir(entry), entry.output_files("model"))


def test_metadata_naming_files_outside_the_entry_is_refused(store):
    _prefix, final, outputs = publish(store)
    entry, _ = store.lookup(final, KEY, outputs)
    meta = dict(entry.meta)
    meta["outputs"] = json.loads(json.dumps(meta["outputs"]))
    meta["outputs"]["model"]["files"][0]["path"] = "../../escape.json"
    _write_meta(store, final, meta)
    entry, problem = store.lookup(final, KEY, outputs)
    assert entry is None and "cannot have" in problem


def _write_meta(store, final: str, meta: dict) -> None:
    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    if isinstance(store, TieredStore):
        Path(final, META_NAME).write_text(dump_meta(meta))
        remote = f"{store._remote_path(final)}/{META_NAME}"
        store.remote.fs.pipe_file(remote, dump_meta(meta).encode())
    elif isinstance(store, FsspecStore):
        store.fs.pipe_file(f"{final}/{META_NAME}", dump_meta(meta).encode())
    else:
        Path(final, META_NAME).write_text(dump_meta(meta))


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda m: m.update(lineage_key="M" * 64), id="lineage key"),
        pytest.param(lambda m: m["outputs"]["model"].update(version="v-old"), id="version"),
        pytest.param(lambda m: m.update(record="set2"), id="parameter set"),
        pytest.param(lambda m: m.pop("invalidated"), id="invalidation removed"),
    ],
)
def test_under_a_signing_key_no_field_can_be_forged(store, monkeypatch, forge):
    """The signature covers every field a decision or a load uses (the hostile-cache threat
    model: write access to the cache, not to the key)."""
    monkeypatch.setenv(SIGNING_ENV, "s3cret")
    _prefix, final, outputs = publish(store)
    (entry,) = store.entries()
    store.mark_invalidated(entry)  # signed with the key, like every write
    assert store.lookup(final, KEY, outputs) == (None, INVALIDATED)
    meta = json.loads(json.dumps(entry.meta))
    forge(meta)
    meta.setdefault("invalidated", None)
    if meta["invalidated"] is None:
        del meta["invalidated"]
    _write_meta(store, final, meta)
    found, problem = store.lookup(final, KEY, outputs)
    assert found is None
    assert SIGNING_ENV in problem or problem == INVALIDATED
    if "invalidated" not in meta:
        assert SIGNING_ENV in problem  # removing the mark does not bring the entry back


def test_a_lineage_lookup_passes_over_entries_that_cannot_serve(store):
    """An entry found by its lineage is checked as a lookup by key checks it: its outputs,
    its files and its invalidation."""
    prefix, final, outputs = publish(store)
    lineage = "L" * 64
    assert store.find_by_lineage(prefix, lineage, ["model"]) is None  # other outputs
    _damage(store, final, "table.csv", b"a")
    found = store.find_by_lineage(prefix, lineage, outputs)
    if hasattr(store, "remote"):  # the shared tier still has it whole
        assert found is not None
        assert read_back(store, found)["table.csv"] == b"a,b\n1,2\n"
    else:
        assert found is None


def test_an_invalidated_entry_is_not_found_by_lineage(store):
    prefix, _final, outputs = publish(store)
    (entry,) = store.entries()
    store.mark_invalidated(entry)
    assert store.find_by_lineage(prefix, "L" * 64, outputs) is None


def test_metadata_copied_into_another_entrys_folder_is_not_found_by_lineage(store):
    """Whoever can write to the cache could copy an entry (metadata and files) under the
    folder name of another key: its lineage then names an entry that is not there."""
    prefix, final, outputs = publish(store)
    other = store.entry_dir(prefix, OTHER)
    _copy_entry(store, final, other)
    _remove_entry(store, final)
    assert store.find_by_lineage(prefix, "L" * 64, outputs) is None


def _copy_entry(store, source: str, target: str) -> None:
    import shutil

    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    if isinstance(store, TieredStore):
        shutil.copytree(source, target)
        remote = store.remote
        remote.fs.copy(store._remote_path(source), store._remote_path(target), recursive=True)
    elif isinstance(store, FsspecStore):
        store.fs.copy(source, target, recursive=True)
    else:
        shutil.copytree(source, target)


def _remove_entry(store, final: str) -> None:
    import shutil

    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    if isinstance(store, TieredStore):
        shutil.rmtree(final)
        store.remote.fs.rm(store._remote_path(final), recursive=True)
    elif isinstance(store, FsspecStore):
        store.fs.rm(final, recursive=True)
    else:
        shutil.rmtree(final)


# ------------------------------------------------------------------ remote stores only
@pytest.fixture(params=["memory", "s3"])
def remote(request):
    from curifactory_cli.store.remote import FsspecStore

    if request.param == "memory":
        made = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    else:
        made = FsspecStore(request.getfixturevalue("bucket"))
    yield made
    made.close()


def test_a_download_is_verified_against_its_checksums(remote, tmp_path):
    _prefix, final, outputs = publish(remote)
    _damage(remote, final, "model.json", b'{"w": 9}')
    entry, problem = remote.lookup(final, KEY, outputs)
    assert problem is None and entry is not None  # sizes match: only the checksum tells
    with pytest.raises(CorruptEntryError, match=r"model\.json"):
        remote.fetch(entry, str(tmp_path / "download"))
    with pytest.raises(CorruptEntryError):
        remote.local_dir(entry)


def test_metadata_must_name_an_attempt_folder_of_its_entry(remote):
    """`objects` is where the files are; anything but a fresh attempt's name (a folder of the
    planter's choosing, a path) is refused, even with the files there."""
    _prefix, final, outputs = publish(remote)
    meta = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))
    for info in meta["outputs"]["model"]["files"] + meta["outputs"]["table"]["files"]:
        data = remote.fs.cat_file(f"{final}/{meta['objects']}/{info['path']}")
        remote.fs.pipe_file(f"{final}/planted/{info['path']}", data)
    remote.fs.pipe_file(f"{final}/{META_NAME}", dump_meta({**meta, "objects": "planted"}).encode())
    entry, problem = remote.lookup(final, KEY, outputs)
    assert entry is None and "names no folder of files" in problem


def test_remote_gc_keeps_an_attempt_still_being_uploaded(remote):
    """An attempt folder no `meta.json` names is a leftover only once older than the grace
    period: a writer may be uploading it right now."""
    import time

    from curifactory_cli.store.local_tidy import GRACE_S

    _prefix, final, _outputs = publish(remote)
    files = [{"path": "model.json", "size": 3, "sha256": "0" * 64}]
    draft = stage_files(remote, {"model.json": b"new"})
    attempt = remote.put_files(draft, final, files)
    now = time.time()
    assert remote.leftovers(now) == []
    later = [(str(path), why) for path, why in remote.leftovers(now + 2 * GRACE_S)]
    assert later == [(f"{final}/{attempt}", "no meta.json names it, older than 1h")]
    written = max(mtime_of(i) for i in remote.fs.find(f"{final}/{attempt}", detail=True).values())
    assert [str(p) for p, _ in remote.leftovers(written + GRACE_S)] == [f"{final}/{attempt}"]


def test_removing_remote_entries_frees_their_size_even_when_half_deleted(remote, monkeypatch):
    from curifactory_cli.errors import CacheError

    _prefix, final, _outputs = publish(remote)
    _p, other, _o = publish(remote, stage="score")
    entries = sorted(remote.entries(), key=lambda e: e.stage)
    remote.fs.rm(f"{other}/{META_NAME}")  # a removal interrupted after its first step
    assert remote.remove(entries) == 2 * len(b'{"w": 1}a,b\n1,2\n')
    assert not remote.fs.exists(final) and not remote.fs.exists(other)

    publish(remote)
    (entry,) = remote.entries()

    def refuse(*args, **kwargs):
        raise PermissionError("read-only bucket")

    monkeypatch.setattr(remote.fs, "rm_file", refuse)
    with pytest.raises(CacheError) as failed:
        remote.remove([entry])
    assert failed.value.message == (
        f"cannot delete {remote.display(final)}: PermissionError: read-only bucket"
    )


def test_a_lasting_local_tier_verifies_a_remote_entry_at_lookup(tmp_path, bucket):
    """With `--remote`, an entry found only remotely is downloaded and verified when looked up:
    a damaged copy is a miss now (recomputed in this run), never a failure at load."""
    import shutil

    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.tiered import TieredStore

    store = TieredStore(LocalStore(tmp_path / "cache"), FsspecStore(bucket))
    _prefix, final, outputs = publish(store)
    shutil.rmtree(final)
    _damage(store.remote, store._remote_path(final), "model.json", b'{"w": 9}')
    entry, problem = store.lookup(final, KEY, outputs)
    assert entry is None and problem.startswith("remote entry unusable")
    assert not os.path.exists(final)
    store.close()


def _attempt(remote, final: str) -> str:
    return parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"]


def _seen(found: tuple) -> tuple:
    entry, problem = found
    return (None if entry is None else (str(entry.directory), entry.meta), problem)


def test_a_prefetched_remote_answers_lookups_as_the_store_does_without_a_request(remote):
    """`prefetch` reads a parameter set's folders in one listing and one batch of reads; the
    lookups then answer from memory exactly as the store would: whole, damaged, truncated and
    missing entries alike, and the entries this process publishes meanwhile."""
    prefix, final, outputs = publish(remote, files={**FILES, "table.csv": b""})  # an empty file
    _p, truncated, _o = publish(remote, stage="score")
    _damage(remote, truncated, "model.json", b"{")
    _p, garbled, _o = publish(remote, stage="clean")
    remote.fs.pipe_file(f"{garbled}/{META_NAME}", b"not json")
    absent = remote.entry_dir(prefix, OTHER)
    asked = [(final, KEY, outputs), (final, KEY, ["model"]), (final, OTHER, outputs)]
    asked += [(truncated, KEY, outputs), (garbled, KEY, outputs), (absent, OTHER, outputs)]
    direct = [_seen(remote.lookup(*args)) for args in asked]
    assert [problem for _, problem in direct] == [
        None,
        f"metadata {remote.display(final)}/{META_NAME} lists other outputs than the stage declares",
        f"metadata {remote.display(final)}/{META_NAME} belongs to another key",
        f"{remote.display(truncated)}/{_attempt(remote, truncated)}/model.json has the wrong size",
        f"damaged metadata {remote.display(garbled)}/{META_NAME}: it is not JSON",
        None,
    ]

    before = remote.calls
    remote.prefetch([prefix.rpartition("/")[0]])
    assert remote.calls == before + 2  # one listing, one batch of metadata reads
    before = remote.calls
    assert [_seen(remote.lookup(*args)) for args in asked[:4] + asked[5:]] == (
        direct[:4] + direct[5:]
    )
    assert remote.find_by_lineage(prefix, "L" * 64, outputs).meta == direct[0][0][1]
    assert [e.stage for e in remote.stage_entries(prefix)] == ["fit"]
    assert remote.calls == before  # all from memory
    assert _seen(remote.lookup(*asked[4])) == direct[4]  # damaged: read again to say how

    later = publish(remote, stage="late")[1]
    before = remote.calls
    found, problem = remote.lookup(later, KEY, outputs)
    assert problem is None and found.stage == "late" and remote.calls == before
    remote.fs.rm(later, recursive=True)  # gone behind this process's back
    assert remote.lookup(later, KEY, outputs)[0] is not None  # from memory: no request
    assert remote.lookup(later, KEY, outputs, fresh=True) == (None, None)

    # Reading ahead in other folders later keeps what was read: still no request here.
    remote.prefetch([remote.stage_prefix("other", PARAMS, "fit").rpartition("/")[0]])
    before = remote.calls
    assert _seen(remote.lookup(*asked[0])) == direct[0] and remote.calls == before


def test_a_prefetch_passes_over_what_vanished_or_is_not_there(remote, monkeypatch):
    """An entry removed between the listing and the read, or an experiment with no folder,
    is a miss, not an error for the whole run."""
    prefix, final, outputs = publish(remote, stage="fit")
    ghost = remote.entry_dir(prefix, OTHER)
    listed = remote.fs.find

    def find(path, **kwargs):
        found = dict(listed(path, **kwargs))
        if found:
            found[f"{ghost}/{META_NAME}"] = {
                "name": f"{ghost}/{META_NAME}",
                "size": 9,
                "type": "file",
            }
        return found

    monkeypatch.setattr(remote.fs, "find", find)
    folders = [remote.stage_prefix(e, PARAMS, "fit").rpartition("/")[0] for e in ("a-none", "exp")]
    remote.prefetch(folders)
    monkeypatch.undo()
    before = remote.calls
    assert _seen(remote.lookup(final, KEY, outputs))[1] is None and remote.calls == before
    assert remote.lookup(ghost, OTHER, outputs)[0] is None


def test_a_bucket_that_does_not_exist_is_not_an_empty_cache(bucket):
    from curifactory_cli.errors import CacheError
    from curifactory_cli.store.remote import FsspecStore

    missing = FsspecStore(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/cache")
    with pytest.raises(CacheError, match="there is no bucket s3://no-such-bucket-") as raised:
        list(missing.entries())
    assert raised.value.hint == "check the URL (and that these credentials may see it)."
    assert list(FsspecStore(bucket).entries()) == []  # there, empty
    assert list(FsspecStore(f"{bucket}/deeper/still").entries()) == []


def _attempts(remote, final: str) -> list[str]:
    return sorted(
        p.rpartition("/")[2] for p in remote.fs.ls(final, detail=False) if not p.endswith(".json")
    )


def test_a_remote_download_of_some_outputs_brings_only_their_files(remote, tmp_path):
    """...and the entry's other files (a reportable's, a cacher's extra files): always."""
    files = {**FILES, "notes.txt": b"extra"}
    _prefix, final, outputs = publish(remote, files=files, outputs=["model", "table"])
    entry, _ = remote.lookup(final, KEY, outputs)
    remote.fetch(entry, str(tmp_path / "some"), ["model"])
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == ["model.json", "notes.txt"]
    folder = remote.local_dir(entry)
    assert sorted(os.listdir(folder)) == ["model.json", "notes.txt", "table.csv"]
    assert remote.local_dir(entry) == folder  # downloaded once


def test_a_remote_commit_replaces_an_entry_only_on_purpose_or_when_it_is_damaged(remote):
    _prefix, final, outputs = publish(remote)
    (first,) = _attempts(remote, final)
    draft = stage_files(remote, {"model.json": b'{"w": 2}', "table.csv": b"a,b\n3,4\n"})
    there = remote.lookup(final, KEY, outputs)[0]
    meta = {k: v for k, v in there.meta.items() if k != "objects"}
    meta["outputs"] = {
        name: {**out, "files": describe_files(draft, outputs)[name]}
        for name, out in meta["outputs"].items()
    }
    # Not on purpose: the entry there is whole, it stays; this upload is removed.
    assert remote.upload(draft, final, meta) is False
    assert _attempts(remote, final) == [first]
    # On purpose (--overwrite, an invalidated entry): ours replaces it, theirs is removed.
    assert remote.upload(draft, final, meta, replace=True) is True
    (second,) = _attempts(remote, final)
    assert second != first
    assert read_back(remote, remote.lookup(final, KEY, outputs)[0])["model.json"] == b'{"w": 2}'
    # Damaged metadata there: replaced without being asked.
    remote.fs.pipe_file(f"{final}/{META_NAME}", b"{not json")
    assert remote.upload(draft, final, meta) is True
    assert remote.lookup(final, KEY, outputs)[0] is not None


def test_a_batch_upload_keeps_whole_entries_and_replaces_on_purpose(remote):
    prefix, final, outputs = publish(remote)
    (first,) = _attempts(remote, final)
    entry = remote.lookup(final, KEY, outputs)[0]
    meta = {k: v for k, v in entry.meta.items() if k != "objects"}
    new = stage_files(remote, FILES)
    other = remote.entry_dir(prefix, OTHER)
    remote.upload_many([(new, final, meta, False), (new, other, {**meta, "key": OTHER}, False)])
    assert _attempts(remote, final) == [first]  # whole already: kept
    assert remote.lookup(other, OTHER, outputs)[0] is not None
    remote.upload_many([(new, final, meta, True)])
    (second,) = _attempts(remote, final)
    assert second != first and remote.lookup(final, KEY, outputs)[0] is not None


def test_remote_entries_are_only_metadata_in_entry_folders(remote):
    _prefix, final, _outputs = publish(remote)
    data = remote.fs.cat_file(f"{final}/{META_NAME}")
    for where in ("exp", f"exp/{PARAMS[:16]}", ".trash/exp/p/fit-0123456789abcdef"):
        remote.fs.pipe_file(f"{remote.path_of(where)}/{META_NAME}", data)
    (entry,) = remote.entries()
    assert str(entry.directory) == final
    assert abs(entry.created - time.time()) < 600  # when it was uploaded: its age in `ls`


def test_remote_maintenance_finds_stray_objects_and_deletes_only_inside_the_cache(remote):
    from curifactory_cli.errors import CacheError

    _prefix, final, outputs = publish(remote)
    entry = remote.lookup(final, KEY, outputs)[0]
    attempt = entry.meta["objects"]
    remote.fs.pipe_file(f"{final}/{attempt}/planted.bin", b"1234")
    assert remote.orphan_files(entry) == [f"{attempt}/planted.bin"]
    assert remote.path_size(f"{final}/{attempt}") == len(b'{"w": 1}a,b\n1,2\n') + 4
    written = max(mtime_of(i) for i in remote.fs.find(final, detail=True).values())
    assert remote.age_of(final, written + 100) == pytest.approx(100)
    assert remote.age_of(f"{final}/nothing-here", written + 100) == 0.0
    refused = (remote.path_of("") + "/../elsewhere", "/tmp", remote.path_of("exp/../.."))
    for outside in (*refused, remote.path_of("exp/./x"), remote.path_of("exp//x")):
        with pytest.raises(CacheError, match="refusing to delete"):
            remote.remove_paths([outside])
    strays = [f"{final}/{'0' * 32}", f"{final}/{'1' * 32}"]  # uploads whose writers died
    remote.fs.pipe_file(f"{strays[0]}/x.bin", b"12345")
    remote.fs.pipe_file(f"{strays[1]}/y.bin", b"12")
    assert remote.remove_paths(strays) == 7
    assert _attempts(remote, final) == [attempt]
    _p, garbled, _o = publish(remote, stage="score")
    remote.fs.pipe_file(f"{garbled}/{META_NAME}", b"{not json")
    remote.fs.rm(f"{final}/{META_NAME}")
    assert [str(p) for p in remote.orphan_dirs()] == [final, garbled]
    with pytest.raises(CacheError, match="cannot read"):
        remote.mark_invalidated(entry)


def test_a_remote_reads_metadata_and_lists_a_stages_entries_where_they_are(remote):
    prefix, final, outputs = publish(remote)
    assert remote.read_meta(final) == remote.lookup(final, KEY, outputs)[0].meta
    assert remote.read_meta(remote.entry_dir(prefix, OTHER)) is None
    assert [str(e.directory) for e in remote.stage_entries(prefix)] == [final]


def test_a_remote_that_fails_names_itself_and_what_to_check(remote, monkeypatch, tmp_path):
    from curifactory_cli.errors import CacheError

    publish(remote)

    def refuse(*args, **kwargs):
        raise PermissionError("access denied")

    monkeypatch.setattr(remote.fs, "find", refuse)
    with pytest.raises(CacheError) as failed:
        list(remote.entries())
    assert failed.value.message == (f"cannot list {remote.url}: PermissionError: access denied")
    assert failed.value.hint == "check the store URL, your credentials and the network."
    folder = remote.stage_prefix("exp", PARAMS, "fit").rpartition("/")[0]
    with pytest.raises(CacheError) as failed:
        remote.prefetch([folder])
    assert failed.value.message == f"cannot list {remote.url}/exp: PermissionError: access denied"
    monkeypatch.undo()
    monkeypatch.setattr(remote.fs, "ls", refuse)
    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    with pytest.raises(CacheError) as failed:
        remote.find_by_lineage(prefix, "L" * 64, ["model"])
    where = remote.display(prefix.rpartition("/")[0])
    assert failed.value.message == f"cannot list {where}: PermissionError: access denied"
    monkeypatch.setattr(remote.fs, "cat", refuse)
    with pytest.raises(CacheError) as failed:
        remote.orphan_dirs()
    assert failed.value.message == (
        f"cannot read the entries of {remote.url}: PermissionError: access denied"
    )
    monkeypatch.undo()
    final = remote.entry_dir(prefix, KEY)
    (entry,) = remote.entries()
    monkeypatch.setattr(remote.fs, "get", refuse)
    with pytest.raises(CacheError) as failed:
        remote.fetch(entry, str(tmp_path / "download"))
    assert failed.value.message == (
        f"cannot download {remote.display(final)}: PermissionError: access denied"
    )
    monkeypatch.setattr(remote.fs, "pipe_file", refuse)
    with pytest.raises(CacheError) as failed:
        remote.mark_invalidated(entry)
    assert failed.value.message == (
        f"cannot rewrite {remote.display(final)}/{META_NAME}: PermissionError: access denied"
    )
    monkeypatch.undo()
    astray = type(entry)(entry.directory, {**entry.meta, "objects": "../elsewhere"})
    with pytest.raises(CacheError) as failed:
        remote.fetch(astray, str(tmp_path / "download"))
    assert failed.value.message == f"entry {remote.display(final)} names no folder of files"
    remote.fs.rm(f"{final}/{META_NAME}")
    with pytest.raises(CacheError) as failed:
        remote.mark_invalidated(entry)
    assert failed.value.message == f"cannot read {remote.display(final)}/{META_NAME}"


def test_a_store_whose_filesystem_library_is_missing_says_what_to_install():
    from curifactory_cli.errors import ConfigError
    from curifactory_cli.store.remote import FsspecStore

    if importlib.util.find_spec("paramiko") is not None:
        pytest.skip("the sftp:// library is installed")
    with pytest.raises(ConfigError) as missing:
        FsspecStore("sftp://host/cache")
    assert "the sftp:// filesystem is not installed" in missing.value.message
    assert missing.value.hint == "pip install 'curifactory-cli[remote]'"


def test_remote_gc_sees_only_entry_folders_and_their_state(remote, monkeypatch):
    """What `curi cache gc` would remove on a bucket: folders named like an entry whose
    `meta.json` is missing or unreadable (one that vanished after the listing included);
    never a committed entry (whatever else lies beside its `meta.json`), a hidden folder or a
    folder not named like an entry."""
    prefix, final, _outputs = publish(remote)
    remote.fs.pipe_file(f"{final}/zz-notes.txt", b"beside meta.json")
    half = remote.entry_dir(remote.stage_prefix("exp", PARAMS, "score"), KEY)
    remote.fs.pipe_file(f"{half}/{'0' * 32}/model.json", b"{}")  # a writer killed mid-upload
    for other in (".hidden/p/fit-0123456789abcdef/x.json", "exp/p/notes/x.txt", "exp/x.txt"):
        remote.fs.pipe_file(remote.path_of(other), b"1")
    ghost = remote.entry_dir(prefix, OTHER)
    listed = remote.fs.find

    def find(path, **kwargs):
        found = dict(listed(path, **kwargs))
        found[f"{ghost}/{META_NAME}"] = {"name": f"{ghost}/{META_NAME}", "size": 9, "type": "file"}
        return found

    monkeypatch.setattr(remote.fs, "find", find)
    assert [str(p) for p in remote.orphan_dirs()] == sorted([half, ghost])


def test_each_remote_entry_is_downloaded_once_into_its_own_folder_removed_at_close(remote):
    _p, first, outputs = publish(remote)
    _p, second, _o = publish(remote, stage="score", files={"model.json": b"2", "table.csv": b"3"})
    folders = [remote.local_dir(remote.lookup(f, KEY, outputs)[0]) for f in (first, second)]
    assert folders[0] != folders[1]
    assert Path(folders[1], "model.json").read_bytes() == b"2"
    assert remote.local_dir(remote.lookup(first, KEY, outputs)[0]) == folders[0]
    remote.close()
    assert not any(os.path.exists(folder) for folder in folders)


@pytest.mark.parametrize("count", [1, 2])
def test_a_failed_batch_upload_names_what_it_could_not_upload_and_leaves_nothing(
    remote, monkeypatch, count
):
    from curifactory_cli.errors import CacheError

    files = {"model.json": b"{}", "parts/p0.csv": b"a\n"}
    draft = stage_files(remote, files)
    described = describe_files(draft, ["model", "parts"])
    meta = {
        "format": FORMAT_VERSION,
        "key": KEY,
        "outputs": {n: {"version": "v", "files": described[n]} for n in ("model", "parts")},
    }
    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    items = [(draft, remote.entry_dir(prefix, k), {**meta, "key": k}, False) for k in (KEY, OTHER)]
    real_put = remote.fs.put

    def put(local, remote_paths, **kwargs):
        real_put(local[:1], remote_paths[:1], **kwargs)  # some files went up, then:
        raise ConnectionError("connection reset")

    monkeypatch.setattr(remote.fs, "put", put)
    with pytest.raises(CacheError) as failed:
        remote.upload_many(items[:count])
    what = "1 entry" if count == 1 else "2 entries"
    assert failed.value.message == (
        f"cannot upload {what} to {remote.url}: ConnectionError: connection reset"
    )
    monkeypatch.undo()
    assert not remote.fs.find(remote.path_of("exp"))  # the partial upload is removed
    remote.upload_many(items[:count])
    (entry,) = [e for e in remote.entries() if e.key == KEY]
    folder = remote.local_dir(entry)
    assert Path(folder, "parts", "p0.csv").read_bytes() == b"a\n"


def test_a_failed_upload_or_commit_names_the_entry_and_leaves_no_files(remote, monkeypatch):
    from curifactory_cli.errors import CacheError

    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    final = remote.entry_dir(prefix, KEY)
    draft = stage_files(remote, FILES)
    files = [f for group in describe_files(draft, ["model", "table"]).values() for f in group]
    meta = {"format": FORMAT_VERSION, "key": KEY, "outputs": {}, "extra_files": files}
    real_put, real_pipe = remote.fs.put, remote.fs.pipe_file

    def put(local, remote_paths, **kwargs):
        real_put(local[:1], remote_paths[:1], **kwargs)
        raise ConnectionError("connection reset")

    monkeypatch.setattr(remote.fs, "put", put)
    with pytest.raises(CacheError) as failed:
        remote.upload(draft, final, meta)
    assert failed.value.message == (
        f"cannot upload to {remote.display(final)}: ConnectionError: connection reset"
    )
    assert not remote.fs.find(final)
    monkeypatch.setattr(remote.fs, "put", real_put)

    def pipe_file(path, data, **kwargs):
        if path.endswith(META_NAME):
            raise PermissionError("read-only bucket")
        return real_pipe(path, data, **kwargs)

    monkeypatch.setattr(remote.fs, "pipe_file", pipe_file)
    with pytest.raises(CacheError) as failed:
        remote.upload(draft, final, meta)
    assert failed.value.message == (
        f"cannot publish cache entry {remote.display(final)}/{META_NAME}: "
        "PermissionError: read-only bucket"
    )
    assert not remote.fs.find(final)
