"""``verify_role`` (activities/onboarding.py with activities/verification/) against moto: a role
built from the organisation's artifacts in the customer account passes every check; each defect
made in moto (the External ID condition dropped, an action removed, the node role deleted, the
role in another account) fails its own check naming the fix; an SCP deny reported by the
simulation fails it; throttling is retried, never taken for a failed check. moto has no
``SimulatePrincipalPolicy``: its answer is planted, as AWS gives it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.onboarding import OnboardingActivities
from bridgehead import models as m
from tests.activities.conftest import CUSTOMER, REGION, Planter, Platform, admin, aws_error, run

ACTIVITIES = ("verify_role",)

ORG = "acme"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/BridgeheadAccess"
NODE = f"bridgehead-{ORG}--node-{REGION}"
#: Every check a role that can be assumed goes through, in order (one result each here).
CHECKS = [
    "assume-role",
    "trust-policy-principal",
    "trust-policy-not-principal",
    "trust-policy-not-action",
    "trust-policy-federated",
    "trust-policy-external-id",
    "external-id-required",
    "permissions",
    "excess-grants",
    "node-roles",
    "node-role-grants",
    "regions",
    "functional-validate-template",
    "functional-run-instances",
    "functional-simulation",
]


def simulation(decide: Callable[[str], str] = lambda action: "allowed") -> Callable[..., Any]:
    """AWS's answer to iam:SimulatePrincipalPolicy: ``decide(action)`` for every action asked."""

    def answer(params: dict[str, Any]) -> Any:
        body = params["body"]
        form = parse_qs(body) if isinstance(body, str) else {k: [v] for k, v in body.items()}
        asked = [v[0] for k, v in sorted(form.items()) if k.startswith("ActionNames.member.")]
        results = [
            {"EvalActionName": a, "EvalResourceName": "*", "EvalDecision": decide(a)} for a in asked
        ]
        return AWSResponse("https://iam", 200, {}, None), {
            "EvaluationResults": results,
            "IsTruncated": False,
        }

    return answer


@pytest.fixture
def acts(platform: Platform, new_clients: Planter) -> OnboardingActivities:
    """A registered organisation whose role was created from its artifacts (create-role-for-me)."""
    new_clients("iam", "SimulatePrincipalPolicy", simulation())
    acts = OnboardingActivities(platform.aws, platform.registry)
    req = m.RegisterOrgInput(
        org_id=ORG,
        display_name="Acme",
        admin_email="admin@acme.example",
        aws_account_id=CUSTOMER,
        regions=[REGION],
    )
    run(acts.register_organization, req)
    c = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{CUSTOMER}:role/Admin", RoleSessionName="admin"
    )["Credentials"]
    keys = m.CreateRoleForMeInput(
        access_key_id=c["AccessKeyId"],
        secret_access_key=c["SecretAccessKey"],
        session_token=c["SessionToken"],
    )
    run(acts.create_customer_role, m.CreateRoleRequest(org_id=ORG, credentials=keys))
    return acts


def verify(acts: OnboardingActivities, role: str = ROLE) -> dict[str, m.CheckResult]:
    report = run(acts.verify_role, m.VerifyRoleInput(org_id=ORG, role_arn=role))
    assert report.passed == all(c.passed for c in report.checks)
    return {c.name: c for c in report.checks}


def failed(checks: dict[str, m.CheckResult]) -> list[str]:
    return [name for name, c in checks.items() if not c.passed]


def test_a_role_built_from_the_artifacts_passes_every_check(acts: OnboardingActivities):
    checks = verify(acts)
    assert list(checks) == CHECKS and failed(checks) == []
    assert checks["assume-role"].method == "probe" and "acting as account 222222222222" in (
        checks["assume-role"].detail
    )
    # moto's STS ignores trust policies: the probe proves nothing, and says so.
    assert checks["external-id-required"].method == "not-proved"
    assert checks["functional-simulation"].method == "probe"


def test_a_trust_policy_without_the_external_id_fails_with_the_exact_fix(
    acts: OnboardingActivities, platform: Platform
):
    iam = admin("iam")
    trust = iam.get_role(RoleName="BridgeheadAccess")["Role"]["AssumeRolePolicyDocument"]
    published = json.loads(json.dumps(trust))
    for statement in trust["Statement"]:
        statement.pop("Condition", None)
    iam.update_assume_role_policy(RoleName="BridgeheadAccess", PolicyDocument=json.dumps(trust))
    checks = verify(acts)
    assert failed(checks) == ["trust-policy-external-id", "external-id-required"]
    external_id = platform.registry.org(ORG).external_id
    condition = {"StringEquals": {"sts:ExternalId": external_id}}
    assert f'Add "Condition": {json.dumps(condition)}' in checks["trust-policy-external-id"].remedy
    assert published["Statement"][0]["Condition"] == condition, "what was taken away"


def test_a_permission_taken_away_is_named(acts: OnboardingActivities):
    iam = admin("iam")
    doc = iam.get_role_policy(RoleName="BridgeheadAccess", PolicyName="bridgehead-permissions")[
        "PolicyDocument"
    ]
    statement = next(s for s in doc["Statement"] if "cloudformation:CreateStack" in s["Action"])
    statement["Action"] = [a for a in statement["Action"] if a != "cloudformation:CreateStack"]
    iam.put_role_policy(
        RoleName="BridgeheadAccess",
        PolicyName="bridgehead-permissions",
        PolicyDocument=json.dumps(doc),
    )
    checks = verify(acts)
    assert failed(checks) == ["permissions"]
    assert "cloudformation:CreateStack" in checks["permissions"].detail


def test_a_missing_node_role_is_named_with_its_fix(acts: OnboardingActivities):
    iam = admin("iam")
    iam.remove_role_from_instance_profile(InstanceProfileName=NODE, RoleName=NODE)
    iam.delete_instance_profile(InstanceProfileName=NODE)
    for name in iam.list_role_policies(RoleName=NODE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=NODE, PolicyName=name)
    iam.delete_role(RoleName=NODE)
    checks = verify(acts)
    assert "node-roles" in failed(checks)
    assert NODE in checks["node-roles"].detail and checks["node-roles"].remedy


def test_a_role_in_another_account_is_refused_before_any_call(acts: OnboardingActivities):
    checks = verify(acts, "arn:aws:iam::333333333333:role/BridgeheadAccess")
    assert list(checks) == ["role-account"] and failed(checks) == ["role-account"]
    assert "Create the role in account 222222222222" in checks["role-account"].remedy


def test_an_scp_deny_seen_by_the_simulation_fails_it(
    acts: OnboardingActivities, new_clients: Planter
):
    deny = "ec2:RunInstances"
    new_clients(
        "iam",
        "SimulatePrincipalPolicy",
        simulation(lambda action: "explicitDeny" if action == deny else "allowed"),
    )
    checks = verify(acts)
    assert failed(checks) == ["functional-simulation"]
    assert deny in checks["functional-simulation"].detail


def test_throttling_while_reading_the_role_is_retried_not_a_failed_check(
    acts: OnboardingActivities, new_clients: Planter
):
    new_clients("iam", "GetRole", lambda params: aws_error("Throttling"))
    with pytest.raises(ClientError) as e:
        verify(acts)
    assert e.value.response["Error"]["Code"] == "Throttling"
    assert not isinstance(e.value, ApplicationError), "Temporal retries it (no failed check)"


def grant_node_role(policy: dict[str, Any]) -> None:
    admin("iam").put_role_policy(
        RoleName=NODE, PolicyName="extra", PolicyDocument=json.dumps(policy)
    )


ADMIN = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def test_a_node_role_granted_more_than_the_node_policy_fails_verification(
    acts: OnboardingActivities,
):
    """Found by an adversarial review (session 13): the Bridgehead role may pass the node role to
    EC2, so an administrator node role made the Bridgehead role one; verification passed it."""
    grant_node_role(ADMIN)
    checks = verify(acts)
    assert failed(checks) == ["node-role-grants"]
    c = checks["node-role-grants"]
    assert f"{NODE}: inline policy extra" in c.detail and "administrator" in c.detail, c.detail
    assert "keep only the node policy" in c.remedy


def test_a_node_role_widened_to_every_bucket_is_named(acts: OnboardingActivities):
    grant_node_role(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        }
    )
    c = verify(acts)["node-role-grants"]
    assert not c.passed and "s3:GetObject on *" in c.detail, c.detail


def test_twin_without_the_node_role_check_an_administrator_node_role_passes(
    acts: OnboardingActivities, monkeypatch: pytest.MonkeyPatch
):
    import activities.verification as verification

    monkeypatch.setattr(verification, "check_node_role_grants", lambda ctx: None)
    grant_node_role(ADMIN)
    assert failed(verify(acts)) == []


def role_asked(params: dict[str, Any]) -> str:
    """The ``RoleName`` of a query-protocol request as botocore serialised it."""
    body = params["body"]
    form = parse_qs(body) if isinstance(body, str) else {k: [v] for k, v in body.items()}
    return str(form.get("RoleName", [""])[0])


def test_a_role_that_may_not_read_node_role_policies_is_warned_not_failed(
    acts: OnboardingActivities, new_clients: Planter
):
    """A permission policy from before the node-role reads: READY stays, with a warning."""
    new_clients(
        "iam",
        "ListRolePolicies",
        lambda params: aws_error("AccessDenied", 403) if role_asked(params) == NODE else None,
    )
    checks = verify(acts)
    assert failed(checks) == []
    c = checks["node-role-grants"]
    assert c.passed and c.warning and NODE in c.detail and "current permission policy" in c.remedy


#: Session Manager's statement as the node policy published before 2026-11-25 had it (3fe8cbd^).
EARLIER_SSM = {
    "Sid": "SessionManagerInsteadOfSsh",
    "Effect": "Allow",
    "Action": [
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    ],
    "Resource": "*",
}


def test_a_node_role_built_from_an_earlier_template_is_warned_not_failed(
    acts: OnboardingActivities,
):
    """Found by a review of this check: a node role from the earlier published template had
    ``ssm:UpdateInstanceInformation`` on ``*`` and would have gone ACTION_REQUIRED."""
    grant_node_role({"Version": "2012-10-17", "Statement": [EARLIER_SSM]})
    checks = verify(acts)
    assert failed(checks) == []
    c = checks["node-role-grants"]
    assert c.warning and "ssm:UpdateInstanceInformation on *" in c.detail, c.detail
    assert "Update the role stack" in c.remedy


def test_twin_an_earlier_grant_beside_a_new_widening_still_fails(acts: OnboardingActivities):
    grant_node_role(
        {
            "Version": "2012-10-17",
            "Statement": [
                EARLIER_SSM,
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            ],
        }
    )
    c = verify(acts)["node-role-grants"]
    assert not c.passed and "s3:GetObject on *" in c.detail, c.detail
