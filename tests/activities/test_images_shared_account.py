"""Launch permissions are granted to an AWS account, not to an organisation: in an account shared
by two organisations, offboarding one must not revoke the image the other still launches from
(the security review's finding 4). Against moto in process."""

from __future__ import annotations

from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.images import ImageActivities
from activities.registry import Registry
from bridgehead import models as m
from tests.activities.conftest import REGION, Platform

ACTIVITIES = ("share_image", "revoke_image")


def _shared_orgs(reg: Registry, account: str, orgs: list[str]) -> None:
    for org in orgs:
        fields = {"aws_account_id": account, "external_id": f"bh-{org}-x"}
        assert reg.register_org(org, fields, shared_account=True) is None
        reg.update(f"ORG#{org}", "META", {"state": "READY", "regions": [REGION]})


def _offboard_first_of_two(
    platform: Platform, prefix: str, account: str, plant: Any = None
) -> set[str]:
    """Two READY orgs of one shared account hold the same image; the first is offboarded (its
    images revoked): who can still launch the image."""
    aws, reg = platform.aws, platform.registry
    one, two = f"{prefix}one", f"{prefix}two"
    _shared_orgs(reg, account, [one, two])
    image = platform.released_image(REGION)
    acts = ImageActivities(aws, reg)
    if plant:
        plant(acts)
    env = ActivityEnvironment()
    for org in (one, two):
        req = m.ShareImageInput(org_id=org, region=REGION, image_id=image)
        env.run(acts.share_image, req)
        reg.put_image_share(org, REGION, {"image_id": image, "state": "SHARED"})
    assert platform.launchers(image, REGION) == {account}
    reg.update(f"ORG#{one}", "META", {"state": "OFFBOARDING"})
    env.run(acts.revoke_image, m.ShareImageInput(org_id=one, region=REGION, image_id=image))
    kept = platform.launchers(image, REGION)
    # Once the second organisation goes too, the grant goes.
    reg.update(f"ORG#{one}", "META", {"state": "OFFBOARDED"})
    env.run(acts.revoke_image, m.ShareImageInput(org_id=two, region=REGION, image_id=image))
    assert platform.launchers(image, REGION) == set()
    return kept


def test_offboarding_one_org_of_a_shared_account_keeps_the_image_of_the_other(platform):
    assert _offboard_first_of_two(platform, "shacc", "291000000001") == {"291000000001"}


def test_twin_revoking_per_account_without_looking_at_siblings_is_caught(platform):
    def no_siblings(acts: ImageActivities) -> None:
        acts.sharing_siblings = lambda *a: []  # type: ignore[method-assign]

    assert _offboard_first_of_two(platform, "shtwin", "291000000002", plant=no_siblings) == set()
