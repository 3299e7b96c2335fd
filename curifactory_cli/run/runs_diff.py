"""What differs between two recorded runs, as `curi runs diff` shows it: their parameter sets
(field by field), the code of each stage (function, helpers, constants, by fingerprint), the
stage calls that ran in one and were reused in the other (with the reasons recorded), whether
the outputs are byte-identical (by the checksums of their files), and the metrics' deltas.

Everything comes from the run registry: each run keeps its stages' code fingerprints and its
calls' output versions. A run recorded before they were kept is read from its cache entries'
metadata when they are still there (`meta.json`, never an output), and otherwise the diff
says what it cannot tell.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError
from curifactory_cli.registry.references import numbered
from curifactory_cli.run.param_values import flat_values

if TYPE_CHECKING:
    from curifactory_cli.registry.database import RunRegistry
    from curifactory_cli.registry.records import ParamSetRecord, RunRecord, StageRecord

ABSENT = object()  # a parameter a set does not have


@dataclass
class SetChange:
    """A parameter set of both runs whose values differ: (key, A's value, B's value) per
    dotted key, ABSENT where a set lacks the key; `unknown`: a run kept no values."""

    name: str
    fields: list[tuple[str, Any, Any]]
    unknown: bool = False

    def shown_fields(self) -> list[tuple[str, str, str]]:
        """Each field as text: (key, A's value, B's value); `(absent)` where a set lacks it."""
        return [(key, value_text(a), value_text(b)) for key, a, b in self.fields]


@dataclass
class StageCode:
    """A stage whose code differs: the parts (function, helper, constant) whose fingerprints
    differ, and those only one run's code has."""

    stage: str
    changed: list[str]
    added: list[str]  # only in B
    removed: list[str]  # only in A


@dataclass
class Call:
    """A stage call of either run (by stage, set, and its rank among calls of both names)."""

    stage: str
    record: str
    a: StageRecord | None
    b: StageRecord | None

    @property
    def same(self) -> bool:
        a, b = self.a, self.b
        return a is not None and b is not None and (a.outcome, a.key) == (b.outcome, b.key)

    @property
    def rank(self) -> int:
        """Where it is listed: the calls B ran first (what a reader asks about), then those
        B reused, then other outcomes, then the calls only B, then only A, has."""
        a, b = self.a, self.b
        if a is None or b is None:
            return 3 if a is None else 4
        if b.outcome == "executed":
            return 0
        return 1 if (a.outcome, b.outcome) == ("executed", "cached") else 2

    def kind(self, a_name: str, b_name: str) -> str:
        """What a call that differs did, in a few words (`a_name`, `b_name`: the runs)."""
        if self.a is None:
            return f"only in {b_name}"
        if self.b is None:
            return f"only in {a_name}"
        a, b = self.a.outcome, self.b.outcome
        if a == "executed" and b == "executed":
            return "executed in both"
        if a == "executed" and b == "cached":
            return f"executed in {a_name}, reused in {b_name}"
        if a == "cached" and b == "executed":
            return f"reused in {a_name}, executed in {b_name}"
        return f"{a} in {a_name}, {b} in {b_name}"

    @property
    def reason(self) -> str:
        """Why it did what it did in B (in A, for a call B does not have)."""
        shown = self.b if self.b is not None else self.a
        return (shown.reason if shown is not None else None) or ""


@dataclass
class Output:
    """An output of a call of both runs: 'identical' bytes, 'differ', or 'unknown' (its
    name None when neither run kept its outputs' names)."""

    stage: str
    record: str
    output: str | None
    status: str


@dataclass
class Metric:
    """A metric of a set in either run (the last value its calls recorded; None: absent)."""

    set: str
    metric: str
    a: Any
    b: Any

    @property
    def changed(self) -> bool:
        if _is_nan(self.a) and _is_nan(self.b):
            return False
        return self.a != self.b or type(self.a) is not type(self.b)

    @property
    def delta(self) -> float | None:
        if not _numeric(self.a) or not _numeric(self.b):
            return None
        return float(self.b) - float(self.a)

    @property
    def percent(self) -> float | None:
        delta = self.delta
        if delta is None or not self.a or not math.isfinite(float(self.a)):
            return None
        return delta / abs(float(self.a)) * 100.0


@dataclass
class RunsDiff:
    """The difference between run A and run B (everything, changed or not: `shown` picks)."""

    a: RunRecord
    b: RunRecord
    sets_added: list[str]
    sets_removed: list[str]
    sets_changed: list[SetChange]
    code: list[StageCode]
    stages_added: list[str]
    stages_removed: list[str]
    calls: list[Call]
    outputs: list[Output]
    metrics: list[Metric]
    notes: list[str] = field(default_factory=list)  # what it cannot tell, and why

    @property
    def names(self) -> tuple[str, str]:
        """The runs as `<experiment>_<n>` (the short form a reader tells them apart by)."""
        return numbered(self.a.experiment, self.a.number), numbered(
            self.b.experiment, self.b.number
        )

    def shown_calls(self, every: bool = False) -> list[Call]:
        """The calls that differ (`every`: all), those B ran first (see `Call.rank`)."""
        shown = self.calls if every else [c for c in self.calls if not c.same]
        return sorted(shown, key=lambda c: c.rank)

    def shown_outputs(self, every: bool = False) -> list[Output]:
        return self.outputs if every else [o for o in self.outputs if o.status != "identical"]

    def shown_metrics(self, every: bool = False) -> list[Metric]:
        return self.metrics if every else [m for m in self.metrics if m.changed]

    def output_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("identical", "differ", "unknown"), 0)
        for o in self.outputs:
            counts[o.status] += 1
        return counts

    def to_json(self, every: bool = False) -> dict[str, Any]:
        """The diff as data; `every`: unchanged calls, outputs and metrics too."""
        a, b = self.a, self.b
        return {
            "a": _run_json(a),
            "b": _run_json(b),
            "params": {
                "added": self.sets_added,
                "removed": self.sets_removed,
                "changed": [
                    {
                        "set": s.name,
                        "values_recorded": not s.unknown,
                        "fields": [
                            {"key": k, **_side("a", va), **_side("b", vb)} for k, va, vb in s.fields
                        ],
                    }
                    for s in self.sets_changed
                ],
            },
            "code": {
                "changed": [
                    {"stage": c.stage, "changed": c.changed, "added": c.added, "removed": c.removed}
                    for c in self.code
                ],
                "stages_added": self.stages_added,
                "stages_removed": self.stages_removed,
            },
            "calls": {
                "same": sum(c.same for c in self.calls),
                "rows": [_call_json(c) for c in self.shown_calls(every)],
            },
            "outputs": {
                **self.output_counts(),
                "rows": [
                    {"stage": o.stage, "set": o.record, "output": o.output, "status": o.status}
                    for o in self.shown_outputs(every)
                ],
            },
            "metrics": {
                "unchanged": sum(not m.changed for m in self.metrics),
                "rows": [
                    {
                        "set": m.set,
                        "metric": m.metric,
                        "a": _json_number(m.a),
                        "b": _json_number(m.b),
                        "delta": _json_number(m.delta),
                        "percent": _json_number(m.percent),
                    }
                    for m in self.shown_metrics(every)
                ],
            },
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------ choosing
def chosen_runs(registry: RunRegistry, first: str | None, second: str | None) -> tuple[str, str]:
    """The references of A and B: both given; one given, against the newest run of its
    experiment (the one before it when it is the newest); none, the newest run against the
    run of its experiment before it."""
    if first is not None and second is not None:
        return registry.get_run(first, stages=False).reference, registry.get_run(
            second, stages=False
        ).reference
    if first is None:
        newest = registry.list_runs(limit=1, brief=True)
        if not newest:
            raise ConfigError(
                f"no runs recorded yet in {registry.path}",
                hint="`curi run EXPERIMENT PARAMS` records every run there.",
            )
        given = newest[0]
    else:
        given = registry.get_run(first, stages=False)
    runs = [r.reference for r in registry.list_runs(given.experiment, limit=None, brief=True)]
    if len(runs) < 2:
        raise ConfigError(
            f"only one run of {given.experiment!r} is recorded ({given.reference}): nothing to "
            "compare it with",
            hint="give two references (`curi runs diff A B`); `curi runs ls` lists them.",
        )
    # Newest first. The newest against the one before it; an older run against the newest.
    if runs[0] == given.reference:
        return runs[1], runs[0]
    return given.reference, runs[0]


def diff_runs(registry: RunRegistry, first: str, second: str) -> RunsDiff:
    """The difference between the runs `first` (A) and `second` (B)."""
    a, b = registry.get_run(first), registry.get_run(second)
    notes: list[str] = []
    added, removed, changed = _sets(a.param_sets or [], b.param_sets or [])
    a_facts, b_facts = _Facts(a, notes), _Facts(b, notes)
    code, stages_added, stages_removed = _code(a, b, a_facts, b_facts, notes)
    calls = _calls(a.stages or [], b.stages or [])
    return RunsDiff(
        a=a,
        b=b,
        sets_added=added,
        sets_removed=removed,
        sets_changed=changed,
        code=code,
        stages_added=stages_added,
        stages_removed=stages_removed,
        calls=calls,
        outputs=_outputs(calls, a_facts, b_facts),
        metrics=_metrics(a.stages or [], b.stages or []),
        notes=notes,
    )


# ------------------------------------------------------------------------------ parts
def _sets(
    a: list[ParamSetRecord], b: list[ParamSetRecord]
) -> tuple[list[str], list[str], list[SetChange]]:
    """Sets added (in B only), removed (in A only) and changed (by name, value by value)."""
    old = {s.name: s for s in a}
    new = {s.name: s for s in b}
    changed = []
    for name, after in new.items():
        before = old.get(name)
        if before is None:
            continue
        if before.values is None or after.values is None:
            if before.hash != after.hash:  # a run of a curi that kept no values
                changed.append(SetChange(name, [], unknown=True))
            continue
        fields = _fields(flat_values(before.values), flat_values(after.values))
        if fields:
            changed.append(SetChange(name, fields))
    return [n for n in new if n not in old], [n for n in old if n not in new], changed


def _fields(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        va, vb = a.get(key, ABSENT), b.get(key, ABSENT)
        if va is ABSENT or vb is ABSENT or not _same_value(va, vb):
            out.append((key, va, vb))
    return out


def _same_value(a: Any, b: Any) -> bool:
    """Equal as parameters: 1 and 1.0 are (they hash alike), True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b) or (_is_nan(a) and _is_nan(b))


class _Facts:
    """What a run kept of its code and outputs: the registry's record, or (for a run
    recorded before it kept them) its cache entries' metadata where they still are."""

    def __init__(self, run: RunRecord, notes: list[str]) -> None:
        self.run = run
        self.recorded = run.code is not None  # output versions are kept with it
        self._metas: dict[str, dict[str, Any] | None] = {}
        self.notes = notes

    def code(self) -> dict[str, dict[str, str]] | None:
        """Each stage's code parts (None: neither recorded nor in an entry)."""
        if self.run.code is not None:
            return self.run.code
        found: dict[str, dict[str, str]] = {}
        calls = self.run.stages or []
        # An executed call's entry has this run's code; a cached one's the same fingerprint.
        for call in sorted(calls, key=lambda c: c.outcome != "executed"):
            if call.stage not in found:
                meta = self.meta(call)
                parts = meta.get("code_parts") if meta else None
                if isinstance(parts, dict):
                    found[call.stage] = {str(k): str(v) for k, v in parts.items()}
        return found or None

    def outputs(self, call: StageRecord) -> dict[str, str] | None:
        """The output versions of one of its calls (None: unknown)."""
        if self.recorded or call.outputs or not call.entry:  # no entry: no cachers
            return call.outputs or {}
        meta = self.meta(call)
        if meta is None:
            return None
        outputs = meta.get("outputs")
        if not isinstance(outputs, dict):
            return None
        return {
            str(name): str(info.get("version"))
            for name, info in outputs.items()
            if isinstance(info, dict) and info.get("version")
        }

    def meta(self, call: StageRecord) -> dict[str, Any] | None:
        """The metadata of a call's entry in the run's cache folder (None when gone)."""
        if not call.entry:
            return None
        if call.entry in self._metas:
            return self._metas[call.entry]
        path = os.path.join(self.run.cache_dir or "", call.entry, "meta.json")
        try:
            with open(path, encoding="utf-8") as infile:
                meta = json.load(infile)
        except (OSError, ValueError):
            meta = None
        self._metas[call.entry] = meta if isinstance(meta, dict) else None
        return self._metas[call.entry]


def _code(
    a: RunRecord, b: RunRecord, a_facts: _Facts, b_facts: _Facts, notes: list[str]
) -> tuple[list[StageCode], list[str], list[str]]:
    """Stages whose code differs, and the stages only B or only A called."""
    a_stages = list(dict.fromkeys(c.stage for c in a.stages or []))
    b_stages = list(dict.fromkeys(c.stage for c in b.stages or []))
    added = [s for s in b_stages if s not in a_stages]
    removed = [s for s in a_stages if s not in b_stages]
    old, new = a_facts.code(), b_facts.code()
    missing = [numbered(r.experiment, r.number) for r, c in ((a, old), (b, new)) if c is None]
    if missing:
        whose = "its" if len(missing) == 1 else "their"
        notes.append(
            f"code: not recorded for {' and '.join(missing)} (recorded by an older curi) and "
            f"{whose} cache entries are gone: cannot tell which code changed"
        )
        return [], added, removed
    assert old is not None and new is not None
    out = []
    for stage in b_stages:
        before, after = old.get(stage), new.get(stage)
        if stage not in a_stages or before is None or after is None:
            continue
        changed = [p for p in after if p in before and before[p] != after[p]]
        plus = [p for p in after if p not in before]
        minus = [p for p in before if p not in after]
        if changed or plus or minus:
            out.append(StageCode(stage, changed, plus, minus))
    return out, added, removed


def _calls(a: list[StageRecord], b: list[StageRecord]) -> list[Call]:
    """The calls of both runs paired by stage and set (B's order, then those only in A)."""
    old = _by_call(a)
    calls = []
    for key, call in _by_call(b).items():
        calls.append(Call(key[0], key[1], old.pop(key, None), call))
    calls += [Call(key[0], key[1], call, None) for key, call in old.items()]
    return calls


def _by_call(calls: Iterable[StageRecord]) -> dict[tuple[str, str, int], StageRecord]:
    out: dict[tuple[str, str, int], StageRecord] = {}
    seen: dict[tuple[str, str], int] = {}
    for call in calls:
        pair = (call.stage, call.record)
        rank = seen[pair] = seen.get(pair, -1) + 1  # a stage called twice on one set
        out[(call.stage, call.record, rank)] = call
    return out


def _outputs(calls: list[Call], a_facts: _Facts, b_facts: _Facts) -> list[Output]:
    """Each output of a call both runs settled: identical bytes or not, by version."""
    out = []
    settled = ("executed", "cached")
    unknown = {"a": 0, "b": 0}
    for call in calls:
        if call.a is None or call.b is None:
            continue
        if call.a.outcome not in settled or call.b.outcome not in settled:
            continue
        old, new = a_facts.outputs(call.a), b_facts.outputs(call.b)
        if old == {} and new == {}:
            continue  # no cachers: its outputs were in memory only
        if old is None:
            unknown["a"] += 1
        if new is None:
            unknown["b"] += 1
        names: list[str | None] = list(dict.fromkeys([*(new or {}), *(old or {})]))
        for name in names or [None]:
            if old is None or new is None or name is None:
                status = "unknown"
            else:
                status = "identical" if old.get(name) == new.get(name) else "differ"
            out.append(Output(call.stage, call.record, name, status))
    for side, facts in (("a", a_facts), ("b", b_facts)):
        n = unknown[side]
        if n:
            calls_text = "a call" if n == 1 else f"{n} calls"
            entries = "its entry is" if n == 1 else "their entries are"
            facts.notes.append(
                f"outputs: {calls_text} of {numbered(facts.run.experiment, facts.run.number)} "
                f"kept no output checksums (recorded by an older curi) and {entries} gone: "
                "cannot tell whether those outputs are identical"
            )
    return out


def _metrics(a: list[StageRecord], b: list[StageRecord]) -> list[Metric]:
    """Each set's metrics in both runs (a name recorded by several calls of a set: the
    last), B's sets first."""
    old, new = _set_metrics(a), _set_metrics(b)
    out = []
    for key in [*new, *(k for k in old if k not in new)]:
        out.append(Metric(key[0], key[1], old.get(key), new.get(key)))
    return out


def _set_metrics(calls: list[StageRecord]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for call in calls:
        for name, value in (call.metrics or {}).items():
            found[(call.record, name)] = value
    return found


def value_text(value: Any) -> str:
    """A parameter's value as the diff shows it (JSON; text as it is; `(absent)`)."""
    if value is ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, default=str)


# ------------------------------------------------------------------------------ JSON
def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "reference": run.reference,
        "experiment": run.experiment,
        "number": run.number,
        "status": run.status,
        "started": run.started,
        "git": run.git.to_json(),
    }


def _side(name: str, value: Any) -> dict[str, Any]:
    """A field's value on one side, left out when the set does not have it."""
    return {} if value is ABSENT else {name: value}


def _call_json(call: Call) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": call.stage, "set": call.record}
    for side, record in (("a", call.a), ("b", call.b)):
        out[side] = (
            None
            if record is None
            else {"outcome": record.outcome, "reason": record.reason, "key": record.key}
        )
    return out


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
