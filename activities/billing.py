"""The billing ledger (exactly once per (cluster, period)) and AWS Marketplace metering."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors
from activities.registry import Registry
from bridgehead import billing, metrics
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    CloseBillingPeriodsInput,
    CloseBillingPeriodsResult,
    MeterUsageInput,
    MeterUsageResult,
    UsageSegment,
)

log = get_logger("bridgehead.activities.billing")


class BillingActivities:
    def __init__(self, aws: Aws, registry: Registry, clock: Callable[[], datetime] | None = None) -> None:
        self.aws = aws
        self.registry = registry
        #: Wall clock of the metering window (a parameter so tests can age batches).
        self.clock = clock or (lambda: datetime.now(UTC))

    @activity.defn
    def close_billing_periods(self, req: CloseBillingPeriodsInput) -> CloseBillingPeriodsResult:
        """Write one ledger entry per (cluster, hourly period) that ended by ``until``.

        Each entry is a conditional put (``attribute_not_exists``): a retry, a replay or a crashed
        worker's second attempt finds it and counts it as existing, never twice. Each cluster keeps
        ``billed_through`` so a tick touches only new periods.
        """
        bind_subject(org_id=req.org_id)
        s = self.aws.settings
        written = existing = minutes_total = 0
        cost_total = Decimal(0)
        until = req.until.astimezone(UTC)
        clusters = self.registry.clusters(req.org_id)
        if req.final:
            running = [c["name"] for c in clusters for x in c.get("segments") or [] if x.get("end") is None]
            if running:
                raise ApplicationError(
                    f"cannot close the final billing period: {', '.join(sorted(set(running)))} still running "
                    "(delete the clusters first; their usage is never billed ahead of time)",
                    type="BillingStillRunning", non_retryable=True,
                )  # fmt: skip
        for c in clusters:
            segments = [UsageSegment.model_validate(x) for x in c.get("segments") or []]
            if not segments:
                continue  # failed or cancelled creations, or not yet running: nothing to bill
            since = datetime.fromisoformat(c["billed_through"]) if c.get("billed_through") else billing.floor_hour(segments[0].start)
            last = since
            for p in billing.periods(segments, since, until):
                lines = billing.node_minutes(segments, p, p + billing.PERIOD, until)
                last = p + billing.PERIOD
                if not lines:
                    continue
                amount = billing.cost(lines, s.rates)
                item = {
                    "pk": f"ORG#{req.org_id}", "sk": f"PERIOD#{p.isoformat()}#{c['name']}", "cluster": c["name"],
                    "region": c.get("region"), "period_start": p.isoformat(), "lines": lines,
                    "node_minutes": sum(lines.values()), "cost_usd": amount, "rate_version": s.rate_version,
                    "rates": {t: s.rates[t] for t in lines},
                    "metered": False, "written_at": datetime.now(UTC).isoformat(),
                }  # fmt: skip
                add = {"node_minutes": item["node_minutes"], "cost_usd": amount, "entries": 1}
                if self.registry.put_new_and_add(item, (f"ORG#{req.org_id}", "TOTALS"), add, table=self.registry.ledger):
                    written += 1
                    for instance_type, minutes in lines.items():
                        metrics.count("bridgehead_billed_node_minutes", int(minutes), instance_type=instance_type)
                    minutes_total += item["node_minutes"]
                    cost_total += amount
                else:
                    existing += 1
            if last > since:
                self.registry.update(f"ORG#{req.org_id}", f"CLUSTER#{c['name']}", {"billed_through": last.isoformat()})
        totals = self.registry.get(f"ORG#{req.org_id}", "TOTALS", table=self.registry.ledger) or {}
        log.info("billing periods closed", written=written, existing=existing, node_minutes=minutes_total)
        return CloseBillingPeriodsResult(entries_written=written, entries_existing=existing, node_minutes=minutes_total,
                                         cost_usd=cost_total, closed_until=until, ledger_node_minutes=int(totals.get("node_minutes", 0)),
                                         ledger_cost_usd=Decimal(str(totals.get("cost_usd", 0))), ledger_entries=int(totals.get("entries", 0)))  # fmt: skip

    @activity.defn
    def meter_usage(self, req: MeterUsageInput) -> MeterUsageResult:
        """Send unmetered ledger usage to AWS Marketplace, once.

        Unmetered ledger entries are grouped per instance type (the dimension) into one batch,
        written to the ledger (``METER#<timestamp>``, unique per batch, since Marketplace treats a
        second record with the same customer, dimension and timestamp as a duplicate) before it is
        sent. A batch is resent after a crash or a refusal: only the dimensions Marketplace has not
        acknowledged, and Marketplace deduplicates those it already took, so a record is never
        counted twice. Marketplace accepts usage up to six hours old: a batch still not fully
        acknowledged after ``RESEND_WINDOW`` is sent one last time and what remains is *carried*
        into the next new batch, so usage can be late but is never lost or sent twice.
        """
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        customer = org.marketplace_customer_id or f"bh-{req.org_id}"
        pk = f"ORG#{req.org_id}"
        now = self.clock()
        tally = MeterUsageResult(sent=0, already_sent=0, unprocessed=0)
        with self._lease(pk):
            batches = self.registry.query(pk, "METER#", table=self.registry.ledger)
            for batch in [b for b in batches if b.get("status") == "PENDING"]:
                age = now - _batch_time(batch)
                if age < MARKETPLACE_LIMIT:
                    self._send(pk, batch, tally)
                if batch["status"] == "PENDING" and age >= RESEND_WINDOW:
                    self._expire(pk, batch, tally)
            batch = self._new_batch(req.org_id, customer, now, batches)
            if batch is not None:
                self._send(pk, batch, tally)
        return tally

    @contextmanager
    def _lease(self, pk: str) -> Iterator[None]:
        """One metering attempt per organisation at a time (an attempt that outlived its timeout
        must not batch the same entries as its retry). Held for the attempt's start-to-close
        timeout at most, so a crashed attempt never blocks its retry for longer."""
        info = activity.info()
        me = f"{info.workflow_id}/{info.activity_id}/{info.attempt}"
        now = datetime.now(UTC)
        expires = now + (info.start_to_close_timeout or timedelta(minutes=5))
        item = {"pk": pk, "sk": "METER-LEASE", "lease_holder": me, "lease_expires": expires.isoformat()}
        if not self.registry.put(item, condition="attribute_not_exists(pk) OR lease_expires < :now OR lease_holder = :me",
                                 values={":now": now.isoformat(), ":me": me}, table=self.registry.ledger):  # fmt: skip
            held = self.registry.get(pk, "METER-LEASE", table=self.registry.ledger) or {}
            raise ApplicationError(f"another metering attempt for this organisation is running ({held.get('lease_holder')}, "
                                   f"until {held.get('lease_expires')}); retrying", type="MeteringBusy")  # fmt: skip
        try:
            yield
        finally:
            self.registry.put({**item, "lease_expires": datetime.min.replace(tzinfo=UTC).isoformat()},
                              condition="lease_holder = :me", values={":me": me}, table=self.registry.ledger)  # fmt: skip

    def _new_batch(self, org_id: str, customer: str, now: datetime, batches: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The batch for every entry and carry no batch holds yet, written before it is sent."""
        pk = f"ORG#{org_id}"
        unsent = [b for b in batches if b.get("status") != "SENT"]
        held = {sk for b in unsent for sk in b.get("entries", [])}
        claimed = {sk for b in batches for sk in b.get("carries", [])}
        entries = [e for e in self.registry.query(pk, "PERIOD#", table=self.registry.ledger)
                   if not e.get("metered") and e["sk"] not in held]  # fmt: skip
        carries = [b for b in batches if b.get("status") == "EXPIRED" and b.get("carry") and b["sk"] not in claimed]
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
        if stamp.isoformat() in {_batch_time(b).isoformat() for b in batches}:
            return None  # another attempt made a batch this very second; it is sent on the next call
        batch = {"pk": pk, "sk": f"METER#{stamp.isoformat()}", "hour": stamp.isoformat(), "status": "PENDING",
                 "quantities": dict(qty), "entries": [e["sk"] for e in entries], "carries": [b["sk"] for b in carries],
                 "acked": [], "customer": customer}  # fmt: skip
        if not self.registry.put(batch, condition="attribute_not_exists(pk)", table=self.registry.ledger):
            return None
        return batch

    def _send(self, pk: str, batch: dict[str, Any], tally: MeterUsageResult) -> None:
        """Send a batch's unacknowledged dimensions; SENT once every dimension is acknowledged."""
        stamp = _batch_time(batch)
        acked = set(batch.get("acked") or [])
        records = [{"Timestamp": stamp, "CustomerIdentifier": batch["customer"], "Dimension": _dimension(t), "Quantity": int(q)}
                   for t, q in sorted(batch["quantities"].items()) if _dimension(t) not in acked and int(q) > 0]  # fmt: skip
        if records:
            with aws_errors("meteringmarketplace:BatchMeterUsage"):
                resp = self.aws.platform("meteringmarketplace").batch_meter_usage(
                    UsageRecords=records, ProductCode=self.aws.settings.marketplace_product_code)  # fmt: skip
            for r in resp.get("Results", []):
                dim, status = r["UsageRecord"]["Dimension"], r.get("Status")
                if status in ("Success", "DuplicateRecord"):
                    acked.add(dim)
                    if status == "Success":
                        tally.sent += 1
                    else:
                        tally.already_sent += 1
                else:  # CustomerNotSubscribed: kept and resent until the window ends, then carried on
                    tally.unprocessed += 1
                    tally.messages.append(f"{dim} at {stamp.isoformat()}: {status}")
            for r in resp.get("UnprocessedRecords", []):
                tally.unprocessed += 1
                tally.transient += 1
                tally.messages.append(f"{r.get('Dimension')} at {stamp.isoformat()}: unprocessed, will retry")
            if acked != set(batch.get("acked") or []):
                self.registry.update(pk, batch["sk"], {"acked": sorted(acked)}, table=self.registry.ledger)
                batch["acked"] = sorted(acked)
        if all(_dimension(t) in acked for t, q in batch["quantities"].items() if int(q) > 0):
            for sk in batch.get("entries", []):
                self.registry.update(pk, sk, {"metered": True, "metered_in": batch["sk"]}, table=self.registry.ledger)
            self.registry.update(pk, batch["sk"], {"status": "SENT", "sent_at": self.clock().isoformat()}, table=self.registry.ledger)
            batch["status"] = "SENT"

    def _expire(self, pk: str, batch: dict[str, Any], tally: MeterUsageResult) -> None:
        """Too old for Marketplace: keep what it acknowledged, carry the rest into the next batch."""
        acked = set(batch.get("acked") or [])
        carry = {t: int(q) for t, q in batch["quantities"].items() if _dimension(t) not in acked and int(q) > 0}
        # One write: the status and the carry together, so a crash cannot carry it twice or lose it.
        self.registry.update(pk, batch["sk"], {"status": "EXPIRED", "carry": carry, "expired_at": self.clock().isoformat()},
                             table=self.registry.ledger)  # fmt: skip
        batch.update(status="EXPIRED", carry=carry)
        for sk in batch.get("entries", []):
            self.registry.update(pk, sk, {"metered": True, "metered_in": batch["sk"]}, table=self.registry.ledger)
        tally.expired += 1
        log.warning("usage batch past the Marketplace window, carried into the next batch", batch=batch["sk"], carry=carry)


#: Marketplace accepts usage timestamped up to six hours in the past. A batch is resent until it is
#: this old, then sent a last time and the unacknowledged rest carried into a new batch.
RESEND_WINDOW = timedelta(hours=5)
#: Past this age Marketplace would refuse the whole call: the batch is no longer sent, only carried.
MARKETPLACE_LIMIT = timedelta(hours=5, minutes=50)


def _dimension(instance_type: str) -> str:
    return f"node-minutes.{instance_type}"


def _batch_time(batch: dict[str, Any]) -> datetime:
    """The batch's record timestamp (``hour``: batches before carry-over were hourly)."""
    return datetime.fromisoformat(batch["hour"]).astimezone(UTC)


def ledger_entries(registry: Registry, org_id: str, month: str | None = None) -> list[dict[str, Any]]:
    """Ledger entries of an org, optionally for one ``YYYY-MM`` (for reports)."""
    prefix = f"PERIOD#{month}" if month else "PERIOD#"
    return registry.query(f"ORG#{org_id}", prefix, table=registry.ledger)


