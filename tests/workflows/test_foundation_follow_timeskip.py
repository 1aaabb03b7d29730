"""A direct ``CleanupRegion`` and the organisation's ``status`` (issue 22), on the time-skipping
server with fake activities over a fake registry.

The cleanup signals ``org-{org_id}`` (``foundation_changed``, no payload); the organisation reads
every foundation's state from the registry and shows it. Twin: a registry change the organisation
is not told of leaves the status saying READY, and the check reports that region; the same
(payload-free) signal then makes it follow. A cleanup without an organisation workflow still
completes, and one started by ``offboard`` does not signal its parent.
"""

from __future__ import annotations

import uuid

from temporalio import activity

from bridgehead import ids
from bridgehead import models as m
from tests.integration.helpers import wait_for
from tests.support.stack_fakes import stack_poll
from tests.support.timeskip import serve
from tests.workflows.test_offboard_timeskip import ORG_WORKFLOWS, fakes, ready_org, seeded

REGIONS = ("us-east-1", "us-west-1")


def registry_fakes(registry: dict[str, str], calls: list[str]) -> list:
    """The offboarding fakes, with foundations kept in ``registry`` (region -> state)."""

    @activity.defn(name="record_foundation")
    def record_foundation(rec: m.FoundationRecord) -> None:
        registry[rec.region] = rec.state

    @activity.defn(name="begin_foundation_delete")
    def begin_foundation_delete(req: m.RegionClustersInput) -> m.RegionClusters:
        registry[req.region] = "DELETING"
        return m.RegionClusters(clusters=[])

    @activity.defn(name="foundation_states")
    def foundation_states(req: m.FoundationStatesInput) -> m.FoundationStates:
        calls.append(f"read:{req.org_id}")
        return m.FoundationStates(states=dict(registry))

    replaced = {"record_foundation", "begin_foundation_delete", "foundation_states"}
    kept = [
        a
        for a in fakes([], [], role_gone=False)
        if activity._Definition.must_from_callable(a).name not in replaced
    ]
    return [*kept, record_foundation, begin_foundation_delete, foundation_states]


def problems(status: m.OrgStatus, registry: dict[str, str]) -> list[str]:
    """Regions whose foundation the status shows otherwise than the registry records it."""
    return [
        f"{r}: status says {p.foundation}, the registry {registry[r]}"
        for r, p in sorted(status.regions.items())
        if p.foundation != registry.get(r, p.foundation)
    ]


async def test_a_direct_cleanup_is_followed_by_the_organisation_status(ts_env):
    registry = dict.fromkeys(REGIONS, "READY")
    calls: list[str] = []
    org = f"fol{uuid.uuid4().hex[:6]}"
    async with serve(ts_env, registry_fakes(registry, calls), workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, ready_org(org))
        result = await w.execute(
            "CleanupRegion",
            m.CleanupRegionInput(org_id=org, region="us-west-1"),
            id=ids.cleanup_workflow_id(org, "us-west-1"),
            result_type=m.CleanupResult,
        )
        assert result.deleted and registry == {"us-east-1": "READY", "us-west-1": "DELETED"}
        s = await wait_for(
            h,
            "status",
            m.OrgStatus,
            lambda s: s.regions["us-west-1"].foundation != "READY",
            30,
        )
        assert problems(s, registry) == []
        assert s.state == m.OrgState.READY  # the other region still serves clusters
        assert s.regions["us-west-1"] == m.RegionProgress(
            images="SHARED", foundation="DELETED", detail="changed outside onboarding"
        )
        assert s.steps[-1].endswith("foundation in us-west-1 is DELETED (registry)")
        assert calls == [f"read:{org}"]


async def test_twin_an_untold_change_is_reported_until_the_signal_makes_it_follow(ts_env):
    registry = dict.fromkeys(REGIONS, "READY")
    calls: list[str] = []
    org = f"unt{uuid.uuid4().hex[:6]}"
    async with serve(ts_env, registry_fakes(registry, calls), workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, ready_org(org))
        # What a cleanup did before it told the organisation: the registry moves, nobody says.
        registry["us-east-1"] = "DELETED"
        await ts_env.sleep(60)
        s = await h.query("status", result_type=m.OrgStatus)
        assert problems(s, registry) == ["us-east-1: status says READY, the registry DELETED"]
        assert calls == []
        # The signal carries nothing; the organisation reads the registry and follows it.
        await h.signal("foundation_changed")
        s = await wait_for(h, "status", m.OrgStatus, lambda s: not problems(s, registry), 30)
        assert s.regions["us-east-1"].foundation == "DELETED"
        assert calls == [f"read:{org}"]


async def test_a_cleanup_without_an_organisation_workflow_still_completes(ts_env):
    registry = {"us-east-1": "READY"}
    org = f"none{uuid.uuid4().hex[:6]}"
    async with serve(ts_env, registry_fakes(registry, [])) as w:
        result = await w.execute(
            "CleanupRegion",
            m.CleanupRegionInput(org_id=org, region="us-east-1"),
            id=ids.cleanup_workflow_id(org, "us-east-1"),
            result_type=m.CleanupResult,
        )
    assert result.deleted and registry == {"us-east-1": "DELETED"}


async def test_offboarding_cleanups_do_not_signal_their_parent(ts_env):
    registry = dict.fromkeys(REGIONS, "READY")
    calls: list[str] = []
    org = f"off{uuid.uuid4().hex[:6]}"
    async with serve(ts_env, registry_fakes(registry, calls), workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, ready_org(org))
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
        )
        final = await h.result()
        history = await h.fetch_history()
    assert final.state == m.OrgState.OFFBOARDED
    assert registry == dict.fromkeys(REGIONS, "DELETED")
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    # One read: offboarding's own, of every foundation to delete (patch
    # offboard-every-recorded-foundation); none followed a signal.
    assert signals == [] and calls == [f"read:{org}"]


async def test_a_direct_provision_is_followed_too(ts_env):
    registry = {"us-east-1": "READY", "us-west-1": "DELETED"}
    calls: list[str] = []

    @activity.defn(name="check_vcpu_quota")
    def check_vcpu_quota(req: m.QuotaCheckInput) -> m.QuotaReport:
        return m.QuotaReport(region=req.region, available=True)

    @activity.defn(name="render_foundation_template")
    def render(req: m.FoundationTemplateInput) -> m.RenderedTemplate:
        return m.RenderedTemplate(template_body="{}", tags={})

    @activity.defn(name="create_stack")
    def create_stack(req: m.StackRequest) -> m.StackPoll:
        return stack_poll(req.stack_name, stack_id="s-1")

    @activity.defn(name="check_stack")
    def check_stack(ref: m.StackRef) -> m.StackPoll:
        return stack_poll(
            ref.stack_name, "CREATE_COMPLETE", terminal=True, succeeded=True, stack_id="s-1"
        )

    org = f"pro{uuid.uuid4().hex[:6]}"
    seed = ready_org(org)
    assert seed.resume is not None
    seed.resume.regions["us-west-1"].foundation = "DELETED"
    acts = [*registry_fakes(registry, calls), check_vcpu_quota, render, create_stack, check_stack]
    async with serve(ts_env, acts, workflows=ORG_WORKFLOWS) as w:
        h = await seeded(w, seed)
        done = await w.execute(
            "ProvisionRegion",
            m.ProvisionRegionInput(org_id=org, region="us-west-1"),
            id=ids.region_workflow_id(org, "us-west-1"),
            result_type=m.FoundationStatus,
        )
        assert done.state == "READY" and registry["us-west-1"] == "READY"
        s = await wait_for(
            h, "status", m.OrgStatus, lambda s: s.regions["us-west-1"].foundation == "READY", 30
        )
        assert problems(s, registry) == [] and calls == [f"read:{org}"]
