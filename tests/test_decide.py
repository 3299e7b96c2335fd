"""The one decision procedure (`decide`, and the facts it reads), pinned call by call on a
store that answers as told: what a forced, a fresh, a missing or an invalidated call does,
and when an aggregate follows the records it covers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from curifactory_cli.engine.decide import (
    FORCED_ALL,
    FORCED_STAGE,
    HIT,
    INVALIDATED_REASON,
    NOT_COMPUTED,
    UNDECIDABLE,
    Action,
    FactFinder,
    Facts,
    decide,
    miss_reason,
)
from curifactory_cli.store import INVALIDATED, Entry


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
