"""Onboarding against the real worker: create-role-for-me, Bodo's failure cases, verification
failures that name their fix, and no customer secret anywhere in history."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from bridgehead import models as m
from bridgehead.converter import make_data_converter
from starter.local import customer_admin
from tests.conftest import TEST_KEY
from tests.integration.helpers import (
    SETTLED,
    launch_role_template,
    start_org,
    submit_role_and_settle,
    wait_for,
)
from tests.support.secret_scan import log_files, scan_client, scan_logs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
#: Every customer credential the tests below hand to Bridgehead: label -> value (secret access
#: keys, access key ids and session tokens). The scan looks for each of them.
NEEDLES: dict[str, str] = {}


def customer_keys(stack, account: str, user: str) -> m.CreateRoleForMeInput:
    """Temporary admin credentials in the customer account (an assumed role: ASIA… + token)."""
    iam = customer_admin(stack.aws_endpoint, account, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName=user, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=user,
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    sts = customer_admin(stack.aws_endpoint, account, "sts")
    c = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{user}", RoleSessionName="onboarding"
    )["Credentials"]
    NEEDLES[f"{user} secret access key"] = c["SecretAccessKey"]
    NEEDLES[f"{user} access key id"] = c["AccessKeyId"]
    NEEDLES[f"{user} session token"] = c["SessionToken"]
    return m.CreateRoleForMeInput(
        access_key_id=c["AccessKeyId"],
        secret_access_key=c["SecretAccessKey"],
        session_token=c["SessionToken"],
    )


async def test_create_role_for_me_happy_path_and_invalid_keys(client, stack):
    h = await start_org(client, "beta", "333333333333", ["us-east-1"])
    # Invalid keys: a clear error, and the organisation keeps waiting.
    bogus = {
        "access_key_id": "ASIAIOSFODNN7INVALID",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYINVALIDKEY",
        "session_token": "FwoGZXIvYXdzEJr//////////wEaDINVALIDSESSIONTOKENbeta+x/y==",
    }
    NEEDLES.update({f"invalid {k}": v for k, v in bogus.items()})
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "create_role_for_me", m.CreateRoleForMeInput(**bogus), result_type=m.UpdateResult
        )
    assert "invalid" in str(e.value.cause).lower()
    assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.AWAITING_ROLE
    keys = customer_keys(stack, "333333333333", "admin-beta")
    res = await h.execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    assert res.accepted
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 120)
    assert s.state == m.OrgState.READY, s
    role = customer_admin(stack.aws_endpoint, "333333333333", "iam").get_role(
        RoleName="BridgeheadAccess"
    )["Role"]
    assert role["Arn"] == s.role_arn


async def test_role_already_exists_with_foreign_trust_is_refused(client, stack):
    h = await start_org(client, "gamma", "444444444444", ["us-east-1"])
    iam = customer_admin(stack.aws_endpoint, "444444444444", "iam")
    iam.create_role(
        RoleName="BridgeheadAccess",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    keys = customer_keys(stack, "444444444444", "admin-gamma")
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    assert "already exists" in str(e.value.cause) and "different trust policy" in str(e.value.cause)
    assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.AWAITING_ROLE


@pytest.mark.parametrize(
    "org,account,mutate,check,needle",
    [
        (
            "delta",
            "555555555555",
            lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"]["Policies"][0][
                "PolicyDocument"
            ]["Statement"][1]["Action"].remove("cloudformation:DeleteStack"),
            "permissions",
            "cloudformation:DeleteStack",
        ),
        (
            "epsilon",
            "666666666666",
            lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"][
                "AssumeRolePolicyDocument"
            ]["Statement"][0].pop("Condition"),
            "trust-policy-external-id",
            "no sts:ExternalId condition",
        ),
        (
            "zeta",
            "777777777777",
            lambda t: t["Resources"]["BridgeheadAccessRole"]["Properties"][
                "AssumeRolePolicyDocument"
            ]["Statement"][0].update(Principal={"AWS": "*"}),
            "trust-policy-principal",
            "also trusts AWS:*",
        ),
    ],
)
async def test_unsafe_or_insufficient_role_needs_action(
    client, stack, org, account, mutate, check, needle
):
    h = await start_org(client, org, account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    arn = launch_role_template(stack, account, s, f"access-{org}", mutate)
    s = await submit_role_and_settle(h, arn, 60)
    assert s.state == m.OrgState.ACTION_REQUIRED
    failed = {c.name: c for c in s.failed_checks}
    assert check in failed, failed
    assert needle in failed[check].detail and failed[check].remedy


async def test_submit_role_validator_rejects_other_account_and_malformed(client, stack):
    h = await start_org(client, "eta", "888888888888", ["us-east-1"])
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "submit_role",
            m.SubmitRoleInput(role_arn="arn:aws:iam::999999999999:role/X"),
            result_type=m.UpdateResult,
        )
    assert "account 999999999999" in str(e.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "submit_role",
            m.SubmitRoleInput(role_arn="arn:aws-cn:iam::888888888888:role/X"),
            result_type=m.UpdateResult,
        )
    assert "partition aws-cn" in str(e.value.cause)
    with pytest.raises(Exception) as e2:
        await h.execute_update(
            "submit_role", {"role_arn": "not-an-arn"}, result_type=m.UpdateResult
        )
    assert "not an IAM role ARN" in str(e2.value) + str(getattr(e2.value, "cause", ""))


def cli_log(stack, name: str, *args: str) -> Path:
    """Run the starter CLI as a user would and keep what it printed as a log of the state dir."""
    r = subprocess.run(
        [sys.executable, "-m", "starter", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **stack.env()},
        timeout=120,
        cwd=ROOT,
    )
    path = stack.state_dir / f"cli-{name}.log"
    path.write_text(f"$ starter {' '.join(args)}\n{r.stdout}{r.stderr}")
    return path


#: Where customer keys may be, encrypted by the codec: the update that carried them and the
#: activity input that used them once. Anywhere else, or in any readable form, is a defect.
ENCRYPTED_AT = {
    "workflow_execution_update_accepted_event_attributes",
    "activity_task_scheduled_event_attributes",
}


async def test_no_customer_secret_in_any_history_search_attribute_memo_or_log(client, stack):
    """Every payload of every history (decoded: JSON, base64, and through the codec with the test
    key), every string field, current search attributes and memo, and the worker, server, moto and
    CLI logs: no secret access key, access key id or session token in readable form. Twins:
    tests/test_secret_scan.py (each planted form) and the real-history plant below."""
    assert len(NEEDLES) == 3 + 3 + 3, (
        "the create-role tests must run first (they record the keys they used)"
    )
    for org in ("beta", "gamma"):
        cli_log(stack, f"status-{org}", "--json", "status", f"org-{org}")
    found, scanned = await scan_client(client, NEEDLES, make_data_converter(TEST_KEY).payload_codec)
    assert scanned >= 2
    readable = sorted(str(f) for f in found if f.layer != "encrypted")
    assert readable == []
    # Positive control: the scanner does reach each key, encrypted, exactly where it may be.
    encrypted = {f for f in found if f.layer == "encrypted"}
    assert {f.where.split()[1] for f in encrypted} <= ENCRYPTED_AT, sorted(map(str, encrypted))
    assert {f.needle for f in encrypted} == set(NEEDLES), sorted(
        set(NEEDLES) - {f.needle for f in encrypted}
    )
    logs = log_files(stack.state_dir, ROOT / "test-artifacts")
    assert {"worker.log", "temporal.log", "moto.log", "cli-status-beta.log"} <= {
        p.name for p in logs
    }
    assert sorted(map(str, scan_logs(logs, NEEDLES))) == []


async def test_planted_secret_in_a_real_history_and_a_cli_log_is_reported(client, stack):
    """Twin on the real server: a key sent in plain JSON (a signal the workflow ignores) is found in
    the history, and a key printed by the CLI is found in its log."""
    canary = {"canary key id": "AKIACANARYPLANTED019"}
    await client.get_workflow_handle("org-beta").signal(
        "explode", {"note": canary["canary key id"]}
    )
    found, _ = await scan_client(
        client, canary, make_data_converter(TEST_KEY).payload_codec, 'WorkflowId = "org-beta"'
    )
    assert [(f.layer, f.where.split()[1]) for f in found] == [
        ("plain", "workflow_execution_signaled_event_attributes")
    ], found
    log = cli_log(stack, "canary", "--json", "status", canary["canary key id"])
    assert {f.where.split(":")[0] for f in scan_logs([log], canary)} == {log.name}


async def test_daily_reverification_schedule_catches_drift(client, stack):
    """READY creates the Schedule; when the customer narrows and then deletes the role, the next
    scheduled run turns the organisation ACTION_REQUIRED with the check that failed."""
    from tests.integration.helpers import onboard_ready

    account = "232323232323"
    s = await onboard_ready(client, stack, "drift", account, ["us-east-1"])
    assert s.state == m.OrgState.READY, s
    h = client.get_workflow_handle("org-drift")
    await wait_for(
        h, "status", m.OrgStatus, lambda s: any("re-verification scheduled" in x for x in s.steps)
    )
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
    s = await wait_for(
        h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 60
    )
    perms = {c.name: c for c in s.failed_checks}["permissions"]
    assert "cloudformation:DeleteStack" in perms.detail and "drift since READY" in (
        s.last_error or ""
    )

    # Drift 2: the role is deleted altogether.
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    iam.delete_role(RoleName=role)
    verifications = sum("VERIFYING" in x for x in s.steps)
    await sched.trigger()
    s = await wait_for(
        h,
        "status",
        m.OrgStatus,
        lambda x: (
            sum("VERIFYING" in y for y in x.steps) > verifications
            and x.state == m.OrgState.ACTION_REQUIRED
        ),
        60,
    )
    assert {c.name for c in s.failed_checks} & {"assume-role", "trust-policy-readable"}, (
        s.failed_checks
    )
    await sched.delete()


async def test_the_admin_is_emailed_when_ready_and_when_action_is_needed(client, stack):
    """Issue #21: READY and ACTION_REQUIRED (with each failed check and its fix) reach the admin by
    e-mail (SES); the registry keeps one marker per message sent."""
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings
    from tests.integration.helpers import onboard_ready

    org = "mailme"
    s = await onboard_ready(client, stack, org, "282828282829", ["us-east-1"])
    assert s.state == m.OrgState.READY
    reg = Registry(Aws(get_settings()))

    def subjects() -> list[str]:
        items = reg.ddb.scan(
            TableName=reg.table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": f"NOTIFY#org-{org}/"}},
        )["Items"]
        return sorted(i["subject"]["S"] for i in items)

    assert subjects() == [f"{org} is ready"]
    # Drift: the customer removes the External ID condition; re-verification says what to fix.
    iam = customer_admin(stack.aws_endpoint, "282828282829", "iam")
    name = s.role_arn.rsplit("/", 1)[-1]
    trust = json.loads(json.dumps(iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]))
    trust["Statement"][0].pop("Condition")
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    h = client.get_workflow_handle(f"org-{org}")
    await h.signal("reverify")
    await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 120)
    for _ in range(100):
        if len(subjects()) == 2:
            break
        await asyncio.sleep(0.1)
    assert subjects() == [
        f"{org} is ready",
        f"{org} needs action (its role changed since it was ready)",
    ]
