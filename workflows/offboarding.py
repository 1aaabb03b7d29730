"""Offboarding of an organisation (the ``offboard`` update of ``OnboardOrganization`` and the
steps it runs): a mixin of :class:`workflows.onboarding.OnboardOrganizationWorkflow`, kept apart
so each file reads as one concern. It uses the workflow's state (``self._s``), its lock
(``self._busy``) and its ``_set`` / ``_step`` / ``_persist`` helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from bridgehead import ids
    from bridgehead.models import (
        CleanupRegionInput,
        CleanupResult,
        FoundationStates,
        FoundationStatesInput,
        OffboardInput,
        OnboardingState,
        OnboardOrganizationRun,
        OrgClustersInput,
        OrgRegionsInput,
        OrgState,
        RegionClusters,
        RegionProgress,
        ReverifyInput,
        SetOrgStateInput,
        SharedImages,
        ShareImageInput,
        ShareImagesInput,
        ShareImagesResult,
        UpdateResult,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import (
    require_payload,
    root_message,
)
from workflows._options import AWS_CALL, REGISTRY

#: Offboarding revokes every image the registry recorded for the org (older releases too), not
#: only the newest released image; runs that offboarded before keep the ShareImages child.
REVOKE_RECORDED_IMAGES = "offboard-revoke-recorded-images"
#: Offboarding deletes every foundation the registry holds for the org that is not DELETED, not
#: only those of the run's own region list: a foundation built by a ``ProvisionRegion`` started
#: directly in another region (possible before bridgehead/org_access.py) was left behind, and
#: kept costing the customer (found by an adversarial review, session 13).
EVERY_RECORDED_FOUNDATION = "offboard-every-recorded-foundation"

_SETTLED_STATES = {OrgState.AWAITING_ROLE, OrgState.ACTION_REQUIRED, OrgState.READY}


class OffboardsOrganization:
    """``offboard``: refused while any cluster remains; otherwise every foundation, image grant,
    the Schedule and the meter are removed, and the organisation ends OFFBOARDED."""

    # Provided by the workflow class.
    _s: OnboardingState
    _input: OnboardOrganizationRun
    _busy: asyncio.Lock
    _set: Callable[[OrgState, str], None]
    _step: Callable[[str], None]
    _persist: Callable[[OrgState, str], Awaitable[None]]

    @workflow.update
    async def offboard(self, req: OffboardInput | None = None) -> UpdateResult:
        """Remove everything Bridgehead put in the customer's account and end the organisation.

        Refused, changing nothing, while any cluster of the organisation is not DELETED. The org
        is marked OFFBOARDING in the registry *before* the clusters are read, so no new cluster can
        be validated in between (and ``CleanupRegion`` re-checks each region transactionally).
        The removal itself runs in the main flow; follow it with the ``status`` query.
        """
        assert req is not None  # the validator refused a missing payload
        async with self._busy:
            prev, prev_error = self._s.state, self._s.last_error
            await self._persist(
                OrgState.OFFBOARDING, "offboarding requested; checking that no cluster remains"
            )
            blocking: RegionClusters = await acts.org_live_clusters(
                OrgClustersInput(org_id=self._input.org_id),
                summary="check no cluster remains (consistent read)",
                **REGISTRY,
            )
            if blocking.clusters:
                names = ", ".join(f"{c.name} in {c.region} ({c.state})" for c in blocking.clusters)
                self._s.last_error = prev_error
                self._set(prev, f"offboarding refused: clusters remain: {names}")
                await acts.set_org_state(
                    SetOrgStateInput(
                        org_id=self._input.org_id, state=prev, detail=prev_error or ""
                    ),
                    **REGISTRY,
                )
                raise ApplicationError(
                    f"offboarding {self._input.org_id} refused: clusters still exist: {names}. Delete them first "
                    "(FAILED clusters too: send them the delete signal); nothing was changed.",
                    type="OffboardRefused",
                )
            self._s.offboard = req
        return UpdateResult(
            accepted=True,
            state=OrgState.OFFBOARDING,
            message="offboarding started: regional foundations, image grants, the re-verification schedule and the billing meter will be removed",
        )

    @offboard.validator
    def _validate_offboard(self, req: OffboardInput | None = None) -> None:
        require_payload(req, "offboard", f'{{"confirm_org_id": "{self._input.org_id}"}}')
        assert req is not None
        if req.confirm_org_id != self._input.org_id:
            raise ApplicationError(
                f"confirm_org_id must be this organisation's id ({self._input.org_id!r}); got {req.confirm_org_id!r}"
            )
        if self._s.state not in _SETTLED_STATES or self._busy.locked():
            raise ApplicationError(
                f"organisation is {self._s.state.value}; offboarding is accepted only while AWAITING_ROLE, ACTION_REQUIRED or READY"
            )

    async def _offboard(self, input: OnboardOrganizationRun, req: OffboardInput) -> bool:
        """Delete every regional foundation, revoke the image grants, remove the Schedule, stop the
        meter (it closes and meters the last hour), then OFFBOARDED. Each step is idempotent, so a
        failed attempt leaves ACTION_REQUIRED and ``offboard`` can simply be sent again."""
        s, org = self._s, input.org_id
        # Only what onboarding got to: without a role nothing was created in the customer's account.
        regions = (
            [r for r, p in s.regions.items() if p.foundation not in ("PENDING", "DELETED")]
            if s.role_arn
            else []
        )
        if s.role_arn and _patches.patched(EVERY_RECORDED_FOUNDATION):
            recorded: FoundationStates = await acts.foundation_states.registry(
                FoundationStatesInput(org_id=org)
            )
            regions += sorted(
                r for r, st in recorded.states.items() if st != "DELETED" and r not in regions
            )
        shared = [r for r, p in s.regions.items() if p.images not in ("PENDING", "REVOKED")]
        self._set(
            OrgState.OFFBOARDING,
            f"deleting the regional foundations in {', '.join(regions) or 'no region'}",
        )
        results = await asyncio.gather(
            *(
                workflow.execute_child_workflow(
                    "CleanupRegion",
                    CleanupRegionInput(org_id=org, region=r),
                    id=ids.cleanup_workflow_id(org, r),
                    result_type=CleanupResult,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    static_summary=f"delete the foundation in {r}",
                )
                for r in regions
            ),
            return_exceptions=True,
        )
        abandoned = []
        for region, res in zip(regions, results, strict=True):
            progress = s.regions.setdefault(region, RegionProgress())
            if isinstance(res, BaseException):
                progress.foundation, progress.detail = "DELETE_FAILED", root_message(res)
                abandoned.append(f"{region}: {progress.detail}")
            else:
                progress.foundation, progress.detail = "DELETED", res.message
        if abandoned and not req.abandon_foundations:
            await self._persist(
                OrgState.ACTION_REQUIRED,
                "offboarding incomplete, foundation not deleted in "
                + "; ".join(abandoned)
                + " (fix and send offboard again, or send it with abandon_foundations=true)",
            )
            return False
        if _patches.patched(REVOKE_RECORDED_IMAGES):
            if not await self._revoke_recorded_images(org):
                return False
        elif shared and not await self._revoke_images(org, shared):
            return False
        await acts.delete_reverify_schedule(
            ReverifyInput(org_id=org),
            summary="delete the daily re-verification schedule",
            **REGISTRY,
        )
        s.reverify_scheduled = False
        try:
            await workflow.get_external_workflow_handle(ids.billing_workflow_id(org)).signal("stop")
            self._step("billing meter told to close the last hour and stop")
        except FailureError:
            self._step("no billing meter running")  # never reached READY, or already stopped
        # What Bridgehead created is gone; what the customer created for it (the role, its node
        # roles, any temporary keys given to create-role-for-me) is theirs to remove.
        role = (s.role_arn or "the Bridgehead role").rsplit("/", 1)[-1]
        leftover = (
            f" Last steps for the customer: delete the role {role} and its node roles (the role's CloudFormation stack, "
            "if it was launched from the template), and deactivate any temporary keys used for create-role."
        )
        text = (
            "offboarded: Bridgehead's foundations, image grants, schedule and meter are gone."
            + leftover
        )
        if abandoned:
            text = (
                "offboarded; the customer must delete these foundation stacks (the role could not): "
                + "; ".join(abandoned)
                + "."
                + leftover
            )
        await self._persist(OrgState.OFFBOARDED, text)
        return True

    async def _revoke_images(self, org: str, regions: list[str]) -> bool:
        self._step(f"revoking the image grants in {', '.join(regions)}")
        try:
            revoked: ShareImagesResult = await workflow.execute_child_workflow(
                "ShareImages",
                ShareImagesInput(org_id=org, regions=regions, revoke=True),
                id=ids.images_workflow_id(org),
                result_type=ShareImagesResult,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="revoke the image grants",
            )
        except ChildWorkflowError as e:
            await self._persist(
                OrgState.ACTION_REQUIRED,
                f"offboarding incomplete, image grants not revoked: {root_message(e)} (send offboard again)",
            )
            return False
        for region, st in revoked.regions.items():
            self._s.regions.setdefault(region, RegionProgress()).images = st.state.value
        not_revoked = [
            f"{r}: {st.reason}" for r, st in revoked.regions.items() if st.state.value != "REVOKED"
        ]
        if not_revoked:
            await self._persist(
                OrgState.ACTION_REQUIRED,
                "offboarding incomplete, image grants not revoked in "
                + "; ".join(not_revoked)
                + " (send offboard again)",
            )
            return False
        return True

    async def _revoke_recorded_images(self, org: str) -> bool:
        """Revoke every image the registry recorded as shared with the org, in every region."""
        recorded: SharedImages = await acts.org_shared_images(
            OrgRegionsInput(org_id=org), summary="images shared with the organisation", **REGISTRY
        )
        regions = sorted({i.region for i in recorded.images})
        self._step(
            f"revoking {len(recorded.images)} image grant(s) in {', '.join(regions) or 'no region'}"
        )
        results = await asyncio.gather(
            *(
                acts.revoke_image(
                    ShareImageInput(org_id=org, region=i.region, image_id=i.image_id),
                    summary=f"revoke {i.image_id} in {i.region}",
                    **AWS_CALL,
                )
                for i in recorded.images
            ),
            return_exceptions=True,
        )
        failed = {
            f"{i.region} {i.image_id}: {root_message(res)}"
            for i, res in zip(recorded.images, results, strict=True)
            if isinstance(res, BaseException)
        }
        touched = {r for r, p in self._s.regions.items() if p.images != "PENDING"}
        for region in sorted(touched | set(regions)):
            bad = any(r.startswith(f"{region} ") for r in failed)
            self._s.regions.setdefault(region, RegionProgress()).images = (
                "FAILED" if bad else "REVOKED"
            )
        if failed:
            await self._persist(
                OrgState.ACTION_REQUIRED,
                "offboarding incomplete, image grants not revoked: "
                + "; ".join(sorted(failed))
                + " (send offboard again)",
            )
            return False
        return True
