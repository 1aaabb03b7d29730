"""A ``serve`` block ends every workflow its worker ran or started, not only the ones started
through it (tests/support/timeskip.py ``RanHere``): a run left behind with a timer and no worker
stops the time-skipping server from skipping, and the module's next ``env.sleep`` fails after
about 30 s with an RPC error. An onboarding's ``BillingMeter`` is started ABANDON, so it outlived
its block. (The CI stalls of sessions 7 and 8 failed the same way, ``Timeout expired``; that this
was their cause is not shown.)

A child's id is recorded when its parent asks for it, so a block that ends before the worker has
run the child still ends it. Twin: a block that ends only what it
started (the former ``end_leftovers``) leaves the ABANDONed child running, and the server cannot
skip ten minutes within fifteen real seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from tests.support import timeskip
from tests.support.timeskip import serve
from tests.workflows.leftover_flows import Parent, Ticker


async def leave_a_child(env) -> str:  # type: ignore[no-untyped-def]
    """A block whose tracked workflow started an ABANDONed child, ended once the child runs;
    returns the child's id."""
    child = f"ticker-{uuid.uuid4().hex[:6]}"
    async with serve(env, [], workflows=[Parent, Ticker]) as w:
        await w.start("LeftoverParent", child, id=f"parent-{uuid.uuid4().hex[:6]}")
        h = env.client.get_workflow_handle(child)
        for _ in range(100):
            try:
                if (await h.describe()).status == WorkflowExecutionStatus.RUNNING:
                    break
            except RPCError:
                pass
            await asyncio.sleep(0.05)
    return child


#: Real seconds allowed for the skip. Not shown to be enough when a block ends the moment a child
#: exists: then the server stayed unable to skip for more than 15 s in 2 of about 20 runs, even
#: with the child ended (likely a task handed to the worker as it stopped); not mended.
WITHIN_S = 15.0


async def skips(env, minutes: int = 10, within_s: float = WITHIN_S) -> bool:  # type: ignore[no-untyped-def]
    """Whether the server skips ``minutes`` of its time within ``within_s`` real seconds."""
    try:
        await env.client.test_service.unlock_time_skipping_with_sleep(
            SleepRequest(duration=Duration(seconds=minutes * 60)),
            timeout=timedelta(seconds=within_s),
        )
        return True
    except RPCError:
        return False


async def test_the_block_ends_an_abandoned_child_and_time_skips(ts_env):
    child = await leave_a_child(ts_env)
    status = (await ts_env.client.get_workflow_handle(child).describe()).status
    assert status == WorkflowExecutionStatus.TERMINATED, status
    assert await skips(ts_env)


async def test_twin_ending_only_what_the_block_started_stalls_the_server(
    monkeypatch: pytest.MonkeyPatch,
):
    from temporalio.worker import WorkflowInboundInterceptor

    from tests.conftest import new_ts_env

    # The former end: the worker's runs are not recorded, so only tracked handles are ended.
    monkeypatch.setattr(
        timeskip.RanHere,
        "workflow_interceptor_class",
        lambda self, input: WorkflowInboundInterceptor,
    )
    env = await new_ts_env()  # its own server: this one is left unable to skip
    try:
        child = await leave_a_child(env)
        status = (await env.client.get_workflow_handle(child).describe()).status
        assert status == WorkflowExecutionStatus.RUNNING, status
        assert not await skips(env)
    finally:
        await env.shutdown()  # type: ignore[attr-defined]
