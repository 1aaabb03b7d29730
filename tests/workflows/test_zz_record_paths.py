"""Record the replay corpus's paths that the emulator cannot produce (moto completes every stack at
once): a resize, a failed stack, a cancel, and a BillingMeter continue-as-new (the run that ends in
it and the run that starts from it), on the time-skipping server with the fake cloud of
test_cluster_timeskip.py, under the workflow ids users would use (so id checks replay too).

Opt-in like the dev-server recorder: ``BRIDGEHEAD_RECORD_HISTORIES=1``. Stored through
tests/support/replay_corpus.py, which refuses to overwrite a history that no longer replays.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio import activity

from bridgehead import ids
from bridgehead import models as m
from tests.support.meter_fakes import closed, meter_sent, notify_ok, steady_meter
from tests.support.replay_corpus import features, store
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state

pytestmark = pytest.mark.skipif(
    not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"),
    reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories",
)


async def cluster_history(env, name: str, cloud: FakeCloud, body):  # type: ignore[no-untyped-def]
    async with serve(env, cloud.activities(), threads=8) as w:
        h = await w.start_cluster(CFG, name)
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


async def test_record_lifecycle_baseline(ts_env):
    """A new lifecycle (patch baseline, workflows/_patches.py): created, RUNNING, deleted."""

    async def plain(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        await h.signal("delete")

    cloud = FakeCloud(create_takes=timedelta(minutes=12))
    hist = await cluster_history(ts_env, "pb1", cloud, plain)
    assert "lifecycle-baseline" in features(hist), features(hist)
    await store(hist, "ClusterLifecycle--lifecycle-baseline")


async def test_record_billing_continue_as_new(ts_env):
    """The first run of a BillingMeter (ends in continue-as-new after TICKS_PER_RUN ticks) and the
    run that continues it (starts from carried state)."""
    from workflows.billing import TICKS_PER_RUN

    wf_id = ids.billing_workflow_id("acme")
    async with serve(ts_env, steady_meter()) as w:
        h = await w.start_meter("acme")
        first_run = (await h.describe()).run_id
        for _ in range(TICKS_PER_RUN // 24 + 2):  # past the first continue-as-new, a day at a time
            await ts_env.sleep(timedelta(days=1))
        first = await ts_env.client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
        second_run = (await ts_env.client.get_workflow_handle(wf_id).describe()).run_id
        await ts_env.client.get_workflow_handle(wf_id).signal("stop")
        await ts_env.client.get_workflow_handle(wf_id).result()
        second = await ts_env.client.get_workflow_handle(wf_id, run_id=second_run).fetch_history()
    assert "continued-as-new" in features(first), features(first)
    assert "continuation" in features(second), features(second)
    await store(first, "BillingMeter--continued-as-new")
    await store(second, "BillingMeter--continuation")


async def test_record_foundation_follow(ts_env):
    """A direct CleanupRegion that signals the organisation (``tell-org-foundation``) and the
    organisation that reads the registry and follows (``org-follows-foundations``)."""
    from tests.workflows.test_foundation_follow_timeskip import REGIONS, registry_fakes
    from tests.workflows.test_offboard_timeskip import ORG_WORKFLOWS, ready_org, seeded

    registry = dict.fromkeys(REGIONS, "READY")
    org = "acme"
    cleanup_id = ids.cleanup_workflow_id(org, "us-west-1")
    async with serve(ts_env, registry_fakes(registry, []), workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, ready_org(org))
        await w.execute(
            "CleanupRegion", m.CleanupRegionInput(org_id=org, region="us-west-1"), id=cleanup_id
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
    wf_id = ids.image_release_workflow_id("v2")
    async with serve(ts_env, cloud.activities(), threads=8) as w:
        h = await w.start("ImageRelease", release_input(4), id=wf_id)
        first_run = h.first_execution_run_id
        await h.result()
        first = await ts_env.client.get_workflow_handle(wf_id, run_id=first_run).fetch_history()
        last = await ts_env.client.get_workflow_handle(wf_id).fetch_history()
    assert "continued-as-new" in features(first), features(first)
    assert "continuation" in features(last), features(last)
    await store(first, "ImageRelease--continued-as-new")
    await store(last, "ImageRelease--grace-and-revoke")


async def test_record_guard_rails_and_budget(ts_env):
    """Issue 21: a guarded cluster (an idle stop announced, kept, announced again and carried out;
    start; a delete refused by deletion protection, protection off, delete) and a meter whose
    budget reaches 80 % then 100 % with budget_action stop (an external signal)."""
    from tests.workflows.test_guardrails_timeskip import GuardCloud, config, run_guarded, until

    cfg = config(auto_stop_idle_minutes=60, stop_keeps_storage=True, deletion_protection=True)

    async def body(h):  # type: ignore[no-untyped-def]
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        await until(ts_env, h, lambda s: s.pending_action is not None, timedelta(minutes=5))
        await h.signal("keep")
        await until_state(ts_env, h, m.ClusterState.STOPPED, step=timedelta(minutes=10))
        await h.signal("start")
        await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(seconds=10))
        await h.signal("delete")
        await ts_env.sleep(timedelta(minutes=1))
        await h.execute_update(
            "set_deletion_protection",
            m.SetDeletionProtectionInput(enabled=False),
            result_type=m.DeletionProtectionResult,
        )
        await h.signal("delete")
        await h.result()
        return await h.fetch_history()

    hist = await run_guarded(ts_env, GuardCloud(), cfg, body)
    assert "guard-rails" in features(hist), features(hist)
    await store(hist, "ClusterLifecycle--guard-rails")

    ticks: list[int] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        ticks.append(1)
        spent = Decimal(10 * len(ticks))
        budget = m.BudgetStatus(
            month=f"{req.until:%Y-%m}",
            spent_usd=spent,
            monthly_budget_usd=Decimal(30),
            budget_action="stop",
            level=100 if spent >= 30 else 80 if spent >= 24 else 0,
            admin_email="admin@acme.example",
            running=["c1"],
        )
        return closed(req, cost=10, budget=budget)

    async with serve(ts_env, [close_billing_periods, meter_sent, notify_ok]) as w:
        h = await w.start_meter("acme")
        await ts_env.sleep(timedelta(hours=4, minutes=15))
        await h.signal("stop")
        await h.result()
        meter = await h.fetch_history()
    assert "budget-stop" in features(meter), features(meter)
    await store(meter, "BillingMeter--budget-stop")
