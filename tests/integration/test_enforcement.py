"""Least privilege under enforcement: moto checks every call against IAM (and the test proxy
refuses AssumeRole without a required External ID, as STS does). The whole lifecycle runs with
exactly the permission policy customers grant; the Bodo failure "keys cannot create a role" and
the confused-deputy probe are proved here, not assumed."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from temporalio.client import WorkflowUpdateFailedError

from bridgehead import ids
from bridgehead import models as m
from tests.integration.helpers import (
    accept_moto_widening,
    create_role_directly,
    delete_cluster,
    start_cluster,
    start_org,
    submit_role_and_settle,
    wait_for,
)

pytestmark = pytest.mark.integration
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.large",
    compute_initial_nodes=1,
    compute_max_nodes=2,
)


async def report_of(client, org: str, n: int = 1) -> m.VerificationReport:
    return await client.get_workflow_handle(
        f"org-{org}-verify-{n}", result_type=m.VerificationReport
    ).result()


async def test_whole_lifecycle_with_exactly_the_granted_policy(enforcing_client, enforcing_stack):
    client, stack, account = enforcing_client, enforcing_stack, "310000000001"
    h = await start_org(client, "enf1", account, ["us-east-2"])
    await accept_moto_widening(h, stack)  # READY at warn: the widening moto needs
    s = await h.query("status", result_type=m.OrgStatus)
    arn = create_role_directly(stack, account, s)
    s = await submit_role_and_settle(h, arn, 180)
    assert s.state == m.OrgState.READY, s
    probe = {c.name: c for c in (await report_of(client, "enf1")).checks}["external-id-required"]
    assert probe.passed and probe.method == "probe" and "refused" in probe.detail
    # Enforcement is live: the role cannot do what the policy does not grant.
    sts = stack.platform("sts")
    c = sts.assume_role(RoleArn=arn, RoleSessionName="test-probe", ExternalId=s.external_id)[
        "Credentials"
    ]
    as_role = boto3.session.Session(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    with pytest.raises(ClientError) as denied:
        as_role.client("iam", endpoint_url=stack.aws_endpoint, region_name="us-east-1").create_user(
            UserName="intruder"
        )
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    ch, cs = await start_cluster(
        client,
        m.ClusterLifecycleInput(org_id="enf1", name="e1", region="us-east-2", config=CFG),
        180,
    )
    assert cs.state == m.ClusterState.RUNNING, cs
    assert (await delete_cluster(ch)).state == m.ClusterState.DELETED


async def test_keys_without_create_role_get_a_clear_error_and_the_org_keeps_waiting(
    enforcing_client, enforcing_stack
):
    client, stack, account = enforcing_client, enforcing_stack, "310000000002"
    h = await start_org(client, "enf2", account, ["us-east-1"])
    iam = stack.customer_admin(account, "iam")
    # Temporary keys of a role that may only look (only temporary credentials are accepted).
    iam.create_role(
        RoleName="readonly",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    iam.put_role_policy(
        RoleName="readonly",
        PolicyName="ro",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["sts:GetCallerIdentity", "iam:GetRole", "iam:ListRoles"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    k = stack.customer_admin(account, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/readonly", RoleSessionName="keys"
    )["Credentials"]
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "create_role_for_me",
            m.CreateRoleForMeInput(
                access_key_id=k["AccessKeyId"],
                secret_access_key=k["SecretAccessKey"],
                session_token=k["SessionToken"],
            ),
            result_type=m.UpdateResult,
        )
    text = str(e.value.cause)
    assert "lack permission to create a role" in text and "iam:CreateRole" in text, text
    s = await h.query("status", result_type=m.OrgStatus)
    assert s.state == m.OrgState.AWAITING_ROLE and "iam:CreateRole" in (s.last_error or "")
    with pytest.raises(ClientError):
        iam.get_role(RoleName="BridgeheadAccess")  # nothing half-created
    # Wrong secret for a real key id: moto checks signatures under enforcement.
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "create_role_for_me",
            m.CreateRoleForMeInput(
                access_key_id=k["AccessKeyId"],
                secret_access_key="x" * 40,
                session_token=k["SessionToken"],
            ),
            result_type=m.UpdateResult,
        )
    assert "invalid" in str(e.value.cause)
    # Keys that may create the role: the same org proceeds (the workflow was never dead).
    iam.put_role_policy(
        RoleName="readonly",
        PolicyName="create",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "iam:CreateRole",
                            "iam:PutRolePolicy",
                            "iam:TagRole",
                            "iam:DeleteRole",
                            "iam:GetRole",
                            "iam:CreateInstanceProfile",
                            "iam:GetInstanceProfile",
                            "iam:AddRoleToInstanceProfile",
                        ],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    res = await h.execute_update(
        "create_role_for_me",
        m.CreateRoleForMeInput(
            access_key_id=k["AccessKeyId"],
            secret_access_key=k["SecretAccessKey"],
            session_token=k["SessionToken"],
        ),
        result_type=m.UpdateResult,
    )
    assert res.accepted
    # The role Bridgehead created passes verification. (What follows needs resource-scoped
    # statements moto cannot evaluate; the lifecycle test above covers it.)
    await wait_for(
        h,
        "status",
        m.OrgStatus,
        lambda s: s.state not in (m.OrgState.CREATING_ROLE, m.OrgState.VERIFYING),
        120,
    )
    report = await report_of(client, "enf2")
    assert report.passed, report.failed()
    assert {c.name: c.method for c in report.checks}["external-id-required"] == "probe"


async def test_confused_deputy_probe_catches_a_trust_policy_without_external_id(
    enforcing_client, enforcing_stack
):
    client, stack, account = enforcing_client, enforcing_stack, "310000000003"
    h = await start_org(client, "enf3", account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    arn = create_role_directly(
        stack, account, s, trust=lambda t: t["Statement"][0].pop("Condition")
    )
    s = await submit_role_and_settle(h, arn, 120)
    assert s.state == m.OrgState.ACTION_REQUIRED
    failed = {c.name: c for c in s.failed_checks}
    probe = failed["external-id-required"]
    assert (
        probe.method == "probe"
        and "WITHOUT the External ID succeeded" in probe.detail
        and s.external_id in probe.remedy
    )


async def test_one_action_removed_is_named(enforcing_client, enforcing_stack):
    client, stack, account = enforcing_client, enforcing_stack, "310000000004"
    h = await start_org(client, "enf4", account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)

    def drop(doc):  # noqa: ANN001
        for st in doc["Statement"]:
            if "cloudformation:CreateStack" in st["Action"]:
                st["Action"].remove("cloudformation:CreateStack")

    arn = create_role_directly(stack, account, s, perms=drop)
    s = await submit_role_and_settle(h, arn, 120)
    assert s.state == m.OrgState.ACTION_REQUIRED
    perms = {c.name: c for c in s.failed_checks}["permissions"]
    assert (
        "cloudformation:CreateStack" in perms.detail
        and "cloudformation:CreateStack" in perms.remedy
    )
    # And AWS itself (enforcing) refuses the call, with the action in its message.
    c = stack.platform("sts").assume_role(
        RoleArn=arn, RoleSessionName="test-probe", ExternalId=s.external_id
    )["Credentials"]
    cfn = boto3.session.Session(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]).client(
        "cloudformation", endpoint_url=stack.aws_endpoint, region_name="us-east-1"
    )
    with pytest.raises(ClientError) as denied:
        cfn.create_stack(
            StackName="bridgehead-enf4-x",
            TemplateBody=json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}),
        )
    assert "cloudformation:CreateStack" in str(denied.value)


async def test_faults_injected_on_a_quarter_of_aws_calls_still_complete(
    enforcing_client, enforcing_stack
):
    """AWS fault suite: throttling and 503s on 25% of every AWS call (platform and customer) from
    role submission to deletion; everything still completes, nothing is created twice."""
    from pathlib import Path

    client, stack, account = enforcing_client, enforcing_stack, "310000000005"
    proxy = stack.proxy
    h = await start_org(client, "enf5", account, ["us-east-1"])
    await accept_moto_widening(h, stack)  # READY at warn: the widening moto needs
    s = await h.query("status", result_type=m.OrgStatus)
    arn = create_role_directly(stack, account, s)
    before, calls_before = sum(proxy.faults.values()), sum(proxy.requests.values())
    proxy.fault_rate = 0.25
    try:
        s = await submit_role_and_settle(h, arn, 240)
        assert s.state == m.OrgState.READY, s
        ch, cs = await start_cluster(
            client,
            m.ClusterLifecycleInput(org_id="enf5", name="f1", region="us-east-1", config=CFG),
            240,
        )
        assert cs.state == m.ClusterState.RUNNING, cs
        assert (await delete_cluster(ch)).state == m.ClusterState.DELETED
    finally:
        proxy.fault_rate = 0.0
    injected = sum(proxy.faults.values()) - before
    calls = sum(proxy.requests.values()) - calls_before
    assert injected >= 10, injected
    # Created once, whatever was retried: stack ids (deleted ones included) per name, on moto's side.
    # (Faults *after* the call took effect are in test_faults.py.)

    stacks = stack.customer_admin(account, "cloudformation").list_stacks()["StackSummaries"]
    for name in (ids.foundation_stack("enf5", "us-east-1"), ids.cluster_stack("enf5", "f1")):
        assert len({x["StackId"] for x in stacks if x["StackName"] == name}) == 1, (name, stacks)
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fault-suite.json").write_text(
        json.dumps(
            {"aws_calls": calls, "faults_injected": injected, "by_kind": dict(proxy.faults)},
            indent=2,
        )
    )


async def test_access_denied_fails_after_one_attempt_with_an_actionable_message(
    enforcing_client, enforcing_stack
):
    """The customer narrows a verified role (drift before the daily check): creating a cluster
    fails at once, naming the refused action; the activity is not retried."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowFailureError

    client, stack, account = enforcing_client, enforcing_stack, "310000000001"
    iam = stack.customer_admin(account, "iam")
    from bridgehead.policies import parse_document

    doc = parse_document(
        iam.get_role_policy(RoleName="BridgeheadAccess", PolicyName="bridgehead-permissions")[
            "PolicyDocument"
        ]
    )
    for st in doc["Statement"]:
        if "cloudformation:CreateStack" in st["Action"]:
            st["Action"].remove("cloudformation:CreateStack")
    iam.put_role_policy(
        RoleName="BridgeheadAccess",
        PolicyName="bridgehead-permissions",
        PolicyDocument=json.dumps(doc),
    )
    h = await client.start_workflow(
        "ClusterLifecycle",
        m.ClusterLifecycleInput(org_id="enf1", name="denied", region="us-east-2", config=CFG),
        id="cluster-enf1-denied",
        task_queue="bridgehead",
        result_type=m.ClusterResult,
    )
    try:
        st = await wait_for(
            h,
            "status",
            m.ClusterStatus,
            lambda s: s.state in (m.ClusterState.FAILED, m.ClusterState.RUNNING),
            60,
        )
        text = f"{st.state.value} {st.failure_reason}"
    except Exception:  # the run itself failed (validation-stage refusal)
        try:
            await h.result()
            text = "completed"
        except WorkflowFailureError as e:
            text = str(e.cause)
    assert "cloudformation:CreateStack" in text and ("Grant" in text or "permission" in text), text
    hist = await h.fetch_history()
    failed = [e for e in hist.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
    started = [e for e in hist.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    create = [
        e
        for e in failed
        if "CreateStack" in e.activity_task_failed_event_attributes.failure.message
    ]
    assert create, [e.activity_task_failed_event_attributes.failure.message for e in failed]
    attempts = {
        e.activity_task_started_event_attributes.attempt
        for e in started
        if e.event_id == create[0].activity_task_failed_event_attributes.started_event_id
    }
    assert attempts == {1}, attempts
