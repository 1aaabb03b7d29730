"""``VerifyRole`` (prove a customer's role is safe and sufficient) and ``ReverifyOrganization``
(started by the daily Schedule, asks the organisation's workflow to verify again)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids, metrics
    from bridgehead.models import ReverifyInput, VerificationReport, VerifyRoleInput

from workflows import _activities as acts
from workflows._common import bind_input, refuse_cron, require_input, upsert
from workflows._options import VERIFY


@workflow.defn(name="VerifyRole", failure_exception_types=[ValidationError])
class VerifyRoleWorkflow:
    """Assume the role with the External ID and prove it is safe and sufficient; returns the report."""

    @workflow.run
    async def run(self, input: VerifyRoleInput | None = None) -> VerificationReport:
        require_input(
            input,
            "VerifyRole",
            '{"org_id": "acme", "role_arn": "arn:aws:iam::<account>:role/<name>"}',
        )
        assert input is not None
        refuse_cron()
        try:
            ids.check_verify_workflow_id(workflow.info().workflow_id, input.org_id)
        except ids.WorkflowIdMismatch as e:
            raise ApplicationError(str(e), type="WorkflowIdMismatch", non_retryable=True) from None
        upsert(org_id=input.org_id)
        report = await acts.verify_role(input, summary=f"verify {input.role_arn}", **VERIFY)
        for check in report.failed():
            metrics.count("bridgehead_verification_failures", check=check.name)
        return report


@workflow.defn(name="ReverifyOrganization", failure_exception_types=[ValidationError])
class ReverifyOrganizationWorkflow:
    """Started by the daily Schedule ``org-{org_id}-reverify``: asks the organisation's entity
    workflow to verify its role again (drift: role deleted, narrowed, trust changed)."""

    @workflow.run
    async def run(self, input: ReverifyInput | None = None) -> bool:
        require_input(input, "ReverifyOrganization", '{"org_id": "acme"}')
        assert input is not None
        bind_input(ids.reverify_schedule_id(input.org_id), scheduled=True)
        upsert(org_id=input.org_id)
        try:
            await workflow.get_external_workflow_handle(ids.org_workflow_id(input.org_id)).signal(
                "reverify"
            )
        except FailureError as e:  # the organisation's workflow is gone (offboarded)
            workflow.logger.warning(
                f"cannot signal {ids.org_workflow_id(input.org_id)}: {e}",
                extra={"org_id": input.org_id},
            )
            return False
        return True
