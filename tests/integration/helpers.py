from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bridgehead import ids
from bridgehead import models as m
from starter.local import LocalStack

#: Where verification (and what follows it) settles: the organisation needs nothing more from us.
SETTLED = (m.OrgState.READY, m.OrgState.ACTION_REQUIRED)


async def ended_with(handle: Any) -> str | None:
    """Why ``handle``'s run ended, if it failed, was terminated, timed out or was cancelled (such
    a run never answers differently again)."""
    from starter.org_status import UNSUCCESSFUL, failure_reason

    desc = await handle.describe()
    if desc.status is None or desc.status.name not in UNSUCCESSFUL:
        return None
    return f"{desc.status.name}: {await failure_reason(handle)}"


async def wait_for(handle: Any, qname: str, rtype: type, pred: Any, timeout: float = 120) -> Any:
    """Query ``qname`` until ``pred`` holds; fails at the timeout with the last status, or as soon
    as the run has ended without it (with the run's failure: e.g. an AWS account another test
    module's organisation already holds on the same embedded stack)."""
    deadline = time.monotonic() + timeout
    next_look = time.monotonic() + 2
    while True:
        s = await handle.query(qname, result_type=rtype)
        if pred(s):
            return s
        if time.monotonic() > next_look:
            next_look = time.monotonic() + 2
            why = await ended_with(handle)
            if why is not None:
                raise AssertionError(f"the run ended ({why}); last status: {brief_of(s)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {brief_of(s)}")
        await asyncio.sleep(0.3)


def brief_of(s: Any) -> Any:
    brief = {
        k: getattr(s, k)
        for k in ("state", "last_error", "failure_reason", "steps")
        if hasattr(s, k)
    }
    return brief or s


def org_input(
    org_id: str, account: str, regions: list[str] | None = None
) -> m.OnboardOrganizationInput:
    """The input a customer would give to onboard ``org_id`` in ``account``."""
    return m.OnboardOrganizationInput(
        org_id=org_id,
        display_name=org_id.title(),
        admin_email=f"admin@{org_id}.example",
        aws_account_id=account,
        **({"regions": regions} if regions else {}),
    )


async def start_org(
    client: Any, org_id: str, account: str, regions: list[str] | None = None
) -> Any:
    inp = org_input(org_id, account, regions)
    h = await client.start_workflow(
        "OnboardOrganization", inp, id=f"org-{org_id}", task_queue="bridgehead"
    )
    await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE)
    return h


def launch_role_template(
    stack: LocalStack, account: str, status: m.OrgStatus, stack_name: str, mutate: Any = None
) -> str:
    """The customer launches our template (optionally altered) and returns the role ARN."""
    tpl = json.loads(status.artifacts.cloudformation_template)
    if mutate:
        mutate(tpl)
    cfn = stack.customer_admin(account, "cloudformation")
    cfn.create_stack(
        StackName=stack_name, TemplateBody=json.dumps(tpl), Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"][0]["OutputValue"]


def widen_resources_for_moto(doc: dict[str, Any]) -> None:
    """moto (5.2.5) evaluates resources only for IAM calls that name a role (``RoleName``), STS and
    SQS; for every other call (other services, and IAM calls such as GetInstanceProfile or
    GetPolicy) it checks the action against resource ``*``, which no ARN pattern matches. So for
    those the exact action list is kept and the resource scoping (which moto cannot evaluate) widened."""
    for st in doc["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        if not all(
            a.startswith("sts:")
            or (
                a.startswith("iam:")
                and a.endswith(("Role", "RolePolicy", "RolePolicies", "ForRole"))
            )
            for a in actions
        ):
            st["Resource"] = "*"


async def accept_moto_widening(handle: Any, stack: LocalStack) -> None:
    """On the enforcing stack ``create_role_directly`` grants the scoped actions on ``*`` (moto
    cannot evaluate ARNs), which the verifier rightly reports as excess grants (issue 18
    follow-up: every published action's scope is compared). Such an organisation runs at
    verification level ``warn`` so it can be READY; ``moto_widening`` is the exact warning."""
    if stack.enforcing:
        await handle.execute_update(
            "set_verification_level",
            m.SetVerificationLevelInput(level="warn"),
            result_type=m.UpdateResult,
        )


def moto_widening(status: m.OrgStatus, doc: dict[str, Any] | None = None) -> dict[str, str]:
    """What the verifier must report for the role ``create_role_directly`` made on the enforcing
    stack (or for ``doc``, already widened): ``{"<action> on *": where}``, one per scoped action
    of a widened statement."""
    from bridgehead.verification import widened_grants

    if doc is None:
        doc = json.loads(json.dumps(status.artifacts.permission_policy))
        widen_resources_for_moto(doc)
    return widened_grants(
        [("inline policy bridgehead-permissions", doc)], status.artifacts.permission_policy
    )


def create_role_directly(
    stack: LocalStack, account: str, status: m.OrgStatus, trust: Any = None, perms: Any = None
) -> str:
    """Option B of the instructions: the customer creates the role with the IAM API (moto's IAM
    enforcement cannot read inline policies of roles CloudFormation created)."""
    a = status.artifacts
    trust_doc, perm_doc = (
        json.loads(json.dumps(a.trust_policy)),
        json.loads(json.dumps(a.permission_policy)),
    )
    if stack.enforcing:
        widen_resources_for_moto(perm_doc)
    for fn, doc in ((trust, trust_doc), (perms, perm_doc)):
        if fn:
            fn(doc)
    iam = stack.customer_admin(account, "iam")
    arn = iam.create_role(RoleName=a.role_name, AssumeRolePolicyDocument=json.dumps(trust_doc))[
        "Role"
    ]["Arn"]
    iam.put_role_policy(
        RoleName=a.role_name,
        PolicyName="bridgehead-permissions",
        PolicyDocument=json.dumps(perm_doc),
    )
    create_node_roles(iam, a)
    return arn


def create_node_roles(iam: Any, artifacts: m.OrgArtifacts) -> None:
    """The cluster node roles and instance profiles the customer creates beside the role
    (Bridgehead's role cannot create them)."""
    for node in artifacts.node_roles:
        iam.create_role(
            RoleName=node["name"], AssumeRolePolicyDocument=json.dumps(node["trust_policy"])
        )
        iam.put_role_policy(
            RoleName=node["name"],
            PolicyName=node["policy_name"],
            PolicyDocument=json.dumps(node["policy"]),
        )
        iam.create_instance_profile(InstanceProfileName=node["name"])
        iam.add_role_to_instance_profile(InstanceProfileName=node["name"], RoleName=node["name"])


async def submit_role_and_settle(handle: Any, role_arn: str, timeout: float = 300) -> m.OrgStatus:
    """Submit the role and wait until the organisation settles (READY or ACTION_REQUIRED)."""
    await handle.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=role_arn), result_type=m.UpdateResult
    )
    return await wait_for(handle, "status", m.OrgStatus, lambda s: s.state in SETTLED, timeout)


async def onboard_ready(
    client: Any, stack: LocalStack, org_id: str, account: str, regions: list[str] | None = None
) -> m.OrgStatus:
    h = await start_org(client, org_id, account, regions)
    s = await h.query("status", result_type=m.OrgStatus)
    arn = launch_role_template(stack, account, s, f"bridgehead-access-{org_id}")
    return await submit_role_and_settle(h, arn, 300)


async def start_cluster(
    client: Any,
    inp: m.ClusterLifecycleInput,
    timeout: float = 180,
) -> tuple[Any, m.ClusterStatus]:
    """Start ``ClusterLifecycle`` under its contract id and wait until it is RUNNING or FAILED;
    returns the handle and that status (the caller asserts which)."""
    handle = await client.start_workflow(
        "ClusterLifecycle",
        inp,
        id=ids.cluster_workflow_id(inp.org_id, inp.name),
        task_queue="bridgehead",
        result_type=m.ClusterResult,
    )
    done = (m.ClusterState.RUNNING, m.ClusterState.FAILED)
    status = await wait_for(handle, "status", m.ClusterStatus, lambda s: s.state in done, timeout)
    return handle, status


async def delete_cluster(handle: Any) -> m.ClusterResult:
    """Send ``delete`` and return the cluster's result."""
    await handle.signal("delete")
    return await handle.result()


async def history_json(client: Any, wf_id: str) -> str:
    h = client.get_workflow_handle(wf_id)
    hist = await h.fetch_history()
    return hist.to_json()


def ledger_org(org_id: str, account: str, **extra: Any) -> tuple[Any, Any]:
    """A READY organisation written straight into the registry (for ledger and metering tests
    that need no onboarding): returns the platform ``Aws`` and the ``Registry``."""
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    aws = Aws(get_settings())
    reg = Registry(aws)
    reg.ensure_tables()
    reg.put(
        {
            "pk": f"ORG#{org_id}",
            "sk": "META",
            "org_id": org_id,
            "aws_account_id": account,
            "external_id": f"bh-{org_id}",
            "regions": ["us-east-1"],
            "state": "READY",
            **extra,
        }
    )
    return aws, reg


def temporary_admin_keys(endpoint: str, account: str, name: str) -> dict[str, str]:
    """Temporary admin credentials in a customer account (an assumed role: ASIA... with a
    session token), the only kind create_role_for_me accepts."""
    import json

    from starter.local import customer_admin

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
    iam = customer_admin(endpoint, account, "iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=name,
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    sts = customer_admin(endpoint, account, "sts")
    return sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{name}", RoleSessionName="onboarding"
    )["Credentials"]


def billed_cluster(
    reg: Any,
    org_id: str,
    start: Any,
    end: Any = None,
    *,
    state: str = "DELETED",
    name: str = "c1",
    nodes: int = 2,
    **fields: Any,
) -> Any:
    """Write cluster ``name`` (us-east-1) straight into the registry with one usage segment: a
    t3.medium head and ``nodes`` c5.xlarge compute nodes from ``start`` to ``end`` (None: still
    running). Returns the segment."""
    from bridgehead import models as m

    seg = m.UsageSegment(
        start=start,
        end=end,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=nodes,
    )
    reg.put_cluster(
        org_id,
        name,
        {
            "name": name,
            "region": "us-east-1",
            "state": state,
            "segments": [seg.model_dump(mode="json")],
            **fields,
        },
    )
    return seg
