"""A fake AWS Marketplace Metering Service client that follows AWS's documented rules.

moto 5.2.5 implements ``BatchMeterUsage`` only by ``CustomerIdentifier`` (a record naming the
buyer by ``CustomerAWSAccountId`` has no customer there) and answers ``DuplicateRecord`` only on
quantity differences it has seen in the same process, and has no ``ResolveCustomer`` at all
(checked in ``moto/meteringmarketplace/models.py``). Tests therefore put this fake in place of the
platform's ``meteringmarketplace`` client and assert on what it received (``calls``) and took
(``accepted``).

Rules, each from the AWS Marketplace Metering Service API reference
(https://docs.aws.amazon.com/marketplacemetering/latest/APIReference/API_BatchMeterUsage.html,
.../API_UsageRecord.html, .../API_UsageRecordResult.html, .../API_ResolveCustomer.html) and the
seller guide's SaaS pages (https://docs.aws.amazon.com/marketplace/latest/userguide/saas-integrate-subscription.html):

B1. At most 25 ``UsageRecords`` per call (API_BatchMeterUsage: "can process up to 25 UsageRecords
    at a time"); more is a ``ValidationException`` for the whole call.
B2. Each request is for one product: an unknown ``ProductCode`` is ``InvalidProductCodeException``.
B3. A record names its buyer by ``CustomerIdentifier`` *or* ``CustomerAWSAccountId``, never both
    (mutually exclusive; ``CustomerIdentifier`` is scheduled for deprecation): both or neither is
    a ``ValidationException``. With ``deprecated_customer_identifier=False`` (the state from
    31 March 2026) a ``CustomerIdentifier`` record is refused too.
B4. Usage records are not accepted 6 hours or more after the event: a record whose ``Timestamp``
    is that old fails the whole call with ``TimestampOutOfBoundsException``.
B5. A record for a customer without an active subscription: result ``CustomerNotSubscribed``,
    not honored.
B6. "Identical requests are idempotent and can be retried with the same records or a subset of
    records": a record identical to one accepted before (same customer, dimension, timestamp and
    quantity) answers ``Success`` again and is counted once.
B7. ``DuplicateRecord``: "A previously metered UsageRecord had the same customer, dimension, and
    time, but a different quantity" -- not honored.
B8. ``UnprocessedRecords``: errors on the service side that should be retried (the fake returns the
    records of the dimensions listed in ``unprocessed`` there, as throttling would).
B9. "Same time" in B6 and B7 is the same hour: a record's ``Timestamp`` is "of the hour" and its
    finer parts are ignored (API_UsageRecord), and records are deduplicated per customer,
    dimension and hour, so a second record in the same hour with another quantity is a
    ``DuplicateRecord``.

Faults after the fact (``lose_answers``): the next calls are carried out in full (records
honored) and then the answer is lost, as a 500 (``InternalServiceErrorException``) or a dropped
connection, alternately (``lost`` counts them): what a resend must survive without billing twice.

ResolveCustomer (API_ResolveCustomer): a registration token resolves to ``CustomerIdentifier``,
``CustomerAWSAccountId`` and ``ProductCode``; an unknown token is ``InvalidTokenException``, an
expired one ``ExpiredTokenException``. The fake stores tokens in ``tokens``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, ConnectionClosedError

MAX_RECORDS = 25
WINDOW = timedelta(hours=6)


def _error(code: str, message: str, op: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        op,
    )


class FakeMarketplace:
    def __init__(
        self,
        product_code: str = "bridgehead-local",
        subscribed: set[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        unprocessed: set[str] | None = None,
        deprecated_customer_identifier: bool = True,
    ) -> None:
        self.product_code = product_code
        #: Customers (AWS account ids or customer identifiers) with an active subscription.
        self.subscribed: set[str] = set(subscribed or ())
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Dimensions answered as UnprocessedRecords (B8).
        self.unprocessed: set[str] = set(unprocessed or ())
        self.deprecated_customer_identifier = deprecated_customer_identifier
        #: Every call's records, as sent.
        self.calls: list[list[dict[str, Any]]] = []
        #: Records honored (each once).
        self.accepted: list[dict[str, Any]] = []
        #: registration token -> ResolveCustomer answer, or the error code to raise.
        self.tokens: dict[str, dict[str, str] | str] = {}
        #: Answers still to lose after carrying the call out, and the kinds lost so far.
        self.lose_answers = 0
        self.lost: list[str] = []

    # --- BatchMeterUsage ------------------------------------------------------------------------
    def batch_meter_usage(
        self, UsageRecords: list[dict[str, Any]], ProductCode: str
    ) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.calls.append([dict(r) for r in UsageRecords])
        op = "BatchMeterUsage"
        if len(UsageRecords) > MAX_RECORDS:  # B1
            raise _error(
                "ValidationException",
                f"{len(UsageRecords)} records: at most {MAX_RECORDS} per call",
                op,
            )
        if ProductCode != self.product_code:  # B2
            raise _error("InvalidProductCodeException", f"unknown product {ProductCode}", op)
        now = self.clock()
        for r in UsageRecords:
            has_id, has_account = "CustomerIdentifier" in r, "CustomerAWSAccountId" in r
            if has_id == has_account:  # B3
                raise _error(
                    "ValidationException",
                    "exactly one of CustomerIdentifier and CustomerAWSAccountId",
                    op,
                )
            if has_id and not self.deprecated_customer_identifier:
                raise _error("ValidationException", "CustomerIdentifier is no longer supported", op)
            if now - r["Timestamp"] >= WINDOW:  # B4
                raise _error(
                    "TimestampOutOfBoundsException",
                    f"{r['Timestamp'].isoformat()} is 6 hours old or more",
                    op,
                )
        results, unprocessed = [], []
        for r in UsageRecords:
            if r["Dimension"] in self.unprocessed:  # B8
                unprocessed.append(r)
                continue
            customer = r.get("CustomerAWSAccountId") or r.get("CustomerIdentifier")
            if customer not in self.subscribed:  # B5
                results.append({"UsageRecord": r, "Status": "CustomerNotSubscribed"})
                continue
            same = [a for a in self.accepted if _key(a) == _key(r)]
            if same and any(a["Quantity"] != r["Quantity"] for a in same):  # B7
                results.append({"UsageRecord": r, "Status": "DuplicateRecord"})
                continue
            if not same:  # B6: an identical record is a Success, counted once
                self.accepted.append(dict(r))
            results.append(
                {
                    "UsageRecord": r,
                    "Status": "Success",
                    "MeteringRecordId": f"mr-{len(self.accepted)}",
                }
            )
        if self.lose_answers > 0:  # the call took effect; its answer never arrives
            self.lose_answers -= 1
            kind = "500" if len(self.lost) % 2 == 0 else "drop"
            self.lost.append(kind)
            if kind == "500":
                raise ClientError(
                    {
                        "Error": {"Code": "InternalServiceErrorException", "Message": "lost"},
                        "ResponseMetadata": {"HTTPStatusCode": 500},
                    },
                    op,
                )
            raise ConnectionClosedError(endpoint_url="https://metering.marketplace.amazonaws.com")
        return {"Results": results, "UnprocessedRecords": unprocessed}

    def totals(self) -> dict[str, int]:
        """Quantity honored per dimension."""
        out: dict[str, int] = {}
        for r in self.accepted:
            out[r["Dimension"]] = out.get(r["Dimension"], 0) + r["Quantity"]
        return out

    def sent_records(self) -> list[dict[str, Any]]:
        return [r for call in self.calls for r in call]

    # --- ResolveCustomer --------------------------------------------------------------------------
    def resolve_customer(self, RegistrationToken: str) -> dict[str, str]:  # noqa: N803
        answer = self.tokens.get(RegistrationToken)
        if answer is None:
            raise _error(
                "InvalidTokenException", "the registration token is invalid", "ResolveCustomer"
            )
        if isinstance(answer, str):
            raise _error(answer, "the registration token cannot be resolved", "ResolveCustomer")
        return dict(answer)


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What Marketplace deduplicates by (B6, B7, B9): customer, dimension and the hour."""
    return (
        r.get("CustomerAWSAccountId") or r.get("CustomerIdentifier"),
        r["Dimension"],
        r["Timestamp"].replace(minute=0, second=0, microsecond=0),
    )


def install(aws: Any, fake: FakeMarketplace) -> None:
    """Serve ``aws.platform("meteringmarketplace")`` from ``fake`` (every other service unchanged)."""
    real = aws.platform
    aws.platform = lambda service, region=None: (
        fake if service == "meteringmarketplace" else real(service, region)
    )


def link_org(
    registry: Any,
    org_id: str,
    account: str,
    *,
    state: str = "SUBSCRIBED",
    linked_at: datetime | None = None,
    customer_identifier: str | None = None,
    product_code: str = "bridgehead-local",
) -> dict[str, Any]:
    """Write an organisation's Marketplace link straight into the registry (what
    ``MarketplaceSubscription`` records after ResolveCustomer and ``subscribe-success``)."""
    link = {
        "customer_aws_account_id": account,
        "customer_identifier": customer_identifier or f"cust-{org_id}",
        "product_code": product_code,
        "state": state,
        "linked_at": (linked_at or datetime(2026, 1, 1, tzinfo=UTC)).isoformat(),
    }
    assert registry.link_marketplace(org_id, link)
    return link
