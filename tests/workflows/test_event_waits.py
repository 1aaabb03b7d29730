"""Event-driven stack waits (workflows/_waiting.py) on the time-skipping server: detection lag and
Temporal actions per wait (tests/support/wait_costs.py), each claim with its planted-defect twin,
and the ``stack_event`` signal treated as an untrusted hint."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import UnsandboxedWorkflowRunner

from bridgehead import ids
from bridgehead import models as m
from tests.support.timeskip import serve
from tests.support.wait_costs import DELIVERY, measure_wait, stack_id
from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state
from workflows import _patches, _waiting
from workflows._waiting import safety_net_offsets

LAG_BOUND = timedelta(seconds=20)
ACTION_BOUND_40_MIN = 25


def expected_wait_actions(takes: timedelta) -> int:
    """The check at once, safety-net checks before the event (each with its timer), the timer in
    flight when the event arrives, the signal and the check it triggers."""
    before = sum(1 for at in safety_net_offsets() if at < takes + DELIVERY)
    return 1 + 2 * (before - 1) + 1 + 1 + 1


@pytest.mark.parametrize("minutes", [10, 40, 180])
async def test_event_wait_sees_the_stack_within_20_s_and_costs_few_actions(ts_env, minutes):
    takes = timedelta(minutes=minutes)
    cost = await measure_wait(ts_env, takes)
    # The event's delivery, plus the real milliseconds the worker takes to check (not skipped).
    assert DELIVERY.total_seconds() <= cost.lag_seconds < DELIVERY.total_seconds() + 1
    assert cost.lag_seconds <= LAG_BOUND.total_seconds()
    assert cost.wait_actions == expected_wait_actions(takes), cost
    assert cost.signals == 1
    if minutes == 40:
        assert cost.wait_actions <= ACTION_BOUND_40_MIN
        assert cost.wait_actions == 14
        assert cost.actions_to_running <= ACTION_BOUND_40_MIN  # even the whole creation


async def test_twin_the_30_s_poll_without_events_exceeds_the_action_bound(ts_env, monkeypatch):
    """Planted defect: the wait of today (patch off: 10-minute windows of 30 s retries). The
    action count sees every retry attempt (not one per window), so the bound catches it."""
    monkeypatch.setattr(_patches, "patched", lambda patch_id: patch_id != _waiting.PATCH)
    cost = await measure_wait(
        ts_env, timedelta(minutes=40), send_event=False, runner=UnsandboxedWorkflowRunner()
    )
    assert cost.checks >= 79, cost  # one attempt per 30 s for 40 minutes
    assert cost.wait_actions > ACTION_BOUND_40_MIN


async def test_twin_ignored_events_make_the_lag_exceed_20_s(ts_env, monkeypatch):
    """Planted defect: the workflow ignores every ``stack_event``; only the safety net sees the
    stack (the next check after minute 40 is at minute 43)."""
    monkeypatch.setattr(_waiting.StackHints, "receive", lambda self, *a: False)
    cost = await measure_wait(ts_env, timedelta(minutes=40), runner=UnsandboxedWorkflowRunner())
    assert 3 * 60 <= cost.lag_seconds < 3 * 60 + 1
    assert cost.lag_seconds > LAG_BOUND.total_seconds()


async def _hint_at_minute_20(env, notice: m.StackEventNotice | None, own: bool) -> list[str]:
    """Send one hint 20 minutes into a 40-minute creation; the checks made within the next minute."""
    cloud = FakeCloud(create_takes=timedelta(minutes=40))
    name = f"h{uuid.uuid4().hex[:8]}"
    async with serve(env, cloud.activities()) as w:
        h = await w.start_cluster(CFG, name)
        await until_state(env, h, m.ClusterState.CREATING)
        await env.sleep(timedelta(minutes=20))
        hinted_at = await env.get_current_time()
        if notice is None:
            notice = m.StackEventNotice(
                stack_id=stack_id(
                    ids.cluster_stack("acme", name) if own else "bridgehead-acme--cluster-other"
                ),
                status="CREATE_COMPLETE",
            )
        await h.signal("stack_event", notice)
        await env.sleep(timedelta(seconds=30))
        status = await h.query("status", result_type=m.ClusterStatus)
        failed_tasks = [
            e
            for e in (await h.fetch_history()).events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        await h.terminate("measured")
    assert failed_tasks == []  # a bad hint never wedges the workflow
    assert status.state == m.ClusterState.CREATING  # a hint is never the truth
    return [st for at, st in cloud.checks if hinted_at <= at <= hinted_at + timedelta(minutes=1)]


async def test_a_hint_for_another_stack_is_ignored(ts_env):
    assert await _hint_at_minute_20(ts_env, None, own=False) == []


async def test_a_malformed_hint_is_dropped_and_the_wait_goes_on(ts_env):
    bad = m.StackEventNotice.model_construct(stack_id="x" * 400, status="done; rm -rf")
    assert await _hint_at_minute_20(ts_env, bad, own=True) == []


async def test_twin_a_hint_for_its_own_stack_is_checked_at_once_and_not_believed(ts_env):
    # The hint says CREATE_COMPLETE at minute 20; the check says otherwise and wins.
    assert await _hint_at_minute_20(ts_env, None, own=True) == ["CREATE_IN_PROGRESS"]


async def _two_hints_a_second_apart(env, runner=None) -> list[float]:
    """Two hints for its own stack at minute 20 and 20 m 01 s; seconds from the first hint to each
    look that followed."""
    cloud = FakeCloud(create_takes=timedelta(minutes=40))
    name = f"f{uuid.uuid4().hex[:8]}"
    async with serve(env, cloud.activities(), runner=runner) as w:
        h = await w.start_cluster(CFG, name)
        await until_state(env, h, m.ClusterState.CREATING)
        await env.sleep(timedelta(minutes=20))
        notice = m.StackEventNotice(
            stack_id=stack_id(ids.cluster_stack("acme", name)), status="CREATE_COMPLETE"
        )
        first = await env.get_current_time()
        await h.signal("stack_event", notice)
        await env.sleep(timedelta(seconds=1))
        await h.signal("stack_event", notice)
        await env.sleep(timedelta(seconds=30))
        await h.terminate("measured")
    return [
        round((at - first).total_seconds())
        for at, _ in cloud.checks
        if first <= at <= first + timedelta(minutes=1)
    ]


async def test_a_flood_of_hints_costs_at_most_one_look_per_10_s(ts_env):
    assert await _two_hints_a_second_apart(ts_env) == [0, 10]


async def test_twin_without_the_spacing_every_hint_is_a_look(ts_env, monkeypatch):
    monkeypatch.setattr(_waiting, "HINT_SPACING", timedelta(0))
    assert await _two_hints_a_second_apart(ts_env, UnsandboxedWorkflowRunner()) == [0, 1]
