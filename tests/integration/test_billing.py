"""BillingMeter on the time-skipping server with the real ledger activity against the embedded
stack's moto server: a crash between writing the ledger and acknowledging bills once. The ledger
and metering activities themselves are tested in process: tests/activities/test_billing_ledger.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from activities.billing import BillingActivities, ledger_entries
from bridgehead import models as m
from tests.integration.helpers import billed_cluster, ledger_org

pytestmark = pytest.mark.integration


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

    org = f"crash{uuid.uuid4().hex[:6]}"
    aws, reg = ledger_org(org, "272727272727")
    now = datetime.now(UTC)
    start = billing.floor_hour(now) - timedelta(hours=5) + timedelta(minutes=7, seconds=12)
    billed_cluster(reg, org, start, start + timedelta(hours=3, minutes=17), nodes=4)
    real = BillingActivities(aws, reg)
    attempts: list[int] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        result = real.close_billing_periods(req)
        attempts.append(result.entries_written)
        if len(attempts) == 1:
            reg.update(
                f"ORG#{org}", "CLUSTER#c1", {"billed_through": None}
            )  # the crash lost this too
            raise RuntimeError(
                "worker killed after writing the ledger, before acknowledging the tick"
            )
        return result

    @activity.defn(name="meter_usage")
    def meter_usage(req: m.MeterUsageInput) -> m.MeterUsageResult:
        return m.MeterUsageResult(sent=0, already_sent=0, unprocessed=0)

    tq = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as ex:
        async with Worker(
            ts_env.client,
            task_queue=tq,
            workflows=WORKFLOWS,
            activities=[close_billing_periods, meter_usage],
            activity_executor=ex,
            workflow_runner=sandbox_runner(),
        ):
            h = await ts_env.client.start_workflow(
                "BillingMeter", m.BillingMeterInput(org_id=org), id=f"billing-{org}", task_queue=tq
            )
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
    assert abs(usage.cost_usd - expected) <= Decimal("0.01") * len(
        entries
    )  # hourly entries round to the cent
