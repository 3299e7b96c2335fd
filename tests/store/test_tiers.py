"""A local tier in front of a shared one (here an fsspec `memory://` store: what the tiers
decide does not depend on which): entries uploaded by workers are committed by the driver
and loaded from the remote when asked for; the first writer of an entry wins; what this
machine publishes goes up in batches; the run says what it moved."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from curifactory_cli.errors import CacheError
from curifactory_cli.store import FORMAT_VERSION, LocalStore, describe_files, make_draft
from curifactory_cli.store.entry import META_NAME
from curifactory_cli.store.local_folder import UNPUSHED
from curifactory_cli.store.remote import FsspecStore
from curifactory_cli.store.tiered import UPLOAD_BATCH, TieredStore, push_entry

KEY = "a" * 64
PARAMS = "c" * 64
OURS = {"model.json": b'{"w": 1}'}
THEIRS = {"model.json": b'{"w": 22}'}


@pytest.fixture
def tiers(tmp_path):
    made = TieredStore(
        LocalStore(tmp_path / "cache"), FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    )
    yield made
    made.close()


def staged(folder: Path, files: dict[str, bytes]) -> tuple[str, dict]:
    """A draft folder with these files, and the metadata of the entry they make."""
    os.makedirs(folder.parent, exist_ok=True)
    make_draft(str(folder))
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    described = describe_files(str(folder), ["model"])
    meta = {
        "format": FORMAT_VERSION,
        "key": KEY,
        "lineage_key": "L" * 64,
        "experiment": "exp",
        "stage": "fit",
        "record": "set1",
        "params_hash": PARAMS,
        "outputs": {"model": {"version": "v", "cacher": "JsonCacher", "files": described["model"]}},
        "extra_files": described[""],
    }
    return str(folder), meta


def final_of(store: TieredStore, stage: str = "fit") -> str:
    return store.entry_dir(store.stage_prefix("exp", PARAMS, stage), KEY)


def test_an_entry_a_worker_uploaded_is_committed_and_loaded_from_the_remote(tiers, tmp_path):
    """A worker on another machine uploads the files; the driver commits them. Nothing is
    downloaded until something loads the entry, which then is a verified local entry."""
    final = final_of(tiers)
    worker, meta = staged(tmp_path / "worker" / "job", OURS)
    attempt = tiers.remote.put_files(
        worker, tiers._remote_path(final), meta["outputs"]["model"]["files"]
    )
    tiers.publish(str(tmp_path / "not-here"), final, meta, attempt=attempt)
    assert not os.path.exists(final)
    assert tiers.transfers["pushed"] == {"entries": 1, "bytes": 8}
    assert tiers.remote.lookup(tiers._remote_path(final), KEY, ["model"])[0] is not None

    entry = tiers.entry_at(final)
    assert entry is not None and entry.key == KEY
    assert Path(final, "model.json").read_bytes() == OURS["model.json"]
    assert "objects" not in entry.meta  # the local layout: files beside meta.json
    assert tiers.transfers["pulled"] == {"entries": 1, "bytes": 8}
    assert tiers.entry_at(final) is not None  # once: nothing more to download
    assert tiers.transfers["pulled"] == {"entries": 1, "bytes": 8}


def test_when_another_run_committed_first_its_entry_is_the_one_loaded(tiers, tmp_path):
    final = final_of(tiers)
    target = tiers._remote_path(final)
    other, theirs = staged(tmp_path / "other" / "job", THEIRS)
    assert tiers.remote.upload(other, target, theirs) is True  # another machine, first
    worker, meta = staged(tmp_path / "worker" / "job", OURS)
    attempt = tiers.remote.put_files(worker, target, meta["outputs"]["model"]["files"])
    tiers.publish(str(tmp_path / "not-here"), final, meta, attempt=attempt)
    assert tiers.transfers["pushed"] == {"entries": 0, "bytes": 0}
    assert not tiers.remote.fs.exists(f"{target}/{attempt}")  # ours is removed
    assert tiers.entry_at(final) is not None
    assert Path(final, "model.json").read_bytes() == THEIRS["model.json"]


def test_a_failed_upload_of_the_only_copy_fails_and_of_a_local_one_warns(tiers, tmp_path):
    final = final_of(tiers)
    _draft, meta = staged(tmp_path / "worker" / "job", OURS)
    with pytest.raises(CacheError, match="connection reset"):
        tiers.publish(str(tmp_path / "not-here"), final, meta, upload_error="connection reset")
    with pytest.raises(CacheError, match="staged where this process cannot see"):
        tiers.publish(str(tmp_path / "not-here"), final, meta)

    here, meta = staged(Path(tiers.draft_path()), OURS)
    tiers.publish(here, final, meta, upload_error="connection reset")
    assert Path(final, "model.json").read_bytes() == OURS["model.json"]  # kept locally
    assert tiers.warnings == [
        "connection reset; it is cached locally, `curi cache push` uploads it later"
    ]


def test_what_this_machine_publishes_is_uploaded_in_batches(tiers, tmp_path):
    finals = []
    for n in range(UPLOAD_BATCH + 1):
        final = final_of(tiers, f"s{n}")
        draft, meta = staged(Path(tiers.draft_path()), OURS)
        tiers.publish(draft, final, {**meta, "stage": f"s{n}"})
        finals.append(final)
    # A full batch went up at once; the one after it waits for the next flush.
    remote = [tiers._remote_path(f) for f in finals]
    there = [tiers.remote.fs.exists(f"{r}/{META_NAME}") for r in remote]
    assert there == [True] * UPLOAD_BATCH + [False]
    tiers.flush()
    assert tiers.remote.fs.exists(f"{remote[-1]}/{META_NAME}")
    assert tiers.transfers["pushed"] == {"entries": UPLOAD_BATCH + 1, "bytes": 8 * 65}


def test_an_interrupted_run_keeps_its_queued_entries_for_the_next_push(tmp_path):
    store = TieredStore(
        LocalStore(tmp_path / "cache"), FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    )
    final = final_of(store)
    draft, meta = staged(Path(store.draft_path()), OURS)
    store.publish(draft, final, meta)
    store.close(cancel=True)
    assert not store.remote.fs.exists(f"{store._remote_path(final)}/{META_NAME}")
    listed = (tmp_path / "cache" / UNPUSHED).read_text().splitlines()
    assert listed == [os.path.relpath(final, tmp_path / "cache")]

    # The next run that reaches the remote uploads it, and empties the list.
    again = TieredStore(LocalStore(tmp_path / "cache"), store.remote)
    again.close()
    assert store.remote.lookup(store._remote_path(final), KEY, ["model"])[0] is not None
    assert not (tmp_path / "cache" / UNPUSHED).exists()
    assert again.transfers["pushed"] == {"entries": 1, "bytes": 8}


def test_a_worker_opens_the_remote_the_driver_commits_to(tmp_path):
    """The reference a job carries to a worker names the same store, place and options."""
    url = f"memory://curi-{uuid.uuid4().hex}"
    options = {"skip_instance_cache": False}
    store = TieredStore(LocalStore(tmp_path / "cache"), FsspecStore(url), options)
    final = final_of(store)
    ref = store.remote_ref(final)
    assert (ref.url, ref.path, dict(ref.storage_options)) == (
        url,
        store._remote_path(final),
        options,
    )
    worker, meta = staged(tmp_path / "worker" / "job", OURS)
    attempt = ref.open().put_files(worker, ref.path, meta["outputs"]["model"]["files"])
    store.publish(str(tmp_path / "not-here"), final, meta, attempt=attempt)
    assert store.entry_at(final) is not None
    assert Path(final, "model.json").read_bytes() == OURS["model.json"]
    assert store.display(final) == final  # messages name the local folder
    store.close()


def test_a_worker_upload_made_on_purpose_replaces_the_entry_there(tiers, tmp_path):
    """`--overwrite` (or an invalidated entry): the run's upload replaces what is there."""
    final = final_of(tiers)
    target = tiers._remote_path(final)
    other, theirs = staged(tmp_path / "other" / "job", THEIRS)
    tiers.remote.upload(other, target, theirs)
    worker, meta = staged(tmp_path / "worker" / "job", OURS)
    attempt = tiers.remote.put_files(worker, target, meta["outputs"]["model"]["files"])
    tiers.publish(str(tmp_path / "not-here"), final, meta, replace=True, attempt=attempt)
    assert tiers.remote.lookup(target, KEY, ["model"])[0].meta["objects"] == attempt
    assert tiers.entry_at(final) is not None
    assert Path(final, "model.json").read_bytes() == OURS["model.json"]


def test_a_local_copy_stays_when_another_run_committed_the_entry_first(tiers, tmp_path):
    final = final_of(tiers)
    target = tiers._remote_path(final)
    other, theirs = staged(tmp_path / "other" / "job", THEIRS)
    tiers.remote.upload(other, target, theirs)
    here, meta = staged(Path(tiers.draft_path()), OURS)
    attempt = tiers.remote.put_files(here, target, meta["outputs"]["model"]["files"])
    tiers.publish(here, final, meta, attempt=attempt)
    assert tiers.entry_at(final) is not None
    assert Path(final, "model.json").read_bytes() == OURS["model.json"]
    assert tiers.transfers["pulled"]["entries"] == 0


def test_a_temporary_local_tier_downloads_an_entry_only_when_it_is_read(tmp_path):
    """`--cache URL`: a lookup reads metadata; the files come down when loaded or exported."""
    from curifactory_cli.store import open_store

    url = f"memory://curi-{uuid.uuid4().hex}"
    first = open_store(url)
    final = final_of(first)
    draft, meta = staged(Path(first.draft_path()), OURS)
    first.publish(draft, final, meta)
    first.close()

    for read in ("local_dir", "export"):
        store = open_store(url)
        final = final_of(store)
        entry, problem = store.lookup(final, KEY, ["model"])
        assert problem is None and not os.path.exists(final)
        if read == "local_dir":
            folder = store.local_dir(entry)
        else:
            folder = tmp_path / "exported"
            store.export(entry, folder)
        assert Path(folder, "model.json").read_bytes() == OURS["model.json"]
        assert store.transfers["pulled"] == {"entries": 1, "bytes": 8}
        store.close()


def test_pushing_what_an_earlier_run_kept_skips_what_the_remote_has_meanwhile(tmp_path):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    offline = TieredStore(LocalStore(tmp_path / "cache"), remote)
    final = final_of(offline)
    draft, meta = staged(Path(offline.draft_path()), OURS)
    offline.publish(draft, final, meta)
    offline.close(cancel=True)  # kept for later, listed in .unpushed
    other, theirs = staged(tmp_path / "other" / "job", THEIRS)
    target = offline._remote_path(final)
    remote.upload(other, target, theirs)  # someone else uploads it meanwhile
    attempt = remote.lookup(target, KEY, ["model"])[0].meta["objects"]

    again = TieredStore(LocalStore(tmp_path / "cache"), remote)
    again.close()
    assert again.transfers["pushed"] == {"entries": 0, "bytes": 0}
    assert remote.lookup(target, KEY, ["model"])[0].meta["objects"] == attempt  # theirs


def test_a_pulled_entry_is_a_verified_local_entry_and_a_damaged_one_leaves_nothing(tmp_path):
    from curifactory_cli.store import CorruptEntryError
    from curifactory_cli.store.tiered import pull_entry

    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    local = LocalStore(tmp_path / "cache")
    source, meta = staged(tmp_path / "other" / "job", OURS)
    target = remote.entry_dir(remote.stage_prefix("exp", PARAMS, "fit"), KEY)
    remote.upload(source, target, meta)
    (entry,) = remote.entries()
    pull_entry(local, remote, entry)
    final = final_of(local)
    found, problem = local.lookup(final, KEY, ["model"])
    assert problem is None and "objects" not in found.meta

    remote.fs.pipe_file(f"{target}/{entry.meta['objects']}/model.json", b'{"w": 9}')
    elsewhere = LocalStore(tmp_path / "other-cache")
    with pytest.raises(CorruptEntryError):
        pull_entry(elsewhere, remote, entry)
    assert list(elsewhere.entries()) == []
    draft = tmp_path / "other-cache" / ".staging"
    assert not draft.exists() or list(draft.iterdir()) == []


def _remote_only(tiers, tmp_path, files=OURS) -> str:
    """An entry another machine uploaded: on the remote, not in this local tier."""
    final = final_of(tiers)
    other, meta = staged(tmp_path / "other" / "job", files)
    tiers.remote.upload(other, tiers._remote_path(final), meta)
    return final


@pytest.mark.parametrize("dry", [False, True], ids=["lasting", "dry run"])
def test_a_damaged_remote_entry_is_a_miss_and_the_remote_stays_in_use(tmp_path, dry):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    tiers = TieredStore(LocalStore(tmp_path / "cache", dry=dry), remote)
    final = _remote_only(tiers, tmp_path)
    target = tiers._remote_path(final)
    attempt = remote.lookup(target, KEY, ["model"])[0].meta["objects"]
    remote.fs.pipe_file(f"{target}/{attempt}/model.json", b'{"w": 7}')  # same size
    entry, problem = tiers.lookup(final, KEY, ["model"])
    assert entry is None and problem.startswith("remote entry unusable: cached file ")
    assert tiers.offline is None and tiers.warnings == []
    assert not os.path.exists(final)
    draft = tmp_path / "cache" / ".staging"
    assert not draft.exists() or list(draft.iterdir()) == []  # the download is gone
    tiers.close()


@pytest.mark.parametrize("dry", [False, True], ids=["lasting", "dry run"])
def test_a_remote_that_fails_mid_download_is_left_out_of_the_rest_of_the_run(
    tmp_path, monkeypatch, dry
):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    tiers = TieredStore(LocalStore(tmp_path / "cache", dry=dry), remote)
    final = _remote_only(tiers, tmp_path)
    if not dry:  # one entry computed here, queued for upload
        draft, meta = staged(Path(tiers.draft_path()), OURS)
        tiers.publish(draft, final_of(tiers, "other"), {**meta, "stage": "other"})

    def cut(*args, **kwargs):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(remote.fs, "get", cut)
    entry, problem = tiers.lookup(final, KEY, ["model"])
    assert entry is None and "connection reset by peer" in problem
    assert tiers.offline is not None and tiers.transfers["reached"] is False
    (warning,) = tiers.warnings
    assert warning.startswith(f"remote {remote.url} stopped answering (")
    queued = " (1 entries not uploaded yet)" if not dry else ""
    assert f"what it computes stays there{queued} until" in warning
    tiers.close(cancel=True)


def test_a_plan_answers_from_remote_metadata_and_downloads_nothing(tiers, tmp_path):
    final = _remote_only(tiers, tmp_path)
    tiers.planning = True
    entry, problem = tiers.lookup(final, KEY, ["model"])
    assert problem is None and str(entry.directory) == final and "objects" not in entry.meta
    assert not os.path.exists(final) and tiers.transfers["pulled"]["entries"] == 0


def test_what_an_earlier_run_kept_stays_listed_when_its_upload_fails(tmp_path, monkeypatch):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    offline = TieredStore(LocalStore(tmp_path / "cache"), remote)
    final = final_of(offline)
    draft, meta = staged(Path(offline.draft_path()), OURS)
    offline.publish(draft, final, meta)
    offline.close(cancel=True)  # kept for later, listed in .unpushed
    listed = (tmp_path / "cache" / UNPUSHED).read_text()

    def cut(*args, **kwargs):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(remote.fs, "put", cut)
    again = TieredStore(LocalStore(tmp_path / "cache"), remote)
    again.close()
    assert (tmp_path / "cache" / UNPUSHED).read_text() == listed  # still to upload
    assert again.transfers["reached"] is False
    (warning,) = again.warnings
    assert warning.endswith(
        "; 1 entries of earlier runs are still to upload: the next run that reaches the "
        "remote (or `curi cache push`) uploads them"
    )


@pytest.mark.parametrize("count", [1, 2])
def test_a_failed_batch_upload_says_how_many_entries_wait_locally(tmp_path, monkeypatch, count):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    tiers = TieredStore(LocalStore(tmp_path / "cache"), remote)
    finals = [final_of(tiers, f"s{n}") for n in range(count)]
    for n, final in enumerate(finals):
        draft, meta = staged(Path(tiers.draft_path()), OURS)
        tiers.publish(draft, final, {**meta, "stage": f"s{n}"})

    def cut(*args, **kwargs):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(remote.fs, "put", cut)
    tiers.flush()
    entries = "1 entry is" if count == 1 else f"{count} entries are"
    uploads = "1 entry" if count == 1 else f"{count} entries"
    failed = f"cannot upload {uploads} to {remote.url}: ConnectionError: connection reset"
    assert tiers.warnings == [
        f"{failed}; {entries} cached locally, the next run that reaches the remote (or "
        "`curi cache push`) uploads them"
    ]
    assert tiers.offline == failed
    tiers.close()
    kept = (tmp_path / "cache" / UNPUSHED).read_text().split()
    assert sorted(kept) == sorted(
        Path(f).relative_to(tmp_path / "cache").as_posix() for f in finals
    )


def test_a_dry_run_reads_a_remote_entry_from_a_download_it_throws_away(tmp_path):
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    tiers = TieredStore(LocalStore(tmp_path / "cache", dry=True), remote)
    assert tiers.dry is True
    final = _remote_only(tiers, tmp_path)
    entry, problem = tiers.lookup(final, KEY, ["model"])
    assert problem is None and "objects" not in entry.meta and entry.key == KEY
    assert (Path(entry.directory) / "model.json").read_bytes() == OURS["model.json"]
    assert not os.path.exists(final)  # nothing written to the local tier
    assert tiers.transfers["pulled"] == {"entries": 1, "bytes": len(OURS["model.json"])}
    tiers.close()


def test_the_tiers_answer_as_their_local_tier_where_it_has_the_entry(tiers, tmp_path):
    assert tiers.root == tiers.local.root and tiers.dry is False
    assert tiers.location == f"{tiers.local.location} (remote {tiers.remote.url})"
    final = final_of(tiers)
    draft, meta = staged(Path(tiers.draft_path()), OURS)
    tiers.publish(draft, final, meta)
    before = tiers.remote.calls
    prefix = tiers.stage_prefix("exp", PARAMS, "fit")
    assert str(tiers.find_by_lineage(prefix, "L" * 64, ["model"]).directory) == final
    entry, problem = tiers.recheck(final, KEY, ["model"])
    assert problem is None and str(entry.directory) == final
    assert tiers.remote.calls == before  # the remote was not asked


def test_a_damaged_remote_entry_is_named_when_the_local_tier_has_none(tiers, tmp_path):
    final = _remote_only(tiers, tmp_path)
    target = tiers._remote_path(final)
    tiers.remote.fs.pipe_file(f"{target}/{META_NAME}", b"{not json")
    entry, problem = tiers.lookup(final, KEY, ["model"])
    assert entry is None
    assert problem == f"damaged metadata {tiers.remote.display(target)}/{META_NAME}: it is not JSON"


def test_a_remote_lost_during_a_lineage_lookup_leaves_the_run_to_the_local_tier(
    tiers, tmp_path, monkeypatch
):
    _remote_only(tiers, tmp_path)
    assert tiers.lookup(final_of(tiers, "other"), KEY, ["model"]) == (None, None)  # reached

    def cut(*args, **kwargs):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(tiers.remote.fs, "ls", cut)
    prefix = tiers.stage_prefix("exp", PARAMS, "fit")
    assert tiers.find_by_lineage(prefix, "L" * 64, ["model"]) is None
    assert "connection reset" in tiers.offline
    (warning,) = tiers.warnings
    assert warning.startswith(f"remote {tiers.remote.url} stopped answering (")


def test_an_entry_recomputed_on_purpose_replaces_the_one_on_the_remote(tiers, tmp_path):
    final = _remote_only(tiers, tmp_path, files=THEIRS)
    draft, meta = staged(Path(tiers.draft_path()), OURS)
    tiers.publish(draft, final, meta, replace=True)  # --overwrite
    tiers.flush()
    there = tiers.remote.lookup(tiers._remote_path(final), KEY, ["model"])[0]
    assert read_remote(tiers.remote, there) == OURS["model.json"]


def test_cache_push_uploads_an_entry_where_the_local_tier_has_it(tmp_path):
    local = LocalStore(tmp_path / "cache")
    remote = FsspecStore(f"memory://curi-{uuid.uuid4().hex}")
    final = local.entry_dir(local.stage_prefix("exp", PARAMS, "fit"), KEY)
    draft, meta = staged(Path(local.draft_path()), OURS)
    local.publish(draft, final, meta)
    (entry,) = local.entries()
    assert push_entry(local, remote, entry) is True
    target = remote.path_of(entry.rel(local.root))
    assert read_remote(remote, remote.lookup(target, KEY, ["model"])[0]) == OURS["model.json"]


def read_remote(remote: FsspecStore, entry) -> bytes:
    return remote.fs.cat_file(f"{entry.directory}/{entry.meta['objects']}/model.json")


def test_an_empty_file_adds_nothing_to_what_a_run_says_it_pushed(tiers):
    draft, meta = staged(Path(tiers.draft_path()), {"model.json": b""})
    tiers.publish(draft, final_of(tiers), meta)
    tiers.flush()
    assert tiers.transfers["pushed"] == {"entries": 1, "bytes": 0}
