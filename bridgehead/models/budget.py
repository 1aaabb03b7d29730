"""An organisation's monthly budget: the update ``set_budget`` and what the meter learns from the
ledger each hour."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from bridgehead.models.common import Model, OrgId

BudgetAction = Literal["notify", "stop"]


class SetBudgetInput(Model):
    """Update ``set_budget`` of ``OnboardOrganization``.

    Attributes:
        monthly_budget_usd: Spend per calendar month (UTC) the organisation allows; None removes
            the budget.
        budget_action: At 100 %: ``notify`` (tell the admin, refuse new clusters) or ``stop``
            (also stop, or delete where storage is not kept, every running cluster, each
            announced with its grace period).
    """

    monthly_budget_usd: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)] | None
    budget_action: BudgetAction = "notify"


class SetOrgBudgetInput(SetBudgetInput):
    """Activity ``set_org_budget``: the budget written to the organisation's registry record."""

    org_id: OrgId


class BudgetStatus(Model):
    """The month's spend against the budget (``close_billing_periods`` returns it)."""

    month: str
    spent_usd: Decimal
    monthly_budget_usd: Decimal
    budget_action: BudgetAction
    #: Highest threshold reached: 0, 80 or 100.
    level: int
    admin_email: str = ""
    #: Clusters RUNNING now (what a ``stop`` budget acts on).
    running: list[str] = Field(default_factory=list)
