"""The waiting scenario's window with the worker in its own process (``WorkerProcess.sample``)
is never a stats line short: lines come about once a second, a little later on a loaded machine,
and a fresh-clone CI run measured a 3.0 s window for 4 s asked (the smoke test wants 3.5-6).
Twin: the sampling before session 8, on the same feed of lines, comes out short."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.scenarios.waiting import WorkerProcess

PERIOD = 0.26  # a line a little less often than every SECONDS / 4, as on a loaded machine
SECONDS = 1.0


def line(n: int) -> dict[str, Any]:
    return {"busy": 0.1 * n, "sum": n, "count": n, "max": 1}


async def feed(w: WorkerProcess) -> None:
    for n in range(1, 40):
        await asyncio.sleep(PERIOD)
        w.lines.append((time.monotonic(), line(n)))


async def sampled(sample: Any) -> float:
    w = WorkerProcess("q", "addr", 1, 1)
    w.lines.append((time.monotonic(), line(0)))  # the last line arrived just as the window opens
    feeder = asyncio.create_task(feed(w))
    try:
        window, *_ = await sample(w, SECONDS)
    finally:
        feeder.cancel()
    return window


async def test_the_window_is_at_least_what_was_asked():
    window = await sampled(WorkerProcess.sample)
    assert SECONDS <= window <= SECONDS + 2 * PERIOD


async def test_twin_the_former_sampling_is_a_line_short():
    async def former(w: WorkerProcess, seconds: float) -> tuple[float, ...]:
        (t0, _), _ = w.lines[-1], len(w.lines)
        await asyncio.sleep(seconds)
        return (w.lines[-1][0] - t0,)

    assert await sampled(former) < 0.9 * SECONDS
