"""The cache commands on entries that parameter sets share: a set's calls served from another
set's entry make that entry the set's too, for `cache ls -p`, `inspect`, `invalidate -p` and
`clear -p`, in a local cache and in one at a URL; `cache gc` compacts the reads index."""

from __future__ import annotations

import json

from test_sharing import SWEEP, executed, index_records, sweep_params


def ok(cli, *args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def listed(cli, *args: str) -> list[dict]:
    return json.loads(ok(cli, "cache", "ls", *args, "--json").stdout)["entries"]


def swept(project, lrs=(0.1, 0.2, 0.3)):
    """Three sets that share `load` and `clean` (computed for lr0.1) and run the rest."""
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params(list(lrs)))
    result = project.run("sweep", "params/p.yaml")
    assert result.ok, result.error
    assert executed(result) == {"load": 1, "clean": 1, "train": len(lrs), "evaluate": len(lrs)}
    return result


def uses(project) -> list[dict]:
    return [r for r in index_records(project) if "use" in r]


def test_ls_of_a_set_lists_the_entries_its_calls_used_from_another_set(project, cli):
    swept(project)
    rows = listed(cli, "-p", "lr0.2")
    assert {(r["stage"], r["params"]) for r in rows} == {
        ("train", "lr0.2"),
        ("evaluate", "lr0.2"),
        ("load", "lr0.1"),
        ("clean", "lr0.1"),
    }
    shared = {r["stage"]: r for r in rows if "shared_from" in r}
    assert set(shared) == {"load", "clean"}
    assert shared["load"]["shared_from"] == "lr0.1"
    assert shared["load"]["used_by"] == ["lr0.1", "lr0.2", "lr0.3"]
    assert shared["load"]["path"].startswith("sweep/" + rows[0]["params_hash"][:0])
    own = next(r for r in rows if r["stage"] == "train")
    assert "shared_from" not in own and "used_by" not in own
    # The table says so in its state column, and the totals count what the set uses.
    text = ok(cli, "cache", "ls", "-p", "lr0.2").stdout
    load_row = next(line for line in text.splitlines() if " load " in line)
    assert load_row.rstrip().endswith("shared from lr0.1")
    assert "4 entries" in text
    # A stage filter, and the set named by a prefix of its hash, select the same way.
    assert [r["stage"] for r in listed(cli, "-p", "lr0.3", "-s", "load")] == ["load"]
    by_hash = own["params_hash"][:8]
    assert {r["stage"] for r in listed(cli, "-p", by_hash)} == {
        "train",
        "evaluate",
        "load",
        "clean",
    }
    # The set that computed them lists them as its own, saying who else uses them.
    first = {r["stage"]: r for r in listed(cli, "-p", "lr0.1")}
    assert set(first) == {"load", "clean", "train", "evaluate"}
    assert "shared_from" not in first["load"] and first["load"]["used_by"][1:] == [
        "lr0.2",
        "lr0.3",
    ]
    whole = ok(cli, "cache", "ls").stdout
    assert any(
        " load " in line and line.rstrip().endswith("shared with lr0.2, lr0.3")
        for line in whole.splitlines()
    )


def test_a_set_uses_another_sets_entry_in_one_use_line_whatever_the_runs(project, cli):
    swept(project)
    first = uses(project)
    assert sorted((u["stage"], u["record"]) for u in first) == [
        ("clean", "lr0.2"),
        ("clean", "lr0.3"),
        ("load", "lr0.2"),
        ("load", "lr0.3"),
    ]
    again = project.run("sweep", "params/p.yaml")
    assert again.ok and executed(again) == {}
    assert len(uses(project)) == len(first)
    # A set added later, served from the same entries, is added to them.
    project.write("params/p.yaml", sweep_params([0.1, 0.2, 0.3, 0.4]))
    assert executed(project.run("sweep", "params/p.yaml")) == {"train": 1, "evaluate": 1}
    assert len(uses(project)) == len(first) + 2
    assert listed(cli, "-p", "lr0.4", "-s", "load")[0]["shared_from"] == "lr0.1"


def test_inspect_names_every_set_that_used_the_entry(project, cli):
    swept(project)
    (load,) = listed(cli, "-p", "lr0.1", "-s", "load")
    text = ok(cli, "cache", "inspect", load["id"]).stdout
    sets = next(line for line in text.splitlines() if line.startswith("sets"))
    assert "lr0.1, lr0.2, lr0.3" in sets and "computed for lr0.1" in sets
    data = json.loads(ok(cli, "cache", "inspect", load["id"], "--json").stdout)
    assert [(u["name"], u["computed"]) for u in data["used_by"]] == [
        ("lr0.1", True),
        ("lr0.2", False),
        ("lr0.3", False),
    ]
    (train,) = listed(cli, "-p", "lr0.2", "-s", "train")
    text = ok(cli, "cache", "inspect", train["id"]).stdout
    assert "lr0.2  (no other set used it)" in text


def test_invalidate_of_a_set_covers_the_entry_it_shares_and_names_the_other_sets(project, cli):
    swept(project)
    shown = ok(cli, "cache", "invalidate", "sweep", "-s", "load", "-p", "lr0.2")
    first = shown.stdout.splitlines()[0]
    assert "sweep / lr0.1 / load" in first
    assert "(matched; shared from lr0.1; also used by lr0.1, lr0.3)" in first
    # The shared entry is invalidated for every set: the next run computes it once again,
    # and what each set computed from it.
    again = project.run("sweep", "params/p.yaml")
    assert executed(again) == {"load": 1, "clean": 1, "train": 3, "evaluate": 3}
    data = json.loads(
        ok(cli, "cache", "invalidate", "sweep", "-s", "clean", "-p", "lr0.3", "--json").stdout
    )
    (matched,) = data["matched"]
    assert matched["stage"] == "clean" and matched["shared_from"] == "lr0.1"
    assert matched["also_used_by"] == ["lr0.1", "lr0.2"]


def test_clear_of_a_set_removes_the_entry_it_shares_and_names_the_other_sets(project, cli):
    swept(project)
    dry = ok(cli, "cache", "clear", "-p", "lr0.3", "-s", "load", "--dry-run").stdout
    assert "shared from lr0.1; also used by lr0.1, lr0.2" in dry
    assert "would remove 1 entry" in dry
    ok(cli, "cache", "clear", "-p", "lr0.3", "-s", "load", "--yes")
    assert not [r for r in listed(cli) if r["stage"] == "load"]
    # Gone for every set: computed once more at most (what followed it is kept), and every
    # set gets its own result.
    again = project.run("sweep", "params/p.yaml")
    assert again.ok and executed(again) in ({}, {"load": 1})
    assert [r.state["score"] for r in again.records] == [9.1, 18.2, 27.3]


def test_ls_of_a_set_in_a_cache_at_a_url_lists_what_it_shares(project, cli):
    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2]))
    url = f"memory://shared-ls-{id(project)}"
    assert executed(project.run("sweep", "params/p.yaml", cache_dir=url))["load"] == 1
    rows = listed(cli, "--cache", url, "-p", "lr0.2")
    assert {(r["stage"], r.get("shared_from")) for r in rows} == {
        ("load", "lr0.1"),
        ("clean", "lr0.1"),
        ("train", None),
        ("evaluate", None),
    }


# ---------------------------------------------------------------------------------- gc
def index_files(project) -> list:
    return sorted((project.cache / ".reads" / "sweep").glob("*.jsonl"))


def test_gc_compacts_the_reads_index_into_one_file_without_lines_of_entries_gone(project, cli):
    swept(project, (0.1, 0.2))
    project.write("params/q.yaml", sweep_params([0.3]))
    assert executed(project.run("sweep", "params/q.yaml")) == {"train": 1, "evaluate": 1}
    assert len(index_files(project)) == 2
    before = index_records(project)
    (train,) = listed(cli, "-p", "lr0.3", "-s", "train")
    ok(cli, "cache", "clear", train["id"], "--yes")
    # A dry run says what it would do and changes nothing.
    dry = ok(cli, "cache", "gc").stdout
    assert ".reads/sweep  2 files" in dry and "1 of entries gone" in dry
    assert len(index_files(project)) == 2
    data = json.loads(ok(cli, "cache", "gc", "--yes", "--json").stdout)
    (done,) = data["index"]
    assert (done["files"], done["lines"], done["gone"]) == (2, len(before), 1)
    assert done["kept"] == len(before) - 1
    assert len(index_files(project)) == 1
    after = index_records(project)
    assert len(after) == len(before) - 1
    assert train["key"] not in {r.get("key") for r in after}
    assert sorted(map(json.dumps, after)) == sorted(
        json.dumps(r) for r in before if r.get("key") != train["key"]
    )
    assert "nothing to collect" in ok(cli, "cache", "gc").stdout  # one file, all alive
    # The compacted index serves as the files did: a new set shares, the rest is cached.
    project.write("params/q.yaml", sweep_params([0.1, 0.2, 0.4]))
    third = project.run("sweep", "params/q.yaml")
    assert executed(third) == {"train": 1, "evaluate": 1}
    assert listed(cli, "-p", "lr0.4", "-s", "load")[0]["shared_from"] == "lr0.1"


def test_gc_leaves_a_file_a_run_is_writing_and_loses_no_line(project, cli):
    import threading
    import time

    from curifactory_cli.store.reads_compact import _take
    from curifactory_cli.store.reads_index import LocalIndexFiles

    swept(project, (0.1, 0.2))
    project.write("params/q.yaml", sweep_params([0.3]))
    assert project.run("sweep", "params/q.yaml").ok
    (load,) = listed(cli, "-p", "lr0.1", "-s", "load")
    record = {
        "stage": "load",
        "probe": "ab" * 32,
        "reads": [],
        "params_hash": load["params_hash"],
        "key": load["key"],
    }
    # A run writing now holds its file: gc compacts the others and leaves it.
    writer = LocalIndexFiles(str(project.cache), dry=False)
    writer.append("sweep", [record])
    data = json.loads(ok(cli, "cache", "gc", "--yes", "--json").stdout)
    assert data["index"][0]["held"] == 1 and data["index"][0]["files"] == 2
    writer.append("sweep", [{**record, "probe": "cd" * 32}])
    writer.close()
    probes = [r["probe"] for r in index_records(project) if "probe" in r]
    assert {"ab" * 32, "cd" * 32} <= set(probes)
    # A writer that opened its file just before gc took it waits for the lock, finds the
    # file gone, and writes to a new one: its line is on disk.
    late = LocalIndexFiles(str(project.cache), dry=False)
    path = project.cache / ".reads" / "sweep" / f"{late._name}.jsonl"
    path.write_text("")
    fd, _ = _take(str(path))
    thread = threading.Thread(target=late.append, args=("sweep", [{**record, "probe": "ef" * 32}]))
    thread.start()
    time.sleep(0.2)
    path.unlink()
    import os

    os.close(fd)
    thread.join(5)
    late.close()
    assert "ef" * 32 in {r.get("probe") for r in index_records(project)}


def test_gc_compacts_the_reads_index_of_a_cache_at_a_url(project, cli):
    import fsspec

    project.write("experiments/sweep.py", SWEEP)
    url = f"memory://shared-gc-{id(project)}"
    for lrs in ([0.1, 0.2], [0.3]):
        project.write("params/p.yaml", sweep_params(lrs))
        assert project.run("sweep", "params/p.yaml", cache_dir=url).ok
    fs = fsspec.filesystem("memory")
    folder = url.removeprefix("memory://") + "/.reads/sweep"
    assert len(fs.ls(folder)) == 2
    data = json.loads(ok(cli, "cache", "gc", "--cache", url, "--yes", "--json").stdout)
    assert data["index"][0]["files"] == 2 and data["index"][0]["gone"] == 0
    assert len(fs.ls(folder)) == 1
    project.write("params/p.yaml", sweep_params([0.1, 0.4]))
    again = project.run("sweep", "params/p.yaml", cache_dir=url)
    assert executed(again) == {"train": 1, "evaluate": 1}


# ---------------------------------------------------------------------------------- push, pull
def test_push_and_pull_carry_the_index_so_other_machines_share_the_entries(project, cli):
    import shutil

    swept(project, (0.1, 0.2))
    url = f"memory://shared-push-{id(project)}"
    pushed = json.loads(ok(cli, "cache", "push", "--remote", url, "--json").stdout)
    assert pushed["pushed"] == 6
    # Another machine, its own cache empty, with the bucket behind it: a new set shares
    # load and clean from the bucket (their index lines went with them).
    shutil.move(project.cache, project.root / "first-cache")
    project.write("params/q.yaml", sweep_params([0.3]))
    other = project.run("sweep", "params/q.yaml", remote=url)
    assert other.ok, other.error
    assert executed(other) == {"train": 1, "evaluate": 1}
    assert other.records[0].state["score"] == 27.3
    # A third one pulls the bucket and then works alone: its own index has the lines.
    shutil.rmtree(project.cache)
    pulled = json.loads(ok(cli, "cache", "pull", "--remote", url, "--json").stdout)
    assert pulled["pulled"] == 8
    project.write("params/q.yaml", sweep_params([0.4]))
    alone = project.run("sweep", "params/q.yaml")
    assert executed(alone) == {"train": 1, "evaluate": 1}
    # Pushing again adds no line the bucket has.
    import fsspec

    fs = fsspec.filesystem("memory")
    folder = url.removeprefix("memory://") + "/.reads/sweep"

    def remote_lines() -> int:
        return sum(fs.cat(path).count(b"\n") for path in fs.ls(folder, detail=False))

    before = remote_lines()
    shutil.rmtree(project.cache)
    shutil.move(project.root / "first-cache", project.cache)
    ok(cli, "cache", "push", "--remote", url)
    assert remote_lines() == before


def test_dump_of_the_latest_run_follows_the_entries_sets_share(project, cli):
    swept(project)
    (load,) = listed(cli, "-p", "lr0.1", "-s", "load")
    dumped = ok(cli, "cache", "dump", "-e", "sweep", "-s", "load", "-p", "lr0.2", "--json")
    one = json.loads(dumped.stdout)
    assert one["id"] == load["id"] and one["value"] == list(range(10))
    every = json.loads(ok(cli, "cache", "dump", "-e", "sweep", "-s", "load", "--json").stdout)
    assert [(s["params"], s["id"]) for s in every["sets"]] == [
        ("lr0.1", load["id"]),
        ("lr0.2", load["id"]),
        ("lr0.3", load["id"]),
    ]
    table = ok(cli, "cache", "dump", "-e", "sweep", "-s", "train").stdout
    assert "3 parameter sets" in table


def test_planted_index_files_neither_hang_nor_reach_outside_nor_print_controls(
    project, cli, tmp_path_factory
):
    import os

    swept(project, (0.1, 0.2))
    folder = project.cache / ".reads" / "sweep"
    os.mkfifo(folder / "fifo.jsonl")  # opening it to read would wait for a writer
    outside = tmp_path_factory.mktemp("outside")
    (outside / "theirs.jsonl").write_text("not ours\n")
    (project.cache / ".reads" / "linked").symlink_to(outside)
    (load,) = listed(cli, "-p", "lr0.1", "-s", "load")
    forged = {
        "use": load["key"],
        "stage": "load",
        "params_hash": load["params_hash"],
        "by": "ab" * 16,
        "record": "\x1b]0;owned\x07x",
    }
    (folder / "forged.jsonl").write_text(json.dumps(forged) + "\n")
    again = project.run("sweep", "params/p.yaml")
    assert again.ok and executed(again) == {}
    text = ok(cli, "cache", "ls").stdout + ok(cli, "cache", "inspect", load["id"]).stdout
    assert "\x1b" not in text and "owned" not in text
    ok(cli, "cache", "gc", "--yes")
    assert (outside / "theirs.jsonl").read_text() == "not ours\n"
    assert (folder / "fifo.jsonl").exists()  # not a file of the index: left alone
    assert listed(cli, "-p", "lr0.2", "-s", "load")[0]["shared_from"] == "lr0.1"


def test_push_and_pull_of_a_set_move_the_entries_it_shares_too(project, cli):
    import shutil

    swept(project, (0.1, 0.2))
    url = f"memory://shared-push-set-{id(project)}"
    pushed = json.loads(ok(cli, "cache", "push", "-p", "lr0.2", "--remote", url, "--json").stdout)
    assert pushed["pushed"] == 4  # its train and evaluate, and lr0.1's load and clean
    remote = {(r["stage"], r["params"]) for r in listed(cli, "--cache", url)}
    assert remote == {
        ("load", "lr0.1"),
        ("clean", "lr0.1"),
        ("train", "lr0.2"),
        ("evaluate", "lr0.2"),
    }
    shutil.rmtree(project.cache)
    pulled = json.loads(ok(cli, "cache", "pull", "-p", "lr0.2", "--remote", url, "--json").stdout)
    assert pulled["pulled"] == 4
    project.write("params/q.yaml", sweep_params([0.2]))
    alone = project.run("sweep", "params/q.yaml")
    assert alone.ok and executed(alone) == {}


def test_ls_current_keeps_what_the_latest_run_used_from_sets_it_did_not_run(project, cli):
    swept(project, (0.1, 0.2))
    project.write("params/q.yaml", sweep_params([0.3]))
    assert executed(project.run("sweep", "params/q.yaml")) == {"train": 1, "evaluate": 1}
    rows = listed(cli, "--current", "-p", "lr0.3")
    assert sorted((r["stage"], r.get("shared_from")) for r in rows) == [
        ("clean", "lr0.1"),
        ("evaluate", None),
        ("load", "lr0.1"),
        ("train", None),
    ]
    # Without -p: what that run used, lr0.1's shared entries with it.
    assert {(r["stage"], r["params"]) for r in listed(cli, "--current")} == {
        ("load", "lr0.1"),
        ("clean", "lr0.1"),
        ("train", "lr0.3"),
        ("evaluate", "lr0.3"),
    }


def test_ls_stale_keeps_an_entry_another_set_is_served_from(project, cli):
    swept(project, (0.1, 0.2))
    # lr0.1 now reads other values: its own entries are stale, but load and clean, computed
    # for it with n_rows 10, still serve lr0.2.
    project.write("params/p.yaml", "- name: lr0.1\n  n_rows: 12\n  lr: 0.1\n" + sweep_params([0.2]))
    stale = {
        (r["stage"], r["params"])
        for r in listed(cli, "--stale", "sweep", "--stale-params", "params/p.yaml")
    }
    assert stale == {("train", "lr0.1"), ("evaluate", "lr0.1")}


def test_gc_of_a_cache_at_a_url_keeps_an_object_a_run_writes_meanwhile(project):
    import fsspec

    from curifactory_cli.store.reads_compact import compact
    from curifactory_cli.store.remote import FsspecStore

    project.write("experiments/sweep.py", SWEEP)
    url = f"memory://shared-gc-race-{id(project)}"
    for lrs in ([0.1, 0.2], [0.3]):
        project.write("params/p.yaml", sweep_params(lrs))
        assert project.run("sweep", "params/p.yaml", cache_dir=url).ok
    fs = fsspec.filesystem("memory")
    folder = url.removeprefix("memory://") + "/.reads/sweep"
    store = FsspecStore(url)
    listed_then = store.index_objects

    def listed_and_then_a_run_writes(experiment: str) -> dict:
        found = listed_then(experiment)
        fs.pipe_file(f"{folder}/late-run.jsonl", b'{"stage":"x"}\n')  # after the listing
        return found

    store.index_objects = listed_and_then_a_run_writes  # type: ignore[method-assign]
    (done,) = compact(store, dry=False)
    assert done.files == 2
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))
    assert len(names) == 2 and "late-run.jsonl" in names


def test_verify_of_a_set_checks_the_entries_it_shares_too(project, cli):
    swept(project)
    checked = json.loads(ok(cli, "cache", "verify", "-p", "lr0.2", "--json").stdout)
    assert checked["ok"] and checked["checked"]["entries"] == 4  # train, evaluate, load, clean
    # Damage the shared load entry (it lives in lr0.1's folder): lr0.2's check finds it.
    (load,) = listed(cli, "-s", "load")
    data = project.cache / load["path"] / "data.json"
    data.write_text(data.read_text() + " ")
    damaged = cli("cache", "verify", "-p", "lr0.2", "--json")
    assert damaged.exit_code == 1, damaged.output
    problems = json.loads(damaged.stdout)["problems"]
    assert [(p["kind"], p["id"]) for p in problems] == [("corrupt", load["id"])]
