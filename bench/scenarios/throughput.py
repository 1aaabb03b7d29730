"""Scenario 2, throughput: N concurrent cluster lifecycles against N no-op workflows of the same
shape (same number of activities, same wait for ``delete``): the orchestration ceiling of this
server, worker and machine. Ratio and clusters per second, per worker tuning."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench.harness import (
    CLUSTER_CONFIG,
    ORG,
    REGION,
    TUNINGS,
    Bench,
    Recorder,
    make_interceptor,
    status_attr,
    until,
)


async def throughput(b: Bench, n: int, tuning: str) -> dict[str, Any]:
    from bench.heldstacks import HeldStacks
    from bench.noop import NoopInput, NoopLifecycle, bench_noop
    from bridgehead import models as m

    tq = f"bench-{tuning}"
    acts = [*b.real_activities(), bench_noop]
    rec = Recorder()
    w, ex = b.worker(
        tq, tuning, acts, workflows=[NoopLifecycle], interceptors=[make_interceptor(rec)]
    )
    held = HeldStacks()
    held.released = True
    tq_stub = f"bench-stub-{tuning}"
    w_stub, ex_stub = b.worker(tq_stub, tuning, held.activities())
    tag = uuid.uuid4().hex[:4]
    async with w, w_stub:
        # Bridgehead: n clusters at once, each deleted as soon as it runs.
        async def one_cluster(i: int) -> Any:
            h = await b.client.start_workflow(
                "ClusterLifecycle",
                m.ClusterLifecycleInput(
                    org_id=ORG,
                    name=f"t{tag}-{i}",
                    region=REGION,
                    config=m.ClusterConfig(**CLUSTER_CONFIG),
                ),
                id=f"cluster-{ORG}-t{tag}-{i}",
                task_queue=tq,
                result_type=m.ClusterResult,
            )
            await until(lambda: status_attr(h), lambda s: s in ("RUNNING", "FAILED"), 900, 1.0)
            await h.signal("delete")
            return h, await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one_cluster(i) for i in range(n)))
        real_s = time.perf_counter() - t0
        aws_s = rec.busy_seconds
        states = [r.state.value for _, r in done]
        # The shape of a lifecycle, from one real history: activities before RUNNING and after.
        before, after = await lifecycle_shape(done[0][0])

        # The same lifecycles with AWS stubbed (stacks complete at the first poll): Bridgehead's own
        # workflow logic against the ceiling, without the emulator's cost.
        async def one_stubbed(i: int) -> Any:
            h = await b.client.start_workflow(
                "ClusterLifecycle",
                m.ClusterLifecycleInput(
                    org_id="bhstub",
                    name=f"s{tag}-{i}",
                    region=REGION,
                    config=m.ClusterConfig(**CLUSTER_CONFIG),
                ),
                id=f"cluster-bhstub-s{tag}-{i}",
                task_queue=tq_stub,
                result_type=m.ClusterResult,
            )
            await until(lambda: status_attr(h), lambda s: s in ("RUNNING", "FAILED"), 900, 1.0)
            await h.signal("delete")
            return await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        stubbed = await asyncio.gather(*(one_stubbed(i) for i in range(n)))
        stub_s = time.perf_counter() - t0

        async def one_noop(i: int) -> Any:
            h = await b.client.start_workflow(
                "BenchNoopLifecycle",
                NoopInput(before=before, after=after),
                id=f"noop-{tag}-{i}",
                task_queue=tq,
            )
            await until(lambda: status_attr(h), lambda s: s == "RUNNING", 900, 1.0)
            await h.signal("delete")
            return await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_noop(i) for i in range(n)))
        noop_s = time.perf_counter() - t0
    ex.shutdown()
    ex_stub.shutdown()
    return {
        "tuning": tuning,
        **TUNINGS[tuning],
        "clusters": n,
        "deleted": states.count("DELETED"),
        "bridgehead_seconds": round(real_s, 2),
        "ceiling_seconds": round(noop_s, 2),
        "clusters_per_second": round(n / real_s, 2),
        "ceiling_per_second": round(n / noop_s, 2),
        "ratio_to_ceiling": round((n / real_s) / (n / noop_s), 2),
        "activities_before_running": before,
        "activities_after_delete": after,
        "stubbed_aws_seconds": round(stub_s, 2),
        "stubbed_deleted": sum(r.state == m.ClusterState.DELETED for r in stubbed),
        "stubbed_ratio_to_ceiling": round(noop_s / stub_s, 2),
        # Time inside the real activities (the emulated AWS work) and the wall time it needs at
        # best with this many activity threads: when this approaches bridgehead_seconds, the
        # emulator, not orchestration, is the bottleneck.
        "activity_seconds": round(aws_s, 1),
        "activity_bound_seconds": round(aws_s / TUNINGS[tuning]["max_concurrent_activities"], 1),
    }


async def lifecycle_shape(handle: Any) -> tuple[int, int]:
    from temporalio.api.enums.v1 import EventType

    before = after = 0
    signalled = False
    for e in (await handle.fetch_history()).events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signalled = True
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            after += signalled
            before += not signalled
    return before, after
