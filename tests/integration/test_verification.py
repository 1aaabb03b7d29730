"""The verifier against the embedded stack: unsafe trust shapes and excess grants end
ACTION_REQUIRED naming the check; the verification level ``warn`` turns excess grants into
warnings shown in ``status``; the customer's template (and create-role-for-me) creates the node
roles Bridgehead's role cannot create."""

from __future__ import annotations

import json

import pytest

from bridgehead import ids
from bridgehead import models as m
from starter.local import customer_admin
from tests.integration.helpers import (
    SETTLED,
    delete_cluster,
    launch_role_template,
    start_cluster,
    start_org,
    temporary_admin_keys,
    wait_for,
)

pytestmark = pytest.mark.integration


def add_trust_statement(st: dict):  # noqa: ANN201
    def mutate(tpl: dict) -> None:
        tpl["Resources"]["BridgeheadAccessRole"]["Properties"]["AssumeRolePolicyDocument"][
            "Statement"
        ].append(st)

    return mutate


@pytest.mark.parametrize(
    "org,account,statement,check,needle",
    [
        # Issue 18's examples: both passed the old verifier.
        (
            "vnota",
            "410000000001",
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "NotAction": "s3:GetObject"},
            "trust-policy-not-action",
            "NotAction",
        ),
        (
            "vweb",
            "410000000002",
            {
                "Effect": "Allow",
                "Principal": {"Federated": "cognito-identity.amazonaws.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            },
            "trust-policy-federated",
            "sts:AssumeRoleWithWebIdentity",
        ),
        (
            "vroot",
            "410000000003",
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "sts:AssumeRole",
            },
            "trust-policy-principal",
            "999999999999",
        ),
    ],
)
async def test_unsafe_trust_statement_beside_a_correct_one_needs_action(
    client, stack, org, account, statement, check, needle
):
    h = await start_org(client, org, account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    arn = launch_role_template(stack, account, s, f"access-{org}", add_trust_statement(statement))
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
    )
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 120)
    assert s.state == m.OrgState.ACTION_REQUIRED, s.steps[-3:]
    failed = {c.name: c for c in s.failed_checks}
    assert check in failed, failed
    assert needle in failed[check].detail and failed[check].remedy


async def test_administrator_policy_fails_strict_and_is_a_warning_under_warn(client, stack):
    account, org = "410000000004", "vadmin"
    h = await start_org(client, org, account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    assert s.verification_level == "strict"
    arn = launch_role_template(stack, account, s, f"access-{org}")
    iam = customer_admin(stack.aws_endpoint, account, "iam")
    # moto's server does not load AWS-managed policies, so the same document as a customer policy.
    admin = iam.create_policy(
        PolicyName="AdministratorAccess",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=arn.split("/")[-1], PolicyArn=admin)
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
    )
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 120)
    assert s.state == m.OrgState.ACTION_REQUIRED
    excess = {c.name: c for c in s.failed_checks}["excess-grants"]
    assert "* (by managed policy AdministratorAccess" in excess.detail and "warn" in excess.remedy
    assert [c.name for c in s.failed_checks] == ["excess-grants"], (
        "everything else about the role is fine"
    )

    res = await h.execute_update(
        "set_verification_level",
        m.SetVerificationLevelInput(level="warn"),
        result_type=m.UpdateResult,
    )
    assert res.accepted and "re-verifying" in res.message
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.READY, 180)
    assert s.verification_level == "warn" and s.failed_checks == []
    warnings = {c.name: c for c in s.warnings}
    assert (
        warnings["excess-grants"].warning
        and "AdministratorAccess" in warnings["excess-grants"].detail
    )

    # Back to strict: the same role is refused again on the next verification.
    await h.execute_update(
        "set_verification_level",
        m.SetVerificationLevelInput(level="strict"),
        result_type=m.UpdateResult,
    )
    s = await wait_for(
        h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 120
    )
    assert "excess-grants" in {c.name for c in s.failed_checks} and "drift since READY" in (
        s.last_error or ""
    )


async def test_missing_node_role_is_named_with_its_fix(client, stack):
    account, org = "410000000005", "vnode"
    h = await start_org(client, org, account, ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)
    assert [n["name"] for n in s.artifacts.node_roles] == [ids.cluster_role_name(org, "us-east-1")]

    def drop_nodes(tpl: dict) -> None:
        for k in [k for k in tpl["Resources"] if k.startswith(("NodeRole", "NodeProfile"))]:
            del tpl["Resources"][k]

    arn = launch_role_template(stack, account, s, f"access-{org}", drop_nodes)
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
    )
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 120)
    assert s.state == m.OrgState.ACTION_REQUIRED
    node = {c.name: c for c in s.failed_checks}["node-roles"]
    assert ids.cluster_role_name(org, "us-east-1") in node.detail and "role template" in node.remedy


async def test_create_role_for_me_also_creates_the_node_roles_and_grants_no_role_creation(
    client, stack
):
    account, org = "410000000006", "vkeys"
    h = await start_org(client, org, account, ["us-east-1", "us-west-2"])
    iam = customer_admin(stack.aws_endpoint, account, "iam")
    k = temporary_admin_keys(stack.aws_endpoint, account, "admin-vkeys")
    keys = m.CreateRoleForMeInput(
        access_key_id=k["AccessKeyId"],
        secret_access_key=k["SecretAccessKey"],
        session_token=k["SessionToken"],
    )
    await h.execute_update("create_role_for_me", keys, result_type=m.UpdateResult)
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 180)
    assert s.state == m.OrgState.READY, s.failed_checks
    for region in ("us-east-1", "us-west-2"):
        name = ids.cluster_role_name(org, region)
        profiles = iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
        assert [p["InstanceProfileName"] for p in profiles] == [name]
    granted = json.dumps(
        iam.get_role_policy(RoleName="BridgeheadAccess", PolicyName="bridgehead-permissions")[
            "PolicyDocument"
        ]
    )
    for action in (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:CreateInstanceProfile",
        "kms:ScheduleKeyDeletion",
    ):
        assert action not in granted


async def test_ongoing_policy_keeps_clusters_working_and_says_what_needs_the_setup_policy(
    enforcing_client, enforcing_stack
):
    """Under moto's IAM enforcement: READY with the setup policy; the customer swaps in the
    ongoing policy (no network/storage/key creation); re-verification stays READY with a
    `setup-policy` warning naming what needs the setup policy again; a cluster still runs."""
    from tests.integration.helpers import (
        accept_moto_widening,
        create_role_directly,
        moto_widening,
        widen_resources_for_moto,
    )

    client, stack, account, org = enforcing_client, enforcing_stack, "310000000006", "vongo"
    h = await start_org(client, org, account, ["us-east-1"])
    await accept_moto_widening(h, stack)
    s = await h.query("status", result_type=m.OrgStatus)
    arn = create_role_directly(stack, account, s)
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
    )
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state in SETTLED, 180)
    assert s.state == m.OrgState.READY, s.failed_checks
    # moto needs the scoped actions on "*": exactly that widening is reported (a warning at warn).
    assert [c.name for c in s.warnings] == ["excess-grants"], s.warnings
    widened, detail = moto_widening(s), s.warnings[0].detail
    assert "cloudformation:DeleteStack on *" in widened
    assert detail.startswith(f"{len(widened)} action(s) granted"), detail[:200]
    assert (
        "cloudformation:DeleteStack on * (by inline policy bridgehead-permissions statement "
        "BridgeheadStacksOnly, beyond the published resources" in detail
    ), detail[:2000]

    ongoing = json.loads(json.dumps(s.artifacts.ongoing_permission_policy))
    assert "ec2:CreateVpc" not in json.dumps(ongoing) and "kms:CreateKey" not in json.dumps(ongoing)
    widen_resources_for_moto(ongoing)
    iam = stack.customer_admin(account, "iam")
    iam.put_role_policy(
        RoleName=s.artifacts.role_name,
        PolicyName="bridgehead-permissions",
        PolicyDocument=json.dumps(ongoing),
    )
    steps = len(s.steps)
    await h.signal("reverify")
    s = await wait_for(
        h,
        "status",
        m.OrgStatus,
        lambda x: len(x.steps) > steps and x.state in SETTLED and "re-verified" in x.steps[-1],
        120,
    )
    assert s.state == m.OrgState.READY, s.failed_checks
    setup = {c.name: c for c in s.warnings}["setup-policy"]
    assert (
        "adding a region" in setup.detail
        and "ec2:CreateVpc" in setup.detail
        and "kms:CreateKey" in setup.detail
    )
    # Functional probes ran (the foundation exists now) but moto proves nothing: never "passed as probe".
    report = await client.get_workflow_handle(
        ids.verify_workflow_id(org, 2), result_type=m.VerificationReport
    ).result()
    functional = {c.name: c for c in report.checks if c.name.startswith("functional-")}
    assert set(functional) == {
        "functional-validate-template",
        "functional-run-instances",
        "functional-simulation",
    }
    assert {c.method for c in functional.values()} == {"not-proved"}, functional
    run = functional["functional-run-instances"].detail
    assert "emulator" in run and "would succeed" in run

    cfg = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.large",
        compute_initial_nodes=1,
        compute_max_nodes=2,
    )
    ch, cs = await start_cluster(
        client,
        m.ClusterLifecycleInput(org_id=org, name="o1", region="us-east-1", config=cfg),
        180,
    )
    assert cs.state == m.ClusterState.RUNNING, cs.failure_reason
    assert (await delete_cluster(ch)).state == m.ClusterState.DELETED


async def test_bad_verification_level_updates_are_refused_and_change_nothing(client, stack):
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    h = await start_org(client, "vlevel", "410000000008", ["us-east-1"])
    for payload, word in (
        (None, "level"),
        ({"level": "lenient"}, "level"),
        ({"level": "warn", "force": True}, "force"),
    ):
        with pytest.raises((WorkflowUpdateFailedError, RPCError)) as e:
            await (
                h.execute_update("set_verification_level", payload)
                if payload is not None
                else h.execute_update("set_verification_level")
            )
        err = e.value.cause if isinstance(e.value, WorkflowUpdateFailedError) else e.value
        assert word in str(getattr(err, "message", None) or err).lower(), (payload, err)
    s = await h.query("status", result_type=m.OrgStatus)
    assert s.state == m.OrgState.AWAITING_ROLE and s.verification_level == "strict"
    assert (await h.describe()).status.name == "RUNNING"
    res = await h.execute_update(
        "set_verification_level",
        m.SetVerificationLevelInput(level="warn"),
        result_type=m.UpdateResult,
    )
    assert res.accepted and "re-verifying" not in res.message  # no role yet: nothing to re-verify
    assert (await h.query("status", result_type=m.OrgStatus)).verification_level == "warn"
