"""A remote store (an fsspec URL: `memory://` here and S3 through moto) beyond the contract
every store keeps: what each operation costs in requests, what a failing request is reported
as, the run's index of entry folders kept true by its own commits, and answers that hold
when objects come and go between a listing and a read."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from test_store_contract import FILES, KEY, PARAMS, publish, stage_files

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import MAX_META_BYTES, META_NAME, dump_meta, parse_meta

pytest.importorskip("fsspec")


@pytest.fixture(params=["memory", "s3"])
def remote(request):
    from curifactory_cli.store.remote import FsspecStore

    if request.param == "memory":
        made = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    else:
        made = FsspecStore(request.getfixturevalue("bucket"))
    yield made
    made.close()


def _refuse(*args, **kwargs):
    raise PermissionError("access denied")


def test_each_remote_operation_costs_the_requests_it_needs(remote, tmp_path):
    """Every request is a round trip to the bucket: a lookup costs two (its metadata, then
    the listing of its files), a listing of entries two, and nothing once prefetched."""
    costs = []

    def cost(operation):
        before = remote.calls
        result = operation()
        costs.append(remote.calls - before)
        return result

    prefix, final, outputs = cost(lambda: publish(remote))  # the files, then meta.json
    cost(lambda: remote.lookup(final, KEY, outputs))
    (entry,) = cost(lambda: list(remote.entries()))
    cost(lambda: remote.stage_entries(prefix))
    cost(lambda: remote.find_by_lineage(prefix, "L" * 64, outputs))
    cost(lambda: remote.orphan_files(entry))
    cost(lambda: remote.orphan_dirs())
    cost(lambda: remote.leftovers(time.time()))
    cost(lambda: remote.path_size(final))
    cost(lambda: remote.age_of(final, time.time()))
    cost(lambda: remote.fetch(entry, str(tmp_path / "fetched")))
    cost(lambda: remote.export(entry, tmp_path / "exported"))
    cost(lambda: remote.mark_invalidated(entry))
    cost(lambda: remote.prefetch([prefix.rpartition("/")[0]]))
    cost(lambda: remote.lookup(final, KEY, outputs))
    assert costs == [2, 2, 2, 2, 4, 1, 2, 2, 1, 1, 1, 1, 2, 2, 0]
    assert remote.calls == sum(costs)
    # Publishing over an entry on purpose: its metadata read, the new files, the new
    # metadata, and the old files removed.
    draft = stage_files(remote, {"model.json": b'{"w": 2}', "table.csv": b"a,b\n3,4\n"})
    meta = {k: v for k, v in entry.meta.items() if k not in ("objects", "invalidated")}
    before = remote.calls
    remote.publish(draft, final, meta, replace=True)
    assert remote.calls - before == 5
    # A batch: one upload of every file, one round of conditional creates.
    other = stage_files(remote, FILES)
    before = remote.calls
    remote.upload_many(
        [(other, remote.entry_dir(prefix, "b" * 64), {**meta, "key": "b" * 64}, False)]
    )
    assert remote.calls - before == 2
    # Removing entries: their meta.json, then their folder, each.
    entries = list(remote.entries())
    before = remote.calls
    remote.remove(entries)
    assert remote.calls - before == 2 * len(entries) == 4


def test_a_remote_read_that_fails_names_what_it_was_reading(remote, monkeypatch):
    prefix, final, outputs = publish(remote)
    attempt = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"]
    said = ": PermissionError: access denied"
    with monkeypatch.context() as patched:
        patched.setattr(remote.fs, "cat_file", _refuse)
        with pytest.raises(CacheError) as failed:
            remote.lookup(final, KEY, outputs)
        assert failed.value.message == f"cannot read {remote.display(final)}/{META_NAME}{said}"
    with monkeypatch.context() as patched:
        patched.setattr(remote.fs, "find", _refuse)
        with pytest.raises(CacheError) as failed:
            remote.lookup(final, KEY, outputs)
        assert failed.value.message == f"cannot list {remote.display(final)}/{attempt}{said}"
        with pytest.raises(CacheError) as failed:
            list(remote.entries("exp"))
        assert failed.value.message == f"cannot list {remote.url}/exp{said}"
    with monkeypatch.context() as patched:
        patched.setattr(remote.fs, "cat", _refuse)
        with pytest.raises(CacheError) as failed:
            list(remote.entries())
        assert failed.value.message == f"cannot read the entries of {remote.url}{said}"
        with pytest.raises(CacheError) as failed:
            remote.prefetch([prefix.rpartition("/")[0]])
        assert failed.value.message == f"cannot read the entries of {remote.url}{said}"
        assert failed.value.hint == "check the store URL, your credentials and the network."


def test_a_missing_object_of_a_remote_entry_is_named(remote):
    _prefix, final, outputs = publish(remote)
    attempt = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"]
    remote.fs.rm_file(f"{final}/{attempt}/table.csv")
    entry, problem = remote.lookup(final, KEY, outputs)
    assert entry is None
    assert problem == f"{remote.display(final)}/{attempt}/table.csv is missing"


def test_remote_metadata_of_exactly_the_bound_is_read_and_a_byte_more_is_refused(remote):
    _prefix, final, outputs = publish(remote)
    meta = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))
    bare = len(dump_meta({**meta, "padding": ""}).encode())
    for extra, found in ((0, True), (1, False)):
        padded = dump_meta({**meta, "padding": "x" * (MAX_META_BYTES - bare + extra)}).encode()
        assert len(padded) == MAX_META_BYTES + extra
        remote.fs.pipe_file(f"{final}/{META_NAME}", padded)
        entry, problem = remote.lookup(final, KEY, outputs)
        assert (entry is not None) is found, problem
        if not found:
            assert problem.endswith("it is larger than metadata ever is")


def test_a_listing_of_a_folder_that_is_not_there_is_empty(remote, monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("no such folder")

    monkeypatch.setattr(remote.fs, "find", missing)
    monkeypatch.setattr(remote.fs, "exists", lambda path: True)  # the bucket is there
    assert list(remote.entries()) == []


def test_an_entry_gone_between_the_listing_and_the_read_is_left_out(remote, monkeypatch):
    _prefix, final, _outputs = publish(remote)
    gone = final.replace(KEY[:16], "b" * 16)
    real = remote.fs.find

    def find(path, *args, **kwargs):
        found = dict(real(path, *args, **kwargs))
        found[f"{gone}/{META_NAME}"] = {"name": f"{gone}/{META_NAME}", "size": 9, "type": "file"}
        return found

    monkeypatch.setattr(remote.fs, "find", find)
    assert [str(e.directory) for e in remote.entries()] == [final]


def test_a_prefetch_lists_the_experiments_after_one_that_is_not_there(remote, monkeypatch):
    prefix, final, outputs = publish(remote)
    folder = prefix.rpartition("/")[0]
    absent = remote.path_of(f"aaa/{PARAMS[:16]}")  # listed first
    real = remote.fs.find

    def find(path, *args, **kwargs):
        if path.rstrip("/").endswith("/aaa"):
            raise FileNotFoundError(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(remote.fs, "find", find)
    remote.prefetch([absent, folder])
    before = remote.calls
    assert remote.lookup(final, KEY, outputs)[0] is not None
    assert remote.calls == before  # answered from the prefetched index


def test_what_a_run_commits_is_in_its_index_of_the_bucket(remote):
    """A prefetched folder is answered from memory: the run's own commits must be in it."""
    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    remote.prefetch([prefix.rpartition("/")[0]])
    _prefix, final, outputs = publish(remote)
    before = remote.calls
    entry, problem = remote.lookup(final, KEY, outputs)
    assert problem is None and entry is not None
    assert remote.calls == before


def test_a_commit_after_a_prefetch_still_keeps_the_entry_another_writer_committed_first(remote):
    from curifactory_cli.store.remote import FsspecStore

    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    remote.prefetch([prefix.rpartition("/")[0]])  # before the other writer commits
    other = FsspecStore(remote.url)
    _prefix, final, outputs = publish(other)
    theirs = parse_meta(other.fs.cat_file(f"{final}/{META_NAME}"))["objects"]
    draft = stage_files(remote, {"model.json": b'{"w": 2}', "table.csv": b"a,b\n3,4\n"})
    meta = {k: v for k, v in other.lookup(final, KEY, outputs)[0].meta.items() if k != "objects"}
    assert remote.upload(draft, final, meta) is False  # theirs is whole: it stays
    assert parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"] == theirs
    entry, _ = remote.lookup(final, KEY, outputs)  # from the index: theirs
    assert entry is not None and entry.meta["objects"] == theirs


def test_publishing_replaces_an_entry_only_when_asked_and_removes_the_draft(remote):
    _prefix, final, outputs = publish(remote)
    first = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"]
    meta = {k: v for k, v in remote.lookup(final, KEY, outputs)[0].meta.items() if k != "objects"}
    draft = stage_files(remote, FILES)
    remote.publish(draft, final, meta)
    assert not Path(draft).exists()
    assert parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"] == first
    draft = stage_files(remote, FILES)
    remote.publish(draft, final, meta, replace=True)
    assert not Path(draft).exists()
    assert parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"] != first


def test_gc_finds_entry_folders_without_metadata_and_not_the_whole_ones(remote):
    prefix, _final, _outputs = publish(remote)
    stray = remote.entry_dir(prefix, "b" * 64)
    remote.fs.pipe_file(f"{stray}/model.json", b"{}")  # a writer killed before meta.json
    assert [str(p) for p in remote.orphan_dirs()] == [stray]


def test_gc_lists_every_leftover_attempt_after_one_in_use(remote):
    from curifactory_cli.store.local_tidy import GRACE_S

    _prefix, _first, _outputs = publish(remote)  # its attempt is in use, listed first
    _p, second, _o = publish(remote, key="b" * 64)
    files = [{"path": "model.json", "size": 3, "sha256": "0" * 64}]
    attempt = remote.put_files(stage_files(remote, {"model.json": b"new"}), second, files)
    remote.fs.pipe_file(f"{second}/planted/x", b"1")  # no attempt's name: not one of them
    later = time.time() + 2 * GRACE_S
    assert [str(p) for p, _ in remote.leftovers(later)] == [f"{second}/{attempt}"]


def test_the_age_of_a_path_that_cannot_be_listed_is_zero(remote, monkeypatch):
    _prefix, final, _outputs = publish(remote)
    monkeypatch.setattr(remote.fs, "find", _refuse)
    assert remote.age_of(final, time.time()) == 0.0


def test_an_entry_is_exported_again_into_the_same_folder(remote, tmp_path):
    _prefix, _final, _outputs = publish(remote)
    (entry,) = remote.entries()
    for _ in range(2):
        remote.export(entry, tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [
        META_NAME,
        "model.json",
        "table.csv",
    ]


def test_an_empty_listing_of_a_bucket_that_cannot_be_reached_names_the_bucket(monkeypatch):
    """An empty listing asks whether the bucket exists (a typo must not read as an empty
    cache): that request failing names the bucket. No server: the requests are refused."""
    pytest.importorskip("s3fs")
    from curifactory_cli.store.remote import FsspecStore

    store = FsspecStore("s3://lab-bucket/team/cache")
    monkeypatch.setattr(store.fs, "find", lambda *args, **kwargs: {})
    monkeypatch.setattr(store.fs, "exists", _refuse)
    store.calls = 3
    with pytest.raises(CacheError) as failed:
        list(store.entries())
    assert failed.value.message == "cannot reach s3://lab-bucket: PermissionError: access denied"
    assert store.calls == 5  # the listing, then the bucket


def test_metadata_unreadable_at_prefetch_and_gone_since_is_damage_said_so(remote):
    prefix, final, outputs = publish(remote)
    remote.fs.pipe_file(f"{final}/{META_NAME}", b"{not json")
    remote.prefetch([prefix.rpartition("/")[0]])
    remote.fs.rm_file(f"{final}/{META_NAME}")
    entry, problem = remote.lookup(final, KEY, outputs)
    assert entry is None
    assert problem == f"damaged metadata {remote.display(final)}/{META_NAME}: unreadable"


def test_a_batch_commit_that_fails_names_the_entry_and_leaves_no_files(remote, monkeypatch):
    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    final = remote.entry_dir(prefix, KEY)
    draft = stage_files(remote, FILES)
    _p, _f, _outputs = publish(remote, key="b" * 64)
    meta = {k: v for k, v in next(iter(remote.entries())).meta.items() if k != "objects"}

    async def refuse_async(*args, **kwargs):
        raise PermissionError("access denied")

    monkeypatch.setattr(remote.fs, "pipe_file", _refuse)  # one after the other (memory://)
    monkeypatch.setattr(remote.fs, "_pipe_file", refuse_async, raising=False)  # at once (s3)
    with pytest.raises(CacheError) as failed:
        remote.upload_many([(draft, final, {**meta, "key": KEY}, False)])
    assert failed.value.message == (
        f"cannot publish cache entry {remote.display(final)}: PermissionError: access denied"
    )
    monkeypatch.undo()
    assert not remote.fs.find(final)  # its uploaded files are removed


def test_an_entry_replaced_after_a_prefetch_is_answered_from_the_index(remote):
    prefix = remote.stage_prefix("exp", PARAMS, "fit")
    remote.prefetch([prefix.rpartition("/")[0]])
    _prefix, final, outputs = publish(remote)
    meta = {k: v for k, v in remote.lookup(final, KEY, outputs)[0].meta.items() if k != "objects"}
    remote.publish(stage_files(remote, FILES), final, meta, replace=True)
    attempt = parse_meta(remote.fs.cat_file(f"{final}/{META_NAME}"))["objects"]
    before = remote.calls
    entry, problem = remote.lookup(final, KEY, outputs)
    assert problem is None and entry.meta["objects"] == attempt
    assert remote.calls == before
