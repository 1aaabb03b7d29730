"""``offboard`` on the time-skipping server with fake activities: refusal, a role the customer
already removed (foundation deletion fails -> ACTION_REQUIRED, then ``abandon_foundations``), and
the order of the removal steps."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from bridgehead import models as m
from tests.integration.helpers import wait_for
from tests.support.stack_fakes import stack_poll
from tests.support.timeskip import Served, serve
from worker import WORKFLOWS


def fakes(
    calls: list[str],
    live: list[m.ClusterSummary],
    role_gone: bool,
    recorded: bool = True,
    foundations: dict[str, str] | None = None,
) -> list:
    """``foundations``: the registry's foundation states (default: the org's two regions READY)."""
    registry_foundations = (
        foundations if foundations is not None else {"us-east-1": "READY", "us-west-1": "READY"}
    )

    @activity.defn(name="foundation_states")
    def foundation_states(req: m.FoundationStatesInput) -> m.FoundationStates:
        calls.append("foundation-states")
        return m.FoundationStates(states=dict(registry_foundations))

    @activity.defn(name="org_live_clusters")
    def org_live_clusters(req: m.OrgClustersInput) -> m.RegionClusters:
        calls.append("live-clusters")
        return m.RegionClusters(clusters=list(live))

    @activity.defn(name="set_org_state")
    def set_org_state(req: m.SetOrgStateInput) -> None:
        calls.append(f"state:{req.state.value}")

    @activity.defn(name="begin_foundation_delete")
    def begin_foundation_delete(req: m.RegionClustersInput) -> m.RegionClusters:
        return m.RegionClusters(clusters=[])

    @activity.defn(name="delete_stack")
    def delete_stack(ref: m.StackRef) -> None:
        calls.append(f"delete:{ref.region}")
        if role_gone:
            raise ApplicationError(
                "AccessDenied: cannot assume arn:aws:iam::222222222222:role/BridgeheadAccess",
                non_retryable=True,
            )

    @activity.defn(name="poll_stack")
    def poll_stack(ref: m.StackRef) -> m.StackPoll:
        return stack_poll(
            ref.stack_name, "DELETE_COMPLETE", terminal=True, succeeded=True, stack_id=None
        )

    @activity.defn(name="sweep_foundation_leftovers")
    def sweep(req: m.LeftoversInput) -> m.Leftovers:
        return m.Leftovers(resources=[])

    @activity.defn(name="find_leftovers")
    def find_leftovers(req: m.LeftoversInput) -> m.Leftovers:
        return m.Leftovers(resources=[])

    @activity.defn(name="record_foundation")
    def record_foundation(rec: m.FoundationRecord) -> None:
        calls.append(f"foundation:{rec.region}:{rec.state}")

    @activity.defn(name="org_regions")
    def org_regions(req: m.OrgRegionsInput) -> m.OrgRegions:
        return m.OrgRegions(
            org_id=req.org_id,
            aws_account_id="222222222222",
            regions=["us-east-1", "us-west-1"],
            source_region="us-east-1",
        )

    @activity.defn(name="find_platform_image")
    def find_platform_image(req: m.FindImageInput) -> m.FindImageResult:
        return m.FindImageResult(image_id=f"ami-{req.region}")

    @activity.defn(name="org_shared_images")
    def org_shared_images(req: m.OrgRegionsInput) -> m.SharedImages:
        # The current image in each region, and an older release still shared in us-west-1
        # (none for an organisation that never got that far).
        if not recorded:
            return m.SharedImages(images=[])
        return m.SharedImages(
            images=[
                m.ImageInRegion(region="us-east-1", image_id="ami-us-east-1"),
                m.ImageInRegion(region="us-west-1", image_id="ami-us-west-1"),
                m.ImageInRegion(region="us-west-1", image_id="ami-us-west-1-older"),
            ]
        )

    @activity.defn(name="revoke_image")
    def revoke_image(req: m.ShareImageInput) -> m.ShareImageResult:
        calls.append(f"revoke:{req.region}")
        calls.append(f"revoked:{req.image_id}")
        return m.ShareImageResult(image_id=req.image_id, snapshot_ids=["snap-1"])

    @activity.defn(name="notify")
    def notify(req: m.NotifyInput) -> bool:
        calls.append(f"notify:{req.subject}")
        return True

    @activity.defn(name="delete_reverify_schedule")
    def delete_reverify_schedule(req: m.ReverifyInput) -> bool:
        calls.append("delete-schedule")
        return True

    return [
        foundation_states,
        org_live_clusters,
        set_org_state,
        begin_foundation_delete,
        delete_stack,
        poll_stack,
        sweep,
        find_leftovers,
        record_foundation,
        org_regions,
        find_platform_image,
        org_shared_images,
        revoke_image,
        delete_reverify_schedule,
        notify,
    ]


@workflow.defn(name="SeedOrganization", sandboxed=False)
class SeedOrganization:
    """Test-only: hands a prepared state to ``OnboardOrganization`` the one way a run accepts
    carried state, by continuing as new into it (a fresh start with ``resume`` is refused)."""

    @workflow.run
    async def run(self, inp: m.OnboardOrganizationRun) -> None:
        workflow.continue_as_new(inp, workflow="OnboardOrganization")


#: What a worker of these tests registers: the platform's workflows and the seed.
ORG_WORKFLOWS = [*WORKFLOWS, SeedOrganization]


async def seeded(w: Served, inp: m.OnboardOrganizationRun):  # type: ignore[no-untyped-def]
    """Start ``SeedOrganization`` on ``w``'s task queue (ended with ``w``'s block) and return the
    handle once ``OnboardOrganization`` runs."""
    start = await w.start("SeedOrganization", inp, id=f"org-{inp.org_id}")
    h = w.client.get_workflow_handle(start.id, result_type=m.OrgStatus)
    for _ in range(200):
        if (await h.describe()).workflow_type == "OnboardOrganization":
            return h
        await asyncio.sleep(0.05)
    raise AssertionError("OnboardOrganization never took over from SeedOrganization")


def ready_org(org: str) -> m.OnboardOrganizationRun:
    """An organisation already READY (resumed state), in two regions."""
    regions = {
        r: m.RegionProgress(images="SHARED", foundation="READY") for r in ("us-east-1", "us-west-1")
    }
    state = m.OnboardingState(
        state=m.OrgState.READY,
        external_id="x" * 32,
        role_arn="arn:aws:iam::222222222222:role/BridgeheadAccess",
        regions=regions,
        reverify_scheduled=True,
    )
    return m.OnboardOrganizationRun(
        org_id=org,
        display_name=org,
        admin_email=f"a@{org}.example",
        aws_account_id="222222222222",
        regions=list(regions),
        resume=state,
    )


async def test_offboard_refusal_role_gone_and_abandon(ts_env):
    calls: list[str] = []
    live = [m.ClusterSummary(name="c1", region="us-west-1", state="FAILED")]
    org = f"off{uuid.uuid4().hex[:6]}"
    async with serve(ts_env, fakes(calls, live, role_gone=True), workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, ready_org(org))
        # 1. A cluster remains: refused, and the org is put back exactly as it was.
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await h.execute_update(
                "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
            )
        assert "c1 in us-west-1 (FAILED)" in str(e.value.cause)
        assert calls == ["state:OFFBOARDING", "live-clusters", "state:READY"], calls
        assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.READY
        # 2. The customer deleted the role first: the foundations cannot be deleted through it.
        live.clear()
        calls.clear()
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
        )
        s = await wait_for(
            h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 30
        )
        assert "abandon_foundations" in s.last_error and "AccessDenied" in s.last_error, (
            s.last_error
        )
        assert not [c for c in calls if c.startswith(("revoke", "delete-schedule"))], (
            "nothing past the failed step"
        )
        # The admin is told, once, that the organisation needs action.
        for _ in range(100):
            if any(c.startswith("notify:") for c in calls):
                break
            await asyncio.sleep(0.05)
        notices = [c for c in calls if c.startswith("notify:")]
        assert notices == [f"notify:{org} needs action"], calls
        # 3. Sent again with abandon_foundations: it finishes and names the stacks left to the customer.
        calls.clear()
        await h.execute_update(
            "offboard",
            m.OffboardInput(confirm_org_id=org, abandon_foundations=True),
            result_type=m.UpdateResult,
        )
        final = await h.result()
    assert final.state == m.OrgState.OFFBOARDED
    assert (
        "customer must delete" in final.steps[-1]
        and "us-east-1" in final.steps[-1]
        and "us-west-1" in final.steps[-1]
    )
    assert {r: (p.images, p.foundation) for r, p in final.regions.items()} == {
        r: ("REVOKED", "DELETE_FAILED") for r in ("us-east-1", "us-west-1")
    }
    assert calls.index("delete-schedule") > max(
        calls.index("revoke:us-east-1"), calls.index("revoke:us-west-1")
    )
    assert calls[-1] == "state:OFFBOARDED", calls
    # Every recorded image is revoked, the older release too (patch offboard-revoke-recorded-images).
    assert sorted(c for c in calls if c.startswith("revoked:")) == [
        "revoked:ami-us-east-1",
        "revoked:ami-us-west-1",
        "revoked:ami-us-west-1-older",
    ]


async def test_offboard_before_any_role_touches_no_account(ts_env):
    """An org that never got a role has nothing in the customer's account: offboarding deletes no
    stack and revokes nothing, and still ends OFFBOARDED."""
    calls: list[str] = []
    org = f"nor{uuid.uuid4().hex[:6]}"
    inp = ready_org(org)
    assert inp.resume is not None
    inp.resume.state, inp.resume.role_arn, inp.resume.reverify_scheduled = (
        m.OrgState.AWAITING_ROLE,
        None,
        False,
    )
    inp.resume.regions = {r: m.RegionProgress() for r in inp.regions}
    acts = fakes(calls, [], role_gone=False, recorded=False)
    async with serve(ts_env, acts, workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, inp)
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
        )
        final = await h.result()
    assert final.state == m.OrgState.OFFBOARDED
    assert not [c for c in calls if c.startswith(("delete:", "revoke:"))], calls


#: Queries while the write is held. Each waits about 16 s on the test server (the write is a
#: local activity: a query is answered once its workflow task is), so two, not five (session 9:
#: 81 s a test with five).
QUERIES = 2


async def _status_while_the_registry_write_waits(env, runner=None) -> list[str]:  # type: ignore[no-untyped-def]
    """Offboard a READY org while its registry write (``set_org_state``) is held; returns the
    states ``status`` said meanwhile (must not run ahead of the registry), then after it."""
    import threading

    release = threading.Event()
    calls: list[str] = []
    held = [a for a in fakes(calls, [], role_gone=False) if a.__name__ != "set_org_state"]

    @activity.defn(name="set_org_state")
    def set_org_state(req: m.SetOrgStateInput) -> None:
        if req.state == m.OrgState.OFFBOARDING:
            release.wait(20)
        calls.append(f"state:{req.state.value}")

    org = f"reg{uuid.uuid4().hex[:6]}"
    seen: list[str] = []
    async with serve(env, [*held, set_org_state], workflows=ORG_WORKFLOWS, runner=runner) as w:
        h = await seeded(w, ready_org(org))
        update = asyncio.ensure_future(
            h.execute_update(
                "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
            )
        )
        for _ in range(QUERIES):
            await asyncio.sleep(0.3)
            seen.append((await h.query("status", result_type=m.OrgStatus)).state.value)
        release.set()
        await update
        seen.append((await h.query("status", result_type=m.OrgStatus)).state.value)
        await h.terminate("test over")
    return seen


async def test_status_never_runs_ahead_of_the_registry(ts_env):
    """``status`` says OFFBOARDING (or READY) only once the registry does: a caller acting on the
    word of ``status`` is checked against the registry (a cluster refused "AWAITING_ROLE, not
    READY" right after ``status`` said READY, under injected faults; patch org-state-after-registry)."""
    seen = await _status_while_the_registry_write_waits(ts_env)
    assert seen[:-1] == ["READY"] * QUERIES and seen[-1] == "OFFBOARDING", seen


async def test_twin_the_old_order_says_offboarding_before_the_registry(ts_env, monkeypatch):
    from temporalio.worker import UnsandboxedWorkflowRunner

    from workflows import _patches

    real = _patches.patched
    monkeypatch.setattr(
        _patches, "patched", lambda pid: False if pid == "org-state-after-registry" else real(pid)
    )
    seen = await _status_while_the_registry_write_waits(ts_env, UnsandboxedWorkflowRunner())
    assert "OFFBOARDING" in seen[:-1], seen


async def _offboard_with_a_foundation_outside_the_list(env, runner=None) -> list[str]:  # type: ignore[no-untyped-def]
    """A READY org of us-east-1 and us-west-1 whose registry also holds a READY foundation in
    eu-west-1 (built by a ProvisionRegion started directly, before bridgehead/org_access.py) and a
    DELETED one in eu-central-1: the regions whose foundations offboarding deletes."""
    calls: list[str] = []
    registry = {
        "us-east-1": "READY",
        "us-west-1": "READY",
        "eu-west-1": "READY",
        "eu-central-1": "DELETED",
    }
    org = f"offx{uuid.uuid4().hex[:6]}"
    acts = fakes(calls, [], role_gone=False, foundations=registry)
    async with serve(env, acts, workflows=ORG_WORKFLOWS, runner=runner) as w:
        h = await seeded(w, ready_org(org))
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
        )
        final = await h.result()
    assert final.state == m.OrgState.OFFBOARDED, final
    return sorted(c.split(":")[1] for c in calls if c.startswith("delete:"))


async def test_offboarding_deletes_every_foundation_the_registry_holds(ts_env):
    """Found by an adversarial review (session 13): only the run's own regions were deleted."""
    deleted = await _offboard_with_a_foundation_outside_the_list(ts_env)
    assert deleted == ["eu-west-1", "us-east-1", "us-west-1"]


async def test_twin_offboarding_from_its_own_list_leaves_the_other_foundation(ts_env, monkeypatch):
    from temporalio.worker import UnsandboxedWorkflowRunner

    from workflows import _patches
    from workflows.offboarding import EVERY_RECORDED_FOUNDATION

    real = _patches.patched
    monkeypatch.setattr(
        _patches, "patched", lambda pid: False if pid == EVERY_RECORDED_FOUNDATION else real(pid)
    )
    deleted = await _offboard_with_a_foundation_outside_the_list(
        ts_env, UnsandboxedWorkflowRunner()
    )
    assert deleted == ["us-east-1", "us-west-1"]
