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
    _step: Callable[[str], None]

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
        None.

        One ``gather``: both children are started in one workflow task (the images' first), and
        a cancellation reaches both. Each child's per-region reason is kept apart and the two are
        joined once both are done (either may finish first)."""
        images_said: dict[str, str] = {}
        foundations_said: dict[str, str] = {}
        foundations_done = False

        async def images() -> str | None:
            problem = await self._share_images(input, images_said)
            if problem is not None:
                self._step(problem)  # said now, not only once the foundations are done
            # Said whether or not the foundations are done (each phase is in the steps).
            self._set(
                OrgState.PROVISIONING,
                "regional foundations finished beside the images"
                if foundations_done
                else "provisioning regional foundations",
            )
            return problem

        async def foundations() -> str | None:
            nonlocal foundations_done
            try:
                return await self._provision_regions(input, foundations_said)
            finally:
                foundations_done = True

        self._set(
            OrgState.SHARING_IMAGES,
            "sharing platform images; regional foundations provisioning beside them",
        )
        outcomes = await asyncio.gather(images(), foundations())
        for region in input.regions:
            said = (images_said.get(region, ""), foundations_said.get(region, ""))
            self._s.regions.setdefault(region, RegionProgress()).detail = "; ".join(
                x for x in said if x
            )
        found = [p for p in outcomes if p is not None]
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

    async def _share_images(
        self, input: OnboardOrganizationRun, said: dict[str, str] | None = None
    ) -> str | None:
        """The ``ShareImages`` child, its per-region result kept in the status (each region's
        reason in ``said`` when given, else in its ``detail``); what failed, or None."""
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
            if said is None:
                s.regions[region].detail = st.reason
            else:
                said[region] = st.reason
        if not images.all_shared:
            bad = [
                f"{r}: {st.reason}"
                for r, st in images.regions.items()
                if st.state.value != "SHARED"
            ]
            return "images not shared in " + "; ".join(bad)
        return None

    async def _provision_regions(
        self, input: OnboardOrganizationRun, said: dict[str, str] | None = None
    ) -> str | None:
        """One ``ProvisionRegion`` child per region, all at once (each region's reason in
        ``said`` when given, else in its ``detail``); what failed, or None."""
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
                progress.foundation, reason = "FAILED", root_message(res)
                failed.append(f"{region}: {reason}")
            else:
                progress.foundation, reason = res.state, res.reason
                if res.state != "READY":
                    failed.append(f"{region}: {res.reason}")
            if said is None:
                progress.detail = reason
            else:
                said[region] = reason
        if failed:
            return "foundation failed in " + "; ".join(failed) + " (send reverify to retry)"
        return None
