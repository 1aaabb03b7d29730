"""Lag and Temporal actions of one stack wait, measured on the time-skipping server.

A ``ClusterLifecycle`` runs against the fake CloudFormation of tests/workflows/test_cluster_timeskip.py
(the stack reaches its terminal state ``takes`` after creation) and, when ``send_event``, a fake
event source: ``DELIVERY`` after the stack is terminal, it signals ``stack_event`` as the consumer
(activities/stack_events.py) does on a CloudFormation notification. Measured from the run's own
history and the fake's clock:

* **lag**: from the stack's terminal moment to the check that saw it terminal;
* **wait actions**: what the wait itself is billed (bridgehead/history_stats.py): timers, every
  attempt of ``check_stack`` / ``poll_stack``, and ``stack_event`` signals;
* **actions to RUNNING**: the whole run until RUNNING (start, validation, registry, upserts...).

``python -m tests.support.wait_costs [out.json]`` prints the table of docs/benchmarks.md (and keeps
the samples in ``out.json``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bridgehead import ids
from bridgehead import models as m
from bridgehead.history_stats import billable_actions
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state

#: CloudFormation -> SNS -> SQS -> the consumer's long poll -> signal: seconds on AWS; 5 s here.
DELIVERY = timedelta(seconds=5)
ACCOUNT = "222222222222"


@dataclass
class WaitCost:
    takes_minutes: float
    lag_seconds: float
    wait_actions: int
    checks: int
    timers: int
    signals: int
    actions_to_running: int
    events_to_running: int
    workflow_tasks_to_running: int


def stack_id(stack_name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack_name}/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


async def measure_wait(
    env: Any,
    takes: timedelta,
    *,
    send_event: bool = True,
    runner: Any = None,
    delivery: timedelta = DELIVERY,
) -> WaitCost:
    """One creation of ``takes``; see the module doc for what is measured."""
    cloud = FakeCloud(create_takes=takes)
    name = f"w{uuid.uuid4().hex[:8]}"
    async with serve(env, cloud.activities(), runner=runner) as w:
        h = await w.start_cluster(CFG, name)
        stack = ids.cluster_stack("acme", name)
        for _ in range(600):  # real time: the create_stack activity runs at once
            if stack in cloud.stacks:
                break
            await asyncio.sleep(0.05)
        terminal = cloud.terminal_at(stack)
        await env.sleep(terminal + delivery - await env.get_current_time())
        if send_event:
            notice = m.StackEventNotice(stack_id=stack_id(stack), status="CREATE_COMPLETE")
            await h.signal("stack_event", notice)
        await until_state(env, h, m.ClusterState.RUNNING, step=timedelta(seconds=5), limit=720)
        history = await h.fetch_history()
        await h.terminate("measured")
    seen = next(at for at, st in cloud.checks + cloud.poll_log if st == "CREATE_COMPLETE")
    a = billable_actions(history.events)
    checks = a.activities["check_stack"] + a.activities["poll_stack"]
    signals = a.signals["stack_event"]
    return WaitCost(
        takes_minutes=takes / timedelta(minutes=1),
        lag_seconds=(seen - terminal).total_seconds(),
        wait_actions=a.timers + checks + signals,
        checks=checks,
        timers=a.timers,
        signals=signals,
        actions_to_running=a.total,
        events_to_running=a.events,
        workflow_tasks_to_running=a.workflow_tasks,
    )


async def _main() -> None:
    from temporalio.worker import UnsandboxedWorkflowRunner

    from tests.conftest import new_ts_env
    from workflows import _patches as wf
    from workflows import _waiting

    env = await new_ts_env()
    rows: dict[str, list[dict[str, Any]]] = {"events": [], "safety net only": [], "30 s poll": []}
    async with env:
        for minutes in (10, 40, 180):
            takes = timedelta(minutes=minutes)
            rows["events"].append(asdict(await measure_wait(env, takes)))
            rows["safety net only"].append(asdict(await measure_wait(env, takes, send_event=False)))
            # Today's path (patch off): 10-minute polling windows of 30 s retries, no events.
            real = wf.patched
            wf.patched = lambda patch_id: patch_id != _waiting.PATCH  # type: ignore[assignment]
            try:
                legacy = await measure_wait(
                    env, takes, send_event=False, runner=UnsandboxedWorkflowRunner()
                )
            finally:
                wf.patched = real
            rows["30 s poll"].append(asdict(legacy))
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if out is not None:
        out.write_text(json.dumps(rows, indent=1) + "\n")
    for way, costs in rows.items():
        for c in costs:
            print(
                f"| {way} | {c['takes_minutes']:g} min | {c['lag_seconds']:.1f} s | {c['wait_actions']} "
                f"| {c['checks']} / {c['timers']} / {c['signals']} | {c['actions_to_running']} "
                f"| {c['events_to_running']} |"
            )


if __name__ == "__main__":
    asyncio.run(_main())
