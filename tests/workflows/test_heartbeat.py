"""The worker's background heartbeater (activities/heartbeat.py): a sync activity blocked in a call
longer than its heartbeat timeout stays alive while its worker is, so the short heartbeat timeouts
of workflows/_options.py only fire when the worker is gone (the crash suite measures that failover).

Twin: the same worker without the interceptor loses the activity to a heartbeat timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner

from activities.heartbeat import HeartbeatInterceptor, beat_interval, heartbeating
from tests.support.timeskip import serve

#: A blocking call 2.5x the heartbeat timeout, well inside start-to-close.
BLOCK_SECONDS = 2.5
HEARTBEAT_TIMEOUT = timedelta(seconds=1)


@activity.defn(name="blocking_call")
def blocking_call(seconds: float) -> str:
    time.sleep(seconds)  # a boto3 call that takes a while, as far as Temporal can tell
    return "done"


@workflow.defn(name="HeartbeatProbe")
class HeartbeatProbe:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_activity(
            blocking_call,
            seconds,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def run_probe(env, interceptors: list[Interceptor]) -> str:  # noqa: ANN001
    probe = serve(
        env,
        [blocking_call],
        workflows=[HeartbeatProbe],
        runner=UnsandboxedWorkflowRunner(),
        threads=2,
        interceptors=interceptors,
    )
    async with probe as w:
        # Real time: the heartbeat timeout must be able to fire while the call blocks.
        with env.auto_time_skipping_disabled():
            return await w.execute(HeartbeatProbe.run, BLOCK_SECONDS, id=f"hb-{uuid.uuid4()}")


async def test_a_blocking_call_longer_than_the_heartbeat_timeout_survives(ts_env):
    assert await run_probe(ts_env, [HeartbeatInterceptor()]) == "done"


async def test_twin_without_the_heartbeater_the_call_times_out(ts_env):
    with pytest.raises(WorkflowFailureError) as err:
        await run_probe(ts_env, [])
    cause = err.value.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, TimeoutError)
    assert cause.cause.type == TimeoutType.HEARTBEAT


async def test_heartbeating_beats_every_interval_from_the_first_and_stops():
    beats: list[float] = []
    t0 = time.monotonic()
    async with heartbeating(lambda: beats.append(time.monotonic() - t0), 0.1):
        await asyncio.to_thread(time.sleep, 0.35)
    n = len(beats)
    await asyncio.sleep(0.25)
    assert len(beats) == n  # stopped with the body
    # At 0.1, 0.2, 0.3 (a late wake-up on a loaded machine may drop the last, never add one, and
    # never bring two closer together than the interval).
    assert 2 <= n <= 3, beats
    assert beats[0] >= 0.099
    assert all(b - a >= 0.099 for a, b in zip(beats, beats[1:], strict=False)), beats


async def test_a_short_attempt_records_no_heartbeat():
    """Temporal Cloud bills every recorded heartbeat: an attempt shorter than one interval (most
    AWS calls) sends none; the heartbeat timeout still runs from the attempt's start."""
    beats: list[float] = []
    async with heartbeating(lambda: beats.append(1), 0.2):
        await asyncio.sleep(0.05)
    assert beats == []


async def test_no_heartbeat_timeout_means_no_beats():
    beats: list[int] = []
    async with heartbeating(lambda: beats.append(1), beat_interval(None)):
        await asyncio.sleep(0.1)
    assert beats == []
    assert beat_interval(timedelta(seconds=10)) == 2.5
