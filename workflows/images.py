"""``ShareImages``: the platform's images in every region of an organisation, shared with its account."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        CopyImageInput,
        FindImageInput,
        FindImageResult,
        ImageInRegion,
        ImageShareState,
        OrgRegions,
        OrgRegionsInput,
        RegionShareStatus,
        ShareImageInput,
        ShareImageResult,
        ShareImagesInput,
        ShareImagesResult,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import bind_input, require_input, root_message, started_by, upsert
from workflows._options import AWS_CALL, IMAGE_WAIT


@workflow.defn(name="ShareImages", failure_exception_types=[ValidationError])
class ShareImagesWorkflow:
    """For each region in parallel: find the released image (copy it from the source region if the
    region lacks it), then grant the customer launch and snapshot permissions. One region failing
    does not hide the others: each has its own status and reason. ``revoke=true`` undoes it all."""

    @workflow.init
    def __init__(self, input: ShareImagesInput | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        self._input = input or ShareImagesInput.model_construct(org_id="-")
        self._regions: dict[str, RegionShareStatus] = {}
        # Started by the organisation's own workflow (onboarding, offboarding): from the server.
        self._by_org = input is not None and started_by(ids.org_workflow_id(input.org_id))

    @workflow.query
    def status(self) -> ShareImagesResult:
        return ShareImagesResult(org_id=self._input.org_id, regions=self._regions)

    @workflow.run
    async def run(self, input: ShareImagesInput | None = None) -> ShareImagesResult:
        require_input(input, "ShareImages", '{"org_id": "acme"}')
        assert input is not None
        bind_input(ids.images_workflow_id(input.org_id))
        if input.revoke and not self._by_org:
            # Revoking is a step of offboarding (which first refuses while clusters exist), never
            # a start of its own: grants of a READY organisation would vanish under its clusters.
            raise ApplicationError(
                "revoke: only offboarding revokes an organisation's images (signal offboard to "
                f"{ids.org_workflow_id(input.org_id)}); start ShareImages without revoke",
                type="BadInput",
                non_retryable=True,
            )
        upsert(org_id=input.org_id)
        org: OrgRegions = await acts.org_regions.registry(OrgRegionsInput(org_id=input.org_id))
        regions = input.regions or org.regions
        self._regions = {r: RegionShareStatus(region=r) for r in regions}
        one = self._revoke if input.revoke else self._share
        await asyncio.gather(*(one(r, org.source_region) for r in regions))
        return self.status()

    async def _share(self, region: str, source_region: str) -> None:
        st = self._regions[region]
        try:
            found: FindImageResult = await acts.find_platform_image(
                FindImageInput(region=region), summary=f"find image in {region}", **AWS_CALL
            )
            image_id = found.image_id
            if image_id is None:
                st.state = ImageShareState.COPYING
                source: FindImageResult = await acts.find_platform_image(
                    FindImageInput(region=source_region), **AWS_CALL
                )
                if source.image_id is None:
                    st.state, st.reason = (
                        ImageShareState.FAILED,
                        f"no released platform image in the source region {source_region}",
                    )
                    return
                copied: ImageInRegion = await acts.copy_platform_image(
                    CopyImageInput(
                        source_region=source_region,
                        source_image_id=source.image_id,
                        region=region,
                        client_token=f"{workflow.info().workflow_id}-{region}",
                    ),
                    summary=f"copy image to {region}",
                    **AWS_CALL,
                )
                st.copied_from, st.image_id = source.image_id, copied.image_id
                await acts.wait_image_available(
                    copied, summary=f"wait for image in {region}", **IMAGE_WAIT
                )
                image_id = copied.image_id
            st.image_id, st.state = image_id, ImageShareState.SHARING
            shared: ShareImageResult = await acts.share_image(
                ShareImageInput(
                    org_id=self._input.org_id,
                    region=region,
                    image_id=image_id,
                    by_org=self._by_org,
                ),
                summary=f"share image in {region}",
                **AWS_CALL,
            )
            st.snapshot_ids, st.state, st.reason = shared.snapshot_ids, ImageShareState.SHARED, ""
        except ActivityError as e:
            st.state, st.reason = ImageShareState.FAILED, root_message(e)
            workflow.logger.warning(
                f"sharing failed in {region}: {st.reason}",
                extra={"org_id": self._input.org_id, "region": region},
            )

    async def _revoke(self, region: str, _: str) -> None:
        st = self._regions[region]
        try:
            found: FindImageResult = await acts.find_platform_image(
                FindImageInput(region=region), **AWS_CALL
            )
            if found.image_id is None:
                st.state, st.reason = ImageShareState.REVOKED, "no platform image in this region"
                return
            res: ShareImageResult = await acts.revoke_image(
                ShareImageInput(org_id=self._input.org_id, region=region, image_id=found.image_id),
                summary=f"revoke image in {region}",
                **AWS_CALL,
            )
            st.image_id, st.snapshot_ids, st.state = (
                res.image_id,
                res.snapshot_ids,
                ImageShareState.REVOKED,
            )
        except ActivityError as e:
            st.state, st.reason = ImageShareState.FAILED, root_message(e)
