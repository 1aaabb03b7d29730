"""Billing: the meter, ledger periods and Marketplace metering."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
)

from bridgehead.models.budget import BudgetStatus
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
    #: At most an hour (Marketplace takes usage up to six hours old, and a batch per hour), and a
    #: divisor of 60 so ticks stay aligned to the hour.
    tick_minutes: Annotated[int, Field(ge=1, le=60)] = 60

    @field_validator("tick_minutes")
    @classmethod
    def _divides_the_hour(cls, v: int) -> int:
        if 60 % v:
            raise ValueError(
                f"must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), not {v}"
            )
        return v

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
    #: Why the last tick sent nothing to Marketplace (no link, subscription not active), if so.
    metering_skipped: str | None = None
    #: DuplicateRecord answers so far (defects flagged in the ledger for an operator).
    metering_defects: int = 0
    #: Corrections recorded through the update ``correct``.
    corrections: int = 0
    #: The month whose budget thresholds were acted on, and the highest level acted on (80, 100).
    budget_month: str | None = None
    budget_level: int = 0


class CloseBillingPeriodsInput(Model):
    org_id: OrgId
    #: Close every whole hour that ended at or before this instant (minus the grace period).
    until: datetime
    #: The meter is stopping (offboarding): close the current hour too. Refused while any cluster
    #: is still running, since its usage would otherwise be billed ahead of time.
    final: bool = False
    #: Close up to ``until`` exactly, the open hour's part included (a final metering before the
    #: buyer's subscription ends: unsubscribe-pending). Unlike ``final``, clusters may still run.
    partial: bool = False


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
    #: The month's spend against the organisation's budget (None: no budget set).
    budget: BudgetStatus | None = None


class MeterUsageInput(Model):
    org_id: OrgId


class MeteringNotice(Model):
    """An email the meter sends the organisation's admin (e.g. metering stopped)."""

    to: str
    subject: str
    body: str
    idempotency_key: str


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
    #: Why nothing was sent (no Marketplace link, subscription not active); usage stays in the ledger.
    skipped: str | None = None
    #: Records Marketplace answered ``DuplicateRecord`` (a different quantity for the same customer,
    #: dimension and timestamp): defects flagged in the ledger, never acknowledged nor resent.
    defects: int = 0
    #: Marketplace answered ``CustomerNotSubscribed``: metering of this organisation stopped.
    not_subscribed: bool = False
    #: An email for the organisation's admin, sent by the workflow (once per key).
    notice: MeteringNotice | None = None
    #: Node-minutes waiting for the next clock hour: this hour already has a batch, and
    #: Marketplace keeps one record per customer, dimension and hour (a second one, with another
    #: quantity, would be refused as ``DuplicateRecord``).
    deferred: int = 0


class CorrectInput(Model):
    """Update ``correct`` of ``BillingMeter``: credit (negative) or add node-minutes to a closed period.

    Attributes:
        cluster: The cluster whose ledger entry is corrected.
        period: Start of the hourly period (UTC, on the hour), e.g. ``2026-11-02T09:00:00Z``.
        node_minutes_delta: Node-minutes to add (negative: a credit). Never zero.
        reason: Why (kept in the ledger and in history).
        instance_type: Which line of the entry; needed only when the entry has several types.
    """

    cluster: str
    period: datetime
    node_minutes_delta: int
    reason: Annotated[str, Field(min_length=3, max_length=500)]
    instance_type: str | None = None


class CorrectResult(Model):
    correction_id: str
    cluster: str
    period: datetime
    instance_type: str
    node_minutes_delta: int
    cost_usd_delta: Decimal
    #: The period's node-minutes of this instance type: as first billed, and after every correction.
    original_node_minutes: int
    net_node_minutes: int
    #: Whether Marketplace already accepted the original usage (then the correction is a credit to
    #: settle outside metering: accepted usage is never re-sent).
    metered: bool


class RecordCorrectionInput(Model):
    org_id: OrgId
    correction_id: str
    correction: CorrectInput
    requested_at: datetime


class BillingReportInput(Model):
    """Input of ``BillingReport`` (workflow id ``report-{org_id}-{month|all}``) and its activity.

    Attributes:
        org_id: The organisation.
        month: ``YYYY-MM``, or every month.
        now: The report's instant (default: when it runs); the open hour is in progress up to it.
    """

    org_id: OrgId
    month: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] | None = None
    now: datetime | None = None


class ReportLine(Model):
    cluster: str
    instance_type: str
    node_minutes: int
    corrections_node_minutes: int = 0
    net_node_minutes: int
    cost_usd: Decimal
    corrections_usd: Decimal = Decimal("0")
    net_usd: Decimal


class BillingReport(Model):
    org_id: OrgId
    month: str | None = None
    lines: list[ReportLine] = Field(default_factory=list)
    node_minutes: int = 0
    corrections_node_minutes: int = 0
    net_node_minutes: int = 0
    cost_usd: Decimal = Decimal("0")
    corrections_usd: Decimal = Decimal("0")
    net_usd: Decimal = Decimal("0")
    #: Node-minutes of the open hours so far, per cluster (not in the ledger yet), within ``month``.
    in_progress: dict[str, int] = Field(default_factory=dict)
    #: Ledger entries Marketplace did not take and why (no link, DuplicateRecord defects...).
    not_metered: list[str] = Field(default_factory=list)
    defects: list[str] = Field(default_factory=list)
    #: Credits owed for corrected usage that Marketplace had already accepted.
    credits: list[str] = Field(default_factory=list)
