"""The cacher contract: Cacheable paths, the built-in cachers' round trips, and Lazy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from curifactory_cli.caching import (
    Cacheable,
    JsonCacher,
    Lazy,
    PandasCsvCacher,
    PandasJsonCacher,
    PickleCacher,
)
from curifactory_cli.errors import CacheError

pytestmark = pytest.mark.usefixtures("job_runner")


@dataclass(frozen=True)
class Point:
    x: int
    y: float


def _cycle() -> dict:
    value: dict = {"a": []}
    value["a"].append(value)
    return value


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def bound(cacher: Cacheable, tmp_path, name: str = "out") -> Cacheable:
    cacher._bind(str(tmp_path), name)
    return cacher


# --------------------------------------------------------------------------------------------
# JsonCacher


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", None, True], "b": {"c": {"d": []}}, "e": "ünïcode"},
        [1, "two", 3.0, [4, [5]], {"six": 6}],
        {},
        "plain",
        None,
    ],
)
def test_json_round_trip(tmp_path, value):
    cacher = bound(JsonCacher(), tmp_path)
    assert cacher.path == str(tmp_path / "out.json")
    cacher.save(value)
    assert os.path.isfile(cacher.path)
    assert cacher.load() == value
    with open(cacher.path, encoding="utf-8") as infile:
        assert json.load(infile) == value  # plain JSON on disk


def test_json_tuple_written_as_list(tmp_path):
    cacher = bound(JsonCacher(), tmp_path)
    cacher.save({"t": (1, 2)})
    assert cacher.load() == {"t": [1, 2]}


def test_json_path_assigned_directly(tmp_path):
    cacher = JsonCacher()
    cacher.path = str(tmp_path / "custom.json")
    cacher.save([1, 2])
    other = JsonCacher()
    other.path = cacher.path
    assert other.load() == [1, 2]


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1, 2}, r"\$ is a set"),
        (b"raw", r"\$ is a bytes"),
        ({"a": {1: "x"}}, r"\$\.a has a key 1 of type int"),
        ({"a": [1, np.int64(2)]}, r"\$\.a\[1\] is a int64"),
        ({"a": [{"b": object()}]}, r"\$\.a\[0\]\.b is a object"),
        ({"a": [[7, 8], [9, {"c": {1, 2}}]]}, r"\$\.a\[1\]\[1\]\.c is a set"),
        (_cycle(), r"\$(\.a\[0\]){50}.* is nested too deeply"),  # refused, not a crash
        (_nested(250), r"\$(\[0\]){201} is nested too deeply"),
    ],
)
def test_json_refuses_non_json_values_and_writes_nothing(tmp_path, value, where):
    cacher = bound(JsonCacher(), tmp_path)
    with pytest.raises(CacheError, match=rf"^JsonCacher cannot save this value: {where}") as info:
        cacher.save(value)
    assert "PickleCacher" in info.value.hint
    assert not os.path.exists(cacher.path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# PickleCacher


def test_pickle_round_trip_arbitrary_objects(tmp_path):
    value = {
        "tuple": (1, "a", (2.5,)),
        "set": {1, 2, 3},
        "frozen": frozenset({"x"}),
        "point": Point(1, 2.0),
        "bytes": b"\x00\x01",
        7: None,
    }
    cacher = bound(PickleCacher(), tmp_path)
    assert cacher.path == str(tmp_path / "out.pkl")
    cacher.save(value)
    loaded = cacher.load()
    assert loaded == value
    assert isinstance(loaded["tuple"], tuple) and isinstance(loaded["set"], set)
    assert isinstance(loaded["point"], Point)


# --------------------------------------------------------------------------------------------
# pandas cachers


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"a": [1, 2, 3], "b": [0.5, 0.1, 2.25], "c": ["x", "y", "z"]},
        index=pd.Index(["r1", "r2", "r3"]),
    )


def test_pandas_csv_round_trip_keeps_index(tmp_path):
    df = frame()
    cacher = bound(PandasCsvCacher(), tmp_path)
    assert cacher.path == str(tmp_path / "out.csv")
    cacher.save(df)
    loaded = cacher.load()
    pd.testing.assert_frame_equal(loaded, df)
    assert list(loaded.index) == ["r1", "r2", "r3"]


def test_pandas_csv_round_trip_default_index(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [1.5, -2.0]})
    cacher = bound(PandasCsvCacher(), tmp_path)
    cacher.save(df)
    pd.testing.assert_frame_equal(cacher.load(), df)


def test_pandas_json_is_array_of_records(tmp_path):
    df = frame()
    cacher = bound(PandasJsonCacher(), tmp_path)
    assert cacher.path == str(tmp_path / "out.json")
    cacher.save(df)
    with open(cacher.path, encoding="utf-8") as infile:
        content = json.load(infile)
    assert content == [
        {"a": 1, "b": 0.5, "c": "x"},
        {"a": 2, "b": 0.1, "c": "y"},
        {"a": 3, "b": 2.25, "c": "z"},
    ]
    loaded = cacher.load()
    assert list(loaded.columns) == ["a", "b", "c"]
    assert loaded.to_dict("records") == df.to_dict("records")
    pd.testing.assert_frame_equal(loaded, df.reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# Custom Cacheable subclasses and paths


class NoExtCacher(Cacheable):
    def __init__(self, **kwargs):
        super().__init__("", **kwargs)

    def save(self, obj):
        with open(self.path, "w", encoding="utf-8") as outfile:
            outfile.write(str(obj))

    def load(self):
        with open(self.path, encoding="utf-8") as infile:
            return infile.read()


class PtCacher(Cacheable):
    def __init__(self, **kwargs):
        super().__init__(".pt", **kwargs)

    def save(self, obj):
        with open(self.get_path(), "w", encoding="utf-8") as outfile:
            outfile.write(obj["main"])
        with open(self.get_path("_model"), "w", encoding="utf-8") as outfile:
            outfile.write(obj["model"])

    def load(self):
        with (
            open(self.get_path(), encoding="utf-8") as a,
            open(self.get_path("_model"), encoding="utf-8") as b,
        ):
            return {"main": a.read(), "model": b.read()}


def test_cacheable_without_extension(tmp_path):
    cacher = bound(NoExtCacher(), tmp_path)
    assert cacher.extension == ""
    assert cacher.path == str(tmp_path / "out")
    assert cacher.get_path() == cacher.path
    assert cacher.get_path("_model") == str(tmp_path / "out_model")
    cacher.save("hello")
    assert cacher.load() == "hello"
    assert cacher.check()


def test_cacheable_without_extension_get_dir_with_suffix(tmp_path):
    cacher = bound(NoExtCacher(), tmp_path)
    path = cacher.get_dir("_files")
    assert path == str(tmp_path / "out_files")
    assert os.path.isdir(path)


def test_cacheable_without_extension_get_dir(tmp_path):
    cacher = bound(NoExtCacher(), tmp_path)
    path = cacher.get_dir()
    assert os.path.isdir(path)
    assert path.startswith(str(tmp_path))


def test_cacheable_with_extension_paths(tmp_path):
    cacher = bound(PtCacher(), tmp_path, "model")
    assert cacher.name == "model"
    assert cacher.path == str(tmp_path / "model.pt")
    assert cacher.get_path() == cacher.path
    assert cacher.get_path("_model") == str(tmp_path / "model_model")
    assert cacher.get_path(".meta.json") == str(tmp_path / "model.meta.json")
    cacher.save({"main": "weights", "model": "arch"})
    assert cacher.load() == {"main": "weights", "model": "arch"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_model"]


def test_cacheable_with_extension_get_dir(tmp_path):
    cacher = bound(PtCacher(), tmp_path, "model")
    path = cacher.get_dir()
    assert path == str(tmp_path / "model")
    assert os.path.isdir(path)
    assert not os.path.exists(cacher.path)  # the artifact path itself is left alone
    sub = cacher.get_dir("_parts")
    assert sub == str(tmp_path / "model_parts") and os.path.isdir(sub)
    assert cacher.get_dir() == path  # idempotent


def test_cacheable_path_assigned_directly(tmp_path):
    cacher = PtCacher()
    cacher.path = str(tmp_path / "x.pt")
    assert cacher.get_path() == str(tmp_path / "x.pt")
    assert cacher.get_path("_model") == str(tmp_path / "x_model")


def test_check_reports_existence(tmp_path):
    cacher = NoExtCacher()
    assert cacher.check() is False  # no path yet
    bound(cacher, tmp_path)
    assert cacher.check() is False
    cacher.save("x")
    assert cacher.check() is True


def test_extra_metadata_is_a_per_instance_dict():
    a, b = NoExtCacher(), PtCacher()
    assert isinstance(a.extra_metadata, dict) and a.extra_metadata == {}
    a.extra_metadata["rows"] = 3
    assert b.extra_metadata == {}
    assert JsonCacher().extra_metadata == {}


def test_compat_keyword_arguments_accepted():
    cacher = JsonCacher(
        name="thing", subdir="s", prefix="p", path_override=None, record=None, track=False
    )
    assert cacher.name == "thing" and cacher.extension == ".json" and cacher.track is False


def test_base_cacheable_requires_save_and_load(tmp_path):
    cacher = bound(Cacheable(".bin"), tmp_path)
    with pytest.raises(NotImplementedError):
        cacher.save(1)
    with pytest.raises(NotImplementedError):
        cacher.load()


# --------------------------------------------------------------------------------------------
# Lazy


def test_lazy_str_and_resolve_flag():
    lazy = Lazy("x")
    assert str(lazy) == "x"
    assert lazy.name == "x"
    assert lazy.resolve is True
    assert Lazy("y", resolve=False).resolve is False
    assert lazy.cacher is None


def test_lazy_load_without_cacher_raises():
    with pytest.raises(CacheError, match=r"Lazy output 'x' has no cacher"):
        Lazy("x").load()


def test_lazy_loads_through_its_cacher(tmp_path):
    cacher = bound(JsonCacher(), tmp_path, "x")
    cacher.save({"v": 1})
    template = Lazy("x", resolve=False)
    lazy = template._copy_for(cacher)
    assert lazy is not template and template.cacher is None
    assert lazy.resolve is False and str(lazy) == "x"
    assert lazy.load() == {"v": 1}
    assert repr(lazy) == f"Lazy('x' at {cacher.path!r})"
