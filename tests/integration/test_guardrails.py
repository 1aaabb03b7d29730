"""Cost guard rails against the real worker, moto server and the dev server: two clusters watched
for one idle minute while the test puts their head nodes' CPUUtilization into CloudWatch (customer
account). The quiet one is announced by email (SES; the registry's marker of the message sent)
and stopped after a one-minute grace period (head node stopped, compute group at 0, storage kept),
then started again; the busy one (the twin: the same checks, busy data) is read and left alone.

The embedded stack's worker accepts ``auto_stop_idle_minutes`` from 1 (tests/conftest.py); the
production minimum is 15.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
import pytest_asyncio

from bridgehead import models as m
from starter.local import customer_admin
from tests.integration.helpers import onboard_ready, wait_for
from tests.integration.test_starter_cli import starter

pytestmark = pytest.mark.integration
ORG, ACCOUNT, REGION = "idler", "292929292929", "us-east-1"
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.xlarge",
    compute_initial_nodes=1,
    compute_max_nodes=2,
    auto_stop_idle_minutes=1,
    idle_check_minutes=1,
    auto_action_grace_minutes=1,
    stop_keeps_storage=True,
)
CPU = {"quiet": 1.0, "busy": 90.0}


def mails(cluster: str) -> list[str]:
    """Subjects of the emails sent for a cluster (the registry marks each message SES accepted)."""
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    reg = Registry(Aws(get_settings()))
    items = reg.ddb.scan(
        TableName=reg.table,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": f"NOTIFY#cluster-{ORG}-{cluster}/"}},
    )["Items"]
    return sorted(i["subject"]["S"] for i in items)


async def put_cpu(stack: Any, heads: dict[str, str], stop: asyncio.Event) -> None:
    """One CPUUtilization point per head node every 10 s, stamped now (the dev server's clock is
    the wall clock)."""
    cw = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudwatch", REGION)
    while not stop.is_set():
        for name, instance in heads.items():
            cw.put_metric_data(
                Namespace="AWS/EC2",
                MetricData=[
                    {
                        "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                        "Timestamp": datetime.now(UTC),
                        "Value": CPU[name],
                        "Unit": "Percent",
                    }
                ],
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 10)


def head_state(ec2: Any, instance: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "State"
    ]["Name"]


def desired(auto: Any, group: str) -> int:
    return auto.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0][
        "DesiredCapacity"
    ]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def watched(client, stack) -> dict[str, Any]:
    """Run both clusters until the quiet one is STOPPED; observe; start it; delete both."""
    s = await onboard_ready(client, stack, ORG, ACCOUNT, [REGION])
    assert s.state == m.OrgState.READY, s
    handles = {}
    for name in CPU:
        handles[name] = await client.start_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(org_id=ORG, name=name, region=REGION, config=CFG),
            id=f"cluster-{ORG}-{name}",
            task_queue="bridgehead",
            result_type=m.ClusterResult,
        )
    running = {
        n: await wait_for(
            h,
            "status",
            m.ClusterStatus,
            lambda s: s.state in (m.ClusterState.RUNNING, m.ClusterState.FAILED),
            180,
        )
        for n, h in handles.items()
    }
    assert all(s.state == m.ClusterState.RUNNING for s in running.values()), running
    heads = {n: s.outputs["HeadInstanceId"] for n, s in running.items()}
    groups = {n: s.outputs["ComputeGroupName"] for n, s in running.items()}
    ec2 = customer_admin(stack.aws_endpoint, ACCOUNT, "ec2", REGION)
    auto = customer_admin(stack.aws_endpoint, ACCOUNT, "autoscaling", REGION)
    stop = asyncio.Event()
    feeder = asyncio.create_task(put_cpu(stack, heads, stop))
    out: dict[str, Any] = {"heads": heads}
    try:
        quiet, busy = handles["quiet"], handles["busy"]
        announced = await wait_for(
            quiet, "status", m.ClusterStatus, lambda s: s.pending_action is not None, 240
        )
        out["pending"] = announced.pending_action
        out["stopped"] = await wait_for(
            quiet, "status", m.ClusterStatus, lambda s: s.state == m.ClusterState.STOPPED, 180
        )
        out["mails_quiet"] = mails("quiet")
        out["quiet_head_stopped"] = head_state(ec2, heads["quiet"])
        out["quiet_desired_stopped"] = desired(auto, groups["quiet"])
        out["busy_status"] = await busy.query("status", result_type=m.ClusterStatus)
        out["mails_busy"] = mails("busy")
        hist = await busy.fetch_history()
        out["busy_cpu_reads"] = sum(
            1
            for e in hist.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "head_cpu"
        )
        # through the CLI: starter cluster start
        started = await asyncio.to_thread(
            starter, stack, "cluster", "start", "--org", ORG, "--name", "quiet", "--json"
        )
        assert started.returncode == 0, started.stderr
        out["cli_start"] = json.loads(started.stdout)
        await wait_for(
            quiet, "status", m.ClusterStatus, lambda s: s.state == m.ClusterState.RUNNING, 60
        )
        out["quiet_head_started"] = head_state(ec2, heads["quiet"])
        out["quiet_desired_started"] = desired(auto, groups["quiet"])
    finally:
        stop.set()
        await feeder
        for h in handles.values():
            await h.signal("delete")
        out["results"] = {n: await h.result() for n, h in handles.items()}
    return out


async def test_an_idle_cluster_is_announced_by_email_then_stopped_keeping_storage(watched):
    pending = watched["pending"]
    assert (pending.action, pending.reason) == ("stop", "idle")
    assert watched["stopped"].stopped_at is not None
    assert [d.split(" ", 1)[1] for d in watched["stopped"].decisions] == [
        f"automatic stop announced (idle), due {pending.due:%Y-%m-%dT%H:%M:%SZ}",
        "automatic stop (idle) carried out",
    ]
    assert watched["mails_quiet"] == [
        "Cluster quiet is running",
        f"Cluster quiet will be stopped (storage kept) at {pending.due:%H:%M} UTC",
    ]
    # Instances stopped in the customer account, storage kept (the head node is stopped, not
    # terminated), nothing billed while STOPPED, and start brings both back.
    assert watched["quiet_head_stopped"] == "stopped"
    assert watched["quiet_desired_stopped"] == 0
    assert watched["quiet_head_started"] in ("pending", "running")
    assert watched["quiet_desired_started"] == 1
    assert watched["cli_start"] == {"signalled": "start", "workflow_id": f"cluster-{ORG}-quiet"}
    res = watched["results"]["quiet"]
    assert res.state == m.ClusterState.DELETED
    assert len(res.segments) == 2
    assert res.segments[0].end == watched["stopped"].stopped_at
    assert res.segments[1].start > res.segments[0].end


async def test_twin_a_busy_cluster_is_read_and_left_running(watched):
    """The same checks fail for busy data: the idle decision follows the points the test put."""
    busy = watched["busy_status"]
    assert busy.state == m.ClusterState.RUNNING and busy.pending_action is None
    assert watched["busy_cpu_reads"] >= 1, "the busy cluster's CPU was read"
    assert watched["mails_busy"] == ["Cluster busy is running"]
    res = watched["results"]["busy"]
    assert res.state == m.ClusterState.DELETED and len(res.segments) == 1


async def dry_run(client: Any, name: str) -> m.ClusterResult:
    return await client.execute_workflow(
        "ClusterLifecycle",
        m.ClusterLifecycleInput(org_id=ORG, name=name, region=REGION, config=CFG, dry_run=True),
        id=f"cluster-{ORG}-{name}",
        task_queue="bridgehead",
        result_type=m.ClusterResult,
    )


async def set_budget(client: Any, amount: str | None) -> m.UpdateResult:
    return await client.get_workflow_handle(f"org-{ORG}").execute_update(
        "set_budget",
        m.SetBudgetInput(
            monthly_budget_usd=None if amount is None else Decimal(amount), budget_action="stop"
        ),
        result_type=m.UpdateResult,
    )


async def test_a_cluster_that_would_exceed_the_budget_is_refused_and_the_dry_run_says_why(
    client, stack, watched
):
    from temporalio.client import WorkflowFailureError

    from bridgehead import budget

    # The refusal is decided by what the cluster costs for the rest of the month, so the budget is
    # set from that price: a fixed $1 was more than the rest of the month ($0.21/h) after 19:15 on
    # a month's last day, and the dry run meant to be refused was accepted. In the month's last
    # minutes the rest is too small to refuse anything: the test waits for the next month.
    now = datetime.now(UTC)
    if budget.month_end(now) - now < timedelta(minutes=10):
        await asyncio.sleep((budget.month_end(now) - now).total_seconds() + 1)
    # A budget the cluster fits in: accepted, and the dry run shows the month's price.
    await set_budget(client, "100000")
    before = datetime.now(UTC)
    res = await dry_run(client, "fits")
    after = datetime.now(UTC)
    p = res.price
    assert p is not None and p.budget_left_usd is not None and p.rest_of_month_usd is not None
    spent = Decimal(100000) - p.budget_left_usd
    assert spent < 10  # what the test's clusters cost
    two_minutes = p.hourly_usd / 30
    assert (
        budget.rest_of_month(p.hourly_usd, after) - two_minutes
        <= p.rest_of_month_usd
        <= budget.rest_of_month(p.hourly_usd, before) + two_minutes
    ), (p, before, after)
    # Half of that rest of the month left: refused, the refusal naming the figures.
    limit = spent + (p.rest_of_month_usd / 2).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    r = await set_budget(client, str(limit))
    assert r.message == f"monthly budget set to ${limit} (stop at 100 %)"
    s = await client.get_workflow_handle(f"org-{ORG}").query("status", result_type=m.OrgStatus)
    assert (s.monthly_budget_usd, s.budget_action) == (limit, "stop")
    with pytest.raises(WorkflowFailureError) as e:
        await dry_run(client, "pricey")
    text = str(e.value.cause)
    assert "budget: this cluster would cost $" in text and "monthly budget" in text, text
    assert "left of the $" in text, text
    removed = await asyncio.to_thread(
        starter, stack, "org", "set-budget", "--org", ORG, "--remove", "--json"
    )
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["message"] == "monthly budget removed"
    assert (await dry_run(client, "nobudget")).price.rest_of_month_usd is None
