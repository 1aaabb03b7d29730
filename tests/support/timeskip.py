"""Workers on the time-skipping test server, for tests/workflows and the measurements of
tests/support: one place that builds the worker (a new task queue, the given fake activities on a
thread pool, the sandboxed runner unless told otherwise), starts the workflows under test on its
task queue, and ends what they leave running.

Ending them matters: a workflow left behind on the test server keeps its timers (the safety-net
checks, a meter's ticks), whose tasks no worker takes once the block's worker is gone, and the
server then cannot skip time for the tests after it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from bridgehead import ids
from bridgehead import models as m
from worker import WORKFLOWS, sandbox_runner


@dataclass
class Served:
    """A worker serving ``task_queue`` for as long as its :func:`serve` block runs. Workflows
    started through it (or handed to :meth:`track`) are terminated at the block's end if they
    still run."""

    env: Any
    client: Client
    task_queue: str
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    def track(self, h: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
        """End ``h``'s workflow with the block too; returns ``h``."""
        self.handles.append(h)
        return h

    async def start(self, workflow: Any, *args: Any, id: str, **options: Any) -> Any:
        """``start_workflow`` on this task queue, tracked."""
        h = await self.client.start_workflow(
            workflow, *args, id=id, task_queue=self.task_queue, **options
        )
        return self.track(h)

    async def execute(self, workflow: Any, *args: Any, id: str, **options: Any) -> Any:
        """Start (tracked) and wait for the result."""
        return await (await self.start(workflow, *args, id=id, **options)).result()

    async def start_cluster(self, config: m.ClusterConfig, name: str, org: str = "acme") -> Any:
        """``ClusterLifecycle`` of ``name`` in us-east-1, under the workflow id users would use."""
        inp = m.ClusterLifecycleInput(org_id=org, name=name, region="us-east-1", config=config)
        return await self.start(
            "ClusterLifecycle",
            inp,
            id=ids.cluster_workflow_id(org, name),
            result_type=m.ClusterResult,
        )

    async def start_meter(self, org: str) -> Any:
        """The ``BillingMeter`` of ``org``, under its workflow id."""
        return await self.start(
            "BillingMeter",
            m.BillingMeterInput(org_id=org),
            id=ids.billing_workflow_id(org),
            result_type=m.UsageTotals,
        )

    async def end_leftovers(self) -> None:
        """Terminate the latest run of every tracked workflow id that still runs (a retry, a
        cron run or a continue-as-new included)."""
        for wf_id in dict.fromkeys(h.id for h in self.handles):
            latest = self.client.get_workflow_handle(wf_id)
            try:
                if (await latest.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await latest.terminate("test over")
            except RPCError:
                pass


async def at_minute(env: Any, minute: int) -> None:
    """Skip the test server's clock to the next ``minute`` past the hour (``:mm:00``).

    The time-skipping server starts at the real time, and the meter ticks on clock hours (10 past,
    GRACE after each hour), so a scenario that counts ticks or looks at the minute of a close must
    start at a known minute, not wherever the wall clock is."""
    now = await env.get_current_time()
    at = now.replace(minute=minute, second=0, microsecond=0)
    if at <= now:
        at += timedelta(hours=1)
    await env.sleep(at - now)


@asynccontextmanager
async def serve(
    env: Any,
    activities: Iterable[Any] = (),
    *,
    workflows: Sequence[type] = WORKFLOWS,
    runner: Any = None,
    threads: int = 4,
    client: Client | None = None,
    task_queue: str | None = None,
    end_leftovers: bool = True,
    **worker_options: Any,
) -> AsyncIterator[Served]:
    """A worker for ``env`` (on ``client``, default ``env.client``) with ``activities`` run on
    ``threads`` threads and ``runner`` (default the sandbox), on ``task_queue`` (default a new
    one), for as long as the block runs; other ``Worker`` options pass through. At the block's
    end, whatever way it ends, the workflows it started still running are terminated, before the
    worker stops; ``end_leftovers=False`` leaves them for a later worker on the same task queue."""
    served = Served(env, client or env.client, task_queue or f"tq-{uuid.uuid4()}")
    with ThreadPoolExecutor(threads) as ex:
        async with Worker(
            served.client,
            task_queue=served.task_queue,
            workflows=workflows,
            activities=list(activities),
            activity_executor=ex,
            workflow_runner=runner or sandbox_runner(),
            **worker_options,
        ):
            try:
                yield served
            finally:
                if end_leftovers:
                    await served.end_leftovers()
