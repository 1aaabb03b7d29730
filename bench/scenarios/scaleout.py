"""Scenario 5, scale-out: 1, 2 and 4 worker processes (:mod:`bench.workerproc`) on one task queue
against the same dev server, N concurrent cluster lifecycles each time, AWS answered by one fake
world shared by every process (:func:`bench.fakeworld.serve`). Configurations are interleaved
(1 2 4 1 2 4 …), with fresh processes and a fresh task queue per repetition; throughput per
configuration is reported as median with min–max, with the dev server's CPU share: when more
workers stop adding throughput while the server's CPU climbs, the server is the bound."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bench.harness import Bench, cpu_seconds, load_average, start_worker, wait_ready
from bench.stats import interleaved, summarise


async def scaleout(b: Bench, n: int, workers: list[int], reps: int) -> dict[str, Any]:
    from bench.fakeaws import seed_from
    from bench.fakeworld import serve
    from bench.scenarios.throughput import ensure_org, lifecycles

    await ensure_org(b)
    manager, address, world = serve()
    cpu: dict[int, list[float]] = {k: [] for k in workers}
    load_before = load_average()
    temporal_pid = b.stack.procs["temporal"].pid
    try:
        world.configure(0.0, 0.0)
        seed_from(b.aws, world)
        tag = uuid.uuid4().hex[:4]

        def config(k: int) -> Any:
            async def run(i: int) -> float:
                tq = f"bench-scale-{tag}-{k}-{i}"
                procs = [start_worker(tq, address) for _ in range(k)]
                try:
                    for p in procs:
                        await asyncio.to_thread(wait_ready, p)
                    srv0 = cpu_seconds(temporal_pid)
                    seconds, _ = await lifecycles(b, tq, n, f"x{tag}{k}r{i}")
                    cpu[k].append(100 * (cpu_seconds(temporal_pid) - srv0) / seconds)
                    return n / seconds
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        await asyncio.to_thread(p.wait, 30)

            return run

        samples = await interleaved({str(k): config(k) for k in workers}, reps)
    finally:
        manager.shutdown()
    return {
        "clusters": n,
        "reps": reps,
        "worker_processes": workers,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "clusters_per_second": {k: summarise(v, 2) for k, v in samples.items()},
        "server_cpu_percent": {str(k): summarise(v, 1) for k, v in cpu.items()},
    }
