"""Onboarding shares the images while it provisions the regional foundations (patch
``images-beside-foundations``, issue 23): a foundation does not need the images, so on real AWS,
where an image copied to a new region takes many minutes and a foundation stack a few, onboarding
takes the longer of the two instead of their sum. On the time-skipping server with fake
activities: both children are started by the same workflow task, and when sharing fails the
foundation is still provisioned and the organisation needs action for the images alone.

Twin: the order of runs started before the patch (images first, foundations only once they are
shared) fails both checks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError

import workflows._patches as patches
from bridgehead import models as m
from tests.integration.helpers import org_input, wait_for
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import FakeCloud
from worker import sandbox_runner
from workflows._org_setup import IMAGES_BESIDE_FOUNDATIONS

ACCOUNT = "222222222222"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess"


def onboarding_fakes(cloud: FakeCloud, calls: list[str], throttled: bool = False) -> list:
    """The organisation's, verification's, images' and foundation's activities; sharing the image
    is refused (as when the platform's image has an encrypted snapshot the customer cannot use),
    or, ``throttled``, retried for as long as the test lets it."""

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
        if throttled:
            raise ApplicationError("Throttling: rate exceeded")
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


async def start_onboarding(w, org: str):  # type: ignore[no-untyped-def]
    """Start onboarding ``org`` in one region on ``w`` and submit its role."""
    inp = org_input(org, ACCOUNT, [REGION])
    h = await w.start("OnboardOrganization", inp, id=f"org-{org}", result_type=m.OrgStatus)
    await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE, 30)
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=ROLE), result_type=m.UpdateResult
    )
    return h


async def onboard(env) -> tuple[m.OrgStatus, WorkflowHistory, list[str]]:  # type: ignore[no-untyped-def]
    """Onboard an organisation in one region to ACTION_REQUIRED (its image cannot be shared);
    the shared sandbox, so that a monkeypatched ``workflows._patches`` reaches the workflow."""
    cloud, calls = FakeCloud(create_takes=timedelta(minutes=6)), []
    org = f"ord{uuid.uuid4().hex[:6]}"
    async with serve(
        env, onboarding_fakes(cloud, calls), runner=sandbox_runner(shared=True), threads=8
    ) as w:
        h = await start_onboarding(w, org)
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
    # The refusal stays in the region's detail whichever child finished last.
    assert "encrypted with a key" in s.regions[REGION].detail, s.regions
    # Each phase is in the steps, in order, and the images' problem is said before the
    # foundations are done, not only at the end.
    phases = [st.split(" ", 1)[1].split(":")[0] for st in s.steps]
    assert phases.index("SHARING_IMAGES") < phases.index("PROVISIONING"), s.steps
    said = next(i for i, st in enumerate(s.steps) if "images not shared in" in st)
    assert said < phases.index("PROVISIONING"), s.steps
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


async def cancel_while_both_run(env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Cancel an onboarding while its images (throttled, retried) and its foundation (6 minutes)
    are both under way; the status of each child afterwards."""
    from temporalio.client import WorkflowExecutionStatus

    cloud, calls = FakeCloud(create_takes=timedelta(minutes=6)), []
    org = f"orc{uuid.uuid4().hex[:6]}"
    children = {"images": f"org-{org}-images", "region": f"org-{org}-region-{REGION}"}
    async with serve(
        env,
        onboarding_fakes(cloud, calls, throttled=True),
        runner=sandbox_runner(shared=True),
        threads=8,
    ) as w:
        h = await start_onboarding(w, org)
        handles = {k: w.client.get_workflow_handle(v) for k, v in children.items()}
        for _ in range(100):
            try:
                if (
                    all(
                        (await c.describe()).status == WorkflowExecutionStatus.RUNNING
                        for c in handles.values()
                    )
                    and calls
                ):
                    break
            except Exception:  # noqa: BLE001 - not started yet
                pass
            await asyncio.sleep(0.1)
        await h.cancel()
        # Cancelling needs no time to pass, so the test server's clock is not asked to skip: a
        # skip on this module's server timed out once in a fresh-clone CI run (session 8).
        # Until the images' child has ended (both do at once when one gather holds them), then
        # a few seconds more for the foundation's to follow.
        running = WorkflowExecutionStatus.RUNNING
        for _ in range(300):
            states = {k: (await c.describe()).status for k, c in handles.items()}
            if states["images"] != running:
                break
            await asyncio.sleep(0.2)
        for _ in range(25):
            if states["region"] != running:
                break
            await asyncio.sleep(0.2)
            states["region"] = (await handles["region"].describe()).status
        return {k: v.name for k, v in states.items()}


async def test_a_cancelled_onboarding_cancels_both_children(ts_env):
    """One ``gather`` holds both children: cancelling the organisation's run while the images
    and the foundation are both under way cancels both."""
    assert await cancel_while_both_run(ts_env) == {"images": "CANCELED", "region": "CANCELED"}


async def test_twin_children_started_apart_leave_the_foundation_running(
    ts_env, monkeypatch: pytest.MonkeyPatch
):
    """Twin: the first version of the step (two tasks, only the images' awaited when the cancel
    came) cancelled the images alone; the foundation went on to the end."""
    from workflows._org_setup import SetsUpRegions

    async def apart(self, input):  # type: ignore[no-untyped-def]
        images = asyncio.ensure_future(self._share_images(input, {}))
        foundations = asyncio.ensure_future(self._provision_regions(input, {}))
        first = await images
        second = await foundations
        found = [p for p in (first, second) if p is not None]
        return "; ".join(found) if found else None

    monkeypatch.setattr(SetsUpRegions, "_images_and_foundations", apart)
    states = await cancel_while_both_run(ts_env)
    assert states["images"] == "CANCELED" and states["region"] != "CANCELED", states


async def replay_with_shared_sandbox(h: WorkflowHistory) -> Exception | None:
    """Replay ``h`` in the shared sandbox (a monkeypatched ``workflows._patches`` reaches it)."""
    from temporalio.worker import Replayer

    from bridgehead.converter import make_data_converter
    from tests.conftest import TEST_KEY
    from worker import WORKFLOWS

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=make_data_converter(TEST_KEY, accept_v1=True),
        workflow_runner=sandbox_runner(shared=True),
    )
    result = await replayer.replay_workflow(h, raise_on_replay_failure=False)
    return result.replay_failure


def images_first_refused() -> WorkflowHistory:
    """The stored run of the code before the patch whose images were refused (recorded on
    8975882; the former order never started a foundation)."""
    from tests.support.replay_corpus import HISTORIES, load

    return load(HISTORIES / "OnboardOrganization--images-first-refused.json")


async def test_a_run_from_before_the_patch_replays_in_the_former_order():
    assert await replay_with_shared_sandbox(images_first_refused()) is None


async def test_twin_the_new_order_taken_by_an_old_run_breaks_its_replay(
    monkeypatch: pytest.MonkeyPatch,
):
    """Twin: taking the new order without asking the patch (as if it had joined the baseline)
    starts a foundation the recorded run never started: nondeterminism."""
    from temporalio.workflow import NondeterminismError

    real = patches.patched
    monkeypatch.setattr(
        patches, "patched", lambda pid: True if pid == IMAGES_BESIDE_FOUNDATIONS else real(pid)
    )
    failure = await replay_with_shared_sandbox(images_first_refused())
    assert isinstance(failure, NondeterminismError), failure
