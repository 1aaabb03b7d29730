"""Onboarding shares the images while it provisions the regional foundations (patch
``images-beside-foundations``, issue 23): a foundation does not need the images, so on real AWS,
where an image copied to a new region takes many minutes and a foundation stack a few, onboarding
takes the longer of the two instead of their sum. On the time-skipping server with fake
activities: both children are started by the same workflow task, and when sharing fails the
foundation is still provisioned and the organisation needs action for the images alone.

Twin: the order of runs started before the patch (images first, foundations only once they are
shared) fails both checks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError

import workflows._patches as patches
from bridgehead import models as m
from tests.integration.helpers import wait_for
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import FakeCloud
from worker import sandbox_runner
from workflows._org_setup import IMAGES_BESIDE_FOUNDATIONS

ACCOUNT = "222222222222"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess"


def onboarding_fakes(cloud: FakeCloud, calls: list[str]) -> list:
    """The organisation's, verification's, images' and foundation's activities; sharing the image
    is refused (as when the platform's image has an encrypted snapshot the customer cannot use)."""

    @activity.defn(name="register_organization")
    def register_organization(req: m.RegisterOrgInput) -> m.RegisterOrgResult:
        artifacts = m.OrgArtifacts(
            external_id="x" * 32,
            platform_principal_arn="arn:aws:iam::111111111111:role/BridgeheadPlatform",
            role_name="BridgeheadAccess",
            trust_policy={},
            permission_policy={},
            cloudformation_template="{}",
            instructions=[],
        )
        return m.RegisterOrgResult(external_id="x" * 32, artifacts=artifacts)

    @activity.defn(name="record_role")
    def record_role(req: m.RecordRoleInput) -> None:
        calls.append("role")

    @activity.defn(name="verify_role")
    def verify_role(req: m.VerifyRoleInput) -> m.VerificationReport:
        check = m.CheckResult(name="assume-role", passed=True, detail="assumed")
        return m.VerificationReport(
            org_id=req.org_id, role_arn=req.role_arn, passed=True, checks=[check]
        )

    @activity.defn(name="org_regions")
    def org_regions(req: m.OrgRegionsInput) -> m.OrgRegions:
        return m.OrgRegions(
            org_id=req.org_id, aws_account_id=ACCOUNT, regions=[REGION], source_region=REGION
        )

    @activity.defn(name="find_platform_image")
    def find_platform_image(req: m.FindImageInput) -> m.FindImageResult:
        return m.FindImageResult(image_id=f"ami-{req.region}")

    @activity.defn(name="share_image")
    def share_image(req: m.ShareImageInput) -> m.ShareImageResult:
        calls.append(f"share:{req.region}")
        raise ApplicationError(
            "InvalidParameter: snapshot snap-1 is encrypted with a key the account cannot use",
            non_retryable=True,
        )

    @activity.defn(name="render_foundation_template")
    def render_foundation_template(req: m.FoundationTemplateInput) -> m.RenderedTemplate:
        return m.RenderedTemplate(template_body="{}", tags={"bridgehead:org": req.org_id})

    @activity.defn(name="record_foundation")
    def record_foundation(rec: m.FoundationRecord) -> None:
        calls.append(f"foundation:{rec.region}:{rec.state}")

    @activity.defn(name="set_org_state")
    def set_org_state(req: m.SetOrgStateInput) -> None:
        calls.append(f"state:{req.state.value}")

    mine = [
        register_organization,
        record_role,
        verify_role,
        org_regions,
        find_platform_image,
        share_image,
        render_foundation_template,
        record_foundation,
        set_org_state,
    ]
    names = {a.__temporal_activity_definition.name for a in mine}
    # The cloud's stack activities and its notify, without its cluster-only ones.
    return mine + [
        a for a in cloud.activities() if a.__temporal_activity_definition.name not in names
    ]


async def onboard(env) -> tuple[m.OrgStatus, WorkflowHistory, list[str]]:  # type: ignore[no-untyped-def]
    """Onboard an organisation in one region to ACTION_REQUIRED (its image cannot be shared);
    the shared sandbox, so that a monkeypatched ``workflows._patches`` reaches the workflow."""
    cloud, calls = FakeCloud(create_takes=timedelta(minutes=6)), []
    org = f"ord{uuid.uuid4().hex[:6]}"
    async with serve(
        env, onboarding_fakes(cloud, calls), runner=sandbox_runner(shared=True), threads=8
    ) as w:
        inp = m.OnboardOrganizationInput(
            org_id=org,
            display_name=org,
            admin_email=f"a@{org}.example",
            aws_account_id=ACCOUNT,
            regions=[REGION],
        )
        h = await w.start("OnboardOrganization", inp, id=f"org-{org}", result_type=m.OrgStatus)
        await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE, 30)
        await h.execute_update(
            "submit_role", m.SubmitRoleInput(role_arn=ROLE), result_type=m.UpdateResult
        )
        for _ in range(60):
            s = await h.query("status", result_type=m.OrgStatus)
            if s.state == m.OrgState.ACTION_REQUIRED:
                break
            await env.sleep(timedelta(minutes=1))
        return s, await h.fetch_history(), calls


def child_starts(h: WorkflowHistory) -> dict[str, int]:
    """Workflow type of each child started -> the workflow task whose completion started it."""
    return {
        e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name: (
            e.start_child_workflow_execution_initiated_event_attributes.workflow_task_completed_event_id
        )
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    }


def started_together(h: WorkflowHistory) -> bool:
    starts = child_starts(h)
    return starts.get("ShareImages") is not None and starts.get("ShareImages") == starts.get(
        "ProvisionRegion"
    )


async def test_images_and_foundations_start_together_and_a_failed_share_keeps_the_foundation(
    ts_env,
):
    s, h, calls = await onboard(ts_env)
    assert s.state == m.OrgState.ACTION_REQUIRED
    assert started_together(h), child_starts(h)
    # Sharing failed; the foundation was provisioned all the same, and only the images need action.
    assert s.regions[REGION].foundation == "READY", s.regions
    assert f"foundation:{REGION}:READY" in calls and f"share:{REGION}" in calls
    assert s.last_error is not None and s.last_error.startswith("images not shared in us-east-1")
    assert "foundation failed" not in s.last_error
    # Each phase is in the steps, in order.
    phases = [st.split(" ", 1)[1].split(":")[0] for st in s.steps]
    assert phases.index("SHARING_IMAGES") < phases.index("PROVISIONING"), s.steps
    # The patch has its own marker: runs that took the baseline decided before it existed.
    assert IMAGES_BESIDE_FOUNDATIONS in patches.AFTER_BASELINE


async def test_twin_images_first_never_provisions_a_foundation_when_sharing_fails(
    ts_env, monkeypatch: pytest.MonkeyPatch
):
    real = patches.patched
    monkeypatch.setattr(
        patches, "patched", lambda pid: False if pid == IMAGES_BESIDE_FOUNDATIONS else real(pid)
    )
    s, h, calls = await onboard(ts_env)
    assert s.state == m.OrgState.ACTION_REQUIRED
    assert not started_together(h)
    assert s.regions[REGION].foundation != "READY"
    assert not [c for c in calls if c.startswith("foundation:")]
