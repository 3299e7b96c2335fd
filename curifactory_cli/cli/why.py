"""`curi why EXPERIMENT [PARAMS]... STAGE`: for each call of a stage, its key part by part
and what differs from the closest cache entry (see `engine.why`). Plans as `curi plan`
does: nothing runs, nothing is loaded or written."""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curifactory_cli.cli.common import (
    CacheOpt,
    JsonOpt,
    NoRemoteOpt,
    RemoteOpt,
    StrictOpt,
    console,
    err_console,
    fail,
)
from curifactory_cli.cli.console import print_warning, write_json, write_line
from curifactory_cli.errors import ConfigError, CurifactoryError

if TYPE_CHECKING:
    from curifactory_cli.engine.planner import NodePlan, Planner
    from curifactory_cli.engine.why import CallWhy

_WIDTH = 12  # the labels' column


def why_command(
    experiment: Annotated[
        str, typer.Argument(metavar="EXPERIMENT", help="Experiment name: experiments/NAME.py.")
    ],
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="[PARAMS]... STAGE",
            help="Parameter files (paths, or names in params/), as for `curi plan`, then the "
            "stage whose calls to explain.",
        ),
    ],
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--params",
            "-p",
            metavar="SET",
            help="Only the calls of this parameter set (repeatable; every set is still planned, "
            "as a run would share between them).",
        ),
    ] = None,
    names: Annotated[
        list[str] | None, typer.Option("--names", "-n", help="Only the sets with these names.")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a parameter in every set: key=value (dotted keys nest)."
        ),
    ] = None,
    cache: CacheOpt = None,
    remote: RemoteOpt = None,
    no_remote: NoRemoteOpt = False,
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Say why each call of STAGE is cached or runs: its key's parts (experiment, stage,
    code, cachers and outputs, call arguments, input files, input data, the parameters it
    reads and their values) and which of them differ from the closest cache entry, field by
    field (`lr: 0.1 -> 0.01`; code: which function, helper, class or constant).

    The closest entry is the one that serves the call; else this set's newest entry of the
    stage; else an entry of the same computation under other parameter values (one this
    set used before first); else this set's newest entry of the stage under its old values;
    else the newest entry of the stage. Like `curi plan`, it runs
    nothing and writes nothing. (`curi plan` lists every call with its reason in one line.)
    """
    from curifactory_cli.discovery import project_root
    from curifactory_cli.run.runner import RunOptions, plan_experiment

    stage, params = words[-1], words[:-1]
    if no_remote and remote:
        raise fail(
            ConfigError("--remote and --no-remote contradict each other", hint="give one of them.")
        )
    options = RunOptions(
        experiment=experiment,
        root=str(project_root()),
        params=tuple(params),
        names=tuple(names or ()),
        overrides=tuple(sets or ()),
        cache_dir=cache,
        remote="" if no_remote else remote,
        strict=strict,
    )

    def explain(planner: Planner, plans: list[NodePlan]) -> list[CallWhy]:
        from curifactory_cli.engine.why import explain_calls

        return explain_calls(planner, _chosen(plans, stage, only or []))

    try:
        result = plan_experiment(options, explain=explain)
    except CurifactoryError as exc:
        raise fail(exc) from None
    calls: list[CallWhy] = result.explained
    if as_json:
        write_json(
            console,
            {
                "experiment": result.experiment,
                "stage": stage,
                "calls": [call.to_json() for call in calls],
                "warnings": result.warnings,
            },
        )
        return
    for message in result.warnings:
        print_warning(err_console, message)
    for number, call in enumerate(calls):
        if number:
            write_line(console, "")
        for line in _lines(call.to_json()):
            write_line(console, line)


def _chosen(plans: list[NodePlan], stage: str, only: list[str]) -> list[NodePlan]:
    """The planned calls of `stage` (of the sets `only` names): an unknown name is an error
    that lists the known ones."""
    stages = list(dict.fromkeys(item.node.stage.name for item in plans))
    if stage not in stages:
        raise ConfigError(
            f"the experiment has no stage {stage!r}", hint=_known(stage, stages, "stages")
        )
    calls = [item for item in plans if item.node.stage.name == stage]
    records = list(dict.fromkeys(item.node.record_name for item in calls))
    for name in only:
        if name not in records:
            raise ConfigError(
                f"no call of {stage!r} has the parameter set {name!r}",
                hint=_known(name, records, f"parameter sets of {stage!r}"),
            )
    return [item for item in calls if not only or item.node.record_name in only]


def _known(name: str, names: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    mean = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"{mean}known {what}: {shown}."


# ---------------------------------------------------------------------- the text
def _lines(call: dict[str, Any]) -> list[str]:
    parts = call["parts"]
    plan, reason = call["plan"] or "skipped", call["reason"]
    head = f"{call['stage']} [{call['record']}]: {plan}"
    lines = [head if reason in ("", plan) else f"{head}: {reason}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<{_WIDTH}} {text}")

    row("key", _short(call["key"]) if call["key"] else "not known until its inputs are")
    row("experiment", parts["experiment"])
    row("stage", parts["stage"])
    code = parts["code"]
    row("code", f"{_short(code['fingerprint'])} ({', '.join(_code_names(code['parts']))})")
    row("cachers", ", ".join(c.rsplit(".", 1)[-1] for c in parts["cachers"]) or "(none)")
    row("outputs", ", ".join(parts["outputs"]) or "(none)")
    kwargs = parts["kwargs"]
    row("arguments", ", ".join(f"{k}={_value(v)}" for k, v in kwargs.items()) or "(none)")
    row("input files", ", ".join(f"{p} {_short(d)}" for p, d in parts["files"].items()) or "(none)")
    row("input data", "; ".join(_input(n, i) for n, i in parts["inputs"].items()) or "(none)")
    row("parameters", _reads(parts["params"]))
    closest = call["closest"]
    if closest is None:
        no_entry = "no entry of this stage in the cache"
        row("closest", no_entry if parts["cachers"] else "none: the stage has no cachers")
        return lines
    by = f"set {closest['record']!r}" + (f", {closest['finished']}" if closest["finished"] else "")
    row("closest", f"{closest['entry']} ({closest['chosen']}; {by})")
    differences = call["differences"] or [None]
    for number, change in enumerate(differences):
        row("differs" if number == 0 else "", "nothing" if change is None else _said(change))
    return lines


def _input(name: str, given: dict[str, Any]) -> str:
    version = given["version"]
    if isinstance(version, list):  # an aggregate's: [set hash, version] per set
        unknown = sum(1 for _, v in version if v is None)
        later = f", {unknown} not known until they run" if unknown else ""
        return f"{name} of {len(version)} sets{later}"
    if version is None:
        return f"{name} not known until {given['from']} runs"
    return f"{name} {_short(version)} (from {given['from']})"


def _reads(params: dict[str, Any]) -> str:
    """The parameters the call reads, as its closest entry's call read them."""
    if not params["own"]:
        return f"none of its own (hash {_short(params['hash'])}: the sets it covers)"
    if params["everything"]:
        return f"the whole set (hash {_short(params['hash'])})"
    if params["reads"] is None:
        return "not known until it runs (no entry to compare with)"
    if not params["reads"]:
        return "reads none"
    return "reads " + ", ".join(f"{r['path']} = {_value(r['value'])}" for r in params["reads"])


def _code_names(parts: list[dict[str, Any]]) -> list[str]:
    return [
        p["name"] if p["kind"] in ("stage", None) else f"{p['kind']} {p['name']}" for p in parts
    ]


def _said(change: dict[str, Any]) -> str:
    """One difference in words: `params lr: 0.1 -> 0.01`, `code helper _residuals`, ..."""
    part = change["part"]
    if part == "params" and "path" in change:
        return f"params {change['path']}: {_value(change['old'])} -> {_value(change['new'])}"
    if part == "code" and "name" in change:
        kind = change["kind"]
        return (
            f"code {change['name']}" if kind in ("stage", None) else f"code {kind} {change['name']}"
        )
    if part == "inputs":
        if "records" in change:
            return f"inputs {change['name']} of {', '.join(change['records'])}"
        if change["new"] is None:
            return f"inputs {change['name']}: not known until its producer runs"
        return f"inputs {change['name']}: {_short(change['old'])} -> {_short(change['new'])}"
    if part == "files":
        return f"files {change['path']}: {_short(change['old'])} -> {_short(change['new'])}"
    if part == "params":  # an aggregate's: the hash of the sets it covers
        return f"params hash {_short(change['old'])} -> {_short(change['new'])}"
    if "old" in change:
        return f"{part}: {_value(change['old'])} -> {_value(change['new'])}"
    return part


def _short(text: Any) -> str:
    return "(none)" if text is None else str(text)[:12]


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:39] + "…"
