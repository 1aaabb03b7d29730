"""``OnboardOrganization``: the entity workflow of one organisation (its role is verified by
``VerifyRole`` in :mod:`workflows.verification`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        BillingMeterInput,
        FoundationStatus,
        NotifyInput,
        OnboardingState,
        OnboardOrganizationRun,
        OrgState,
        OrgStatus,
        ProvisionRegionInput,
        RegionProgress,
        RegisterOrgInput,
        ReverifyInput,
        SetOrgStateInput,
        ShareImagesInput,
        ShareImagesResult,
        VerificationReport,
        VerifyRoleInput,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._budget import UPDATES, SetsBudget
from workflows._common import (
    ReportsUnknownRequests,
    bind_input,
    require_input,
    root_message,
    upsert,
)
from workflows._options import NOTIFY, REGISTRY
from workflows._org_roles import _ROLE_STATES, TakesRoles
from workflows.foundations import FollowsFoundations
from workflows.offboarding import OffboardsOrganization
from workflows.verification import VerifyRoleWorkflow

#: Patch (after the baseline): images shared while the foundations are provisioned, not before.
IMAGES_BESIDE_FOUNDATIONS = "images-beside-foundations"
#: Legacy in-workflow re-verification timer, kept for runs started before the "reverify-schedule"
#: patch; newer runs are re-verified by the Schedule ``org-{org_id}-reverify`` (daily).
REVERIFY_EVERY = timedelta(hours=24)
#: IAM is eventually consistent: a role created a moment ago may not be assumable yet.
ROLE_PROPAGATION = timedelta(seconds=5)
#: States from which ``offboard`` is accepted (not in the middle of verifying or provisioning).
_SETTLED_STATES = _ROLE_STATES
_SIGNALS = ("reverify",)
_UPDATES = ("submit_role", "create_role_for_me", "offboard", "set_verification_level", *UPDATES)
_EXAMPLE = '{"org_id": "acme", "display_name": "Acme", "admin_email": "admin@acme.example", "aws_account_id": "222222222222"}'


@workflow.defn(name="OnboardOrganization", failure_exception_types=[ValidationError])
class OnboardOrganizationWorkflow(
    ReportsUnknownRequests, TakesRoles, OffboardsOrganization, FollowsFoundations, SetsBudget
):
    """Long-lived entity for one organisation: register, get a role, verify, share images,
    provision every region, then stay READY and re-verify daily."""

    KNOWN_SIGNALS = _SIGNALS
    KNOWN_UPDATES = _UPDATES

    @workflow.init
    def __init__(self, input: OnboardOrganizationRun | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        self._input = input or OnboardOrganizationRun.model_construct(
            org_id="-", aws_account_id="-", regions=[]
        )
        self._s = (input.resume if input else None) or OnboardingState()
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
                if not s.reverify_scheduled:
                    sid = await acts.ensure_reverify_schedule(
                        ReverifyInput(org_id=input.org_id),
                        summary="create the daily re-verification schedule",
                        **REGISTRY,
                    )
                    s.reverify_scheduled = True
                    self._step(f"daily re-verification scheduled ({sid})")
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
        if _patches.patched(IMAGES_BESIDE_FOUNDATIONS):
            problems = await self._images_and_foundations(input)
        else:
            problems = await self._images_then_foundations(input)
        if problems is not None:
            await self._persist(OrgState.ACTION_REQUIRED, problems)
            return
        await self._persist(OrgState.READY, "organisation ready")
        await self._start_billing(input.org_id)

    async def _images_and_foundations(self, input: OnboardOrganizationRun) -> str | None:
        """Share the images and provision every region's foundation at once (patch
        ``images-beside-foundations``): a foundation does not need the images, only clusters do,
        and the organisation is READY once both are done. On real AWS an image copied to a new
        region takes many minutes and a foundation stack a few; at once, onboarding takes the
        longer of the two instead of their sum. Returns what needs the customer's action, or
        None. Both children are started in one workflow task, the images' first."""
        images = asyncio.ensure_future(self._share_images(input))
        foundations = asyncio.ensure_future(self._provision_regions(input))
        self._set(
            OrgState.SHARING_IMAGES,
            "sharing platform images; regional foundations provisioning beside them",
        )
        try:
            images_problem = await images
        except BaseException:
            foundations.cancel()  # nothing left running unawaited when the images' step raises
            raise
        # Said whether or not the foundations are done (each phase of onboarding is in the steps).
        self._set(
            OrgState.PROVISIONING,
            "provisioning regional foundations"
            if not foundations.done()
            else "regional foundations provisioned beside the images",
        )
        foundations_problem = await foundations
        found = [p for p in (images_problem, foundations_problem) if p is not None]
        return "; ".join(found) if found else None

    async def _images_then_foundations(self, input: OnboardOrganizationRun) -> str | None:
        """Images first, then every region's foundation in parallel (runs started before the
        patch ``images-beside-foundations``): the foundations wait for the images and are not
        provisioned when sharing fails."""
        self._set(OrgState.SHARING_IMAGES, "sharing platform images")
        problem = await self._share_images(input)
        if problem is not None:
            return problem
        self._set(OrgState.PROVISIONING, "provisioning regional foundations")
        return await self._provision_regions(input)

    async def _share_images(self, input: OnboardOrganizationRun) -> str | None:
        """The ``ShareImages`` child, its per-region result kept in the status; what failed, or
        None."""
        s = self._s
        try:
            images: ShareImagesResult = await workflow.execute_child_workflow(
                "ShareImages",
                ShareImagesInput(org_id=input.org_id, regions=input.regions),
                id=ids.images_workflow_id(input.org_id),
                result_type=ShareImagesResult,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="share images in every region",
            )
        except ChildWorkflowError as e:
            return f"image sharing failed: {root_message(e)}"
        for region, st in images.regions.items():
            s.regions.setdefault(region, RegionProgress()).images = st.state.value
            s.regions[region].detail = st.reason
        if not images.all_shared:
            bad = [
                f"{r}: {st.reason}"
                for r, st in images.regions.items()
                if st.state.value != "SHARED"
            ]
            return "images not shared in " + "; ".join(bad)
        return None

    async def _provision_regions(self, input: OnboardOrganizationRun) -> str | None:
        """One ``ProvisionRegion`` child per region, all at once; what failed, or None."""
        s = self._s
        results = await asyncio.gather(
            *(
                workflow.execute_child_workflow(
                    "ProvisionRegion",
                    ProvisionRegionInput(org_id=input.org_id, region=r),
                    id=ids.region_workflow_id(input.org_id, r),
                    result_type=FoundationStatus,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    static_summary=f"foundation in {r}",
                )
                for r in input.regions
            ),
            return_exceptions=True,
        )
        failed = []
        for region, res in zip(input.regions, results, strict=True):
            progress = s.regions.setdefault(region, RegionProgress())
            if isinstance(res, BaseException):
                progress.foundation, progress.detail = "FAILED", root_message(res)
                failed.append(f"{region}: {progress.detail}")
            else:
                progress.foundation, progress.detail = res.state, res.reason
                if res.state != "READY":
                    failed.append(f"{region}: {res.reason}")
        if failed:
            return "foundation failed in " + "; ".join(failed) + " (send reverify to retry)"
        return None

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

    async def _persist(self, state: OrgState, text: str) -> None:
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
        if state in (OrgState.READY, OrgState.ACTION_REQUIRED) and _patches.patched(
            "org-notifications"
        ):
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
