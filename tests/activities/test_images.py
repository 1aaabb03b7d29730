"""activities/images.py against moto (platform account): the newest released image is found, a
copy to another region is made once (a retry reuses it), the copy is waited for (pending is polled
again, failed fails for good), sharing grants launch and create-volume permissions to the
organisation's account and records them, revoking takes them back; must-exist-not-found and
refusals fail at once, throttling is retried. Shared AWS accounts: test_images_shared_account.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.images import COPIED_FROM_TAG, ImageActivities
from bridgehead import models as m
from starter.emulator import PLATFORM_ACCOUNT
from tests.activities.conftest import CUSTOMER, EARLY_IN_WINDOW, REGION, Platform, refuse, run

ACTIVITIES = (
    "org_regions",
    "find_platform_image",
    "copy_platform_image",
    "wait_image_available",
    "share_image",
    "revoke_image",
)

ORG = "acme"
WEST = "us-west-1"


@pytest.fixture
def acts(platform: Platform) -> ImageActivities:
    platform.ready_org(ORG, regions=[REGION, WEST])
    return ImageActivities(platform.aws, platform.registry)


def moto_image(image: str, region: str = REGION) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[PLATFORM_ACCOUNT][region].amis[image]


def snapshot_users(platform: Platform, snapshot: str) -> set[str]:
    attr = platform.ec2().describe_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission"
    )
    return {p["UserId"] for p in attr.get("CreateVolumePermissions", []) if "UserId" in p}


def test_org_regions_come_from_the_registry(acts: ImageActivities):
    regions = run(acts.org_regions, m.OrgRegionsInput(org_id=ORG))
    assert (regions.aws_account_id, regions.regions) == (CUSTOMER, [REGION, WEST])
    assert regions.source_region == "us-east-1"


def test_the_newest_released_image_is_found_and_unreleased_ones_are_not(
    acts: ImageActivities, platform: Platform
):
    assert run(acts.find_platform_image, m.FindImageInput(region=REGION)).image_id is None
    platform.ec2().register_image(Name="not-released", RootDeviceName="/dev/xvda")
    old = platform.released_image(name="bridgehead-node-2026.10")
    new = platform.released_image(name="bridgehead-node-2026.11")
    moto_image(old).creation_date = datetime.now(UTC) - timedelta(days=30)
    found = run(acts.find_platform_image, m.FindImageInput(region=REGION))
    assert (found.image_id, found.name, found.state) == (
        new,
        "bridgehead-node-2026.11",
        "available",
    )


def test_a_copy_is_made_once_tagged_with_its_source(acts: ImageActivities, platform: Platform):
    source = platform.released_image()
    req = m.CopyImageInput(
        source_region=REGION, source_image_id=source, region=WEST, client_token="images-acme/1"
    )
    first = run(acts.copy_platform_image, req)
    again = run(acts.copy_platform_image, req)  # a retry after a lost answer
    assert first == again and first.region == WEST
    copies = platform.ec2(WEST).describe_images(Owners=["self"])["Images"]
    assert [c["ImageId"] for c in copies] == [first.image_id]
    tags = {t["Key"]: t["Value"] for t in copies[0].get("Tags", [])}
    assert tags[COPIED_FROM_TAG] == source and tags["bridgehead:release"] == "current"
    assert copies[0]["Name"] == f"bridgehead-node-from-{REGION}"


def test_copying_an_image_that_is_gone_fails_at_once(acts: ImageActivities, platform: Platform):
    source = platform.released_image()
    platform.ec2().deregister_image(ImageId=source)
    req = m.CopyImageInput(
        source_region=REGION, source_image_id=source, region=WEST, client_token="t"
    )
    with pytest.raises(ApplicationError) as e:
        run(acts.copy_platform_image, req)
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert (
        source in e.value.message
        and platform.ec2(WEST).describe_images(Owners=["self"])["Images"] == []
    )


def test_waiting_polls_a_pending_copy_and_fails_a_failed_one_for_good(
    acts: ImageActivities, platform: Platform
):
    image = platform.released_image()
    req = m.ImageInRegion(region=REGION, image_id=image)
    assert run(acts.wait_image_available, req) == req
    moto_image(image).state = "pending"
    with pytest.raises(ApplicationError) as pending:
        run(acts.wait_image_available, req, **EARLY_IN_WINDOW)
    assert pending.value.type == "ImagePending" and not pending.value.non_retryable
    assert pending.value.category == ApplicationErrorCategory.BENIGN
    moto_image(image).state = "failed"
    with pytest.raises(ApplicationError) as failed:
        run(acts.wait_image_available, req)
    assert failed.value.type == "ImageCopyFailed" and failed.value.non_retryable
    assert f"image copy {image} in {REGION} ended failed" in failed.value.message


def test_sharing_grants_the_account_and_revoking_takes_it_back(
    acts: ImageActivities, platform: Platform
):
    image = platform.released_image()
    req = m.ShareImageInput(org_id=ORG, region=REGION, image_id=image)
    shared = run(acts.share_image, req)
    run(acts.share_image, req)  # a retry: the same grants
    (snapshot,) = shared.snapshot_ids
    assert platform.launchers(image) == {CUSTOMER} and snapshot_users(platform, snapshot) == {
        CUSTOMER
    }
    record = platform.registry.image_share(ORG, REGION)
    assert (record["image_id"], record["state"], record["snapshot_ids"]) == (
        image,
        "SHARED",
        [snapshot],
    )
    assert platform.registry.shared_image(ORG, REGION, image)["state"] == "SHARED"
    revoked = run(acts.revoke_image, req)
    assert revoked.snapshot_ids == [snapshot]
    assert platform.launchers(image) == set() and snapshot_users(platform, snapshot) == set()
    assert platform.registry.image_share(ORG, REGION)["state"] == "REVOKED"
    assert platform.registry.shared_image(ORG, REGION, image)["state"] == "REVOKED"
    run(acts.revoke_image, req)  # revoking again (a retry) is done, not an error


def test_revoking_an_image_that_was_deregistered_is_done(acts: ImageActivities, platform: Platform):
    image = platform.released_image()
    platform.ec2().deregister_image(ImageId=image)
    # EC2's answer to a grant change on a deregistered image (moto crashes on it instead).
    refuse(platform.ec2(), "ModifyImageAttribute", "InvalidAMIID.NotFound")
    result = run(acts.revoke_image, m.ShareImageInput(org_id=ORG, region=REGION, image_id=image))
    assert result.snapshot_ids == [] and platform.registry.image_share(ORG, REGION)["state"] == (
        "REVOKED"
    )


def test_sharing_an_image_that_does_not_exist_fails_at_once(
    acts: ImageActivities, platform: Platform
):
    req = m.ShareImageInput(org_id=ORG, region=REGION, image_id="ami-0123456789abcdef0")
    with pytest.raises(ApplicationError) as e:
        run(acts.share_image, req)
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert "ami-0123456789abcdef0" in e.value.message
    assert platform.registry.image_share(ORG, REGION) is None


@pytest.mark.parametrize(
    "code,kind,retried",
    [
        ("UnauthorizedOperation", "AwsPermissionError", False),
        ("InvalidParameterValue", "AwsValidationError", False),
        ("RequestLimitExceeded", "AwsThrottled", True),
        ("InternalError", "AwsTransient", True),
    ],
)
def test_refusals_of_a_grant_fail_at_once_and_throttling_is_retried(
    acts: ImageActivities, platform: Platform, code: str, kind: str, retried: bool
):
    image = platform.released_image()
    refuse(platform.ec2(), "ModifyImageAttribute", code, 500 if code == "InternalError" else 400)
    with pytest.raises(ApplicationError) as e:
        run(acts.share_image, m.ShareImageInput(org_id=ORG, region=REGION, image_id=image))
    assert (e.value.type, e.value.non_retryable) == (kind, not retried), e.value
    assert e.value.message.startswith(f"ec2:ModifyImageAttribute {image} in {REGION}")
    assert platform.launchers(image) == set() and platform.registry.image_share(ORG, REGION) is None


def test_an_unregistered_organisation_is_refused_before_any_grant(
    acts: ImageActivities, platform: Platform
):
    image = platform.released_image()
    with pytest.raises(ApplicationError) as e:
        run(acts.share_image, m.ShareImageInput(org_id="nobody", region=REGION, image_id=image))
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert "'nobody' is not registered" in e.value.message and platform.launchers(image) == set()
