"""Corrections and the report on the real ledger (moto in process): a correction is an entry of its own,
never an edit; accepted Marketplace usage is never re-sent; the report's totals are the ledger's
to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities, ledger_entries
from bridgehead import models as m
from tests.integration.helpers import ledger_org
from tests.support.fake_marketplace import FakeMarketplace, install, link_org

ACTIVITIES = ("record_correction", "billing_report", "close_billing_periods", "meter_usage")

ACCOUNT = "242424242424"
T0 = datetime(2026, 11, 6, 9, 0, tzinfo=UTC)


def _cluster(reg, org: str, name: str, segments: list[m.UsageSegment], **extra) -> None:  # type: ignore[no-untyped-def]
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": f"CLUSTER#{name}",
            "name": name,
            "region": "us-east-1",
            "state": "RUNNING",
            "segments": [s.model_dump(mode="json") for s in segments],
            **extra,
        }
    )


def _seg(start: datetime, end: datetime | None, nodes: int = 2) -> m.UsageSegment:
    return m.UsageSegment(
        start=start,
        end=end,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=nodes,
    )


def _totals(reg, org: str) -> dict:  # type: ignore[no-untyped-def]
    return reg.get(f"ORG#{org}", "TOTALS", table=reg.ledger)


def test_a_credit_is_a_ledger_entry_of_its_own_and_is_never_metered(in_process_aws):
    org, now = "credco", [T0 + timedelta(hours=3, minutes=10)]
    aws, reg = ledger_org(org, ACCOUNT)
    link_org(reg, org, ACCOUNT)
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    acts = BillingActivities(aws, reg, clock=lambda: now[0])
    env = ActivityEnvironment()
    _cluster(reg, org, "c1", [_seg(T0, T0 + timedelta(hours=2))])
    env.run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=now[0]))
    assert env.run(acts.meter_usage, m.MeterUsageInput(org_id=org)).sent == 2
    before = [dict(e) for e in ledger_entries(reg, org)]
    totals = _totals(reg, org)
    fix = m.CorrectInput(
        cluster="c1",
        period=T0,
        node_minutes_delta=-30,
        instance_type="c5.xlarge",
        reason="one node was never in service",
    )
    rec = m.RecordCorrectionInput(
        org_id=org, correction_id="upd-1", correction=fix, requested_at=now[0]
    )
    res = env.run(acts.record_correction, rec)
    assert (res.original_node_minutes, res.net_node_minutes, res.metered) == (120, 90, True)
    assert res.cost_usd_delta == Decimal("-0.09")  # 0.17 * 30 / 60 = 0.085, half away from zero
    again = env.run(acts.record_correction, rec)  # a retried update
    assert again == res
    after = _totals(reg, org)
    assert (
        int(after["node_minutes"]) == int(totals["node_minutes"]) - 30
        and int(after["corrections"]) == 1
    )
    assert Decimal(str(after["cost_usd"])) == Decimal(str(totals["cost_usd"])) - Decimal("0.09")
    assert ledger_entries(reg, org) == before, "no entry changed or deleted"
    # Over-crediting is refused, naming what is left.
    too_much = rec.model_copy(
        update={
            "correction_id": "upd-2",
            "correction": fix.model_copy(update={"node_minutes_delta": -91}),
        }
    )
    with pytest.raises(ApplicationError) as e:
        env.run(acts.record_correction, too_much)
    assert "credit at most 90" in str(e.value) and e.value.non_retryable
    # Marketplace already took the usage: nothing is re-sent, the credit is reported instead.
    calls = len(market.calls)
    now[0] += timedelta(hours=1)
    env.run(acts.meter_usage, m.MeterUsageInput(org_id=org))
    assert len(market.calls) == calls
    report = env.run(
        acts.billing_report, m.BillingReportInput(org_id=org, month="2026-11", now=now[0])
    )
    (line,) = [x for x in report.lines if x.instance_type == "c5.xlarge"]
    assert (line.node_minutes, line.corrections_node_minutes, line.net_node_minutes) == (
        240,
        -30,
        210,
    )
    assert line.net_usd == line.cost_usd - Decimal("0.09")
    assert (
        report.credits
        and "one node was never in service" in report.credits[0]
        and "$0.09" in report.credits[0]
    )
    assert report.net_usd == Decimal(str(after["cost_usd"])), "the report's net is the ledger's"


def test_report_totals_equal_the_ledger_to_the_cent_and_show_the_open_hour(in_process_aws):
    """Many short periods whose cents round differently one by one than summed: the report adds
    the ledger's own line costs, so its total is the ledger's exactly; the open hour is in progress."""
    org = "centco"
    aws, reg = ledger_org(org, ACCOUNT)
    acts = BillingActivities(aws, reg)
    env = ActivityEnvironment()
    # Three 2-minute runs of one c5.xlarge compute node plus head, in three hours: each hour's
    # compute line is 0.17 * 2 / 60 = 0.00567 -> $0.01, so the ledger says $0.03 where the minutes
    # summed first (6 min -> 0.017) would say $0.02.
    segs = [
        _seg(T0 + timedelta(hours=h), T0 + timedelta(hours=h, minutes=2), nodes=1) for h in range(3)
    ]
    _cluster(reg, org, "short", segs, state="DELETED")
    running_since = T0 + timedelta(hours=4)
    _cluster(reg, org, "long", [_seg(running_since, None, nodes=2)])
    now = T0 + timedelta(hours=6, minutes=25)
    env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=now - timedelta(minutes=10)),
    )
    report = env.run(acts.billing_report, m.BillingReportInput(org_id=org, now=now))
    ledger = ledger_entries(reg, org)
    ledger_total = sum((Decimal(str(e["cost_usd"])) for e in ledger), Decimal(0))
    assert report.cost_usd == ledger_total == Decimal(str(_totals(reg, org)["cost_usd"]))
    (short,) = [x for x in report.lines if x.cluster == "short" and x.instance_type == "c5.xlarge"]
    assert short.node_minutes == 6 and short.cost_usd == Decimal("0.03")
    assert report.node_minutes == sum(int(e["node_minutes"]) for e in ledger)
    assert report.in_progress == {"long": 25 * 3}, (
        "the open hour: 25 minutes of head + 2 compute nodes so far"
    )
    assert report.not_metered and all("no AWS Marketplace link" in x for x in report.not_metered)


def test_a_final_metering_closes_part_of_an_hour_and_the_rest_later_exactly_once(in_process_aws):
    """unsubscribe-pending at 11:25: usage up to 11:25 is closed and metered at once; the tick at
    12:10 closes 11:25-12:00; together they are the hour, each minute once."""
    org, now = "partco", [T0 + timedelta(hours=2, minutes=25)]
    aws, reg = ledger_org(org, ACCOUNT)
    link_org(reg, org, ACCOUNT, state="UNSUBSCRIBE_PENDING")
    market = FakeMarketplace(subscribed={ACCOUNT}, clock=lambda: now[0])
    install(aws, market)
    acts = BillingActivities(aws, reg, clock=lambda: now[0])
    env = ActivityEnvironment()
    _cluster(reg, org, "c1", [_seg(T0, None, nodes=1)])
    env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=now[0], partial=True),
    )
    again = env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=now[0], partial=True),
    )
    assert again.entries_written == 0
    assert env.run(acts.meter_usage, m.MeterUsageInput(org_id=org)).sent == 2
    assert market.totals() == {"node-minutes.t3.medium": 145, "node-minutes.c5.xlarge": 145}
    now[0] = T0 + timedelta(hours=3, minutes=10)
    env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=now[0] - timedelta(minutes=10)),
    )
    by_hour: dict[str, int] = {}
    for e in ledger_entries(reg, org):
        by_hour[e["period_start"]] = by_hour.get(e["period_start"], 0) + int(
            e["lines"]["c5.xlarge"]
        )
    assert by_hour == {
        T0.isoformat(): 60,
        (T0 + timedelta(hours=1)).isoformat(): 60,
        (T0 + timedelta(hours=2)).isoformat(): 60,
    }


def test_entries_written_before_line_costs_still_add_up_to_the_ledger(in_process_aws):
    """An entry priced by the old rule (the sum rounded once): 1 min of c5.xlarge and 4 of t3.medium
    are $0.0056 -> $0.01, while each line rounds to $0.00. The report keeps the ledger's cent."""
    org = "legacyco"
    aws, reg = ledger_org(org, ACCOUNT)
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": f"PERIOD#{T0.isoformat()}#old",
            "cluster": "old",
            "period_start": T0.isoformat(),
            "lines": {"c5.xlarge": 1, "t3.medium": 4},
            "node_minutes": 5,
            "cost_usd": Decimal("0.01"),
            "rates": {"c5.xlarge": Decimal("0.17"), "t3.medium": Decimal("0.0416")},
            "metered": False,
        },
        table=reg.ledger,
    )
    report = ActivityEnvironment().run(
        BillingActivities(aws, reg).billing_report,
        m.BillingReportInput(org_id=org, now=T0 + timedelta(hours=2)),
    )
    assert report.cost_usd == Decimal("0.01") and sum(x.cost_usd for x in report.lines) == Decimal(
        "0.01"
    )
