"""Once an organisation is READY, the admin's e-mail, the billing meter's start and the daily
re-verification Schedule are started by one workflow task (patch ``ready-at-once``, issue 23):
three round trips through the server became one, on the way from the verified role to the
organisation's last step.

* a new run (time-skipping server, fake activities) schedules the three from the same workflow task,
  after the registry said READY; twin: the former order (the patch not taken) takes three tasks;
* a run that re-verifies with its own daily timer (it answered the patch ``reverify-schedule``
  False, before the baseline) gets no Schedule from the new step either; twin: the step without
  that guard would give it both;
* runs recorded before the patch replay in the former order (tests/test_replay.py replays the
  corpus, ``OnboardOrganization--images-beside-foundations`` among them). Found while writing the
  twin of that claim: the SDK's replay also accepts the new order on an old history (the same
  commands in the same sequence, given by fewer tasks), so no nondeterminism twin can be written;
  the patch is kept so that each run's version is explicit in its history and old runs keep
  exactly their path.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import UnsandboxedWorkflowRunner

import workflows._patches as patches
from bridgehead import models as m
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import FakeCloud
from tests.workflows.test_onboarding_order import (
    onboarding_fakes,
    start_onboarding,
)
from workflows import _activities as acts
from workflows._options import REGISTRY
from workflows.onboarding import READY_AT_ONCE


@workflow.defn(name="BillingMeter")
class QuietMeter:
    """The billing meter's place: started and done (its own tests are elsewhere)."""

    @workflow.run
    async def run(self, input: m.BillingMeterInput) -> None:
        return None


def ready_fakes(calls: list[str]) -> list:
    @activity.defn(name="share_image")
    def share_image(req: m.ShareImageInput) -> m.ShareImageResult:
        calls.append(f"share:{req.region}")
        return m.ShareImageResult(image_id=f"ami-{req.region}", snapshot_ids=["snap-1"])

    @activity.defn(name="ensure_reverify_schedule")
    def ensure_reverify_schedule(req: m.ReverifyInput) -> str:
        calls.append("schedule")
        return f"org-{req.org_id}-reverify"

    cloud = FakeCloud(create_takes=timedelta(minutes=6))
    mine = {"share_image": share_image, "ensure_reverify_schedule": ensure_reverify_schedule}
    fakes = [
        a
        for a in onboarding_fakes(cloud, calls)
        if a.__temporal_activity_definition.name not in mine
    ]
    return fakes + list(mine.values())


@pytest.fixture
async def ts_env():  # type: ignore[no-untyped-def]
    """A time-skipping server per test (it starts in about a second), instead of the module's
    shared one: once, in CI on 4fe07c6, the shared server could no longer skip after this module's
    first test (every later ``env.sleep`` failed with "Timeout expired"), the stall of
    tests/support/timeskip that ending what a block ran does not mend."""
    from tests.conftest import new_ts_env

    env = await new_ts_env()
    yield env
    await env.shutdown()


async def onboard_to_ready(env, settled=None) -> tuple[m.OrgStatus, WorkflowHistory, list[str]]:  # type: ignore[no-untyped-def]
    """Onboard to READY; ``settled(status, calls)`` says when to stop (default: READY or
    ACTION_REQUIRED, and the Schedule made)."""
    from worker import WORKFLOWS

    settled = settled or (
        lambda s, calls: (
            s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED) and "schedule" in calls
        )
    )

    calls: list[str] = []
    org = f"rdy{uuid.uuid4().hex[:6]}"
    flows = [w for w in WORKFLOWS if w.__temporal_workflow_definition.name != "BillingMeter"]
    async with serve(
        env,
        ready_fakes(calls),
        workflows=[*flows, QuietMeter],
        runner=UnsandboxedWorkflowRunner(),  # a monkeypatched workflows._patches reaches it
        threads=8,
    ) as w:
        h = await start_onboarding(w, org)
        for _ in range(60):
            s = await h.query("status", result_type=m.OrgStatus)
            if settled(s, calls):
                break
            await env.sleep(timedelta(minutes=1))
        return s, await h.fetch_history(), calls


def tail_tasks(h: WorkflowHistory) -> dict[str, int]:
    """The e-mail's, the meter's and the schedule's commands -> the workflow task that gave them."""
    out: dict[str, int] = {}
    for e in h.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name in ("notify", "ensure_reverify_schedule"):
                out.setdefault(a.activity_type.name, a.workflow_task_completed_event_id)
        elif e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            c = e.start_child_workflow_execution_initiated_event_attributes
            if c.workflow_type.name == "BillingMeter":
                out["BillingMeter"] = c.workflow_task_completed_event_id
    return out


async def test_ready_starts_the_email_the_meter_and_the_schedule_in_one_task(ts_env):
    s, h, calls = await onboard_to_ready(ts_env)
    assert s.state == m.OrgState.READY, s.last_error
    tasks = tail_tasks(h)
    assert set(tasks) == {"notify", "BillingMeter", "ensure_reverify_schedule"}, tasks
    assert len(set(tasks.values())) == 1, tasks
    # The registry said READY before any of them (status READY only once the registry does).
    assert calls.index("state:READY") < calls.index("schedule"), calls
    assert calls.count("schedule") == 1, calls  # the loop found it made: not asked twice
    assert READY_AT_ONCE in patches.AFTER_BASELINE  # its own marker: not in the baseline


async def test_twin_the_former_order_takes_three_tasks(ts_env, monkeypatch: pytest.MonkeyPatch):
    real = patches.patched
    monkeypatch.setattr(
        patches, "patched", lambda pid: False if pid == READY_AT_ONCE else real(pid)
    )
    s, h, calls = await onboard_to_ready(ts_env)
    assert s.state == m.OrgState.READY, s.last_error
    tasks = tail_tasks(h)
    assert set(tasks) == {"notify", "BillingMeter", "ensure_reverify_schedule"}, tasks
    assert len(set(tasks.values())) == 3, tasks


def timer_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that answered ``reverify-schedule`` False and took ``ready-at-once``."""
    real = patches.patched
    monkeypatch.setattr(
        patches,
        "patched",
        lambda pid: (
            False if pid == "reverify-schedule" else True if pid == READY_AT_ONCE else real(pid)
        ),
    )


def ready(s: m.OrgStatus, calls: list[str]) -> bool:
    return s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED) and any(
        "billing meter started" in st for st in s.steps
    )


async def test_a_run_on_its_own_timer_gets_no_schedule(ts_env, monkeypatch: pytest.MonkeyPatch):
    timer_run(monkeypatch)
    s, h, calls = await onboard_to_ready(ts_env, ready)
    assert s.state == m.OrgState.READY, s.last_error
    assert "schedule" not in calls and set(tail_tasks(h)) == {"notify", "BillingMeter"}, calls


async def test_twin_the_step_without_its_guard_schedules_as_well(
    ts_env, monkeypatch: pytest.MonkeyPatch
):
    from workflows.onboarding import OnboardOrganizationWorkflow

    timer_run(monkeypatch)

    async def unguarded(self, org_id: str) -> None:  # type: ignore[no-untyped-def]
        if not self._s.reverify_scheduled:
            await acts.ensure_reverify_schedule(
                m.ReverifyInput(org_id=org_id), summary="schedule", **REGISTRY
            )
            self._s.reverify_scheduled = True

    monkeypatch.setattr(OnboardOrganizationWorkflow, "_schedule_reverify", unguarded)
    s, _, calls = await onboard_to_ready(ts_env, ready)
    assert s.state == m.OrgState.READY, s.last_error
    assert "schedule" in calls, calls
