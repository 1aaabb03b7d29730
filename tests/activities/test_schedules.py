"""activities/schedules.py against a Temporal dev server (``temporal server start-dev`` from the
venv; the time-skipping test server has no Schedules): the organisation's re-verification
Schedule is created with its interval, action and memo, brought up to date by a second call
(keeping the operator's pause), and deleted, a second delete saying it was already gone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError

from activities.schedules import ScheduleActivities
from bridgehead import ids
from bridgehead import models as m
from bridgehead.settings import Settings
from tests.activities.conftest import run
from tests.conftest import TEST_KEY

ACTIVITIES = ("ensure_reverify_schedule", "delete_reverify_schedule")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def temporal() -> AsyncIterator[Client]:
    from temporalio.testing import WorkflowEnvironment

    from bridgehead.converter import make_data_converter
    from starter.local import bin_path

    env = await WorkflowEnvironment.start_local(
        data_converter=make_data_converter(TEST_KEY),
        dev_server_existing_path=bin_path("temporal"),
        dev_server_log_level="error",
    )
    yield env.client
    await env.shutdown()


@pytest.fixture
def acts(temporal: Client) -> ScheduleActivities:
    return ScheduleActivities(temporal, Settings(environment="local", task_queue="bridgehead-q"))


async def test_the_schedule_is_created_then_brought_up_to_date_keeping_its_pause(
    acts: ScheduleActivities, temporal: Client
):
    org = f"sched{uuid.uuid4().hex[:6]}"
    sid = await run(acts.ensure_reverify_schedule, m.ReverifyInput(org_id=org, every_hours=24))
    assert sid == ids.reverify_schedule_id(org)
    handle = temporal.get_schedule_handle(sid)
    first = await handle.describe()
    action = first.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.id) == (
        "ReverifyOrganization",
        "bridgehead-q",
        sid,
    )
    (arg,) = await temporal.data_converter.decode(action.args, [m.ReverifyInput])  # type: ignore[arg-type]
    assert arg == m.ReverifyInput(org_id=org, every_hours=24)
    assert [i.every for i in first.schedule.spec.intervals] == [timedelta(hours=24)]
    assert await first.memo_value("org_id") == org
    await handle.pause(note="operator: maintenance")
    again = await run(acts.ensure_reverify_schedule, m.ReverifyInput(org_id=org, every_hours=6))
    assert again == sid
    updated = await handle.describe()
    assert [i.every for i in updated.schedule.spec.intervals] == [timedelta(hours=6)]
    (arg,) = await temporal.data_converter.decode(updated.schedule.action.args, [m.ReverifyInput])  # type: ignore[union-attr, arg-type]
    assert arg.every_hours == 6
    assert updated.schedule.state.paused and updated.schedule.state.note == "operator: maintenance"


async def test_the_schedule_is_deleted_and_a_second_delete_is_done(
    acts: ScheduleActivities, temporal: Client
):
    org = f"sched{uuid.uuid4().hex[:6]}"
    await run(acts.ensure_reverify_schedule, m.ReverifyInput(org_id=org))
    assert await run(acts.delete_reverify_schedule, m.ReverifyInput(org_id=org)) is True
    with pytest.raises(RPCError):
        await temporal.get_schedule_handle(ids.reverify_schedule_id(org)).describe()
    assert await run(acts.delete_reverify_schedule, m.ReverifyInput(org_id=org)) is False
    ids_left = [s.id async for s in await temporal.list_schedules()]
    assert ids.reverify_schedule_id(org) not in ids_left
