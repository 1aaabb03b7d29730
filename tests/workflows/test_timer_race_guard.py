"""The time-skipping server's timer race (temporalio/sdk-java#3088) and the guard every
time-skipping test runs behind (:class:`tests.support.timeskip.TimerRaceGuard`).

A workflow waits on a condition with a timeout; a signal arrives just before the timer is due and
its workflow task is slow (held by the signal handler, as a loaded CI machine holds it), so the
timer fires while the task is with the worker and the task then cancels it, and goes on waiting
(a task that completes the workflow instead is failed and sent again, which is harmless). Unguarded, the test
server refuses that completion and never sends the task again: the run hangs (the twin shows it,
which is how ``test_cpu_that_cannot_be_read_is_never_taken_for_idle`` failed in CI). Guarded, the
signal waits until the timer has fired, and the run ends.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner

from tests.support.timeskip import TIMER_GUARD, serve

TIMEOUT = timedelta(seconds=60)
#: The timer is due this long (server time, at real pace) after the test sends the signal ...
DUE_AFTER_SIGNAL = timedelta(seconds=1)
#: ... and the signal's workflow task stays with the worker this long (real seconds): six times
#: the margin, so the timer comes due during the hold even on a loaded machine (at 3 s one CI
#: run saw it not fire in time).
HOLD_S = 6.0


@workflow.defn(sandboxed=False)
class WaitsWithTimeout:
    """Waits for ``go`` with a timeout, again after each timeout, then for ``done``; returns how
    many timers fired."""

    def __init__(self) -> None:
        self.go = False
        self.done = False

    @workflow.run
    async def run(self, timeout_s: float) -> int:
        fired = 0
        while not self.go:
            try:
                await workflow.wait_condition(lambda: self.go, timeout=timeout_s)
            except TimeoutError:
                fired += 1
        await workflow.wait_condition(lambda: self.done)
        return fired

    @workflow.signal
    def slow_go(self, hold_s: float) -> None:
        time.sleep(hold_s)  # the task stays with the worker, as on a loaded machine
        self.go = True

    @workflow.signal
    def finish(self) -> None:
        self.done = True


async def race(env) -> int | None:
    """Start the workflow, skip to ``DUE_AFTER_SIGNAL`` before its timer, send the slow signal and
    then ``finish``; the run's result, or None if it has not ended 20 real seconds later."""
    async with serve(
        env,
        workflows=[WaitsWithTimeout],
        runner=UnsandboxedWorkflowRunner(),
        debug_mode=True,  # no deadlock detector: the handler holds the task on purpose
    ) as w:
        h = await w.start(WaitsWithTimeout.run, TIMEOUT.total_seconds(), id="race")
        while len((await h.fetch_history()).events) < 5:  # started, task, timer
            await asyncio.sleep(0.05)
        await env.sleep(TIMEOUT - DUE_AFTER_SIGNAL)
        await h.signal(WaitsWithTimeout.slow_go, HOLD_S)
        await h.signal(WaitsWithTimeout.finish)
        try:
            return await asyncio.wait_for(h.result(), 20)
        except TimeoutError:
            return None


async def test_a_signal_that_would_race_a_timer_waits_for_it(ts_env):
    assert DUE_AFTER_SIGNAL < TIMER_GUARD
    # The timer fired first (1), then the signal ended the wait.
    assert await race(ts_env) == 1


async def test_twin_unguarded_the_race_strands_the_run():
    from tests.conftest import new_ts_env

    env = await new_ts_env(guarded=False)
    try:
        assert await race(env) is None
    finally:
        await env.shutdown()  # type: ignore[attr-defined]
