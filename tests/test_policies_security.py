"""The granted policy cannot escalate, cannot adopt what it did not create, uses only condition
keys AWS supports for each action, and passes cloudsplaining. Every check has a planted-defect
twin that must make it fail."""

from __future__ import annotations

import copy
import json

import pytest

from bridgehead import policies
from tests.support.tooling import require_module

ORG, ACCOUNT, PLATFORM = "acme", "222222222222", "123456789012"
SCOPE = ("bridgehead-acme--", "bh-acme--")
JUSTIFIED = json.loads((policies.POLICY_DIR / "cloudsplaining-justified.json").read_text())[
    "findings"
]

#: Actions that let a principal create or change identities and their policies, or hand a role
#: to a service: none may be granted (PassRole is checked separately: node role only).
SELF_ESCALATION = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:AddUserToGroup",
    "iam:CreateInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    # Groups: a policy on a group the role's own user (or a user it can reach) is in.
    "iam:PutGroupPolicy",
    "iam:AttachGroupPolicy",
    "iam:CreateGroup",
    # Removing or rewriting what restricts a principal: a deny, a permissions boundary's policy.
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:DetachUserPolicy",
    "iam:DeleteUserPolicy",
    "iam:DetachGroupPolicy",
    "iam:DeleteGroupPolicy",
    "iam:DeletePolicyVersion",
    # Other credentials for an identity.
    "iam:UpdateAccessKey",
    "iam:CreateServiceSpecificCredential",
    "iam:UploadSSHPublicKey",
    "iam:UploadSigningCertificate",
    "sts:AssumeRole",
    "kms:PutKeyPolicy",
    "kms:CreateGrant",
    "kms:ScheduleKeyDeletion",
]


def granted() -> dict:
    return policies.permission_policy(ORG, ACCOUNT, "BridgeheadAccess", PLATFORM)


def planted(*statements: dict) -> dict:
    doc = granted()
    for i, st in enumerate(statements):
        doc["Statement"].append({"Sid": f"Planted{i}", "Effect": "Allow", "Resource": "*", **st})
    return doc


# --- no self-escalation ---------------------------------------------------------------------------
def escalation_grants(doc: dict) -> list[tuple[str, str]]:
    from bridgehead.verification import statement_allows

    return [
        (st.get("Sid", "?"), a)
        for st in doc["Statement"]
        if st["Effect"] == "Allow"
        for a in SELF_ESCALATION
        if statement_allows(st, a)
    ]


def pass_role_problems(doc: dict) -> list[str]:
    out = []
    for st in doc["Statement"]:
        from bridgehead.verification import statement_allows

        if st["Effect"] == "Allow" and statement_allows(st, "iam:PassRole"):
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if resources != [f"arn:aws:iam::{ACCOUNT}:role/bridgehead-acme--node-*"]:
                out.append(f"{st.get('Sid')}: PassRole on {resources}")
            if (st.get("Condition") or {}).get("StringEquals", {}).get(
                "iam:PassedToService"
            ) != "ec2.amazonaws.com":
                out.append(f"{st.get('Sid')}: PassRole not limited to EC2")
    return out


def test_granted_policy_cannot_create_roles_policies_users_or_manage_keys():
    assert escalation_grants(granted()) == []
    assert pass_role_problems(granted()) == []


@pytest.mark.parametrize(
    "statement",
    [
        {
            "Action": "iam:PutRolePolicy",
            "Resource": "arn:aws:iam::222222222222:role/bridgehead-acme--node-*",
        },
        {"Action": "iam:*", "Resource": "arn:aws:iam::222222222222:role/bridgehead-acme--*"},
        {"Action": "iam:CreateUser"},
        {"NotAction": "s3:*"},
        {"Action": "kms:ScheduleKeyDeletion"},
        # The audit's plant (session 13): only cloudsplaining had caught it.
        {
            "Action": ["iam:AttachGroupPolicy", "iam:PutGroupPolicy"],
            "Resource": "arn:aws:iam::222222222222:group/*",
        },
        {
            "Action": "iam:DeleteRolePolicy",
            "Resource": "arn:aws:iam::222222222222:role/BridgeheadAccess",
        },
        {"Action": "iam:Upload*"},
    ],
)
def test_planted_self_escalation_is_caught(statement):
    assert escalation_grants(planted(statement)), statement


def test_planted_wide_pass_role_is_caught():
    assert pass_role_problems(planted({"Action": "iam:PassRole", "Resource": "*"}))


def test_node_roles_come_from_the_customer_template_not_from_bridgehead():
    nodes = policies.node_roles(ORG, ["us-east-1", "eu-west-1"], ACCOUNT)
    trust = policies.trust_policy(
        "arn:aws:iam::123456789012:role/bridgehead-platform", "bh-" + "x" * 43
    )
    tpl = json.loads(
        policies.customer_role_template(
            ORG, "bh-" + "x" * 43, "BridgeheadAccess", trust, granted(), nodes
        )
    )
    roles = {
        r["Properties"]["RoleName"]
        for r in tpl["Resources"].values()
        if r["Type"] == "AWS::IAM::Role"
    }
    profiles = {
        r["Properties"]["InstanceProfileName"]
        for r in tpl["Resources"].values()
        if r["Type"] == "AWS::IAM::InstanceProfile"
    }
    assert roles == {
        "BridgeheadAccess",
        "bridgehead-acme--node-us-east-1",
        "bridgehead-acme--node-eu-west-1",
    }
    assert profiles == {"bridgehead-acme--node-us-east-1", "bridgehead-acme--node-eu-west-1"}
    for n in nodes:
        assert n["trust_policy"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    foundation = json.loads(
        policies.foundation_template(
            ORG,
            "us-east-1",
            ACCOUNT,
            {"bridgehead:org": ORG},
            f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess",
        )
    )
    assert not [k for k, r in foundation["Resources"].items() if r["Type"].startswith("AWS::IAM::")]
    assert (
        foundation["Outputs"]["InstanceProfileName"]["Value"] == "bridgehead-acme--node-us-east-1"
    )


# --- KMS: manage only the key the foundation created (through its key policy) --------------------
def test_foundation_key_is_managed_through_its_key_policy_only():
    role = f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess"
    key = json.loads(policies.foundation_template(ORG, "us-east-1", ACCOUNT, {}, role))[
        "Resources"
    ]["SecretsKey"]["Properties"]["KeyPolicy"]
    by_sid = {st["Sid"]: st for st in key["Statement"]}
    assert by_sid["BridgeheadManagesOnlyThisKey"]["Principal"] == {"AWS": role}
    assert "kms:ScheduleKeyDeletion" in by_sid["BridgeheadManagesOnlyThisKey"]["Action"]
    # The IAM policy grants no KMS action on existing keys at all: only CreateKey/TagResource with
    # the org tag in the request, and aliases under the org prefix.
    kms = [
        st
        for st in granted()["Statement"]
        if any(
            str(a).startswith("kms:")
            for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        )
    ]
    assert {st["Sid"] for st in kms} == {"CreateOrgKeysTaggedAtCreation", "OrgKeyAliases"}
    assert not [st for st in kms if "aws:ResourceTag/bridgehead:org" in json.dumps(st)]


# --- tag-then-manage ---------------------------------------------------------------------------------
def test_no_statement_lets_the_role_adopt_resources_by_tagging_them():
    from bridgehead.policy_checks import tag_then_manage_findings

    require_module("policy_sentry")
    assert tag_then_manage_findings(granted(), SCOPE) == []


def test_planted_tag_then_manage_is_caught():
    """The KMS statement removed by issue 18: manage any key that carries the org's tag, while
    kms:TagResource on * may put that tag on any key."""
    from bridgehead.policy_checks import tag_then_manage_findings

    doc = planted(
        {
            "Action": ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"],
            "Resource": f"arn:aws:kms:*:{ACCOUNT}:key/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/bridgehead:org": ORG}},
        }
    )
    found = tag_then_manage_findings(doc, SCOPE)
    assert {
        "sid": "CreateOrgKeysTaggedAtCreation",
        "action": "kms:TagResource",
        "manage_sid": "Planted0",
        "tag": "bridgehead:org",
    } in found
    # And EC2 tagging without the creation-time condition key is caught the same way.
    doc = granted()
    for st in doc["Statement"]:
        if st["Sid"] == "TagOnlyWhileCreating":
            del st["Condition"]["ForAnyValue:StringEquals"]
    assert any(
        f["sid"] == "TagOnlyWhileCreating" and f["manage_sid"] == "ChangeOnlyThisOrgsEc2Resources"
        for f in tag_then_manage_findings(doc, SCOPE)
    )


# --- condition keys against AWS's Service Authorization Reference ----------------------------------
def test_every_condition_key_is_supported_by_each_action_of_its_statement():
    require_module("policy_sentry")
    from bridgehead.policy_checks import condition_key_findings

    assert condition_key_findings(granted()) == []
    for region in ("us-east-1", "eu-west-1"):
        assert condition_key_findings(policies.node_role_policy(ORG, region, ACCOUNT)) == []
    dropbox = json.loads(
        (policies.POLICY_DIR / "dropbox-user.json")
        .read_text()
        .replace("{{PARTITION}}", "aws")
        .replace("{{INBOX_BUCKET}}", "inbox")
    )
    assert condition_key_findings(dropbox) == []
    # Resource policies too: the trust policy and the foundation key's key policy.
    assert (
        condition_key_findings(
            policies.trust_policy("arn:aws:iam::123456789012:role/bridgehead-platform", "bh-x")
        )
        == []
    )
    key = json.loads(
        policies.foundation_template(
            ORG, "us-east-1", ACCOUNT, {}, f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess"
        )
    )
    key_policy = key["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]
    assert (
        condition_key_findings(
            {"Statement": [st for st in key_policy["Statement"] if st["Action"] != "kms:*"]}
        )
        == []
    )


@pytest.mark.parametrize(
    "statement,needle",
    [
        # The EFS statement before issue 18: creation gated on a tag of a resource that does not exist yet.
        (
            {
                "Action": "elasticfilesystem:CreateFileSystem",
                "Condition": {"StringEquals": {"aws:ResourceTag/bridgehead:org": ORG}},
            },
            "does not support condition key aws:ResourceTag/bridgehead:org",
        ),
        (
            {
                "Action": "kms:CreateKey",
                "Condition": {"StringEquals": {"aws:ResourceTag/bridgehead:org": ORG}},
            },
            "aws:ResourceTag is never present",
        ),
        (
            {
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::222222222222:role/x",
                "Condition": {"StringEquals": {"ec2:Owner": "amazon"}},
            },
            "does not support condition key ec2:Owner",
        ),
        (
            {
                "Action": "elasticfilesystem:CreateFileSystem",
                "Resource": "arn:aws:elasticfilesystem:*:222222222222:file-system/*",
            },
            "has no resource type",
        ),
        ({"Action": "ec2:LaunchRockets"}, "unknown to the Service Authorization Reference"),
    ],
)
def test_planted_unsupported_condition_key_is_caught(statement, needle):
    require_module("policy_sentry")
    from bridgehead.policy_checks import condition_key_findings

    found = [f for f in condition_key_findings(planted(statement)) if f["sid"] == "Planted0"]
    assert found and any(needle in f["problem"] for f in found), found


# --- cloudsplaining -----------------------------------------------------------------------------------
def _key(f: dict) -> str:
    return json.dumps({k: v for k, v in f.items() if k != "why"}, sort_keys=True)


def cloudsplaining_verdict(doc: dict) -> tuple[list[dict], list[dict], list[str]]:
    """(findings with cloudsplaining's defaults, findings ignoring constraints that no
    justification names exactly, justifications that match no finding)."""
    from bridgehead.policy_checks import cloudsplaining_findings

    default = cloudsplaining_findings(doc, ignore_constraints=False)
    strict = cloudsplaining_findings(doc, ignore_constraints=True)
    justified = {_key(j) for j in JUSTIFIED}
    found = {_key(f) for f in strict}
    return default, [f for f in strict if _key(f) not in justified], sorted(justified - found)


def test_cloudsplaining_finds_no_escalation_or_exposure_and_every_strict_finding_is_justified():
    require_module("cloudsplaining")
    default, unjustified, stale = cloudsplaining_verdict(granted())
    assert default == [], "cloudsplaining (default settings) must report nothing"
    assert unjustified == [], (
        "findings (ignoring conditions and ARNs) without an exact justification"
    )
    assert stale == [], "justifications that no longer match a finding: remove or update them"
    assert all(len(j["why"]) > 60 for j in JUSTIFIED)
    node = policies.node_role_policy(ORG, "us-east-1", ACCOUNT)
    assert cloudsplaining_verdict(node)[0] == []


@pytest.mark.parametrize(
    "statement,action",
    [
        ({"Action": "iam:CreateAccessKey"}, "iam:CreateAccessKey"),
        ({"Action": "iam:CreateUser"}, "iam:CreateUser"),
        ({"Action": "kms:ScheduleKeyDeletion"}, "kms:ScheduleKeyDeletion"),
        ({"Action": "ec2:TerminateInstances"}, "ec2:TerminateInstances"),
        ({"Action": "kms:PutKeyPolicy"}, "kms:PutKeyPolicy"),
    ],
)
def test_planted_dangerous_grant_fails_the_cloudsplaining_check(statement, action):
    require_module("cloudsplaining")
    default, unjustified, _ = cloudsplaining_verdict(planted(statement))
    assert any(
        f.get("action") == action or action.lower() in json.dumps(f).lower()
        for f in default + unjustified
    ), (default, unjustified)


def test_planted_grant_inside_a_justified_statement_is_unjustified():
    """Adding PutRolePolicy to the PassRole statement keeps every existing justification valid,
    yet the new (statement, action) pair is not justified."""
    require_module("cloudsplaining")
    doc = granted()
    for st in doc["Statement"]:
        if st["Sid"] == "PassOnlyTheClusterRoleToEc2":
            st["Action"] = ["iam:PassRole", "iam:PutRolePolicy"]
    _, unjustified, _ = cloudsplaining_verdict(doc)
    assert any(
        f.get("sid") == "PassOnlyTheClusterRoleToEc2" and f.get("action") == "iam:PutRolePolicy"
        for f in unjustified
    ) or any("iam:PutRolePolicy" in json.dumps(f) for f in unjustified), unjustified


def test_removed_grant_makes_its_justification_stale():
    require_module("cloudsplaining")
    doc = copy.deepcopy(granted())
    doc["Statement"] = [
        st for st in doc["Statement"] if st["Sid"] != "AutoScalingServiceLinkedRoleOnly"
    ]
    _, _, stale = cloudsplaining_verdict(doc)
    assert any("AutoScalingServiceLinkedRoleOnly" in s for s in stale)


# --- setup vs ongoing ------------------------------------------------------------------------------------
def test_ongoing_policy_is_the_setup_policy_without_network_storage_or_key_creation():
    setup = granted()
    ongoing = policies.ongoing_permission_policy(setup)
    s_actions, o_actions = (
        set(policies.required_actions(setup)),
        set(policies.required_actions(ongoing)),
    )
    setup_only = set(policies.setup_only_actions())
    assert setup_only <= s_actions, (
        "every setup-only action is in the setup policy (no stale entry)"
    )
    assert o_actions == s_actions - setup_only
    for creating in (
        "ec2:CreateVpc",
        "ec2:CreateSubnet",
        "ec2:CreateNatGateway",
        "ec2:CreateSecurityGroup",
        "kms:CreateKey",
        "s3:CreateBucket",
        "dynamodb:CreateTable",
        "elasticfilesystem:CreateFileSystem",
    ):
        assert creating not in o_actions
    # What clusters need stays.
    for needed in (
        "cloudformation:CreateStack",
        "ec2:RunInstances",
        "ec2:CreateLaunchTemplate",
        "iam:PassRole",
        "autoscaling:CreateAutoScalingGroup",
    ):
        assert needed in o_actions
    require_module("cloudsplaining")
    assert cloudsplaining_verdict(ongoing)[0] == []
    from bridgehead.policy_checks import condition_key_findings, tag_then_manage_findings

    assert condition_key_findings(ongoing) == [] and tag_then_manage_findings(ongoing, SCOPE) == []
    assert escalation_grants(ongoing) == []


def kms_tagging_problems(doc: dict) -> list[str]:
    """kms:TagResource may not write tags other than bridgehead:* (plus the aws:cloudformation:*
    tags CloudFormation adds): another tag on a customer's key could satisfy the customer's own
    tag-based (ABAC) policies."""
    from bridgehead.verification import statement_allows

    out = []
    for st in doc["Statement"]:
        if st["Effect"] == "Allow" and statement_allows(st, "kms:TagResource"):
            keys = (st.get("Condition") or {}).get("ForAllValues:StringLike", {}).get("aws:TagKeys")
            if keys is None or not all(
                k.startswith(("bridgehead:", "aws:cloudformation:")) for k in keys
            ):
                out.append(f"{st.get('Sid')}: kms:TagResource may write any tag key ({keys})")
    return out


def test_kms_tagging_is_limited_to_bridgeheads_own_tag_keys():
    assert kms_tagging_problems(granted()) == []
    doc = granted()
    for st in doc["Statement"]:
        if st["Sid"] == "CreateOrgKeysTaggedAtCreation":
            del st["Condition"]["ForAllValues:StringLike"]
    assert kms_tagging_problems(doc)
    assert kms_tagging_problems(
        planted(
            {
                "Action": "kms:TagResource",
                "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": ["*"]}},
            }
        )
    )
