"""A lifecycle's commands read from its history, for the command ceiling (bench/noop.py), and the
signature that says two histories issued the same commands.

The signature keeps what Temporal is asked to do and store: each activity with its timeouts and
summary, each local activity with its summary, patch markers, search-attribute upserts with their
values, timers and signals, in order. It leaves out what differs between any two runs (ids, times,
payload bytes) and the events the server adds itself (workflow tasks, activity starts and ends)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench.noop import Step
from bridgehead.history_stats import is_local_activity

#: Written by the SDK when a patch marker is recorded, so a replayed ``P`` step writes it again.
CHANGE_VERSION = "TemporalChangeVersion"
_PATCH_MARKER = "core_patch"


def _text(payload: Any) -> Any:
    return json.loads(payload.data) if payload.data else None


def _summary(event: Any) -> str | None:
    s = event.user_metadata.summary
    return _text(s) if s.data else None


def _size(payloads: Any) -> int:
    return sum(len(p.data) for p in payloads.payloads)


def _attrs(event: Any) -> dict[str, Any]:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    return {k: _text(v) for k, v in fields.indexed_fields.items()}


def command_script(events: Sequence[Any], signal: str = "delete") -> tuple[list[Step], list[Step]]:
    """The commands of a lifecycle's history before its ``signal`` and after it."""
    results = {
        e.activity_task_completed_event_attributes.scheduled_event_id: _size(
            e.activity_task_completed_event_attributes.result
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    }
    before: list[Step] = []
    after: list[Step] = []
    out = before
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            if e.workflow_execution_signaled_event_attributes.signal_name == signal:
                out = after
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            out.append(
                Step(
                    kind="A",
                    summary=_summary(e),
                    start_to_close_s=a.start_to_close_timeout.ToTimedelta().total_seconds(),
                    heartbeat_s=a.heartbeat_timeout.ToTimedelta().total_seconds() or None,
                    in_bytes=_size(a.input),
                    out_bytes=results.get(e.event_id, 0),
                )
            )
        elif is_local_activity(e):
            result = e.marker_recorded_event_attributes.details.get("result")
            out.append(
                Step(kind="L", summary=_summary(e), out_bytes=_size(result) if result else 0)
            )
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            m = e.marker_recorded_event_attributes
            if m.marker_name == _PATCH_MARKER:
                out.append(Step(kind="P", patch=_text(m.details["patch-data"].payloads[0])["id"]))
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attrs = {k: v for k, v in _attrs(e).items() if k != CHANGE_VERSION}
            if attrs:
                out.append(Step(kind="U", attrs=attrs))
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            seconds = e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            out.append(Step(kind="T", seconds=seconds.total_seconds()))
    return before, after


def command_signature(events: Iterable[Any]) -> list[tuple[Any, ...]]:
    """What a history asked Temporal to do, in order (see the module's doc)."""
    sig: list[tuple[Any, ...]] = []
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            sig.append(
                (
                    "activity",
                    a.start_to_close_timeout.ToSeconds(),
                    a.heartbeat_timeout.ToSeconds(),
                    _summary(e),
                )
            )
        elif is_local_activity(e):
            sig.append(("local activity", _summary(e)))
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            m = e.marker_recorded_event_attributes
            patch = m.details.get("patch-data")
            sig.append(("marker", m.marker_name, _text(patch.payloads[0]) if patch else None))
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            sig.append(("upsert", sorted(_attrs(e).items())))
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            a = e.timer_started_event_attributes
            sig.append(("timer", a.start_to_fire_timeout.ToSeconds()))
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            sig.append(("signal", e.workflow_execution_signaled_event_attributes.signal_name))
    return sig


def payload_bytes(events: Iterable[Any]) -> int:
    """Bytes of activity inputs and results and local activity results in a history."""
    n = 0
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            n += _size(e.activity_task_scheduled_event_attributes.input)
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            n += _size(e.activity_task_completed_event_attributes.result)
        elif is_local_activity(e):
            result = e.marker_recorded_event_attributes.details.get("result")
            n += _size(result) if result else 0
    return n
