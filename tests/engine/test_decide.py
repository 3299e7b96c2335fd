"""The one decision procedure (`decide`, and the facts it reads), pinned call by call on a
store that answers as told: what a forced, a fresh, a missing or an invalidated call does,
and when an aggregate follows the records it covers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from curifactory_cli.engine.decide import (
    ENTRY_MISSING,
    FORCED_ALL,
    FORCED_STAGE,
    HIT,
    INVALIDATED_REASON,
    NOT_COMPUTED,
    PARAMS_CHANGED,
    UNCACHED_LEAF,
    UNCACHED_UNNEEDED,
    UNDECIDABLE,
    Action,
    FactFinder,
    Facts,
    MissExplainer,
    code_changed,
    decide,
    files_changed,
    inputs_changed,
    miss_reason,
    removed_damaged,
    unneeded,
)
from curifactory_cli.engine.reasons import changes_of
from curifactory_cli.store import INVALIDATED, Entry
from curifactory_cli.store.entry import entry_dir


class Store:
    """Answers every lookup with `found` (an entry, or None and a problem)."""

    def __init__(self, entry=None, problem=None, by_lineage=None) -> None:
        self.entry, self.problem, self.by_lineage = entry, problem, by_lineage
        self.asked: list[str] = []

    def lookup(self, directory, key, outputs):
        self.asked.append("lookup")
        return self.entry, self.problem

    def find_by_lineage(self, stage_prefix, lineage_key, outputs):
        self.asked.append("lineage")
        return self.by_lineage


ENTRY = Entry("cache/exp/p/fit-" + "a" * 16, {"key": "a" * 64, "outputs": {"model": {}}})


def facts(**changes) -> Facts:
    made = Facts(
        cached_stage=True,
        leaf=False,
        forced=None,
        inputs_known=True,
        fresh_inputs=False,
        outputs=("model",),
        lineage_key="L" * 64,
        stage_prefix="cache/exp/p/fit",
        key="a" * 64,
        entry_dir="cache/exp/p/fit-" + "a" * 16,
        explain=lambda: NOT_COMPUTED,
    )
    for name, value in changes.items():
        setattr(made, name, value)
    return made


def test_a_valid_entry_is_used():
    decision = decide(facts(), Store(ENTRY))
    assert (decision.action, decision.reason, decision.entry) == (Action.CACHED, HIT, ENTRY)


@pytest.mark.parametrize("forced", [FORCED_ALL, FORCED_STAGE])
def test_a_forced_call_runs_even_when_its_entry_is_there(forced):
    for inputs_known in (True, False):
        store = Store(ENTRY, by_lineage=ENTRY)
        decision = decide(facts(forced=forced, inputs_known=inputs_known), store)
        assert (decision.action, decision.reason) == (Action.RUN, forced)
        assert decision.entry is None


def test_a_missing_call_whose_inputs_were_just_recomputed_runs():
    decision = decide(facts(fresh_inputs=True), Store())
    assert (decision.action, decision.reason) == (Action.RUN, NOT_COMPUTED)


def test_a_missing_call_with_unchanged_inputs_waits_until_needed():
    decision = decide(facts(), Store())
    assert (decision.action, decision.reason) == (Action.DEFER, NOT_COMPUTED)
    assert decide(facts(leaf=True), Store()).action is Action.RUN


def test_an_invalidated_entry_is_explained_as_invalidated_not_as_unusable():
    assert miss_reason(INVALIDATED) == INVALIDATED_REASON
    decision = decide(facts(fresh_inputs=True), Store(problem=INVALIDATED))
    assert (decision.action, decision.reason) == (Action.RUN, INVALIDATED_REASON)
    assert decision.problem is None  # nothing to warn about: the user marked it
    damaged = decide(facts(fresh_inputs=True), Store(problem="metadata is incomplete"))
    assert damaged.reason == "cache entry unusable: metadata is incomplete"
    assert damaged.problem == "metadata is incomplete"


def test_unknown_inputs_are_decided_by_lineage():
    found = decide(facts(inputs_known=False, key=None), Store(by_lineage=ENTRY))
    assert (found.action, found.entry) == (Action.CACHED, ENTRY)
    missing = decide(facts(inputs_known=False, key=None), Store())
    assert (missing.action, missing.reason) == (Action.NEED_INPUTS, UNDECIDABLE)


# ------------------------------------------------------------------------------ forcing
def _record(params, covers=()):
    return SimpleNamespace(params=params, input_records=list(covers))


def _node(record, stage="fit"):
    return SimpleNamespace(record=record, stage=SimpleNamespace(name=stage))


def _params(overwrite=None):
    return SimpleNamespace(overwrite=overwrite) if overwrite is not None else SimpleNamespace()


def test_overwrite_true_of_a_set_forces_its_calls_only():
    finder = FactFinder(store=None, experiment="exp")
    # The parameter sets live as long as the run (the finder remembers each by its id).
    sets = [_params(True), _params(False), _params()]
    assert [finder.forced(_node(_record(p))) for p in sets] == [FORCED_ALL, None, None]


def test_an_aggregate_without_parameters_follows_overwrite_of_the_records_it_covers():
    finder = FactFinder(store=None, experiment="exp")
    forcing = _record(_params(True))
    plain = _record(_params())
    own = _params()
    assert finder.forced(_node(_record(None, [plain, forcing]))) == FORCED_ALL
    assert finder.forced(_node(_record(None, [plain]))) is None
    # An aggregate with parameters of its own follows only those.
    assert finder.forced(_node(_record(own, [forcing]))) is None


def test_overwrite_and_overwrite_stage_force_what_they_name():
    params = _params()
    everything = FactFinder(store=None, experiment="exp", overwrite=True)
    assert everything.forced(_node(_record(params))) == FORCED_ALL
    one = FactFinder(store=None, experiment="exp", overwrite_stages=frozenset({"fit"}))
    assert one.forced(_node(_record(params), "fit")) == FORCED_STAGE
    assert one.forced(_node(_record(params), "score")) is None


def test_an_uncached_stage_runs_when_it_is_a_leaf_and_else_waits():
    leaf = decide(facts(cached_stage=False, leaf=True), Store(ENTRY))
    assert (leaf.action, leaf.reason) == (Action.RUN, UNCACHED_LEAF)
    inner = decide(facts(cached_stage=False), Store(ENTRY))
    assert (inner.action, inner.reason) == (Action.DEFER, UNCACHED_UNNEEDED)


def test_a_damaged_entry_is_reported_whether_the_call_runs_or_waits():
    for fresh, action in ((True, Action.RUN), (False, Action.DEFER)):
        decision = decide(facts(fresh_inputs=fresh), Store(problem="file x is missing"))
        assert (decision.action, decision.problem) == (action, "file x is missing")
        assert decision.reason == "cache entry unusable: file x is missing"


def test_an_entry_found_by_lineage_is_a_hit():
    found = decide(facts(inputs_known=False, key=None), Store(by_lineage=ENTRY))
    assert (found.action, found.reason, found.entry) == (Action.CACHED, HIT, ENTRY)


# ------------------------------------------------------------------------------ wording
def test_reasons_are_worded_once():
    assert code_changed([]) == "stage code changed"
    assert code_changed(["fit", "K"]) == "stage code changed (fit, K)"
    assert files_changed(["a.csv", "b.csv"]) == "input files changed (a.csv, b.csv)"
    assert inputs_changed(["x", "y"]) == "input data changed (x, y)"
    assert miss_reason(None) == ENTRY_MISSING
    assert miss_reason(None, lambda: "why") == "why"
    assert unneeded(None, True) == "cache entry missing, but nothing that runs needs it"
    assert (
        unneeded("parameters changed", True) == "parameters changed, but nothing that runs needs it"
    )
    assert unneeded("parameters changed", False) == UNCACHED_UNNEEDED


# ------------------------------------------------------------------------------ explaining a miss
class Entries:
    """A store holding the entries given, by stage prefix and by experiment."""

    root = ""

    def __init__(self, stage=(), everywhere=()) -> None:
        self.stage, self.everywhere = list(stage), list(everywhere)

    def stage_entries(self, stage_prefix):
        return self.stage

    def entries(self, experiment=None):
        return [e for e in self.everywhere if experiment is None or e.experiment == experiment]

    def stage_prefix(self, experiment, params_hash, stage):
        return f"{experiment}/{params_hash[:16]}/{stage}"

    def read_index(self, experiment):  # the reads index: nothing indexed
        return []

    entry_dir = staticmethod(entry_dir)


def _entry(experiment="exp", record="a", stage="fit", parts=None, code_parts=None):
    meta = {"experiment": experiment, "record": record, "stage": stage, "key": "k" * 64}
    meta["key_parts"] = parts or {}
    meta["code_parts"] = code_parts or {}
    return Entry(f"{experiment}/p/{stage}-{'k' * 16}", meta)


class Breakdown:
    def __init__(self, parts, kinds=None):
        self.parts, self._kinds = parts, kinds or {}

    def breakdown(self, fn):
        return self.parts

    def kinds(self, fn):
        return self._kinds


def _call(stage="fit", record="a", fn=None):
    return SimpleNamespace(
        stage=SimpleNamespace(name=stage, fn=fn), record_name=record, record=SimpleNamespace()
    )


PARTS = {
    "code": "c1",
    "files": {"a.csv": "1", "b.csv": "2"},
    "cachers": [{"type": "JsonCacher"}],
    "outputs": ["model"],
    "kwargs": "kw1",
    "inputs": {"x": "1", "y": "2", "z": "3"},
}


@pytest.mark.parametrize(
    ("change", "open_inputs", "said"),
    [
        (
            {"files": {"a.csv": "1", "b.csv": "9", "c.csv": "4"}},
            (),
            "input files changed (b.csv, c.csv)",
        ),
        ({"files": None}, (), "input files changed (a.csv, b.csv)"),
        ({"cachers": [{"type": "PickleCacher"}]}, (), "cachers or outputs changed"),
        ({"outputs": ["model", "score"]}, (), "cachers or outputs changed"),
        ({"kwargs": "kw2"}, (), "call arguments changed"),
        ({"inputs": {"x": "1", "y": "9", "z": "8"}}, ("z",), "input data changed (y)"),
        ({"inputs": {"x": "1", "y": "2", "z": "8"}}, ("z",), ENTRY_MISSING),
        ({}, (), ENTRY_MISSING),
    ],
    ids=["files", "files gone", "cachers", "outputs", "kwargs", "inputs", "open input", "same"],
)
def test_a_miss_is_explained_by_the_first_part_that_differs(change, open_inputs, said):
    explainer = MissExplainer(Entries([_entry(parts=PARTS)]), "exp", Breakdown({}))
    parts = {**PARTS, **change}
    assert explainer.explain(_call(), "exp/p/fit", parts, frozenset(open_inputs)) == said


def test_a_code_change_names_the_functions_and_constants_that_changed():
    stored = _entry(parts=PARTS, code_parts={"fit": "1", "helper": "1", "GONE": "1"})
    explainer = MissExplainer(Entries([stored]), "exp", Breakdown({"fit": "2", "helper": "1"}))
    said = explainer.explain(_call(), "exp/p/fit", {**PARTS, "code": "c2"})
    assert said == "stage code changed (GONE, fit)"  # what each name is not known: bare
    # Known: the stage itself first and bare, the others by kind, a name gone as removed.
    kinds = {"fit": "stage", "helper": "helper", "K": "constant"}
    new = Breakdown({"fit": "2", "helper": "2", "K": "2"}, kinds)
    said = MissExplainer(Entries([stored]), "exp", new).explain(
        _call(), "exp/p/fit", {**PARTS, "code": "c2"}
    )
    assert said == "stage code changed (fit, removed GONE, constant K, helper helper)"
    assert changes_of(said) == [
        {"part": "code", "name": "fit", "kind": "stage"},
        {"part": "code", "name": "GONE", "kind": None},
        {"part": "code", "name": "K", "kind": "constant"},
        {"part": "code", "name": "helper", "kind": "helper"},
    ]


def test_without_a_fingerprinter_a_code_change_is_named_by_the_stages_own_project(project):
    """`curi runs show` and a notebook explain with no run's fingerprinter: the stage's source
    file says which project to fingerprint."""
    import importlib.util

    from curifactory_cli.fingerprint import CodeFingerprinter

    path = project.write("experiments/mod.py", "K = 2\n\n\ndef fit(record):\n    return K\n")
    spec = importlib.util.spec_from_file_location("curi_explained_mod", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = sorted(CodeFingerprinter(project.root).breakdown(module.fit))
    assert expected == ["K", "fit"]  # the function, and the constant it reads
    stored = _entry(parts=PARTS, code_parts={})
    explainer = MissExplainer(Entries([stored]), "exp")
    said = explainer.explain(_call(fn=module.fit), "exp/p/fit", {**PARTS, "code": "c2"})
    assert said == "stage code changed (fit, constant K)"
    # A function with no source file to find a project by: the change is still said.
    said = explainer.explain(_call(fn=len), "exp/p/fit", {**PARTS, "code": "c2"})
    assert said == code_changed([])


def test_a_stage_never_run_for_this_experiments_set_is_not_computed_yet():
    """`parameters changed` only for a stage this experiment ran for a set of that name; an
    entry of another experiment does not count."""
    theirs = _entry(experiment="other", record="a", stage="fit")
    ours = _entry(experiment="exp", record="a", stage="fit")
    assert MissExplainer(Entries([], [theirs]), "exp").explain(_call(), "p", None) == NOT_COMPUTED
    assert MissExplainer(Entries([], [ours]), "exp").explain(_call(), "p", None) == PARAMS_CHANGED
    # The same through the facts a run builds.
    finder = FactFinder(Entries([], [theirs]), "exp")
    params = _params()
    call = SimpleNamespace(
        index=0,
        stage=SimpleNamespace(name="fit", fn=None, is_aggregate=False, params=None),
        record=SimpleNamespace(
            params=params, input_records=[], get_hash=lambda: "h" * 64, name="a"
        ),
        record_name="a",
        is_cached_stage=True,
        consumers=1,
        outputs=[SimpleNamespace(name="model")],
        cacher_templates=None,
        key_parts=None,
        probe=None,
        probe_source=None,
    )
    found = finder.facts(call, "L" * 64, "k" * 64, fresh=False, key_parts=PARTS)
    assert found.explain() == NOT_COMPUTED


def test_the_facts_of_a_stage_call():
    finder = FactFinder(Entries(), "exp")
    params = _params()
    uncached = SimpleNamespace(index=1, is_cached_stage=False, consumers=0)
    assert finder.facts(uncached, "L", "k", fresh=True) == Facts(
        False, True, None, True, False, (), "L", ""
    )
    assert finder.facts(uncached, "L", None, fresh=True).inputs_known is False
    cached = SimpleNamespace(
        index=2,
        stage=SimpleNamespace(name="fit", fn=None),
        record=SimpleNamespace(params=params, input_records=[], get_hash=lambda: "h" * 64),
        is_cached_stage=True,
        consumers=2,
        outputs=[SimpleNamespace(name="model"), SimpleNamespace(name="score")],
        cacher_templates=None,
        key_parts=None,
        probe=None,
        probe_source=None,
    )
    known = finder.facts(cached, "L", "k" * 64, fresh=True)
    assert (known.cached_stage, known.leaf, known.forced, known.inputs_known) == (
        True,
        False,
        None,
        True,
    )
    assert (known.fresh_inputs, known.outputs, known.lineage_key) == (True, ("model", "score"), "L")
    assert known.stage_prefix == "exp/" + "h" * 16 + "/fit"
    assert known.entry_dir == known.stage_prefix + "-" + "k" * 16
    assert known.key == "k" * 64 and known.explain is not None
    unknown = finder.facts(cached, "L", None, fresh=True)
    assert (unknown.inputs_known, unknown.fresh_inputs, unknown.key) == (False, False, None)
    assert unknown.entry_dir is None and unknown.explain is None


def test_a_removal_is_told_with_its_problem_and_day_and_without_what_the_log_lacks():
    said = "cache entry removed as damaged{} by `curi cache verify --fix`{}"
    record = {"problem": "corrupt x.json", "removed": "2026-03-04T05:06:07+00:00"}
    assert removed_damaged(record) == said.format(" (corrupt x.json)", " on 2026-03-04")
    assert removed_damaged({"problem": "", "removed": None}) == said.format("", "")
    assert removed_damaged({}) == said.format("", "")
