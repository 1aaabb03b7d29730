"""activities/budget.py against the registry in moto: the budget is written on the organisation's
record (read back by what enforces it), replaced, and removed with None; an organisation that is
not registered is refused and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.budget import BudgetActivities, budget_status
from bridgehead import models as m
from tests.activities.conftest import Platform, run

ACTIVITIES = ("set_org_budget",)

ORG = "acme"


@pytest.fixture
def acts(platform: Platform) -> BudgetActivities:
    platform.ready_org(ORG)
    return BudgetActivities(platform.aws, platform.registry)


def budget(amount: str | None, action: str = "notify") -> m.SetOrgBudgetInput:
    value = Decimal(amount) if amount is not None else None
    return m.SetOrgBudgetInput(org_id=ORG, monthly_budget_usd=value, budget_action=action)  # type: ignore[arg-type]


def test_the_budget_is_set_replaced_and_removed(acts: BudgetActivities, platform: Platform):
    now = datetime(2026, 11, 10, tzinfo=UTC)
    assert budget_status(platform.registry, ORG, now) is None
    run(acts.set_org_budget, budget("48.00"))
    run(acts.set_org_budget, budget("48.00"))  # a retry
    status = budget_status(platform.registry, ORG, now)
    assert status is not None
    assert (status.monthly_budget_usd, status.budget_action, status.spent_usd) == (
        Decimal("48.00"),
        "notify",
        Decimal(0),
    )
    run(acts.set_org_budget, budget("100.50", "stop"))
    item = platform.registry.org_item(ORG)
    assert (item["monthly_budget_usd"], item["budget_action"]) == (Decimal("100.50"), "stop")
    run(acts.set_org_budget, budget(None))
    item = platform.registry.org_item(ORG)
    assert "monthly_budget_usd" not in item and "budget_action" not in item
    assert item["state"] == "READY", "nothing else of the record changes"


def test_an_unregistered_organisation_is_refused(acts: BudgetActivities, platform: Platform):
    req = budget("10").model_copy(update={"org_id": "nobody"})
    with pytest.raises(ApplicationError) as e:
        run(acts.set_org_budget, req)
    assert (e.value.type, e.value.non_retryable) == ("BadInput", True)
    assert "nobody is not registered" in e.value.message
    assert platform.registry.org_item("nobody") is None
