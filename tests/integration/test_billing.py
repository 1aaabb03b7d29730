"""Ledger and Marketplace metering activities against the moto server: exact node-minutes,
exactly-once under repeated runs (as after a crash between writing and acknowledging)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.testing import ActivityEnvironment

from activities.aws import Aws
from activities.billing import BillingActivities, ledger_entries
from activities.registry import Registry
from bridgehead import models as m
from bridgehead.settings import get_settings

pytestmark = pytest.mark.integration


def test_ledger_exactly_once_and_metering_once(stack):
    settings = get_settings()
    aws = Aws(settings)
    reg = Registry(aws)
    reg.ensure_tables()
    org = "billco"
    reg.put({"pk": f"ORG#{org}", "sk": "META", "org_id": org, "aws_account_id": "212121212121", "external_id": "bh-x",
             "regions": ["us-east-1"], "state": "READY", "marketplace_customer_id": "cust-billco"})  # fmt: skip
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    seg = m.UsageSegment(start=start, end=start + timedelta(hours=3, minutes=17), head_instance_type="t3.medium",
                         compute_instance_type="c5.xlarge", compute_nodes=4)  # fmt: skip
    failed = {"pk": f"ORG#{org}", "sk": "CLUSTER#broken", "name": "broken", "region": "us-east-1", "state": "FAILED", "segments": []}
    reg.put({"pk": f"ORG#{org}", "sk": "CLUSTER#c1", "name": "c1", "region": "us-east-1", "state": "DELETED",
             "segments": [seg.model_dump(mode="json")]})  # fmt: skip
    reg.put(failed)
    acts = BillingActivities(aws, reg)
    env = ActivityEnvironment()
    until = start + timedelta(hours=6)
    first = env.run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=until))
    assert first.entries_written == 4 and first.node_minutes == 197 * 5
    # A retried or replayed tick writes nothing twice, even with billed_through reset (crash before it was saved).
    reg.update(f"ORG#{org}", "CLUSTER#c1", {"billed_through": None})
    again = env.run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=until))
    assert again.entries_written == 0 and again.entries_existing == 4
    entries = ledger_entries(reg, org, "2026-11")
    assert sum(int(e["node_minutes"]) for e in entries) == 985
    assert {e["cluster"] for e in entries} == {"c1"}  # the failed creation costs nothing
    # moto's Marketplace knows no subscribed customer in server mode: records are refused, kept and reported.
    refused = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert refused.sent == 0 and refused.unprocessed == 2 and "CustomerNotSubscribed" in refused.messages[0]
    assert not any(e["metered"] for e in ledger_entries(reg, org))
    # A service-faithful Marketplace (dedupes identical customer/dimension/hour records) for the rest.
    market = FakeMarketplace()
    real_platform = aws.platform
    aws.platform = lambda service, region=None: market if service == "meteringmarketplace" else real_platform(service, region)
    sent = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert sent.sent == 2 and sent.unprocessed == 0  # one record per instance type (dimension)
    resent = env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert resent.sent == 0 and resent.already_sent == 0
    assert all(e["metered"] for e in ledger_entries(reg, org))
    assert sorted((r["Dimension"], r["Quantity"]) for r in market.accepted) == [("node-minutes.c5.xlarge", 788), ("node-minutes.t3.medium", 197)]


class FakeMarketplace:
    def __init__(self) -> None:
        self.accepted: list[dict] = []

    def batch_meter_usage(self, UsageRecords, ProductCode):  # noqa: N803 - boto3's names
        results = []
        for r in UsageRecords:
            key = (r["CustomerIdentifier"], r["Dimension"], r["Timestamp"])
            dup = any((a["CustomerIdentifier"], a["Dimension"], a["Timestamp"]) == key for a in self.accepted)
            if not dup:
                self.accepted.append(r)
            results.append({"UsageRecord": r, "Status": "DuplicateRecord" if dup else "Success"})
        return {"Results": results, "UnprocessedRecords": []}


async def test_meter_crash_between_ledger_write_and_ack_bills_once(ts_env, stack):
    """BillingMeter (time-skipping server) with the real ledger activity against moto: the first
    attempt writes the ledger and then "dies" before acknowledging (its progress marker lost too);
    the retry must find every entry and add nothing, and the meter's totals must equal the ledger."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from temporalio import activity
    from temporalio.worker import Worker

    from bridgehead import billing
    from worker import WORKFLOWS, sandbox_runner

    settings = get_settings()
    aws = Aws(settings)
    reg = Registry(aws)
    reg.ensure_tables()
    org = f"crash{uuid.uuid4().hex[:6]}"
    reg.put({"pk": f"ORG#{org}", "sk": "META", "org_id": org, "aws_account_id": "272727272727", "external_id": "bh-z",
             "regions": ["us-east-1"], "state": "READY"})  # fmt: skip
    now = datetime.now(UTC)
    start = billing.floor_hour(now) - timedelta(hours=5) + timedelta(minutes=7, seconds=12)
    seg = m.UsageSegment(start=start, end=start + timedelta(hours=3, minutes=17), head_instance_type="t3.medium",
                         compute_instance_type="c5.xlarge", compute_nodes=4)  # fmt: skip
    reg.put({"pk": f"ORG#{org}", "sk": "CLUSTER#c1", "name": "c1", "region": "us-east-1", "state": "DELETED",
             "segments": [seg.model_dump(mode="json")]})  # fmt: skip
    real = BillingActivities(aws, reg)
    attempts: list[int] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        result = real.close_billing_periods(req)
        attempts.append(result.entries_written)
        if len(attempts) == 1:
            reg.update(f"ORG#{org}", "CLUSTER#c1", {"billed_through": None})  # the crash lost this too
            raise RuntimeError("worker killed after writing the ledger, before acknowledging the tick")
        return result

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        return m.MeterUsageResult(sent=0, already_sent=0, unprocessed=0)

    tq = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as ex:
        async with Worker(ts_env.client, task_queue=tq, workflows=WORKFLOWS, activities=[close_billing_periods, meter_usage],
                          activity_executor=ex, workflow_runner=sandbox_runner()):  # fmt: skip
            h = await ts_env.client.start_workflow("BillingMeter", m.BillingMeterInput(org_id=org), id=f"billing-{org}", task_queue=tq)
            await ts_env.sleep(timedelta(hours=1, minutes=15))
            usage = await h.query("usage", result_type=m.UsageTotals)
            await h.terminate("test finished")
    assert attempts[0] > 0 and attempts[1] == 0, attempts  # the retry wrote nothing
    entries = ledger_entries(reg, org)
    assert sum(int(e["node_minutes"]) for e in entries) == 197 * 5
    by_type: dict[str, int] = {}
    for e in entries:
        for t, mins in e["lines"].items():
            by_type[t] = by_type.get(t, 0) + int(mins)
    assert by_type == {"t3.medium": 197, "c5.xlarge": 197 * 4}
    assert usage.node_minutes == 197 * 5 and usage.ledger_entries == len(entries)
    assert usage.cost_usd == sum((Decimal(str(e["cost_usd"])) for e in entries), Decimal(0))
    expected = Decimal("0.0416") * 197 / 60 + Decimal("0.17") * 788 / 60  # rates of version 2026-11
    assert abs(usage.cost_usd - expected) <= Decimal("0.01") * len(entries)  # hourly entries round to the cent
