"""The image-release records against DynamoDB (moto in process): organisations paged in id order
with the READY filter, the release it replaces fixed at the first call, and which clusters keep
an image in use (a cluster recorded before images were recorded counts, conservatively).
Twins: a page cursor that is not applied, and a "still used" rule that ignores clusters without a
recorded image, are each reported by the same checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from activities.aws import Aws
from activities.registry import Registry
from bridgehead.settings import Settings


@pytest.fixture
def images() -> Iterator[Registry]:
    with mock_aws():
        reg = Registry(Aws(Settings(environment="local")))
        reg.ensure_tables()
        for i in range(45):
            state = "READY" if i % 3 else "ACTION_REQUIRED"
            reg.put_org(
                f"org-{i:03d}",
                {
                    "aws_account_id": f"{400000000000 + i}",
                    "external_id": f"x-{i}",
                    "regions": ["us-east-1"],
                    "state": state,
                },
            )
        yield reg


def walk(images: Any, ready_only: bool, limit: int = 20) -> tuple[list[str], int]:
    """Every organisation id the pages return, and the number of pages."""
    seen: list[str] = []
    after, pages = None, 0
    while True:
        page = images.orgs_page(after, limit, ("READY",) if ready_only else None)
        pages += 1
        seen += [str(o["org_id"]) for o in page[:limit]]
        if len(page) <= limit:
            return seen, pages
        after = seen[-1]


def paging_problems(seen: list[str], expected: list[str]) -> list[str]:
    dupes = sorted({o for o in seen if seen.count(o) > 1})
    missing = sorted(set(expected) - set(seen))
    return [f"twice: {dupes}"] * bool(dupes) + [f"missing: {missing}"] * bool(missing)


def test_orgs_are_paged_in_id_order_once_each(images: Registry):
    everyone = [f"org-{i:03d}" for i in range(45)]
    seen, pages = walk(images, ready_only=False)
    assert (seen, pages) == (everyone, 3)
    assert paging_problems(seen, everyone) == []
    ready, pages = walk(images, ready_only=True)
    assert ready == [o for i, o in enumerate(everyone) if i % 3] and pages == 2


def test_twin_a_cursor_that_is_not_applied_is_caught(images: Registry):
    real = images.orgs_page
    images.orgs_page = lambda after, limit, states: real(None, limit, states)  # type: ignore[method-assign]
    seen: list[str] = []
    for _ in range(3):  # the walk would never end: three pages are enough to see it
        seen += [
            str(o["org_id"]) for o in images.orgs_page(seen[-1] if seen else None, 20, None)[:20]
        ]
    assert paging_problems(seen, [f"org-{i:03d}" for i in range(45)]) != []


def test_the_replaced_release_is_fixed_at_the_first_call(images: Registry):
    first = images.begin_release("v1", {"us-east-1": "ami-0000000000000a001"})
    assert first["replaces"] is None
    second = images.begin_release("v2", {"us-east-1": "ami-0000000000000a002"})
    images.record_release_image("v2", "us-west-2", "ami-0000000000000b002")
    third = images.begin_release("v3", {"us-east-1": "ami-0000000000000a003"})
    # A retried or resumed v2 still replaces v1, although v3 is current now.
    again = images.begin_release("v2", {"us-east-1": "ami-0000000000000a002"})
    assert (second["replaces"], again["replaces"]) == ("v1", "v1")
    assert again["previous_images"] == {"us-east-1": "ami-0000000000000a001"}
    assert third["replaces"] == "v2"
    assert third["previous_images"] == {
        "us-east-1": "ami-0000000000000a002",
        "us-west-2": "ami-0000000000000b002",
    }


def put_cluster(images: Registry, name: str, state: str, image: str | None) -> None:
    fields = {"name": name, "region": "us-east-1", "state": state, "image_id": image}
    images.put_cluster("org-001", name, {k: v for k, v in fields.items() if v})


def in_use_problems(images: Registry, clusters_using: Any) -> list[str]:
    """Which clusters ``clusters_using`` says keep the old image, against what must."""
    old = "ami-0000000000000a001"
    put_cluster(images, "on-old", "RUNNING", old)
    put_cluster(images, "on-new", "RUNNING", "ami-0000000000000a002")
    put_cluster(images, "gone", "DELETED", old)
    put_cluster(images, "failed", "FAILED", old)
    put_cluster(images, "unrecorded", "CREATING", None)
    problems = []
    here = clusters_using("org-001", "us-east-1", old)
    if here != ["on-old", "unrecorded"]:
        problems.append(f"us-east-1: {here}")
    elsewhere = clusters_using("org-001", "us-west-2", old)
    if elsewhere != []:
        problems.append(f"us-west-2: {elsewhere}")
    return problems


def test_clusters_that_may_use_an_image(images: Registry):
    assert in_use_problems(images, images.clusters_using) == []


def test_twin_ignoring_unrecorded_clusters_is_caught(images: Registry):
    def only_recorded(org: str, region: str, image: str) -> list[str]:
        return sorted(
            str(c["name"])
            for c in images.clusters(org)
            if c.get("region") == region
            and c.get("state") not in ("DELETED", "CANCELLED", "FAILED")
            and c.get("image_id") == image
        )

    assert in_use_problems(images, only_recorded) == ["us-east-1: ['on-old']"]


def platform_image(ec2: Any) -> str:
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    return str(ec2.create_image(InstanceId=inst, Name=f"bh-{inst}")["ImageId"])


def test_an_image_shared_before_shares_were_recorded_is_still_revoked_at_offboarding(
    images: Registry,
):
    """An org whose image was shared before every share was recorded (only the current-image
    record names it): sharing a new release records the old one first, so offboarding's list
    holds both. Twin: without that step, the list misses the old image."""
    from activities.image_release import ImageReleaseActivities
    from activities.images import ImageActivities
    from bridgehead import models as m

    reg = images
    ec2 = reg.aws.platform("ec2", "us-east-1")
    legacy, new = platform_image(ec2), platform_image(ec2)
    # As the registry held it before: the current-image record only.
    reg.put_image_share(
        "org-001", "us-east-1", {"image_id": legacy, "snapshot_ids": [], "state": "SHARED"}
    )

    def offboarding_list() -> list[tuple[str, str]]:
        found = ImageReleaseActivities(reg.aws, reg).org_shared_images(
            m.OrgRegionsInput(org_id="org-001")
        )
        return sorted((i.region, i.image_id) for i in found.images)

    assert offboarding_list() == [("us-east-1", legacy)]
    ImageActivities(reg.aws, reg).share_image(
        m.ShareImageInput(org_id="org-001", region="us-east-1", image_id=new)
    )
    assert offboarding_list() == sorted([("us-east-1", legacy), ("us-east-1", new)])


def test_twin_sharing_without_recording_the_legacy_image_loses_it(images: Registry):
    from activities.image_release import ImageReleaseActivities
    from activities.images import ImageActivities
    from bridgehead import models as m

    reg = images
    ec2 = reg.aws.platform("ec2", "us-east-1")
    legacy, new = platform_image(ec2), platform_image(ec2)
    reg.put_image_share(
        "org-001", "us-east-1", {"image_id": legacy, "snapshot_ids": [], "state": "SHARED"}
    )
    sharer = ImageActivities(reg.aws, Registry(reg.aws))
    sharer.registry.shared_image = lambda *a: {"state": "SHARED"}  # type: ignore[method-assign]
    sharer.share_image(m.ShareImageInput(org_id="org-001", region="us-east-1", image_id=new))
    found = ImageReleaseActivities(reg.aws, reg).org_shared_images(
        m.OrgRegionsInput(org_id="org-001")
    )
    assert ("us-east-1", legacy) not in [(i.region, i.image_id) for i in found.images]
