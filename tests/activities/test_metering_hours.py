"""One Marketplace record per customer, dimension and hour (the fake's rule B9: AWS deduplicates
by the hour of a record's timestamp, so a second record of another quantity in the same hour is a
``DuplicateRecord``, never billed). Usage that arrives after this hour's batch waits for the next
hour. Against the real ledger (moto in process); twin: batches keyed by the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities
from activities.ledger import Ledger
from bridgehead import billing
from bridgehead import models as m
from tests.integration.helpers import ledger_org
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("meter_usage",)

ACCOUNT = "252525252525"
T0 = datetime(2026, 11, 5, 14, 0, tzinfo=UTC)


def _usage(ledger: Ledger, org: str, hour: datetime, minutes: int, cluster: str) -> None:
    fields = {
        "period_start": hour.isoformat(),
        "lines": {"t3.medium": minutes},
        "node_minutes": minutes,
        "cost_usd": 0,
        "metered": False,
    }
    assert ledger.add_entry(org, cluster, hour, (hour, hour + billing.PERIOD), fields)


def _two_ticks_in_one_hour(org: str, plant: Any = None) -> tuple[list[Any], FakeMarketplace]:
    """The 14:10 tick meters c1's 13:00 hour; a meter_now at 14:40 finds c2's usage; the 15:10
    tick comes next."""
    now = [T0 + timedelta(minutes=10)]
    aws, reg = ledger_org(org, ACCOUNT)
    link_org(reg, org, ACCOUNT, linked_at=T0 - timedelta(hours=2))
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    acts = BillingActivities(aws, reg, clock=lambda: now[0])
    if plant:
        plant(acts.ledger)
    env, results = ActivityEnvironment(), []
    _usage(acts.ledger, org, T0 - timedelta(hours=1), 60, "c1")
    results.append(env.run(acts.meter_usage, m.MeterUsageInput(org_id=org)))
    now[0] = T0 + timedelta(minutes=40)
    _usage(acts.ledger, org, T0 - timedelta(hours=1), 25, "c2")
    results.append(env.run(acts.meter_usage, m.MeterUsageInput(org_id=org)))
    now[0] = T0 + timedelta(hours=1, minutes=10)
    results.append(env.run(acts.meter_usage, m.MeterUsageInput(org_id=org)))
    return results, market


def test_usage_after_this_hours_batch_waits_for_the_next_hour(in_process_aws):
    (first, second, third), market = _two_ticks_in_one_hour("hourco")
    assert (first.sent, second.sent, second.deferred, third.sent) == (1, 0, 25, 1)
    assert [r.defects for r in (first, second, third)] == [0, 0, 0]
    assert market.totals() == {"node-minutes.t3.medium": 85}
    hours = [r["Timestamp"].replace(minute=0, second=0) for r in market.accepted]
    assert len(hours) == len(set(hours)) == 2, "one record per dimension and hour"


def test_twin_batches_keyed_by_the_second_lose_usage_as_duplicate_records(in_process_aws):
    """Planted defect: the ledger keys batches by the second (as before), so the 14:40 usage is a
    second 14:xx record of another quantity: refused as DuplicateRecord, and never billed."""

    def per_second(ledger: Ledger) -> None:
        def add_batch(org_id: str, stamp: datetime, fields: dict[str, Any]) -> Any:
            batch = {"pk": f"ORG#{org_id}", "sk": f"METER#{stamp.isoformat()}", **fields}
            marker = {"pk": batch["pk"], "sk": "OPEN#" + batch["sk"], "batch": batch["sk"]}
            ok = ledger.registry.put_new_and_add(batch, None, {}, table=ledger.table, also=[marker])
            return batch if ok else None

        ledger.add_batch = add_batch  # type: ignore[method-assign]

    (first, second, third), market = _two_ticks_in_one_hour("secondco", plant=per_second)
    assert second.defects == 1 and market.totals() == {"node-minutes.t3.medium": 60}
