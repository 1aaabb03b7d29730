"""Billing: the meter, ledger periods and Marketplace metering."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
)

from bridgehead.models.common import Model, OrgId


class BillingMeterInput(Model):
    """Input of ``BillingMeter`` (workflow id ``billing-{org_id}``).

    Attributes:
        org_id: The organisation to meter.
        tick_minutes: Minutes between ledger ticks (a period is one hour; ticks close finished periods).
        cursor: Internal: the first period not yet closed (set by continue-as-new).
        totals: Internal: running totals carried across continue-as-new.
        stopping: Internal: a ``stop`` signal not yet carried out (kept across continue-as-new).
    """

    org_id: OrgId
    tick_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    cursor: datetime | None = None
    totals: UsageTotals | None = None
    stopping: bool = False


class UsageLine(Model):
    cluster: str
    instance_type: str
    node_minutes: int
    cost_usd: Decimal


class UsageTotals(Model):
    node_minutes: int = 0
    cost_usd: Decimal = Decimal("0")
    periods_closed: int = 0
    ledger_entries: int = 0
    metered_records: int = 0
    unprocessed_records: int = 0
    last_tick: datetime | None = None


class CloseBillingPeriodsInput(Model):
    org_id: OrgId
    #: Close every whole hour that ended at or before this instant (minus the grace period).
    until: datetime
    #: The meter is stopping (offboarding): close the current hour too. Refused while any cluster
    #: is still running, since its usage would otherwise be billed ahead of time.
    final: bool = False


class CloseBillingPeriodsResult(Model):
    entries_written: int
    entries_existing: int
    node_minutes: int
    cost_usd: Decimal
    closed_until: datetime
    #: The organisation's ledger totals after this call (kept exactly once, in the same
    #: transactions as the entries). None from workers older than these fields.
    ledger_node_minutes: int | None = None
    ledger_cost_usd: Decimal | None = None
    ledger_entries: int | None = None


class MeterUsageInput(Model):
    org_id: OrgId


class MeterUsageResult(Model):
    sent: int
    already_sent: int
    #: Records not acknowledged this call (refused, e.g. CustomerNotSubscribed, or unprocessed).
    unprocessed: int
    messages: list[str] = Field(default_factory=list)
    #: Of ``unprocessed``: records Marketplace returned as UnprocessedRecords (resend soon).
    transient: int = 0
    #: Batches past Marketplace's six-hour window whose unacknowledged usage was carried forward.
    expired: int = 0
