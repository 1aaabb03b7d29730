"""``ImageRelease``: a new platform image release shared with every READY organisation in each of
its regions (copied first where the release has no image), then, after a grace period, the
release it replaced revoked wherever no running cluster still uses it.

Resumable: every step is idempotent (the release record, copies found by name and copied-from
tag, grants that AWS treats as no-ops when repeated, revocations that answer NOT_SHARED the
second time), and progress is the page cursor carried across runs.

History bound: each run handles one page of ``PAGE_ORGS`` organisations, then continues as new.
A step (one organisation, one region) is one activity (scheduled/started/completed = 3 events)
and at most one workflow task (3 events): <= 6 events. An organisation has at most
``MAX_REGIONS`` regions; a region lacking the image costs one copy, one wait and one record
(<= 18 events with their workflow tasks), at most once per region. So one run adds at most
``12 + 6 * PAGE_ORGS * MAX_REGIONS + 18 * MAX_REGIONS`` = 12 + 1920 + 288 = 2220 events (start,
page read, timer, continue-as-new included), whatever the number of organisations: far below the
10,240 events at which Temporal suggests continuing as new. ``status`` shows the page in flight;
totals and (at most ``MAX_PROBLEMS``) problems cover the whole release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        BeginReleaseInput,
        CopyImageInput,
        ImageInRegion,
        ImageReleaseRun,
        ImageReleaseState,
        ImageReleaseStatus,
        ReleaseImageInput,
        ReleaseOrgs,
        ReleaseOrgsInput,
        ReleasePhase,
        ReleasePlan,
        ReleaseRegion,
        ReleaseStep,
        RevokeReplacedInput,
        RevokeReplacedResult,
        ShareImageInput,
    )
    from bridgehead.models.common import SUPPORTED_REGIONS

from workflows import _activities as acts
from workflows._common import bind_input, continued_by_itself, require_input, root_message
from workflows._options import AWS_CALL, IMAGE_WAIT, REGISTRY

PAGE_ORGS = 20
MAX_REGIONS = len(SUPPORTED_REGIONS)
MAX_PROBLEMS = 100
_PROBLEM_STEPS = (ReleaseStep.FAILED, ReleaseStep.KEPT)


@workflow.defn(name="ImageRelease", failure_exception_types=[ValidationError])
class ImageReleaseWorkflow:
    """Share a release with every READY organisation, page by page, ``concurrency`` steps at a
    time; wait the grace period (a durable timer); revoke the replaced release (refused, and
    shown, where a running cluster still uses it or the new release did not arrive)."""

    @workflow.init
    def __init__(self, input: ImageReleaseRun | None = None) -> None:
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        self._input = input or ImageReleaseRun.model_construct(version="-", images={})
        self._s: ImageReleaseState | None = (
            input.carried if input and continued_by_itself() else None
        )
        self._page: dict[str, dict[str, ReleaseRegion]] = {}
        self._copies: dict[str, asyncio.Future[str]] = {}

    @workflow.query
    def status(self) -> ImageReleaseStatus:
        s = self._s
        return ImageReleaseStatus(
            version=self._input.version,
            phase=s.phase if s else ReleasePhase.SHARING,
            images=dict(s.images if s else self._input.images),
            previous_version=s.previous_version if s else None,
            previous_images=dict(s.previous_images) if s else {},
            revoke_at=s.revoke_at if s else None,
            orgs=self._page,
            totals=dict(s.totals) if s else {},
            problems=list(s.problems) if s else [],
            problems_omitted=s.problems_omitted if s else 0,
        )

    @workflow.run
    async def run(self, input: ImageReleaseRun | None = None) -> ImageReleaseStatus:
        require_input(
            input, "ImageRelease", '{"version": "2026.11", "images": {"us-east-1": "ami-0123..."}}'
        )
        assert input is not None
        bind_input(ids.image_release_workflow_id(input.version), carried={"carried": input.carried})
        if self._s is None:
            plan: ReleasePlan = await acts.begin_image_release(
                BeginReleaseInput(version=input.version, images=dict(input.images)),
                summary=f"record release {input.version}",
                **REGISTRY,
            )
            grace = plan.grace_seconds
            if input.grace_period_hours is not None:
                grace = round(input.grace_period_hours * 3600)
            self._s = ImageReleaseState(
                source_region=plan.source_region,
                images=dict(input.images),
                previous_version=plan.previous_version,
                previous_images=plan.previous_images,
                concurrency=input.concurrency or plan.concurrency,
                grace_seconds=grace,
            )
        s = self._s
        if s.phase == ReleasePhase.SHARING:
            if await self._one_page(ready_only=True, step=self._share):
                return self._continue()
            s.cursor, s.phase = None, ReleasePhase.GRACE
            s.revoke_at = self._grace_ends()
            if not self._to_revoke():
                s.phase = ReleasePhase.DONE
        if s.phase == ReleasePhase.GRACE:
            assert s.revoke_at is not None
            # A durable timer: a crash or a continue-as-new resumes it where it was.
            left = s.revoke_at - workflow.now()
            if left > timedelta(0):
                await workflow.sleep(left, summary="grace period before revoking the old release")
            s.phase = ReleasePhase.REVOKING
        if s.phase == ReleasePhase.REVOKING:
            if await self._one_page(ready_only=False, step=self._revoke):
                return self._continue()
            s.phase = ReleasePhase.DONE
        return self.status()

    def _continue(self) -> ImageReleaseStatus:
        assert self._s is not None
        self._s.runs += 1
        workflow.continue_as_new(self._input.model_copy(update={"carried": self._s}))

    def _grace_ends(self) -> datetime:
        assert self._s is not None
        return workflow.now() + timedelta(seconds=self._s.grace_seconds)

    def _slots(self) -> asyncio.Semaphore:
        """The concurrency bound: one slot per (organisation, region) step in flight."""
        assert self._s is not None
        return asyncio.Semaphore(self._s.concurrency)

    def _to_revoke(self) -> dict[str, str]:
        """Regions whose replaced image differs from the new one (the replaced image to revoke)."""
        s = self._s
        assert s is not None
        return {r: i for r, i in s.previous_images.items() if s.images.get(r) != i}

    async def _one_page(
        self, *, ready_only: bool, step: Callable[[str, str], Awaitable[None]]
    ) -> bool:
        """Run ``step`` for every (organisation, region) of the next page, ``concurrency`` at a
        time; record the totals and problems; True when more pages remain."""
        s = self._s
        assert s is not None
        page: ReleaseOrgs = await acts.release_orgs(
            ReleaseOrgsInput(after=s.cursor, limit=PAGE_ORGS, ready_only=ready_only),
            summary=f"organisations after {s.cursor or 'the first'}",
            **REGISTRY,
        )
        revoking = self._to_revoke()
        self._page = {
            o.org_id: {
                r: ReleaseRegion()
                for r in o.regions
                if ready_only or r in revoking  # revoking: only where the image changed
            }
            for o in page.orgs
        }
        slots = self._slots()

        async def bounded(org: str, region: str) -> None:
            async with slots:
                await step(org, region)

        await asyncio.gather(
            *(bounded(org, r) for org, regions in self._page.items() for r in regions)
        )
        for org, regions in self._page.items():
            for region, st in regions.items():
                s.totals[st.state.value] = s.totals.get(st.state.value, 0) + 1
                if st.state in _PROBLEM_STEPS:
                    if len(s.problems) < MAX_PROBLEMS:
                        s.problems.append(f"{org}/{region}: {st.state.value}: {st.reason}")
                    else:
                        s.problems_omitted += 1
        if page.orgs:
            s.cursor = page.orgs[-1].org_id
        return page.more

    async def _share(self, org: str, region: str) -> None:
        st = self._page[org][region]
        try:
            if region not in self._s_images():
                st.state = ReleaseStep.COPYING
            image_id = await self._image_in(region)
            st.state, st.image_id = ReleaseStep.SHARING, image_id
            await acts.share_image(
                ShareImageInput(org_id=org, region=region, image_id=image_id),
                summary=f"share {image_id} with {org} in {region}",
                **AWS_CALL,
            )
            st.state = ReleaseStep.SHARED
        except ActivityError as e:
            st.state, st.reason = ReleaseStep.FAILED, root_message(e)
            workflow.logger.warning(
                f"release share failed for {org} in {region}: {st.reason}",
                extra={"org_id": org, "region": region},
            )

    def _s_images(self) -> dict[str, str]:
        assert self._s is not None
        return self._s.images

    async def _image_in(self, region: str) -> str:
        """The release's image in ``region``: given, or copied once from the source region (every
        organisation waiting for it shares the one copy)."""
        images = self._s_images()
        if region in images:
            return images[region]
        if region not in self._copies:
            self._copies[region] = asyncio.ensure_future(self._copy(region))
        return await self._copies[region]

    async def _copy(self, region: str) -> str:
        s = self._s
        assert s is not None
        copied: ImageInRegion = await acts.copy_platform_image(
            CopyImageInput(
                source_region=s.source_region,
                source_image_id=s.images[s.source_region],
                region=region,
                client_token=f"{workflow.info().workflow_id}-{region}",
            ),
            summary=f"copy the release to {region}",
            **AWS_CALL,
        )
        await acts.wait_image_available(
            copied, summary=f"wait for the copy in {region}", **IMAGE_WAIT
        )
        await acts.record_release_image(
            ReleaseImageInput(version=self._input.version, region=region, image_id=copied.image_id),
            summary=f"record the copy in {region}",
            **REGISTRY,
        )
        s.images[region] = copied.image_id
        return copied.image_id

    async def _revoke(self, org: str, region: str) -> None:
        st = self._page[org][region]
        old = self._to_revoke()[region]
        st.state, st.image_id = ReleaseStep.REVOKING, old
        try:
            res: RevokeReplacedResult = await acts.revoke_replaced_image(
                RevokeReplacedInput(org_id=org, region=region, image_id=old),
                summary=f"revoke {old} from {org} in {region}",
                **AWS_CALL,
            )
            st.state, st.reason = res.state, res.reason
        except ActivityError as e:
            st.state, st.reason = ReleaseStep.FAILED, root_message(e)
