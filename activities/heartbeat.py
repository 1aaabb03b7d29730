"""Background heartbeats for every activity that has a heartbeat timeout.

Why: when a worker process dies (SIGKILL, OOM, a lost node), Temporal learns that an activity
attempt is gone only when one of its timeouts fires. Without a heartbeat timeout that is the
start-to-close timeout, which must be long enough for the slowest call (30-180 s), so failover took
that long. With a heartbeat timeout of ~10 s (``workflows/_options.py``) and this heartbeater, a
dead worker is noticed within about 10 s and the attempt is retried on a surviving worker.

How: a worker interceptor (the SDK's ``Interceptor``) wraps each activity execution. While the
activity runs -- our activities are sync ``def`` functions making blocking boto3 calls in the
worker's thread pool -- an asyncio task on the worker's event loop calls the outbound
interceptor's ``heartbeat()`` every ``heartbeat_timeout / BEATS_PER_TIMEOUT`` seconds (the SDK
batches heartbeats further, at most one per 80 % of the timeout). The beat comes from the event
loop, not from the activity's thread, so it says "this worker process is alive"; a call that hangs
inside a live worker is bounded by the start-to-close timeout instead. Activities without a
heartbeat timeout are left alone. An activity that heartbeats progress details itself keeps doing
so; the background beats carry no details, and none of our activities resume from details.

This is PostHog's ``Heartbeater`` idea (``posthog/temporal/common/heartbeat.py``) applied once, at
the worker, instead of in every activity.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

#: Beats sent per heartbeat timeout: a few, so one delayed beat on a loaded machine is harmless.
BEATS_PER_TIMEOUT = 4


def beat_interval(heartbeat_timeout: timedelta | None) -> float | None:
    """Seconds between background beats for an activity with this heartbeat timeout (None: no
    heartbeat timeout, so no beats)."""
    if not heartbeat_timeout:
        return None
    return heartbeat_timeout.total_seconds() / BEATS_PER_TIMEOUT


@contextlib.asynccontextmanager
async def heartbeating(beat: Callable[[], None], interval: float | None) -> Any:
    """Call ``beat`` every ``interval`` seconds while the body runs (never, if ``interval`` is
    None). The first beat goes out after one interval, not at once: the heartbeat timeout runs
    from the attempt's start anyway, and Temporal Cloud bills every recorded heartbeat as an
    action, so a short attempt (most AWS calls) records none."""

    async def loop() -> None:
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            beat()

    task = asyncio.create_task(loop()) if interval else None
    try:
        yield
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _HeartbeatInbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self._outbound = outbound
        super().init(outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        # The outbound interceptor's heartbeat is safe to call from the event loop (the one the
        # sync activity's thread sees would block it).
        interval = beat_interval(activity.info().heartbeat_timeout)
        async with heartbeating(self._outbound.heartbeat, interval):
            return await super().execute_activity(input)


class HeartbeatInterceptor(Interceptor):
    """Pass to the worker (``interceptors=[HeartbeatInterceptor()]``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HeartbeatInbound(next)
