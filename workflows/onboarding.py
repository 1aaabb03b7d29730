"""``OnboardOrganization``: the entity workflow of one organisation (its role is verified by
``VerifyRole`` in :mod:`workflows.verification`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        BillingMeterInput,
        NotifyInput,
        OnboardingState,
        OnboardOrganizationRun,
        OrgState,
        OrgStatus,
        RegionProgress,
        RegisterOrgInput,
        ReverifyInput,
        SetOrgStateInput,
        VerificationReport,
        VerifyRoleInput,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._budget import UPDATES, SetsBudget
from workflows._common import (
    ReportsUnknownRequests,
    bind_input,
    continued_by_itself,
    require_input,
    root_message,
    upsert,
)
from workflows._options import NOTIFY, REGISTRY
from workflows._org_roles import _ROLE_STATES, TakesRoles
from workflows._org_setup import SetsUpRegions
from workflows.foundations import FollowsFoundations
from workflows.offboarding import OffboardsOrganization
from workflows.verification import VerifyRoleWorkflow

#: Legacy in-workflow re-verification timer, kept for runs started before the "reverify-schedule"
#: patch; newer runs are re-verified by the Schedule ``org-{org_id}-reverify`` (daily).
REVERIFY_EVERY = timedelta(hours=24)
#: IAM is eventually consistent: a role created a moment ago may not be assumable yet.
ROLE_PROPAGATION = timedelta(seconds=5)
#: Patch (after the baseline): once READY, the admin's e-mail, the billing meter's start and the
#: daily re-verification Schedule are started by one workflow task instead of one after the other.
READY_AT_ONCE = "ready-at-once"
#: States from which ``offboard`` is accepted (not in the middle of verifying or provisioning).
_SETTLED_STATES = _ROLE_STATES
_SIGNALS = ("reverify",)
_UPDATES = ("submit_role", "create_role_for_me", "offboard", "set_verification_level", *UPDATES)
_EXAMPLE = '{"org_id": "acme", "display_name": "Acme", "admin_email": "admin@acme.example", "aws_account_id": "222222222222"}'


@workflow.defn(name="OnboardOrganization", failure_exception_types=[ValidationError])
class OnboardOrganizationWorkflow(
    ReportsUnknownRequests,
    TakesRoles,
    SetsUpRegions,
    OffboardsOrganization,
    FollowsFoundations,
    SetsBudget,
):
    """Long-lived entity for one organisation: register, get a role, verify, share the images
    while provisioning every region, then stay READY and re-verify daily."""

    KNOWN_SIGNALS = _SIGNALS
    KNOWN_UPDATES = _UPDATES

    @workflow.init
    def __init__(self, input: OnboardOrganizationRun | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        self._input = input or OnboardOrganizationRun.model_construct(
            org_id="-", aws_account_id="-", regions=[]
        )
        # Carried state only from this workflow's own previous run: a crafted start (or an
        # update-with-start) is refused in ``run``, and its handlers never see what it carried.
        self._s = (input.resume if input and continued_by_itself() else None) or OnboardingState()
        self._unknown: list[str] = []
        self._role_changed = False
        self._reverify = False
        self._busy = asyncio.Lock()

    # --- queries, updates, signals ---------------------------------------------------------------
    def _log_subject(self) -> dict[str, str]:
        return {"org_id": self._input.org_id}

    @workflow.query
    def status(self) -> OrgStatus:
        s = self._s
        return OrgStatus(
            org_id=self._input.org_id,
            state=s.state,
            external_id=s.external_id,
            role_arn=s.role_arn,
            artifacts=s.artifacts,
            failed_checks=s.last_report.failed() if s.last_report else [],
            regions=s.regions,
            last_error=s.last_error,
            steps=s.steps[-50:],
            ignored_requests=self._unknown[-20:],
            warnings=s.last_report.warnings() if s.last_report else [],
            verification_level=s.verification_level,
            monthly_budget_usd=s.monthly_budget_usd,
            budget_action=s.budget_action,
        )

    @workflow.signal
    def reverify(self) -> None:
        """Run the verification (and the remaining steps) again, e.g. after fixing the role.

        Only records the request: whether it applies (is there a role yet?) is decided by the main
        flow, never here, because an activity result delivered in the same workflow task may be
        applied before or after this handler (a cached worker and a replaying one can differ).
        """
        if self._s.role_arn is None:
            workflow.logger.info(
                "reverify: no role yet; it will apply once a role is submitted",
                extra={"org_id": self._input.org_id},
            )
        self._reverify = True

    # --- main flow ---------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: OnboardOrganizationRun | None = None) -> OrgStatus:
        require_input(input, "OnboardOrganization", _EXAMPLE)
        assert input is not None
        bind_input(ids.org_workflow_id(input.org_id), carried={"resume": input.resume})
        s = self._s
        upsert(org_id=input.org_id)
        if s.state == OrgState.REGISTERING:
            reg = await acts.register_organization(
                RegisterOrgInput(
                    org_id=input.org_id,
                    display_name=input.display_name,
                    admin_email=input.admin_email,
                    aws_account_id=input.aws_account_id,
                    regions=input.regions,
                    shared_account=input.shared_account,
                    registration_token=f"{workflow.info().workflow_id}/{workflow.info().first_execution_run_id}",
                ),
                summary="register organisation and issue External ID",
                **REGISTRY,
            )
            s.external_id = reg.external_id
            s.artifacts = reg.artifacts
            s.regions = {r: RegionProgress() for r in input.regions}
            self._set(OrgState.AWAITING_ROLE, "registered; waiting for the customer's role")
        self._fresh_role = False
        while True:
            if s.state == OrgState.READY and _patches.patched("reverify-schedule"):
                await self._schedule_reverify(input.org_id)
                await self._wait(lambda: self._role_changed or self._wants_reverify(), None)
            elif s.state == OrgState.READY:
                timed_out = not await self._wait(
                    lambda: self._role_changed or self._wants_reverify(), REVERIFY_EVERY
                )
                if timed_out:
                    self._step("daily re-verification")
            else:
                await self._wait(lambda: self._role_changed or self._wants_reverify(), None)
            if s.offboard is not None:
                # (Old histories never have an offboard request: this branch adds no command to them.)
                async with self._busy:
                    if await self._offboard(input, s.offboard):
                        return self.status()
                    s.offboard = None
                continue
            if self._foundations_changed and _patches.patched("org-follows-foundations"):
                await self._follow_foundations(input.org_id)
                if not (self._role_changed or self._wants_reverify()):
                    continue
            self._role_changed = self._reverify = False
            if workflow.info().is_continue_as_new_suggested() and not self._busy.locked():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={"resume": s}))
            async with self._busy:
                await self._converge(input)

    def _wants_reverify(self) -> bool:
        return self._reverify and self._s.role_arn is not None

    async def _wait(self, cond, timeout):  # type: ignore[no-untyped-def]
        try:
            await workflow.wait_condition(
                lambda: (
                    cond()
                    or self._s.offboard is not None
                    or self._foundations_changed
                    or workflow.info().is_continue_as_new_suggested()
                ),
                timeout=timeout,
            )
            return True
        except TimeoutError:
            return False

    async def _converge(self, input: OnboardOrganizationRun) -> None:
        s = self._s
        assert s.role_arn is not None
        if self._fresh_role:
            # Newer runs: verify_role itself retries a freshly created role while IAM propagates it
            # (up to 2 minutes, with backoff) instead of this fixed sleep.
            if not _patches.patched("role-propagation-in-verify"):
                await workflow.sleep(ROLE_PROPAGATION)
            self._fresh_role = False
        was_ready = s.state == OrgState.READY
        self._set(OrgState.VERIFYING, "verifying the role")
        s.verifications += 1
        report: VerificationReport = await workflow.execute_child_workflow(
            VerifyRoleWorkflow.run,
            VerifyRoleInput(
                org_id=input.org_id,
                role_arn=s.role_arn,
                level=s.verification_level,
                phase="ongoing" if was_ready else "setup",
            ),
            id=ids.verify_workflow_id(input.org_id, s.verifications),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"verify role {s.role_arn}",
        )
        s.last_report = report
        if not report.passed:
            names = ", ".join(c.name for c in report.failed())
            await self._persist(
                OrgState.ACTION_REQUIRED,
                f"verification failed: {names}" + (" (drift since READY)" if was_ready else ""),
            )
            return
        self._step("role verified: " + ", ".join(c.name for c in report.checks))
        if was_ready:
            await self._persist(OrgState.READY, "re-verified")
            return
        problems = await self._set_up_regions(input)
        if problems is not None:
            await self._persist(OrgState.ACTION_REQUIRED, problems)
            return
        if _patches.patched(READY_AT_ONCE):
            await self._persist(
                OrgState.READY,
                "organisation ready",
                lambda: self._start_billing(input.org_id),
                lambda: self._schedule_reverify(input.org_id),
            )
            return
        await self._persist(OrgState.READY, "organisation ready")
        await self._start_billing(input.org_id)

    async def _schedule_reverify(self, org_id: str) -> None:
        """Create the daily re-verification Schedule, once per organisation; never for a run that
        re-verifies with its own timer (recorded before the patch ``reverify-schedule``)."""
        if self._s.reverify_scheduled or not _patches.patched("reverify-schedule"):
            return
        sid = await acts.ensure_reverify_schedule(
            ReverifyInput(org_id=org_id),
            summary="create the daily re-verification schedule",
            **REGISTRY,
        )
        self._s.reverify_scheduled = True
        self._step(f"daily re-verification scheduled ({sid})")

    async def _start_billing(self, org_id: str) -> None:
        """Start the org's BillingMeter once; it outlives this workflow (ABANDON) and its runs."""
        try:
            await workflow.start_child_workflow(
                "BillingMeter",
                BillingMeterInput(org_id=org_id),
                id=ids.billing_workflow_id(org_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary="billing ticks",
            )
            self._step("billing meter started")
        except WorkflowAlreadyStartedError:
            pass

    # --- helpers -------------------------------------------------------------------------------------
    def _step(self, text: str) -> None:
        self._s.steps.append(f"{workflow.now().isoformat(timespec='seconds')} {text}")
        del self._s.steps[:-100]
        workflow.logger.info(text, extra={"org_id": self._input.org_id})

    def _set(self, state: OrgState, text: str) -> None:
        self._s.state = state
        self._step(f"{state.value}: {text}")
        workflow.set_current_details(f"**{state.value}**: {text}")  # shown in the Web UI

    async def _persist(
        self, state: OrgState, text: str, *alongside: Callable[[], Awaitable[None]]
    ) -> None:
        """Record ``state`` (the registry first), then tell the admin; ``alongside``: steps that
        follow it, started in the same workflow task as the e-mail (patch ``ready-at-once``)."""
        if state == OrgState.ACTION_REQUIRED:
            self._s.last_error = text
        elif state == OrgState.READY:
            self._s.last_error = None
        previous = self._s.state
        record = SetOrgStateInput(org_id=self._input.org_id, state=state, detail=text)
        if _patches.patched("org-state-after-registry"):
            # ``status`` says READY only once the registry does: a cluster started on the word
            # of ``status`` is validated against the registry (seen under injected faults, where
            # the write was still being retried).
            await acts.set_org_state.registry(record)
            self._set(state, text)
        else:
            self._set(state, text)
            await acts.set_org_state.registry(record)
        tell = state in (OrgState.READY, OrgState.ACTION_REQUIRED) and _patches.patched(
            "org-notifications"
        )
        if alongside:
            told = [self._tell_admin(state, previous, text)] if tell else []
            await asyncio.gather(*told, *(step() for step in alongside))
        elif tell:
            await self._tell_admin(state, previous, text)

    async def _tell_admin(self, state: OrgState, previous: OrgState, text: str) -> None:
        """E-mail the admin when the organisation becomes READY or needs action (with each failed
        check and its fix), including drift found by re-verification. A failed e-mail never
        blocks onboarding: ``status`` carries the same facts."""
        org, s = self._input.org_id, self._s
        if state == OrgState.READY:
            if previous == OrgState.READY or text == "re-verified":
                return  # nothing new to say
            subject, body = (
                f"{org} is ready",
                f"Organisation {org} is ready: clusters can be created.",
            )
        else:
            failed = s.last_report.failed() if s.last_report else []
            lines = [
                f"- {c.name}: {c.detail}" + (f"\n  fix: {c.remedy}" if c.remedy else "")
                for c in failed
            ]
            subject = f"{org} needs action" + (
                " (its role changed since it was ready)" if "drift" in text else ""
            )
            body = f"Organisation {org}: {text}\n\n" + (
                "\n".join(lines) or "See its status for details."
            )
        s.notifications += 1
        key = f"{workflow.info().workflow_id}/{workflow.info().first_execution_run_id}/org-notice-{s.notifications}"
        try:
            await acts.notify(
                NotifyInput(
                    to=self._input.admin_email, subject=subject, body=body, idempotency_key=key
                ),
                summary=f"email admin: {state.value}",
                **NOTIFY,
            )
        except ActivityError as e:
            workflow.logger.warning(
                f"notification failed: {root_message(e)}", extra={"org_id": org}
            )
