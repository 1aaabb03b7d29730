"""Pure rules of an organisation's monthly budget (no I/O, no clock): the threshold reached, and
whether a new cluster fits in what is left of the month. Money as in bridgehead/billing.py:
Decimal, rounded to the cent, half up, only where a price is computed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bridgehead import billing

#: Thresholds (percent of the monthly budget) that are acted on: notify at 80; at 100 refuse new
#: clusters and, with ``budget_action`` ``stop``, stop or delete the running ones.
NOTIFY_AT, LIMIT_AT = 80, 100


def month_of(t: datetime) -> str:
    """``YYYY-MM`` of an instant (UTC): the ledger's month."""
    return f"{t.astimezone(UTC):%Y-%m}"


def month_end(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return (
        datetime(t.year + 1, 1, 1, tzinfo=UTC)
        if t.month == 12
        else datetime(t.year, t.month + 1, 1, tzinfo=UTC)
    )


def hours_left(now: datetime) -> Decimal:
    """Hours from ``now`` to the end of its month, to the minute."""
    minutes = int((month_end(now) - now.astimezone(UTC)).total_seconds() // 60)
    return Decimal(minutes) / 60


def level(spent: Decimal, budget: Decimal) -> int:
    """The highest threshold reached (0, 80 or 100)."""
    if spent >= budget:
        return LIMIT_AT
    if spent * 100 >= budget * NOTIFY_AT:
        return NOTIFY_AT
    return 0


def rest_of_month(hourly: Decimal, now: datetime) -> Decimal:
    """What ``hourly`` costs from ``now`` to the end of the month, to the cent."""
    return (hourly * hours_left(now)).quantize(billing.CENT)


def creation_refusal(
    budget: Decimal | None, spent: Decimal, hourly: Decimal, now: datetime
) -> str | None:
    """Why a new cluster costing ``hourly`` is refused, or None (no budget, or it fits)."""
    if budget is None:
        return None
    if spent >= budget:
        return (
            f"budget: the organisation has spent ${spent} of its ${budget} monthly budget "
            f"({month_of(now)}); no new cluster until next month or a higher budget (set_budget)"
        )
    rest, left = rest_of_month(hourly, now), budget - spent
    if rest > left:
        return (
            f"budget: this cluster would cost ${rest} for the rest of {month_of(now)} "
            f"({hours_left(now):.1f} h at ${hourly}/h), more than the ${left} left of the "
            f"${budget} monthly budget (${spent} spent)"
        )
    return None
