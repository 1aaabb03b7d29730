"""Pure functions over the documents in ``policies/``: render them, analyse trust policies, and
evaluate whether a set of IAM policies grants the actions Bridgehead needs.

No AWS calls here; activities fetch documents and call these functions, tests call them directly.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from bridgehead import ids

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
TAG_ORG = "bridgehead:org"


@lru_cache
def load(name: str) -> Any:
    return json.loads((POLICY_DIR / name).read_text())


def _substitute(doc: Any, values: dict[str, str]) -> Any:
    if "ORG_ID" in values and "PREFIX" not in values:
        values = {**values, "PREFIX": ids.org_prefix(values["ORG_ID"])}
    if isinstance(doc, str):
        for k, v in values.items():
            doc = doc.replace("{{" + k + "}}", v)
        return doc
    if isinstance(doc, list):
        return [_substitute(x, values) for x in doc]
    if isinstance(doc, dict):
        return {k: _substitute(v, values) for k, v in doc.items()}
    return doc


def partition_of(arn: str) -> str:
    return arn.split(":")[1] if arn.startswith("arn:") else "aws"


def trust_policy(platform_principal: str, external_id: str) -> dict[str, Any]:
    return _substitute(
        copy.deepcopy(load("trust-policy.json")),
        {"PLATFORM_PRINCIPAL": platform_principal, "EXTERNAL_ID": external_id},
    )


def permission_policy(
    org_id: str, account_id: str, role_name: str, platform_account_id: str, partition: str = "aws"
) -> dict[str, Any]:
    return _substitute(
        copy.deepcopy(load("customer-permissions.json")),
        {
            "ORG_ID": org_id,
            "ACCOUNT_ID": account_id,
            "ROLE_NAME": role_name,
            "PARTITION": partition,
            "PLATFORM_ACCOUNT_ID": platform_account_id,
        },
    )


#: Trust policy of the cluster node role: only EC2 instances may assume it.
NODE_ROLE_TRUST: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
NODE_POLICY_NAME = "cluster-node"


def node_role_policy(
    org_id: str, region: str, account_id: str, partition: str = "aws"
) -> dict[str, Any]:
    """What a cluster node of ``region`` may do: its foundation's bucket and state table, and
    Session Manager (the foundation key's policy lets it decrypt; no IAM statement does)."""
    values = {
        "ORG_ID": org_id,
        "REGION": region,
        "ACCOUNT_ID": account_id,
        "PARTITION": partition,
        "BUCKET_NAME": bucket_name(org_id, region, account_id),
    }
    return _substitute(copy.deepcopy(load("cluster-node-role.json")), values)


def node_roles(
    org_id: str, regions: list[str], account_id: str, partition: str = "aws"
) -> list[dict[str, Any]]:
    """The cluster node roles (one per region, each with an instance profile of the same name)
    that the *customer* creates with the role template (or create-role-for-me does with the
    customer's keys). Bridgehead's own role can pass them to EC2 but cannot create or change them."""
    return [
        {
            "name": ids.cluster_role_name(org_id, r),
            "region": r,
            "trust_policy": copy.deepcopy(NODE_ROLE_TRUST),
            "policy_name": NODE_POLICY_NAME,
            "policy": node_role_policy(org_id, r, account_id, partition),
        }
        for r in regions
    ]


def customer_role_template(
    org_id: str,
    external_id: str,
    role_name: str,
    trust: dict[str, Any],
    permissions: dict[str, Any],
    nodes: list[dict[str, Any]] | None = None,
) -> str:
    tpl = _substitute(
        copy.deepcopy(load("customer-role.template.json")),
        {"ORG_ID": org_id, "EXTERNAL_ID": external_id, "ROLE_NAME": role_name},
    )
    props = tpl["Resources"]["BridgeheadAccessRole"]["Properties"]
    # The template's External ID parameter feeds the trust condition, so the stack stays editable.
    trust = copy.deepcopy(trust)
    for st in trust["Statement"]:
        st["Condition"]["StringEquals"]["sts:ExternalId"] = {"Ref": "ExternalId"}
    props["AssumeRolePolicyDocument"] = trust
    props["Policies"][0]["PolicyDocument"] = permissions
    for node in nodes or []:
        key = "".join(p.title() for p in node["region"].split("-"))
        tpl["Resources"][f"NodeRole{key}"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": node["name"],
                "Description": f"Bridgehead cluster nodes of {org_id} in {node['region']}",
                "AssumeRolePolicyDocument": node["trust_policy"],
                "Policies": [{"PolicyName": node["policy_name"], "PolicyDocument": node["policy"]}],
                "Tags": [{"Key": TAG_ORG, "Value": org_id}],
            },
        }
        tpl["Resources"][f"NodeProfile{key}"] = {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {
                "InstanceProfileName": node["name"],
                "Roles": [{"Ref": f"NodeRole{key}"}],
            },
        }
    return json.dumps(tpl, indent=2)


#: Actions granted since organisations first onboarded, for a feature that degrades without them:
#: a role that lacks one still passes ``permissions`` (the organisation stays READY) and a warning
#: names the feature and the action, until the customer attaches the current policy.
LATER_ACTIONS: dict[str, str] = {
    "ec2:GetConsoleOutput": "the head node's console output in the reason of a failed bootstrap",
    "cloudwatch:GetMetricStatistics": "idle detection (auto_stop_idle_minutes): the head node's CPU",
}


def split_missing(missing: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Missing actions as (required ones, later-added ones of :data:`LATER_ACTIONS`)."""
    later = {a: why for a, why in missing.items() if a in LATER_ACTIONS}
    return {a: why for a, why in missing.items() if a not in later}, later


def setup_only_actions() -> dict[str, str]:
    """``{action: what it is needed for}`` for the actions only foundation building needs."""
    return {
        a: g["needed_for"] for g in load("setup-only-actions.json")["groups"] for a in g["actions"]
    }


def ongoing_permission_policy(setup: dict[str, Any]) -> dict[str, Any]:
    """The narrower policy a customer may attach once the organisation is READY: the setup
    policy without the actions only foundation building needs (statements left empty dropped)."""
    drop = {a.lower() for a in setup_only_actions()}
    doc = copy.deepcopy(setup)
    kept = []
    for st in doc["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        acts = [a for a in acts if a.lower() not in drop]
        if acts:
            st["Action"] = acts if len(acts) > 1 else acts[0]
            kept.append(st)
    doc["Statement"] = kept
    return doc


def required_actions(permissions: dict[str, Any]) -> list[str]:
    """Every action the permission policy grants is one Bridgehead needs."""
    out: list[str] = []
    for st in permissions["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        out.extend(a for a in acts if a not in out)
    return out


def parse_document(doc: Any) -> dict[str, Any]:
    """A policy document as returned by IAM: a dict, JSON, URL-encoded JSON, or (moto, for
    CloudFormation-created inline policies) a Python literal."""
    import ast
    import urllib.parse

    if isinstance(doc, dict):
        return doc
    for attempt in (doc, urllib.parse.unquote(doc)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    value = ast.literal_eval(doc)
    if not isinstance(value, dict):
        raise ValueError("policy document is not an object")
    return value


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _matches(patterns: list[str], action: str) -> bool:
    a = action.lower()
    return any(fnmatch.fnmatchcase(a, p.lower()) for p in patterns)


def evaluate_actions(
    actions: list[str], documents: list[tuple[str, dict[str, Any]]]
) -> dict[str, str | None]:
    """For each action, ``None`` if some Allow grants it and no Deny matches it, else why not.

    ``documents`` are ``(source name, policy document)``. Resource scoping and conditions of Allow
    statements are not second-guessed (the customer may scope them); any matching Deny counts.
    """
    result: dict[str, str | None] = {}
    for action in actions:
        allowed_by: str | None = None
        denied_by: str | None = None
        for source, doc in documents:
            for i, st in enumerate(_as_list(doc.get("Statement"))):
                if "Action" in st:
                    hit = _matches(_as_list(st["Action"]), action)
                elif "NotAction" in st:
                    hit = not _matches(_as_list(st["NotAction"]), action)
                else:
                    hit = False
                if not hit:
                    continue
                where = f"{source} statement {st.get('Sid') or i}"
                if st.get("Effect") == "Deny":
                    denied_by = denied_by or where
                elif st.get("Effect") == "Allow":
                    allowed_by = allowed_by or where
        if denied_by:
            result[action] = f"denied by {denied_by}"
        elif not allowed_by:
            result[action] = "not granted by any attached or inline policy"
        else:
            result[action] = None
    return result


def bucket_name(org_id: str, region: str, account_id: str) -> str:
    return ids.foundation_bucket(org_id, region, account_id)


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def foundation_template(
    org_id: str,
    region: str,
    account_id: str,
    tags: dict[str, str],
    access_role_arn: str | None = None,
) -> str:
    """``access_role_arn``: the organisation's Bridgehead role, the only principal (besides the
    account) its key policy lets manage the foundation key; default ``role/BridgeheadAccess``."""
    tpl = _substitute(
        copy.deepcopy(load("region-foundation.template.json")),
        {
            "ORG_ID": org_id,
            "REGION": region,
            "BUCKET_NAME": bucket_name(org_id, region, account_id),
        },
    )
    role: Any = access_role_arn or {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/BridgeheadAccess"
    }
    for st in tpl["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]:
        if st["Principal"].get("AWS") == "{{ACCESS_ROLE_ARN}}":
            st["Principal"]["AWS"] = role
    for res in tpl["Resources"].values():
        props = res.get("Properties", {})
        for key in ("Tags", "FileSystemTags"):
            if props.get(key) == "__TAGS__":
                props[key] = _tags(tags)
    return json.dumps(tpl, indent=1, sort_keys=True)


def cluster_template(
    org_id: str, name: str, tags: dict[str, str], bootstrap_minutes: int = 20
) -> str:
    """``bootstrap_minutes``: the head node's ``CreationPolicy`` timeout (readiness signal)."""
    tpl = _substitute(
        copy.deepcopy(load("cluster.template.json")),
        {"ORG_ID": org_id, "CLUSTER_NAME": name, "BOOTSTRAP_MINUTES": str(bootstrap_minutes)},
    )
    res = tpl["Resources"]
    res["HeadNode"]["Properties"]["Tags"] = _tags(
        {**tags, "bridgehead:node": "head", "Name": f"{name}-head"}
    )
    res["HeadSshSecurityGroup"]["Properties"]["Tags"] = _tags(
        {**tags, "bridgehead:node": "head", "Name": f"{name}-head-ssh"}
    )
    spec = res["ComputeLaunchTemplate"]["Properties"]["LaunchTemplateData"]["TagSpecifications"][0]
    spec["Tags"] = _tags({**tags, "bridgehead:node": "compute", "Name": f"{name}-compute"})
    res["ComputeGroup"]["Properties"]["Tags"] = [
        {**t, "PropagateAtLaunch": True} for t in _tags({**tags, "bridgehead:node": "compute"})
    ]
    return json.dumps(tpl, indent=1, sort_keys=True)


def render_cluster_template(ref: Any) -> str:
    """The template a ``ClusterTemplate`` (bridgehead.models.stacks) stands for."""
    return cluster_template(ref.org_id, ref.name, ref.tags, bootstrap_minutes=ref.bootstrap_minutes)
