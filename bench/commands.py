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
#: Commands the script does not replay: a history holding one is refused, not half copied.
_NOT_REPLAYED = {
    EventType.EVENT_TYPE_TIMER_CANCELED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED,
}


class NotReplayable(ValueError):
    """The history holds a command the command ceiling does not replay."""


def _text(payload: Any) -> Any:
    return json.loads(payload.data) if payload.data else None


def _summary(event: Any) -> str | None:
    s = event.user_metadata.summary
    return _text(s) if s.data else None


def _size(payloads: Any) -> int:
    return sum(len(p.data) for p in payloads.payloads)


def _local_result(event: Any) -> int:
    """Bytes of a local activity's result (its marker's ``result`` detail)."""
    result = event.marker_recorded_event_attributes.details.get("result")
    return _size(result) if result else 0


def _seconds(duration: Any) -> float:
    return float(duration.ToTimedelta().total_seconds())


def _retry(a: Any) -> dict[str, Any] | None:
    if not a.HasField("retry_policy"):
        return None
    r = a.retry_policy
    return {
        "initial_interval": _seconds(r.initial_interval),
        "backoff_coefficient": r.backoff_coefficient,
        "maximum_interval": _seconds(r.maximum_interval),
        "maximum_attempts": r.maximum_attempts,
        "non_retryable_error_types": list(r.non_retryable_error_types),
    }


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
        if t in _NOT_REPLAYED:
            raise NotReplayable(f"event {e.event_id}: {EventType.Name(t)} is not replayed")
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            name = e.workflow_execution_signaled_event_attributes.signal_name
            if name != signal:
                raise NotReplayable(f"event {e.event_id}: signal {name!r} is not replayed")
            out = after
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            out.append(
                Step(
                    kind="A",
                    summary=_summary(e),
                    start_to_close_s=_seconds(a.start_to_close_timeout),
                    schedule_to_close_s=_seconds(a.schedule_to_close_timeout) or None,
                    heartbeat_s=_seconds(a.heartbeat_timeout) or None,
                    retry=_retry(a),
                    in_bytes=_size(a.input),
                    out_bytes=results.get(e.event_id, 0),
                )
            )
        elif is_local_activity(e):
            out.append(Step(kind="L", summary=_summary(e), out_bytes=_local_result(e)))
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            m = e.marker_recorded_event_attributes
            if m.marker_name != _PATCH_MARKER:
                raise NotReplayable(f"event {e.event_id}: marker {m.marker_name!r} is not replayed")
            out.append(Step(kind="P", patch=_text(m.details["patch-data"].payloads[0])["id"]))
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attrs = {k: v for k, v in _attrs(e).items() if k != CHANGE_VERSION}
            if attrs:
                out.append(Step(kind="U", attrs=attrs))
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            seconds = _seconds(e.timer_started_event_attributes.start_to_fire_timeout)
            out.append(Step(kind="T", seconds=seconds, summary=_summary(e)))
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
                    a.schedule_to_close_timeout.ToSeconds(),
                    a.heartbeat_timeout.ToSeconds(),
                    _retry(a),
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
            sig.append(("timer", a.start_to_fire_timeout.ToSeconds(), _summary(e)))
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            sig.append(("signal", e.workflow_execution_signaled_event_attributes.signal_name))
        elif t in _NOT_REPLAYED:
            sig.append(("not replayed", EventType.Name(t)))
    return sig


def payload_sizes(events: Iterable[Any]) -> list[tuple[str, int]]:
    """Bytes of each activity input and result and each local activity result, in order."""
    out: list[tuple[str, int]] = []
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            out.append(("input", _size(e.activity_task_scheduled_event_attributes.input)))
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            out.append(("result", _size(e.activity_task_completed_event_attributes.result)))
        elif is_local_activity(e):
            out.append(("local result", _local_result(e)))
    return out
