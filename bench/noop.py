"""The orchestration ceilings: workflows with the shape of a cluster lifecycle whose activities do
nothing. Run on the same server and worker settings as the real lifecycles.

* The **ceiling** (issue 23's yardstick) runs the lifecycle's activities and local activities, in
  order, with a wait for ``delete`` between the steps before RUNNING and those after.
* The **command ceiling** replays every command of a real lifecycle's history with a no-op body
  (:mod:`bench.commands`): the same activities with their timeouts, heartbeat timeouts, summaries
  and payload sizes, the same local activities, patch markers, search-attribute upserts and
  timers. What separates it from the ceiling is what the lifecycle asks of Temporal beyond its
  steps; what separates the real lifecycle from it is the work inside the steps (AWS calls through
  botocore, validation, rendering, registry logic) and the workflow code between them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from temporalio import activity, workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel


STATUS = SearchAttributeKey.for_keyword("ClusterStatus")


class Step(BaseModel):
    """One command of a lifecycle's history, to replay with a no-op body.

    ``A`` an activity, ``L`` a local activity (both: ``summary``; sizes of the input and result
    payloads' data in bytes; an activity also its timeouts), ``P`` a patch marker (``patch``: its
    id; the SDK upserts ``TemporalChangeVersion`` with it), ``U`` a search-attribute upsert
    (``attrs``: name -> value, a list for a keyword list), ``T`` a timer of ``seconds``."""

    kind: Literal["A", "L", "P", "U", "T"]
    summary: str | None = None
    start_to_close_s: float = 60.0
    schedule_to_close_s: float | None = None
    heartbeat_s: float | None = None
    #: An activity's retry policy as history has it (``RetryPolicy`` fields, seconds for intervals).
    retry: dict[str, float | int | list[str]] | None = None
    in_bytes: int = 0
    out_bytes: int = 0
    patch: str = ""
    attrs: dict[str, str | list[str]] = {}
    seconds: float = 0.0


class NoopInput(BaseModel):
    before: int
    after: int
    #: The real lifecycle's steps in order, one letter each: ``A`` an activity, ``L`` a local
    #: activity (registry calls, issue 23). When set, they replace ``before`` and ``after``.
    steps_before: str = ""
    steps_after: str = ""
    #: The command ceiling: the lifecycle's commands (:class:`Step`); when set, they replace all of
    #: the above, and the RUNNING upsert is the script's own.
    script_before: list[Step] = []
    script_after: list[Step] = []


class Echo(BaseModel):
    """A no-op activity's input: ``pad`` brings the payload to the size the real one had."""

    pad: str = ""
    out: int = 0


@activity.defn(name="bench_noop")
def bench_noop(step: int) -> int:
    return step


@activity.defn(name="bench_echo")
def bench_echo(call: Echo) -> str | None:
    """Nothing, answered with a result payload of the real one's size (a JSON string's two quotes
    included; no result, an empty payload, for none)."""
    return "x" * max(0, call.out - 2) if call.out else None


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
        scripted = bool(input.script_before or input.script_after)
        if scripted:
            await play(input.script_before)
        else:
            await steps(input.steps_before or "A" * input.before)
            workflow.upsert_search_attributes([STATUS.value_set("RUNNING")])  # as the lifecycle
        self._state = "RUNNING"
        await workflow.wait_condition(lambda: self._delete)
        if scripted:
            await play(input.script_after)
        else:
            await steps(input.steps_after or "A" * input.after)
        self._state = "DELETED"
        return self._state


async def steps(kinds: str) -> None:
    """One no-op per letter: ``A`` an activity, ``L`` a local activity."""
    for i, kind in enumerate(kinds):
        run = workflow.execute_local_activity if kind == "L" else workflow.execute_activity
        await run(bench_noop, i, start_to_close_timeout=timedelta(seconds=60))


#: Bytes of an :class:`Echo` payload's data besides its pad (``{"pad":"","out":N}``).
_ECHO_FRAME = len('{"pad":"","out":}')


def echo(step: Step) -> Echo:
    return Echo(
        pad="x" * max(0, step.in_bytes - _ECHO_FRAME - len(str(step.out_bytes))), out=step.out_bytes
    )


def updates(attrs: dict[str, str | list[str]]) -> list[SearchAttributeUpdate]:
    return [
        SearchAttributeKey.for_keyword_list(k).value_set(v)
        if isinstance(v, list)
        else SearchAttributeKey.for_keyword(k).value_set(v)
        for k, v in attrs.items()
    ]


def retry_policy(fields: dict[str, float | int | list[str]] | None) -> RetryPolicy | None:
    if fields is None:
        return None
    f: dict[str, Any] = dict(fields)
    for k in ("initial_interval", "maximum_interval"):
        f[k] = timedelta(seconds=f[k]) if f.get(k) else None
    return RetryPolicy(**f)


async def play(script: list[Step]) -> None:
    """Issue each command of ``script`` in order, with a no-op body."""
    for s in script:
        if s.kind == "A":
            await workflow.execute_activity(
                bench_echo,
                echo(s),
                start_to_close_timeout=timedelta(seconds=s.start_to_close_s),
                schedule_to_close_timeout=timedelta(seconds=s.schedule_to_close_s)
                if s.schedule_to_close_s
                else None,
                heartbeat_timeout=timedelta(seconds=s.heartbeat_s) if s.heartbeat_s else None,
                retry_policy=retry_policy(s.retry),
                summary=s.summary,
            )
        elif s.kind == "L":
            await workflow.execute_local_activity(
                bench_echo,
                echo(s),
                start_to_close_timeout=timedelta(seconds=s.start_to_close_s),
                summary=s.summary,
            )
        elif s.kind == "P":
            workflow.patched(s.patch)
        elif s.kind == "U":
            workflow.upsert_search_attributes(updates(s.attrs))
        else:
            await workflow.sleep(timedelta(seconds=s.seconds), summary=s.summary)
