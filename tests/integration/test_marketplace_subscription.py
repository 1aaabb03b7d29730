"""``MarketplaceSubscription`` on the dev server, its activities against the moto server (registry,
SNS, SQS) and a fake ResolveCustomer of the documented shape (moto has none, see
tests/support/fake_marketplace.py). Notifications travel as AWS sends them: published to an SNS
topic, delivered to the SQS queue, read by the consumer, signalled to the workflow."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.aws import Aws
from activities.billing import BillingActivities
from activities.clusters import ClusterActivities
from activities.marketplace import MarketplaceActivities, NotificationConsumer
from activities.registry import Registry
from bridgehead import models as m
from bridgehead.converter import make_data_converter
from bridgehead.settings import get_settings
from tests.conftest import TEST_KEY
from tests.integration.helpers import ledger_org, wait_for
from tests.support.fake_marketplace import FakeMarketplace, install
from tests.support.secret_scan import readable_and_encrypted
from worker import WORKFLOWS, sandbox_runner

pytestmark = pytest.mark.integration

PRODUCT = "bridgehead-local"


class Harness:
    """One organisation, its in-test worker (real activities, fake Marketplace, recorded emails),
    and an SNS topic -> SQS queue pair read by an in-test consumer."""

    def __init__(self, client: Any, org: str, account: str) -> None:
        self.client, self.org, self.account = client, org, account
        self.aws, self.reg = ledger_org(org, account, admin_email=f"admin@{org}.example")
        self.market = FakeMarketplace(subscribed={account})
        install(self.aws, self.market)
        self.mails: list[m.NotifyInput] = []
        self.customer = f"cust-{uuid.uuid4().hex[:10]}"
        self.token = f"tok-{uuid.uuid4().hex}"
        self.market.tokens[self.token] = {
            "CustomerIdentifier": self.customer,
            "CustomerAWSAccountId": account,
            "ProductCode": PRODUCT,
        }
        self.tq = f"tq-{uuid.uuid4()}"
        sqs, sns = self.aws.platform("sqs"), self.aws.platform("sns")
        self.queue = f"mp-{uuid.uuid4().hex[:12]}"
        self.queue_url = sqs.create_queue(
            QueueName=self.queue, Attributes={"VisibilityTimeout": "1"}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.topic = sns.create_topic(
            Name=f"aws-mp-subscription-notification-{PRODUCT}-{uuid.uuid4().hex[:6]}"
        )["TopicArn"]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn)
        self.consumer = NotificationConsumer(self.aws, self.reg, client, queue_name=self.queue)

    def publish(self, action: str, customer: str | None = None, product: str = PRODUCT) -> str:
        message = {
            "action": action,
            "customer-identifier": customer or self.customer,
            "product-code": product,
        }
        if action.startswith("subscribe"):
            message["offer-identifier"] = "offer-abcexample123"
        return self.aws.platform("sns").publish(TopicArn=self.topic, Message=json.dumps(message))[
            "MessageId"
        ]

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        @activity.defn(name="notify")
        def notify(req: m.NotifyInput) -> bool:
            self.mails.append(req)
            return True

        acts: list[Any] = [notify]
        for inst in (
            MarketplaceActivities(self.aws, self.reg),
            BillingActivities(self.aws, self.reg),
        ):
            acts += [
                getattr(inst, n)
                for n in dir(type(inst))
                if hasattr(getattr(type(inst), n), "__temporal_activity_definition")
            ]
        with ThreadPoolExecutor(8) as ex:
            async with Worker(
                self.client,
                task_queue=self.tq,
                workflows=WORKFLOWS,
                activities=acts,
                activity_executor=ex,
                workflow_runner=sandbox_runner(),
            ):
                yield

    async def register(self, **extra: Any) -> Any:
        inp = m.MarketplaceSubscriptionInput(
            org_id=self.org, registration_token=self.token, **extra
        )
        return await self.client.start_workflow(
            "MarketplaceSubscription",
            inp,
            id=f"marketplace-{self.org}",
            task_queue=self.tq,
            result_type=m.MarketplaceStatus,
        )

    async def deliver(self, action: str) -> str:
        """Publish ``action`` and let the consumer signal it; returns the SNS message id."""
        msg_id = self.publish(action)
        for _ in range(20):
            if await self.consumer.poll_once(wait_seconds=1):
                return msg_id
        raise AssertionError(f"{action} never reached the workflow")

    async def state(self, h: Any, want: m.MarketplaceState) -> m.MarketplaceStatus:
        return await wait_for(h, "status", m.MarketplaceStatus, lambda s: s.state == want, 30)

    def billing_state(self) -> str | None:
        return (self.reg.marketplace(self.org) or {}).get("state")


async def eventually(pred: Any, timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.2)):
        if pred():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition never held")


def _org() -> str:
    return f"mp{uuid.uuid4().hex[:8]}"


async def token_scan(history: Any, token: str) -> tuple[list[str], list[str]]:
    """Where the registration token is in a history: readable (a defect) and encrypted."""
    codec = make_data_converter(TEST_KEY).payload_codec
    return await readable_and_encrypted(history, {"registration token": token}, codec)


async def test_twin_a_token_sent_unencrypted_is_found_readable(client):
    """Planted defect: the subscription started by a client that does not encrypt (as if
    ``MarketplaceSubscriptionInput`` were not a ``SensitiveModel``). The scan the tests above use
    finds the token in the start event. No worker polls the queue; the run is terminated."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    plain = Client(**{**client.config(), "data_converter": pydantic_data_converter})
    org, token = _org(), f"planted-{uuid.uuid4().hex}"
    h = await plain.start_workflow(
        "MarketplaceSubscription",
        m.MarketplaceSubscriptionInput(org_id=org, registration_token=token),
        id=f"marketplace-{org}",
        task_queue=f"no-worker-{org}",
    )
    try:
        readable, encrypted = await token_scan(await h.fetch_history(), token)
    finally:
        await h.terminate("twin finished")
    assert encrypted == [] and len(readable) == 1, (readable, encrypted)
    assert (
        "[plain] at" in readable[0] and "workflow_execution_started_event_attributes" in readable[0]
    )


async def test_subscribe_success_links_the_buyer_and_metering_starts(client):
    hz = Harness(client, _org(), "252525252525")
    async with hz.worker():
        h = await hz.register()
        s = await hz.state(h, m.MarketplaceState.LINKED)
        assert (s.customer_aws_account_id, s.customer_identifier, s.product_code) == (
            "252525252525",
            hz.customer,
            PRODUCT,
        )
        link = hz.reg.marketplace(hz.org)
        assert (
            link["customer_aws_account_id"] == "252525252525"
            and link["customer_identifier"] == hz.customer
            and link["product_code"] == PRODUCT
        )
        assert hz.reg.marketplace_org(hz.customer) == hz.org
        assert "registration_token" not in json.dumps(link) and hz.token not in json.dumps(
            link, default=str
        )
        # Linked but not subscribed yet: usage is not sent.
        env = ActivityEnvironment()
        acts = BillingActivities(hz.aws, hz.reg)
        assert "LINKED" in (
            env.run(acts.meter_usage, m.MeterUsageInput(org_id=hz.org)).skipped or ""
        )
        msg = await hz.deliver("subscribe-success")
        s = await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        assert (
            hz.billing_state() == "SUBSCRIBED"
            and s.events[-1].action == "subscribe-success"
            and msg in s.seen
        )
        assert env.run(acts.meter_usage, m.MeterUsageInput(org_id=hz.org)).skipped is None
        # The token never enters history readable (the input is encrypted by the codec): every
        # payload decoded, and found encrypted where it was sent (the scan reaches it).
        readable, encrypted = await token_scan(await h.fetch_history(), hz.token)
        assert readable == [] and encrypted, (readable, encrypted)
        await h.terminate("test finished")


async def test_subscribe_fail_stops_metering_and_tells_the_admin(client):
    hz = Harness(client, _org(), "262626262626")
    async with hz.worker():
        h = await hz.register()
        await hz.state(h, m.MarketplaceState.LINKED)
        await hz.deliver("subscribe-fail")
        await hz.state(h, m.MarketplaceState.SUBSCRIBE_FAILED)
        assert hz.billing_state() == "SUBSCRIBE_FAILED"
        res = ActivityEnvironment().run(
            BillingActivities(hz.aws, hz.reg).meter_usage, m.MeterUsageInput(org_id=hz.org)
        )
        assert res.skipped and "SUBSCRIBE_FAILED" in res.skipped and hz.market.calls == []
        await eventually(lambda: hz.mails)
        assert [x.to for x in hz.mails] == [f"admin@{hz.org}.example"] and "failed" in hz.mails[
            0
        ].body
        await h.terminate("test finished")


async def test_unsubscribe_pending_meters_the_usage_up_to_now_at_once(client):
    """The meter is mid-hour; unsubscribe-pending makes it close usage up to now (the open hour's
    part included) and send it to Marketplace right away, not at the next tick."""
    hz = Harness(client, _org(), "272727272727")
    started = datetime.now(UTC) - timedelta(hours=1, minutes=20)
    seg = m.UsageSegment(
        start=started,
        end=None,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=2,
    )
    hz.reg.put(
        {
            "pk": f"ORG#{hz.org}",
            "sk": "CLUSTER#c1",
            "name": "c1",
            "region": "us-east-1",
            "state": "RUNNING",
            "segments": [seg.model_dump(mode="json")],
        }
    )
    async with hz.worker():
        h = await hz.register()
        await hz.state(h, m.MarketplaceState.LINKED)
        # As if the buyer had registered before the cluster started (usage before a link is never metered).
        hz.reg.update(
            f"ORG#{hz.org}",
            "MARKETPLACE",
            {"linked_at": (started - timedelta(minutes=5)).isoformat()},
        )
        await hz.deliver("subscribe-success")
        await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        meter = await client.start_workflow(
            "BillingMeter",
            m.BillingMeterInput(org_id=hz.org),
            id=f"billing-{hz.org}",
            task_queue=hz.tq,
        )
        await asyncio.sleep(1)
        assert hz.market.calls == [], "mid-hour: the meter waits for its next tick"
        await hz.deliver("unsubscribe-pending")
        s = await hz.state(h, m.MarketplaceState.UNSUBSCRIBE_PENDING)
        for _ in range(60):
            if hz.market.accepted:
                break
            await asyncio.sleep(0.5)
        minutes = round((datetime.now(UTC) - started).total_seconds() / 60)
        got = hz.market.totals()
        assert (
            abs(got["node-minutes.t3.medium"] - minutes) <= 1
            and got["node-minutes.c5.xlarge"] == 2 * got["node-minutes.t3.medium"]
        ), got
        assert all(r["CustomerAWSAccountId"] == "272727272727" for r in hz.market.sent_records())
        assert s.events[-1].note == "final metering requested"
        await meter.terminate("test finished")
        await h.terminate("test finished")


async def test_unsubscribe_success_refuses_new_clusters_and_tells_the_admin(client):
    hz = Harness(client, _org(), "282828282828")
    clusters = ClusterActivities(hz.aws, hz.reg)
    cfg = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_initial_nodes=1,
        compute_max_nodes=2,
    )
    plan_input = m.ValidateClusterInput(org_id=hz.org, name="c9", region="us-east-1", config=cfg)

    def marketplace_errors() -> list[str]:
        plan = ActivityEnvironment().run(clusters.validate_cluster, plan_input)
        return [e for e in plan.errors if "Marketplace" in e]

    async with hz.worker():
        h = await hz.register()
        await hz.state(h, m.MarketplaceState.LINKED)
        await hz.deliver("subscribe-success")
        await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        assert marketplace_errors() == []
        await hz.deliver("unsubscribe-success")
        final = await h.result()
        if os.environ.get(
            "BRIDGEHEAD_RECORD_HISTORIES"
        ):  # the replay corpus: the whole subscription
            from tests.test_replay import HISTORIES

            (HISTORIES / "MarketplaceSubscription.json").write_text(
                (await h.fetch_history()).to_json()
            )
            (HISTORIES / "MarketplaceSubscription.id").write_text(h.id + "\n")
    assert final.state == m.MarketplaceState.UNSUBSCRIBED and hz.billing_state() == "UNSUBSCRIBED"
    (err,) = marketplace_errors()
    assert "has ended" in err
    assert hz.mails and "no new cluster can be created" in hz.mails[-1].body
    res = ActivityEnvironment().run(
        BillingActivities(hz.aws, hz.reg).meter_usage, m.MeterUsageInput(org_id=hz.org)
    )
    assert res.skipped and "UNSUBSCRIBED" in res.skipped
    # The buyer comes back with a new token: linked again from now, clusters allowed again.
    first_link = hz.reg.marketplace(hz.org)["linked_at"]
    hz.token = f"tok-{uuid.uuid4().hex}"
    hz.market.tokens[hz.token] = {
        "CustomerIdentifier": hz.customer,
        "CustomerAWSAccountId": hz.account,
        "ProductCode": PRODUCT,
    }
    async with hz.worker():
        h2 = await hz.register()
        await hz.state(h2, m.MarketplaceState.LINKED)
        await h2.terminate("test finished")
    assert hz.reg.marketplace(hz.org)["linked_at"] > first_link and marketplace_errors() == []


async def test_a_redelivered_or_foreign_notification_changes_nothing(client):
    hz = Harness(client, _org(), "292929292929")
    async with hz.worker():
        h = await hz.register()
        await hz.state(h, m.MarketplaceState.LINKED)
        msg = await hz.deliver("subscribe-success")
        await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        n = m.MarketplaceNotification(
            action="subscribe-fail",
            customer_identifier=hz.customer,
            product_code=PRODUCT,
            message_id=msg,
        )
        await h.signal("notification", n)  # the same SNS message again, whatever it says
        await h.signal(
            "notification",
            n.model_copy(update={"message_id": "other", "customer_identifier": "someone-else"}),
        )
        hz.publish("subscribe-fail", product="not-our-product")
        await hz.consumer.poll_once(wait_seconds=1)
        await asyncio.sleep(1)
        s = await h.query("status", result_type=m.MarketplaceStatus)
        assert s.state == m.MarketplaceState.SUBSCRIBED and [e.action for e in s.events] == [
            "registered",
            "subscribe-success",
        ]
        # A buyer nobody registered yet: the message stays in the queue for later.
        hz.publish("subscribe-success", customer="cust-not-yet-linked")
        assert await hz.consumer.poll_once(wait_seconds=1) == 0
        await asyncio.sleep(1.5)  # the queue's visibility timeout
        left = hz.aws.platform("sqs").receive_message(QueueUrl=hz.queue_url, WaitTimeSeconds=2)[
            "Messages"
        ]
        assert "cust-not-yet-linked" in left[0]["Body"]
        await h.terminate("test finished")


@pytest.mark.parametrize(
    ("answer", "extra", "expected"),
    [
        ({"ProductCode": "someone-elses-product"}, {}, "not ours"),
        ({"CustomerAWSAccountId": "999999999999"}, {}, "is not organisation"),
        ("InvalidTokenException", {}, "refused the registration token"),
        ("ExpiredTokenException", {}, "fresh token"),
    ],
)
async def test_registration_is_refused_and_nothing_is_linked(client, answer, extra, expected):
    hz = Harness(client, _org(), "313131313131")
    base = dict(hz.market.tokens[hz.token])  # type: ignore[arg-type]
    hz.market.tokens[hz.token] = answer if isinstance(answer, str) else {**base, **answer}
    async with hz.worker():
        h = await hz.register(**extra)
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
    assert expected in str(e.value.cause) and hz.token not in str(e.value.cause)
    assert hz.reg.marketplace(hz.org) is None and hz.reg.marketplace_org(hz.customer) is None


async def test_a_different_account_links_only_when_explicitly_allowed(client):
    hz = Harness(client, _org(), "323232323232")
    hz.market.tokens[hz.token] = {
        "CustomerIdentifier": hz.customer,
        "CustomerAWSAccountId": "999999999998",
        "ProductCode": PRODUCT,
    }
    async with hz.worker():
        h = await hz.register(allow_different_account=True)
        s = await hz.state(h, m.MarketplaceState.LINKED)
        assert s.customer_aws_account_id == "999999999998"
        await h.terminate("test finished")


async def test_the_worker_consumes_the_configured_queue(client, stack):
    """The stack's own worker process runs the consumer on ``marketplace_notification_queue``."""
    hz = Harness(client, _org(), "333333333333")
    sqs = hz.aws.platform("sqs")
    url = sqs.create_queue(QueueName=get_settings().marketplace_notification_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    hz.aws.platform("sns").subscribe(TopicArn=hz.topic, Protocol="sqs", Endpoint=arn)
    async with hz.worker():
        h = await hz.register()
        await hz.state(h, m.MarketplaceState.LINKED)
        hz.publish("subscribe-success")
        await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        await h.terminate("test finished")


def test_registry_refuses_one_buyer_for_two_organisations(stack):
    aws = Aws(get_settings())
    reg = Registry(aws)
    link = {
        "customer_aws_account_id": "343434343434",
        "customer_identifier": "cust-shared",
        "product_code": PRODUCT,
        "state": "LINKED",
        "linked_at": datetime.now(UTC).isoformat(),
    }
    a, b = _org(), _org()
    ledger_org(a, "343434343434")
    ledger_org(b, "343434343434")
    assert reg.link_marketplace(a, link) and reg.link_marketplace(a, link), (
        "the same org again is fine"
    )
    assert not reg.link_marketplace(b, link) and reg.marketplace(b) is None


async def _forged_unsubscribe(client: Any, account: str) -> m.MarketplaceStatus:
    """A subscribed buyer; then an ``unsubscribe-success`` signal that the queue never delivered,
    with a fresh message id and everything else right (the customer identifier and product code
    are anyone's to read from ``status``). Returns the status after it."""
    hz = Harness(client, _org(), account)
    async with hz.worker():
        h = await hz.register()
        await hz.deliver("subscribe-success")
        s = await hz.state(h, m.MarketplaceState.SUBSCRIBED)
        forged = m.MarketplaceNotification(
            action="unsubscribe-success",
            customer_identifier=s.customer_identifier,
            product_code=s.product_code,
            message_id=f"forged-{uuid.uuid4().hex[:6]}",
        )
        await h.signal("notification", forged)
        await asyncio.sleep(2)
        s = await h.query("status", result_type=m.MarketplaceStatus)
        if s.state != m.MarketplaceState.UNSUBSCRIBED:  # after unsubscribe-success it has ended
            await h.terminate("test finished")
    return s


async def test_a_forged_notification_signal_is_not_applied(client):
    s = await _forged_unsubscribe(client, "293939393939")
    assert s.state == m.MarketplaceState.SUBSCRIBED, s
    assert [e.action for e in s.events] == ["registered", "subscribe-success"]


async def test_twin_without_the_delivery_check_a_forged_signal_ends_billing(client, monkeypatch):
    from activities.marketplace import MarketplaceActivities

    monkeypatch.setattr(MarketplaceActivities, "_check_delivered", lambda self, *a: None)
    s = await _forged_unsubscribe(client, "294949494949")
    assert s.state == m.MarketplaceState.UNSUBSCRIBED, s
