"""``ProvisionRegion`` and ``CleanupRegion``: an organisation's foundation in one region."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        CleanupRegionInput,
        CleanupResult,
        FoundationRecord,
        FoundationStatus,
        FoundationTemplateInput,
        Leftovers,
        LeftoversInput,
        ProvisionRegionInput,
        QuotaCheckInput,
        RegionClusters,
        RegionClustersInput,
        RenderedTemplate,
        StackEventNotice,
        StackPoll,
        StackRef,
        StackRequest,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import (
    bind_input,
    request_token,
    require_input,
    root_message,
    started_by,
    upsert,
)
from workflows._options import AWS_CALL, REGISTRY
from workflows._waiting import StackHints, wait_for_stack
from workflows.foundations import FOUNDATION_CHANGED


async def tell_org(org_id: str) -> None:
    """Signal ``org-{org_id}`` that a foundation changed (it reads the registry), unless the
    organisation workflow started this one (it records the outcome itself). Best effort: an
    organisation whose workflow has ended (offboarded) or never ran has nothing to update."""
    org_wf = ids.org_workflow_id(org_id)
    if started_by(org_wf):
        return
    if not _patches.patched("tell-org-foundation"):
        return
    try:
        await workflow.get_external_workflow_handle(org_wf).signal(FOUNDATION_CHANGED)
    except FailureError as e:
        workflow.logger.info(
            f"{org_wf} not told of the foundation change: {e.message}", extra={"org_id": org_id}
        )


@workflow.defn(name="ProvisionRegion", failure_exception_types=[ValidationError])
class ProvisionRegionWorkflow:
    """One CloudFormation stack per (org, region) with the org-level resources clusters share."""

    @workflow.init
    def __init__(self, input: ProvisionRegionInput | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        org, region = (input.org_id, input.region) if input else ("-", "-")
        self._status = FoundationStatus(
            org_id=org, region=region, stack_name=ids.foundation_stack(org, region)
        )
        self._hints = StackHints()

    @workflow.signal
    def stack_event(self, notice: StackEventNotice | None = None) -> None:
        """A hint from the stack-event consumer: look at the stack now (workflows/_waiting.py)."""
        self._hints.receive(notice, self._status.stack_name, self._status.region)

    @workflow.query
    def status(self) -> FoundationStatus:
        return self._status

    @workflow.run
    async def run(self, input: ProvisionRegionInput | None = None) -> FoundationStatus:
        require_input(input, "ProvisionRegion", '{"org_id": "acme", "region": "us-east-1"}')
        assert input is not None
        bind_input(ids.region_workflow_id(input.org_id, input.region))
        st = self._status
        upsert(org_id=input.org_id, region=input.region)
        st.state = "CHECKING_QUOTA"
        st.quota = await acts.check_vcpu_quota(
            QuotaCheckInput(org_id=input.org_id, region=input.region, vcpus_needed=4),
            summary=f"check vCPU quota in {input.region}",
            **AWS_CALL,
        )
        if not st.quota.sufficient:
            workflow.logger.warning(
                st.quota.message, extra={"org_id": input.org_id, "region": input.region}
            )
        tpl: RenderedTemplate = await acts.render_foundation_template.registry(
            FoundationTemplateInput(
                org_id=input.org_id,
                region=input.region,
                by_org=started_by(ids.org_workflow_id(input.org_id)),
            )
        )
        st.state = "CREATING"
        await self._record("CREATING")
        try:
            await acts.create_stack(
                StackRequest(
                    org_id=input.org_id,
                    region=input.region,
                    stack_name=st.stack_name,
                    template_body=tpl.template_body,
                    tags=tpl.tags,
                    client_request_token=request_token("foundation-create"),
                ),
                summary=f"create foundation stack in {input.region}",
                **AWS_CALL,
            )
        except ActivityError as e:
            st.state, st.reason = "FAILED", root_message(e)
            await self._record("FAILED")
            return st
        poll = await wait_for_stack(
            StackRef(org_id=input.org_id, region=input.region, stack_name=st.stack_name),
            self._progress,
            f"wait for foundation in {input.region}",
            events=self._hints,
        )
        if poll.succeeded:
            st.state, st.outputs, st.reason = "READY", poll.outputs, ""
            await self._record("READY")
            return st
        st.state = "FAILED"
        st.reason = f"{poll.failure_resource or 'stack'}: {poll.failure_reason or poll.status}"
        # Leave nothing half-created: a rolled-back stack would also block the next attempt.
        ref = StackRef(
            org_id=input.org_id,
            region=input.region,
            stack_name=st.stack_name,
            expect="delete",
            client_request_token=request_token("foundation-rollback"),
        )
        await acts.delete_stack(ref, summary="delete failed foundation stack", **AWS_CALL)
        await wait_for_stack(
            ref, None, "wait for failed foundation to be deleted", events=self._hints
        )
        await self._record("FAILED")
        return st

    def _progress(self, poll: StackPoll) -> None:
        self._status.events = poll.events

    async def _record(self, state: str) -> None:
        st = self._status
        await acts.record_foundation.registry(
            FoundationRecord(
                org_id=st.org_id,
                region=st.region,
                state=state,
                stack_name=st.stack_name,
                outputs=st.outputs,
            ),
        )
        if state in ("READY", "FAILED"):
            await tell_org(st.org_id)


@workflow.defn(name="CleanupRegion", failure_exception_types=[ValidationError])
class CleanupRegionWorkflow:
    """Delete the foundation -- refused, deleting nothing, while any cluster of the organisation in
    that region is not DELETED (FAILED ones included); then verify nothing tagged remains."""

    def __init__(self) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler

    @workflow.run
    async def run(self, input: CleanupRegionInput | None = None) -> CleanupResult:
        require_input(input, "CleanupRegion", '{"org_id": "acme", "region": "us-east-1"}')
        assert input is not None
        bind_input(ids.cleanup_workflow_id(input.org_id, input.region))
        upsert(org_id=input.org_id, region=input.region)
        blocking: RegionClusters = await acts.begin_foundation_delete(
            RegionClustersInput(org_id=input.org_id, region=input.region),
            summary="check no cluster remains (consistent read)",
            **REGISTRY,
        )
        if blocking.clusters:
            names = ", ".join(f"{c.name} ({c.state})" for c in blocking.clusters)
            raise ApplicationError(
                f"cleanup of {input.region} refused: clusters still exist there: {names}. Delete them first "
                "(FAILED clusters too: send them the delete signal); nothing was deleted.",
                type="CleanupRefused",
            )
        name = blocking.stack_name or ids.foundation_stack(input.org_id, input.region)
        ref = StackRef(
            org_id=input.org_id,
            region=input.region,
            stack_name=name,
            expect="delete",
            client_request_token=request_token("foundation-delete"),
        )
        await acts.delete_stack(
            ref, summary=f"delete foundation stack in {input.region}", **AWS_CALL
        )
        poll = await wait_for_stack(ref, None, f"wait for foundation deletion in {input.region}")
        if not poll.succeeded:
            await acts.record_foundation.registry(
                FoundationRecord(
                    org_id=input.org_id, region=input.region, state="DELETE_FAILED", stack_name=name
                ),
            )
            await tell_org(input.org_id)
            raise ApplicationError(
                f"deleting {name} failed: {poll.failure_resource or ''} {poll.failure_reason or poll.status}".strip(),
                type="CleanupFailed",
            )
        if _patches.patched("cleanup-sweep"):
            swept: Leftovers = await acts.sweep_foundation_leftovers(
                LeftoversInput(org_id=input.org_id, region=input.region),
                summary=f"remove what the stack deletion left in {input.region}",
                **AWS_CALL,
            )
            if swept.resources:
                workflow.logger.warning(
                    f"removed {len(swept.resources)} leftovers: {', '.join(swept.resources)}",
                    extra={"org_id": input.org_id},
                )
        left: Leftovers = await acts.find_leftovers(
            LeftoversInput(org_id=input.org_id, region=input.region),
            summary="verify nothing tagged remains",
            **AWS_CALL,
        )
        await acts.record_foundation.registry(
            FoundationRecord(
                org_id=input.org_id,
                region=input.region,
                state="DELETED" if not left.resources else "LEFTOVERS",
                stack_name=name,
            ),
        )
        await tell_org(input.org_id)
        if left.resources:
            raise ApplicationError(
                f"foundation stack deleted, but resources tagged for {input.org_id} remain in {input.region}: "
                + ", ".join(left.resources),
                type="CleanupLeftovers",
            )
        return CleanupResult(
            org_id=input.org_id,
            region=input.region,
            deleted=True,
            message=f"foundation in {input.region} deleted; nothing tagged remains",
        )
