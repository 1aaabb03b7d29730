"""The ``python -m starter`` CLI end to end against the embedded stack: onboarding step by step,
``cluster create --wait`` with live progress and the login address, delete, the ``temporal`` CLI's
delete signal, and the billing report whose totals equal the ledger."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bridgehead import models as m
from starter.local import bin_path

pytestmark = pytest.mark.integration
ACCOUNT = "242424242424"
CONFIG = '{"head_instance_type":"t3.medium","compute_instance_type":"c5.xlarge","compute_initial_nodes":1,"compute_max_nodes":3}'


def starter(stack, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env()}
    return subprocess.run(
        [sys.executable, "-m", "starter", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def json_docs(text: str) -> list:
    """The JSON documents a ``--json`` command printed, in order."""
    dec, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = dec.raw_decode(text, i)
        docs.append(doc)
    return docs


def test_onboard_and_cluster_through_the_starter_cli(stack):
    r = starter(
        stack,
        "onboard",
        "start",
        "--org",
        "clio",
        "--email",
        "ops@clio.example",
        "--account",
        ACCOUNT,
        "--regions",
        "us-east-1",
    )
    assert r.returncode == 0, r.stderr
    assert "AWAITING_ROLE" in r.stdout and "external id: bh-" in r.stdout
    r = starter(stack, "onboard", "template", "--org", "clio")
    template = json.loads(r.stdout)
    cfn = stack.customer_admin(ACCOUNT, "cloudformation")
    cfn.create_stack(
        StackName="bridgehead-access",
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    role_arn = cfn.describe_stacks(StackName="bridgehead-access")["Stacks"][0]["Outputs"][0][
        "OutputValue"
    ]
    r = starter(
        stack,
        "onboard",
        "submit-role",
        "--org",
        "clio",
        "--role-arn",
        role_arn,
        "--wait",
        "--timeout",
        "150",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clio: READY" in r.stdout
    # `start --wait --json`: one document with where it started and what it returned.
    r = starter(
        stack,
        "start",
        "VerifyRole",
        json.dumps({"org_id": "clio", "role_arn": role_arn}),
        "--wait",
        "--json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    started = json.loads(r.stdout)
    assert (
        started["workflow_id"].startswith("org-clio-verify-")
        and started["run_id"]
        and started["result"]
    ), started
    r = starter(stack, "status", "org-clio")
    # Step by step: each phase of onboarding is listed with its time.
    for step in (
        "registered",
        "role submitted",
        "role verified",
        "SHARING_IMAGES",
        "PROVISIONING",
        "READY: organisation ready",
    ):
        assert step in r.stdout, (step, r.stdout)

    r = starter(
        stack,
        "cluster",
        "create",
        "--org",
        "clio",
        "--name",
        "k1",
        "--region",
        "us-east-1",
        "--config",
        CONFIG,
        "--owner",
        "bob",
        "--wait",
        "--timeout",
        "150",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    progress = out[1 : next(i for i, x in enumerate(out) if x.startswith("cluster k1"))]
    # Live progress: one line per change of state or of the latest stack event (moto completes
    # stacks at once, so CREATING may be skipped here; the time-skipping tests cover long waits).
    assert len(progress) >= 2 and "RUNNING" in progress[-1] and "CREATE_COMPLETE" in progress[-1], (
        r.stdout
    )
    login = [line for line in r.stdout.splitlines() if "login:" in line]
    assert login and login[0].split("login:")[1].strip(), r.stdout  # an address, not empty
    # A second cluster in the same region while the first runs (they share the org's security groups).
    # --json after the subcommand; one document (the outcome), not one per step.
    r = starter(
        stack,
        "cluster",
        "create",
        "--org",
        "clio",
        "--name",
        "k2",
        "--region",
        "us-east-1",
        "--config",
        CONFIG,
        "--wait",
        "--json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json_docs(r.stdout)) == 1 and json.loads(r.stdout)["state"] == "RUNNING", r.stdout
    r = starter(
        stack,
        "--json",
        "cluster",
        "delete",
        "--org",
        "clio",
        "--name",
        "k1",
        "--wait",
        "--timeout",
        "120",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "DELETED"

    # The operator path: `temporal workflow signal --name delete` on a running cluster.
    listed = subprocess.run(
        [
            bin_path("temporal"),
            "workflow",
            "list",
            "--query",
            "ClusterStatus='RUNNING' AND OrgId='clio'",
            "--address",
            stack.temporal_address,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cluster-clio-k2" in listed.stdout and "cluster-clio-k1" not in listed.stdout, (
        listed.stdout + listed.stderr
    )

    # The Web UI's one-line summary of a workflow started by the starter, and its live details.
    async def metadata() -> tuple[str | None, str]:
        from bridgehead.client import make_client

        h = (await make_client()).get_workflow_handle("cluster-clio-k2")
        meta = await h.query("__temporal_workflow_metadata")
        return await (await h.describe()).static_summary(), meta.current_details

    summary, details = __import__("asyncio").run(metadata())
    assert summary == "cluster k2 in us-east-1 for clio" and "RUNNING" in details, (
        summary,
        details,
    )
    sig = subprocess.run(
        [
            bin_path("temporal"),
            "workflow",
            "signal",
            "--workflow-id",
            "cluster-clio-k2",
            "--name",
            "delete",
            "--address",
            stack.temporal_address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sig.returncode == 0, sig.stderr
    res = subprocess.run(
        [
            bin_path("temporal"),
            "workflow",
            "result",
            "--workflow-id",
            "cluster-clio-k2",
            "--address",
            stack.temporal_address,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert '"DELETED"' in res.stdout, res.stdout + res.stderr
    # Dry run: validation against the live org, the rendered template printed, nothing created.
    r = starter(
        stack,
        "cluster",
        "create",
        "--org",
        "clio",
        "--name",
        "dry1",
        "--region",
        "us-east-1",
        "--config",
        CONFIG,
        "--dry-run",
    )
    assert r.returncode == 0, r.stderr
    rendered = json.loads(r.stdout)
    assert rendered["Resources"]["HeadNode"]["Type"] == "AWS::EC2::Instance"
    # The price before commitment, from the rate table, on stderr (stdout stays the template).
    price = next(line for line in r.stderr.splitlines() if line.startswith("# price"))
    cfg = json.loads(CONFIG)
    from bridgehead import billing
    from bridgehead.settings import DEFAULT_RATES

    hourly = billing.hourly_price(
        cfg["head_instance_type"],
        cfg["compute_instance_type"],
        cfg.get("compute_initial_nodes", 1),
        DEFAULT_RATES,
    )
    assert f"${hourly}/hour" in price and f"${hourly * billing.HOURS_PER_MONTH}/month" in price, (
        price
    )
    assert all(
        "dry1" not in x["StackName"]
        for x in stack.customer_admin(ACCOUNT, "cloudformation").list_stacks()["StackSummaries"]
    )
    # Bad input: a clear error and exit code 2, nothing started.
    r = starter(
        stack,
        "cluster",
        "create",
        "--org",
        "clio",
        "--name",
        "k3",
        "--region",
        "us-east-1",
        "--config",
        '{"head_instance_type":"t3.medium","compute_instance_type":"c5.xlarge","bogus":1}',
    )
    assert r.returncode == 2 and "bogus" in r.stderr


def test_billing_report_totals_equal_the_ledger(stack):
    from temporalio.testing import ActivityEnvironment

    from activities.billing import BillingActivities, ledger_entries
    from tests.integration.helpers import ledger_org

    org = "clibill"
    aws, reg = ledger_org(org, "252525252525")
    start = datetime(2026, 10, 3, 8, 20, 10, tzinfo=UTC)
    segs = [
        m.UsageSegment(
            start=start,
            end=start + timedelta(minutes=95),
            head_instance_type="t3.medium",
            compute_instance_type="c5.xlarge",
            compute_nodes=3,
        ),
        m.UsageSegment(
            start=start + timedelta(minutes=95),
            end=start + timedelta(minutes=200, seconds=40),
            head_instance_type="t3.medium",
            compute_instance_type="c5.xlarge",
            compute_nodes=1,
        ),
    ]
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "CLUSTER#r1",
            "name": "r1",
            "region": "us-east-1",
            "state": "DELETED",
            "segments": [s.model_dump(mode="json") for s in segs],
        }
    )
    ActivityEnvironment().run(
        BillingActivities(aws, reg).close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=start + timedelta(hours=6)),
    )
    entries = ledger_entries(reg, org, "2026-10")
    ledger_minutes = sum(int(e["node_minutes"]) for e in entries)
    ledger_cost = sum((Decimal(str(e["cost_usd"])) for e in entries), Decimal(0))
    assert (
        ledger_minutes == 95 * 4 + 106 * 2
    )  # 95 min x (head + 3), then 105 min 40 s -> 106 x (head + 1)

    r = starter(stack, "--json", "billing", "report", "--org", org, "--month", "2026-10")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (
        report["total"]["node_minutes"] == ledger_minutes
        and Decimal(report["total"]["cost_usd"]) == ledger_cost
    )
    by_type = {x["instance_type"]: x["node_minutes"] for x in report["lines"]}
    assert by_type == {"t3.medium": 95 + 106, "c5.xlarge": 95 * 3 + 106}
    r = starter(stack, "billing", "report", "--org", org, "--month", "2026-10", "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[-1]["cluster"] == "TOTAL" and int(rows[-1]["node_minutes"]) == ledger_minutes
    assert sum(int(x["node_minutes"]) for x in rows[:-1]) == ledger_minutes
    r = starter(stack, "--json", "billing", "report", "--org", org, "--month", "2026-11")
    assert json.loads(r.stdout)["total"]["node_minutes"] == 0
