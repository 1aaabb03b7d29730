"""Two workflows for tests/workflows/test_timeskip_leftovers.py, in a module of their own that
imports only the SDK (the sandbox imports the module a workflow is defined in)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy


@workflow.defn(name="LeftoverTicker")
class Ticker:
    """A timer every minute, forever (as a billing meter ticks every hour)."""

    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.sleep(timedelta(minutes=1))


@workflow.defn(name="LeftoverParent")
class Parent:
    """Starts an ABANDONed ticker (as onboarding starts its billing meter), then waits."""

    @workflow.run
    async def run(self, child_id: str) -> None:
        await workflow.start_child_workflow(
            "LeftoverTicker", id=child_id, parent_close_policy=ParentClosePolicy.ABANDON
        )
        await workflow.sleep(timedelta(days=1))
