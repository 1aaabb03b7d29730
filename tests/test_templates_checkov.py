"""The CloudFormation templates pass checkov except findings justified one by one (template,
check id, resource) in policies/checkov-justified.json; the security properties issue 18 asks for
are also asserted directly (no SSH from anywhere, IMDSv2 required, encryption at rest, S3 public
access blocked). Planted defects must be reported. checkov runs from its own venv
(``make checkov``: it pins an old boto3); under CI a missing checkov fails."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from bridgehead import policies
from tests.support.tooling import ROOT, require_executable

JUSTIFIED = json.loads((policies.POLICY_DIR / "checkov-justified.json").read_text())["findings"]
ACCESS_ROLE = "arn:aws:iam::222222222222:role/BridgeheadAccess"


def templates() -> dict[str, dict]:
    trust = policies.trust_policy(
        "arn:aws:iam::123456789012:role/bridgehead-platform", "bh-" + "x" * 43
    )
    perms = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    nodes = policies.node_roles("acme", ["us-east-1"], "222222222222")
    return {
        "foundation": json.loads(
            policies.foundation_template(
                "acme", "us-east-1", "222222222222", {"bridgehead:org": "acme"}, ACCESS_ROLE
            )
        ),
        "cluster": json.loads(policies.cluster_template("acme", "c1", {"bridgehead:org": "acme"})),
        "customer-role": json.loads(
            policies.customer_role_template(
                "acme", "bh-" + "x" * 43, "BridgeheadAccess", trust, perms, nodes
            )
        ),
    }


def checkov(docs: dict[str, dict], tmp: Path) -> set[tuple[str, str, str]]:
    exe = require_executable(
        "checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov", how="make checkov"
    )
    for name, doc in docs.items():
        (tmp / f"{name}.json").write_text(json.dumps(doc))
    r = subprocess.run(
        [
            exe,
            "-d",
            str(tmp),
            "--framework",
            "cloudformation",
            "-o",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode in (0, 1), r.stderr[-2000:]
    out = json.loads(r.stdout)
    reports = out if isinstance(out, list) else [out]
    assert all(rep["summary"]["parsing_errors"] == 0 for rep in reports), r.stdout[-2000:]
    assert sum(rep["summary"]["passed"] for rep in reports) > 20, "checkov ran no checks"
    return {
        (Path(f["file_path"]).stem, f["check_id"], f["resource"])
        for rep in reports
        for f in rep["results"]["failed_checks"]
    }


def test_templates_have_no_unjustified_checkov_finding(tmp_path):
    found = checkov(templates(), tmp_path)
    named = {(j["template"], j["check_id"], j["resource"]) for j in JUSTIFIED}
    assert sorted(found - named) == [], (
        "checkov findings without a justification in policies/checkov-justified.json"
    )
    assert sorted(named - found) == [], "justifications that match no finding any more: remove them"
    assert all(len(j["why"]) > 60 for j in JUSTIFIED)


def test_planted_template_defects_are_reported(tmp_path):
    docs = copy.deepcopy(templates())
    f, c = docs["foundation"]["Resources"], docs["cluster"]["Resources"]
    f["HeadSecurityGroup"]["Properties"]["SecurityGroupIngress"] = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "CidrIp": "0.0.0.0/0",
            "Description": "ssh",
        }
    ]
    del c["ComputeLaunchTemplate"]["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    del f["ClusterBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    del f["ClusterBucket"]["Properties"]["BucketEncryption"]
    f["SharedFileSystem"]["Properties"]["Encrypted"] = False
    del f["ClusterStateTable"]["Properties"]["SSESpecification"]
    found = checkov(docs, tmp_path)
    expected = {
        (
            "foundation",
            "CKV_AWS_24",
            "AWS::EC2::SecurityGroup.HeadSecurityGroup",
        ),  # SSH from 0.0.0.0/0
        (
            "cluster",
            "CKV_AWS_79",
            "AWS::EC2::LaunchTemplate.ComputeLaunchTemplate",
        ),  # IMDSv1 allowed
        ("foundation", "CKV_AWS_42", "AWS::EFS::FileSystem.SharedFileSystem"),  # EFS not encrypted
        (
            "foundation",
            "CKV_AWS_119",
            "AWS::DynamoDB::Table.ClusterStateTable",
        ),  # no CMK encryption
        ("foundation", "CKV_AWS_53", "AWS::S3::Bucket.ClusterBucket"),  # public ACLs not blocked
    }
    assert expected <= found, sorted(expected - found)


# --- the properties themselves, asserted without a scanner -------------------------------------------
def ingress_rules(doc: dict) -> list[dict]:
    rules = []
    for res in doc["Resources"].values():
        if res["Type"] == "AWS::EC2::SecurityGroup":
            rules += res["Properties"].get("SecurityGroupIngress", [])
        if res["Type"] == "AWS::EC2::SecurityGroupIngress":
            rules.append({**res["Properties"], "_condition": res.get("Condition")})
    return rules


def property_problems(docs: dict[str, dict]) -> list[str]:
    """Issue 18's template requirements, checked directly on the rendered templates."""
    out: list[str] = []
    c, f = docs["cluster"]["Resources"], docs["foundation"]["Resources"]
    for name in ("foundation", "cluster"):
        for rule in ingress_rules(docs[name]):
            if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
                out.append(f"{name}: ingress from anywhere {rule}")
    for rule in ingress_rules(docs["cluster"]):
        if rule.get("FromPort") == 22 and (
            rule.get("CidrIp") != {"Ref": "SshCidr"} or rule.get("_condition") != "AllowSsh"
        ):
            out.append(f"cluster: SSH not limited to the optional SshCidr {rule}")
    for lt in [k for k, r in c.items() if r["Type"] == "AWS::EC2::LaunchTemplate"]:
        if (
            c[lt]["Properties"]["LaunchTemplateData"].get("MetadataOptions", {}).get("HttpTokens")
            != "required"
        ):
            out.append(f"cluster: {lt} allows IMDSv1")
    for k, r in c.items():
        if r["Type"] == "AWS::EC2::Instance":
            lt = r["Properties"].get("LaunchTemplate", {}).get("LaunchTemplateId", {}).get("Ref")
            if (
                lt not in c
                or c[lt]["Properties"]["LaunchTemplateData"]
                .get("MetadataOptions", {})
                .get("HttpTokens")
                != "required"
            ):
                out.append(f"cluster: instance {k} does not require IMDSv2")
            if not all(
                b["Ebs"].get("Encrypted") for b in r["Properties"].get("BlockDeviceMappings", [])
            ):
                out.append(f"cluster: {k} has an unencrypted volume")
    for b in c["ComputeLaunchTemplate"]["Properties"]["LaunchTemplateData"].get(
        "BlockDeviceMappings", [{"Ebs": {}}]
    ):
        if not b["Ebs"].get("Encrypted"):
            out.append("cluster: compute volumes not encrypted")
    if f["SharedFileSystem"]["Properties"].get("Encrypted") is not True:
        out.append("foundation: EFS not encrypted")
    if "BucketEncryption" not in f["ClusterBucket"]["Properties"]:
        out.append("foundation: bucket not encrypted")
    if set(
        f["ClusterBucket"]["Properties"]
        .get("PublicAccessBlockConfiguration", {"x": False})
        .values()
    ) != {True}:
        out.append("foundation: bucket public access not fully blocked")
    if not f["ClusterStateTable"]["Properties"].get("SSESpecification", {}).get("SSEEnabled"):
        out.append("foundation: state table not encrypted with the org key")
    return out


def test_no_ssh_from_anywhere_imdsv2_required_and_everything_encrypted_at_rest():
    import re

    docs = templates()
    assert property_problems(docs) == []
    param = docs["cluster"]["Parameters"]["SshCidr"]
    pattern = param["AllowedPattern"]
    assert (
        param["Default"] == ""
        and re.fullmatch(pattern, "")
        and re.fullmatch(pattern, "203.0.113.0/24")
    )
    assert not re.fullmatch(pattern, "0.0.0.0/0") and not re.fullmatch(pattern, "10.0.0.0/4")


PLANTED = {
    "ssh from anywhere": lambda d: d["foundation"]["Resources"]["HeadSecurityGroup"][
        "Properties"
    ].update(
        SecurityGroupIngress=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"}
        ]
    ),
    "head IMDSv1": lambda d: d["cluster"]["Resources"]["HeadLaunchTemplate"]["Properties"][
        "LaunchTemplateData"
    ]["MetadataOptions"].update(HttpTokens="optional"),
    "head without launch template": lambda d: d["cluster"]["Resources"]["HeadNode"][
        "Properties"
    ].pop("LaunchTemplate"),
    "compute IMDSv1": lambda d: d["cluster"]["Resources"]["ComputeLaunchTemplate"]["Properties"][
        "LaunchTemplateData"
    ].pop("MetadataOptions"),
    "unencrypted head volume": lambda d: d["cluster"]["Resources"]["HeadNode"]["Properties"][
        "BlockDeviceMappings"
    ][0]["Ebs"].update(Encrypted=False),
    "public bucket": lambda d: d["foundation"]["Resources"]["ClusterBucket"]["Properties"][
        "PublicAccessBlockConfiguration"
    ].update(BlockPublicPolicy=False),
    "plain table": lambda d: d["foundation"]["Resources"]["ClusterStateTable"]["Properties"].pop(
        "SSESpecification"
    ),
}


@pytest.mark.parametrize("defect", list(PLANTED))
def test_planted_property_defect_is_reported(defect):
    docs = copy.deepcopy(templates())
    PLANTED[defect](docs)
    assert property_problems(docs), defect
