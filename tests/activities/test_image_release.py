"""activities/image_release.py against moto: a release is recorded once (a second start with
other images is refused), organisations are paged in id order, a region's copy joins the release,
and the replaced image is revoked in moto only where no cluster of the organisation still uses it;
every image still shared is listed for offboarding."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.image_release import ImageReleaseActivities
from activities.images import ImageActivities
from bridgehead import models as m
from tests.activities.conftest import CUSTOMER, REGION, Platform, run

ACTIVITIES = (
    "begin_image_release",
    "release_orgs",
    "record_release_image",
    "revoke_replaced_image",
    "org_shared_images",
)

ORG = "acme"
WEST = "us-west-2"


@pytest.fixture
def acts(platform: Platform) -> ImageReleaseActivities:
    platform.ready_org(ORG, regions=[REGION, WEST])
    return ImageReleaseActivities(platform.aws, platform.registry)


def share(platform: Platform, image: str, region: str = REGION) -> None:
    """The image shared with the organisation, as ShareImages / a release does."""
    req = m.ShareImageInput(org_id=ORG, region=region, image_id=image)
    run(ImageActivities(platform.aws, platform.registry).share_image, req)


def test_a_release_is_recorded_once_and_names_the_release_it_replaced(
    acts: ImageReleaseActivities, platform: Platform
):
    img = [platform.released_image(name=f"bridgehead-node-{i}") for i in range(3)]
    v1 = {REGION: img[0]}
    first = run(acts.begin_image_release, m.BeginReleaseInput(version="v1", images=v1))
    assert (first.previous_version, first.previous_images, first.source_region) == (
        None,
        {},
        REGION,
    )
    v2 = {REGION: img[1], WEST: platform.released_image(WEST)}
    second = run(acts.begin_image_release, m.BeginReleaseInput(version="v2", images=v2))
    resumed = run(acts.begin_image_release, m.BeginReleaseInput(version="v2", images=v2))
    assert second == resumed and (second.previous_version, second.previous_images) == ("v1", v1)
    assert platform.registry.get("RELEASES", "CURRENT")["version"] == "v2"
    other = m.BeginReleaseInput(version="v2", images={REGION: img[2]})
    with pytest.raises(ApplicationError) as e:
        run(acts.begin_image_release, other)
    assert e.value.type == "ReleaseMismatch" and e.value.non_retryable
    assert "release v2 was recorded with other images in us-east-1" in e.value.message
    assert platform.registry.release("v2")["images"] == v2


def test_a_regions_copy_joins_the_release_its_successor_revokes(
    acts: ImageReleaseActivities, platform: Platform
):
    a, b = platform.released_image(), platform.released_image(name="bridgehead-node-2")
    run(acts.begin_image_release, m.BeginReleaseInput(version="v1", images={REGION: a}))
    copy = m.ReleaseImageInput(version="v1", region="us-west-1", image_id="ami-copy")
    run(acts.record_release_image, copy)
    assert platform.registry.release("v1")["images"] == {REGION: a, "us-west-1": "ami-copy"}
    plan = run(acts.begin_image_release, m.BeginReleaseInput(version="v2", images={REGION: b}))
    assert plan.previous_images == {REGION: a, "us-west-1": "ami-copy"}


def untagged(platform: Platform) -> str:
    """An image the platform account owns that is not a release (an internal build)."""
    return str(
        platform.ec2().register_image(Name="internal", RootDeviceName="/dev/xvda")["ImageId"]
    )


@pytest.mark.parametrize("which", ["untagged image of the platform", "no such image"])
def test_only_a_tagged_platform_image_is_released(
    acts: ImageReleaseActivities, platform: Platform, which: str
):
    image = untagged(platform) if which.startswith("untagged") else "ami-0123456789abcdef0"
    with pytest.raises(ApplicationError) as e:
        run(acts.begin_image_release, m.BeginReleaseInput(version="v1", images={REGION: image}))
    assert e.value.type == "BadInput" and e.value.non_retryable
    assert f"{image} in {REGION} is not a release image" in e.value.message
    assert platform.registry.release("v1") is None, "nothing recorded"


def test_twin_without_the_tag_check_an_internal_image_is_released(
    acts: ImageReleaseActivities, platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ImageReleaseActivities, "_require_release_image", lambda *a: None)
    image = untagged(platform)
    run(acts.begin_image_release, m.BeginReleaseInput(version="v1", images={REGION: image}))
    assert platform.registry.release("v1")["images"] == {REGION: image}


def test_organisations_are_paged_in_id_order_ready_ones_when_sharing(
    acts: ImageReleaseActivities, platform: Platform
):
    for i in range(5):
        platform.ready_org(f"org-{i}", state="READY" if i % 2 else "ACTION_REQUIRED")
    page = run(acts.release_orgs, m.ReleaseOrgsInput(after=None, limit=2, ready_only=False))
    assert [o.org_id for o in page.orgs] == [ORG, "org-0"] and page.more
    page = run(acts.release_orgs, m.ReleaseOrgsInput(after="org-0", limit=9, ready_only=False))
    assert [o.org_id for o in page.orgs] == ["org-1", "org-2", "org-3", "org-4"] and not page.more
    ready = run(acts.release_orgs, m.ReleaseOrgsInput(after=None, limit=9, ready_only=True))
    assert [o.org_id for o in ready.orgs] == [ORG, "org-1", "org-3"]
    assert ready.orgs[0].regions == [REGION, WEST]


def test_the_replaced_image_is_revoked_unless_a_cluster_still_uses_it(
    acts: ImageReleaseActivities, platform: Platform
):
    old, new = platform.released_image(), platform.released_image(name="bridgehead-node-2")
    share(platform, old)
    replaced = m.RevokeReplacedInput(org_id=ORG, region=REGION, image_id=old)
    kept = run(acts.revoke_replaced_image, replaced)  # the new release did not reach it yet
    assert kept.state == m.ReleaseStep.KEPT and "still the current one" in (kept.reason or "")
    share(platform, new)
    platform.registry.put_cluster(
        ORG, "db", {"name": "db", "region": REGION, "state": "RUNNING", "image_id": old}
    )
    used = run(acts.revoke_replaced_image, replaced)
    assert (used.state, used.used_by) == (m.ReleaseStep.KEPT, ["db"])
    assert platform.launchers(old) == {CUSTOMER}, "a running cluster keeps its image"
    platform.registry.put_cluster(
        ORG, "db", {"name": "db", "region": REGION, "state": "DELETED", "image_id": old}
    )
    revoked = run(acts.revoke_replaced_image, replaced)
    assert revoked.state == m.ReleaseStep.REVOKED
    assert platform.launchers(old) == set() and platform.launchers(new) == {CUSTOMER}
    assert platform.registry.shared_image(ORG, REGION, old)["state"] == "REVOKED"
    again = run(acts.revoke_replaced_image, replaced)  # a retry after the revocation
    assert again.state == m.ReleaseStep.NOT_SHARED


def test_an_image_never_shared_in_a_region_is_not_revoked_there(
    acts: ImageReleaseActivities, platform: Platform
):
    image = platform.released_image(WEST)
    req = m.RevokeReplacedInput(org_id=ORG, region=WEST, image_id=image)
    assert run(acts.revoke_replaced_image, req).state == m.ReleaseStep.NOT_SHARED


def test_every_image_still_shared_is_listed_for_offboarding(
    acts: ImageReleaseActivities, platform: Platform
):
    old, new = platform.released_image(), platform.released_image(name="bridgehead-node-2")
    west = platform.released_image(WEST)
    for image, region in ((old, REGION), (new, REGION), (west, WEST)):
        share(platform, image, region)
    # A share from before shares were recorded: only the current-image record names it.
    legacy = platform.released_image(WEST, name="legacy")
    platform.registry.put_image_share(ORG, WEST, {"image_id": legacy, "state": "SHARED"})
    platform.registry.mark_image_revoked(ORG, REGION, old)
    listed = run(acts.org_shared_images, m.OrgRegionsInput(org_id=ORG)).images
    assert sorted((i.region, i.image_id) for i in listed) == sorted(
        [(REGION, new), (WEST, west), (WEST, legacy)]
    )
