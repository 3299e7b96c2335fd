"""Curifactory 0.20's cachers and cacher options: PandasCacher and its formats,
FileReferenceCacher, PathRef, RawJupyterNotebookCacher; path_override, subdir, prefix,
metadata; standalone cachers; and paths a stage returns staying valid once published."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from curifactory_cli.caching import (
    Cacheable,
    FileReferenceCacher,
    JsonCacher,
    PandasCacher,
    PandasCsvCacher,
    PandasJsonCacher,
    PandasParquetCacher,
    PathRef,
    PickleCacher,
    RawJupyterNotebookCacher,
)
from curifactory_cli.errors import CacheError, GraphError
from curifactory_cli.params import ExperimentParameters
from curifactory_cli.record import Record, TracingManager

ONE_SET = "- name: a\n  n: 3\n"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"a": [1, 2, 3], "b": [0.5, 0.1, 2.25], "c": ["x", "y", "z"]},
        index=pd.Index(["r1", "r2", "r3"]),
    )


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def entry_of(project, stage: str) -> Path:
    (found,) = [e for e in project.entries() if e.name.startswith(stage + "-")]
    return found


def meta_of(entry: Path) -> dict:
    return json.loads((entry / "meta.json").read_text())


def run_ok(project, experiment: str, **options):
    result = project.run(experiment, "params/p.yaml", **options)
    assert result.ok, result.error
    return result


# ============================================================================================
# Constructor forms


class DotX(Cacheable):
    """Curifactory >= 0.10's recommended subclass form."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, extension=".x", **kwargs)

    def save(self, obj):
        with open(self.get_path(), "w", encoding="utf-8") as outfile:
            outfile.write(obj)
        return self.get_path()

    def load(self):
        with open(self.get_path(), encoding="utf-8") as infile:
            return infile.read()


def test_first_positional_argument_is_path_override_as_in_curifactory(tmp_path):
    assert JsonCacher("out.json").path_override == "out.json"
    assert PickleCacher(str(tmp_path / "o.pkl")).get_path() == str(tmp_path / "o.pkl")
    cacher = DotX("model.x", "thing")  # path_override, name
    assert (cacher.path_override, cacher.name, cacher.extension) == ("model.x", "thing", ".x")
    pandas = PandasCacher("t.csv", "csv")  # path_override, format
    assert (pandas.path_override, pandas.format, pandas.extension) == ("t.csv", "csv", ".csv")


def test_documented_extension_first_form_still_works():
    class Docs(Cacheable):
        def __init__(self):
            super().__init__("")  # Curifactory's cache documentation

    class Pt(Cacheable):
        def __init__(self, **kwargs):
            super().__init__(".pt", **kwargs)

    assert Docs().extension == "" and Docs().path_override is None
    assert Pt().extension == ".pt" and Pt(path_override="m.pt").path_override == "m.pt"
    assert Cacheable(".tar.gz", "a.tar.gz").path_override == "a.tar.gz"


def test_constructor_errors_are_pythons_with_the_class_name():
    with pytest.raises(TypeError, match=r"got multiple values for keyword argument 'extension'"):
        JsonCacher(extension=".txt")  # as in Curifactory: the subclass sets it
    with pytest.raises(TypeError, match=r"^Cacheable\(\): too many positional arguments"):
        Cacheable("a", "b", "c", "d", ".e", None, True, "extra")
    with pytest.raises(TypeError, match=r"^PickleCacher\(\): got an unexpected keyword"):
        PickleCacher(colour="red")
    assert list(inspect.signature(Cacheable).parameters) == [
        "path_override",
        "name",
        "subdir",
        "prefix",
        "extension",
        "record",
        "track",
    ]


# ============================================================================================
# Standalone cachers


def test_standalone_json_cacher_saves_and_loads_at_its_path(project):
    returned = JsonCacher("out.json").save({"a": [1, 2]})
    assert returned == "out.json"
    assert json.loads((project.root / "out.json").read_text()) == {"a": [1, 2]}
    assert JsonCacher("out.json").load() == {"a": [1, 2]}
    assert JsonCacher(Path("out.json")).load() == {"a": [1, 2]}
    assert sorted(p.name for p in project.root.iterdir()) == ["out.json"]  # no temp file left


def test_standalone_write_is_atomic(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("half-way")

    path = tmp_path / "keep.pkl"
    PickleCacher(path).save({"old": 1})
    with pytest.raises(RuntimeError, match="half-way"):
        PickleCacher(path).save({"new": Unpicklable()})
    assert PickleCacher(path).load() == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pkl"]


def test_standalone_creates_the_folder(tmp_path):
    target = tmp_path / "deep" / "er" / "x.pkl"
    PickleCacher(str(target)).save([1])
    assert target.is_file()


def test_standalone_without_a_path_is_a_clear_error():
    with pytest.raises(CacheError, match=r"^JsonCacher has no path to save to or load from") as e:
        JsonCacher().save([1])
    assert e.value.hint.startswith("pass one (JsonCacher('out.json'))")
    with pytest.raises(CacheError, match="no path"):
        PickleCacher().load()
    assert JsonCacher().path == "" and JsonCacher().check() is False


def test_standalone_paths_suffixes_and_dirs(tmp_path):
    cacher = JsonCacher(str(tmp_path / "out.json"))
    assert cacher.get_path("_metadata.json") == str(tmp_path / "out_metadata.json")
    assert cacher.get_dir("_files") == str(tmp_path / "out_files")
    assert (tmp_path / "out_files").is_dir()
    assert cacher.cache_paths == [str(tmp_path / "out_metadata.json")]
    bare = JsonCacher(str(tmp_path / "plain"))  # no extension is added to an override
    assert bare.get_path() == str(tmp_path / "plain")
    assert bare.get_path("_x.json") == str(tmp_path / "plain_x.json")
    assert bare.check() is False
    bare.save([1])
    assert bare.check() is True and (tmp_path / "plain").is_file()


def test_metadata_of_a_standalone_cacher_round_trips(tmp_path):
    cacher = JsonCacher(str(tmp_path / "v.json"))
    cacher.extra_metadata["rows"] = 3
    cacher.save([1, 2, 3])
    cacher.save_metadata()
    written = json.loads((tmp_path / "v_metadata.json").read_text())
    assert written == {"extra": {"rows": 3}}
    other = JsonCacher(str(tmp_path / "v.json"))
    assert other.metadata is None and other.load_metadata() == {"extra": {"rows": 3}}
    assert other.extra_metadata == {"rows": 3}
    assert JsonCacher(str(tmp_path / "none.json")).load_metadata() is None


@dataclass
class Params(ExperimentParameters):
    x: int = 7


def a_record(tmp_path) -> Record:
    manager = TracingManager("exp", cache_path=str(tmp_path / "cache") + "/")
    return Record(manager, Params(name="seven"))


def test_path_override_templates_with_a_record(tmp_path):
    record = a_record(tmp_path)
    digest = record.get_hash()
    cacher = JsonCacher(
        "{cache}/{experiment}_{hash}_{params.x}_{name}.json", name="thing", record=record
    )
    assert cacher.get_path() == f"{tmp_path}/cache/exp_{digest}_7_thing.json"
    named = PickleCacher("{cache}/{artifact_filename}", name="model", record=record)
    named.stage = "train"
    assert named.get_path() == f"{tmp_path}/cache/exp_{digest}_train_model.pkl"
    named.save({"w": 1})
    assert PickleCacher(named.get_path()).load() == {"w": 1}
    # Without a record, as in Curifactory, the path is taken as it is.
    assert JsonCacher("{hash}.json").get_path() == "{hash}.json"


def test_path_override_unknown_field_is_a_clear_error(tmp_path):
    cacher = JsonCacher("{cache}/{params.nope}.json", record=a_record(tmp_path))
    with pytest.raises(CacheError) as info:
        cacher.get_path()
    assert info.value.message == (
        "JsonCacher: cannot fill in path_override '{cache}/{params.nope}.json': "
        "AttributeError: 'Params' object has no attribute 'nope'"
    )
    assert "{params.NAME}" in info.value.hint


def test_metadata_collected_from_a_record_as_curifactory(tmp_path):
    record = a_record(tmp_path)
    cacher = JsonCacher(str(tmp_path / "r.json"), name="r", record=record)
    assert set(cacher.metadata) == {
        "artifact_generated",
        "params_hash",
        "params_name",
        "record_name",
        "stage",
        "artifact_name",
        "cacher_type",
        "record_prior_stages",
        "prior_records",
        "params",
        "extra",
        "manager_run_info",
    }
    assert cacher.metadata["params_hash"] == record.get_hash()
    assert cacher.metadata["params_name"] == "seven" and cacher.metadata["params"]["x"] == 7
    cacher.extra_metadata["note"] = "hi"
    cacher.save({"v": 1})
    cacher.save_metadata()
    again = JsonCacher(str(tmp_path / "r.json"))
    loaded = again.load_metadata()
    assert loaded["artifact_name"] == "r" and loaded["extra"] == {"note": "hi"}
    assert again.extra_metadata == {"note": "hi"}


# ============================================================================================
# PandasCacher

FORMATS = {
    # format: (extension, module it needs, frame without a custom index?)
    "csv": (".csv", None, False),
    "json": (".json", None, False),
    "parquet": (".parquet", "pyarrow", False),
    "feather": (".feather", "pyarrow", True),
    "pickle": (".pkl", None, False),
    "orc": (".orc", "pyarrow", True),
    "hdf5": (".h5", "tables", False),
    "excel": (".xlsx", "openpyxl", False),
    "xml": (".xml", "lxml", True),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_pandas_cacher_round_trips_every_format(tmp_path, fmt):
    extension, module, plain_index = FORMATS[fmt]
    if module:
        pytest.importorskip(module)
    df = frame().reset_index(drop=True) if plain_index else frame()
    cacher = PandasCacher(str(tmp_path / f"df{extension}"), format=fmt)
    assert cacher.extension == extension
    assert cacher.save(df) == str(tmp_path / f"df{extension}")
    pd.testing.assert_frame_equal(PandasCacher(str(tmp_path / f"df{extension}"), fmt).load(), df)
    # Standalone, the metadata goes beside the file, as Curifactory's save() writes it.
    assert sorted(os.listdir(tmp_path)) == sorted([f"df{extension}", "df_metadata.json"])
    extra = json.loads((tmp_path / "df_metadata.json").read_text())["extra"]
    assert extra["format"] == fmt and extra["pandas_version"] == pd.__version__
    assert extra["to_args"] == cacher.to_args and extra["read_args"] == cacher.read_args


def test_pandas_io_type_names_each_format_with_its_extension():
    # Curifactory's enum, imported from caching as its tests and some user code do
    from curifactory_cli.caching import _PandasIOType

    assert sorted(member.name for member in _PandasIOType) == sorted(FORMATS)
    for member in _PandasIOType:
        assert FORMATS[member.name][0] == f".{member.value}"
        by_member = PandasCacher(format=member)
        assert by_member.format == member.name and by_member.extension == f".{member.value}"
        assert by_member.to_args == PandasCacher(format=member.name).to_args


def test_a_stage_cacher_given_a_pandas_io_type_caches_in_that_format(project):
    project.write(
        "experiments/typed.py",
        """
        import pandas as pd
        import curifactory_cli as cf
        from curifactory_cli.caching import PandasCacher, _PandasIOType

        @cf.stage(None, ["df"], [PandasCacher(format=_PandasIOType.csv)])
        def make(record):
            return pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "- name: one\n  a: 1\n")
    first = project.run("typed", "params/p.yaml")
    assert first.error is None and first.executed() == [("make", "one")]
    (entry,) = project.entries()
    assert [p.name for p in entry.rglob("*.csv")] == ["df.csv"]
    again = project.run("typed", "params/p.yaml")
    assert again.executed() == []
    assert again.records[0].state["df"].to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_pandas_cacher_defaults_are_curifactorys():
    assert PandasCacher().format == "pickle" and PandasCacher().extension == ".pkl"
    assert PandasCacher(format="json").to_args == {"double_precision": 15}
    assert PandasCacher(format="hdf5").to_args == {"key": "df"}
    assert PandasCacher(format="xml").to_args == {"index": False}
    assert PandasCacher(format="csv").read_args == {"index_col": 0}
    assert PandasCacher(format="excel").read_args == {"index_col": 0}
    assert PandasCacher(format="parquet").to_args == {} == PandasCacher("x").read_args
    # Given arguments replace the defaults (Curifactory does not merge them).
    assert PandasCacher(format="csv", read_args={"sep": ","}).read_args == {"sep": ","}
    csv = PandasCsvCacher(to_csv_args={"sep": ";"})
    assert isinstance(csv, PandasCacher) and csv.format == "csv"
    assert csv.to_args == {"sep": ";"} and csv.read_args == {"index_col": 0}
    js = PandasJsonCacher(to_json_args={"indent": 1})
    assert js.to_args == {"indent": 1, "orient": "records"} and js.read_args == {
        "orient": "records"
    }
    assert PandasJsonCacher().to_args == {"double_precision": 15, "orient": "records"}
    parquet = PandasParquetCacher(read_parquet_args={"columns": ["a"]})
    assert parquet.format == "parquet" and parquet.read_args == {"columns": ["a"]}


def test_pandas_cacher_unknown_format():
    with pytest.raises(GraphError) as info:
        PandasCacher(format="yaml")
    assert info.value.message == "PandasCacher: unknown format 'yaml'"
    assert info.value.hint == (
        "use one of: csv, json, parquet, feather, pickle, orc, hdf5, excel, xml."
    )


def test_pandas_cacher_refuses_what_is_not_a_frame(tmp_path):
    with pytest.raises(CacheError) as info:
        PandasCacher(str(tmp_path / "x.parquet"), "parquet").save({"a": 1})
    assert info.value.message == (
        "PandasCacher(format='parquet') saves a pandas DataFrame, not a dict "
        "(it has no to_parquet())"
    )
    assert os.listdir(tmp_path) == []


MISSING = {  # format: modules hidden, package and extra named
    "parquet": (("pyarrow", "fastparquet"), "pyarrow", "parquet"),
    "feather": (("pyarrow",), "pyarrow", "feather"),
    "orc": (("pyarrow",), "pyarrow", "orc"),
    "hdf5": (("tables",), "tables", "hdf5"),
    "excel": (("openpyxl",), "openpyxl", "excel"),
    "xml": (("lxml",), "lxml", "xml"),
}


@pytest.mark.parametrize("fmt", sorted(MISSING))
def test_missing_optional_dependency_names_the_package(tmp_path, monkeypatch, fmt):
    modules, package, extra = MISSING[fmt]
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import fails, find_spec is None
    cacher = PandasCacher(str(tmp_path / "df"), format=fmt)
    expected = (
        f"PandasCacher(format='{fmt}') needs {package}: pip install 'curifactory-cli[{extra}]'"
    )
    with pytest.raises(CacheError) as saving:
        cacher.save(frame())
    assert saving.value.message == expected
    assert saving.value.hint == "or use a format that needs nothing more: csv, json or pickle."
    with pytest.raises(CacheError) as loading:
        cacher.load()
    assert loading.value.message == expected
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_xml_with_the_standard_library_parser_needs_no_lxml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lxml", None)
    args = {"index": False, "parser": "etree"}
    cacher = PandasCacher(
        str(tmp_path / "t.xml"), "xml", to_args=args, read_args={"parser": "etree"}
    )
    df = frame().reset_index(drop=True)
    cacher.save(df)
    pd.testing.assert_frame_equal(cacher.load(), df)


# ============================================================================================
# FileReferenceCacher, PathRef, RawJupyterNotebookCacher (standalone)


def test_file_reference_cacher_standalone(tmp_path):
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for f in files:
        f.write_text("x")
    ref = FileReferenceCacher(str(tmp_path / "refs.json"))
    ref.save(files)  # Path objects are stored as strings
    assert json.loads((tmp_path / "refs.json").read_text()) == [str(f) for f in files]
    assert ref.load() == [str(f) for f in files] and ref.check() is True
    single = FileReferenceCacher(str(tmp_path / "one.json"))
    single.save(str(files[0]))
    assert single.load() == str(files[0])
    files[1].unlink()
    assert ref.check() is False
    with pytest.raises(CacheError) as info:
        ref.load()
    assert info.value.message == (
        "FileReferenceCacher: 1 file(s) that output None refers to no longer exist, "
        f"e.g. {str(files[1])!r}"
    )
    with pytest.raises(CacheError, match=r"saves a file path or a list of file paths, not a int"):
        ref.save(3)


def test_path_ref_standalone_is_its_path():
    ref = PathRef("data/raw/big.csv")
    assert ref.load() == "data/raw/big.csv" and ref.extension == ""
    assert ref.save("data/raw/big.csv") == "data/raw/big.csv"
    with pytest.raises(CacheError) as info:
        ref.save("elsewhere.csv")
    assert info.value.message == (
        "stage returned unexpected path to PathRef cacher for artifact None: "
        "expected 'data/raw/big.csv', returned 'elsewhere.csv'"
    )
    assert PathRef(".data").path_override == ".data"  # a path, never an extension


def test_raw_jupyter_notebook_cacher_writes_a_notebook(tmp_path):
    cells = [['"""', "# Results", '"""'], ["import json", "x = 1"], ["print(x)"]]
    cacher = RawJupyterNotebookCacher(str(tmp_path / "explore.ipynb"))
    cacher.save(cells)
    notebook = json.loads((tmp_path / "explore.ipynb").read_text())
    assert notebook["nbformat"] == 4
    assert [c["cell_type"] for c in notebook["cells"]] == ["markdown", "code", "code"]
    assert notebook["cells"][0]["source"] == ["# Results"]
    assert notebook["cells"][1]["source"] == ["import json\n", "x = 1"]
    assert notebook["cells"][1]["outputs"] == [] and notebook["cells"][1]["execution_count"] is None
    assert RawJupyterNotebookCacher(str(tmp_path / "explore.ipynb")).load() == cells
    assert sorted(os.listdir(tmp_path)) == ["explore.ipynb", "explore_cells.json"]
    with pytest.raises(CacheError, match="saves a list of cells, each a list of strings"):
        cacher.save(["not", "lists"])


# ============================================================================================
# Bound cachers: subdir and prefix shape the file inside the entry


def test_subdir_and_prefix_shape_the_file_inside_the_entry(tmp_path):
    cacher = JsonCacher(subdir="tables/raw", prefix="shared")
    cacher._bind(str(tmp_path), "model")
    assert cacher.get_path() == str(tmp_path / "model/tables/raw/shared_model.json")
    assert cacher.get_path("_w") == str(tmp_path / "model/tables/raw/shared_model_w")
    only_prefix = PickleCacher(prefix="p")
    only_prefix._bind(str(tmp_path), "m")
    assert only_prefix.path == str(tmp_path / "m/p_m.pkl")


@pytest.mark.parametrize(
    ("options", "shown", "bad"),
    [
        ({"subdir": "../up"}, "subdir='../up'", ".."),
        ({"subdir": "/abs"}, "subdir='/abs'", ""),
        ({"prefix": "a/b"}, "prefix='a/b'", "a/b"),
    ],
)
def test_subdir_and_prefix_cannot_leave_the_entry(tmp_path, options, shown, bad):
    with pytest.raises(GraphError) as info:
        JsonCacher(**options)._bind(str(tmp_path), "out")
    assert info.value.message == (
        f"JsonCacher({shown}): {bad!r} cannot be a name inside a cache entry"
    )


# ============================================================================================
# End to end: paths a stage returns stay valid once its draft folder is published

PATHS = """
import os
from pathlib import Path

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["path", "more"], cachers=[JsonCacher, PickleCacher])
def write(record):
    path = record.get_path("x.txt")
    with open(path, "w") as outfile:
        outfile.write("hello " * record.params.n)
    folder = record.get_dir("parts", subdir="sub")
    Path(folder, "p1").write_text("one")
    side = record.stage_cachers[1].get_path("_side.txt")
    Path(side).write_text("side")
    more = {
        "folder": Path(folder),
        "files": [Path(folder, "p1"), os.path.abspath(path)],
        "pair": (side, 3),
        "other": "/not/a/staged/path",
    }
    return path, more


@cf.stage(inputs=["path", "more"], outputs=["text"], cachers=[JsonCacher])
def read(record, path, more):
    with open(path) as infile:
        text = infile.read()
    text += Path(more["files"][0]).read_text() + Path(more["files"][1]).read_text()
    return text + Path(more["pair"][0]).read_text() + str(sorted(os.listdir(more["folder"])))


def run(param_sets, manager):
    for p in param_sets:
        read(write(cf.Record(manager, p)))
"""


def check_paths(project, result) -> None:
    entry = entry_of(project, "write")
    record = result.records[0]
    path, more = record.state["path"], record.state["more"]
    assert path == str(entry / "files" / "x.txt") and os.path.isfile(path)
    assert more["folder"] == entry / "files" / "sub" / "parts" and more["folder"].is_dir()
    assert more["files"][0] == entry / "files" / "sub" / "parts" / "p1"
    assert more["files"][1] == os.path.abspath(path)
    assert more["pair"] == (str(entry / "more_side.txt"), 3)
    assert more["other"] == "/not/a/staged/path"
    expected = "hello hello hello onehello hello hello side['p1']"
    assert record.state["text"] == expected


@pytest.mark.usefixtures("job_runner")
def test_returned_draft_paths_stay_valid_cold_and_cached(project):
    project.write("experiments/paths.py", PATHS)
    project.write("params/p.yaml", ONE_SET)
    first = run_ok(project, "paths")
    assert first.executed() == [("write", "a"), ("read", "a")]
    check_paths(project, first)
    entry = entry_of(project, "write")
    stored = json.loads((entry / "path.json").read_text())  # what later runs load
    assert stored == str(entry / "files" / "x.txt")
    assert ".staging" not in (entry / "more.pkl").read_bytes().decode("latin-1")

    second = run_ok(project, "paths")
    assert second.executed() == []
    check_paths(project, second)

    # Only the reader changes: it runs again on the cached writer's paths.
    project.write("experiments/paths.py", PATHS.replace("text + Path", "text + '!' + Path"))
    third = run_ok(project, "paths")
    assert third.executed() == [("read", "a")]
    assert third.records[0].state["text"].endswith("!side['p1']")


def test_dry_run_paths_are_left_alone(project):
    project.write("experiments/paths.py", PATHS)
    project.write("params/p.yaml", ONE_SET)
    result = run_ok(project, "paths", dry=True)
    assert result.records[0].state["text"].startswith("hello hello hello one")
    assert project.entries() == []


def test_get_path_of_another_stage_is_refused(project):
    project.write(
        "experiments/other.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher

        @cf.stage(inputs=None, outputs=["p"], cachers=[JsonCacher])
        def mine(record):
            return record.get_path("model.pkl", stage_name="train")

        def run(param_sets, manager):
            for p in param_sets:
                mine(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", ONE_SET)
    result = project.run("other", "params/p.yaml")
    assert not result.ok
    assert (
        "record.get_path('model.pkl', stage_name='train') in stage 'mine': a stage only "
        "writes into its own cache entry" in result.error.message
    )
    assert project.entries() == []


# ============================================================================================
# End to end: the new cachers in stages

CACHERS = """
import os
from pathlib import Path

import pandas as pd

import curifactory_cli as cf
from curifactory_cli.caching import (
    FileReferenceCacher, JsonCacher, PandasCacher, PandasParquetCacher, PathRef,
    RawJupyterNotebookCacher,
)


@cf.stage(
    inputs=None,
    outputs=["pq", "xl", "pk"],
    cachers=[PandasParquetCacher, PandasCacher(format="excel"), PandasCacher],
)
def frames(record):
    df = pd.DataFrame({"x": list(range(record.params.n)), "s": ["u", "v", "w"][: record.params.n]})
    df["when"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(df["x"], unit="D")
    return df, df.drop(columns="when"), df.astype({"s": "category"})


@cf.stage(inputs=None, outputs=["many"], cachers=[FileReferenceCacher])
def many_files(record):
    folder = record.get_dir("my_files")
    names = [os.path.join(folder, f"f{i}.txt") for i in range(record.params.n)]
    for i, name in enumerate(names):
        Path(name).write_text(str(i))
    return names


@cf.stage(inputs=None, outputs=["big"], cachers=[PathRef])
def big_file(record):
    path = record.stage_cachers[0].get_path()
    Path(path).write_text("big " * record.params.n)
    return path


@cf.stage(inputs=None, outputs=["notebook"], cachers=[RawJupyterNotebookCacher])
def notebook(record):
    return [["import pandas as pd"], ["n = " + str(record.params.n)]]


@cf.stage(inputs=["pq", "xl", "pk", "many", "big", "notebook"], outputs=["report"],
          cachers=[JsonCacher])
def report(record, pq, xl, pk, many, big, notebook):
    return {
        "pq": [str(pq["when"].dtype), len(pq)],
        "xl": list(xl.columns),
        "pk": str(pk["s"].dtype),
        "many": [Path(f).read_text() for f in many],
        "big": Path(big).read_text(),
        "notebook": notebook,
    }


def run(param_sets, manager):
    for p in param_sets:
        r = cf.Record(manager, p)
        frames(r)
        many_files(r)
        big_file(r)
        notebook(r)
        report(r)
"""

REPORT = {
    "pq": ["datetime64[us]", 3],
    "xl": ["x", "s"],
    "pk": "category",
    "many": ["0", "1", "2"],
    "big": "big big big ",
    "notebook": [["import pandas as pd"], ["n = 3"]],
}


@pytest.mark.usefixtures("job_runner")
def test_new_cachers_in_stages_cold_and_cached(project):
    for module in ("pyarrow", "openpyxl"):
        pytest.importorskip(module)
    project.write("experiments/cachers.py", CACHERS)
    project.write("params/p.yaml", ONE_SET)
    first = run_ok(project, "cachers")
    assert len(first.executed()) == 5
    report = first.records[0].state["report"]
    expected = {**REPORT, "pq": [report["pq"][0], 3]}
    assert report == expected and report["pq"][0].startswith("datetime64")

    frames_entry = entry_of(project, "frames")
    assert listing(frames_entry) == ["meta.json", "pk.pkl", "pq.parquet", "xl.xlsx"]
    outputs = meta_of(frames_entry)["outputs"]
    assert outputs["pq"]["extra"]["format"] == "parquet"
    assert outputs["xl"]["extra"]["read_args"] == {"index_col": 0}
    assert outputs["pk"]["extra"]["pandas_version"] == pd.__version__

    many_entry = entry_of(project, "many_files")
    refs = json.loads((many_entry / "many.json").read_text())
    assert refs == [str(many_entry / "files" / "my_files" / f"f{i}.txt") for i in range(3)]
    big_entry = entry_of(project, "big_file")
    assert listing(big_entry) == ["big", "meta.json"]
    assert meta_of(big_entry)["outputs"]["big"]["files"][0]["path"] == "big"
    nb_entry = entry_of(project, "notebook")
    assert listing(nb_entry) == ["meta.json", "notebook.ipynb", "notebook_cells.json"]

    second = run_ok(project, "cachers")
    assert second.executed() == []
    state = second.records[0].state
    assert state["report"] == expected
    pd.testing.assert_frame_equal(state["pq"], first.records[0].state["pq"])
    assert state["big"] == str(big_entry / "big") and state["many"] == refs

    # The report runs again on what the other stages cached.
    project.write("experiments/cachers.py", CACHERS.replace('"big": Path', '"big2": Path'))
    third = run_ok(project, "cachers")
    assert third.executed() == [("report", "a")]
    assert third.records[0].state["report"]["big2"] == "big big big "


def test_file_reference_to_deleted_files_is_an_error(project):
    for module in ("pyarrow", "openpyxl"):
        pytest.importorskip(module)
    # A reference to a file outside the entry: the entry stays valid when the file goes.
    outside = project.root / "outside.txt"
    outside.write_text("o")
    code = CACHERS.replace("return names", f"return names + [{str(outside)!r}]")
    project.write("experiments/cachers.py", code)
    project.write("params/p.yaml", ONE_SET)
    run_ok(project, "cachers")
    outside.unlink()
    project.write("experiments/cachers.py", code.replace('"big": Path', '"big2": Path'))
    with pytest.raises(CacheError) as info:
        project.run("cachers", "params/p.yaml")
    assert info.value.message == (
        "FileReferenceCacher: 1 file(s) that output 'many' refers to no longer exist, "
        f"e.g. {str(outside)!r}"
    )
    assert info.value.hint == (
        "restore them, or recompute the stage that wrote them with --overwrite-stage STAGE."
    )


PATH_REF = """
import curifactory_cli as cf
from curifactory_cli.caching import PathRef

@cf.stage(inputs=None, outputs=["ref"], cachers=[PathRef])
def make(record):
    path = record.get_path("elsewhere")
    open(path, "w").close()
    return path

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def test_path_ref_returning_another_path_or_writing_nothing(project):
    project.write("experiments/ref.py", PATH_REF)
    project.write("params/p.yaml", ONE_SET)
    with pytest.raises(CacheError) as info:
        project.run("ref", "params/p.yaml")
    # Both paths as they would be once published (the entry that was never published).
    assert re.fullmatch(
        r"stage 'make' \(a\), output 'ref': stage returned unexpected path to PathRef cacher "
        r"for artifact 'ref': expected '(.+/make-[0-9a-f]{16})/ref', "
        r"returned '\1/files/elsewhere'",
        info.value.message,
    ), info.value.message
    assert info.value.hint == "write to record.stage_cachers[i].get_path() and return that path."
    project.write(
        "experiments/ref.py",
        PATH_REF.replace('open(path, "w").close()', "path = record.stage_cachers[0].get_path()"),
    )
    with pytest.raises(CacheError) as info:
        project.run("ref", "params/p.yaml")
    assert re.fullmatch(
        r"stage 'make' \(a\), output 'ref': PathRef for output 'ref': nothing was written at "
        r"'.+/\.staging/[^/]+/ref'",
        info.value.message,
    ), info.value.message
    assert info.value.hint == "write the file (or folder) at that path before returning it."
    assert project.entries() == []


def test_path_ref_output_name_in_record_get_path_is_the_cachers_path(project):
    # Curifactory's documented PathRef pattern: `record.get_path(obj_name="model_path")`.
    project.write(
        "experiments/ref.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import PathRef

        @cf.stage(inputs=None, outputs=["ref", "folder"], cachers=[PathRef] * 2)
        def make(record):
            path = record.get_path("ref")
            assert path == record.stage_cachers[0].get_path()
            with open(path, "w") as outfile:
                outfile.write("made")
            folder = record.get_dir("folder")
            with open(f"{folder}/inside.txt", "w") as outfile:
                outfile.write("too")
            return path, folder

        @cf.stage(inputs=["ref", "folder"], outputs=["text"])
        def read(record, ref, folder):
            with open(ref) as infile, open(f"{folder}/inside.txt") as other:
                return infile.read() + " " + other.read()

        def run(param_sets, manager):
            for p in param_sets:
                read(make(cf.Record(manager, p)))
        """,
    )
    project.write("params/p.yaml", ONE_SET)
    first = project.run("ref", "params/p.yaml")
    assert first.ok, first.error
    assert first.records[0].state["text"] == "made too"
    again = project.run("ref", "params/p.yaml")
    assert again.executed() == [("read", "a")]  # make is a cache hit; its paths still valid
    assert again.records[0].state["text"] == "made too"


def test_missing_dependency_in_a_stage_fails_it_clearly(project, monkeypatch):
    project.write(
        "experiments/pq.py",
        """
        import pandas as pd
        import curifactory_cli as cf
        from curifactory_cli.caching import PandasCacher

        @cf.stage(inputs=None, outputs=["df"], cachers=[PandasCacher(format="parquet")])
        def make(record):
            return pd.DataFrame({"x": [1]})

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", ONE_SET)
    for module in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(CacheError) as info:
        project.run("pq", "params/p.yaml")
    assert info.value.message == (
        "stage 'make' (a), output 'df': PandasCacher(format='parquet') needs pyarrow: "
        "pip install 'curifactory-cli[parquet]'"
    )
    assert project.entries() == []


# ============================================================================================
# End to end: options in stages

OPTIONS = '''
import curifactory_cli as cf
from curifactory_cli.caching import Cacheable, JsonCacher


class Meta(Cacheable):
    """Keeps part of the value in the metadata, as Curifactory's docs suggest."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, extension=".txt", **kwargs)

    def save(self, obj):
        with open(self.get_path(), "w") as outfile:
            outfile.write(obj["text"])
        self.extra_metadata["count"] = obj["count"]
        self.save_metadata()

    def load(self):
        self.load_metadata()
        with open(self.get_path()) as infile:
            return {"text": infile.read(), "count": self.extra_metadata["count"]}


@cf.stage(inputs=None, outputs=["table", "counted"],
          cachers=[JsonCacher(subdir="tables", prefix="shared", track=False), Meta])
def make(record):
    return {"n": record.params.n}, {"text": "t" * record.params.n, "count": record.params.n}


@cf.stage(inputs=["table", "counted"], outputs=["total"], cachers=None)
def total(record, table, counted):
    return table["n"] + counted["count"]


def run(param_sets, manager):
    for p in param_sets:
        total(make(cf.Record(manager, p)))
'''


@pytest.mark.usefixtures("job_runner")
def test_subdir_prefix_track_and_metadata_in_a_stage(project):
    project.write("experiments/options.py", OPTIONS)
    project.write("params/p.yaml", ONE_SET)
    first = run_ok(project, "options")
    assert first.records[0].state["total"] == 6
    entry = entry_of(project, "make")
    assert listing(entry) == ["counted.txt", "meta.json", "table/tables/shared_table.json"]
    outputs = meta_of(entry)["outputs"]
    assert [f["path"] for f in outputs["table"]["files"]] == ["table/tables/shared_table.json"]
    assert outputs["counted"]["extra"] == {"count": 3}  # no _metadata.json file in the entry

    second = run_ok(project, "options")
    assert second.executed() == [("total", "a")]  # an uncached stage always runs
    assert second.records[0].state["total"] == 6
    assert second.records[0].state["counted"] == {"text": "ttt", "count": 3}


def test_dry_cache_writes_no_entry_and_no_metadata(project, cli):
    project.write("experiments/options.py", OPTIONS)
    project.write("params/p.yaml", ONE_SET)
    result = cli("run", "options", "p", "--dry-cache", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "ok: 2 executed, 0 cached" in result.output  # the values still reach `total`
    cache = project.root / "data" / "cache"
    assert not project.entries()
    assert not [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert not list(project.root.rglob("*metadata*"))
    # nothing was cached, so the next run computes `make` again
    assert ("make", "a") in run_ok(project, "options").executed()


OVERRIDE = """
import json
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher("out/{params.name}_{stage}.json")])
def make(record):
    return {"n": record.params.n}

@cf.stage(inputs=["x"], outputs=["seen"], cachers=None)
def read_back(record, x):
    with open(f"out/{record.params.name}_make.json") as infile:  # as another tool would
        return [x["n"], json.load(infile)["n"]]

def run(param_sets, manager):
    for p in param_sets:
        read_back(make(cf.Record(manager, p)))
"""


@pytest.mark.usefixtures("job_runner")
def test_path_override_in_a_stage_keeps_a_verified_copy_of_the_entrys_file(project, cli):
    project.write("experiments/override.py", OVERRIDE)
    project.write("params/p.yaml", ONE_SET)
    first = run_ok(project, "override")
    target = project.root / "out" / "a_make.json"
    assert first.records[0].state["seen"] == [3, 3]  # written before the stage after it ran
    entry = entry_of(project, "make")
    assert listing(entry) == ["meta.json", "x.json"]  # the entry keeps the output itself
    assert target.read_bytes() == (entry / "x.json").read_bytes()
    (recorded,) = meta_of(entry)["outputs"]["x"]["exported"]
    assert recorded == {
        "path": str(target),
        "from": "x.json",
        "size": target.stat().st_size,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    assert not [p for p in target.parent.iterdir() if p != target]  # no temporary left

    # cached: the copy is left as it is when it matches the entry
    mtime = target.stat().st_mtime_ns
    assert ("make", "a") not in run_ok(project, "override").executed()
    assert target.stat().st_mtime_ns == mtime

    # changed by hand, or deleted: written again from the entry, and said so
    target.write_text('{"n": 99}')
    result = cli("run", "override", "p", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "out/a_make.json had changed: written again from its cache entry" in result.output
    assert json.loads(target.read_text()) == {"n": 3}
    target.unlink()
    result = cli("run", "override", "p", "--no-progress")
    assert "out/a_make.json was missing: written again from its cache entry" in result.output
    assert target.read_bytes() == (entry / "x.json").read_bytes()


def test_path_override_stays_in_the_folder_its_template_names(project, cli, tmp_path_factory):
    project.write("experiments/override.py", OVERRIDE)
    project.write("params/p.yaml", "- name: ../../escaped\n  n: 1\n")
    result = cli("run", "override", "p", "--no-progress")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert (
        "stage 'make' (../../escaped), output 'x': path_override 'out/{params.name}_{stage}.json'"
        in text
    )
    assert f"outside {project.root / 'out'}" in text
    assert not list(project.root.parent.rglob("escaped_make.json"))
    assert project.entries() == []
    assert not any((project.cache / ".staging").iterdir())

    # a folder the template itself names, outside the project, is the user's choice
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    project.write("experiments/outside.py", OVERRIDE.replace("out/{", f"{elsewhere}/{{"))
    project.write("params/q.yaml", ONE_SET)
    assert cli("run", "outside", "q", "--no-progress").exit_code == 0
    assert json.loads((elsewhere / "a_make.json").read_text()) == {"n": 3}


def test_two_calls_may_not_keep_different_files_at_one_path(project, cli):
    same = OVERRIDE.replace("{params.name}_{stage}", "same").replace("read_back(make(", "(make(")
    project.write("experiments/override.py", same)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    result = cli("run", "override", "p", "--no-progress")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "make [b] and make [a] both keep a different file at" in text
    assert "out/same.json" in text


def test_dry_runs_write_no_path_override_copy(project, cli):
    project.write("experiments/override.py", OVERRIDE.replace("read_back(make(", "(make("))
    project.write("params/p.yaml", ONE_SET)
    for flag in ("--dry", "--dry-cache"):
        result = cli("run", "override", "p", "--no-progress", flag)
        assert result.exit_code == 0, result.output
        assert not (project.root / "out").exists(), result.output


def test_custom_subclass_with_curifactory_init_in_a_stage(project):
    project.write(
        "experiments/custom.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import Cacheable

        class Upper(Cacheable):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, extension=".up", **kwargs)

            def save(self, obj):
                with open(self.get_path(), "w") as outfile:
                    outfile.write(obj.upper())

            def load(self):
                with open(self.get_path()) as infile:
                    return infile.read()

        @cf.stage(inputs=None, outputs=["word"], cachers=[Upper])
        def make(record):
            return "word"

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", ONE_SET)
    run_ok(project, "custom")
    assert listing(entry_of(project, "make")) == ["meta.json", "word.up"]
    assert run_ok(project, "custom").records[0].state["word"] == "WORD"


def test_cache_dump_reads_a_pandas_cacher_with_options(project, cli):
    pytest.importorskip("pyarrow")
    project.write(
        "experiments/dump.py",
        """
        import pandas as pd
        import curifactory_cli as cf
        from curifactory_cli.caching import PandasCacher

        @cf.stage(inputs=None, outputs=["df"], cachers=[PandasCacher(format="parquet")])
        def make(record):
            return pd.DataFrame({"x": [1, 2, 3]})

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", ONE_SET)
    run_ok(project, "dump")
    ls = json.loads(cli("cache", "ls", "--json").stdout)
    (ident,) = [e["id"] for e in ls["entries"]]
    dumped = cli("cache", "dump", ident, "--json")
    assert dumped.exit_code == 0, dumped.output
    data = json.loads(dumped.stdout)
    assert data["kind"] == "dataframe" and data["shape"] == [3, 1]


def test_pickled_cachers_keep_working():
    # Cachers travel to worker processes inside jobs.
    cacher = pickle.loads(pickle.dumps(PandasCacher("x.csv", "csv", subdir="s")))
    assert (cacher.format, cacher.subdir, cacher.path) == ("csv", "s", "x.csv")


def test_relocation_keeps_types_stops_at_cycles_and_respects_folder_boundaries():
    from collections import namedtuple

    from curifactory_cli.engine.outputs import _relocate

    moves = {"/c/.staging/1": "/c/exp/h/st-k"}
    pair = namedtuple("pair", "a b")
    loop: list = ["/c/.staging/1/x"]
    loop.append(loop)
    untouched = ["/c/.staging/10/x", "/c/.staging/1x", 3, None]
    value = {
        "p": pair(Path("/c/.staging/1/m"), "/c/.staging/1"),
        "u": untouched,
        "loop": loop,
        "set": {"/c/.staging/1/s"},  # not rebuilt: only lists, tuples and dicts are walked
    }
    moved = _relocate(value, moves, set())
    assert moved["p"] == pair(Path("/c/exp/h/st-k/m"), "/c/exp/h/st-k")
    assert type(moved["p"]) is pair and isinstance(moved["p"].a, Path)
    assert moved["u"] is untouched  # nothing to move: the very same object
    assert moved["loop"][0] == "/c/exp/h/st-k/x"
    assert moved["set"] == {"/c/.staging/1/s"}


def test_importing_caching_loads_no_pandas_or_pyarrow():
    import subprocess

    code = (
        "import sys, curifactory_cli.caching; "
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# A common cacher prefix= shares entries between experiments (Curifactory's use of it)
SHARED_STAGE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["data"], cachers=[JsonCacher(prefix="commondata")])
def load(record):
    return {"n": record.params.n}

@cf.stage(inputs=["data"], outputs=["mine"], cachers=[JsonCacher])
def own(record, data):
    return {"twice": data["n"] * 2}

def run(param_sets, manager):
    for params in param_sets:
        own(load(cf.Record(manager, params)))
"""


def test_a_common_prefix_shares_a_stage_between_experiments(project, cli):
    project.write("experiments/exp_a.py", SHARED_STAGE)
    project.write("experiments/exp_b.py", SHARED_STAGE)
    project.write("params/p.yaml", ONE_SET)
    first = project.run("exp_a", "params/p.yaml")
    second = project.run("exp_b", "params/p.yaml")
    assert first.ok and second.ok
    outcomes = {n.stage.name: n.outcome.value for n in second.graph.nodes}
    # The shared stage is cached for the other experiment; its own stage is not.
    assert outcomes == {"load": "cached", "own": "executed"}
    shared = [e for e in project.entries() if e.name.startswith("load-")]
    assert [e.relative_to(project.cache).parts[0] for e in shared] == ["commondata"]
    listed = json.loads(cli("cache", "ls", "--json", "-e", "commondata").stdout)
    assert [e["stage"] for e in listed["entries"]] == ["load"]


RECORD_AWARE = """
import json

import curifactory_cli as cf
from curifactory_cli.caching import Cacheable

SEEN = []


class Tagged(Cacheable):
    # As in Curifactory, a cacher in a stage knows its record: here it tags what it saves.
    def __init__(self):
        super().__init__(".json")

    def save(self, obj):
        with open(self.get_path(), "w") as out:
            json.dump({"set": self.record.params.name, "value": obj}, out)

    def load(self):
        SEEN.append(self.record.params.name)
        with open(self.get_path()) as infile:
            return json.load(infile)


@cf.stage(inputs=None, outputs=["v"], cachers=[Tagged])
def make(record):
    return record.params.n


@cf.stage(inputs=["v"], outputs=["out"])
def show(record, v):
    return v


def run(param_sets, manager):
    for params in param_sets:
        show(make(cf.Record(manager, params)))
"""


def test_a_cacher_in_a_stage_knows_its_record_on_save_and_on_load(project):
    project.write("experiments/tagged.py", RECORD_AWARE)
    project.write("params/p.yaml", ONE_SET)
    first = run_ok(project, "tagged")
    assert first.records[0].state["out"] == 3  # the value itself, passed on in memory
    [saved] = [e / "v.json" for e in project.entries() if e.name.startswith("make-")]
    assert json.loads(saved.read_text()) == {"set": "a", "value": 3}
    second = run_ok(project, "tagged")
    assert second.records[0].state["out"] == {"set": "a", "value": 3}
    assert sys.modules["experiments.tagged"].SEEN == ["a"]  # loaded through its record
