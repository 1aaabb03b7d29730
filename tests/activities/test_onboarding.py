"""activities/onboarding.py against moto: registration writes the organisation, its External ID
and its account's claim once (one account, one organisation unless all say shared); a submitted
role is recorded only in the organisation's account and while it can take one; the
organisation's state moves only as the state machine allows; create-role-for-me builds the role
and the node roles in the customer account with the customer's one-time keys, adopts only a role
that trusts exactly us, and leaves nothing half-created. Verification: test_onboarding_verify.py;
id namespaces: test_onboarding_namespace.py."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.onboarding import OnboardingActivities
from bridgehead import models as m
from bridgehead import policies
from tests.activities.conftest import (
    CUSTOMER,
    REGION,
    Planter,
    Platform,
    admin,
    aws_error,
    run,
    trust_of,
)

ACTIVITIES = (
    "register_organization",
    "record_role",
    "set_org_state",
    "create_customer_role",
)

ORG = "acme"
NODE = f"bridgehead-{ORG}--node-{REGION}"


@pytest.fixture
def acts(platform: Platform) -> OnboardingActivities:
    return OnboardingActivities(platform.aws, platform.registry)


def register(
    acts: OnboardingActivities, org: str = ORG, account: str = CUSTOMER, **extra: Any
) -> m.RegisterOrgResult:
    req = m.RegisterOrgInput(
        org_id=org,
        display_name=org.title(),
        admin_email=f"admin@{org}.example",
        aws_account_id=account,
        regions=[REGION],
        **extra,
    )
    return run(acts.register_organization, req, workflow_id=f"org-{org}")  # type: ignore[no-any-return]


def test_registration_writes_the_organisation_its_external_id_and_account_claim_once(
    acts: OnboardingActivities, platform: Platform
):
    first = register(acts)
    again = register(acts)  # a retry of the same workflow run
    assert again.external_id == first.external_id and first.external_id.startswith("bh-")
    org = platform.registry.org_item(ORG)
    assert (org["state"], org["external_id"], org["aws_account_id"]) == (
        "AWAITING_ROLE",
        first.external_id,
        CUSTOMER,
    )
    assert platform.registry.get(f"EXTID#{first.external_id}", "META")["org_id"] == ORG
    assert platform.registry.account_claim(CUSTOMER)["orgs"] == {ORG}
    a = first.artifacts
    principal = platform.aws.platform_principal()
    assert a.trust_policy == policies.trust_policy(principal, first.external_id)
    assert a.role_name == "BridgeheadAccess" and [n["name"] for n in a.node_roles] == [NODE]
    assert json.loads(a.cloudformation_template)["Resources"]
    with pytest.raises(ApplicationError) as e:  # another workflow run: a second registration
        req = m.RegisterOrgInput(
            org_id=ORG,
            display_name="x",
            admin_email="x@x.io",
            aws_account_id="333333333333",
            regions=[REGION],
        )
        run(acts.register_organization, req, workflow_run_id="another-run")
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    assert "is already registered (account 222222222222)" in e.value.message


def test_an_account_serves_one_organisation_unless_each_says_it_is_shared(
    acts: OnboardingActivities, platform: Platform
):
    register(acts)
    with pytest.raises(ApplicationError) as e:
        register(acts, "beta", shared_account=True)  # acme did not say shared
    assert e.value.type == "CustomerActionRequired" and "already belongs to organisation acme" in (
        e.value.message
    )
    assert platform.registry.org_item("beta") is None
    one = register(acts, "one", "444444444444", shared_account=True)
    two = register(acts, "two", "444444444444", shared_account=True)
    assert platform.registry.account_claim("444444444444")["orgs"] == {"one", "two"}
    assert one.artifacts.role_name != two.artifacts.role_name, "their roles never collide"


def test_a_role_is_recorded_only_in_the_organisations_account_while_it_can_take_one(
    acts: OnboardingActivities, platform: Platform
):
    register(acts)
    role = f"arn:aws:iam::{CUSTOMER}:role/BridgeheadAccess"
    run(acts.record_role, m.RecordRoleInput(org_id=ORG, role_arn=role))
    assert platform.registry.org(ORG).role_arn == role
    with pytest.raises(ApplicationError) as foreign:
        other = m.RecordRoleInput(org_id=ORG, role_arn="arn:aws:iam::333333333333:role/X")
        run(acts.record_role, other)
    assert foreign.value.type == "CustomerActionRequired" and foreign.value.non_retryable
    assert "is in account 333333333333, but organisation acme is account 222222222222" in (
        foreign.value.message
    )
    run(acts.set_org_state, m.SetOrgStateInput(org_id=ORG, state=m.OrgState.OFFBOARDING))
    with pytest.raises(ApplicationError) as late:
        run(acts.record_role, m.RecordRoleInput(org_id=ORG, role_arn=role + "2"))
    assert "organisation acme is OFFBOARDING" in late.value.message
    assert platform.registry.org(ORG).role_arn == role


def test_the_organisations_state_moves_only_as_the_state_machine_allows(
    acts: OnboardingActivities, platform: Platform
):
    register(acts)
    for state in ("READY", "READY", "OFFBOARDING", "OFFBOARDED"):
        req = m.SetOrgStateInput(org_id=ORG, state=m.OrgState(state), detail=f"now {state}")
        run(acts.set_org_state, req)
    assert platform.registry.org_item(ORG)["state_detail"] == "now OFFBOARDED"
    with pytest.raises(ApplicationError) as e:
        run(acts.set_org_state, m.SetOrgStateInput(org_id=ORG, state=m.OrgState.READY))
    assert e.value.type == "IllegalTransition" and e.value.non_retryable
    assert "org acme is OFFBOARDED; it cannot become READY" in e.value.message
    assert platform.registry.org_item(ORG)["state"] == "OFFBOARDED"


def temporary_keys(account: str = CUSTOMER) -> m.CreateRoleRequest:
    """Temporary keys of an administrator of ``account`` (an assumed role), as a customer sends."""
    c = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/Admin", RoleSessionName="onboarding"
    )["Credentials"]
    keys = m.CreateRoleForMeInput(
        access_key_id=c["AccessKeyId"],
        secret_access_key=c["SecretAccessKey"],
        session_token=c["SessionToken"],
    )
    return m.CreateRoleRequest(org_id=ORG, credentials=keys)


def roles(account: str = CUSTOMER) -> list[str]:
    return sorted(r["RoleName"] for r in admin("iam", account).list_roles()["Roles"])


def test_create_role_for_me_builds_the_role_and_node_roles_in_the_customer_account(
    acts: OnboardingActivities, platform: Platform
):
    reg = register(acts)
    created = run(acts.create_customer_role, temporary_keys())
    assert created == m.CreateRoleResult(
        role_arn=f"arn:aws:iam::{CUSTOMER}:role/BridgeheadAccess", adopted=False
    )
    assert roles() == ["BridgeheadAccess", NODE]
    assert trust_of(CUSTOMER, "BridgeheadAccess") == reg.artifacts.trust_policy
    iam = admin("iam")
    policy = iam.get_role_policy(RoleName="BridgeheadAccess", PolicyName="bridgehead-permissions")
    assert policy["PolicyDocument"] == reg.artifacts.permission_policy
    profile = iam.get_instance_profile(InstanceProfileName=NODE)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NODE]
    assert platform.registry.org(ORG).role_arn == created.role_arn
    again = run(acts.create_customer_role, temporary_keys())  # our own role: adopted
    assert again.adopted and roles() == ["BridgeheadAccess", NODE]


def test_keys_of_another_account_are_refused_and_nothing_is_created(
    acts: OnboardingActivities, platform: Platform
):
    register(acts)
    with pytest.raises(ApplicationError) as e:
        run(acts.create_customer_role, temporary_keys("333333333333"))
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    assert "invalid for account 222222222222" in e.value.message
    assert roles() == [] and roles("333333333333") == []
    assert platform.registry.org(ORG).role_arn is None


def test_a_role_of_the_same_name_trusting_someone_else_is_not_taken_over(
    acts: OnboardingActivities,
):
    register(acts)
    foreign = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    admin("iam").create_role(
        RoleName="BridgeheadAccess", AssumeRolePolicyDocument=json.dumps(foreign)
    )
    with pytest.raises(ApplicationError) as e:
        run(acts.create_customer_role, temporary_keys())
    assert e.value.type == "CustomerActionRequired" and "will not take it over" in e.value.message
    assert trust_of(CUSTOMER, "BridgeheadAccess") == foreign and roles() == ["BridgeheadAccess"]


@pytest.mark.parametrize(
    "operation,says,left",
    [
        ("CreateRole", "lack permission to create a role (iam:CreateRole was denied", []),
        ("PutRolePolicy", "the role was removed again", []),
        ("CreateInstanceProfile", "everything created was removed again", []),
    ],
)
def test_keys_that_may_not_do_everything_leave_nothing_half_created(
    acts: OnboardingActivities,
    platform: Platform,
    new_clients: Planter,
    operation: str,
    says: str,
    left: list[str],
):
    register(acts)
    new_clients("iam", operation, lambda params: aws_error("AccessDenied", 403))
    with pytest.raises(ApplicationError) as e:
        run(acts.create_customer_role, temporary_keys())
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    assert says in e.value.message, e.value.message
    assert roles() == left and platform.registry.org(ORG).role_arn is None
    with pytest.raises(ClientError):
        admin("iam").get_instance_profile(InstanceProfileName=NODE)


def node_role_taken(acts: OnboardingActivities) -> str:
    """The second region's node-role name already used by a role trusting someone else."""
    req = m.RegisterOrgInput(
        org_id=ORG,
        display_name="Acme",
        admin_email="admin@acme.example",
        aws_account_id=CUSTOMER,
        regions=[REGION, "us-west-2"],
    )
    run(acts.register_organization, req, workflow_id=f"org-{ORG}")
    taken = f"bridgehead-{ORG}--node-us-west-2"
    lam = {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    admin("iam").create_role(
        RoleName=taken,
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{**lam, "Action": "sts:AssumeRole"}]}
        ),
    )
    return taken


def test_a_node_role_name_taken_by_someone_else_leaves_nothing_half_created(
    acts: OnboardingActivities, platform: Platform
):
    """Found by an adversarial review (session 13): the refusal of the second node role escaped the
    clean-up, leaving the Bridgehead role with its policy and the first node role, unrecorded."""
    taken = node_role_taken(acts)
    with pytest.raises(ApplicationError) as e:
        run(acts.create_customer_role, temporary_keys())
    assert e.value.type == "CustomerActionRequired" and "will not take it over" in e.value.message
    assert roles() == [taken], "only the customer's own role remains"
    assert platform.registry.org(ORG).role_arn is None


def test_twin_without_the_clean_up_the_bridgehead_role_stays(
    acts: OnboardingActivities, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(OnboardingActivities, "_delete_role", lambda *a: None)
    monkeypatch.setattr(OnboardingActivities, "_delete_node_role", lambda *a: None)
    taken = node_role_taken(acts)
    with pytest.raises(ApplicationError):
        run(acts.create_customer_role, temporary_keys())
    assert roles() == sorted(["BridgeheadAccess", NODE, taken])


def rejected_keys(
    acts: OnboardingActivities, new_clients: Planter, leak: pytest.MonkeyPatch | None = None
) -> tuple[str, dict[str, str]]:
    """Keys AWS rejects (STS answers InvalidClientTokenId, as real AWS does for a mistyped or
    expired key; moto accepts any key, so this branch is planted): the refusal's text and the keys
    that were sent. ``leak`` plants the defect: the refusal quotes the access key id."""
    register(acts)
    new_clients("sts", "GetCallerIdentity", lambda params: aws_error("InvalidClientTokenId", 403))
    req = temporary_keys()
    creds = req.credentials
    sent = {
        "access key id": creds.access_key_id,
        "secret access key": creds.secret_access_key.get_secret_value(),
        "session token": creds.session_token.get_secret_value() if creds.session_token else "",
    }
    if leak is not None:
        import activities.onboarding as onboarding

        real = onboarding._customer_action
        leak.setattr(
            onboarding, "_customer_action", lambda msg: real(f"{msg} ({creds.access_key_id})")
        )
    with pytest.raises(ApplicationError) as e:
        run(acts.create_customer_role, req)
    assert e.value.type == "CustomerActionRequired" and e.value.non_retryable
    return f"{e.value.message} {e.value.details}", sent


def test_keys_rejected_by_aws_are_named_without_the_keys(
    acts: OnboardingActivities, new_clients: Planter
):
    """The branch the integration secret scan cannot reach on moto (an audit, session 13)."""
    text, sent = rejected_keys(acts, new_clients)
    assert "rejected by AWS (InvalidClientTokenId)" in text
    assert [label for label, key in sent.items() if key and key in text] == []
    assert roles() == []


def test_twin_a_refusal_that_quotes_the_key_is_caught(
    acts: OnboardingActivities, new_clients: Planter, monkeypatch: pytest.MonkeyPatch
):
    text, sent = rejected_keys(acts, new_clients, leak=monkeypatch)
    assert [label for label, key in sent.items() if key and key in text] == ["access key id"]


def test_regions_outside_the_deployments_list_are_refused_before_anything_is_written(
    acts: OnboardingActivities, platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    """``BRIDGEHEAD_SUPPORTED_REGIONS`` was read and never enforced (an adversarial review,
    session 13): an EU-only deployment registered US regions."""
    monkeypatch.setattr(platform.aws.settings, "supported_regions", ["eu-west-1", "eu-central-1"])
    with pytest.raises(ApplicationError) as e:
        register(acts)  # us-east-1
    assert e.value.type == "BadInput" and e.value.non_retryable
    assert "us-east-1 are not supported by this deployment" in e.value.message
    assert "eu-west-1, eu-central-1" in e.value.message
    assert platform.registry.org_item(ORG) is None


def test_a_region_the_deployment_supports_is_registered(
    acts: OnboardingActivities, platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(platform.aws.settings, "supported_regions", [REGION, "eu-west-1"])
    register(acts)
    assert platform.registry.org(ORG).regions == [REGION]
