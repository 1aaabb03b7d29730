"""activities/marketplace.py with the registry in moto: a registration token is resolved and the
buyer linked to the organisation (one buyer, one organisation; ours only; the organisation's own
account unless allowed), every refusal fails at once and links nothing, throttling is retried;
the billing state is written only for a notification the platform's queue delivered. moto has no
ResolveCustomer: the Marketplace fake of tests/support/fake_marketplace.py answers it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError

from activities.marketplace import MarketplaceActivities
from bridgehead import models as m
from tests.activities.conftest import CUSTOMER, Platform, run
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("resolve_marketplace_customer", "record_marketplace_state")

ORG = "acme"
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def market(platform: Platform) -> FakeMarketplace:
    platform.ready_org(ORG)
    fake = FakeMarketplace()
    install(platform.aws, fake)
    fake.tokens["tok-acme"] = {
        "CustomerIdentifier": "cust-acme",
        "CustomerAWSAccountId": CUSTOMER,
        "ProductCode": "bridgehead-local",
    }
    return fake


@pytest.fixture
def acts(platform: Platform, market: FakeMarketplace) -> MarketplaceActivities:
    return MarketplaceActivities(platform.aws, platform.registry)


def resolve(
    acts: MarketplaceActivities, token: str, org: str = ORG, **kw: bool
) -> m.MarketplaceLink:
    req = m.ResolveCustomerInput(org_id=org, registration_token=token, **kw)
    return run(acts.resolve_marketplace_customer, req)  # type: ignore[no-any-return]


def test_a_token_links_the_buyer_to_the_organisation(
    acts: MarketplaceActivities, platform: Platform
):
    link = resolve(acts, "tok-acme")
    again = resolve(acts, "tok-acme")  # the buyer opens the fulfilment link twice
    assert (link.customer_identifier, link.customer_aws_account_id, link.state) == (
        "cust-acme",
        CUSTOMER,
        m.MarketplaceState.LINKED,
    )
    assert again.linked_at == link.linked_at
    record = platform.registry.marketplace(ORG)
    assert (record["customer_identifier"], record["state"]) == ("cust-acme", "LINKED")
    assert "tok-acme" not in str(record), "the token is never stored"
    assert platform.registry.marketplace_org("cust-acme") == ORG


@pytest.mark.parametrize(
    "answer,says",
    [
        (None, "refused the registration token (InvalidTokenException)"),
        ("ExpiredTokenException", "refused the registration token (ExpiredTokenException)"),
        (
            {"CustomerIdentifier": "c", "CustomerAWSAccountId": CUSTOMER, "ProductCode": "theirs"},
            "the registration is for product theirs, not ours (bridgehead-local)",
        ),
        (
            {
                "CustomerIdentifier": "c",
                "CustomerAWSAccountId": "999999999999",
                "ProductCode": "bridgehead-local",
            },
            "the buyer's AWS account 999999999999 is not organisation acme's account 222222222222",
        ),
    ],
)
def test_a_registration_that_cannot_be_ours_is_refused_and_links_nothing(
    acts: MarketplaceActivities,
    market: FakeMarketplace,
    platform: Platform,
    answer: object,
    says: str,
):
    if answer is not None:
        market.tokens["tok-bad"] = answer  # type: ignore[assignment]
    with pytest.raises(ApplicationError) as e:
        resolve(acts, "tok-bad")
    assert e.value.type == "MarketplaceRegistrationRefused" and e.value.non_retryable
    assert says in e.value.message and "tok-bad" not in e.value.message
    assert platform.registry.marketplace(ORG) is None


def test_one_buyer_pays_for_one_organisation(
    acts: MarketplaceActivities, market: FakeMarketplace, platform: Platform
):
    resolve(acts, "tok-acme")
    platform.ready_org("beta")
    with pytest.raises(ApplicationError) as e:
        resolve(acts, "tok-acme", "beta", allow_different_account=True)
    assert e.value.type == "MarketplaceRegistrationRefused"
    assert "already linked to organisation acme" in e.value.message
    assert platform.registry.marketplace("beta") is None
    market.tokens["tok-other"] = {
        "CustomerIdentifier": "cust-other",
        "CustomerAWSAccountId": "999999999999",
        "ProductCode": "bridgehead-local",
    }
    linked = resolve(acts, "tok-other", "beta", allow_different_account=True)
    assert linked.customer_aws_account_id == "999999999999"
    assert platform.registry.marketplace_org("cust-other") == "beta"


def test_an_unregistered_organisation_and_throttling(
    acts: MarketplaceActivities, market: FakeMarketplace
):
    with pytest.raises(ApplicationError) as unknown:
        resolve(acts, "tok-acme", "nobody")
    assert unknown.value.non_retryable and "nobody is not registered" in unknown.value.message
    assert market.calls == []
    market.tokens["tok-busy"] = "ThrottlingException"
    with pytest.raises(ApplicationError) as busy:
        resolve(acts, "tok-busy")
    assert (busy.value.type, busy.value.non_retryable) == ("AwsThrottled", False)
    assert busy.value.message.startswith("meteringmarketplace:ResolveCustomer")


def state(
    s: m.MarketplaceState, notification: m.MarketplaceNotification | None = None
) -> m.RecordMarketplaceStateInput:
    return m.RecordMarketplaceStateInput(
        org_id=ORG, state=s, reason="by the queue", at=AT, notification=notification
    )


def test_the_billing_state_is_written_and_its_email_returned(
    acts: MarketplaceActivities, platform: Platform
):
    link_org(platform.registry, ORG, CUSTOMER, state="LINKED")
    assert run(acts.record_marketplace_state, state(m.MarketplaceState.SUBSCRIBED)) is None
    assert platform.registry.marketplace(ORG)["state"] == "SUBSCRIBED"
    notice = run(acts.record_marketplace_state, state(m.MarketplaceState.UNSUBSCRIBED))
    assert notice is not None and notice.to == "admin@acme.example"
    assert "no new cluster can be created" in notice.body
    assert notice.idempotency_key == f"mp-acme-UNSUBSCRIBED-{AT.isoformat()}"
    record = platform.registry.marketplace(ORG)
    assert (record["state"], record["state_reason"], record["state_at"]) == (
        "UNSUBSCRIBED",
        "by the queue",
        AT.isoformat(),
    )


def unsubscribe(message_id: str) -> m.MarketplaceNotification:
    """An ``unsubscribe-success`` for the organisation's buyer, with everything right but (maybe)
    its delivery."""
    link = {"customer_identifier": "cust-acme", "product_code": "bridgehead-local"}
    return m.MarketplaceNotification(action="unsubscribe-success", message_id=message_id, **link)


def test_only_a_notification_the_queue_delivered_is_applied(
    acts: MarketplaceActivities, platform: Platform
):
    link_org(platform.registry, ORG, CUSTOMER, state="SUBSCRIBED")
    forged = unsubscribe("msg-1")
    with pytest.raises(ApplicationError) as e:
        run(acts.record_marketplace_state, state(m.MarketplaceState.UNSUBSCRIBED, forged))
    assert e.value.type == "NotificationUnverified" and e.value.non_retryable
    assert platform.registry.marketplace(ORG)["state"] == "SUBSCRIBED"
    delivered = {"org_id": ORG, "action": "unsubscribe-success", "customer_identifier": "cust-acme"}
    platform.registry.record_marketplace_notice("msg-1", delivered)
    run(acts.record_marketplace_state, state(m.MarketplaceState.UNSUBSCRIBED, forged))
    assert platform.registry.marketplace(ORG)["state"] == "UNSUBSCRIBED"


def replayed(acts: MarketplaceActivities, platform: Platform) -> None:
    """A genuine unsubscribe-success applied by one subscription run, then signalled again to the
    organisation's next subscription (a new run) once the buyer subscribed again."""
    link_org(platform.registry, ORG, CUSTOMER, state="SUBSCRIBED")
    old = unsubscribe("msg-old")
    delivered = {"org_id": ORG, "action": "unsubscribe-success", "customer_identifier": "cust-acme"}
    platform.registry.record_marketplace_notice("msg-old", delivered)
    unsubscribed = state(m.MarketplaceState.UNSUBSCRIBED, old)
    run(acts.record_marketplace_state, unsubscribed, workflow_run_id="run-1")
    run(acts.record_marketplace_state, unsubscribed, workflow_run_id="run-1")  # its retry holds
    platform.registry.record_marketplace_notice("msg-old", delivered)  # SQS delivers it again
    platform.registry.set_marketplace_state(ORG, "SUBSCRIBED", "subscribed again", AT)
    run(acts.record_marketplace_state, unsubscribed, workflow_run_id="run-2")


def test_a_notice_applied_by_one_subscription_is_refused_to_the_next(
    acts: MarketplaceActivities, platform: Platform
):
    """Found by an adversarial review (session 13): the old notice ended the new subscription."""
    with pytest.raises(ApplicationError) as e:
        replayed(acts, platform)
    assert e.value.type == "NotificationUnverified" and e.value.non_retryable
    assert "already applied to an earlier subscription" in e.value.message
    assert platform.registry.marketplace(ORG)["state"] == "SUBSCRIBED"


def test_a_reset_subscription_applies_its_own_notice_again(
    acts: MarketplaceActivities, platform: Platform
):
    """A reset (or continue-as-new) gives the subscription a new run id but keeps its first run id,
    which the workflow sends as ``subscription``: its own notice is still its own."""
    link_org(platform.registry, ORG, CUSTOMER, state="SUBSCRIBED")
    delivered = {"org_id": ORG, "action": "unsubscribe-success", "customer_identifier": "cust-acme"}
    platform.registry.record_marketplace_notice("msg-2", delivered)
    req = state(m.MarketplaceState.UNSUBSCRIBED, unsubscribe("msg-2"))
    req = req.model_copy(update={"subscription": "first-run"})
    run(acts.record_marketplace_state, req, workflow_run_id="run-1")
    run(acts.record_marketplace_state, req, workflow_run_id="run-after-reset")
    assert platform.registry.marketplace(ORG)["state"] == "UNSUBSCRIBED"


def test_twin_a_notice_checked_only_for_delivery_ends_the_new_subscription(
    acts: MarketplaceActivities, platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(type(platform.registry), "apply_marketplace_notice", lambda *a: True)
    replayed(acts, platform)
    assert platform.registry.marketplace(ORG)["state"] == "UNSUBSCRIBED"


def test_an_organisation_without_a_link_is_refused(acts: MarketplaceActivities, platform: Platform):
    with pytest.raises(ApplicationError) as e:
        run(acts.record_marketplace_state, state(m.MarketplaceState.SUBSCRIBED))
    assert (e.value.type, e.value.non_retryable) == ("MarketplaceNotLinked", True)
    assert platform.registry.marketplace(ORG) is None
