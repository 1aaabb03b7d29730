"""One worker process of the scale-out scenario: Bridgehead's worker (every workflow, the real
activities) on the given task queue, its AWS answered by the shared fake world served by the
benchmark (:func:`bench.fakeworld.serve`). Connection settings come from the environment the
benchmark passes down. Prints ``ready`` once polling, runs until SIGTERM.

``python -m bench.workerproc --task-queue Q --world /path/to/world.sock``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def main(task_queue: str, world_address: str) -> None:
    from bench.fakeaws import FakeAws
    from bench.fakeworld import connect
    from bench.harness import TUNINGS
    from bridgehead.client import make_client
    from bridgehead.settings import get_settings
    from worker import build_activities, build_worker, install_runtime

    settings = get_settings()
    install_runtime(settings.model_copy(update={"metrics_port": None}))
    client = await make_client(settings)
    aws = FakeAws(settings, connect(world_address))
    tuning = TUNINGS["default"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with ThreadPoolExecutor(tuning["max_concurrent_activities"]) as ex:
        w = build_worker(
            client, settings, build_activities(settings, aws), ex, task_queue=task_queue, **tuning
        )
        async with w:
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.workerproc")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--world", required=True)
    a = p.parse_args()
    from bridgehead.logging import configure_logging

    configure_logging("WARNING")
    asyncio.run(main(a.task_queue, a.world))
    sys.stdout.flush()
    os._exit(0)  # the SDK runtime can abort at interpreter exit (sdk-python#300)
