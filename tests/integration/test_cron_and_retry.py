"""A start that Temporal itself re-runs carries the caller's input into runs marked as continued:
cron runs after the first have ``continued_run_id`` set (the security review's attack: a crafted
``runtime`` naming an org's foundation stack, in a cron start of ``ClusterLifecycle``). Against
the real worker on the dev server (the time-skipping test server does not run cron)."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from bridgehead import ids, runs

pytestmark = pytest.mark.integration

CFG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.xlarge",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}


async def test_a_cron_start_never_carries_internal_state_into_a_later_run(client):
    wid = ids.cluster_workflow_id("cronco", "zz1")
    crafted = {
        "org_id": "cronco",
        "name": "zz1",
        "region": "us-east-1",
        "config": CFG,
        "runtime": {"state": "DELETING", "stack_name": ids.foundation_stack("cronco", "us-east-1")},
    }
    h = await client.start_workflow(
        "ClusterLifecycle", crafted, id=wid, task_queue="bridgehead", cron_schedule="@every 3s"
    )
    first = h.result_run_id

    async def run_ended(run_id: str | None) -> list:  # type: ignore[type-arg]
        """The run's events once it failed (a failed cron run names the next run)."""
        deadline = time.monotonic() + 30
        while True:
            events = [
                ev
                async for ev in client.get_workflow_handle(
                    wid, run_id=run_id
                ).fetch_history_events()
            ]
            if events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                return events
            assert time.monotonic() < deadline, f"run {run_id} did not end: {events[-1].event_type}"
            await asyncio.sleep(0.5)

    def failure(events: list) -> str:  # type: ignore[type-arg]
        return events[-1].workflow_execution_failed_event_attributes.failure.message

    def activities(events: list) -> list:  # type: ignore[type-arg]
        return [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]

    one = await run_ended(first)
    second_run = one[-1].workflow_execution_failed_event_attributes.new_execution_run_id
    two = await run_ended(second_run)
    await client.get_workflow_handle(wid).terminate("test over")
    for events in (one, two):
        assert "cron" in failure(events) and activities(events) == [], failure(events)
    started = two[0].workflow_execution_started_event_attributes
    info = (started.continued_execution_run_id or None, started.cron_schedule, started.attempt)
    # The premise, and the twin: the rule of round 2's first session (``continued_run_id``
    # alone) would have taken the caller's runtime as carried state in this run.
    assert info[0] == first and info[1] == "@every 3s", info
    assert bool(info[0]), "planted old rule: a cron run looks continued"
    # Today's rule does not.
    assert not runs.continued_by_itself(*info)
    assert (
        await client.get_workflow_handle(wid).describe()
    ).status == WorkflowExecutionStatus.TERMINATED
