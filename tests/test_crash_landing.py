"""The crash suite's reading of where a kill landed (tests/integration/test_crash.py), checked on
hand-built histories, so the suite's "at least five distinct phases" cannot pass by misreading:
an activity attempt that timed out across the kill counts, a retry after an ordinary failure or a
benign poll does not, and a workflow task that timed out counts for its workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from tests.integration.test_crash import land, phase_of, spans

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def at(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


def event(event_id: int, kind: EventType.ValueType, seconds: float) -> HistoryEvent:
    e = HistoryEvent(event_id=event_id, event_type=kind)
    e.event_time.FromDatetime(T0 + timedelta(seconds=seconds))
    return e


def activity(
    first_id: int, name: str, scheduled: float, started: float, attempt: int, timed_out: bool
) -> list[HistoryEvent]:
    sched = event(first_id, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, scheduled)
    sched.activity_task_scheduled_event_attributes.activity_type.name = name
    start = event(first_id + 1, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, started)
    a = start.activity_task_started_event_attributes
    a.scheduled_event_id, a.attempt = first_id, attempt
    if timed_out:
        a.last_failure.timeout_failure_info.SetInParent()
    elif attempt > 1:
        a.last_failure.application_failure_info.type = "StackInProgress"  # a benign poll retry
    return [
        sched,
        start,
        event(first_id + 2, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, started + 1),
    ]


def test_only_attempts_cut_short_by_a_timeout_count():
    cluster = activity(
        5, "create_stack", 10, 75, attempt=2, timed_out=True
    )  # killed at 12 s, retried at 75 s
    cluster += activity(
        8, "poll_stack", 80, 200, attempt=5, timed_out=False
    )  # benign retries: not a kill
    cluster += activity(11, "delete_stack", 300, 301, attempt=1, timed_out=False)
    wt_sched = event(14, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 400)
    wt_out = event(15, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, 405)
    wt_out.workflow_task_timed_out_event_attributes.scheduled_event_id = (
        14  # schedule-to-start: never started
    )
    got = spans("cluster-crash0-k0", [*cluster, wt_sched, wt_out])
    assert got == [
        (at(10), at(75), "cluster-crash0-k0", "create_stack"),
        (at(400), at(405), "cluster-crash0-k0", ""),
    ]


def test_each_kill_gets_the_phase_it_landed_in():
    all_spans = [
        (at(10), at(75), "cluster-crash0-k0", "create_stack"),
        (at(100), at(160), "cluster-crash0-k1", "poll_stack"),
        (at(300), at(360), "cluster-crash0-k1", "poll_stack"),
        (at(400), at(405), "billing-crash0", ""),
        (at(500), at(560), "org-crash0-cleanup-us-east-1", "delete_stack"),
        (at(600), at(660), "org-crash0-images", "share_image"),
    ]
    kills = [{"at": at(s)} for s in (12, 101, 301, 402, 501, 601, 700)]
    land(kills, all_spans, {"cluster-crash0-k1": at(250)})
    assert [k["landing_phases"] for k in kills] == [
        ["create"],
        ["wait"],
        ["delete"],
        ["billing"],
        ["offboarding"],
        ["onboarding"],
        [],
    ]
    assert kills[3]["landed_on"] == ["billing-crash0 workflow task"] and kills[6]["landed_on"] == []
    assert [k["resumed_after_s"] for k in kills] == [63.0, 59.0, 59.0, 3.0, 59.0, 59.0, None]


def test_phase_of():
    assert phase_of("cluster-o-k0", "poll_stack") == "wait"
    assert phase_of("cluster-o-k0", "check_stack") == "wait"  # the event-driven wait's look
    assert phase_of("cluster-o-k0", "poll_stack", cluster_deleting=True) == "delete"
    assert phase_of("cluster-o-k0", "delete_stack") == "delete"
    assert phase_of("org-o-region-us-east-1", "create_stack") == "onboarding"
    assert phase_of("billing-o", "meter_usage") == "billing"
    assert phase_of("org-o-cleanup-us-east-1", "") == "offboarding"
