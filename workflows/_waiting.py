"""Durable waiting on a CloudFormation stack.

History bound: each polling window (``POLL_WINDOW``, 10 min) costs one activity
(scheduled/started/completed = 3 events) and one workflow task (3 events), so waiting ``T`` minutes
adds at most ``6 * ceil(T / 10)`` events; stacks are created with ``TimeoutInMinutes`` (240 by
default), so one wait never adds more than 6 * 24 + 6 = 150 events, whatever the stack does.
No worker slot is held between polls (retries are scheduled by the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import overload

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bridgehead.models import StackPoll, StackRef

from workflows import _activities as acts
from workflows._options import POLL

MAX_WINDOWS = 30


@overload
async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None = None,
    what: str = "",
    interrupt: None = None,
) -> StackPoll: ...


@overload
async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None,
    what: str,
    interrupt: Callable[[], bool],
) -> StackPoll | None: ...


async def wait_for_stack(
    ref: StackRef,
    on_progress: Callable[[StackPoll], None] | None = None,
    what: str = "",
    interrupt: Callable[[], bool] | None = None,
) -> StackPoll | None:
    """Poll until the stack is terminal; ``on_progress`` sees each window's latest events.

    With ``interrupt``, returns ``None`` as soon as it becomes true (the window in flight is
    cancelled at once, not at its end); without it, never returns ``None``.
    """
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
    return StackPoll(
        stack_name=ref.stack_name,
        stack_id=None,
        status="WAIT_TIMED_OUT",
        terminal=True,
        succeeded=False,
        failure_reason=f"stack {ref.stack_name} did not finish within {MAX_WINDOWS} polling windows",
    )
