"""Scenario 3, waiting: W clusters whose stacks stay CREATE_IN_PROGRESS (a controllable
CloudFormation): worker memory, activity executions in flight while waiting, history events per
cluster; events after one hour measured on the time-skipping server."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from bench.harness import CLUSTER_CONFIG, REGION, Bench, rss_mib, time_skipping_env


async def waiting(b: Bench, n: int, seconds: float, hour_sample: int) -> dict[str, Any]:
    from bench.heldstacks import HeldStacks
    from bridgehead import models as m

    held = HeldStacks()
    tq = "bench-wait"
    w, ex = b.worker(tq, "default", held.activities())
    rss_before = rss_mib()
    cfg = m.ClusterConfig(**CLUSTER_CONFIG)
    # A fresh name per run: the workflow id must be the one its input computes (cluster-<org>-<name>).
    tag = uuid.uuid4().hex[:4]
    async with w:
        t0 = time.perf_counter()
        handles = []
        for batch in range(0, n, 100):
            handles += await asyncio.gather(
                *(
                    b.client.start_workflow(
                        "ClusterLifecycle",
                        m.ClusterLifecycleInput(
                            org_id="bhwait", name=f"w{tag}-{i}", region=REGION, config=cfg
                        ),
                        id=f"cluster-bhwait-w{tag}-{i}",
                        task_queue=tq,
                    )
                    for i in range(batch, min(n, batch + 100))
                )
            )
        while len(held.created) < n:
            # A lifecycle that fails before its stack (bad input) would leave this loop waiting.
            first = await handles[0].describe()
            if first.status is not None and first.status.name == "FAILED":
                raise RuntimeError(f"{handles[0].id} failed before creating its stack")
            await asyncio.sleep(0.2)
        all_waiting_s = time.perf_counter() - t0
        samples, t_end = [], time.monotonic() + seconds
        while time.monotonic() < t_end:
            samples.append(held.in_flight)
            await asyncio.sleep(0.05)
        rss_waiting = rss_mib()
        sample = handles[:: max(1, n // 20)]
        events = [len((await h.fetch_history()).events) for h in sample]
        for chunk in range(0, n, 200):
            await asyncio.gather(
                *(h.terminate("benchmark finished") for h in handles[chunk : chunk + 200]),
                return_exceptions=True,
            )
    ex.shutdown()
    hour = await waiting_one_hour(hour_sample)
    return {
        "clusters_waiting": n,
        "seconds_to_all_waiting": round(all_waiting_s, 1),
        "sampled_seconds": seconds,
        "polls": held.polls,
        "activities_in_flight_max": max(samples),
        "activities_in_flight_mean": round(sum(samples) / len(samples), 3),
        "worker_rss_mib_before": round(rss_before),
        "worker_rss_mib_waiting": round(rss_waiting),
        "rss_kib_per_waiting_cluster": round((rss_waiting - rss_before) * 1024 / n, 1),
        "history_events_per_cluster_now": round(sum(events) / len(events), 1),
        **hour,
    }


async def waiting_one_hour(n: int) -> dict[str, Any]:
    """History events per cluster after one hour of waiting, on the time-skipping server."""
    from temporalio.worker import Worker

    from bench.heldstacks import HeldStacks
    from bridgehead import models as m
    from worker import WORKFLOWS, sandbox_runner

    env = await time_skipping_env()
    try:
        held = HeldStacks()
        with ThreadPoolExecutor(8) as ex:
            async with Worker(
                env.client,
                task_queue="bench-hour",
                workflows=WORKFLOWS,
                activities=held.activities(),
                activity_executor=ex,
                workflow_runner=sandbox_runner(),
            ):
                cfg = m.ClusterConfig(**CLUSTER_CONFIG)
                hs = [
                    await env.client.start_workflow(
                        "ClusterLifecycle",
                        m.ClusterLifecycleInput(
                            org_id="bhhour", name=f"h{i}", region=REGION, config=cfg
                        ),
                        id=f"cluster-bhhour-h{i}",
                        task_queue="bench-hour",
                    )
                    for i in range(n)
                ]
                await env.sleep(timedelta(hours=1))
                events = [len((await h.fetch_history()).events) for h in hs]
                for h in hs:
                    await h.terminate("benchmark finished")
        return {
            "history_events_per_cluster_after_1h": round(sum(events) / len(events), 1),
            "hour_sample": n,
            "polls_in_the_hour": held.polls,
        }
    finally:
        await env.shutdown()
