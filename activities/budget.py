"""An organisation's monthly budget: recorded on its registry record by the update ``set_budget``,
and read against the month's ledger by cluster validation and by the meter's hourly close."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.ledger import Ledger
from activities.registry import Registry
from bridgehead import budget
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import BudgetStatus, SetOrgBudgetInput

log = get_logger("bridgehead.activities.budget")


def month_spent(ledger: Ledger, org_id: str, month: str) -> Decimal:
    """What the ledger holds for ``month``: its entries plus its corrections (closed hours only;
    the open hour is billed at the next close)."""
    entries = sum(
        (Decimal(str(e.get("cost_usd", 0))) for e in ledger.entries(org_id, month)), Decimal(0)
    )
    fixes = sum(
        (Decimal(str(c.get("cost_usd_delta", 0))) for c in ledger.corrections(org_id, month)),
        Decimal(0),
    )
    return entries + fixes


def budget_status(
    registry: Registry,
    org_id: str,
    now: datetime,
    org: dict[str, Any] | None = None,
    ledger: Ledger | None = None,
) -> BudgetStatus | None:
    """The month's spend against the organisation's budget, or None when it has none (then the
    ledger is not read at all)."""
    org = org if org is not None else registry.org_item(org_id)
    if not org or org.get("monthly_budget_usd") is None:
        return None
    ledger = ledger or Ledger(registry)
    limit = Decimal(str(org["monthly_budget_usd"]))
    month = budget.month_of(now)
    spent = month_spent(ledger, org_id, month)
    return BudgetStatus(
        month=month,
        spent_usd=spent,
        monthly_budget_usd=limit,
        budget_action=org.get("budget_action", "notify"),
        level=budget.level(spent, limit),
        admin_email=org.get("admin_email", ""),
        running=sorted(c["name"] for c in registry.clusters(org_id) if c.get("state") == "RUNNING"),
    )


def closed_month_budget(
    registry: Registry, org_id: str, until: datetime, ledger: Ledger | None = None
) -> BudgetStatus | None:
    """The budget status after a close up to ``until``: of the month of the last hour closed.

    At 00:00 on the 1st that is the month just ended: its last hour is closed only now, after the
    month, and would otherwise never be held against its budget (a month that reached a threshold
    in its last hour was never told). Nothing is stopped for a month that is over (``running`` is
    empty); the next close reads the new month, from zero."""
    status = budget_status(registry, org_id, until - timedelta(microseconds=1), ledger=ledger)
    if status is not None and status.month != budget.month_of(until):
        status.running = []
    return status


class BudgetActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    @activity.defn
    def set_org_budget(self, req: SetOrgBudgetInput) -> None:
        """Write the budget on the organisation's record (None removes it); idempotent."""
        bind_subject(org_id=req.org_id)
        if self.registry.org_item(req.org_id) is None:
            raise ApplicationError(
                f"organisation {req.org_id} is not registered", type="BadInput", non_retryable=True
            )
        amount = req.monthly_budget_usd
        self.registry.set_org_budget(
            req.org_id,
            {
                "monthly_budget_usd": amount,
                "budget_action": req.budget_action if amount is not None else None,
            },
        )
        log.info("budget set", monthly_budget_usd=str(amount), budget_action=req.budget_action)
