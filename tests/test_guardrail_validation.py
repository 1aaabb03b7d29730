"""Validation of the guard-rail config: ``auto_stop_idle_minutes`` below the deployment's minimum
is refused by ``validate_cluster`` (exact errors), the minimum itself is accepted (the twin: the
same check passes at the boundary, so it is the minimum and not the field that is refused). And a
customer role from before the CloudWatch grant stays READY (a later-permissions warning)."""

from __future__ import annotations

from types import SimpleNamespace

from temporalio.testing import ActivityEnvironment

from activities.clusters import ClusterActivities
from bridgehead import models as m
from bridgehead.settings import Settings


class NoOrgs:
    def org_item(self, org_id: str) -> None:
        return None


def errors(idle: int) -> list[str]:
    acts = ClusterActivities(SimpleNamespace(settings=Settings(environment="local")), NoOrgs())  # type: ignore[arg-type]
    cfg = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        auto_stop_idle_minutes=idle,
    )
    req = m.ValidateClusterInput(org_id="acme", name="c1", region="us-east-1", config=cfg)
    return ActivityEnvironment().run(acts.validate_cluster, req).errors


def test_idle_minutes_below_the_minimum_are_refused():
    assert errors(14) == [
        "config.auto_stop_idle_minutes: 14 is below the minimum of 15 minutes",
        "org_id: organisation 'acme' is not registered",
    ]


def test_twin_the_minimum_itself_is_accepted():
    assert errors(15) == ["org_id: organisation 'acme' is not registered"]


def test_a_role_from_before_the_cloudwatch_grant_stays_ready_with_a_warning(monkeypatch):
    from tests.test_capacity_units import permission_checks

    checks = permission_checks(monkeypatch, {"cloudwatch:GetMetricStatistics"})
    assert checks == [("permissions", True, False), ("later-permissions", True, True)]


def test_twin_without_the_later_action_an_old_role_fails_permissions(monkeypatch):
    """Planted defect: the CloudWatch grant not listed as later-added. Every organisation that
    onboarded before guard rails would turn ACTION_REQUIRED at its next re-verification."""
    from bridgehead import policies
    from tests.test_capacity_units import permission_checks

    monkeypatch.setattr(
        policies,
        "LATER_ACTIONS",
        {k: v for k, v in policies.LATER_ACTIONS.items() if k != "cloudwatch:GetMetricStatistics"},
    )
    assert permission_checks(monkeypatch, {"cloudwatch:GetMetricStatistics"}) == [
        ("permissions", False, False)
    ]
