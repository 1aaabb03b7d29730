"""Pure unit tests: models, policies, templates (cfn-lint), converter, billing arithmetic, settings."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgehead import billing, policies
from bridgehead import models as m
from bridgehead.converter import make_data_converter

ROOT = Path(__file__).resolve().parent.parent
PRINCIPAL = "arn:aws:iam::123456789012:root"


@pytest.mark.parametrize(
    "field,value,needle",
    [("org_id", "Acme!", "org_id"), ("admin_email", "nope", "admin_email"), ("aws_account_id", "12345", "aws_account_id"),
     ("regions", ["mars-1"], "unsupported region"), ("regions", ["us-east-1", "us-east-1"], "must not repeat"), ("extra", 1, "extra")],
)  # fmt: skip
def test_onboarding_input_rejects_bad_fields(field, value, needle):
    data = {"org_id": "acme", "display_name": "A", "admin_email": "a@acme.io", "aws_account_id": "222222222222", field: value}
    with pytest.raises(ValidationError) as e:
        m.OnboardOrganizationInput.model_validate(data)
    assert needle in str(e.value)


@pytest.mark.parametrize("name,ok", [("c1", True), ("A" + "b" * 59, True), ("1abc", False), ("a_b", False), ("A" + "b" * 60, False), ("", False)])
def test_cluster_name_rule(name, ok):
    cfg = {"head_instance_type": "t3.medium", "compute_instance_type": "c5.xlarge"}
    data = {"org_id": "acme", "name": name, "region": "us-east-1", "config": cfg}
    if ok:
        assert m.ClusterLifecycleInput.model_validate(data).name == name
    else:
        with pytest.raises(ValidationError):
            m.ClusterLifecycleInput.model_validate(data)


def test_cluster_config_bounds():
    base = {"head_instance_type": "t3.medium", "compute_instance_type": "c5.xlarge"}
    with pytest.raises(ValidationError, match="compute_initial_nodes .* must be <= compute_max_nodes"):
        m.ClusterConfig.model_validate({**base, "compute_initial_nodes": 5, "compute_max_nodes": 2})
    with pytest.raises(ValidationError, match="spot_price"):
        m.ClusterConfig.model_validate({**base, "spot_price": 0})
    with pytest.raises(ValidationError):
        m.ResizeInput.model_validate({"compute_nodes": -1})


def test_role_arn_parsing():
    assert m.parse_role_arn("arn:aws:iam::222222222222:role/path/Bridgehead")["name"] == "Bridgehead"
    for bad in ("arn:aws:iam::2222:role/x", "arn:aws:s3:::bucket", "role/x"):
        with pytest.raises(ValueError):
            m.parse_role_arn(bad)


def test_permission_policy_is_least_privilege():
    doc = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    assert doc["Version"] == "2012-10-17"
    actions = policies.required_actions(doc)
    assert "*" not in actions
    assert not [a for a in actions if a.endswith(":*")], "no service-wide wildcards"
    for st in doc["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if "iam:PassRole" in acts:
            assert st["Resource"] == "arn:aws:iam::222222222222:role/bridgehead-acme--node-*"
            assert st["Condition"]["StringEquals"]["iam:PassedToService"] == "ec2.amazonaws.com"
    assert json.dumps(doc).count("{{") == 0


def test_trust_policy_analysis_catches_unsafe_policies():
    good = policies.trust_policy(PRINCIPAL, "ext")
    assert all(ok for _, ok, _, _ in policies.analyse_trust(good, PRINCIPAL, "ext"))
    wildcard = json.loads(json.dumps(good))
    wildcard["Statement"][0]["Principal"] = {"AWS": "*"}
    res = {n: (ok, d) for n, ok, d, _ in policies.analyse_trust(wildcard, PRINCIPAL, "ext")}
    assert res["trust-policy-principal"][0] is False
    no_ext = json.loads(json.dumps(good))
    del no_ext["Statement"][0]["Condition"]
    res = {n: ok for n, ok, _, _ in policies.analyse_trust(no_ext, PRINCIPAL, "ext")}
    assert res["trust-policy-external-id"] is False
    like = json.loads(json.dumps(good))
    like["Statement"][0]["Condition"] = {"StringLike": {"sts:ExternalId": "*"}}
    res = {n: (ok, d) for n, ok, d, _ in policies.analyse_trust(like, PRINCIPAL, "ext")}
    assert res["trust-policy-external-id"][0] is False and "StringLike" in res["trust-policy-external-id"][1]
    other = policies.analyse_trust(good, PRINCIPAL, "different")
    assert not dict((n, ok) for n, ok, _, _ in other)["trust-policy-external-id"]


def test_permission_evaluation_handles_wildcards_and_deny():
    allow_all_ec2 = {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    deny_run = {"Statement": [{"Sid": "NoRun", "Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}]}
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    v = policies.evaluate_actions(["ec2:RunInstances", "ec2:DescribeVpcs", "iam:GetRole"], [("a", allow_all_ec2), ("d", deny_run)])
    assert v["ec2:DescribeVpcs"] is None
    assert "denied by d statement NoRun" == v["ec2:RunInstances"]
    assert v["iam:GetRole"] == "not granted by any attached or inline policy"
    assert policies.evaluate_actions(["s3:ListBucket", "iam:GetRole"], [("n", not_action)]) == {
        "s3:ListBucket": None, "iam:GetRole": "not granted by any attached or inline policy"}


def test_templates_pass_cfn_lint(tmp_path):
    trust = policies.trust_policy(PRINCIPAL, "bh-" + "x" * 40)
    perms = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    files = {
        "role.json": policies.customer_role_template("acme", "bh-" + "x" * 40, "BridgeheadAccess", trust, perms),
        "foundation.json": policies.foundation_template("acme", "us-east-1", "222222222222", {"bridgehead:org": "acme"}),
        "cluster.json": policies.cluster_template("acme", "c1", {"bridgehead:org": "acme"}),
    }
    paths = []
    for name, body in files.items():
        (tmp_path / name).write_text(body)
        paths.append(str(tmp_path / name))
    r = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--", *paths], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sensitive_payloads_are_encrypted_and_others_plain():
    dc = make_data_converter(b"k" * 32)
    keys = m.CreateRoleForMeInput(access_key_id="AKIAABCDEFGHIJKLMNOP", secret_access_key="TopSecretValue123")
    arn = m.SubmitRoleInput(role_arn="arn:aws:iam::222222222222:role/x")
    encoded = asyncio.run(dc.encode([keys, arn]))
    assert b"TopSecretValue123" not in encoded[0].SerializeToString()
    assert encoded[0].metadata["encoding"] == b"binary/encrypted"
    assert json.loads(encoded[1].data) == {"role_arn": arn.role_arn}
    back = asyncio.run(dc.decode(encoded, [m.CreateRoleForMeInput, m.SubmitRoleInput]))
    assert back[0].secret_access_key.get_secret_value() == "TopSecretValue123" and back[1] == arn
    assert "TopSecretValue123" not in repr(back[0])
    with pytest.raises(ValueError, match="share BRIDGEHEAD_CODEC_KEY"):
        asyncio.run(make_data_converter(b"z" * 32).decode(encoded[:1], [m.CreateRoleForMeInput]))


T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def seg(minutes: float, nodes: int = 4, start: datetime = T0) -> m.UsageSegment:
    return m.UsageSegment(start=start, end=start + timedelta(minutes=minutes), head_instance_type="t3.medium",
                          compute_instance_type="c5.xlarge", compute_nodes=nodes)  # fmt: skip


def total(segments, until):
    out = {}
    for p in billing.periods(segments, T0, until):
        for t, v in billing.node_minutes(segments, p, p + billing.PERIOD, until).items():
            out[t] = out.get(t, 0) + v
    return out


def test_billing_3h17m_five_nodes():
    s = [seg(197)]
    assert total(s, T0 + timedelta(hours=5)) == {"t3.medium": 197, "c5.xlarge": 197 * 4}
    assert sum(total(s, T0 + timedelta(hours=5)).values()) == 197 * 5


def test_billing_rounding_rule_half_up():
    assert total([seg(59.5)], T0 + timedelta(hours=2)) == {"t3.medium": 60, "c5.xlarge": 240}
    assert total([seg(59 + 29 / 60)], T0 + timedelta(hours=2)) == {"t3.medium": 59, "c5.xlarge": 236}


def test_billing_resize_is_two_parts_and_periods_add_up():
    a = seg(90, nodes=4)
    b = seg(30, nodes=2, start=a.end)
    got = total([a, b], T0 + timedelta(hours=3))
    assert got == {"t3.medium": 120, "c5.xlarge": 90 * 4 + 30 * 2}
    cost = billing.cost(got, {"t3.medium": Decimal("0.0416"), "c5.xlarge": Decimal("0.17")})
    assert cost == Decimal("1.27")  # 2h * 0.0416 + 7h * 0.17 = 0.0832 + 1.19


def test_settings_prefix_and_production_requires_codec_key(monkeypatch):
    from bridgehead.settings import Settings

    monkeypatch.delenv("BRIDGEHEAD_CODEC_KEY", raising=False)  # the integration fixtures set one
    monkeypatch.setenv("BRIDGEHEAD_TASK_QUEUE", "tq-x")
    assert Settings().task_queue == "tq-x"
    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="BRIDGEHEAD_CODEC_KEY is required"):
        Settings()


def test_options_non_retryable_types_match_activities():
    from activities.errors import NON_RETRYABLE_TYPES
    from workflows._options import NON_RETRYABLE

    assert set(NON_RETRYABLE_TYPES) <= set(NON_RETRYABLE)


def test_error_classification():
    from botocore.exceptions import ClientError
    from temporalio.exceptions import ApplicationError

    from activities.errors import classify

    def err(code, status=400):
        return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    assert not classify(err("Throttling"), "x").non_retryable
    assert not classify(err("Whatever", 503), "x").non_retryable
    denied = classify(err("AccessDenied", 403), "ec2:RunInstances")
    assert isinstance(denied, ApplicationError) and denied.non_retryable and denied.type == "AwsPermissionError"
    assert "ec2:RunInstances" in denied.message
    assert classify(err("ValidationError"), "x").non_retryable


def test_compose_file_references_real_things():
    import yaml

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    for name in ("postgresql", "temporal", "temporal-ui", "temporal-admin-tools", "aws", "worker"):
        assert name in services, name
    assert (ROOT / services["worker"]["build"]["dockerfile"]).exists()
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            assert ":" in svc["image"], f"{name} pins an image tag"
        for dep in svc.get("depends_on", {}):
            assert dep in services
    assert "healthcheck" in services["temporal"] and "healthcheck" in services["aws"]
    dockerfile = (ROOT / services["worker"]["build"]["dockerfile"]).read_text()
    assert "worker.py" in dockerfile


def test_shell_completion_follows_the_parser():
    """``bridgehead completion bash`` completes subcommands and options from the real parser."""
    import shutil
    import subprocess

    from tests.support.requirements import missing

    if shutil.which("bash") is None:
        missing("no bash on this machine")
    script = subprocess.run([sys.executable, "-m", "starter", "completion", "bash"], capture_output=True, text=True, check=True).stdout

    def complete(*words: str) -> set[str]:
        arr = " ".join(f'"{w}"' for w in words)
        probe = f'{script}\nCOMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; _bridgehead_complete; echo "${{COMPREPLY[@]}}"'
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        assert not out.stderr, out.stderr
        return set(out.stdout.split())

    assert complete("bridgehead", "clu") == {"cluster"}
    assert {"--org", "--name", "--region", "--config", "--dry-run", "--wait"} <= complete("bridgehead", "--json", "cluster", "create", "--")
    assert complete("bridgehead", "signal", "wf-id", "") >= {"cancel", "delete", "reverify"}
    assert complete("bridgehead", "schema", "Clu") == {"ClusterLifecycle"}
