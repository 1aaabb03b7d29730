"""Nothing is shared with, or built in, an account whose organisation may not have it
(bridgehead/org_access.py; found by an adversarial review, session 13): ``share_image`` and
``render_foundation_template`` against moto, for organisations that are not READY, offboarded, or
asked for a region that is not theirs. A refusal grants and renders nothing; onboarding's own
children (``by_org``) still share and provision before the organisation is READY."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.images import ImageActivities
from activities.regions import RegionActivities
from bridgehead import models as m
from bridgehead import org_access
from tests.activities.conftest import REGION, Platform, run

ACTIVITIES = ("share_image", "render_foundation_template")
ATTACKER = "999999999999"
#: (case, registry fields of the org, region asked, by_org, words of the refusal)
REFUSED = [
    (
        "claimed account, role never verified",
        {"state": "AWAITING_ROLE", "role_arn": None},
        REGION,
        False,
        ["AWAITING_ROLE", "READY"],
    ),
    ("verification failed", {"state": "ACTION_REQUIRED"}, REGION, False, ["ACTION_REQUIRED"]),
    ("offboarded", {"state": "OFFBOARDED"}, REGION, False, ["OFFBOARDED"]),
    ("offboarded, even by its own workflow", {"state": "OFFBOARDED"}, REGION, True, ["OFFBOARDED"]),
    ("being offboarded", {"state": "OFFBOARDING"}, REGION, True, ["OFFBOARDING"]),
    ("a region not its own", {"state": "READY"}, "eu-west-1", False, ["eu-west-1", "us-east-1"]),
]
ALLOWED = [
    ("READY, started directly", {"state": "READY"}, False),
    ("onboarding's child before READY", {"state": "AWAITING_ROLE"}, True),
]


def share(platform: Platform, image: str, region: str, by_org: bool) -> None:
    acts = ImageActivities(platform.aws, platform.registry)
    run(
        acts.share_image,
        m.ShareImageInput(org_id="mallory", region=region, image_id=image, by_org=by_org),
    )


@pytest.mark.parametrize("case,fields,region,by_org,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_images_are_not_shared_where_the_org_may_not_have_them(
    platform, case, fields, region, by_org, words
):
    image = platform.released_image(region) if region != REGION else platform.released_image()
    platform.ready_org("mallory", account=ATTACKER, **fields)
    with pytest.raises(ApplicationError) as e:
        share(platform, image, region, by_org)
    assert e.value.non_retryable and e.value.type == "BadInput"
    assert all(w in e.value.message for w in words), e.value.message
    assert ATTACKER not in platform.launchers(image, region), "nothing granted"


@pytest.mark.parametrize("case,fields,by_org", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_images_are_shared_with_a_ready_org_and_during_onboarding(platform, case, fields, by_org):
    image = platform.released_image()
    platform.ready_org("mallory", account=ATTACKER, **fields)
    share(platform, image, REGION, by_org)
    assert ATTACKER in platform.launchers(image)


def test_twin_without_the_check_an_unverified_account_gets_the_image(platform, monkeypatch):
    """The code before the fix: no refusal, and the claimed account can launch the image."""
    monkeypatch.setattr(org_access, "refusal", lambda *a, **k: None)
    image = platform.released_image()
    platform.ready_org("mallory", account=ATTACKER, state="AWAITING_ROLE", role_arn=None)
    share(platform, image, REGION, False)
    assert ATTACKER in platform.launchers(image)


def render(platform: Platform, region: str, by_org: bool) -> m.RenderedTemplate:
    acts = RegionActivities(platform.aws, platform.registry)
    return run(
        acts.render_foundation_template,
        m.FoundationTemplateInput(org_id="mallory", region=region, by_org=by_org),
    )


@pytest.mark.parametrize("case,fields,region,by_org,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_no_foundation_where_the_org_may_not_have_one(
    platform, case, fields, region, by_org, words
):
    platform.ready_org("mallory", account=ATTACKER, **fields)
    with pytest.raises(ApplicationError) as e:
        render(platform, region, by_org)
    assert e.value.non_retryable and e.value.type == "BadInput"
    assert all(w in e.value.message for w in words), e.value.message
    assert platform.registry.foundations("mallory") == []


@pytest.mark.parametrize("case,fields,by_org", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_a_foundation_for_a_ready_org_and_during_onboarding(platform, case, fields, by_org):
    platform.ready_org("mallory", account=ATTACKER, **fields)
    assert "AWS::EC2::VPC" in render(platform, REGION, by_org).template_body


def test_twin_without_the_check_an_offboarded_org_gets_a_foundation_template(platform, monkeypatch):
    monkeypatch.setattr(org_access, "refusal", lambda *a, **k: None)
    platform.ready_org("mallory", account=ATTACKER, state="OFFBOARDED")
    assert "AWS::EC2::VPC" in render(platform, "eu-west-1", False).template_body
