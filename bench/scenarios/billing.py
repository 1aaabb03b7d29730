"""Scenario 4, billing: the real BillingMeter and ledger activities (DynamoDB on moto) under time
skipping: cluster-hours metered per wall second, actions and events per cluster-hour."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from typing import Any

from bench.harness import REGION, Bench, time_skipping_env


async def billing(b: Bench, clusters: int, hours: int) -> dict[str, Any]:
    """The real BillingMeter and ledger activities for ``clusters`` running clusters, ``hours`` of
    time-skipped ticks. Cluster items are written to the registry as ClusterLifecycle would."""
    from temporalio.worker import Worker

    from activities.billing import BillingActivities
    from activities.registry import Registry
    from bridgehead import models as m
    from bridgehead.history_stats import count_actions
    from worker import WORKFLOWS, sandbox_runner

    reg = Registry(b.aws)
    org = f"bhbill{uuid.uuid4().hex[:4]}"
    reg.put_org(
        org,
        {
            "aws_account_id": "250000000009",
            "external_id": "bh-bench",
            "regions": [REGION],
            "state": "READY",
        },
    )
    env = await time_skipping_env()
    try:
        now = await env.get_current_time()
        start = now.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        for i in range(clusters):
            seg = m.UsageSegment(
                start=start,
                head_instance_type="t3.medium",
                compute_instance_type="c5.large",
                compute_nodes=2,
            )
            reg.put_cluster(
                org,
                f"b{i}",
                {
                    "name": f"b{i}",
                    "region": REGION,
                    "state": "RUNNING",
                    "segments": [json.loads(seg.model_dump_json())],
                },
            )
        acts = BillingActivities(b.aws, reg)
        with ThreadPoolExecutor(8) as ex:
            async with Worker(
                env.client,
                task_queue="bench-billing",
                workflows=WORKFLOWS,
                activities=[acts.close_billing_periods, acts.meter_usage],
                activity_executor=ex,
                workflow_runner=sandbox_runner(),
            ):
                h = await env.client.start_workflow(
                    "BillingMeter",
                    m.BillingMeterInput(org_id=org),
                    id=f"billing-{org}",
                    task_queue="bench-billing",
                )
                t0 = time.perf_counter()
                for _ in range(
                    hours
                ):  # hour by hour: one long skip's RPC times out while many ticks run
                    await env.sleep(timedelta(hours=1))
                await env.sleep(timedelta(minutes=15))
                wall = time.perf_counter() - t0
                usage = await h.query("usage", result_type=m.UsageTotals)
                runs, events, actions = await walk_runs(env.client, f"billing-{org}", count_actions)
                await env.client.get_workflow_handle(f"billing-{org}").terminate(
                    "benchmark finished"
                )
        cluster_hours = usage.periods_closed * clusters
        expected_minutes = usage.periods_closed * 60 * 3 * clusters
        return {
            "clusters": clusters,
            "hours": hours,
            "periods_closed": usage.periods_closed,
            "cluster_hours": cluster_hours,
            "node_minutes_ledger": usage.node_minutes,
            "node_minutes_expected": expected_minutes,
            "wall_seconds": round(wall, 2),
            "cluster_hours_per_wall_second": round(cluster_hours / wall, 1),
            "runs": runs,
            "history_events": events,
            "actions": actions,
            "actions_per_cluster_hour": round(actions / cluster_hours, 4),
            "actions_per_org_hour": round(actions / max(1, usage.periods_closed), 2),
            "events_per_cluster_hour": round(events / cluster_hours, 4),
        }
    finally:
        await env.shutdown()


async def walk_runs(client: Any, wf_id: str, count_actions: Any) -> tuple[int, int, int]:
    """Every run of a continue-as-new chain, from the first: (runs, events, actions)."""
    from temporalio.api.enums.v1 import EventType

    first = None
    runs = events = actions = 0
    handle = client.get_workflow_handle(wf_id)
    desc = await handle.describe()
    # Walk back to the first run, then forward through continued runs.
    run_id = desc.run_id
    chain = [run_id]
    while True:
        hist = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        first = hist.events[0].workflow_execution_started_event_attributes
        prev = first.continued_execution_run_id
        if not prev:
            break
        run_id = prev
        chain.append(run_id)
    for rid in chain:
        hist = await client.get_workflow_handle(wf_id, run_id=rid).fetch_history()
        runs += 1
        events += len(hist.events)
        actions += count_actions(hist.events) + 1  # + the run's start (or continue-as-new)
        assert hist.events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    return runs, events, actions
