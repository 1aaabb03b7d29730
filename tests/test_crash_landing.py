"""The crash suite's reading of where a kill landed (tests/integration/test_crash.py), checked on
hand-built histories, so the suite's "at least five distinct phases" cannot pass by misreading:
an activity attempt that timed out across the kill counts, a retry after an ordinary failure or a
benign poll does not, and a workflow task that timed out counts for its workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig, LocalActivityConfig

from tests.integration.test_crash import Span, failover, land, phase_of, spans
from workflows import _options as options

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def at(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


def event(event_id: int, kind: EventType.ValueType, seconds: float) -> HistoryEvent:
    e = HistoryEvent(event_id=event_id, event_type=kind)
    e.event_time.FromDatetime(T0 + timedelta(seconds=seconds))
    return e


def activity(
    first_id: int,
    name: str,
    scheduled: float,
    started: float,
    attempt: int,
    timed_out: bool,
    identity: str = "2@host",
) -> list[HistoryEvent]:
    sched = event(first_id, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, scheduled)
    sched.activity_task_scheduled_event_attributes.activity_type.name = name
    start = event(first_id + 1, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, started)
    a = start.activity_task_started_event_attributes
    a.scheduled_event_id, a.attempt, a.identity = first_id, attempt, identity
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
    wt_again = event(16, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 405)
    wt_started = event(17, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 406.5)
    wt_started.workflow_task_started_event_attributes.identity = "2@host"
    got = spans("cluster-crash0-k0", [*cluster, wt_sched, wt_out, wt_again, wt_started])
    assert got == [
        Span(at(10), at(75), "cluster-crash0-k0", "create_stack", at(75), "2@host"),
        Span(at(400), at(405), "cluster-crash0-k0", "", at(406.5), "2@host"),
    ]


def test_each_kill_gets_the_phase_it_landed_in():
    def sp(began: float, ended: float, wf_id: str, what: str, resumed: float) -> Span:
        return Span(at(began), at(ended), wf_id, what, at(resumed), "2@host")

    all_spans = [
        sp(10, 75, "cluster-crash0-k0", "create_stack", 75),
        sp(100, 160, "cluster-crash0-k1", "poll_stack", 160),
        sp(300, 360, "cluster-crash0-k1", "poll_stack", 360),
        sp(400, 405, "billing-crash0", "", 405.5),
        sp(500, 560, "org-crash0-cleanup-us-east-1", "delete_stack", 560),
        sp(600, 660, "org-crash0-images", "share_image", 660),
    ]
    kills = [{"at": at(s), "victim": "1@host"} for s in (12, 101, 301, 402, 501, 601, 700)]
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
    assert [k["resumed_after_s"] for k in kills] == [63.0, 59.0, 59.0, 3.5, 59.0, 59.0, None]


def test_phase_of():
    assert phase_of("cluster-o-k0", "poll_stack") == "wait"
    assert phase_of("cluster-o-k0", "check_stack") == "wait"  # the event-driven wait's look
    assert phase_of("cluster-o-k0", "poll_stack", cluster_deleting=True) == "delete"
    assert phase_of("cluster-o-k0", "delete_stack") == "delete"
    assert phase_of("org-o-region-us-east-1", "create_stack") == "onboarding"
    assert phase_of("billing-o", "meter_usage") == "billing"
    assert phase_of("org-o-cleanup-us-east-1", "") == "offboarding"


def killed_attempt(opts: ActivityConfig, started: float, killed: float) -> list[HistoryEvent]:
    """The history the server writes for an activity whose attempt (started at ``started``) died
    with its worker at ``killed``, worst case: the server notices at the heartbeat timeout after
    the last heartbeat that reached it (sent just before the kill), or at the start-to-close
    timeout without heartbeats; it retries after the retry policy's initial interval, and the
    survivor starts the retry at once (it is long-polling the queue)."""
    s2c = opts["start_to_close_timeout"].total_seconds()
    hb = opts.get("heartbeat_timeout")
    noticed = started + s2c
    if hb:
        noticed = min(noticed, killed + hb.total_seconds())
    retry = opts["retry_policy"]
    again = noticed + (retry.initial_interval.total_seconds() if retry.maximum_attempts != 1 else 0)
    return activity(5, "delete_stack", started - 0.1, again, attempt=2, timed_out=True)


def measured_failover(opts: ActivityConfig) -> dict:
    kills = [{"at": at(12), "victim": "1@host"}, {"at": at(112), "victim": "1@host"}]
    hist = killed_attempt(opts, 10, 12)
    second = killed_attempt(opts, 110, 112)
    for e in second:
        e.event_id += 10
    second[1].activity_task_started_event_attributes.scheduled_event_id += 10
    all_spans = spans("cluster-crash0-k0", hist) + spans("cluster-crash0-k1", second)
    land(kills, all_spans, {})
    return failover(kills)


#: Local-activity sets: no heartbeat; they fail over with their workflow task (test below).
LOCAL_SETS = {"REGISTRY_LOCAL"}


def test_every_option_set_fails_over_within_bounds():
    sets = {
        name: v
        for name, v in vars(options).items()
        if name.isupper() and isinstance(v, dict) and name not in LOCAL_SETS
    }
    assert set(sets) == {
        "AWS_CALL",
        "REGISTRY",
        "LEDGER_WORK",
        "ONE_SHOT",
        "VERIFY",
        "POLL",
        "CHECK",
        "NOTIFY",
        "IMAGE_WAIT",
    }
    for name, opts in sets.items():
        got = measured_failover(opts)
        assert got["within_bounds"], (name, got)
        assert got["max_s"] <= 11.0, (name, got)  # heartbeat timeout + initial interval


def local_set_problems() -> list[str]:
    """What keeps a local-activity set from failing over with its workflow task (10 s)."""
    problems = []
    for name in LOCAL_SETS:
        opts = getattr(options, name)
        if "heartbeat_timeout" in opts:
            problems.append(f"{name}: a heartbeat timeout, which local activities do not have")
        if opts["start_to_close_timeout"] > timedelta(seconds=10):
            problems.append(f"{name}: start-to-close longer than the workflow task's 10 s")
    return problems


def test_a_local_activity_set_fails_over_with_its_workflow_task():
    """A local activity runs inside the workflow task that asked for it: when its worker dies, the
    task times out (the 10 s default; the crash suite measures it as "the first workflow task after
    a timed-out one") and another worker runs the call again. Its start-to-close is no longer, so a
    call hung on a live worker is cut as soon; the set has no heartbeat to fail over by."""
    assert {n for n, v in vars(options).items() if n.endswith("_LOCAL")} == LOCAL_SETS
    assert local_set_problems() == []


def test_twin_a_local_set_that_outlives_its_workflow_task_is_reported(monkeypatch):
    """Planted defect: the local registry set given AWS_CALL's 20 s start-to-close."""
    monkeypatch.setattr(
        options,
        "REGISTRY_LOCAL",
        LocalActivityConfig(start_to_close_timeout=timedelta(seconds=20)),
    )
    assert local_set_problems() == [
        "REGISTRY_LOCAL: start-to-close longer than the workflow task's 10 s"
    ]


def test_twin_a_long_start_to_close_without_heartbeat_fails_the_failover_check(monkeypatch):
    """Planted defect: AWS_CALL as it was (60 s start-to-close, no heartbeat timeout)."""
    monkeypatch.setattr(
        options,
        "AWS_CALL",
        ActivityConfig(
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1)),
        ),
    )
    got = measured_failover(options.AWS_CALL)
    assert got == {
        "resume_times_s": [59.0, 59.0],
        "p95_s": 59.0,
        "max_s": 59.0,
        "within_bounds": False,
    }


def test_work_resumed_only_by_the_killed_worker_is_not_failover():
    kills = [{"at": at(12), "victim": "2@host"}]  # the retry ran on the killed worker's identity
    land(kills, spans("w", activity(5, "delete_stack", 10, 21, attempt=2, timed_out=True)), {})
    assert kills[0]["resumed_after_s"] == float("inf")
