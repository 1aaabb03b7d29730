"""The calendar month's boundary (UTC) in billing, on the real ledger and budget activities with
moto in process: usage that spans the boundary is in both months' reports, each minute exactly
once (closed or still in progress); a spend that reaches the budget in the month's last hour is
acted on for that month (its last hour closes only after the month ended), and the next month
starts from zero. Explicit times throughout: nothing here depends on when the test runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities, billing_report, ledger_entries
from bridgehead import models as m
from tests.integration.helpers import ledger_org

DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
#: The two sides of the boundaries tested: a month's end, and a year's.
BOUNDARIES = [
    (DEC_1, "2026-11", "2026-12"),
    (datetime(2027, 1, 1, tzinfo=UTC), "2026-12", "2027-01"),
]
#: Head (t3.medium, $0.0416/h) and two c5.xlarge ($0.17/h): 3 nodes, $0.38 per closed hour.
NODES = 3


def _running(reg: Any, org: str, start: datetime, end: datetime | None = None) -> None:
    seg = m.UsageSegment(
        start=start,
        end=end,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=NODES - 1,
    )
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "CLUSTER#c1",
            "name": "c1",
            "region": "us-east-1",
            "state": "RUNNING" if end is None else "DELETED",
            "segments": [seg.model_dump(mode="json")],
        }
    )


def _close(acts: BillingActivities, org: str, until: datetime, partial: bool = False) -> Any:
    return ActivityEnvironment().run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=until, partial=partial),
    )


@pytest.mark.parametrize(("edge", "old", "new"), BOUNDARIES, ids=["month", "year"])
def test_usage_spanning_the_month_boundary_is_billed_in_both_months_each_minute_once(
    in_process_aws, edge, old, new
):
    """23:30 on the month's last day to 00:30 on the 1st, with a final metering at 23:45 (a part of
    an hour of its own): the old month holds 30 minutes, the new one 30, every month together 60."""
    org = f"edge{new[:4]}"
    aws, reg = ledger_org(org, "212121212121")
    _running(reg, org, edge - timedelta(minutes=30), edge + timedelta(minutes=30))
    acts = BillingActivities(aws, reg)
    _close(acts, org, edge - timedelta(minutes=15), partial=True)
    _close(acts, org, edge + timedelta(hours=1))
    by_month = {
        month: sum(int(e["node_minutes"]) for e in ledger_entries(reg, org, month))
        for month in (old, new)
    }
    assert by_month == {old: 30 * NODES, new: 30 * NODES}, by_month
    assert sum(int(e["node_minutes"]) for e in ledger_entries(reg, org)) == 60 * NODES
    at = edge + timedelta(hours=2)
    reports = {mo: billing_report(reg, org, mo, at) for mo in (old, new, None)}
    assert [reports[mo].node_minutes for mo in (old, new, None)] == [
        30 * NODES,
        30 * NODES,
        60 * NODES,
    ]
    assert all(not r.in_progress for r in reports.values()), "everything is closed"


def test_an_open_hour_across_the_boundary_is_in_progress_in_its_own_month(in_process_aws):
    """At 00:05 on 1 December the hour 23:00-00:00 is not closed yet (it closes at 00:10): its
    60 minutes are in progress in November's report, the 5 minutes since midnight in December's,
    never the 65 in December's alone; the report of every month shows all 65."""
    org = "openco"
    aws, reg = ledger_org(org, "212121212122")
    _running(reg, org, DEC_1 - timedelta(hours=3))
    _close(BillingActivities(aws, reg), org, DEC_1 - timedelta(hours=1))
    at = DEC_1 + timedelta(minutes=5)
    got = {mo: billing_report(reg, org, mo, at).in_progress for mo in ("2026-11", "2026-12", None)}
    assert got == {
        "2026-11": {"c1": 60 * NODES},
        "2026-12": {"c1": 5 * NODES},
        None: {"c1": 65 * NODES},
    }, got
    # Past and future months see nothing of it.
    assert billing_report(reg, org, "2026-10", at).in_progress == {}
    assert billing_report(reg, org, "2027-01", at).in_progress == {}


def _budget_org(org: str) -> tuple[Any, Any]:
    return ledger_org(
        org,
        "212121212123",
        monthly_budget_usd=Decimal("1.50"),
        budget_action="stop",
        admin_email=f"admin@{org}.example",
    )


@pytest.mark.parametrize(("edge", "old", "new"), BOUNDARIES, ids=["month", "year"])
def test_a_budget_reached_in_the_months_last_hour_is_acted_on_for_that_month(
    in_process_aws, edge, old, new
):
    """$0.38 an hour from 20:00 on the month's last day against $1.50: 80 % is not reached by 23:00
    ($1.14), 100 % is with the month's last hour ($1.52), which the meter closes at 00:10 on the
    1st. That close reports the old month at 100 % (nothing to stop: it is over); the next one
    reports the new month, from zero, with the running cluster."""
    org = f"lasthr{new[:4]}"
    aws, reg = _budget_org(org)
    _running(reg, org, edge - timedelta(hours=4))
    acts = BillingActivities(aws, reg)
    before = _close(acts, org, edge - timedelta(hours=1)).budget
    assert (before.month, before.spent_usd, before.level) == (old, Decimal("1.14"), 0)
    last = _close(acts, org, edge).budget
    assert (last.month, last.spent_usd, last.level, last.running) == (
        old,
        Decimal("1.52"),
        100,
        [],
    ), last
    nxt = _close(acts, org, edge + timedelta(hours=1)).budget
    assert (nxt.month, nxt.spent_usd, nxt.level, nxt.running) == (
        new,
        Decimal("0.38"),
        0,
        ["c1"],
    ), nxt


def test_twin_a_budget_read_at_the_close_instant_never_sees_the_months_last_hour(
    in_process_aws, monkeypatch
):
    """Planted defect: the status of the month of the close's ``until`` (as before): at 00:00 on
    1 December that is December, so November's 100 % is never reported."""
    import activities.billing as billing_activities
    from activities.budget import budget_status

    monkeypatch.setattr(
        billing_activities,
        "closed_month_budget",
        lambda registry, org_id, until, ledger: budget_status(
            registry, org_id, until, ledger=ledger
        ),
    )
    org = "twinhr"
    aws, reg = _budget_org(org)
    _running(reg, org, DEC_1 - timedelta(hours=4))
    acts = BillingActivities(aws, reg)
    _close(acts, org, DEC_1 - timedelta(hours=1))
    last = _close(acts, org, DEC_1).budget
    assert (last.month, last.level) == ("2026-12", 0), "November's 100 % is lost"
