"""The run's log in its report: per stage, what each of its calls printed or logged (collapsed),
and the full traceback of a failed call (shown open)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curifactory_cli.registry.records import StageRecord


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _call(entry: dict[str, Any]) -> str:
    failed = entry.get("outcome") == "failed"
    facts = [str(entry.get("outcome") or "")]
    if entry.get("seconds") is not None:
        facts.append(f"{float(entry['seconds']):.2f} s")
    if entry.get("worker"):
        facts.append(str(entry["worker"]))
    head = f"<code>{_e(entry.get('record'))}</code> <span class=muted>{_e(', '.join(facts))}</span>"
    parts = []
    text = entry.get("log") or ""
    if text:
        parts.append(f'<pre class="log">{_e(text)}</pre>')
    elif not failed:
        parts.append("<p class=muted>no output</p>")
    if failed:
        parts.append(
            f'<div class="error-box"><b>{_e(entry.get("error") or "failed")}</b>'
            f"<pre>{_e(entry.get('traceback') or '')}</pre></div>"
        )
    status = " failed" if failed else ""
    return (
        f'<details class="call{status}"{" open" if failed else ""}><summary>{head}</summary>'
        f"{''.join(parts)}</details>"
    )


def logs_html(calls: Sequence[StageRecord], entries: Sequence[dict[str, Any]]) -> str:
    """One collapsed block per stage that printed something, failed or was cached (`entries`:
    the run's log, as `registry.log.read_log` reads it)."""
    stages: dict[str, list[dict[str, Any]]] = {}
    cached: dict[str, int] = {}
    for call in calls:
        stages.setdefault(call.stage, [])
        if call.outcome == "cached":
            cached[call.stage] = cached.get(call.stage, 0) + 1
    for entry in entries:
        stages.setdefault(entry["stage"], []).append(entry)
    blocks = []
    for stage, logged in stages.items():
        n_cached = cached.get(stage, 0)
        if not logged and not n_cached:
            continue
        failed = any(e.get("outcome") == "failed" for e in logged)
        notes = []
        if logged:
            notes.append(f"{len(logged)} call{'s' if len(logged) != 1 else ''} with output")
        if n_cached:
            notes.append(f"{n_cached} cached: no output in this run")
        summary = f"<code>{_e(stage)}</code> <span class=muted>{_e('; '.join(notes))}</span>"
        body = "".join(_call(e) for e in logged)
        blocks.append(
            f'<details class="stage-log"{" open" if failed else ""}>'
            f"<summary>{summary}</summary>{body}</details>"
        )
    if not blocks:
        return "<p class=muted>No stage call printed or logged anything in this run.</p>"
    return "".join(blocks)
