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
    # Other READY organisations of the session's stack get the release too: what is asserted is
    # ours (the registry's records and the grants on moto's side), never the totals.
    mine = (org_a, org_b)
    first = await release(client, f"v1-{suffix}", v1)
    assert first.previous_images == {} and not [p for p in first.problems if p.startswith(mine)]
    assert {(o, r): reg.shared_image(o, r, v1[r])["state"] for o in mine for r in REGIONS} == {  # type: ignore[index]
        (o, r): "SHARED" for o in mine for r in REGIONS
    }
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
    # The release covers every region a READY organisation of the stack uses: ours at least (the
    # other test modules of the same process may have added regions).
    assert set(v2) >= set(REGIONS) and v2["us-east-2"] not in (v1["us-east-2"], v2_east1)
    assert second.previous_version == f"v1-{suffix}"
    assert {r: second.previous_images[r] for r in REGIONS} == v1
    assert second.phase == m.ReleasePhase.DONE
    assert [p for p in second.problems if p.startswith(mine)] == [
        f"{org_a}/us-east-2: KEPT: still used by cluster(s) pinned"
    ]
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
    assert {r: reg.image_share(org_a, r)["image_id"] for r in REGIONS} == {
        r: v2[r] for r in REGIONS
    }  # type: ignore[index]

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
    # Twin: the previous mechanism (ShareImages revoke: the newest released image per region),
    # run in process with the same activities (ShareImages no longer revokes unless offboarding
    # starts it).
    from temporalio.testing import ActivityEnvironment

    from activities.images import ImageActivities

    images = ImageActivities(Aws(get_settings()), reg)
    for region in REGIONS:
        env = ActivityEnvironment()
        found = env.run(images.find_platform_image, m.FindImageInput(region=region))
        assert found.image_id is not None
        env.run(
            images.revoke_image,
            m.ShareImageInput(org_id=org_a, region=region, image_id=found.image_id),
        )
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
