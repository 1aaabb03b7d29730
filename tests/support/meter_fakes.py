"""Fakes of the BillingMeter's activities (``close_billing_periods``, ``meter_usage``) shared by the
meter's time-skipping tests and the cost measurements; a test with its own behaviour (recording,
refusing, a budget) writes its own fake and builds the answer with :func:`closed` (or
:func:`corrected` for ``record_correction``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from temporalio import activity

from bridgehead import models as m


def closed(
    req: m.CloseBillingPeriodsInput,
    *,
    written: int = 1,
    node_minutes: int = 60,
    cost: Decimal | str | int = "0.04",
    budget: m.BudgetStatus | None = None,
) -> m.CloseBillingPeriodsResult:
    """The answer of a close up to ``req.until`` (default: one entry, an hour of one node)."""
    return m.CloseBillingPeriodsResult(
        entries_written=written,
        entries_existing=0,
        node_minutes=node_minutes,
        cost_usd=Decimal(cost),
        closed_until=req.until,
        budget=budget,
    )


def corrected(req: m.RecordCorrectionInput, *, original: int, net: int) -> m.CorrectResult:
    """The answer of a ``record_correction`` on a period of ``original`` c5.xlarge node-minutes,
    ``net`` after it (a credit of $0.17)."""
    c = req.correction
    return m.CorrectResult(
        correction_id=req.correction_id,
        cluster=c.cluster,
        period=c.period,
        instance_type="c5.xlarge",
        node_minutes_delta=c.node_minutes_delta,
        cost_usd_delta=Decimal("-0.17"),
        original_node_minutes=original,
        net_node_minutes=net,
        metered=True,
    )


@activity.defn(name="close_billing_periods")
def close_an_hour(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
    """Every tick closes one entry: an hour of one node."""
    return closed(req)


@activity.defn(name="close_billing_periods")
def close_nothing(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
    """Nothing ran: no entry, no cost."""
    return closed(req, written=0, node_minutes=0, cost=0)


@activity.defn(name="meter_usage")
def meter_sent(req: m.MeterUsageInput) -> m.MeterUsageResult:
    """Marketplace takes the one record."""
    return m.MeterUsageResult(sent=1, already_sent=0, unprocessed=0)


@activity.defn(name="meter_usage")
def meter_nothing(req: m.MeterUsageInput) -> m.MeterUsageResult:
    """Nothing to send."""
    return m.MeterUsageResult(sent=0, already_sent=0, unprocessed=0)


@activity.defn(name="notify")
def notify_ok(req: m.NotifyInput) -> bool:
    """Every e-mail sent."""
    return True


def steady_meter() -> list[Any]:
    """A meter whose every tick closes an hour of one node and meters it."""
    return [close_an_hour, meter_sent]
