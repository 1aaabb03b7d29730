"""Activities waiting on AWS do not hold up workflow tasks (worker.activity_threads).

The SDK runs sync activities and sync local activities on the worker's one executor. With as many
threads as activity slots, a worker whose activity slots were all taken by calls waiting on AWS
had no thread left for a workflow task's local activity (the registry reads and writes of every
lifecycle step): every workflow on the worker stalled until an AWS call returned. Here both slots
hold a thread until the test lets go, and a third workflow's local activity must still run.
Twin: the former executor (threads = activity slots) leaves it waiting."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner

from bridgehead.settings import get_settings
from worker import activity_threads, build_worker

pytestmark = pytest.mark.integration

SLOTS = 2
#: Per task queue: the event that lets the held calls answer, and the count of calls holding.
_gates: dict[str, tuple[threading.Event, threading.Semaphore]] = {}


@activity.defn(name="test_hold")
def hold(_: int) -> None:
    """An AWS call that does not answer until the test says so."""
    release, holding = _gates[activity.info().task_queue]
    holding.release()
    release.wait(60)


@activity.defn(name="test_registry_read")
def registry_read(_: int) -> str:
    return "read"


@workflow.defn(name="TestHolds")
class Holds:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(hold, 0, start_to_close_timeout=timedelta(seconds=90))


@workflow.defn(name="TestReadsLocally")
class ReadsLocally:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_local_activity(
            registry_read, 0, start_to_close_timeout=timedelta(seconds=30)
        )


async def local_read_while_slots_wait(client, threads: int, seconds: float) -> bool:
    """Whether a local activity finished within ``seconds`` while every activity slot waited on
    AWS."""
    settings = get_settings().model_copy(
        update={"max_concurrent_activities": SLOTS, "max_concurrent_local_activities": SLOTS}
    )
    tq = f"tq-threads-{uuid.uuid4()}"
    release, holding = _gates[tq] = (threading.Event(), threading.Semaphore(0))
    with ThreadPoolExecutor(threads) as ex:
        w = build_worker(
            client,
            settings,
            [hold, registry_read],
            ex,
            task_queue=tq,
            workflows=[Holds, ReadsLocally],
            interceptors=[],
            # what is tested is the executor; this module's imports are not sandbox-safe
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        async with w:
            try:
                held = [
                    await client.start_workflow(Holds.run, id=f"hold-{tq}-{i}", task_queue=tq)
                    for i in range(SLOTS)
                ]
                for _ in range(SLOTS):  # both slots are taken and their threads wait
                    assert await asyncio.to_thread(holding.acquire, True, 30)
                reads = await client.start_workflow(
                    ReadsLocally.run, id=f"read-{tq}", task_queue=tq
                )
                result = asyncio.ensure_future(reads.result())
                done, _ = await asyncio.wait({result}, timeout=seconds)
                ran = result in done
            finally:
                release.set()  # the held calls answer, whatever happened above
            assert await result == "read"  # it runs once a thread is free, either way
            for h in held:
                await h.result()
    return ran


async def test_a_local_activity_runs_while_every_activity_slot_waits_on_aws(client):
    threads = activity_threads(SLOTS, SLOTS)
    assert threads == 2 * SLOTS
    assert await local_read_while_slots_wait(client, threads, 30)


async def test_twin_threads_sized_to_activity_slots_starve_the_local_activity(client):
    # It cannot run before the held calls answer: no thread is free, however long one waits.
    assert not await local_read_while_slots_wait(client, SLOTS, 3)
