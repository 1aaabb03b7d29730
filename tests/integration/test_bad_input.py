"""The bad-input matrix: every entry point, a table of malformed inputs. Each gets a clear error
naming what is wrong, creates nothing in AWS (no stack, no role, no registry item) and leaves no
workflow stuck (a bad start ends FAILED at once; a bad update or signal leaves the workflow waiting
in the state it was in, still answering queries).

Entry points: JSON starts exactly as the Web UI and ``temporal workflow start`` send them (plain
JSON payloads), updates and signals with wrong payloads, and the starter CLI. Drop-box files have
their own matrix in test_dropbox.py (invalid JSON, unknown fields, bad names, a name already
running, unknown users). The table and its counts go to test-artifacts/bad-input.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from bridgehead import models as m
from tests.integration.helpers import start_org, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "260000000001"
TABLE: list[dict[str, Any]] = []

ORG = {
    "org_id": "badorg",
    "display_name": "Bad",
    "admin_email": "ops@bad.example",
    "aws_account_id": ACCOUNT,
    "regions": ["us-east-1"],
}
CFG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.large",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}
CLUSTER = {"org_id": "badin", "name": "k1", "region": "us-east-1", "config": CFG}

# (workflow type, what is wrong, the JSON, a word the error must contain)
STARTS = [
    (
        "OnboardOrganization",
        "missing field",
        {k: v for k, v in ORG.items() if k != "admin_email"},
        "admin_email",
    ),
    (
        "OnboardOrganization",
        "account id of 11 digits",
        {**ORG, "aws_account_id": "26000000000"},
        "aws_account_id",
    ),
    (
        "OnboardOrganization",
        "account id with letters",
        {**ORG, "aws_account_id": "26000000000x"},
        "aws_account_id",
    ),
    (
        "OnboardOrganization",
        "malformed email",
        {**ORG, "admin_email": "not-an-email"},
        "admin_email",
    ),
    ("OnboardOrganization", "org id not a slug", {**ORG, "org_id": "Bad Org!"}, "org_id"),
    (
        "OnboardOrganization",
        "unsupported region",
        {**ORG, "regions": ["mars-north-1"]},
        "mars-north-1",
    ),
    ("OnboardOrganization", "no regions", {**ORG, "regions": []}, "regions"),
    ("OnboardOrganization", "unknown field", {**ORG, "admin": True}, "admin"),
    ("OnboardOrganization", "wrong type", {**ORG, "regions": "us-east-1"}, "regions"),
    ("OnboardOrganization", "not an object", ["badorg"], "a JSON object"),
    ("ClusterLifecycle", "name starts with a digit", {**CLUSTER, "name": "1abc"}, "name"),
    ("ClusterLifecycle", "name too long", {**CLUSTER, "name": "a" * 61}, "name"),
    ("ClusterLifecycle", "name with underscore", {**CLUSTER, "name": "a_b"}, "name"),
    (
        "ClusterLifecycle",
        "initial above max",
        {**CLUSTER, "config": {**CFG, "compute_initial_nodes": 3}},
        "compute_initial_nodes",
    ),
    (
        "ClusterLifecycle",
        "negative nodes",
        {**CLUSTER, "config": {**CFG, "compute_initial_nodes": -1}},
        "compute_initial_nodes",
    ),
    (
        "ClusterLifecycle",
        "zero spot price",
        {**CLUSTER, "config": {**CFG, "spot_price": 0}},
        "spot_price",
    ),
    ("ClusterLifecycle", "unknown config field", {**CLUSTER, "config": {**CFG, "gpus": 4}}, "gpus"),
    (
        "ClusterLifecycle",
        "both compute type fields",
        {**CLUSTER, "config": {**CFG, "compute_instance_types": ["c5.xlarge"]}},
        "exactly one of compute_instance_type",
    ),
    (
        "ClusterLifecycle",
        "ssh_cidr without a key",
        {**CLUSTER, "config": {**CFG, "ssh_cidr": "203.0.113.0/24"}},
        "ssh_key_name",
    ),
    (
        "ClusterLifecycle",
        "ssh from anywhere",
        {**CLUSTER, "config": {**CFG, "ssh_cidr": "0.0.0.0/0", "ssh_key_name": "k"}},
        "never 0.0.0.0/0",
    ),
    (
        "ClusterLifecycle",
        "missing config",
        {k: v for k, v in CLUSTER.items() if k != "config"},
        "config",
    ),
    ("ClusterLifecycle", "unsupported region", {**CLUSTER, "region": "eu-nowhere-9"}, "region"),
    ("CleanupRegion", "missing region", {"org_id": "badin"}, "region"),
    ("ShareImages", "org id not a slug", {"org_id": "UPPER"}, "org_id"),
    ("BillingMeter", "zero tick", {"org_id": "badin", "tick_minutes": 0}, "tick_minutes"),
]


def record(entry: str, case: str, message: str, word: str = "") -> None:
    """One row: the line of the error that names the problem (else its first line)."""
    lines = [x.strip() for x in message.splitlines() if x.strip()]
    line = next((x for x in lines if word and word.lower() in x.lower()), lines[0] if lines else "")
    TABLE.append({"entry_point": entry, "input": case, "outcome": line[:200]})


def nothing_in_aws(stack: Any) -> None:
    cfn = stack.customer_admin(ACCOUNT, "cloudformation")
    assert cfn.list_stacks()["StackSummaries"] == [], "a bad input created a stack"
    iam = stack.customer_admin(ACCOUNT, "iam")
    assert [
        r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("Bridgehead")
    ] == []


@pytest.mark.parametrize(
    ("wf_type", "case", "payload", "word"), STARTS, ids=[f"{t}-{c}" for t, c, _, _ in STARTS]
)
async def test_bad_json_start_fails_at_once_with_the_field_named(
    client, stack, wf_type, case, payload, word
):
    wf_id = f"bad-{abs(hash((wf_type, case))) % 10**8}"
    h = await client.start_workflow(wf_type, payload, id=wf_id, task_queue="bridgehead")
    with pytest.raises(WorkflowFailureError) as e:
        await h.result()
    text = str(e.value.cause)
    assert word in text, text
    assert (await h.describe()).status.name == "FAILED"  # ended, not stuck retrying a workflow task
    nothing_in_aws(stack)
    record(f"workflow start ({wf_type})", case, text, word)


async def test_bad_updates_and_signals_leave_the_org_waiting(client, stack):
    h = await start_org(client, "badupd", ACCOUNT, ["us-east-1"])
    cases = [
        ("submit_role", "malformed ARN", {"role_arn": "arn:aws:iam::nope"}, "role_arn"),
        (
            "submit_role",
            "another account's role",
            {"role_arn": "arn:aws:iam::999999999999:role/BridgeheadAccess"},
            "999999999999",
        ),
        (
            "submit_role",
            "wrong partition",
            {"role_arn": f"arn:aws-cn:iam::{ACCOUNT}:role/BridgeheadAccess"},
            "partition",
        ),
        (
            "submit_role",
            "a user, not a role",
            {"role_arn": f"arn:aws:iam::{ACCOUNT}:user/admin"},
            "role",
        ),
        (
            "submit_role",
            "unknown field",
            {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess", "force": True},
            "force",
        ),
        ("submit_role", "no payload", None, "role_arn"),
        # Keys sent as plain JSON never reach history, whatever their shape.
        (
            "create_role_for_me",
            "plain JSON keys",
            {
                "access_key_id": "ASIAABCDEFGHIJKLMNOP",
                "secret_access_key": "x" * 40,
                "session_token": "t" * 40,
            },
            "encrypted",
        ),
        (
            "create_role_for_me",
            "access key id malformed",
            {"access_key_id": "short", "secret_access_key": "x" * 40},
            "encrypted",
        ),
        (
            "create_role_for_me",
            "long-lived keys",
            m.CreateRoleForMeInput.model_construct(
                access_key_id="AKIAABCDEFGHIJKLMNOP",
                secret_access_key=SecretStr("x" * 40),
                session_token=SecretStr("t" * 40),
            ),
            "access_key_id",
        ),
        ("resize", "update the org does not have", {"compute_nodes": 3}, "resize"),
        (
            "Submit_Role",
            "misspelled update",
            {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/BridgeheadAccess"},
            "submit_role",
        ),
        ("offboard", "no payload", None, "confirm_org_id"),
        ("offboard", "another organisation's id", {"confirm_org_id": "acme"}, "confirm_org_id"),
        ("offboard", "unknown field", {"confirm_org_id": "badupd", "force": True}, "force"),
    ]
    for name, case, payload, word in cases:
        with pytest.raises((WorkflowUpdateFailedError, RPCError)) as e:
            if payload is None:
                await h.execute_update(name)
            else:
                await h.execute_update(name, payload)
        err = e.value.cause if isinstance(e.value, WorkflowUpdateFailedError) else e.value
        text = str(getattr(err, "message", None) or err)
        assert word.lower() in text.lower(), (case, text)
        record(f"update {name}", case, text, word)
    # Signals: an unknown name, and known names with payloads they do not take.
    for name, payload in (("explode", None), ("reverify", {"now": True}), ("delete", "x")):
        await (h.signal(name, payload) if payload is not None else h.signal(name))
        record(f"signal {name}", f"payload {payload!r}", "ignored; workflow keeps waiting")
    s = await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE, 30)
    assert s.state == m.OrgState.AWAITING_ROLE and not s.role_arn
    # The unknown signal is recorded where operators look, not dropped.
    assert [r.split("'")[1] for r in s.ignored_requests] == ["explode", "delete"], (
        s.ignored_requests
    )
    assert (await h.describe()).status.name == "RUNNING"
    nothing_in_aws(stack)


def test_starter_cli_bad_input_exits_2_and_starts_nothing(stack):
    env = {**os.environ, **stack.env()}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "starter", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=ROOT,
        )

    cases = [
        (
            ("onboard", "start", "--org", "clibad", "--email", "ops@x.example", "--account", "123"),
            "aws_account_id",
        ),
        (
            ("onboard", "start", "--org", "clibad", "--email", "nope", "--account", ACCOUNT),
            "admin_email",
        ),
        (
            (
                "onboard",
                "start",
                "--org",
                "clibad",
                "--email",
                "ops@x.example",
                "--account",
                ACCOUNT,
                "--regions",
                "xx-1",
            ),
            "xx-1",
        ),
        (
            (
                "cluster",
                "create",
                "--org",
                "clibad",
                "--name",
                "9x",
                "--region",
                "us-east-1",
                "--config",
                json.dumps(CFG),
            ),
            "name",
        ),
        (
            (
                "cluster",
                "create",
                "--org",
                "clibad",
                "--name",
                "k1",
                "--region",
                "us-east-1",
                "--config",
                "{not json",
            ),
            "JSON",
        ),
        (
            (
                "cluster",
                "create",
                "--org",
                "clibad",
                "--name",
                "k1",
                "--region",
                "us-east-1",
                "--config",
                "@/no/such/file.json",
            ),
            "file",
        ),
        (("start", "OnboardOrganization", '{"org_id": "clibad"}'), "admin_email"),
        (("billing", "report", "--org", "clibad", "--month", "2026-13"), "month"),
    ]
    for args, word in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert word.lower() in r.stderr.lower() and "Traceback" not in r.stderr, (args, r.stderr)
        record("starter CLI", " ".join(args)[:120], r.stderr, word)
    # Nothing was started: no workflow for the org, nothing in AWS.
    listed = run("--json", "status", "org-clibad")
    assert listed.returncode != 0
    nothing_in_aws(stack)


def test_zz_write_the_table():
    """Runs last in this module: the table of everything tried, for docs/reliability.md."""
    assert len(TABLE) >= len(STARTS) + 12 + 3 + 8, len(TABLE)
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    by_entry: dict[str, int] = {}
    for row in TABLE:
        by_entry[row["entry_point"].split(" (")[0]] = (
            by_entry.get(row["entry_point"].split(" (")[0], 0) + 1
        )
    (out / "bad-input.json").write_text(
        json.dumps(
            {"inputs_tried": len(TABLE), "by_entry_point": by_entry, "table": TABLE}, indent=2
        )
    )
