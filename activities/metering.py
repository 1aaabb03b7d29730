"""AWS Marketplace metering of the billing ledger: unmetered usage sent once (``BatchMeterUsage``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors
from activities.ledger import Ledger
from activities.registry import Registry
from bridgehead import billing, metrics
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    METERING_STATES,
    MarketplaceState,
    MeteringNotice,
    MeterUsageInput,
    MeterUsageResult,
)

log = get_logger("bridgehead.activities.billing")


class MeteringActivities:
    """The metering activities of :class:`activities.billing.BillingActivities` (its base class)."""

    aws: Aws
    registry: Registry
    ledger: Ledger
    clock: Callable[[], datetime]

    @activity.defn
    def meter_usage(self, req: MeterUsageInput) -> MeterUsageResult:
        """Send unmetered ledger usage to AWS Marketplace, once, as AWS documents it.

        Only an organisation linked to a Marketplace buyer (``MarketplaceSubscription``) whose
        subscription is active is metered; otherwise usage stays in the ledger only and the result
        says why (``skipped``). Records name the buyer by ``CustomerAWSAccountId``.

        Unmetered ledger entries are grouped per instance type (the dimension) into one batch,
        written to the ledger (a batch, unique per timestamp) before it is sent, in calls
        of at most 25 records. A batch is resent after a crash or a throttle: only the dimensions
        Marketplace has not acknowledged, with the very same records, which AWS documents as
        idempotent (``Success``, counted once). Marketplace answers:

        * ``Success``: acknowledged.
        * ``DuplicateRecord`` (a record with the same customer, dimension and timestamp but a
          *different* quantity was metered before; this one was not honored): a defect. Never
          acknowledged, never resent or carried (that could bill twice): flagged on the batch and
          its entries (``metering_defects``), logged as an error, counted
          (``bridgehead_metering_defects``) and shown by the report, for an operator to settle.
        * ``CustomerNotSubscribed``: metering of the organisation stops (state ``NOT_SUBSCRIBED``
          until ``subscribe-success``) and the admin is told (``notice``); the batch waits.
        * ``UnprocessedRecords``: throttled, resent next call.

        Marketplace refuses usage six hours old or more: a batch is resent until ``RESEND_WINDOW``,
        then its unacknowledged rest is carried into the next new batch (late, never lost), and a
        batch older than ``MARKETPLACE_LIMIT`` is never sent.
        """
        bind_subject(org_id=req.org_id)
        link = self.registry.marketplace(req.org_id)
        tally = MeterUsageResult(sent=0, already_sent=0, unprocessed=0)
        if link is None:
            tally.skipped = "no AWS Marketplace link (MarketplaceSubscription): usage is kept in the ledger only"
            return tally
        if link.get("state") not in METERING_STATES:
            tally.skipped = f"AWS Marketplace subscription is {link.get('state')}: usage is kept in the ledger only"
            return tally
        now = self.clock()
        with self._lease(req.org_id):
            # Only the ledger's two small indexes are read (activities/ledger.py): a tick costs the
            # same after years of usage as after an hour.
            self.ledger.index_once(req.org_id)
            batches = self._open_batches(req.org_id)
            for batch in [b for b in batches if b.get("status") == "PENDING"]:
                age = now - _batch_time(batch)
                if age < MARKETPLACE_LIMIT:
                    self._send(req.org_id, link, batch, tally)
                    if tally.not_subscribed:
                        return tally
                if batch["status"] == "PENDING" and age >= RESEND_WINDOW:
                    self._expire(req.org_id, batch, tally)
            new = self._new_batch(req.org_id, link, now, batches, tally)
            if new is not None:
                self._send(req.org_id, link, new, tally)
        return tally

    @contextmanager
    def _lease(self, org_id: str) -> Iterator[None]:
        """One metering attempt per organisation at a time (an attempt that outlived its timeout
        must not batch the same entries as its retry). Held for the attempt's start-to-close
        timeout at most, so a crashed attempt never blocks its retry for longer."""
        info = activity.info()
        me = f"{info.workflow_id}/{info.activity_id}/{info.attempt}"
        now = datetime.now(UTC)
        expires = now + (info.start_to_close_timeout or timedelta(minutes=5))
        if not self.ledger.take_lease(org_id, me, now, expires):
            held = self.ledger.lease(org_id)
            raise ApplicationError(
                f"another metering attempt for this organisation is running ({held.get('lease_holder')}, "
                f"until {held.get('lease_expires')}); retrying",
                type="MeteringBusy",
            )
        try:
            yield
        finally:
            self.ledger.release_lease(org_id, me)

    def _open_batches(self, org_id: str) -> list[dict[str, Any]]:
        """The open batches; a batch a crash left in the open index after it was settled (sent,
        flagged, or its expired rest carried by a batch written since) is dropped from it now."""
        opened = self.ledger.open_batches(org_id)
        claimed = {sk for b in opened for sk in b.get("carries", [])}
        keep = []
        for b in opened:
            carrying = b.get("status") == "EXPIRED" and b.get("carry") and b["sk"] not in claimed
            if b.get("status") == "PENDING" or carrying:
                keep.append(b)
            else:
                self.ledger.close_batch(org_id, b["sk"])
        return keep

    def _new_batch(
        self,
        org_id: str,
        link: dict[str, Any],
        now: datetime,
        batches: list[dict[str, Any]],
        tally: MeterUsageResult,
    ) -> dict[str, Any] | None:
        """The batch for every entry and carry no batch holds yet (from the open ``batches`` and
        the unmetered index), written before it is sent; the carries it takes leave the index.

        Entries of periods before the organisation was linked are never metered (the buyer had
        not subscribed then); they leave the index, and the report lists them as not metered."""
        held = {sk for b in batches for sk in b.get("entries", [])}
        claimed = {sk for b in batches for sk in b.get("carries", [])}
        linked_hour = billing.floor_hour(datetime.fromisoformat(link["linked_at"])).isoformat()
        entries = []
        for e in self.ledger.unmetered(org_id):
            if e["period_start"] < linked_hour:
                self.ledger.forget_unmetered(org_id, e["entry"])
            elif e["entry"] not in held:
                entries.append(e)
        carries = [
            b
            for b in batches
            if b.get("status") == "EXPIRED" and b.get("carry") and b["sk"] not in claimed
        ]
        qty: dict[str, int] = defaultdict(int)
        for e in entries:
            for t, minutes in e["lines"].items():
                qty[t] += int(minutes)
        for b in carries:
            for t, minutes in b["carry"].items():
                qty[t] += int(minutes)
        if not qty:
            return None
        stamp = now.astimezone(UTC).replace(microsecond=0)
        batch = {
            "hour": stamp.isoformat(),
            "status": "PENDING",
            "quantities": dict(qty),
            "entries": [e["entry"] for e in entries],
            "carries": [b["sk"] for b in carries],
            "acked": [],
            "customer_aws_account_id": link["customer_aws_account_id"],
        }
        written = self.ledger.add_batch(org_id, stamp, batch)
        if written is None:
            # This clock hour has its batch: the rest waits for the next hour, never a second
            # record for the same hour (Marketplace would refuse it as DuplicateRecord).
            tally.deferred = sum(qty.values())
            return None
        for b in carries:
            self.ledger.close_batch(org_id, b["sk"])
        return written

    def _send(
        self, org_id: str, link: dict[str, Any], batch: dict[str, Any], tally: MeterUsageResult
    ) -> None:
        """Send a batch's unacknowledged, non-defective dimensions (at most ``MAX_RECORDS`` per
        call); settle it once every dimension is acknowledged or flagged."""
        stamp = _batch_time(batch)
        acked = set(batch.get("acked") or [])
        defects: dict[str, str] = dict(batch.get("defects") or {})
        # Batches written before the link existed named no account: they bill the linked buyer.
        account = batch.get("customer_aws_account_id") or link["customer_aws_account_id"]
        records = [
            {
                "Timestamp": stamp,
                "CustomerAWSAccountId": account,
                "Dimension": _dimension(t),
                "Quantity": int(q),
            }
            for t, q in sorted(batch["quantities"].items())
            if _dimension(t) not in acked and _dimension(t) not in defects and int(q) > 0
        ]
        for chunk in [records[i : i + MAX_RECORDS] for i in range(0, len(records), MAX_RECORDS)]:
            with aws_errors("meteringmarketplace:BatchMeterUsage"):
                resp = self.aws.platform("meteringmarketplace").batch_meter_usage(
                    UsageRecords=chunk, ProductCode=self.aws.settings.marketplace_product_code
                )
            for r in resp.get("Results", []):
                dim, status = r["UsageRecord"]["Dimension"], r.get("Status")
                if status in ACKNOWLEDGED:
                    acked.add(dim)
                    tally.sent += 1
                elif status == "DuplicateRecord":
                    defects[dim] = "DuplicateRecord"
                    tally.defects += 1
                    tally.messages.append(
                        f"{dim} at {stamp.isoformat()}: DuplicateRecord (Marketplace holds a different quantity "
                        "for this customer, dimension and time; not honored, flagged for an operator)"
                    )
                    metrics.count(
                        "bridgehead_metering_defects", kind="DuplicateRecord", dimension=dim
                    )
                    log.error(
                        "Marketplace refused a usage record as DuplicateRecord: a different quantity was metered "
                        "for the same customer, dimension and timestamp",
                        batch=batch["sk"],
                        dimension=dim,
                        quantity=r["UsageRecord"].get("Quantity"),
                    )
                elif status == "CustomerNotSubscribed":
                    tally.unprocessed += 1
                    tally.not_subscribed = True
                    tally.messages.append(f"{dim} at {stamp.isoformat()}: CustomerNotSubscribed")
                else:
                    tally.unprocessed += 1
                    tally.messages.append(f"{dim} at {stamp.isoformat()}: {status}")
            for r in resp.get("UnprocessedRecords", []):
                tally.unprocessed += 1
                tally.transient += 1
                tally.messages.append(
                    f"{r.get('Dimension')} at {stamp.isoformat()}: unprocessed, will retry"
                )
            if tally.not_subscribed:
                break
        changes: dict[str, Any] = {}
        if acked != set(batch.get("acked") or []):
            changes["acked"] = sorted(acked)
        if defects != dict(batch.get("defects") or {}):
            changes["defects"] = defects
        if changes:
            self.ledger.update_batch(org_id, batch["sk"], changes)
            batch.update(changes)
        if tally.not_subscribed:
            self._stop_metering(org_id, link, tally)
            return
        dims = {_dimension(t) for t, q in batch["quantities"].items() if int(q) > 0}
        if dims <= acked | set(defects):
            status = "DEFECT" if defects else "SENT"
            # Entries first, the batch last: a batch leaves PENDING only once no entry of its is
            # left in the unmetered index (a crash in between resends, which AWS counts once).
            for sk in batch.get("entries", []):
                flags: dict[str, Any] = {"metered": not defects, "metered_in": batch["sk"]}
                if defects:
                    flags["metering_defects"] = sorted(defects)
                self.ledger.settle_entry(org_id, sk, flags)
            self.ledger.update_batch(
                org_id, batch["sk"], {"status": status, "sent_at": self.clock().isoformat()}
            )
            self.ledger.close_batch(org_id, batch["sk"])
            batch["status"] = status

    def _stop_metering(self, org_id: str, link: dict[str, Any], tally: MeterUsageResult) -> None:
        """Marketplace says the buyer is not subscribed: stop metering this org and tell its admin."""
        at = self.clock()
        reason = "AWS Marketplace answered CustomerNotSubscribed to a usage record"
        moved = self.registry.set_marketplace_state(
            org_id,
            MarketplaceState.NOT_SUBSCRIBED,
            reason,
            at,
            only_from=[s.value for s in METERING_STATES],
        )
        log.warning(
            "metering stopped: the Marketplace buyer is not subscribed",
            customer_aws_account_id=link["customer_aws_account_id"],
        )
        org = self.registry.org_item(org_id) or {}
        if moved and org.get("admin_email"):
            tally.notice = MeteringNotice(
                to=org["admin_email"],
                subject=f"Bridgehead: AWS Marketplace metering stopped for {org_id}",
                body=(
                    f"AWS Marketplace refused usage of organisation {org_id} (CustomerNotSubscribed: the subscription of "
                    f"AWS account {link['customer_aws_account_id']} is not active). Usage is still recorded in the ledger; "
                    "metering resumes when the subscription is active again (subscribe-success)."
                ),
                idempotency_key=f"mp-not-subscribed-{org_id}-{at.isoformat()}",
            )

    def _expire(self, org_id: str, batch: dict[str, Any], tally: MeterUsageResult) -> None:
        """Too old for Marketplace: keep what it acknowledged, carry the rest into the next batch."""
        acked = set(batch.get("acked") or [])
        carry = {
            t: int(q)
            for t, q in batch["quantities"].items()
            if _dimension(t) not in acked and int(q) > 0
        }
        # Entries first (as in _send), then one write: the status and the carry together, so a
        # crash cannot carry it twice or lose it. The batch stays open until a batch carries it.
        for sk in batch.get("entries", []):
            self.ledger.settle_entry(org_id, sk, {"metered": True, "metered_in": batch["sk"]})
        expired = {"status": "EXPIRED", "carry": carry, "expired_at": self.clock().isoformat()}
        self.ledger.update_batch(org_id, batch["sk"], expired)
        batch.update(status="EXPIRED", carry=carry)
        if not carry:
            self.ledger.close_batch(org_id, batch["sk"])
        tally.expired += 1
        log.warning(
            "usage batch past the Marketplace window, carried into the next batch",
            batch=batch["sk"],
            carry=carry,
        )


#: Marketplace accepts usage timestamped up to six hours in the past. A batch is resent until it is
#: this old, then sent a last time and the unacknowledged rest carried into a new batch.
RESEND_WINDOW = timedelta(hours=5)
#: Past this age Marketplace would refuse the whole call: the batch is no longer sent, only carried.
MARKETPLACE_LIMIT = timedelta(hours=5, minutes=50)
#: BatchMeterUsage takes at most 25 usage records per call (AWS Marketplace Metering API reference).
MAX_RECORDS = 25
#: The only answer that acknowledges a record. ``DuplicateRecord`` does not: Marketplace holds a
#: *different* quantity for that customer, dimension and time (an identical resend is a Success).
ACKNOWLEDGED = frozenset({"Success"})


def _dimension(instance_type: str) -> str:
    return f"node-minutes.{instance_type}"


def _batch_time(batch: dict[str, Any]) -> datetime:
    """The batch's record timestamp (``hour``: batches before carry-over were hourly)."""
    return datetime.fromisoformat(batch["hour"]).astimezone(UTC)
