"""Record the replay corpus's paths that the emulator cannot produce (moto completes every stack at
once): a resize, a failed stack, a cancel, and a BillingMeter continue-as-new (the run that ends in
it and the run that starts from it), on the time-skipping server with the fake cloud of
test_cluster_timeskip.py, under the workflow ids users would use (so id checks replay too).

Opt-in like the dev-server recorder: ``BRIDGEHEAD_RECORD_HISTORIES=1``. Stored through
tests/support/replay_corpus.py, which refuses to overwrite a history that no longer replays.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio import activity
from temporalio.worker import Worker

from bridgehead import ids
from bridgehead import models as m
from tests.support.replay_corpus import features, store
from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state
from worker import WORKFLOWS, sandbox_runner

pytestmark = pytest.mark.skipif(
    not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"),
    reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories",
)


async def cluster_history(env, name: str, cloud: FakeCloud, body):  # type: ignore[no-untyped-def]
    tq = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(8) as ex:
        async with Worker(
            env.client,
            task_queue=tq,
            workflows=WORKFLOWS,
            activities=cloud.activities(),
            activity_executor=ex,
            workflow_runner=sandbox_runner(),
        ):
            h = await env.client.start_workflow(
                "ClusterLifecycle",
                m.ClusterLifecycleInput(org_id="acme", name=name, region="us-east-1", config=CFG),
                id=ids.cluster_workflow_id("acme", name),
                task_queue=tq,
                result_type=m.ClusterResult,
            )
            await body(h)
            await h.result()
            return await h.fetch_history()


async def test_record_resize_failed_stack_and_cancel(ts_env):
    async def resize(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        await ts_env.sleep(timedelta(minutes=30))
        await h.execute_update("resize", m.ResizeInput(compute_nodes=2), result_type=m.ResizeResult)
        await ts_env.sleep(timedelta(minutes=30))
        await h.signal("delete")

    async def failed(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.FAILED, step=timedelta(minutes=5))
        await h.signal("delete")

    async def cancel(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.CREATING)
        await ts_env.sleep(timedelta(minutes=12))
        await h.signal("cancel")

    scenarios = [
        ("resize", "rz1", FakeCloud(create_takes=timedelta(minutes=10)), resize),
        (
            "failed-stack",
            "fl1",
            FakeCloud(create_takes=timedelta(hours=1), fail_at=timedelta(minutes=25)),
            failed,
        ),
        ("cancel", "cn1", FakeCloud(create_takes=timedelta(minutes=40)), cancel),
    ]
    for feature, name, cloud, body in scenarios:
        hist = await cluster_history(ts_env, name, cloud, body)
        assert feature in features(hist), (feature, features(hist))
        await store(hist, f"ClusterLifecycle--{feature}")


async def test_record_event_wait(ts_env):
    """A 40-minute creation seen through its ``stack_event`` (workflows/_waiting.py), then deleted."""
    from tests.support.wait_costs import stack_id

    async def event_wait(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.CREATING)
        await ts_env.sleep(timedelta(minutes=40, seconds=5))
        notice = m.StackEventNotice(
            stack_id=stack_id(ids.cluster_stack("acme", "ev1")), status="CREATE_COMPLETE"
        )
        await h.signal("stack_event", notice)
        await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(seconds=5))
        await h.signal("delete")

    cloud = FakeCloud(create_takes=timedelta(minutes=40))
    hist = await cluster_history(ts_env, "ev1", cloud, event_wait)
    assert "event-wait" in features(hist), features(hist)
    await store(hist, "ClusterLifecycle--event-wait")


async def test_record_billing_continue_as_new(ts_env):
    """The first run of a BillingMeter (ends in continue-as-new after TICKS_PER_RUN ticks) and the
    run that continues it (starts from carried state)."""
    from workflows.billing import TICKS_PER_RUN

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        return m.CloseBillingPeriodsResult(
            entries_written=1,
            entries_existing=0,
            node_minutes=60,
            cost_usd=Decimal("0.04"),
            closed_until=req.until,
        )

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        return m.MeterUsageResult(sent=1, already_sent=0, unprocessed=0)

    tq = f"tq-{uuid.uuid4()}"
    wf_id = ids.billing_workflow_id("acme")
    with ThreadPoolExecutor(4) as ex:
        async with Worker(
            ts_env.client,
            task_queue=tq,
            workflows=WORKFLOWS,
            activities=[close_billing_periods, meter_usage],
            activity_executor=ex,
            workflow_runner=sandbox_runner(),
        ):
            h = await ts_env.client.start_workflow(
                "BillingMeter", m.BillingMeterInput(org_id="acme"), id=wf_id, task_queue=tq
            )
            first_run = (await h.describe()).run_id
            for _ in range(
                TICKS_PER_RUN // 24 + 2
            ):  # past the first continue-as-new, a day at a time
                await ts_env.sleep(timedelta(days=1))
            first = await ts_env.client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
            second_run = (await ts_env.client.get_workflow_handle(wf_id).describe()).run_id
            await ts_env.client.get_workflow_handle(wf_id).signal("stop")
            await ts_env.client.get_workflow_handle(wf_id).result()
            second = await ts_env.client.get_workflow_handle(
                wf_id, run_id=second_run
            ).fetch_history()
    assert "continued-as-new" in features(first), features(first)
    assert "continuation" in features(second), features(second)
    await store(first, "BillingMeter--continued-as-new")
    await store(second, "BillingMeter--continuation")


async def test_record_foundation_follow(ts_env):
    """A direct CleanupRegion that signals the organisation (``tell-org-foundation``) and the
    organisation that reads the registry and follows (``org-follows-foundations``)."""
    from tests.workflows.test_foundation_follow_timeskip import REGIONS, registry_fakes
    from tests.workflows.test_offboard_timeskip import SeedOrganization, ready_org, seeded

    registry = dict.fromkeys(REGIONS, "READY")
    tq, org = f"tq-{uuid.uuid4()}", "acme"
    cleanup_id = ids.cleanup_workflow_id(org, "us-west-1")
    with ThreadPoolExecutor(4) as ex:
        async with Worker(
            ts_env.client,
            task_queue=tq,
            workflows=[*WORKFLOWS, SeedOrganization],
            activities=registry_fakes(registry, []),
            activity_executor=ex,
            workflow_runner=sandbox_runner(),
        ):
            h = await seeded(ts_env.client, ready_org(org), tq)
            await ts_env.client.execute_workflow(
                "CleanupRegion",
                m.CleanupRegionInput(org_id=org, region="us-west-1"),
                id=cleanup_id,
                task_queue=tq,
            )
            for _ in range(100):
                s = await h.query("status", result_type=m.OrgStatus)
                if s.regions["us-west-1"].foundation == "DELETED":
                    break
                await ts_env.sleep(1)
            assert s.regions["us-west-1"].foundation == "DELETED"
            org_history = await h.fetch_history()
            cleanup = await ts_env.client.get_workflow_handle(cleanup_id).fetch_history()
            await h.terminate("recorded")
    assert "foundation-followed" in features(org_history), features(org_history)
    assert "cleanup-tells-org" in features(cleanup), features(cleanup)
    await store(org_history, "OnboardOrganization--foundation-followed")
    await store(cleanup, "CleanupRegion--tells-org")


async def test_record_capacity_failover(ts_env):
    """A cluster whose first two attempts find no capacity and whose third runs (issue 21)."""
    from tests.workflows.test_capacity_timeskip import CapacityCloud, fail_over

    cloud = CapacityCloud()
    _, res = await fail_over(ts_env, cloud)
    wf_id = ids.cluster_workflow_id("acme", res.name)
    hist = await ts_env.client.get_workflow_handle(wf_id).fetch_history()
    assert "capacity-failover" in features(hist), features(hist)
    await store(hist, "ClusterLifecycle--capacity-failover")


async def test_record_image_release_pages_and_grace(ts_env):
    """``ImageRelease`` over 45 organisations: its first run (one page shared, then
    continue-as-new) and its last run (the grace timer, the revocations with a KEPT refusal)."""
    from tests.workflows.test_image_release_timeskip import (
        FakeCloud as ReleaseCloud,
    )
    from tests.workflows.test_image_release_timeskip import (
        release_input,
    )

    orgs = [f"org-{i:03d}" for i in range(45)]
    cloud = ReleaseCloud(orgs, ["us-east-1", "us-west-2"])
    cloud.kept = {("org-001", "us-east-1"): ["c1"]}
    tq = f"tq-{uuid.uuid4()}"
    wf_id = ids.image_release_workflow_id("v2")
    with ThreadPoolExecutor(8) as ex:
        async with Worker(
            ts_env.client,
            task_queue=tq,
            workflows=WORKFLOWS,
            activities=cloud.activities(),
            activity_executor=ex,
            workflow_runner=sandbox_runner(),
        ):
            h = await ts_env.client.start_workflow(
                "ImageRelease", release_input(4), id=wf_id, task_queue=tq
            )
            first_run = h.first_execution_run_id
            await h.result()
            first = await ts_env.client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
            last = await ts_env.client.get_workflow_handle(wf_id).fetch_history()
    assert "continued-as-new" in features(first), features(first)
    assert "continuation" in features(last), features(last)
    await store(first, "ImageRelease--continued-as-new")
    await store(last, "ImageRelease--grace-and-revoke")
