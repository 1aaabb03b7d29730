"""Checks of what the role may do: the required actions granted (and nothing beyond them), the
cluster node roles of each region, and the regions enabled in the account."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from activities.errors import error_code
from activities.verification.context import Context, _raise_if_transient
from activities.verification.identity import get_trust
from bridgehead import ids, policies
from bridgehead import verification as v
from bridgehead.models import CheckResult


def warning(name: str, detail: str, remedy: str) -> CheckResult:
    """A passed check that still asks something of the customer (shown under ``warnings``)."""
    return CheckResult(
        name=name, passed=True, warning=True, method="analysis", detail=detail, remedy=remedy
    )


def role_policies(iam: Any, role_name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every policy of the role: inline ones and attached managed ones (customer or AWS)."""
    docs: list[tuple[str, dict[str, Any]]] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
            docs.append((f"inline policy {name}", policies.parse_document(doc)))
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for att in page["AttachedPolicies"]:
            pol = iam.get_policy(PolicyArn=att["PolicyArn"])["Policy"]
            ver = iam.get_policy_version(
                PolicyArn=att["PolicyArn"], VersionId=pol["DefaultVersionId"]
            )
            docs.append(
                (
                    f"managed policy {att['PolicyName']}",
                    policies.parse_document(ver["PolicyVersion"]["Document"]),
                )
            )
    return docs


def check_permissions(ctx: Context) -> None:
    """Every required action is granted (no Deny), and nothing beyond the required set is
    (``excess-grants``: fails under ``strict``, a warning under ``warn``)."""
    arn = ctx.arn
    try:
        docs = role_policies(ctx.client("iam"), arn["name"])
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="permissions",
                passed=False,
                method="probe",
                detail=f"could not read the role's policies ({error_code(e)})",
                remedy="Grant iam:ListAttachedRolePolicies, iam:ListRolePolicies, iam:GetRolePolicy, iam:GetPolicy and "
                "iam:GetPolicyVersion (in the permission policy).",
            )
        )
        return
    published = policies.permission_policy(
        ctx.req.org_id,
        ctx.org.aws_account_id,
        arn["name"],
        ctx.aws.platform_account(),
        arn["partition"],
    )
    setup = policies.required_actions(published)
    setup_only = policies.setup_only_actions()
    if ctx.req.phase == "ongoing":
        required = policies.required_actions(policies.ongoing_permission_policy(published))
    else:
        required = setup
    verdict = policies.evaluate_actions(required, docs)
    missing, later = policies.split_missing({a: why for a, why in verdict.items() if why})
    ctx.add(
        CheckResult(
            name="permissions",
            passed=not missing,
            method="analysis",
            detail=f"all {len(required)} required actions are granted"
            if not missing
            else f"{len(missing)} of {len(required)} required actions are missing: "
            + "; ".join(f"{a} ({why})" for a, why in sorted(missing.items())),
            remedy=""
            if not missing
            else "Attach the permission policy from this organisation's status (or add: "
            + ", ".join(sorted(missing))
            + ").",
        )
    )
    if later:
        ctx.add(
            warning(
                "later-permissions",
                "granted since this organisation onboarded and not attached yet: "
                + "; ".join(f"{a}, for {policies.LATER_ACTIONS[a]}" for a in sorted(later)),
                "Attach the current permission policy from this organisation's status.",
            )
        )
    excess = {**v.excess_grants(docs, setup), **v.widened_grants(docs, published)}
    ctx.add(v.excess_check(excess, ctx.req.level))
    if ctx.req.phase == "ongoing" and not missing:
        absent = sorted(
            a for a, why in policies.evaluate_actions(sorted(setup_only), docs).items() if why
        )
        if absent:
            needed = sorted({setup_only[a] for a in absent})
            ctx.add(
                warning(
                    "setup-policy",
                    "the ongoing policy is attached (enough for clusters); adding a region or re-creating a foundation "
                    f"needs the setup policy again, for {'; '.join(needed)} (missing: {', '.join(absent)})",
                    "Attach the setup permission policy from this organisation's status before adding a region.",
                )
            )


def check_node_roles(ctx: Context) -> None:
    """The cluster node role and instance profile of each region exist (the customer's template
    creates them; Bridgehead cannot) and the role trusts EC2 only."""
    iam = ctx.client("iam")
    problems: list[str] = []
    for region in ctx.org.regions:
        name = ids.cluster_role_name(ctx.req.org_id, region)
        try:
            trust = get_trust(iam, name)
            profiles = iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
        except ClientError as e:
            _raise_if_transient(e)
            problems.append(f"{name}: {error_code(e)}")
            continue
        if not v.node_trust_ok(trust):
            problems.append(
                f"{name}: its trust policy lets someone other than EC2 assume it ({json.dumps(trust)})"
            )
        if not any(p["InstanceProfileName"] == name for p in profiles):
            problems.append(f"{name}: no instance profile named {name} holds the role")
    ctx.add(
        CheckResult(
            name="node-roles",
            passed=not problems,
            method="probe",
            detail="every region's cluster node role and instance profile exist and trust only EC2"
            if not problems
            else "cluster node roles: " + "; ".join(problems),
            remedy=""
            if not problems
            else "Launch (or update) the role template from this organisation's status: it creates the node "
            "roles and instance profiles (node_roles in the status), each trusting only ec2.amazonaws.com.",
        )
    )


#: Grants of node policies Bridgehead published earlier, wider than today's: a node role built from
#: such a template gets a warning (update the role stack), not ACTION_REQUIRED.
EARLIER_NODE_GRANTS: dict[str, str] = {
    "ssm:UpdateInstanceInformation on *": "the node policy before Session Manager's statement "
    "was scoped to instances",
}


NODE_ROLE_WORDING = v.ExcessWording(
    name="node-role-grants",
    clean="the cluster node roles grant nothing beyond the node policy",
    beyond="granted to cluster node roles beyond the node policy",
    remedy="Bridgehead can pass these roles to the instances it launches: keep only the node policy "
    "(node_roles in this organisation's status) on each, or set the verification level to warn.",
)


def check_node_role_grants(ctx: Context) -> None:
    """What each region's node role may do (``node-role-grants``): the Bridgehead role may pass it
    to EC2, so a node role granted more than the published node policy is power the Bridgehead
    role can reach by launching an instance (found by an adversarial review, session 13: a node
    role with ``Action: *`` passed verification). Actions beyond the node policy, or its actions
    on wider resources, fail under ``strict`` and warn under ``warn``. A role whose policy predates
    the node-role reads (``AccessDenied``) gets a warning: attach the current policy."""
    iam = ctx.client("iam")
    excess: dict[str, str] = {}
    unread: list[str] = []
    for region in ctx.org.regions:
        name = ids.cluster_role_name(ctx.req.org_id, region)
        try:
            docs = role_policies(iam, name)
        except ClientError as e:
            _raise_if_transient(e)
            if error_code(e) in ("AccessDenied", "AccessDeniedException"):
                unread.append(name)
            # A missing node role is the node-roles check's finding.
            continue
        intended = policies.node_role_policy(
            ctx.req.org_id, region, ctx.org.aws_account_id, ctx.arn["partition"]
        )
        named = [(f"{name}: {where}", doc) for where, doc in docs]
        excess.update(v.excess_grants(named, policies.required_actions(intended)))
        excess.update(v.widened_grants(named, intended))
    if unread:
        ctx.add(
            warning(
                "node-role-grants",
                "the role may not read the policies of "
                + ", ".join(unread)
                + " (a permission policy from before session 13), so what they grant is not checked",
                "Attach the current permission policy from this organisation's status.",
            )
        )
        return
    earlier = {k: w for k, w in excess.items() if k in EARLIER_NODE_GRANTS}
    excess = {k: w for k, w in excess.items() if k not in earlier}
    if earlier and not excess:
        ctx.add(
            warning(
                "node-role-grants",
                "cluster node roles from an earlier template: "
                + "; ".join(f"{k} ({EARLIER_NODE_GRANTS[k]})" for k in sorted(earlier)),
                "Update the role stack from this organisation's status (it narrows them).",
            )
        )
        return
    ctx.add(v.excess_check(excess, ctx.req.level, wording=NODE_ROLE_WORDING))


def check_regions(ctx: Context) -> None:
    try:
        enabled = {
            r["RegionName"] for r in ctx.client("ec2").describe_regions(AllRegions=False)["Regions"]
        }
    except ClientError as e:
        _raise_if_transient(e)
        ctx.add(
            CheckResult(
                name="regions",
                passed=False,
                detail=f"ec2:DescribeRegions was refused ({error_code(e)})",
                remedy="Grant ec2:DescribeRegions (in the permission policy).",
            )
        )
        return
    off = [r for r in ctx.org.regions if r not in enabled]
    ctx.add(
        CheckResult(
            name="regions",
            passed=not off,
            detail="all requested regions are enabled"
            if not off
            else f"regions not enabled in the account: {', '.join(off)}",
            remedy=""
            if not off
            else "Enable these regions (Account settings > AWS Regions) or remove them from the organisation.",
        )
    )
