"""``ImageRelease`` on the time-skipping server with a fake cloud: the concurrency bound, progress
per organisation and region, the grace period before the replaced release is revoked, the
"still used" refusal shown in ``status``, paging with continue-as-new, and a worker killed
mid-release (a second worker with an empty cache finishes from the history). Each check has a
planted-defect twin: a workflow variant with the defect, on which the same check reports it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

from temporalio import activity, workflow
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError

from bridgehead import ids
from bridgehead import models as m
from bridgehead.models import ImageReleaseRun, ImageReleaseStatus
from tests.support.timeskip import Served, serve
from worker import WORKFLOWS
from workflows.image_release import ImageReleaseWorkflow

GRACE = timedelta(hours=48)
NEW = {"us-east-1": "ami-0000000000000a002"}
OLD = {"us-east-1": "ami-0000000000000a001", "us-west-2": "ami-0000000000000b001"}


class FakeCloud:
    """In-memory registry and EC2 for the release activities."""

    def __init__(self, orgs: list[str], regions: list[str], share_seconds: float = 0.0) -> None:
        self.orgs, self.regions, self.share_seconds = orgs, regions, share_seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[str] = []
        self.shared: Counter[tuple[str, str]] = Counter()
        self.revoked: list[tuple[str, str, str]] = []
        self.first_revoke_at: datetime | None = None
        self.kept = {("org-b", "us-east-1"): ["c1"]}
        self.dead = False
        self.page_reads = 0

    def activities(self) -> list:  # type: ignore[type-arg]
        cloud = self

        @activity.defn(name="begin_image_release")
        def begin(req: m.BeginReleaseInput) -> m.ReleasePlan:
            cloud.calls.append(f"begin:{req.version}")
            return m.ReleasePlan(
                source_region="us-east-1",
                previous_version="v1",
                previous_images=OLD,
                concurrency=4,
                grace_seconds=int(GRACE.total_seconds()),
            )

        @activity.defn(name="release_orgs")
        def release_orgs(req: m.ReleaseOrgsInput) -> m.ReleaseOrgs:
            cloud.page_reads += 1
            if cloud.page_reads > 12:  # a release that never ends pages: stop the twin
                return m.ReleaseOrgs(orgs=[], more=False)
            after = [o for o in cloud.orgs if req.after is None or o > req.after]
            return m.ReleaseOrgs(
                orgs=[m.ReleaseOrg(org_id=o, regions=cloud.regions) for o in after[: req.limit]],
                more=len(after) > req.limit,
            )

        @activity.defn(name="copy_platform_image")
        def copy(req: m.CopyImageInput) -> m.ImageInRegion:
            cloud.calls.append(f"copy:{req.region}")
            return m.ImageInRegion(region=req.region, image_id="ami-0000000000000b002")

        @activity.defn(name="wait_image_available")
        def wait(req: m.ImageInRegion) -> m.ImageInRegion:
            return req

        @activity.defn(name="record_release_image")
        def record(req: m.ReleaseImageInput) -> None:
            cloud.calls.append(f"record:{req.region}")

        @activity.defn(name="share_image")
        def share(req: m.ShareImageInput) -> m.ShareImageResult:
            with cloud.lock:
                cloud.in_flight += 1
                cloud.max_in_flight = max(cloud.max_in_flight, cloud.in_flight)
            try:
                time.sleep(cloud.share_seconds)
                if cloud.dead:
                    raise RuntimeError("worker killed mid-step")
                with cloud.lock:
                    cloud.shared[(req.org_id, req.region)] += 1
            finally:
                with cloud.lock:
                    cloud.in_flight -= 1
            return m.ShareImageResult(image_id=req.image_id, snapshot_ids=[])

        @activity.defn(name="revoke_replaced_image")
        def revoke(req: m.RevokeReplacedInput) -> m.RevokeReplacedResult:
            cloud.revoked.append((req.org_id, req.region, req.image_id))
            used = cloud.kept.get((req.org_id, req.region))
            if used:
                return m.RevokeReplacedResult(
                    state=m.ReleaseStep.KEPT,
                    used_by=used,
                    reason=f"still used by cluster(s) {', '.join(used)}",
                )
            return m.RevokeReplacedResult(state=m.ReleaseStep.REVOKED)

        return [begin, release_orgs, copy, wait, record, share, revoke]


def release_input(concurrency: int = 2) -> m.ImageReleaseRun:
    return m.ImageReleaseRun(version="v2", images=NEW, concurrency=concurrency)


async def start(w: Served, inp: m.ImageReleaseRun) -> WorkflowHandle:  # type: ignore[type-arg]
    return await w.start(
        "ImageRelease",
        inp,
        id=ids.image_release_workflow_id(inp.version),
        result_type=m.ImageReleaseStatus,
    )


async def until_phase(h: WorkflowHandle, *phases: m.ReleasePhase) -> m.ImageReleaseStatus:  # type: ignore[type-arg]
    """The first status whose phase is one of ``phases``."""
    for _ in range(400):
        st: m.ImageReleaseStatus = await h.query("status", result_type=m.ImageReleaseStatus)
        if st.phase in phases:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {phases}")


# --- planted defects -------------------------------------------------------------------------
@workflow.defn(name="ImageRelease", sandboxed=False)
class UnboundedRelease(ImageReleaseWorkflow):
    """Defect: every step at once, whatever ``concurrency`` says."""

    def _slots(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(1000)

    @workflow.run
    async def run(self, input: ImageReleaseRun | None = None) -> ImageReleaseStatus:
        return await super().run(input)


@workflow.defn(name="ImageRelease", sandboxed=False)
class NoGraceRelease(ImageReleaseWorkflow):
    """Defect: the replaced release is revoked as soon as the new one is shared."""

    def _grace_ends(self) -> datetime:
        return workflow.now()

    @workflow.run
    async def run(self, input: ImageReleaseRun | None = None) -> ImageReleaseStatus:
        return await super().run(input)


@workflow.defn(name="ImageRelease", sandboxed=False)
class ForgetfulRelease(ImageReleaseWorkflow):
    """Defect: continue-as-new drops the carried progress (the next run starts over)."""

    def _continue(self) -> m.ImageReleaseStatus:
        workflow.continue_as_new(self._input.model_copy(update={"carried": None}))

    @workflow.run
    async def run(self, input: ImageReleaseRun | None = None) -> ImageReleaseStatus:
        return await super().run(input)


def others(defect: type) -> list[type]:  # type: ignore[type-arg]
    return [w for w in WORKFLOWS if w is not ImageReleaseWorkflow] + [defect]


# --- checks ------------------------------------------------------------------------------------
async def run_release(env, cloud: FakeCloud, workflows: list, concurrency: int = 2):  # type: ignore[no-untyped-def, type-arg]
    """Run a release to its end; returns (status during the grace period, result, the server
    time when the grace period began)."""
    acts = cloud.activities()
    async with serve(env, acts, workflows=workflows, threads=16, max_concurrent_activities=16) as w:
        h = await start(w, release_input(concurrency))
        # The phase after sharing (a defect may go straight on: the checks report it).
        after = await until_phase(
            h, m.ReleasePhase.GRACE, m.ReleasePhase.REVOKING, m.ReleasePhase.DONE
        )
        grace = after if after.phase == m.ReleasePhase.GRACE else None
        revoked_during_grace = list(cloud.revoked)
        if grace is not None:
            await env.sleep(GRACE - timedelta(minutes=1))
            revoked_during_grace = list(cloud.revoked)
        result: m.ImageReleaseStatus = await h.result()
    return grace, result, revoked_during_grace


def grace_problems(
    grace: m.ImageReleaseStatus | None, revoked_during_grace: list[tuple[str, str, str]]
) -> list[str]:
    problems = []
    if grace is None:
        problems.append("the release never waited in GRACE")
    if revoked_during_grace:
        problems.append(f"revoked before the grace period ended: {revoked_during_grace}")
    return problems


async def test_release_is_bounded_shows_progress_and_revokes_after_the_grace_period(ts_env):
    orgs = ["org-a", "org-b", "org-c"]
    cloud = FakeCloud(orgs, ["us-east-1", "us-west-2"], share_seconds=0.3)
    grace, result, revoked_during_grace = await run_release(ts_env, cloud, WORKFLOWS)
    # Concurrency: exactly the bound, never more (six steps, two at a time).
    assert cloud.max_in_flight == 2
    # Progress per organisation and region, shown while the grace period runs.
    assert grace is not None
    assert grace.totals == {"SHARED": 6}
    assert grace.orgs == {
        o: {
            "us-east-1": m.ReleaseRegion(state=m.ReleaseStep.SHARED, image_id=NEW["us-east-1"]),
            "us-west-2": m.ReleaseRegion(
                state=m.ReleaseStep.SHARED, image_id="ami-0000000000000b002"
            ),
        }
        for o in orgs
    }
    # One copy for the region the release lacked, shared by the three organisations.
    assert cloud.calls == ["begin:v2", "copy:us-west-2", "record:us-west-2"]
    assert grace.images == {"us-east-1": NEW["us-east-1"], "us-west-2": "ami-0000000000000b002"}
    assert grace_problems(grace, revoked_during_grace) == []
    # After the grace period: every replaced image revoked, except where a cluster uses it.
    assert sorted(cloud.revoked) == sorted((o, r, OLD[r]) for o in orgs for r in OLD)
    assert result.phase == m.ReleasePhase.DONE
    assert result.totals == {"SHARED": 6, "REVOKED": 5, "KEPT": 1}
    assert result.orgs["org-b"]["us-east-1"] == m.ReleaseRegion(
        state=m.ReleaseStep.KEPT,
        image_id=OLD["us-east-1"],
        reason="still used by cluster(s) c1",
    )
    assert result.problems == ["org-b/us-east-1: KEPT: still used by cluster(s) c1"]


async def test_twin_unbounded_concurrency_is_caught(ts_env):
    cloud = FakeCloud(["org-a", "org-b", "org-c"], ["us-east-1", "us-west-2"], share_seconds=0.3)
    await run_release(ts_env, cloud, others(UnboundedRelease))
    assert cloud.max_in_flight > 2


async def test_twin_revoking_without_grace_is_caught(ts_env):
    cloud = FakeCloud(["org-a", "org-b"], ["us-east-1", "us-west-2"])
    grace, _, revoked_during_grace = await run_release(ts_env, cloud, others(NoGraceRelease))
    assert grace_problems(grace, revoked_during_grace) != []


def resume_problems(cloud: FakeCloud, orgs: list[str], result: m.ImageReleaseStatus) -> list[str]:
    """After a release (crashes and continue-as-new included): every pair shared exactly once,
    totals over all pages."""
    problems = [f"{k} shared {n} times" for k, n in sorted(cloud.shared.items()) if n != 1]
    missing = sorted({(o, "us-east-1") for o in orgs} - set(cloud.shared))
    if missing:
        problems.append(f"never shared: {missing}")
    if result.totals.get("SHARED") != len(orgs):
        problems.append(f"totals {result.totals}")
    return problems


async def crash_and_resume(
    env, workflows: list
) -> tuple[FakeCloud, list[str], m.ImageReleaseStatus]:  # type: ignore[no-untyped-def, type-arg]
    """45 organisations (three pages, two continue-as-new); the first worker dies after a dozen
    shares (its steps in flight fail); a second worker with no cached state finishes."""
    orgs = [f"org-{i:03d}" for i in range(45)]
    cloud = FakeCloud(orgs, ["us-east-1"], share_seconds=0.05)
    cloud.kept = {}
    # No sticky queue: the test server never times out a dead worker's sticky task (a real server
    # hands it to another worker after 10 s), so the crash is not masked; and the second worker
    # replays every task's history from the start.
    options = {"workflows": workflows, "threads": 16, "max_cached_workflows": 0}
    async with serve(env, cloud.activities(), end_leftovers=False, **options) as first:
        h = await start(first, release_input(concurrency=4))
        for _ in range(400):
            if sum(cloud.shared.values()) >= 12:
                break
            await asyncio.sleep(0.02)
        cloud.dead = True
    cloud.dead = False
    async with serve(env, cloud.activities(), task_queue=first.task_queue, **options) as second:
        second.track(h)
        result: m.ImageReleaseStatus = await h.result()
    return cloud, orgs, result


async def test_release_resumes_after_a_crash_and_across_pages(ts_env):
    cloud, orgs, result = await crash_and_resume(ts_env, WORKFLOWS)
    assert 12 <= sum(cloud.shared.values())
    assert resume_problems(cloud, orgs, result) == []
    assert result.phase == m.ReleasePhase.DONE
    # Revocation paged over all organisations too: one per org where the image changed.
    assert sorted(cloud.revoked) == sorted((o, "us-east-1", OLD["us-east-1"]) for o in orgs)
    assert result.totals == {"SHARED": 45, "REVOKED": 45}


async def test_twin_a_release_that_forgets_its_progress_is_caught(ts_env):
    cloud, orgs, result = await crash_and_resume(ts_env, others(ForgetfulRelease))
    assert resume_problems(cloud, orgs, result) != []


async def test_start_under_another_id_or_with_carried_state_is_refused(ts_env):
    cloud = FakeCloud(["org-a"], ["us-east-1"])
    async with serve(ts_env, cloud.activities()) as w:
        wrong = await w.start("ImageRelease", release_input(), id="image-release-v3")
        carried = release_input().model_copy(
            update={
                "carried": m.ImageReleaseState(
                    source_region="us-east-1", images=NEW, concurrency=1, grace_seconds=0
                )
            }
        )
        smuggled = await start(w, carried)
        errors = []
        for h in (wrong, smuggled):
            try:
                await h.result()
            except Exception as e:  # noqa: BLE001 - the cause is asserted below
                cause = e.__cause__
                assert isinstance(cause, ApplicationError)
                errors.append(cause.type)
    assert errors == ["WorkflowIdMismatch", "BadInput"]
    assert cloud.calls == []
