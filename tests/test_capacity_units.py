"""Pure checks of capacity failover and head-node access: the config rules, the classification
of EC2's capacity errors, the console tail's bounds, and the templates (two private subnets in
two zones; the head node's CreationPolicy and cfn-signal; SSH only on the cluster's own group).
Each check has a planted-defect twin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridgehead import capacity, policies
from bridgehead import models as m

BASE: dict[str, Any] = {"head_instance_type": "t3.medium"}


@pytest.mark.parametrize(
    "extra, error",
    [
        ({}, "give exactly one of compute_instance_type"),
        (
            {"compute_instance_type": "c5.large", "compute_instance_types": ["c5.large"]},
            "give exactly one of compute_instance_type",
        ),
        ({"compute_instance_types": []}, "List should have at least 1 item"),
        ({"compute_instance_types": ["c5.large", "c5.large"]}, "each type may appear only once"),
        ({"compute_instance_type": "c5.large", "ssh_cidr": "203.0.113.0/24"}, "go together"),
        ({"compute_instance_type": "c5.large", "ssh_key_name": "ops"}, "go together"),
        (
            {"compute_instance_type": "c5.large", "ssh_cidr": "0.0.0.0/0", "ssh_key_name": "k"},
            "String should match pattern",
        ),
    ],
)
def test_config_refuses_ambiguous_compute_types_and_half_ssh(extra, error):
    with pytest.raises(ValidationError) as e:
        m.ClusterConfig(**BASE, **extra)
    assert error in str(e.value)


def test_config_accepts_either_form_and_lists_types_in_order():
    assert m.ClusterConfig(**BASE, compute_instance_type="c5.large").compute_types == ["c5.large"]
    c = m.ClusterConfig(**BASE, compute_instance_types=["c5.xlarge", "m5.xlarge"])
    assert c.compute_types == ["c5.xlarge", "m5.xlarge"] and c.compute_instance_type is None
    # A run's config survives the JSON round trip of history and continue-as-new unchanged.
    assert m.ClusterConfig.model_validate_json(c.model_dump_json()) == c


def test_twin_a_config_without_the_rule_takes_both_fields(monkeypatch):
    """Planted defect: the exactly-one rule removed; the ambiguous config gets through."""

    class Loose(m.ClusterConfig):
        def _one_compute_type_field(self):  # type: ignore[override]
            return self

    loose = Loose(**BASE, compute_instance_type="c5.large", compute_instance_types=["m5.large"])
    assert loose.compute_types == ["m5.large"]  # which one runs is now a guess


@pytest.mark.parametrize(
    "reason, code",
    [
        (
            "Group did not stabilize. Failed Scaling Activity: We currently do not have sufficient "
            "c5.xlarge capacity in the Availability Zone you requested (us-east-1a).",
            "InsufficientInstanceCapacity",
        ),
        (
            "Your requested instance type (c7g.large) is not supported in your requested "
            "Availability Zone (us-east-1e). (Service: Ec2, Status Code: 400, Error Code: Unsupported)",
            "Unsupported",
        ),
        (
            "You have requested more instances (21) than your current instance limit of 20 allows",
            "InstanceLimitExceeded",
        ),
        (
            "Resource handler returned message: InsufficientInstanceCapacity",
            "InsufficientInstanceCapacity",
        ),
        ("UnsupportedOperation: the instance type does not support hibernation", None),
        ("Failed to receive 1 resource signal(s) within the specified duration", None),
        ("Instance i-1 failed to stabilize", None),
    ],
)
def test_capacity_errors_are_recognised_and_nothing_else_is(reason, code):
    assert capacity.capacity_error(["", reason]) == code


def test_twin_a_substring_match_would_retry_an_unsupported_operation():
    """Planted defect: matching ``Unsupported`` as a substring takes ``UnsupportedOperation``
    (a configuration error no zone fixes) for a capacity error."""
    loose = lambda r: "Unsupported" if "Unsupported" in r else None  # noqa: E731
    reason = "UnsupportedOperation: the instance type does not support hibernation"
    assert loose(reason) == "Unsupported" and capacity.capacity_error([reason]) is None


def test_attempts_try_every_zone_of_a_type_before_the_next_type():
    a = m.Placement(subnet_id="s-a", availability_zone="z-a")
    b = m.Placement(subnet_id="s-b", availability_zone="z-b")
    assert capacity.attempt_order(["t1", "t2"], [a, b]) == [
        ("t1", a),
        ("t1", b),
        ("t2", a),
        ("t2", b),
    ]


def test_console_tail_is_bounded_and_printable():
    text = "\n".join(f"line {i}\x1b[0m" for i in range(100)) + "\n" + "x" * 1000 + "\n\n"
    tail = capacity.console_tail(text)
    assert len(tail) == capacity.CONSOLE_LINES == 40
    assert tail[0] == "line 61[0m" and tail[-1] == "x" * capacity.CONSOLE_WIDTH


def test_connect_info_ssm_always_ssh_only_when_configured():
    out = {"HeadInstanceId": "i-1", "LoginAddress": "198.51.100.7"}
    plain = m.ClusterConfig(**BASE, compute_instance_type="c5.large")
    ssh = m.ClusterConfig(
        **BASE, compute_instance_type="c5.large", ssh_cidr="198.51.100.0/24", ssh_key_name="ops"
    )
    assert capacity.connect_info(out, "eu-west-1", plain) == m.ConnectInfo(
        head_instance_id="i-1", ssm_command="aws ssm start-session --target i-1 --region eu-west-1"
    )
    assert capacity.connect_info(out, "eu-west-1", ssh).ssh_command == (  # type: ignore[union-attr]
        "ssh -i ~/.ssh/ops.pem ec2-user@198.51.100.7"
    )
    assert capacity.connect_info({}, "eu-west-1", ssh) is None


def cluster_doc() -> dict[str, Any]:
    return json.loads(
        policies.cluster_template("acme", "c1", {"bridgehead:org": "acme"}, bootstrap_minutes=25)
    )


def readiness_problems(doc: dict[str, Any]) -> list[str]:
    """The head node waits for one readiness signal, sent by its user data after bootstrap; SSH
    only through the cluster's own group, only with AllowSsh."""
    out = []
    head = doc["Resources"]["HeadNode"]
    if head.get("CreationPolicy") != {"ResourceSignal": {"Count": 1, "Timeout": "PT25M"}}:
        out.append(f"creation policy {head.get('CreationPolicy')}")
    script = head["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    lines = script.strip().splitlines()
    if "cfn-signal" not in script or "--resource HeadNode" not in script or lines[-1] != "ready 0":
        out.append("user data does not signal readiness last")
    if "trap 'ready 1' ERR" not in script or "set -euo pipefail" not in lines:
        out.append("a failed bootstrap step does not signal failure")
    ingress = doc["Resources"]["HeadSshIngress"]
    if ingress["Properties"]["GroupId"] != {"Ref": "HeadSshSecurityGroup"}:
        out.append(f"ssh rule on {ingress['Properties']['GroupId']}")
    if doc["Resources"]["HeadSshSecurityGroup"].get("Condition") != "AllowSsh":
        out.append("ssh group without condition")
    if {"Fn::If": ["AllowSsh", {"Ref": "HeadSshSecurityGroup"}, {"Ref": "AWS::NoValue"}]} not in (
        head["Properties"]["SecurityGroupIds"]
    ):
        out.append("head node does not wear its ssh group")
    if head["Properties"]["KeyName"] != {
        "Fn::If": ["HasKey", {"Ref": "SshKeyName"}, {"Ref": "AWS::NoValue"}]
    }:
        out.append("key pair not optional")
    return out


def test_ssh_group_is_the_clusters_own_and_the_head_node_signals_readiness():
    assert readiness_problems(cluster_doc()) == []


def test_twin_readiness_problems_are_caught():
    doc = cluster_doc()
    head = doc["Resources"]["HeadNode"]
    head.pop("CreationPolicy")
    sub = head["Properties"]["UserData"]["Fn::Base64"]
    sub["Fn::Sub"] = sub["Fn::Sub"].replace("ready 0\n", "")
    doc["Resources"]["HeadSshIngress"]["Properties"]["GroupId"] = {"Ref": "HeadSecurityGroupId"}
    assert readiness_problems(doc) == [
        "creation policy None",
        "user data does not signal readiness last",
        "ssh rule on {'Ref': 'HeadSecurityGroupId'}",
    ]


def foundation_problems(doc: dict[str, Any]) -> list[str]:
    res, outs = doc["Resources"], doc["Outputs"]
    subnets = {
        k: r["Properties"]["AvailabilityZone"]["Fn::Select"][0]
        for k, r in res.items()
        if r["Type"] == "AWS::EC2::Subnet" and "MapPublicIpOnLaunch" not in r["Properties"]
    }
    out = []
    if sorted(subnets.values()) != [0, 1]:
        out.append(f"private subnets by zone index {subnets}")
    mounted = {
        r["Properties"]["SubnetId"]["Ref"]
        for r in res.values()
        if r["Type"] == "AWS::EFS::MountTarget"
    }
    if mounted != set(subnets):
        out.append(f"shared storage mounted in {sorted(mounted)} of {sorted(subnets)}")
    for n, (name, index) in enumerate(sorted(subnets.items(), key=lambda x: x[1]), start=1):
        if outs.get(f"PrivateSubnet{n}Id", {}).get("Value") != {"Ref": name}:
            out.append(f"output PrivateSubnet{n}Id")
        if outs.get(f"PrivateSubnet{n}Az", {}).get("Value") != {
            "Fn::Select": [index, {"Fn::GetAZs": ""}]
        }:
            out.append(f"output PrivateSubnet{n}Az")
    return out


def foundation_doc() -> dict[str, Any]:
    return json.loads(
        policies.foundation_template(
            "acme", "us-east-1", "222222222222", {"bridgehead:org": "acme"}
        )
    )


def test_foundation_has_private_subnets_mounts_and_outputs_in_two_zones():
    assert foundation_problems(foundation_doc()) == []


def test_twin_a_second_subnet_in_the_first_zone_is_caught():
    doc = foundation_doc()
    doc["Resources"]["PrivateSubnet2"]["Properties"]["AvailabilityZone"]["Fn::Select"][0] = 0
    doc["Resources"].pop("SharedFileSystemMount2")
    assert foundation_problems(doc) == [
        "private subnets by zone index {'PrivateSubnet': 0, 'PrivateSubnet2': 0}",
        "shared storage mounted in ['PrivateSubnet'] of ['PrivateSubnet', 'PrivateSubnet2']",
        "output PrivateSubnet2Az",
    ]


def test_placements_read_from_foundation_outputs_old_and_new():
    from activities.clusters import placements

    new = {
        "PrivateSubnetId": "s-1",
        "PrivateSubnet1Id": "s-1",
        "PrivateSubnet1Az": "us-east-1a",
        "PrivateSubnet2Id": "s-2",
        "PrivateSubnet2Az": "us-east-1b",
    }
    assert placements(new) == [
        m.Placement(subnet_id="s-1", availability_zone="us-east-1a"),
        m.Placement(subnet_id="s-2", availability_zone="us-east-1b"),
    ]
    assert placements({"PrivateSubnetId": "s-0"}) == [
        m.Placement(subnet_id="s-0", availability_zone="")
    ]


def permission_checks(monkeypatch, drop: set[str]) -> list[tuple[str, bool, bool]]:
    """The permission checks of a role whose policy is the published one without ``drop``."""
    import activities.verification as av
    import activities.verification.grants as grants
    from tests.test_verification import FakeClient, functional_ctx

    doc = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    for st in doc["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        st["Action"] = [a for a in acts if a not in drop] or ["s3:GetObject"]
    monkeypatch.setattr(grants, "role_policies", lambda iam, name: [("inline policy p", doc)])
    _, ctx = functional_ctx(FakeClient("https://ec2.us-east-1.amazonaws.com", "DryRunOperation"))
    av.check_permissions(ctx)
    return [(c.name, c.passed, c.warning) for c in ctx.checks if "permissions" in c.name]


def test_a_role_from_before_the_console_grant_stays_ready_with_a_warning(monkeypatch):
    checks = permission_checks(monkeypatch, {"ec2:GetConsoleOutput"})
    assert checks == [("permissions", True, False), ("later-permissions", True, True)]
    assert permission_checks(monkeypatch, set()) == [("permissions", True, False)]


def test_twin_a_required_action_missing_still_fails_permissions(monkeypatch):
    """The split must not soften anything else: a missing required action fails as before."""
    checks = permission_checks(monkeypatch, {"ec2:GetConsoleOutput", "cloudformation:CreateStack"})
    assert checks == [("permissions", False, False), ("later-permissions", True, True)]


def test_twin_without_the_split_an_old_role_fails_permissions(monkeypatch):
    """Planted defect: every missing action required (no later-added list). An organisation that
    onboarded before the console grant would turn ACTION_REQUIRED at its next re-verification."""
    monkeypatch.setattr(policies, "split_missing", lambda missing: (missing, {}))
    assert permission_checks(monkeypatch, {"ec2:GetConsoleOutput"}) == [
        ("permissions", False, False)
    ]


FOUNDATION_OUTPUTS = {
    "VpcId": "vpc-1",
    "PublicSubnetId": "subnet-pub",
    "PrivateSubnetId": "subnet-a",
    "PrivateSubnet1Id": "subnet-a",
    "PrivateSubnet1Az": "us-east-1a",
    "PrivateSubnet2Id": "subnet-b",
    "PrivateSubnet2Az": "us-east-1b",
    "HeadSecurityGroupId": "sg-h",
    "ComputeSecurityGroupId": "sg-c",
    "InstanceProfileName": "bridgehead-acme--node-us-east-1",
    "FileSystemId": "fs-1",
}


def plan_for(config: m.ClusterConfig) -> m.ClusterPlan:
    """``validate_cluster`` against a registry holding a READY org, image and two-zone foundation."""
    from temporalio.testing import ActivityEnvironment

    from activities.clusters import ClusterActivities
    from bridgehead.settings import Settings

    class Reg:
        def org_item(self, org):  # noqa: ANN001, ANN201
            return {"state": "READY", "regions": ["us-east-1"], "admin_email": "a@x.io"}

        def marketplace(self, org):  # noqa: ANN001, ANN201
            return None

        def image_share(self, org, region):  # noqa: ANN001, ANN201
            return {"state": "SHARED", "image_id": "ami-1"}

        def foundation(self, org, region):  # noqa: ANN001, ANN201
            return {"state": "READY", "outputs": FOUNDATION_OUTPUTS}

        def cluster(self, org, name):  # noqa: ANN001, ANN201
            return None

    aws = type("A", (), {"settings": Settings(environment="local")})()
    acts = ClusterActivities(aws, Reg())  # type: ignore[arg-type]
    req = m.ValidateClusterInput(org_id="acme", name="c1", region="us-east-1", config=config)
    return ActivityEnvironment().run(acts.validate_cluster, req)


def access_parameter_problems(plan: m.ClusterPlan) -> list[str]:
    want = {
        "SshCidr": "203.0.113.0/24",
        "SshKeyName": "ops",
        "ComputeInstanceType": "c5.xlarge",
        "PrivateSubnetId": "subnet-a",
        "VpcId": "vpc-1",
    }
    got = {k: plan.parameters.get(k) for k in want}
    out = [f"{k}={got[k]!r}" for k in want if got[k] != want[k]]
    if [(p.subnet_id, p.availability_zone) for p in plan.placements] != [
        ("subnet-a", "us-east-1a"),
        ("subnet-b", "us-east-1b"),
    ]:
        out.append(f"placements {plan.placements}")
    if json.loads(plan.template_body)["Resources"]["HeadNode"]["CreationPolicy"] != {
        "ResourceSignal": {"Count": 1, "Timeout": "PT20M"}
    }:
        out.append("bootstrap timeout not from settings")
    return out


SSH_CONFIG = m.ClusterConfig(
    **BASE,
    compute_instance_types=["c5.xlarge", "m5.xlarge"],
    ssh_cidr="203.0.113.0/24",
    ssh_key_name="ops",
)


def test_validate_passes_ssh_settings_first_type_and_placements_to_the_stack():
    plan = plan_for(SSH_CONFIG)
    assert plan.errors == [] and access_parameter_problems(plan) == []
    # Without SSH the parameters are empty, so the template's AllowSsh/HasKey conditions are false.
    plain = plan_for(m.ClusterConfig(**BASE, compute_instance_type="c5.xlarge"))
    assert (plain.parameters["SshCidr"], plain.parameters["SshKeyName"]) == ("", "")


def test_twin_a_validate_that_drops_ssh_cidr_is_caught(monkeypatch):
    """Planted defect: the old behaviour (SshCidr never passed to the template)."""
    import activities.clusters as ac

    real = ac.ClusterPlan

    def without_ssh(**kw):  # type: ignore[no-untyped-def]
        if "parameters" in kw:
            kw["parameters"] = {k: v for k, v in kw["parameters"].items() if k != "SshCidr"}
        return real(**kw)

    monkeypatch.setattr(ac, "ClusterPlan", without_ssh)
    assert access_parameter_problems(plan_for(SSH_CONFIG)) == ["SshCidr=None"]


def test_validate_names_every_unknown_fallback_type():
    plan = plan_for(m.ClusterConfig(**BASE, compute_instance_types=["c5.xlarge", "z9.mega"]))
    assert len(plan.errors) == 1 and plan.errors[0].startswith(
        "config.compute_instance_types: 'z9.mega' is not an offered instance type"
    )
