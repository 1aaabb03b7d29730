"""AWS Marketplace SaaS fulfilment: resolving a buyer's registration token, the organisation's
billing state, and the consumer of the subscription notification queue.

Subscription notifications: AWS Marketplace publishes ``subscribe-success``, ``subscribe-fail``,
``unsubscribe-pending`` and ``unsubscribe-success`` to the product's SNS topic
(``aws-mp-subscription-notification-<product code>``); the platform subscribes an SQS queue
(``marketplace_notification_queue``) to it. :class:`NotificationConsumer` (a task of the worker
process) reads the queue, finds the organisation linked to the message's ``customer-identifier``
and signals ``notification`` to its ``MarketplaceSubscription`` workflow; a message is deleted
only once the signal was delivered (or the message can never be delivered), so a crash between
the two redelivers it and the workflow ignores the duplicate by its SNS message id.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from activities.queue_consumer import QueueConsumer
from activities.registry import Registry
from bridgehead import ids
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    MarketplaceLink,
    MarketplaceNotification,
    MarketplaceState,
    MeteringNotice,
    RecordMarketplaceStateInput,
    ResolveCustomerInput,
)

log = get_logger("bridgehead.activities.marketplace")

#: ResolveCustomer answers for a token that will never resolve (API_ResolveCustomer).
TOKEN_REFUSED = frozenset({"InvalidTokenException", "ExpiredTokenException"})


class MarketplaceActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    @activity.defn
    def resolve_marketplace_customer(self, req: ResolveCustomerInput) -> MarketplaceLink:
        """``ResolveCustomer`` on the registration token, then link the buyer to the organisation.

        Refused (non-retryable, nothing written): an invalid or expired token; a product code that
        is not ours (``marketplace_product_code``); a buyer account other than the organisation's
        unless ``allow_different_account``; a buyer already linked to another organisation. The
        token is never logged nor returned. moto has no ResolveCustomer: this calls the platform's
        ``meteringmarketplace`` client, which tests replace with a fake of the documented shape.
        """
        bind_subject(org_id=req.org_id)
        org = self.registry.org_item(req.org_id)
        if org is None:
            raise ApplicationError(
                f"organisation {req.org_id} is not registered; onboard it first",
                type="MarketplaceRegistrationRefused",
                non_retryable=True,
            )
        with aws_errors("meteringmarketplace:ResolveCustomer"):
            try:
                resp = self.aws.platform("meteringmarketplace").resolve_customer(
                    RegistrationToken=req.registration_token
                )
            except ClientError as e:
                if error_code(e) in TOKEN_REFUSED:
                    raise ApplicationError(
                        f"AWS Marketplace refused the registration token ({error_code(e)}): ask the buyer to open the "
                        "product's fulfilment link again from AWS Marketplace for a fresh token",
                        type="MarketplaceRegistrationRefused",
                        non_retryable=True,
                    ) from None
                raise
        ours = self.aws.settings.marketplace_product_code
        if resp["ProductCode"] != ours:
            raise ApplicationError(
                f"the registration is for product {resp['ProductCode']}, not ours ({ours}); nothing was linked",
                type="MarketplaceRegistrationRefused",
                non_retryable=True,
            )
        account = resp.get("CustomerAWSAccountId")
        if not account:
            raise ApplicationError(
                "ResolveCustomer returned no CustomerAWSAccountId; cannot meter this buyer",
                type="MarketplaceRegistrationRefused",
                non_retryable=True,
            )
        if account != org["aws_account_id"] and not req.allow_different_account:
            raise ApplicationError(
                f"the buyer's AWS account {account} is not organisation {req.org_id}'s account {org['aws_account_id']}; "
                'register again with "allow_different_account": true if this buyer really pays for this organisation',
                type="MarketplaceRegistrationRefused",
                non_retryable=True,
            )
        existing = self.registry.marketplace(req.org_id) or {}
        # A repeated registration of the same, still subscribed buyer keeps its state and linking
        # time; a buyer coming back after the subscription ended or failed starts again from now
        # (usage between the two subscriptions is never metered).
        same_buyer = existing.get("customer_identifier") == resp[
            "CustomerIdentifier"
        ] and existing.get("state") not in (
            MarketplaceState.UNSUBSCRIBED.value,
            MarketplaceState.SUBSCRIBE_FAILED.value,
        )
        now = datetime.now(UTC)
        link = {
            "customer_aws_account_id": account,
            "customer_identifier": resp["CustomerIdentifier"],
            "product_code": resp["ProductCode"],
            "state": existing.get("state", MarketplaceState.LINKED.value)
            if same_buyer
            else MarketplaceState.LINKED.value,
            "state_reason": existing.get("state_reason", "registered")
            if same_buyer
            else "registered",
            "state_at": existing.get("state_at", now.isoformat())
            if same_buyer
            else now.isoformat(),
            "linked_at": existing.get("linked_at", now.isoformat())
            if same_buyer
            else now.isoformat(),
        }
        if not self.registry.link_marketplace(req.org_id, link):
            other = self.registry.marketplace_org(resp["CustomerIdentifier"])
            raise ApplicationError(
                f"this AWS Marketplace buyer is already linked to organisation {other}; one buyer pays for one organisation",
                type="MarketplaceRegistrationRefused",
                non_retryable=True,
            )
        log.info(
            "Marketplace buyer linked",
            customer_aws_account_id=account,
            customer_identifier=resp["CustomerIdentifier"],
        )
        return MarketplaceLink(
            org_id=req.org_id,
            customer_aws_account_id=account,
            customer_identifier=resp["CustomerIdentifier"],
            product_code=resp["ProductCode"],
            state=MarketplaceState(link["state"]),
            linked_at=datetime.fromisoformat(link["linked_at"]),
        )

    def _check_delivered(
        self, org_id: str, n: MarketplaceNotification, subscription: str = ""
    ) -> None:
        """A notification is applied only as the platform's queue delivered it: the consumer
        records each message before it signals, so a signal sent by anyone else (a forged
        ``unsubscribe-success``) finds no record, or a record that says something else."""
        got = self.registry.marketplace_notice(n.message_id) if n.message_id else None
        if got is None:
            raise _unverified(
                f"notification {n.message_id!r} ({n.action}) was not delivered by the Marketplace queue; ignored"
            )
        said = (got.get("org_id"), got.get("action"), got.get("customer_identifier"))
        if said != (org_id, n.action, n.customer_identifier):
            raise _unverified(
                f"notification {n.message_id!r} says {n.action} for {n.customer_identifier}, but the queue delivered "
                f"{got.get('action')} for {got.get('customer_identifier')} (organisation {got.get('org_id')}); ignored"
            )
        # Delivered once, applied once: a genuine notice of an earlier subscription signalled
        # again to the next one (the run's own list of seen ids starts empty) is refused (found
        # by an adversarial review, session 13).
        subscription = subscription or str(activity.info().workflow_run_id)
        if not self.registry.apply_marketplace_notice(n.message_id or "", subscription):
            raise _unverified(
                f"notification {n.message_id!r} ({n.action}) was already applied to an earlier "
                "subscription of this organisation; ignored"
            )

    @activity.defn
    def record_marketplace_state(self, req: RecordMarketplaceStateInput) -> MeteringNotice | None:
        """Write the organisation's Marketplace billing state (read by the meter and by cluster
        validation); returns the email its admin gets about it, if any."""
        bind_subject(org_id=req.org_id)
        if req.notification is not None:
            self._check_delivered(req.org_id, req.notification, req.subscription)
        if not self.registry.set_marketplace_state(req.org_id, req.state.value, req.reason, req.at):
            raise ApplicationError(
                f"organisation {req.org_id} has no Marketplace link",
                type="MarketplaceNotLinked",
                non_retryable=True,
            )
        org = self.registry.org_item(req.org_id) or {}
        text = {
            MarketplaceState.SUBSCRIBE_FAILED: "the AWS Marketplace subscription failed: usage is not billed through AWS Marketplace.",
            MarketplaceState.UNSUBSCRIBE_PENDING: "the AWS Marketplace subscription is ending: the last usage is metered now.",
            MarketplaceState.UNSUBSCRIBED: (
                "the AWS Marketplace subscription has ended: no new cluster can be created, and running clusters are no "
                "longer billed through AWS Marketplace (delete them, or subscribe again)."
            ),
        }.get(req.state)
        if text is None or not org.get("admin_email"):
            return None
        return MeteringNotice(
            to=org["admin_email"],
            subject=f"Bridgehead: AWS Marketplace subscription of {req.org_id}: {req.state.value}",
            body=f"Organisation {req.org_id}: {text}",
            idempotency_key=f"mp-{req.org_id}-{req.state.value}-{req.at.isoformat()}",
        )


def _unverified(why: str) -> ApplicationError:
    return ApplicationError(why, type="NotificationUnverified", non_retryable=True)


def parse_notification(body: str) -> MarketplaceNotification:
    """An SQS message from the Marketplace SNS topic (SNS envelope, or raw message delivery)."""
    outer = json.loads(body)
    message_id = None
    if isinstance(outer, dict) and outer.get("Type") == "Notification":
        message_id = outer.get("MessageId")
        outer = json.loads(outer["Message"])
    return MarketplaceNotification(
        action=outer.get("action"),
        customer_identifier=outer.get("customer-identifier"),
        product_code=outer.get("product-code"),
        offer_identifier=outer.get("offer-identifier"),
        customer_aws_account_id=outer.get("customer-aws-account-id"),
        message_id=message_id,
    )


class NotificationConsumer(QueueConsumer):
    """Reads the subscription notification queue and signals ``MarketplaceSubscription`` workflows.

    Not an activity: a long-poll loop of the worker process (no Temporal action while idle). Each
    message is deleted after its signal was delivered; one for a buyer not linked yet (the
    notification can arrive before the buyer finishes registering) stays in the queue and is seen
    again after the queue's visibility timeout.
    """

    WHAT = "Marketplace notification queue"

    def __init__(
        self, aws: Aws, registry: Registry, client: Any, queue_name: str | None = None
    ) -> None:
        super().__init__(aws, queue_name or aws.settings.marketplace_notification_queue)
        self.registry = registry
        self.client = client

    async def _handle(self, url: str, msg: dict[str, Any]) -> bool:
        from temporalio.service import RPCError, RPCStatusCode

        try:
            n = parse_notification(msg["Body"])
        except (ValueError, KeyError, TypeError, ValidationError) as e:
            log.error(
                "unreadable Marketplace notification dropped",
                error=str(e)[:300],
                sqs_message_id=msg.get("MessageId"),
            )
            await self.delete(url, msg)
            return False
        n.message_id = n.message_id or msg.get("MessageId")
        if n.product_code != self.aws.settings.marketplace_product_code:
            log.warning(
                "Marketplace notification for another product dropped",
                product_code=n.product_code,
                action=n.action,
            )
            await self.delete(url, msg)
            return False
        org_id = await asyncio.to_thread(self.registry.marketplace_org, n.customer_identifier)
        if org_id is None:
            log.info(
                "Marketplace notification for a buyer not linked yet; left in the queue",
                action=n.action,
                customer_identifier=n.customer_identifier,
            )
            return False
        # Recorded before the signal: the workflow applies only what the queue delivered.
        await asyncio.to_thread(
            self.registry.record_marketplace_notice,
            str(n.message_id),
            {
                "org_id": org_id,
                "action": n.action,
                "customer_identifier": n.customer_identifier,
                "product_code": n.product_code,
                "received_at": datetime.now(UTC).isoformat(),
            },
        )
        try:
            await self.client.get_workflow_handle(ids.marketplace_workflow_id(org_id)).signal(
                "notification", n
            )
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            log.warning(
                "Marketplace notification for an organisation whose subscription workflow has ended; dropped",
                org_id=org_id,
                action=n.action,
            )
            await self.delete(url, msg)
            return False
        await self.delete(url, msg)
        log.info("Marketplace notification delivered", org_id=org_id, action=n.action)
        return True
