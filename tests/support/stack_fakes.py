"""Answers of the fake CloudFormation activities (``create_stack``, ``poll_stack``,
``check_stack``) shared by the time-skipping tests' fake clouds."""

from __future__ import annotations

from typing import Any

from bridgehead import models as m


def stack_poll(
    stack_name: str,
    status: str = "CREATE_IN_PROGRESS",
    *,
    terminal: bool = False,
    succeeded: bool = False,
    stack_id: str | None = "id",
    **more: Any,
) -> m.StackPoll:
    """A look at ``stack_name`` (default: a creation still in progress); ``more`` sets the other
    fields (outputs, events, the failure's resource and reason)."""
    return m.StackPoll(
        stack_name=stack_name,
        stack_id=stack_id,
        status=status,
        terminal=terminal,
        succeeded=succeeded,
        **more,
    )
