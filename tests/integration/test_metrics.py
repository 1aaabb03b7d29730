"""Metrics: the worker's Prometheus endpoint carries the SDK's metrics and Bridgehead's own, and
the counters move when clusters change state, verification fails, AWS refuses a call and usage is
written to the ledger."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.aws import Aws
from activities.billing import BillingActivities
from activities.registry import Registry
from bridgehead import models as m
from bridgehead.settings import get_settings
from starter.local import free_port
from tests.integration.helpers import (
    delete_cluster,
    launch_role_template,
    onboard_ready,
    start_cluster,
    start_org,
    wait_for,
)

pytestmark = pytest.mark.integration
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    for _ in range(60):  # the worker process may still be starting
        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
                .read()
                .decode()
            )
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise AssertionError(f"no metrics endpoint on port {port}")
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        mt = SAMPLE.match(line)
        assert mt, f"not Prometheus text format: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', mt.group(2) or ""))
        out[(mt.group(1), labels)] = float(mt.group(3))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of every series of ``name`` (with or without the ``_total`` suffix) carrying ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n in (name, f"{name}_total") and want <= ls)


async def quiet(client, seconds: float = 180) -> None:  # type: ignore[no-untyped-def]
    """Wait until no cluster of the stack is between states: the counters below are the worker's
    totals, and an earlier module of the same test process may have left a cluster creating or
    deleting (which would move them during this test)."""
    busy = (
        "WorkflowType = 'ClusterLifecycle' AND ExecutionStatus = 'Running' AND ClusterStatus IN "
        "('VALIDATING', 'CREATING', 'DELETING')"
    )
    for _ in range(int(seconds)):
        if (await client.count_workflows(busy)).count == 0:
            return
        await __import__("asyncio").sleep(1)
    raise AssertionError(f"clusters still between states after {seconds} s")


async def test_worker_metrics_move_with_the_lifecycle(client, stack):
    port = int(stack.worker_env["BRIDGEHEAD_METRICS_PORT"])
    await quiet(client)
    before = scrape(port)
    for _ in range(60):  # in a fresh stack the SDK's series appear with its first polls
        if any(n.startswith("temporal_") for n, _ in before):
            break
        await __import__("asyncio").sleep(0.5)
        before = scrape(port)
    assert any(n.startswith("temporal_") for n, _ in before), (
        "the SDK's own metrics are on the same endpoint"
    )

    # A trust policy without the External ID condition: one failed check, counted by name.
    h = await start_org(client, "metricsbad", "230000000001", ["us-east-1"])
    s = await h.query("status", result_type=m.OrgStatus)

    def drop_external_id(tpl: dict) -> None:
        role = next(r for r in tpl["Resources"].values() if r["Type"] == "AWS::IAM::Role")
        for st in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            st.pop("Condition", None)

    arn = launch_role_template(
        stack, "230000000001", s, "bridgehead-access-metricsbad", drop_external_id
    )
    await h.execute_update(
        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
    )
    await wait_for(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.ACTION_REQUIRED, 120)

    # A cluster through RUNNING to DELETED.
    assert (
        await onboard_ready(client, stack, "metrics", "230000000002", ["us-east-1"])
    ).state == m.OrgState.READY
    cfg = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.large",
        compute_initial_nodes=1,
        compute_max_nodes=2,
    )
    c, cs = await start_cluster(
        client,
        m.ClusterLifecycleInput(org_id="metrics", name="m1", region="us-east-1", config=cfg),
        120,
    )
    assert cs.state == m.ClusterState.RUNNING, cs
    running = None
    for _ in range(60):  # the gauge is refreshed from visibility every second in this stack
        running = scrape(port)
        if (
            value(running, "bridgehead_clusters", state="RUNNING")
            == value(before, "bridgehead_clusters", state="RUNNING") + 1
        ):
            break
        await __import__("asyncio").sleep(0.5)
    # Exactly one more RUNNING cluster than before (clusters of earlier tests keep their state).
    assert (
        value(running, "bridgehead_clusters", state="RUNNING")
        == value(before, "bridgehead_clusters", state="RUNNING") + 1
    )
    assert (await delete_cluster(c)).state == m.ClusterState.DELETED

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # The client sees the result once the server has recorded the completion; the SDK counts it
    # when the server answers the worker's last workflow task, which can come a moment later.
    after = scrape(port)
    for _ in range(40):
        if moved("temporal_workflow_completed", workflow_type="ClusterLifecycle") >= 1:
            break
        await __import__("asyncio").sleep(0.25)
        after = scrape(port)

    # Exact: one failed verification, one cluster through each state, one completion. A counter
    # incremented twice (a retried activity, a replayed workflow task) fails here.
    assert moved("bridgehead_verification_failures", check="trust-policy-external-id") == 1, sorted(
        (n, dict(ls)) for n, ls in after if n.startswith("bridgehead_verification")
    )
    for state in ("CREATING", "RUNNING", "DELETING", "DELETED"):
        assert moved("bridgehead_cluster_transitions", state=state) == 1, state
    assert moved("temporal_workflow_completed", workflow_type="ClusterLifecycle") == 1


def test_activity_metrics_for_ledger_minutes_and_aws_errors(stack, tmp_path):
    """The activity-side counters, recorded through the same SDK meter a worker uses and exported
    by a Prometheus runtime of the test's own."""
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    settings = get_settings()
    aws = Aws(settings)
    reg = Registry(aws)
    reg.ensure_tables()
    org = "metricsbill"
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    seg = m.UsageSegment(
        start=start,
        end=start + timedelta(minutes=90),
        head_instance_type="t3.medium",
        compute_instance_type="c5.xlarge",
        compute_nodes=2,
    )
    reg.put(
        {
            "pk": f"ORG#{org}",
            "sk": "CLUSTER#b1",
            "name": "b1",
            "region": "us-east-1",
            "state": "DELETED",
            "segments": [json.loads(seg.model_dump_json())],
        }
    )
    acts = BillingActivities(aws, reg)
    env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=start + timedelta(hours=3)),
    )
    env.run(
        acts.close_billing_periods,
        m.CloseBillingPeriodsInput(org_id=org, until=start + timedelta(hours=3)),
    )  # a retry: nothing new
    # A registry table that does not exist: a non-retryable AWS error, counted by code.
    missing = Registry(Aws(settings.model_copy(update={"registry_table": "no-such-table"})))
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        env.run(
            BillingActivities(aws, missing).close_billing_periods,
            m.CloseBillingPeriodsInput(org_id=org, until=start),
        )
    samples = scrape(port)
    assert value(samples, "bridgehead_billed_node_minutes", instance_type="t3.medium") == 90
    assert value(samples, "bridgehead_billed_node_minutes", instance_type="c5.xlarge") == 180
    assert value(samples, "bridgehead_aws_errors", code="ResourceNotFoundException") == 1


def log_violations(lines: list[str]) -> list[str]:
    """Lines that are not one JSON object each, or that carry terminal colour codes."""
    bad = []
    for line in (x for x in lines if x.strip()):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
            continue
        if not isinstance(rec, dict) or "\x1b[" in line:
            bad.append(line)
    return bad


def test_worker_log_is_one_json_stream_and_counters_follow_prometheus_naming(stack):
    """Every line the worker wrote is a JSON object (the SDK core's lines included, no terminal
    colour codes), and Bridgehead's counters carry the ``_total`` suffix the README documents."""
    lines = (stack.state_dir / "worker.log").read_text().splitlines()
    assert len(lines) > 10
    assert log_violations(lines) == [], log_violations(lines)[:5]
    names = {n for n, _ in scrape(int(stack.worker_env["BRIDGEHEAD_METRICS_PORT"]))}
    ours = {n for n in names if n.startswith("bridgehead_") and n != "bridgehead_clusters"}
    assert ours and all(n.endswith("_total") for n in ours), ours


def test_twin_the_log_check_catches_a_core_line_printed_raw():
    core = "\x1b[2m2026-11-25T23:26:50Z\x1b[0m \x1b[33m WARN\x1b[0m temporalio_sdk_core::worker: something"
    ok = json.dumps({"event": "worker started", "level": "info"})
    assert log_violations([ok, core]) == [core]
