"""An organisation's monthly budget: the pure rules (thresholds, what fits in the rest of the
month), and BillingMeter acting once per month on 80 % and 100 % across a month roll-over, on the
time-skipping server with fake activities. Each claim has a planted-defect twin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.worker import UnsandboxedWorkflowRunner

from bridgehead import budget
from bridgehead import models as m
from tests.support.meter_fakes import closed, meter_sent
from tests.support.timeskip import serve

# --- pure rules ------------------------------------------------------------------------------------
NOV_28_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # 60 hours left in November


def rule_failures() -> list[str]:
    """Exact expectations of bridgehead/budget.py; the mismatches found."""
    bad = []
    checks: list[tuple[Any, Any]] = [
        (budget.hours_left(NOV_28_NOON), Decimal(60)),
        (budget.hours_left(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)), Decimal("0.5")),
        (budget.level(Decimal("79.99"), Decimal(100)), 0),
        (budget.level(Decimal(80), Decimal(100)), 80),
        (budget.level(Decimal("99.99"), Decimal(100)), 80),
        (budget.level(Decimal(100), Decimal(100)), 100),
        (budget.rest_of_month(Decimal("0.25"), NOV_28_NOON), Decimal("15.00")),
        # $0.25/h for the 60 h left is $15: fits in 15 left, not in 14.99 left
        (budget.creation_refusal(Decimal(100), Decimal(85), Decimal("0.25"), NOV_28_NOON), None),
        (budget.creation_refusal(None, Decimal(1000), Decimal(9), NOV_28_NOON), None),
    ]
    for got, want in checks:
        if got != want:
            bad.append(f"{got!r} != {want!r}")
    over = budget.creation_refusal(Decimal(100), Decimal("85.01"), Decimal("0.25"), NOV_28_NOON)
    if over != (
        "budget: this cluster would cost $15.00 for the rest of 2026-11 (60.0 h at $0.25/h), "
        "more than the $14.99 left of the $100 monthly budget ($85.01 spent)"
    ):
        bad.append(f"over budget: {over!r}")
    spent = budget.creation_refusal(Decimal(100), Decimal(100), Decimal("0.01"), NOV_28_NOON)
    if spent is None or "has spent $100 of its $100 monthly budget (2026-11)" not in spent:
        bad.append(f"budget spent: {spent!r}")
    return bad


def test_budget_rules():
    assert rule_failures() == []


def test_twin_a_price_that_ignores_the_rest_of_the_month_is_caught(monkeypatch):
    monkeypatch.setattr(budget, "hours_left", lambda now: Decimal(1))
    assert any(f.startswith("over budget") for f in rule_failures())


def test_twin_notify_at_90_is_caught(monkeypatch):
    monkeypatch.setattr(budget, "NOTIFY_AT", 90)
    assert "0 != 80" in rule_failures()


# --- the meter across a month roll-over -------------------------------------------------------------
BUDGET = Decimal(48)  # spend $1 an hour: 80 % after 38.4 h, 100 % after 48 h


async def chain_events(client: Any, wf_id: str, run_id: str | None) -> list[Any]:
    """Events of every run of a workflow, following continue-as-new (the meter continues as new
    every TICKS_PER_RUN ticks)."""
    out: list[Any] = []
    while run_id:
        hist = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        out.extend(hist.events)
        last = hist.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return out


async def meter_scenario(env, runner=None) -> list[str]:
    """Start three days before the end of next month; spend $1/h from the start, then from each
    month's start. Expected: one email at 80 % and one at 100 % in each month, and at 100 % the
    running cluster signalled (``budget_action`` ``stop``), once per month.

    Three days (72 h) whatever the month's length: the 27th, as before, left 48 h in a February of
    28 days, so run in January the 100 % of the first month came only with its last hour."""
    now = await env.get_current_time()
    start = budget.month_end(budget.month_end(now)) - timedelta(days=3)
    await env.sleep(start - now)
    m1, m2 = budget.month_of(start), budget.month_of(budget.month_end(start))
    org = f"bud{uuid.uuid4().hex[:6]}"
    keys: list[str] = []

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        # As activities/budget.py::closed_month_budget: the month of the last hour closed, and
        # nothing running in a month that is over.
        last = req.until - timedelta(microseconds=1)
        since = max(start, datetime(last.year, last.month, 1, tzinfo=UTC))
        spent = Decimal(int((req.until - since).total_seconds() // 3600))
        month = budget.month_of(last)
        budget_status = m.BudgetStatus(
            month=month,
            spent_usd=spent,
            monthly_budget_usd=BUDGET,
            budget_action="stop",
            level=budget.level(spent, BUDGET),
            admin_email="admin@x.io",
            running=["c1"] if month == budget.month_of(req.until) else [],
        )
        return closed(req, cost=1, budget=budget_status)

    @activity.defn(name="notify")
    def notify(req: m.NotifyInput) -> bool:
        keys.append(req.idempotency_key)
        return True

    async with serve(env, [close_billing_periods, meter_sent, notify], runner=runner) as w:
        h = await w.start_meter(org)
        end = budget.month_end(start) + timedelta(hours=50)
        await env.sleep(end - await env.get_current_time())
        usage = await h.query("usage", result_type=m.UsageTotals)
        events = await chain_events(env.client, h.id, h.result_run_id)
        await h.terminate("test finished")
    bad = []
    want = [f"billing-{org}/budget/{mo}/{lv}" for mo in (m1, m2) for lv in (80, 100)]
    if keys != want:
        bad.append(f"emails {keys}, expected {want}")
    signals = [
        e.signal_external_workflow_execution_initiated_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    ]
    got = [(s.workflow_execution.workflow_id, s.signal_name) for s in signals]
    if got != [(f"cluster-{org}-c1", "budget_exceeded")] * 2:
        bad.append(f"signals {got}")
    if (usage.budget_month, usage.budget_level) != (m2, 100):
        bad.append(f"carried {usage.budget_month} {usage.budget_level}")
    return bad


async def test_meter_notifies_at_80_and_stops_at_100_once_per_month_across_the_roll_over(ts_env):
    assert await meter_scenario(ts_env) == []


async def test_twin_a_meter_that_never_resets_the_month_is_caught(ts_env, monkeypatch):
    import workflows.billing as meter
    from workflows._budget import act_on_budget

    async def no_roll_over(org_id, totals, b):
        month = totals.budget_month or b.month
        await act_on_budget(org_id, totals, b.model_copy(update={"month": month}))

    monkeypatch.setattr(meter, "act_on_budget", no_roll_over)
    bad = await meter_scenario(ts_env, UnsandboxedWorkflowRunner())
    assert any(b.startswith("emails") for b in bad) and any(b.startswith("signals") for b in bad)
