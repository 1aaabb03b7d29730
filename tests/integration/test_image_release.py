"""``ImageRelease`` and offboarding on the embedded stack (moto server, dev server, real worker):
two organisations in two regions; launch permissions read from moto's side with the snapshot
helper.

1. Release v1 (the images onboarding shared), then v2 (a new image in us-east-1 only: copied to
   us-east-2) with no grace period: v2 is granted to both accounts in both regions, v1 revoked
   everywhere except where org A runs a cluster from it (KEPT, shown in ``status``).
   Twin: the same check, after the "still used" test is removed from the revocation (a planted
   defect run in-process against the same moto), reports the grant the cluster needed.
2. Offboarding org A revokes every image the registry recorded for it, the older v1 image kept
   for its cluster included. Twin: the mechanism before this change (``ShareImages`` with
   ``revoke``: only the newest released image per region) leaves that grant, and the same check
   reports it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.image_release import ImageReleaseActivities
from activities.registry import Registry
from bridgehead import ids
from bridgehead import models as m
from bridgehead.settings import get_settings
from tests.integration.helpers import onboard_ready, wait_for
from tests.support.snapshot import PLATFORM_ACCOUNT, snapshot_async
from tests.test_cli import cli, one_document

pytestmark = pytest.mark.timeout(600)

A, B = "444400000001", "444400000002"
REGIONS = ["us-east-1", "us-east-2"]
#: (workflow id, history name) of the runs above, for the opt-in recorder below.
RECORDED: list[tuple[str, str]] = []


def grants(snap: Any, region: str, image: str) -> set[str]:
    entry = snap["image_grants"].get(f"{PLATFORM_ACCOUNT}/{region}/{image}")
    return set(entry["launch_permissions"]) & {A, B} if entry else {"<image missing>"}


def grant_problems(snap: Any, expected: dict[tuple[str, str], set[str]]) -> list[str]:
    """Where the accounts granted an image (of A and B) differ from ``expected``."""
    return [
        f"{image} in {region}: granted to {sorted(grants(snap, region, image))}, expected {sorted(want)}"
        for (region, image), want in sorted(expected.items())
        if grants(snap, region, image) != want
    ]


def account_grants(snap: Any, account: str) -> list[str]:
    """Every platform image still launchable by ``account``."""
    return sorted(k for k, v in snap["image_grants"].items() if account in v["launch_permissions"])


def new_platform_image(stack: Any, region: str) -> str:
    ec2 = stack.platform("ec2", region)
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ][0]["InstanceId"]
    image: str = ec2.create_image(InstanceId=inst, Name=f"bridgehead-node-{uuid.uuid4().hex[:8]}")[
        "ImageId"
    ]
    ec2.create_tags(Resources=[image], Tags=[{"Key": "bridgehead:release", "Value": "current"}])
    ec2.terminate_instances(InstanceIds=[inst])
    return image


async def release(client: Any, version: str, images: dict[str, str]) -> m.ImageReleaseStatus:
    h = await client.start_workflow(
        "ImageRelease",
        m.ImageReleaseInput(version=version, images=images, grace_period_hours=0),
        id=ids.image_release_workflow_id(version),
        task_queue="bridgehead",
        result_type=m.ImageReleaseStatus,
    )
    result: m.ImageReleaseStatus = await h.result()
    return result


async def test_release_to_two_orgs_in_two_regions_then_offboarding_revokes_older_images(
    stack, client
):
    suffix = uuid.uuid4().hex[:6]
    org_a, org_b = f"rel-a{suffix}", f"rel-b{suffix}"
    for org, account in ((org_a, A), (org_b, B)):
        st = await onboard_ready(client, stack, org, account, REGIONS)
        assert st.state == m.OrgState.READY, st.last_error
    reg = Registry(Aws(get_settings()))
    v1 = {r: reg.image_share(org_a, r)["image_id"] for r in REGIONS}  # type: ignore[index]
    assert v1 == {r: reg.image_share(org_b, r)["image_id"] for r in REGIONS}  # type: ignore[index]

    # --- 1. release v1 (already shared: idempotent), then v2 -----------------------------------
    first = await release(client, f"v1-{suffix}", v1)
    assert first.totals == {"SHARED": 4} and first.previous_images == {}
    # Org A runs a cluster in us-east-2 from the v1 image.
    reg.put_cluster(
        org_a,
        "pinned",
        {"name": "pinned", "region": "us-east-2", "state": "RUNNING", "image_id": v1["us-east-2"]},
    )
    v2_east1 = new_platform_image(stack, "us-east-1")
    # v2 through the CLI, as the platform's release pipeline would start it.
    out = await asyncio.to_thread(
        cli,
        "image",
        "release",
        f"v2-{suffix}",
        "--image",
        f"us-east-1={v2_east1}",
        "--grace-hours",
        "0",
        "--wait",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    second = m.ImageReleaseStatus.model_validate(one_document(out.stdout))
    v2 = second.images
    assert set(v2) == set(REGIONS) and v2["us-east-2"] not in (v1["us-east-2"], v2_east1)
    assert second.previous_version == f"v1-{suffix}" and second.previous_images == v1
    assert second.phase == m.ReleasePhase.DONE
    assert second.totals == {"SHARED": 4, "REVOKED": 3, "KEPT": 1}
    assert second.orgs[org_a]["us-east-2"] == m.ReleaseRegion(
        state=m.ReleaseStep.KEPT, image_id=v1["us-east-2"], reason="still used by cluster(s) pinned"
    )
    assert second.problems == [f"{org_a}/us-east-2: KEPT: still used by cluster(s) pinned"]
    expected = {
        ("us-east-1", v2["us-east-1"]): {A, B},
        ("us-east-2", v2["us-east-2"]): {A, B},
        ("us-east-1", v1["us-east-1"]): set(),
        ("us-east-2", v1["us-east-2"]): {A},
    }
    snap = await snapshot_async(stack, [A, B], REGIONS)
    assert grant_problems(snap, expected) == []
    # The release record holds the copy too (its successor will revoke it), and v2 is current.
    assert reg.release(f"v2-{suffix}")["images"] == v2  # type: ignore[index]
    # The same version with another image is refused, not redefined.
    with pytest.raises(ApplicationError, match="recorded with other images in us-east-1"):
        ImageReleaseActivities(Aws(get_settings()), reg).begin_image_release(
            m.BeginReleaseInput(version=f"v2-{suffix}", images={"us-east-1": v1["us-east-1"]})
        )
    # New clusters launch from v2 (the registry's current image moved on).
    assert {r: reg.image_share(org_a, r)["image_id"] for r in REGIONS} == v2  # type: ignore[index]

    # Twin: revocation without the "still used" test (planted in-process) -> the check reports it.
    defective = ImageReleaseActivities(Aws(get_settings()), Registry(Aws(get_settings())))
    defective.registry.clusters_using = lambda *a: []  # type: ignore[method-assign]
    res = defective.revoke_replaced_image(
        m.RevokeReplacedInput(org_id=org_a, region="us-east-2", image_id=v1["us-east-2"])
    )
    assert res.state == m.ReleaseStep.REVOKED
    broken = await snapshot_async(stack, [A, B], REGIONS)
    assert grant_problems(broken, expected) == [
        f"{v1['us-east-2']} in us-east-2: granted to [], expected ['{A}']"
    ]
    # Put the grant back as the release left it (launch permission and its registry record).
    stack.platform("ec2", "us-east-2").modify_image_attribute(
        ImageId=v1["us-east-2"], LaunchPermission={"Add": [{"UserId": A}]}
    )
    reg.record_shared_image(org_a, "us-east-2", v1["us-east-2"], [], A)
    assert grant_problems(await snapshot_async(stack, [A, B], REGIONS), expected) == []

    # --- 2. offboarding org A -----------------------------------------------------------------
    # Twin: the previous mechanism (ShareImages revoke: the newest released image per region).
    old_way = await client.execute_workflow(
        "ShareImages",
        m.ShareImagesInput(org_id=org_a, regions=REGIONS, revoke=True),
        id=ids.images_workflow_id(org_a),
        task_queue="bridgehead",
        result_type=m.ShareImagesResult,
    )
    assert {r: s.state for r, s in old_way.regions.items()} == {
        r: m.ImageShareState.REVOKED for r in REGIONS
    }
    left = account_grants(await snapshot_async(stack, [A, B], REGIONS), A)
    assert left == [f"{PLATFORM_ACCOUNT}/us-east-2/{v1['us-east-2']}"]

    reg.put_cluster(
        org_a,
        "pinned",
        {"name": "pinned", "region": "us-east-2", "state": "DELETED", "image_id": v1["us-east-2"]},
    )
    h = client.get_workflow_handle(ids.org_workflow_id(org_a))
    await h.execute_update(
        "offboard", m.OffboardInput(confirm_org_id=org_a), result_type=m.UpdateResult
    )
    final = await wait_for(
        h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.OFFBOARDED, 300
    )
    assert {r: final.regions[r].images for r in REGIONS} == {r: "REVOKED" for r in REGIONS}
    after = await snapshot_async(stack, [A, B], REGIONS)
    assert account_grants(after, A) == []
    RECORDED.extend(
        [
            (ids.image_release_workflow_id(f"v2-{suffix}"), "ImageRelease"),
            (ids.org_workflow_id(org_a), "OnboardOrganization--offboarded-recorded-images"),
        ]
    )
    # Org B keeps v2, and nothing of v1.
    assert (
        grant_problems(
            after,
            {
                ("us-east-1", v2["us-east-1"]): {B},
                ("us-east-2", v2["us-east-2"]): {B},
                ("us-east-1", v1["us-east-1"]): set(),
                ("us-east-2", v1["us-east-2"]): set(),
            },
        )
        == []
    )


@pytest.mark.skipif(
    not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"),
    reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories",
)
async def test_record_release_and_offboarding_histories(client):
    """Store the release above (copy, KEPT refusal, revocations on the real worker) and the
    offboarding that revoked every recorded image (the ``offboard-revoke-recorded-images`` path),
    beside the older offboarding history (which keeps the pre-patch path in the corpus)."""
    from tests.support.replay_corpus import store

    assert RECORDED, "run the test above first (same session)"
    for wf_id, name in RECORDED:
        await store(await client.get_workflow_handle(wf_id).fetch_history(), name)
