"""Keys are spliced from separately encoded fields: they must equal the canonical JSON of the
whole key, or every existing cache entry would be missed."""

from __future__ import annotations

import pytest

from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.hashing import canonical_json, digest


class _Base(KeyMaker):
    def __init__(self, base):  # no fingerprinter needed: the base is given
        self._bases, self._encoded, self._given = {}, {}, base

    def base(self, node):
        return self._given


class _Node:
    index = 7


BASES = [
    {"format": 3, "experiment": "e", "stage": "s", "params": "p" * 32, "code": "c" * 64,
     "outputs": ["out"], "cachers": [{"type": "m.JsonCacher"}]},
    {"format": 3, "experiment": "é/x", "stage": "fit", "params": "p", "code": "c",
     "outputs": ["b", "a"], "cachers": [{"type": "m.P", "config": "h"}, {"type": "m.Q"}],
     "kwargs": "k" * 64, "files": {"data/raw/z.csv": "1", "data/raw/a.csv": "2"}},
]  # fmt: skip
INPUTS = [{}, {"x": "v1", "a": "v2"}, {"agg": [["h1", "v"], ["h0", "w"]]}, {"y": 'value:ü"\\'}]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("lineage", [False, True])
def test_spliced_key_is_the_digest_of_the_canonical_key(base, inputs, lineage):
    whole = {**base, "inputs": inputs, **({"lineage": True} if lineage else {})}
    assert _Base(base)._key(_Node(), inputs, lineage) == digest(canonical_json(whole))
