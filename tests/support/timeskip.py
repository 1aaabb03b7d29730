"""Workers on the time-skipping test server, for tests/workflows and the measurements of
tests/support: one place that builds the worker (a new task queue, the given fake activities on a
thread pool, the sandboxed runner unless told otherwise), starts the workflows under test on its
task queue, and ends what they leave running.

Ending them matters: a workflow left behind on the test server keeps its timers (the safety-net
checks, a meter's ticks), whose tasks no worker takes once the block's worker is gone, and the
server then cannot skip time for the tests after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from temporalio import client as tc
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartChildWorkflowInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from bridgehead import ids
from bridgehead import models as m
from worker import WORKFLOWS, sandbox_runner

#: A signal, update or cancellation goes to a workflow only when none of its timers is due within
#: this much of the test server's time (which runs at real pace between skips): the workflow task
#: it causes has that long to cancel a timer before the timer fires.
TIMER_GUARD = timedelta(seconds=5)
#: How long the guard goes on skipping past timers (real seconds) before it lets the call through.
SETTLE_LIMIT_S = 30.0


class TimerRaceGuard(tc.Interceptor):
    """Client interceptor for the time-skipping server that keeps a signal, an update or a
    cancellation from racing one of the workflow's timers.

    The Java test server strands a run whose workflow task cancels a timer that fired while the
    task was with the worker: it refuses the completion ("invalid history builder state for
    action", temporalio/sdk-java#3088) and never times the task out or sends it again, so the test
    hangs until its timeout. A real server fails such a task and sends it again with the timer's
    event. Between skips the test server's clock runs at real pace, and a skip ends where a timer
    of the workflow is often due (a check every few minutes, a skip of whole hours), so a signal
    sent right after a skip cancelled a timer that fired a moment later (the CI failure of
    ``test_cpu_that_cannot_be_read_is_never_taken_for_idle`` on a loaded machine).

    Before each of those calls the guard skips past any of the workflow's timers due within
    :data:`TIMER_GUARD`, and looks again, until none is. It does not wait for a workflow task under
    way (a second ``delete`` sent while the first is handled must stay possible); a timer that task
    starts is not seen, which matters only for timers shorter than the guard. ``env`` is set once
    the environment exists (it needs the client this guard is part of)."""

    def __init__(self) -> None:
        self.env: Any = None

    def intercept_client(self, next: tc.OutboundInterceptor) -> tc.OutboundInterceptor:
        return _Guarded(next, self)

    async def settle(self, wf_id: str, run_id: str | None) -> None:
        """Return once ``wf_id``'s run has no timer due within :data:`TIMER_GUARD` (or is closed,
        or :data:`SETTLE_LIMIT_S` passed)."""
        if self.env is None:
            return
        h = self.env.client.get_workflow_handle(wf_id, run_id=run_id)
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline:
            try:
                history = await h.fetch_history()
            except RPCError:
                return  # no such run: the call itself will say so
            events = history.events
            if not events or events[-1].event_type in _CLOSED:
                return
            due = pending_timers(events)
            now = await self.env.get_current_time()
            soon = [d for d in due if d - now < TIMER_GUARD]
            if not soon:
                return
            await self.env.sleep(max(max(soon) - now, timedelta(0)) + timedelta(milliseconds=200))


_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def pending_timers(events: Sequence[Any]) -> list[Any]:
    """When each timer started in ``events`` and neither fired nor cancelled is due (UTC)."""
    due: dict[str, Any] = {}
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            a = e.timer_started_event_attributes
            at = e.event_time.ToDatetime(tzinfo=UTC)
            due[a.timer_id] = at + a.start_to_fire_timeout.ToTimedelta()
        elif e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            due.pop(e.timer_fired_event_attributes.timer_id, None)
        elif e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            due.pop(e.timer_canceled_event_attributes.timer_id, None)
    return list(due.values())


class _Guarded(tc.OutboundInterceptor):
    def __init__(self, next: tc.OutboundInterceptor, guard: TimerRaceGuard) -> None:
        super().__init__(next)
        self._guard = guard

    async def signal_workflow(self, input: tc.SignalWorkflowInput) -> None:
        await self._guard.settle(input.id, input.run_id)
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: tc.StartWorkflowUpdateInput) -> Any:
        await self._guard.settle(input.id, input.run_id)
        return await super().start_workflow_update(input)

    async def cancel_workflow(self, input: tc.CancelWorkflowInput) -> None:
        await self._guard.settle(input.id, input.run_id)
        await super().cancel_workflow(input)


class RanHere(Interceptor):
    """Worker interceptor that records, in ``ran``, the id of every workflow the worker runs and
    of every child those start (when the start is asked: a block may end before the worker has
    run the child's first task)."""

    def __init__(self, ran: dict[str, None]) -> None:
        self.ran = ran

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        ran = self.ran

        class _RecordChildren(WorkflowOutboundInterceptor):
            async def start_child_workflow(self, input: StartChildWorkflowInput) -> Any:
                ran.setdefault(input.id, None)
                return await super().start_child_workflow(input)

        class _Record(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_RecordChildren(outbound))

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                ran.setdefault(workflow.info().workflow_id, None)
                return await super().execute_workflow(input)

        return _Record


@dataclass
class Served:
    """A worker serving ``task_queue`` for as long as its :func:`serve` block runs. Workflows
    started through it (or handed to :meth:`track`) are terminated at the block's end if they
    still run."""

    env: Any
    client: Client
    task_queue: str
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)
    #: Every workflow id the block's worker ran (children, ABANDONed ones, runs started on its
    #: task queue by other means), recorded by :class:`RanHere`: ended with the block too.
    ran: dict[str, None] = field(default_factory=dict)

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
        """Terminate the latest run of every workflow id that still runs (a retry, a cron run or
        a continue-as-new included): the tracked ones and every one the block's worker ran.

        The test server cannot skip time while a run it holds has a timer due and no worker to
        take the task that follows: a child started ABANDON (as an onboarding starts its
        ``BillingMeter``) and left running when the block ended makes the module's next
        ``env.sleep`` fail after about 30 s (tests/workflows/test_timeskip_leftovers.py)."""
        for wf_id in dict.fromkeys([*(h.id for h in self.handles), *self.ran]):
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
    interceptors = [RanHere(served.ran), *worker_options.pop("interceptors", [])]
    with ThreadPoolExecutor(threads) as ex:
        async with Worker(
            served.client,
            task_queue=served.task_queue,
            workflows=workflows,
            activities=list(activities),
            activity_executor=ex,
            workflow_runner=runner or sandbox_runner(),
            interceptors=interceptors,
            **worker_options,
        ):
            try:
                yield served
            finally:
                if end_leftovers:
                    await served.end_leftovers()
