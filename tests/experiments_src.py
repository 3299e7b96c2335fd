"""Experiment sources used by test_cache_behaviour.py (written into a throwaway project)."""

from __future__ import annotations

# load -> double -> total, and load -> count (a side branch).
CHAIN = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return [1, 2, 3]


@cf.stage(inputs=["numbers"], outputs=["doubled"], cachers=[JsonCacher])
def double(record, numbers):
    return [x * 2 * record.params.k for x in numbers]


@cf.stage(inputs=["doubled"], outputs=["total"], cachers=[JsonCacher])
def total(record, doubled):
    return sum(doubled)


@cf.stage(inputs=["numbers"], outputs=["count"], cachers=[JsonCacher])
def count(record, numbers):
    return len(numbers)


def run(param_sets, manager):
    for p in param_sets:
        r = cf.Record(manager, p)
        total(double(load(r)))
        count(r)
"""

CHAIN_PARAMS = "- name: a\n  k: 1\n- name: b\n  k: 2\n"
CHAIN_ONE_PARAMS = "- name: a\n  k: 1\n"

# Typed params with a hash-excluded field, one stage per set and an aggregate over them.
TYPED = """
from dataclasses import dataclass, field

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@dataclass
class Params(cf.ExperimentParameters):
    n: int = 1
    n_workers: int = 1
    hash_representations: dict = field(
        default_factory=lambda: cf.set_hash_functions(n_workers=None)
    )


@cf.stage(inputs=None, outputs=["value"], cachers=[JsonCacher])
def compute(record):
    return record.params.n * 2


@cf.aggregate(inputs=["value"], outputs=["total"], cachers=[JsonCacher])
def combine(record, records, value):
    return sum(value.values())


def run(param_sets, manager):
    for p in param_sets:
        compute(cf.Record(manager, p))
    combine(cf.Record(manager, None))
"""

LAZY = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=[cf.Lazy("big")], cachers=[PickleCacher])
def make(record):
    return [record.params.n] * 3


@cf.stage(inputs=None, outputs=[cf.Lazy("blob")], cachers=None)
def make_blob(record):
    return {"n": record.params.n}


@cf.aggregate(inputs=["big"], outputs=["seen"], cachers=[JsonCacher])
def gather(record, records, big):
    return {r.name: v for r, v in big.items()}


def run(param_sets, manager):
    for p in param_sets:
        r = cf.Record(manager, p)
        make(r)
        make_blob(r)
    gather(cf.Record(manager, None))
"""

LAZY_HANDLE = """
import json
import os

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=[cf.Lazy("raw", resolve=False)], cachers=[JsonCacher])
def produce(record):
    return {"n": record.params.n}


@cf.stage(inputs=["raw"], outputs=["info"], cachers=[JsonCacher])
def use_path(record, raw):
    path = raw.cacher.get_path()
    with open(path, encoding="utf-8") as infile:
        content = json.load(infile)
    return {
        "type": type(raw).__name__,
        "path": path,
        "exists": os.path.isfile(path),
        "content": content,
    }


def run(param_sets, manager):
    for p in param_sets:
        use_path(produce(cf.Record(manager, p)))
"""

MEMORY = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["base"], cachers=None)
def prep(record):
    return record.params.n * 10


@cf.stage(inputs=["base"], outputs=["result"], cachers=[JsonCacher])
def use(record, base):
    return base + 1


@cf.stage(inputs=["result"], outputs=["shown"], cachers=None)
def show(record, result):
    return f"result={result}"


def run(param_sets, manager):
    for p in param_sets:
        show(use(prep(cf.Record(manager, p))))
"""

CUSTOM_CACHER = '''
import pickle

import curifactory_cli as cf
from curifactory_cli.caching import Cacheable, JsonCacher


class PickleModelCacher(Cacheable):
    """Like Curifactory's TorchModelCacher example, with pickle instead of torch."""

    def __init__(self, *args, **kwargs):
        super().__init__("", *args, **kwargs)

    def save(self, obj):
        with open(self.path + "_model", "wb") as outfile:
            pickle.dump(obj["weights"], outfile)
        with open(self.path, "wb") as outfile:
            pickle.dump({k: v for k, v in obj.items() if k != "weights"}, outfile)

    def load(self):
        with open(self.path, "rb") as infile:
            obj = pickle.load(infile)
        with open(self.path + "_model", "rb") as infile:
            obj["weights"] = pickle.load(infile)
        return obj


@cf.stage(inputs=None, outputs=["model"], cachers=[PickleModelCacher])
def train(record):
    return {"weights": [0.5, 1.5], "label": record.params.name}


@cf.stage(inputs=["model"], outputs=["score"], cachers=[JsonCacher])
def evaluate(record, model):
    return sum(model["weights"])


def run(param_sets, manager):
    for p in param_sets:
        evaluate(train(cf.Record(manager, p)))
'''

AGGREGATES = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def load(record):
    return record.params.n


@cf.stage(inputs=["n"], outputs=["score"], cachers=[JsonCacher])
def score(record, n):
    return n * 10


@cf.stage(inputs=["n"], outputs=["side"], cachers=[JsonCacher])
def side(record, n):
    return -n


@cf.aggregate(inputs=["score"], outputs=["collected"], cachers=[JsonCacher])
def collect(record, records, score):
    return {
        "keys": sorted(r.name for r in score),
        "key_types": sorted({type(r).__name__ for r in score}),
        "values": {r.name: v for r, v in score.items()},
        "records": [r.name for r in records],
    }


@cf.aggregate(inputs=["score"], outputs=["first_only"], cachers=[JsonCacher])
def collect_first(record, records, score):
    return {r.name: v for r, v in score.items()}


def run(param_sets, manager):
    recs = []
    for p in param_sets:
        r = cf.Record(manager, p)
        load(r)
        if p.name != "c":
            score(r)
        side(r)
        recs.append(r)
    collect(cf.Record(manager, None))
    collect_first(cf.Record(manager, None), records=[recs[0]])
"""

AGG_PARAMS = "- name: a\n  n: 1\n- name: b\n  n: 2\n- name: c\n  n: 3\n"


def edit(source: str, old: str, new: str) -> str:
    """Replace one exact fragment of an experiment source (fails loudly if it is absent)."""
    assert source.count(old) == 1, f"fragment not found exactly once: {old!r}"
    return source.replace(old, new)


# Two chained stages over `n`: the smallest complete experiment.
COUNT = '''
"""Count numbers, then total them."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["numbers"], outputs=["total"], cachers=[JsonCacher])
def total(record, numbers):
    return sum(numbers)


def run(param_sets, manager):
    for p in param_sets:
        total(load(cf.Record(manager, p)))
'''
