"""One worker process of the scale-out scenario: Bridgehead's worker (every workflow, the real
activities) on the given task queue, its AWS answered by the shared fake world served by the
benchmark (:func:`bench.fakeworld.serve`). Connection settings come from the environment the
benchmark passes down. Prints ``ready`` once polling, runs until SIGTERM.

``python -m bench.workerproc --task-queue Q --world /path/to/world.sock [--cache N] [--slots S]
[--stats]``: ``--cache`` and ``--slots`` override the default tuning's workflow cache and activity
slots; ``--stats`` prints, every second, a line ``stats {json}`` with the activity time so far and
the activity executions in flight sampled every 0.1 s (sum and count so far, the second's most),
for the waiting scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def report(rec: Any, sandbox: str) -> None:
    """Sample the executions in flight every 0.1 s; print every second the totals so far (activity
    seconds, sum and count of the samples), the most in flight during that second and the
    worker's sandbox mode."""
    total = count = 0
    while True:
        peak = 0
        for _ in range(10):
            total, count, peak = total + rec.in_flight, count + 1, max(peak, rec.in_flight)
            await asyncio.sleep(0.1)
        stats = {
            "busy": rec.busy_seconds,
            "sum": total,
            "count": count,
            "max": peak,
            "sandbox": sandbox,
        }
        print("stats " + json.dumps(stats), flush=True)


async def main(
    task_queue: str,
    world_address: str,
    cache: int | None = None,
    slots: int | None = None,
    stats: bool = False,
    sandbox: str | None = None,
) -> None:
    from bench.fakeaws import FakeAws
    from bench.fakeworld import connect
    from bench.harness import TUNINGS, Recorder, make_interceptor
    from bridgehead.client import make_client
    from bridgehead.settings import get_settings
    from worker import (
        HeartbeatInterceptor,
        activity_threads,
        build_activities,
        build_worker,
        install_runtime,
        tune_gc,
    )

    settings = get_settings()
    if sandbox:
        settings = settings.model_copy(update={"workflow_sandbox": sandbox})
    install_runtime(settings.model_copy(update={"metrics_port": None}))
    client = await make_client(settings)
    aws = FakeAws(settings, connect(world_address))
    tuning = dict(TUNINGS["default"])
    if cache:
        tuning["max_cached_workflows"] = cache
    if slots:
        tuning["max_concurrent_activities"] = slots
    rec = Recorder()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    threads = activity_threads(
        tuning["max_concurrent_activities"], tuning["max_concurrent_local_activities"]
    )
    with ThreadPoolExecutor(threads) as ex:
        w = build_worker(
            client,
            settings,
            build_activities(settings, aws),
            ex,
            task_queue=task_queue,
            # The worker's own interceptors kept, the recorder added.
            interceptors=[HeartbeatInterceptor(), *([make_interceptor(rec)] if stats else [])],
            **tuning,
        )
        tune_gc(settings.gc_young_threshold)  # as worker.py does
        async with w:
            print("ready", flush=True)
            sampler = asyncio.create_task(report(rec, settings.workflow_sandbox)) if stats else None
            await stop.wait()
            if sampler is not None:
                sampler.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.workerproc")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--world", required=True)
    p.add_argument("--cache", type=int)
    p.add_argument("--slots", type=int)
    p.add_argument("--stats", action="store_true")
    p.add_argument("--sandbox", choices=["isolated", "shared"])
    a = p.parse_args()
    from bridgehead.logging import configure_logging

    configure_logging("WARNING")
    asyncio.run(main(a.task_queue, a.world, a.cache, a.slots, a.stats, a.sandbox))
    sys.stdout.flush()
    os._exit(0)  # the SDK runtime can abort at interpreter exit (sdk-python#300)
