"""Durable waiting on a CloudFormation stack.

Two ways, chosen once per wait:

* **Event-driven with a safety net** (``events`` given, patch ``event-waits``). The stack's
  ``NotificationARNs`` feed a queue whose consumer (activities/stack_events.py) signals the waiting
  workflow ``stack_event``; the workflow then checks the stack at once (``check_stack``, one
  describe). The signal is only a hint: whatever it says, the check's answer is what counts, and a
  hint naming another stack is ignored. Without hints, the workflow checks at once (a stack that
  was quick, or an emulator's instant one), then after pauses of 1, 3, 9, then 10 minutes
  (``SAFETY_NET_*`` in workflows/_options.py), so a lost event costs at most 10 minutes of lag.
  Temporal Cloud actions per wait of ``T`` minutes with its event: the first check, one timer and
  one check per safety-net pause before ``T``, plus the timer in flight, the signal and the final
  check: 14 for a 40-minute stack (85 with the 30-second poll); measured in
  tests/workflows/test_event_waits.py and docs/benchmarks.md. History: each check costs a timer
  (2 events), an activity (3) and two workflow tasks (6), 11 events; the wait gives up after
  ``WAIT_LIMIT`` (300 minutes, 33 checks), so one wait adds at most 33 * 11 + 3 = 366 events plus
  2 per hint (a flood of hints costs at most one check per ``HINT_SPACING``), and now and then one
  more workflow task (3 events) when a result arrives while a task runs.
* **Polling windows** (no ``events``, or a run started before the patch). History bound: each
  polling window (``POLL_WINDOW``, 10 min) costs one activity (scheduled/started/completed = 3
  events) and one workflow task (3 events), so waiting ``T`` minutes adds at most
  ``6 * ceil(T / 10)`` events; stacks are created with ``TimeoutInMinutes`` (240 by default), so one
  wait never adds more than 6 * 24 + 6 = 150 events, whatever the stack does. Every retry attempt
  (one per 30 s) is a billed action, though: about 80 for a 40-minute stack.

No worker slot is held between polls or checks (retries and timers are kept by the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import overload

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from bridgehead import ids
    from bridgehead.models import StackEventNotice, StackPoll, StackRef

from workflows import _activities as acts
from workflows import _patches
from workflows._options import (
    CHECK,
    HINT_SPACING,
    NON_RETRYABLE,
    POLL,
    POLL_WINDOW,
    SAFETY_NET_FIRST,
    SAFETY_NET_GROWTH,
    SAFETY_NET_MAX,
)

MAX_WINDOWS = 30
#: The event-driven wait gives up after as long as the polling windows would (300 minutes).
WAIT_LIMIT = MAX_WINDOWS * POLL_WINDOW
PATCH = "event-waits"


#: History events per safety-net check: timer started/fired (2), the check's activity
#: scheduled/started/completed (3) and the two workflow tasks they wake (6).
EVENTS_PER_CHECK = 11


def safety_net_offsets(limit: timedelta = WAIT_LIMIT) -> list[timedelta]:
    """When the event-driven wait checks a stack if no hint arrives, from the wait's start (pure:
    the tests and the benchmark derive their bounds from it)."""
    out, at, pause = [timedelta(0)], timedelta(0), SAFETY_NET_FIRST
    while at < limit:
        at += pause
        out.append(at)
        pause = min(pause * SAFETY_NET_GROWTH, SAFETY_NET_MAX)
    return out


class StackHints:
    """The ``stack_event`` signals a workflow received: counted when they name the stack the
    workflow owns (bound to its input through bridgehead/ids.py), ignored otherwise."""

    def __init__(self) -> None:
        self.count = 0
        self.ignored = 0

    def receive(self, notice: StackEventNotice | None, stack_name: str, region: str) -> bool:
        where = ids.stack_of_id(notice.stack_id) if notice is not None else None
        if where != (region, stack_name):
            self.ignored += 1
            return False
        self.count += 1
        return True


@overload
async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None = None,
    what: str = "",
    interrupt: None = None,
    *,
    events: StackHints | None = None,
) -> StackPoll: ...


@overload
async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None,
    what: str,
    interrupt: Callable[[], bool],
    *,
    events: StackHints | None = None,
) -> StackPoll | None: ...


async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None = None,
    what: str = "",
    interrupt: Callable[[], bool] | None = None,
    *,
    events: StackHints | None = None,
) -> StackPoll | None:
    """Wait until the stack is terminal; ``on_progress`` sees each poll's latest events.

    With ``interrupt``, returns ``None`` as soon as it becomes true (the window in flight is
    cancelled at once, not at its end); without it, never returns ``None``. With ``events`` (the
    workflow's ``stack_event`` hints), waits event-driven with a safety net (module doc).
    """
    if events is not None and _patches.patched(PATCH):
        return await _wait_with_hints(ref, on_progress, what, interrupt, events)
    for _ in range(MAX_WINDOWS):
        if interrupt is not None and interrupt():
            return None
        window = asyncio.ensure_future(
            acts.poll_stack(ref, summary=what or f"wait for stack {ref.stack_name}", **POLL)
        )
        if interrupt is not None:
            stop = asyncio.ensure_future(workflow.wait_condition(interrupt))
            await workflow.wait([window, stop], return_when=asyncio.FIRST_COMPLETED)
            if not window.done():
                window.cancel()
                return None
            stop.cancel()
        poll: StackPoll = await window
        if on_progress is not None:
            on_progress(poll)
        if poll.terminal:
            return poll
    return _timed_out(ref, f"{MAX_WINDOWS} polling windows")


def _timed_out(ref: StackRef, within: str) -> StackPoll:
    return StackPoll(
        stack_name=ref.stack_name,
        stack_id=None,
        status="WAIT_TIMED_OUT",
        terminal=True,
        succeeded=False,
        failure_reason=f"stack {ref.stack_name} did not finish within {within}",
    )


async def _wait_with_hints(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None,
    what: str,
    interrupt: Callable[[], bool] | None,
    hints: StackHints,
) -> StackPoll | None:
    started = workflow.now()
    pause = SAFETY_NET_FIRST
    seen = hints.count
    last_check: datetime | None = None
    label = what or f"wait for stack {ref.stack_name}"

    def woken() -> bool:
        return hints.count != seen or (interrupt is not None and interrupt())

    first = True
    while workflow.now() - started < WAIT_LIMIT:
        hinted = False
        if not first:
            try:
                await workflow.wait_condition(
                    woken, timeout=pause, timeout_summary=f"{label}: safety net"
                )
                hinted = True
            except TimeoutError:
                pause = min(pause * SAFETY_NET_GROWTH, SAFETY_NET_MAX)
        first = False
        if interrupt is not None and interrupt():
            return None
        if hinted and last_check is not None and workflow.now() - last_check < HINT_SPACING:
            await workflow.sleep(HINT_SPACING - (workflow.now() - last_check))
        seen = hints.count
        try:
            poll = await acts.check_stack(ref, summary=label, **CHECK)
        except ActivityError as e:
            if _permanent(e):
                raise
            # Transient faults outlived the check's retries: the next pause looks again.
            workflow.logger.warning(f"{label}: check failed, looking again later: {e.cause}")
            continue
        finally:
            last_check = workflow.now()
        if on_progress is not None:
            on_progress(poll)
        if poll.terminal:
            return poll
    return _timed_out(ref, f"{WAIT_LIMIT} of checks")


def _permanent(e: ActivityError) -> bool:
    cause = e.cause
    return isinstance(cause, ApplicationError) and (
        cause.non_retryable or cause.type in NON_RETRYABLE
    )
