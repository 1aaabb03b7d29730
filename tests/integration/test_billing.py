"""Ledger and Marketplace metering activities against the moto server: exact node-minutes,
exactly-once under repeated runs (as after a crash between writing and acknowledging)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
