"""The billing ledger (exactly once per (cluster, period)) and AWS Marketplace metering."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
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
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

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

        Records are grouped per instance type (the dimension) into one record per metering hour.
        The batch is written to the ledger (``METER#<hour>``) before it is sent and resent unchanged
        after a crash; Marketplace deduplicates identical (customer, dimension, hour) records, so a
        record is never counted twice. Refused records stay pending and are reported.
        """
        bind_subject(org_id=req.org_id)
        org = self.registry.org(req.org_id)
        customer = org.marketplace_customer_id or f"bh-{req.org_id}"
        pk = f"ORG#{req.org_id}"
        pending = [m for m in self.registry.query(pk, "METER#", table=self.registry.ledger) if m.get("status") != "SENT"]
        if not pending:
            entries = [e for e in self.registry.query(pk, "PERIOD#", table=self.registry.ledger) if not e.get("metered")]
            if not entries:
                return MeterUsageResult(sent=0, already_sent=0, unprocessed=0)
            hour = billing.floor_hour(datetime.now(UTC))
            qty: dict[str, int] = defaultdict(int)
            for e in entries:
                for t, m in e["lines"].items():
                    qty[t] += int(m)
            batch = {"pk": pk, "sk": f"METER#{hour.isoformat()}", "hour": hour.isoformat(), "status": "PENDING",
                     "quantities": dict(qty), "entries": [e["sk"] for e in entries], "customer": customer}  # fmt: skip
            if not self.registry.put(batch, condition="attribute_not_exists(pk)", table=self.registry.ledger):
                batch = self.registry.get(pk, batch["sk"], table=self.registry.ledger) or batch
            pending = [batch]
        sent = already = unprocessed = 0
        messages: list[str] = []
        mm = self.aws.platform("meteringmarketplace")
        for batch in pending:
            hour = datetime.fromisoformat(batch["hour"])
            records = [{"Timestamp": hour, "CustomerIdentifier": batch["customer"], "Dimension": f"node-minutes.{t}", "Quantity": int(q)}
                       for t, q in sorted(batch["quantities"].items())]  # fmt: skip
            with aws_errors("meteringmarketplace:BatchMeterUsage"):
                resp = mm.batch_meter_usage(UsageRecords=records, ProductCode=self.aws.settings.marketplace_product_code)
            ok_dims = set()
            for r in resp.get("Results", []):
                dim = r["UsageRecord"]["Dimension"]
                if r.get("Status") == "Success":
                    sent += 1
                    ok_dims.add(dim)
                elif r.get("Status") == "DuplicateRecord":
                    already += 1
                    ok_dims.add(dim)
                else:
                    unprocessed += 1
                    messages.append(f"{dim} at {hour.isoformat()}: {r.get('Status')}")
            for r in resp.get("UnprocessedRecords", []):
                unprocessed += 1
                messages.append(f"{r.get('Dimension')} at {hour.isoformat()}: unprocessed, will retry")
            if len(ok_dims) == len(records):
                for sk in batch["entries"]:
                    self.registry.update(pk, sk, {"metered": True, "metered_in": batch["sk"]}, table=self.registry.ledger)
                self.registry.update(pk, batch["sk"], {"status": "SENT", "sent_at": datetime.now(UTC).isoformat()}, table=self.registry.ledger)
        return MeterUsageResult(sent=sent, already_sent=already, unprocessed=unprocessed, messages=messages)


def ledger_entries(registry: Registry, org_id: str, month: str | None = None) -> list[dict[str, Any]]:
    """Ledger entries of an org, optionally for one ``YYYY-MM`` (for reports)."""
    prefix = f"PERIOD#{month}" if month else "PERIOD#"
    return registry.query(f"ORG#{org_id}", prefix, table=registry.ledger)


