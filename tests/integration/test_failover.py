"""Failover on a real dev server, measured by the crash suite's own functions (``spans``, ``land``,
``failover`` of tests/integration/test_crash.py): two worker processes, the one running an
activity is SIGKILLed, the other takes the work up.

With the shipped options (``AWS_CALL``: 10 s heartbeat timeout, 1 s first retry) the work resumes
on the survivor within the bounds; the twin plants the defect the bound exists to catch -- a long
start-to-close (25 s) and no heartbeat timeout -- and the same measurement reports more than 15 s
and fails the same check.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from starter.local import LocalStack, free_port
from tests.integration.test_crash import FAILOVER_P95, failover, identity, land, spans

pytestmark = pytest.mark.integration
PROBE = Path(__file__).resolve().parents[1] / "support" / "failover_probe.py"
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "failover-probe.json"


async def kill_under_activity(
    client, address: str, procs: dict[str, subprocess.Popen], tq: str, options: str
) -> dict:  # noqa: ANN001
    """Start the probe, SIGKILL the worker running its activity, wait for the result; the
    measurement of that kill, as the crash suite makes it."""
    from temporalio.api.enums.v1 import PendingActivityState

    wf_id = f"failover-{options}-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(
        "FailoverProbe", options, id=wf_id, task_queue=tq, result_type=int
    )
    victim = None
    for _ in range(200):
        desc = await h.describe()
        running = [
            pa.last_worker_identity
            for pa in desc.raw_description.pending_activities
            if pa.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ]
        if running:
            victim = running[0]
            break
        await asyncio.sleep(0.1)
    assert victim, "the activity never started"
    await asyncio.sleep(1.0)  # a moment into the call (a heartbeat has gone out)
    name = next(n for n, p in procs.items() if identity(p.pid) == victim)
    at = time.time()
    procs[name].send_signal(signal.SIGKILL)
    procs[name].wait()
    assert await h.result() == 2  # the retry, on the survivor
    events = list((await h.fetch_history()).events)
    kills = [{"at": at, "victim": victim}]
    land(kills, spans(wf_id, events), {})
    survivor = next(identity(p.pid) for n, p in procs.items() if n != name)
    assert kills[0]["resumed_by"] == [survivor], kills
    procs[name] = spawn(address, tq)  # back to two workers
    return {"kill": kills[0], **failover(kills)}


def spawn(address: str, tq: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROBE), address, tq],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.timeout(300)
async def test_failover_on_a_real_server_and_its_twin(tmp_path):
    from temporalio.client import Client

    st = LocalStack(
        state_dir=tmp_path,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        with_worker=False,
    )
    procs: dict[str, subprocess.Popen] = {}
    try:
        st.start_temporal()
        client = await Client.connect(st.temporal_address)
        tq = f"failover-{uuid.uuid4().hex[:8]}"
        procs = {"a": spawn(st.temporal_address, tq), "b": spawn(st.temporal_address, tq)}
        await asyncio.sleep(3)  # both polling
        shipped = await kill_under_activity(client, st.temporal_address, procs, tq, "shipped")
        await asyncio.sleep(3)  # the replacement polling
        planted = await kill_under_activity(client, st.temporal_address, procs, tq, "planted")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        st.stop()
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"shipped": shipped, "planted": planted}, indent=2))
    # Shipped: the heartbeat timeout (10 s after the last beat) plus the 1 s first retry.
    assert shipped["within_bounds"], shipped
    assert shipped["max_s"] <= 12.5, shipped
    # Twin: the start-to-close (25 s from the attempt's start, 1 s of it before the kill) plus
    # the first retry: the same measurement reports it, and the same check fails.
    assert planted["within_bounds"] is False, planted
    assert planted["max_s"] > FAILOVER_P95 and planted["max_s"] >= 24.0, planted
