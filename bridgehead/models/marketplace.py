"""AWS Marketplace SaaS subscriptions: linking an organisation to a buyer, and the buyer's
subscription notifications (``MarketplaceSubscription``, workflow id ``marketplace-{org_id}``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from bridgehead.models.common import AccountId, Model, OrgId, SensitiveModel

#: A registration token as AWS Marketplace posts it to the fulfilment URL (opaque, short-lived).
RegistrationToken = Annotated[str, StringConstraints(min_length=1, max_length=4096)]

NotificationAction = Literal[
    "subscribe-success", "subscribe-fail", "unsubscribe-pending", "unsubscribe-success"
]


class MarketplaceState(StrEnum):
    """The organisation's Marketplace billing state (registry ``ORG#<org>`` / ``MARKETPLACE``).

    ``LINKED``: ResolveCustomer succeeded; metering waits for ``subscribe-success``.
    ``SUBSCRIBED``: usage is metered. ``SUBSCRIBE_FAILED``: the buyer's subscription failed (no
    metering). ``UNSUBSCRIBE_PENDING``: the buyer is leaving; the last usage is metered at once.
    ``UNSUBSCRIBED``: no more metering and no new clusters. ``NOT_SUBSCRIBED``: Marketplace answered
    ``CustomerNotSubscribed`` to a usage record; metering stopped until ``subscribe-success``.
    """

    LINKED = "LINKED"
    SUBSCRIBED = "SUBSCRIBED"
    SUBSCRIBE_FAILED = "SUBSCRIBE_FAILED"
    UNSUBSCRIBE_PENDING = "UNSUBSCRIBE_PENDING"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"


#: States in which usage is sent to Marketplace.
METERING_STATES = frozenset({MarketplaceState.SUBSCRIBED, MarketplaceState.UNSUBSCRIBE_PENDING})
#: States in which no new cluster may be created.
NO_NEW_CLUSTERS_STATES = frozenset({MarketplaceState.UNSUBSCRIBED})

#: The state each notification moves the organisation to.
NOTIFICATION_STATES: dict[str, MarketplaceState] = {
    "subscribe-success": MarketplaceState.SUBSCRIBED,
    "subscribe-fail": MarketplaceState.SUBSCRIBE_FAILED,
    "unsubscribe-pending": MarketplaceState.UNSUBSCRIBE_PENDING,
    "unsubscribe-success": MarketplaceState.UNSUBSCRIBED,
}


class MarketplaceSubscriptionInput(SensitiveModel):
    """Input of ``MarketplaceSubscription`` (workflow id ``marketplace-{org_id}``).

    Encrypted by the payload codec (a :class:`SensitiveModel`): the registration token is never
    stored in plain history, logged or shown by the Web UI.

    Attributes:
        org_id: The organisation the buyer registers for (must be onboarded).
        registration_token: The ``x-amzn-marketplace-token`` AWS Marketplace posted to the
            fulfilment URL.
        allow_different_account: Link even when the buyer's AWS account is not the
            organisation's account (an operator's explicit decision).

        carried: Internal: the status carried across continue-as-new (refused on a fresh start).
    """

    org_id: OrgId
    registration_token: RegistrationToken = Field(repr=False)
    allow_different_account: bool = False
    carried: SkipJsonSchema[MarketplaceStatus | None] = None

    plain_refused: ClassVar[bool] = False  # the Web UI's start form sends it as plain JSON


class MarketplaceNotification(Model):
    """A subscription notification (the ``Message`` of the Marketplace SNS topic), signal ``notification``.

    Attributes:
        action: ``subscribe-success``, ``subscribe-fail``, ``unsubscribe-pending`` or ``unsubscribe-success``.
        customer_identifier: The buyer's ``customer-identifier``.
        product_code: The product the notification is about.
        offer_identifier: The offer (subscribe notifications only).
        customer_aws_account_id: The buyer's account, when the message carries it.
        message_id: The SNS message id (duplicates of a delivered message are ignored).
    """

    action: NotificationAction
    customer_identifier: str
    product_code: str
    offer_identifier: str | None = None
    customer_aws_account_id: str | None = None
    message_id: str | None = None


class MarketplaceEvent(Model):
    at: datetime
    action: str
    state: MarketplaceState
    note: str = ""


class MarketplaceStatus(Model):
    """Query ``status`` of ``MarketplaceSubscription``."""

    org_id: OrgId
    state: MarketplaceState | None = None
    customer_aws_account_id: str | None = None
    customer_identifier: str | None = None
    product_code: str | None = None
    events: list[MarketplaceEvent] = Field(default_factory=list)
    #: SNS message ids already applied (bounded), so a redelivered message changes nothing.
    seen: list[str] = Field(default_factory=list)
    last_error: str | None = None


class ResolveCustomerInput(SensitiveModel):
    org_id: OrgId
    registration_token: RegistrationToken = Field(repr=False)
    allow_different_account: bool = False


class MarketplaceLink(Model):
    """The Marketplace buyer of an organisation, from ``ResolveCustomer``."""

    org_id: OrgId
    customer_aws_account_id: AccountId
    customer_identifier: str
    product_code: str
    state: MarketplaceState
    linked_at: datetime


class RecordMarketplaceStateInput(Model):
    org_id: OrgId
    state: MarketplaceState
    reason: str
    at: datetime
    #: The notification this state comes from (its SNS message id), checked against what the
    #: platform's queue delivered: a ``notification`` signal is anyone's to send.
    notification: MarketplaceNotification | None = None
    #: The subscription a notification is applied to: the first run id of the subscription's
    #: chain of runs (kept by continue-as-new and by a reset), set by the workflow; empty: the
    #: activity's own run id (runs recorded before this field).
    subscription: str = ""


MarketplaceSubscriptionInput.model_rebuild()
