"""An organisation's monthly budget in the workflows: the update ``set_budget`` of
``OnboardOrganization`` (a mixin), and what ``BillingMeter`` does when a tick's close finds a
threshold reached (:func:`act_on_budget`).

Each threshold is acted on once per month (the meter's carried totals remember the month and the
level acted on; a new month starts from 0): at 80 % the admin is emailed; at 100 % too, and with
``budget_action`` ``stop`` every RUNNING cluster is sent the signal ``budget_exceeded`` (in the
meter's history and the cluster's), which the cluster announces and carries out like any automatic
action (stop, or delete where storage is not kept; ``keep`` cancels it). New clusters are refused
by validation (activities/clusters.py) as soon as the month's spend reaches the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from bridgehead import ids
    from bridgehead.budget import LIMIT_AT
    from bridgehead.models import (
        BudgetStatus,
        NotifyInput,
        OrgState,
        SetBudgetInput,
        SetOrgBudgetInput,
        UpdateResult,
        UsageTotals,
    )

from workflows import _activities as acts
from workflows._common import require_payload, root_message
from workflows._options import NOTIFY, REGISTRY

if TYPE_CHECKING:
    from bridgehead.models import OnboardingState, OnboardOrganizationRun

UPDATES = ("set_budget",)
_EXAMPLE = '{"monthly_budget_usd": 500, "budget_action": "notify"}'


class SetsBudget:
    """Update ``set_budget`` of ``OnboardOrganization``."""

    if TYPE_CHECKING:
        _input: OnboardOrganizationRun
        _s: OnboardingState

        def _step(self, text: str) -> None: ...

    @workflow.update
    async def set_budget(self, req: SetBudgetInput | None = None) -> UpdateResult:
        """Record the monthly budget on the organisation (``null`` removes it)."""
        assert req is not None  # the validator refused a missing payload
        await acts.set_org_budget(
            SetOrgBudgetInput(org_id=self._input.org_id, **req.model_dump()),
            summary="record the monthly budget",
            **REGISTRY,
        )
        self._s.monthly_budget_usd = req.monthly_budget_usd
        self._s.budget_action = req.budget_action
        text = (
            f"monthly budget set to ${req.monthly_budget_usd} ({req.budget_action} at 100 %)"
            if req.monthly_budget_usd is not None
            else "monthly budget removed"
        )
        self._step(text)
        return UpdateResult(accepted=True, state=self._s.state, message=text)

    @set_budget.validator
    def _validate_set_budget(self, req: SetBudgetInput | None = None) -> None:
        require_payload(req, "set_budget", _EXAMPLE)
        if self._s.state in (OrgState.REGISTERING, OrgState.OFFBOARDING, OrgState.OFFBOARDED):
            raise ApplicationError(
                f"organisation is {self._s.state.value}; a budget needs a registered organisation",
                type="BadInput",
            )


async def act_on_budget(org_id: str, totals: UsageTotals, b: BudgetStatus) -> None:
    """Act once per month on each threshold the month's spend reached (called by the meter)."""
    if totals.budget_month != b.month:
        totals.budget_month, totals.budget_level = b.month, 0
    if b.level <= totals.budget_level:
        return
    totals.budget_level = b.level
    subject = f"{org_id}: {b.level} % of the monthly budget reached ({b.month})"
    stop = b.level >= LIMIT_AT and b.budget_action == "stop"
    body = (
        f"The organisation {org_id} has spent ${b.spent_usd} of its ${b.monthly_budget_usd} budget for {b.month}."
        + (
            " New clusters are refused until next month or a higher budget."
            if b.level >= LIMIT_AT
            else ""
        )
        + (
            f" Running clusters will be stopped (or deleted where storage is not kept) after their grace period: {', '.join(b.running)}."
            if stop and b.running
            else ""
        )
    )
    workflow.logger.warning(subject, extra={"org_id": org_id})
    if b.admin_email:
        try:
            await acts.notify(
                NotifyInput(
                    to=b.admin_email,
                    subject=subject,
                    body=body,
                    idempotency_key=f"{ids.billing_workflow_id(org_id)}/budget/{b.month}/{b.level}",
                ),
                summary=f"email admin: budget {b.level} %",
                **NOTIFY,
            )
        except ActivityError as e:  # the log holds it; an email must not stop billing
            workflow.logger.warning(
                f"could not email the admin: {root_message(e)}", extra={"org_id": org_id}
            )
    if not stop:
        return
    for name in b.running:
        workflow.logger.warning(
            f"budget spent: asking cluster {name} to stop", extra={"org_id": org_id}
        )
        handle = workflow.get_external_workflow_handle(ids.cluster_workflow_id(org_id, name))
        try:
            await handle.signal("budget_exceeded")
        except Exception as e:  # noqa: BLE001 -- a cluster that ended meanwhile: nothing to stop
            workflow.logger.warning(f"cluster {name} not signalled: {e}", extra={"org_id": org_id})
