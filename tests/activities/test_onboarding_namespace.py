"""Organisation ids are free of each other's hyphen prefixes, because workflow ids join ids with
single hyphens (the security review: ``cluster-acme-prod-db`` is org ``acme``'s cluster
``prod-db`` and org ``acme-prod``'s cluster ``db``; ``org-acme-images`` is acme's ShareImages
and org ``acme-images``'s onboarding). Registration against the registry
(moto in process)."""

from __future__ import annotations

import itertools

from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import Aws
from activities.onboarding import OnboardingActivities
from activities.registry import Registry
from bridgehead import ids
from bridgehead import models as m
from bridgehead.settings import get_settings

ACTIVITIES = ("register_organization",)

_accounts = itertools.count(287000000001)


def _register(acts: OnboardingActivities, org_id: str) -> str | None:
    """Register ``org_id`` (its own new account); None when registered, else the refusal."""
    req = m.RegisterOrgInput(
        org_id=org_id,
        display_name=org_id,
        admin_email=f"admin@{org_id}.example",
        aws_account_id=str(next(_accounts)),
        regions=["us-east-1"],
        registration_token=f"test/{org_id}",
    )
    try:
        ActivityEnvironment().run(acts.register_organization, req)
    except ApplicationError as e:
        return e.message
    return None


def _ambiguous_workflow_ids(registered: list[str]) -> list[tuple[str, str]]:
    """Pairs of registered orgs some of whose workflow ids coincide (cluster names ``db``,
    ``prod-db``, ``x-db``; the per-org workflows), as the registry lets them exist."""

    def workflow_ids(org: str) -> set[str]:
        made = {ids.cluster_workflow_id(org, n) for n in ("db", "prod-db", "x-db", "b-db")}
        made |= {
            ids.org_workflow_id(org),
            ids.images_workflow_id(org),
            ids.verify_workflow_id(org, 1),
        }
        return made | {ids.region_workflow_id(org, "us-east-1")}

    return [
        (a, b)
        for a, b in itertools.combinations(registered, 2)
        if workflow_ids(a) & workflow_ids(b)
    ]


def _register_all(orgs: list[str]) -> tuple[list[str], dict[str, str]]:
    acts = OnboardingActivities(Aws(get_settings()), Registry(Aws(get_settings())))
    acts.registry.ensure_tables()
    registered, refused = [], {}
    for org in orgs:
        why = _register(acts, org)
        if why is None:
            registered.append(org)
        else:
            refused[org] = why
    return registered, refused


def test_no_two_registered_orgs_share_a_workflow_id(in_process_aws):
    registered, refused = _register_all(
        ["nsco", "nsco-prod", "nsco-images", "nscox", "pfx-a-b", "pfx-a", "pfx", "pfx-b"]
    )
    assert registered == ["nsco", "nscox", "pfx-a-b", "pfx-b"], refused
    assert "starts with 'nsco-'" in refused["nsco-prod"], refused
    assert "starts with 'pfx-a-'" in refused["pfx-a"] and "'pfx-a-b'" in refused["pfx-a"], refused
    assert _ambiguous_workflow_ids(registered) == []


def test_the_registry_transaction_itself_refuses_a_racing_prefix(in_process_aws):
    """Two registrations at the same moment both pass the activity's friendly check: the
    transaction's condition checks refuse the second, writing nothing."""
    reg = Registry(Aws(get_settings()))
    reg.ensure_tables()
    fields = {"aws_account_id": "287999999991", "external_id": "bh-race-1"}
    assert reg.register_org("raceco", fields, shared_account=False) is None
    fields = {"aws_account_id": "287999999992", "external_id": "bh-race-2"}
    assert reg.register_org("raceco-prod", fields, shared_account=False) is not None
    assert reg.org_item("raceco-prod") is None and reg.account_claim("287999999992") is None
    fields = {"aws_account_id": "287999999993", "external_id": "bh-race-3"}
    assert reg.register_org("racec", fields, shared_account=False) is None, "not a hyphen prefix"


def test_twin_without_the_prefix_rule_two_orgs_share_workflow_ids(in_process_aws, monkeypatch):
    monkeypatch.setattr(ids, "hyphen_prefixes", lambda org_id: [])
    registered, _ = _register_all(["twinco", "twinco-prod"])
    assert registered == ["twinco", "twinco-prod"]
    assert _ambiguous_workflow_ids(registered) == [("twinco", "twinco-prod")]
