"""Onboarding against the real worker: create-role-for-me, Bodo's failure cases, verification
failures that name their fix, and no customer secret anywhere in history."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowUpdateFailedError

from bridgehead import models as m
from starter.local import customer_admin
from tests.integration.helpers import history_json, launch_role_template, start_org, wait_for

pytestmark = pytest.mark.integration
SECRETS: list[str] = []


def customer_keys(stack, account: str, user: str) -> m.CreateRoleForMeInput:
    """Temporary admin credentials in the customer account (an assumed role: ASIA… + token)."""
    iam = customer_admin(stack.aws_endpoint, account, "iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
    iam.create_role(RoleName=user, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=user, PolicyName="admin", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))  # fmt: skip
    sts = customer_admin(stack.aws_endpoint, account, "sts")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{user}", RoleSessionName="onboarding")["Credentials"]
    SECRETS.extend([c["SecretAccessKey"], c["SessionToken"], c["AccessKeyId"]])
    return m.CreateRoleForMeInput(access_key_id=c["AccessKeyId"], secret_access_key=c["SecretAccessKey"], session_token=c["SessionToken"])


async def test_create_role_for_me_happy_path_and_invalid_keys(client, stack):
    h = await start_org(client, "beta", "333333333333", ["us-east-1"])
    # Invalid keys: a clear error, and the organisation keeps waiting.
    bogus = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYINVALIDKEY"
    SECRETS.append(bogus)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("create_role_for_me", m.CreateRoleForMeInput(access_key_id="ASIAIOSFODNN7INVALID", secret_access_key=bogus,
                                                                            session_token=bogus + "token"),
                               result_type=m.UpdateResult)  # fmt: skip
    assert "invalid" in str(e.value.cause).lower()
    assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.AWAITING_ROLE
    keys = customer_keys(stack, "333333333333", "admin-beta")
    res = await h.execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    assert res.accepted
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED), 120)
    assert s.state == m.OrgState.READY, s
    role = customer_admin(stack.aws_endpoint, "333333333333", "iam").get_role(RoleName="BridgeheadAccess")["Role"]
    assert role["Arn"] == s.role_arn


async def test_role_already_exists_with_foreign_trust_is_refused(client, stack):
    h = await start_org(client, "gamma", "444444444444", ["us-east-1"])
    iam = customer_admin(stack.aws_endpoint, "444444444444", "iam")
    iam.create_role(RoleName="BridgeheadAccess", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))  # fmt: skip
    keys = customer_keys(stack, "444444444444", "admin-gamma")
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    assert "already exists" in str(e.value.cause) and "different trust policy" in str(e.value.cause)
    assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.AWAITING_ROLE


@pytest.mark.parametrize(
    "org,account,mutate,check,needle",
    [
        ("delta", "555555555555",
         lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]["Action"].remove("cloudformation:DeleteStack"),
         "permissions", "cloudformation:DeleteStack"),
        ("epsilon", "666666666666",
         lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0].pop("Condition"),
         "trust-policy-external-id", "no sts:ExternalId condition"),
        ("zeta", "777777777777",
         lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0].update(Principal={"AWS": "*"}),
         "trust-policy-principal", "also trusts AWS:*"),
    ],
)  # fmt: skip
async def test_unsafe_or_insufficient_role_needs_action(client, stack, org, account, mutate, check, needle):
    h = await start_org(client, org, account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    arn = launch_role_template(stack, account, s, f"access-{org}", mutate)
    await h.execute_update("submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult)
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED), 60)
    assert s.state == m.OrgState.ACTION_REQUIRED
    failed = {c.name: c for c in s.failed_checks}
    assert check in failed, failed
    assert needle in failed[check].detail and failed[check].remedy


async def test_submit_role_validator_rejects_other_account_and_malformed(client, stack):
    h = await start_org(client, "eta", "888888888888", ["us-east-1"])
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("submit_role", m.SubmitRoleInput(role_arn="arn:aws:iam::999999999999:role/X"), result_type=m.UpdateResult)
    assert "account 999999999999" in str(e.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("submit_role", m.SubmitRoleInput(role_arn="arn:aws-cn:iam::888888888888:role/X"), result_type=m.UpdateResult)
    assert "partition aws-cn" in str(e.value.cause)
    with pytest.raises(Exception) as e2:
        await h.execute_update("submit_role", {"role_arn": "not-an-arn"}, result_type=m.UpdateResult)
    assert "not an IAM role ARN" in str(e2.value) + str(getattr(e2.value, "cause", ""))


async def test_no_customer_secret_in_any_history(client, stack):
    assert SECRETS, "the create-role tests must run first (they record the secrets they used)"
    found = []
    async for wf in client.list_workflows():
        text = await history_json(client, wf.id)
        found += [wf.id for s in SECRETS if s in text]
    assert found == []
    logs = "".join(p.read_text(errors="ignore") for p in stack.state_dir.glob("*.log"))
    assert not [s for s in SECRETS if s in logs]


async def test_daily_reverification_schedule_catches_drift(client, stack):
    """READY creates the Schedule; when the customer narrows and then deletes the role, the next
    scheduled run turns the organisation ACTION_REQUIRED with the check that failed."""
    from tests.integration.helpers import onboard_ready

    account = "232323232323"
    s = await onboard_ready(client, stack, "drift", account, ["us-east-1"])
    assert s.state == m.OrgState.READY, s
    h = client.get_workflow_handle("org-drift")
    await wait_for(h, "status", m.OrgStatus, lambda s: any("re-verification scheduled" in x for x in s.steps))
    sched = client.get_schedule_handle("org-drift-reverify")
    desc = await sched.describe()
    assert desc.schedule.spec.intervals[0].every.total_seconds() == 24 * 3600
    assert desc.schedule.action.workflow == "ReverifyOrganization"

    # Drift 1: the customer removes one action from the role's policy.
    iam = stack.customer_admin(account, "iam")
    role = s.role_arn.split("/")[-1]
    doc = json.loads(json.dumps(s.artifacts.permission_policy))
    for st in doc["Statement"]:
        if "cloudformation:DeleteStack" in st["Action"]:
            st["Action"].remove("cloudformation:DeleteStack")
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))
    await sched.trigger()
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 60)
    perms = {c.name: c for c in s.failed_checks}["permissions"]
    assert "cloudformation:DeleteStack" in perms.detail and "drift since READY" in (s.last_error or "")

    # Drift 2: the role is deleted altogether.
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    iam.delete_role(RoleName=role)
    verifications = sum("VERIFYING" in x for x in s.steps)
    await sched.trigger()
    s = await wait_for(h, "status", m.OrgStatus, lambda x: sum("VERIFYING" in y for y in x.steps) > verifications
                       and x.state == m.OrgState.ACTION_REQUIRED, 60)  # fmt: skip
    assert {c.name for c in s.failed_checks} & {"assume-role", "trust-policy-readable"}, s.failed_checks
    await sched.delete()
