"""Images and regional foundations of ``OnboardOrganization`` once its role is verified: a mixin
of :class:`workflows.onboarding.OnboardOrganizationWorkflow`, kept apart so the entity workflow's
module holds its main flow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from bridgehead import ids
    from bridgehead.models import (
        FoundationStatus,
        OnboardingState,
        OnboardOrganizationRun,
        OrgState,
        ProvisionRegionInput,
        RegionProgress,
        ShareImagesInput,
        ShareImagesResult,
    )

from workflows import _patches
from workflows._common import root_message

#: Patch (after the baseline): images shared while the foundations are provisioned, not before.
IMAGES_BESIDE_FOUNDATIONS = "images-beside-foundations"


class SetsUpRegions:
    """Shares the platform's images with the organisation and provisions each region's
    foundation; each step returns what needs the customer's action, or None."""

    # Provided by the workflow class.
    _s: OnboardingState
    _set: Callable[[OrgState, str], None]

    async def _set_up_regions(self, input: OnboardOrganizationRun) -> str | None:
        """Images and foundations, in the order of the run's code version."""
        if _patches.patched(IMAGES_BESIDE_FOUNDATIONS):
            return await self._images_and_foundations(input)
        return await self._images_then_foundations(input)

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
