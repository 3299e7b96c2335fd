"""Metadata planted in a shared cache cannot hang, crash or exhaust curi: a FIFO, a link, a
bomb nested deeper than any metadata, or a giant file named meta.json is a damaged entry."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from curifactory_cli.store.entry import (
    MAX_META_BYTES,
    MAX_META_DEPTH,
    SIGNING_ENV,
    check_meta,
    entry_signature,
    lineage_match,
    meta_problem,
    parse_meta,
    read_meta_file,
    read_meta_file_stat,
    safe_rel,
    sign,
    signature_problem,
)

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher])
def make(record):
    return {"n": record.params.n}

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def _deep(levels: int) -> str:
    return '{"key": "k", "note": ' + "[" * levels + "]" * levels + "}"


def _fifo(path):
    os.mkfifo(path)


def _link(path):
    target = path.parent.parent / "elsewhere.json"
    target.write_text(path.read_text())
    path.unlink()
    os.symlink(target, path)


def _bomb(path):
    path.write_text(_deep(200_000))


def _giant(path):
    with open(path, "r+b") as out:
        out.truncate(MAX_META_BYTES + 1)  # sparse: costs nothing on disk


@pytest.mark.parametrize("plant", [_fifo, _link, _bomb, _giant], ids=lambda f: f.__name__[1:])
def test_a_planted_meta_json_is_a_damaged_entry_for_every_command(project, cli, plant):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    assert cli("run", "e", "p").exit_code == 0
    (entry,) = project.entries()
    meta = entry / "meta.json"
    if plant is not _giant:
        meta.unlink() if plant is _fifo else None
    plant(meta)
    for command in (("plan", "e", "p"), ("cache", "ls"), ("cache", "verify")):
        result = cli(*command)
        assert "Traceback" not in result.output, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), command
    again = cli("run", "e", "p", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["executed"] == 1  # recomputed, not loaded
    cleared = cli("cache", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output


def test_metadata_bounds():
    assert parse_meta(_deep(MAX_META_DEPTH - 2)) is not None
    assert parse_meta(_deep(MAX_META_DEPTH + 1)) is None
    siblings = '"pad": [' + ",".join(["[]"] * 10) + "], "
    deepest = _deep(MAX_META_DEPTH - 1).replace('"note"', siblings + '"note"')
    assert parse_meta(deepest) is not None  # nested exactly as deep as allowed
    assert check_meta(b" " * (MAX_META_BYTES + 1)) == (None, "it is larger than metadata ever is")
    padded = json.dumps({**GOOD_META, "padding": ""}).encode()
    exact = padded.replace(
        b'"padding": ""', b'"padding": "' + b"x" * (MAX_META_BYTES - len(padded)) + b'"'
    )
    assert len(exact) == MAX_META_BYTES and parse_meta(exact) is not None
    assert parse_meta(_deep(500_000)) is None  # no RecursionError
    assert parse_meta(b"[" + b" " * MAX_META_BYTES + b"]") is None


GOOD_FILE = {"path": "out.json", "size": 3, "sha256": "ab" * 32}
GOOD_META = {
    "format": 1,
    "key": "k" * 64,
    "stage": "make",
    "outputs": {"x": {"cacher": "JsonCacher", "lazy": False, "version": "v", "files": []}},
    "extra_files": [],
}


def _meta_with(**changes) -> bytes:
    meta = json.loads(json.dumps(GOOD_META))
    output = meta["outputs"]["x"]
    for where, value in changes.items():
        if where == "file":
            output["files"] = [value]
        elif where == "extra_file":
            meta["extra_files"] = [value]
        elif where.startswith("output_"):
            output[where[len("output_") :]] = value
        else:
            meta[where] = value
    return json.dumps(meta).encode()


@pytest.mark.parametrize(
    "rel",
    [
        "../x",
        "/etc/passwd",
        "a/../b",
        "",
        ".",
        "..",
        "a\\b",
        "x\x00y",
        "a//b",
        "a/",
        "./a",
        None,
        3,
    ],
)
def test_a_listed_file_that_could_leave_its_entry_is_refused(rel):
    assert safe_rel(rel) is None
    meta, problem = check_meta(_meta_with(file={**GOOD_FILE, "path": rel}))
    assert meta is None and problem == "output 'x' lists a file it cannot have"
    meta, problem = check_meta(_meta_with(extra_file={**GOOD_FILE, "path": rel}))
    assert meta is None and problem == "it lists an extra file it cannot have"


@pytest.mark.parametrize("rel", ["out.json", "_x-1.parquet", ".hidden", "sub/part-0.csv", "a..b"])
def test_a_listed_file_inside_its_entry_is_accepted(rel):
    assert safe_rel(rel) == rel
    meta, problem = check_meta(_meta_with(file={**GOOD_FILE, "path": rel}))
    assert problem is None and meta is not None
    assert meta_problem(meta, "k" * 64, ["x"], "m") is None


def test_an_empty_listed_file_is_accepted_and_a_negative_size_is_not():
    empty = {**GOOD_FILE, "size": 0}
    assert check_meta(_meta_with(file=empty))[1] is None
    assert check_meta(_meta_with(file={**GOOD_FILE, "size": -1}))[1] == (
        "output 'x' lists a file it cannot have"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"file": {**GOOD_FILE, "size": True}}, "output 'x' lists a file it cannot have"),
        ({"file": {**GOOD_FILE, "size": -1}}, "output 'x' lists a file it cannot have"),
        ({"file": {**GOOD_FILE, "size": 1.5}}, "output 'x' lists a file it cannot have"),
        ({"file": {**GOOD_FILE, "sha256": None}}, "output 'x' lists a file it cannot have"),
        ({"file": ["out.json", 3]}, "output 'x' lists a file it cannot have"),
        ({"output_lazy": 1}, "field 'lazy' of output 'x' is not a bool"),
        ({"output_version": 5}, "field 'version' of output 'x' is not a str"),
        ({"output_files": {}}, "field 'files' of output 'x' is not a list"),
        ({"outputs": {"x": []}}, "output 'x' is not a mapping"),
        ({"format": True}, "field 'format' is not a int"),
        ({"key": 7}, "field 'key' is not a str"),
    ],
)
def test_metadata_of_the_wrong_shape_is_damaged(change, problem):
    assert check_meta(_meta_with(**change)) == (None, problem)


def test_metadata_that_is_not_utf8_json_is_damaged():
    assert check_meta(b"\xff\xfe{}") == (None, "it is not JSON")
    assert check_meta(json.dumps(GOOD_META).encode("utf-16")) == (None, "it is not JSON")
    assert check_meta(json.dumps(GOOD_META))[0] == GOOD_META  # text is read as such


def test_escape_sequences_are_never_printed_from_data(project, cli):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/evil.yaml", '- name: "a\\e[2J\\e[31mred"\n  n: 1\n')
    result = cli("run", "e", "evil")
    assert result.exit_code == 2 and "\x1b" not in result.output
    assert "contains control characters" in result.output
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    assert cli("run", "e", "p").exit_code == 0
    (entry,) = project.entries()
    meta = json.loads((entry / "meta.json").read_text())
    meta["record"] = "a\x1b]0;owned\x07"
    (entry / "meta.json").write_text(json.dumps(meta))
    for command in (("cache", "ls"), ("cache", "inspect", "e"), ("run", "e", "p")):
        shown = cli(*command).output
        assert "\x1b" not in shown and "\x07" not in shown, command


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside", "..e", "e/../../x", "e.py.."])
def test_odd_experiment_names_are_a_clear_error(project, cli, name):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    result = cli("run", name, "p")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output


def test_control_characters_in_any_printed_field_are_shown_escaped(project, cli):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    assert cli("run", "e", "p").exit_code == 0
    (entry,) = project.entries()
    meta = json.loads((entry / "meta.json").read_text())
    meta["inputs"] = {"x\x1b[2J": {"stage": "s\x1b]0;t\x07", "output": "o"}}
    meta["params"] = {"name": "a", "n": "\x1b[31m"}
    (entry / "meta.json").write_text(json.dumps(meta))
    listed = json.loads(cli("cache", "ls", "--json").stdout)["entries"]
    shown = cli("cache", "inspect", listed[0]["id"]).output
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b" in shown  # escaped, still readable


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x7f", "\x85", "\x9b", "\x9f"])
@pytest.mark.parametrize("encoded", [False, True], ids=["escaped", "utf8"])
def test_c0_and_c1_control_characters_in_a_printed_field_are_damage(char, encoded):
    """U+009B is a one-character CSI: a terminal acts on it like ESC [. Metadata written by
    json escapes it (\\u009b); a planted file may hold its raw UTF-8 bytes (C2 9B)."""
    text = json.dumps({**GOOD_META, "stage": f"make{char}[2J"}, ensure_ascii=not encoded)
    meta, problem = check_meta(text.encode())
    assert meta is None and problem == "field 'stage' holds control characters"
    assert parse_meta(json.dumps({**GOOD_META, "stage": "make\u00a0"}).encode()) is not None


@pytest.mark.parametrize("size", [(64 << 10) - 1, 64 << 10, (64 << 10) + 1, 3 << 20])
def test_metadata_of_any_size_within_the_bound_is_read_whole(tmp_path, size):
    meta = {**GOOD_META, "padding": "x" * size}
    data = json.dumps(meta).encode()
    path = tmp_path / "meta.json"
    path.write_bytes(data)
    assert read_meta_file(path) == data
    assert read_meta_file_stat(path)[0] == data
    assert parse_meta(read_meta_file(path)) == meta


def test_a_key_that_shares_only_its_first_16_digits_is_another_key():
    """The folder name carries 16 hex digits of the key; the metadata must carry all 64."""
    key = "0123456789abcdef" + "a" * 48
    twin = "0123456789abcdef" + "b" * 48
    meta = json.loads(_meta_with(key=key))
    assert meta_problem(meta, key, ["x"], "here") is None
    assert meta_problem(meta, twin, ["x"], "here") == "metadata here belongs to another key"


def test_lineage_match_takes_only_metadata_in_its_own_entrys_folder():
    key = "0123456789abcdef" + "a" * 48
    meta = {**json.loads(_meta_with(key=key)), "lineage_key": "L" * 64}
    assert lineage_match("exp/p/make-0123456789abcdef", meta, "L" * 64) == key
    assert lineage_match("exp/p/make-fedcba9876543210", meta, "L" * 64) is None
    assert lineage_match("exp/p/make-0123456789abcdef", meta, "M" * 64) is None


@pytest.mark.parametrize("missing", ["version", "files"])
def test_an_output_without_its_version_or_its_files_is_incomplete(missing):
    meta = json.loads(_meta_with())
    del meta["outputs"]["x"][missing]
    assert meta_problem(meta, meta["key"], ["x"], "here") == "metadata here is incomplete"


SIGNED = {
    "format": 1,
    "key": "k" * 64,
    "lineage_key": "L" * 64,
    "stage": "make",
    "outputs": {"x": {"cacher": "JsonCacher", "lazy": False, "version": "v", "files": []}},
    "extra_files": [],
}


def test_a_signature_is_the_hmac_of_the_metadata_as_canonical_json(monkeypatch):
    """HMAC-SHA256 of the metadata without `signature` and `objects`, as JSON with sorted keys
    and no spaces: what a cache signed by another version (or checked by another tool) gives,
    whatever order or spacing its meta.json was written with."""
    secret = "team secret"
    payload = json.dumps(SIGNED, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    # Fixed: a new version must verify the entries an older one signed.
    assert expected == "39385c192c66017acdcc1469e0ca27787a2aecd3ae6ac99a325f2a04d3f987fc"
    placed = {"objects": "0" * 32, **dict(reversed(list(SIGNED.items()))), "signature": expected}
    assert entry_signature(placed, secret.encode()) == expected
    monkeypatch.setenv(SIGNING_ENV, secret)
    assert sign(SIGNED)["signature"] == expected
    pretty = json.dumps(placed, indent=2, sort_keys=False).encode()
    where = "exp/p/make-kkkkkkkkkkkkkkkk/meta.json"
    assert meta_problem(parse_meta(pretty), "k" * 64, ["x"], where) is None
    odd = parse_meta(b'{"key": "k", "params": {"a": [1, null, 2.5, "\\u00e9", {"": []}]}}')
    assert signature_problem(odd) == f"metadata is not signed with this {SIGNING_ENV}"
    forged = {**placed, "lineage_key": "M" * 64}
    assert meta_problem(forged, "k" * 64, ["x"], where) == (
        f"entry exp/p/make-kkkkkkkkkkkkkkkk is not signed with this {SIGNING_ENV}"
    )


def _fstat_says(monkeypatch, size: int) -> None:
    """The file grows between the size check and the read (a planter still writing it)."""
    real = os.fstat

    def fstat(fd):
        fields = list(real(fd))
        fields[6] = size  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat)


@pytest.mark.parametrize("size", [500 << 10, 3 << 20])  # read on in one chunk, or several
def test_metadata_growing_while_read_is_read_whole(tmp_path, monkeypatch, size):
    data = json.dumps({**GOOD_META, "padding": "x" * size}).encode()
    path = tmp_path / "meta.json"
    path.write_bytes(data)
    _fstat_says(monkeypatch, 100 << 10)
    assert read_meta_file(path) == data
    assert read_meta_file_stat(path)[0] == data


@pytest.mark.parametrize("said", [100 << 10, (1 << 20) - 1])  # the last read: 1 byte, or more
def test_metadata_growing_past_the_bound_while_read_is_refused(tmp_path, monkeypatch, said):
    path = tmp_path / "meta.json"
    with open(path, "wb") as out:
        out.truncate(MAX_META_BYTES + 10)  # sparse
    _fstat_says(monkeypatch, said)
    with pytest.raises(ValueError, match=f"grew past {MAX_META_BYTES} bytes while read"):
        read_meta_file(path)


def test_metadata_of_exactly_the_bound_is_read_and_a_byte_more_is_refused(tmp_path):
    path = tmp_path / "meta.json"
    with open(path, "wb") as out:
        out.truncate(MAX_META_BYTES)  # sparse
    assert len(read_meta_file(path)) == MAX_META_BYTES
    with open(path, "r+b") as out:
        out.truncate(MAX_META_BYTES + 1)
    with pytest.raises(ValueError) as refused:
        read_meta_file(path)
    assert str(refused.value) == (
        f"{path} is {MAX_META_BYTES + 1} bytes, more than metadata ever is"
    )


def test_a_fifo_full_of_data_named_meta_json_is_refused_without_blocking(tmp_path):
    path = tmp_path / "meta.json"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # so the writer can open
    writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        written = 0
        with pytest.raises(BlockingIOError):
            while True:  # fill the pipe: the first read gets all it holds
                written += os.write(writer, b" " * 4096)
        assert written >= 1 << 16
        with pytest.raises(ValueError) as refused:
            read_meta_file(path)
        assert str(refused.value) == f"{path} is not a regular file"
    finally:
        os.close(writer)
        os.close(reader)


def _nested(depth: int) -> str:
    """Metadata nested `depth` deep, with more brackets than that beside it (a parameter set
    of many lists), and text that is not ASCII or brackets."""
    lists = ",".join(["[]"] * (MAX_META_DEPTH + 10))
    note = "[[]," + "[" * (depth - 2) + "]" * (depth - 2) + "]"  # closes, then goes deeper
    fields = {"key": "k", "stage": "XGBoost fit é", "lists": "L", "note": "N"}
    text = json.dumps(fields, ensure_ascii=False)
    return text.replace('"L"', f"[{lists}]").replace('"N"', note)


def _objects(depth: int) -> str:
    """Metadata nested `depth` deep in objects only."""
    return '{"key": "k", "note": ' + '{"a": ' * (depth - 1) + "1" + "}" * depth


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "text"])
def test_metadata_nested_as_deep_as_allowed_is_read_and_one_more_is_refused(as_bytes):
    def check(text: str):
        return check_meta(text.encode() if as_bytes else text)

    meta, problem = check(_nested(MAX_META_DEPTH))
    assert problem is None and meta["stage"] == "XGBoost fit é"
    assert check(_nested(MAX_META_DEPTH + 1)) == (None, "it nests deeper than metadata ever does")
    assert check(_objects(MAX_META_DEPTH))[1] is None
    assert check(_objects(MAX_META_DEPTH + 1)) == (None, "it nests deeper than metadata ever does")


@pytest.mark.parametrize("data", [b'{"stage": "fit"}', b'["key"]', b'"key"'])
def test_json_that_is_not_an_object_with_a_key_is_not_metadata(data):
    assert check_meta(data) == (None, "it is not an entry's metadata")


@pytest.mark.parametrize(
    "reads",
    [
        {"everything": "no", "items": []},
        {"everything": False, "items": "lr"},
        {"everything": False, "items": [["lr"]]},
        {"everything": False, "items": [["lr", 5]]},
        {"everything": False, "items": [[5, "d"]]},
        {"everything": False, "items": [["lr", "d", "x"]]},
        {"everything": False, "items": [["lr", "d"], "x"]},
        {"everything": False, "items": [["lr", "d"], ("a", "d")]},
        {"everything": 1, "items": []},
        {"everything": False},
    ],
)
def test_malformed_reads_make_an_entry_damaged(reads):
    """What a call read of its parameters decides which other sets its entry serves: a
    malformed list makes the entry damaged, as any malformed field does."""
    from curifactory_cli.store.entry import shape_problem

    good = [["a", "d"], ["b.c", "e"]]
    assert shape_problem({"key": "k", "reads": {"everything": False, "items": good}}) is None
    assert shape_problem({"key": "k", "reads": {"everything": True, "items": []}}) is None
    assert shape_problem({"key": "k", "reads": None}) is None  # made before reads were kept
    assert shape_problem({"key": "k", "reads": reads}) == (
        "field 'reads' is not a list of parameter paths and digests"
    )
