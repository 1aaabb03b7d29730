"""The orchestration ceiling: a workflow with the same shape as a cluster lifecycle (the same number
of activities before RUNNING, a wait for ``delete``, the same number after) whose activities do
nothing. Run on the same server and worker settings as the real lifecycles."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel


STATUS = SearchAttributeKey.for_keyword("ClusterStatus")


class NoopInput(BaseModel):
    before: int
    after: int
    #: The real lifecycle's steps in order, one letter each: ``A`` an activity, ``L`` a local
    #: activity (registry calls, issue 23). When set, they replace ``before`` and ``after``.
    steps_before: str = ""
    steps_after: str = ""


@activity.defn(name="bench_noop")
def bench_noop(step: int) -> int:
    return step


@workflow.defn(name="BenchNoopLifecycle")
class NoopLifecycle:
    def __init__(self) -> None:
        self._state = "CREATING"
        self._delete = False

    @workflow.query
    def state(self) -> str:
        return self._state

    @workflow.signal
    def delete(self) -> None:
        self._delete = True

    @workflow.run
    async def run(self, input: NoopInput) -> str:
        await steps(input.steps_before or "A" * input.before)
        self._state = "RUNNING"
        workflow.upsert_search_attributes([STATUS.value_set("RUNNING")])  # as ClusterLifecycle does
        await workflow.wait_condition(lambda: self._delete)
        await steps(input.steps_after or "A" * input.after)
        self._state = "DELETED"
        return self._state


async def steps(kinds: str) -> None:
    """One no-op per letter: ``A`` an activity, ``L`` a local activity."""
    for i, kind in enumerate(kinds):
        run = workflow.execute_local_activity if kind == "L" else workflow.execute_activity
        await run(bench_noop, i, start_to_close_timeout=timedelta(seconds=60))
