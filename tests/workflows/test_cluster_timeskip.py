"""ClusterLifecycle on the time-skipping server with fake activities: long stacks, failures,
cancel, delete, resize, and the history bound of waiting."""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from bridgehead import models as m
from bridgehead import policies
from bridgehead.polling import still_waiting
from tests.support.stack_fakes import stack_poll
from tests.support.timeskip import serve
from workflows._waiting import EVENTS_PER_CHECK, safety_net_offsets

WINDOW_MARGIN = timedelta(seconds=90)


@dataclass
class FakeCloud:
    """A controllable CloudFormation: each stack completes (or fails) a set time after creation."""

    create_takes: timedelta = timedelta(minutes=40)
    fail_at: timedelta | None = None
    calls: list[str] = field(default_factory=list)
    stacks: dict[str, dict] = field(default_factory=dict)
    polls: int = 0
    quota_vcpus: float | None = None  # None: Service Quotas unavailable
    delete_failures: int = 0  # deletions that end DELETE_FAILED before one succeeds
    #: Times (workflow clock) of each ``check_stack`` and the status it returned.
    checks: list[tuple[datetime, str]] = field(default_factory=list)
    #: The same for the polls ``poll_stack`` returned (its retried attempts raise instead).
    poll_log: list[tuple[datetime, str]] = field(default_factory=list)
    #: Every ``create_stack`` request, as the activity received it.
    requests: list[m.StackRequest] = field(default_factory=list)
    #: Return the template's body whatever the request says (as plans recorded before issue 23).
    body_always: bool = False

    def terminal_at(self, stack_name: str) -> datetime:
        """When the fake stack reaches its terminal state."""
        st = self.stacks[stack_name]
        return st["created"] + (self.fail_at if self.fail_at is not None else self.create_takes)

    def activities(self):
        cloud = self

        @activity.defn(name="validate_cluster")
        def validate_cluster(req: m.ValidateClusterInput) -> m.ClusterPlan:
            cloud.calls.append("validate")
            tags = {"bridgehead:org": req.org_id}
            ref = m.ClusterTemplate(org_id=req.org_id, name=req.name, tags=tags)
            body = req.with_body or cloud.body_always
            return m.ClusterPlan(
                template_body=policies.render_cluster_template(ref) if body else "",
                template=ref,
                parameters={},
                tags=tags,
                admin_email="a@x.io",
            )

        @activity.defn(name="check_vcpu_quota")
        def check_vcpu_quota(req: m.QuotaCheckInput) -> m.QuotaReport:
            cloud.calls.append(f"quota:{sorted(req.nodes.items())}")
            if cloud.quota_vcpus is None:
                return m.QuotaReport(region=req.region, available=False)
            return m.QuotaReport(
                region=req.region,
                available=True,
                limit_vcpus=cloud.quota_vcpus,
                sufficient=False,
                message=f"EC2 standard vCPU quota in {req.region} is {cloud.quota_vcpus:g}: the cluster needs up to 34 more vCPUs",
            )

        @activity.defn(name="register_cluster")
        def register_cluster(req: m.RegisterClusterInput) -> None:
            cloud.calls.append(f"register:{req.state.value}")

        @activity.defn(name="notify")
        def notify(req: m.NotifyInput) -> bool:
            cloud.calls.append(f"notify:{req.subject}")
            return True

        @activity.defn(name="create_stack")
        def create_stack(req: m.StackRequest) -> m.StackPoll:
            cloud.calls.append("create_stack")
            cloud.requests.append(req)
            cloud.stacks.setdefault(
                req.stack_name,
                {
                    "created": activity.info().current_attempt_scheduled_time,
                    "status": "CREATE_IN_PROGRESS",
                },
            )
            return stack_poll(req.stack_name)

        @activity.defn(name="delete_stack")
        def delete_stack(ref: m.StackRef) -> None:
            cloud.calls.append("delete_stack")
            if ref.stack_name in cloud.stacks:
                failing = cloud.delete_failures > 0
                cloud.delete_failures -= failing
                cloud.stacks[ref.stack_name]["status"] = (
                    "DELETE_FAILED" if failing else "DELETE_COMPLETE"
                )

        @activity.defn(name="resize_stack")
        def resize_stack(req: m.ResizeStackInput) -> m.StackPoll:
            cloud.calls.append(f"resize:{req.compute_nodes}")
            cloud.stacks[req.stack_name]["status"] = "UPDATE_COMPLETE"
            return stack_poll(req.stack_name, "UPDATE_IN_PROGRESS")

        @activity.defn(name="poll_stack")
        def poll_stack(ref: m.StackRef) -> m.StackPoll:
            cloud.polls += 1
            poll = look(ref, give_up=None)
            cloud.poll_log.append((activity.info().current_attempt_scheduled_time, poll.status))
            return poll

        @activity.defn(name="check_stack")
        def check_stack(ref: m.StackRef) -> m.StackPoll:
            poll = look(ref, give_up=True)
            cloud.checks.append((activity.info().current_attempt_scheduled_time, poll.status))
            return poll

        def look(ref: m.StackRef, give_up: bool | None) -> m.StackPoll:
            info = activity.info()
            now: datetime = info.current_attempt_scheduled_time
            st = cloud.stacks[ref.stack_name]
            status = st["status"]
            if status == "CREATE_IN_PROGRESS":
                age = now - st["created"]
                if cloud.fail_at is not None and age >= cloud.fail_at:
                    status = st["status"] = "ROLLBACK_COMPLETE"
                elif age >= cloud.create_takes:
                    status = st["status"] = "CREATE_COMPLETE"
            events = [
                m.StackEvent(
                    timestamp=now,
                    logical_id="HeadNode",
                    resource_type="AWS::EC2::Instance",
                    status=status,
                    reason="Instance i-1 failed to stabilize"
                    if status == "ROLLBACK_COMPLETE"
                    else "",
                )
            ]
            if status.endswith("_IN_PROGRESS"):
                if give_up or (
                    info.current_attempt_scheduled_time + WINDOW_MARGIN
                    >= info.scheduled_time + info.schedule_to_close_timeout
                ):
                    return stack_poll(ref.stack_name, status, events=events)
                raise still_waiting("in progress", "StackInProgress")  # as poll_stack does
            ok = (
                status
                == {
                    "create": "CREATE_COMPLETE",
                    "update": "UPDATE_COMPLETE",
                    "delete": "DELETE_COMPLETE",
                }[ref.expect]
            )
            return stack_poll(
                ref.stack_name,
                status,
                terminal=True,
                succeeded=ok,
                outputs={"LoginAddress": "203.0.113.10"} if ok else {},
                events=events,
                failure_resource=None
                if ok
                else "NodeSecurityGroup (AWS::EC2::SecurityGroup)"
                if status == "DELETE_FAILED"
                else "HeadNode (AWS::EC2::Instance)",
                failure_reason=None
                if ok
                else "resource sg-1 has a dependent object"
                if status == "DELETE_FAILED"
                else "Instance i-1 failed to stabilize",
            )

        return [
            validate_cluster,
            check_vcpu_quota,
            register_cluster,
            notify,
            create_stack,
            delete_stack,
            resize_stack,
            poll_stack,
            check_stack,
        ]


CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.xlarge",
    compute_initial_nodes=4,
    compute_max_nodes=8,
)


async def run_cluster(env, cloud: FakeCloud, body, runner=None):
    async with serve(env, cloud.activities(), runner=runner, threads=8) as w:
        # one workflow per test: the id is bound to the name
        h = await w.start_cluster(CFG, f"c1x{uuid.uuid4().hex[:6]}")
        return await body(h)


async def until_state(
    env, h, state: m.ClusterState, step: timedelta = timedelta(minutes=1), limit: int = 400
):
    from temporalio.service import RPCError

    for _ in range(limit):
        try:
            # Bounded: a query the server never answers is asked again, not waited on forever.
            s = await h.query(
                "status", result_type=m.ClusterStatus, rpc_timeout=timedelta(seconds=15)
            )
        except (
            RPCError
        ):  # a query can time out while the server moves a workflow off a stopped worker
            await asyncio.sleep(1)
            continue
        if s.state == state:
            return s
        await skip(env, step)
    raise AssertionError(f"never reached {state}; last {s.state}")


async def skip(env, step: timedelta) -> None:  # type: ignore[no-untyped-def]
    """Skip ``step`` of workflow time. The test server's skipping sleep can time out (an RPC
    ``Timeout expired``) while it cannot skip, e.g. with an activity in flight on a loaded machine:
    that is no failure of the code under test, so wait a real second and let the caller go on."""
    from temporalio.service import RPCError

    try:
        await env.sleep(step)
    except RPCError:
        await asyncio.sleep(1)


async def event_types(h) -> dict[str, int]:
    from collections import Counter

    from temporalio.api.enums.v1 import EventType

    return dict(Counter(EventType.Name(e.event_type) for e in (await h.fetch_history()).events))


async def history_len(h) -> int:
    """Events the workflow's own code caused.

    A time-skipping server on a loaded machine can skip past a workflow task's 10 s timeout; each
    such timeout adds a WorkflowTaskTimedOut plus a new scheduled/started pair (3 events) that no
    code of ours produced, so they are left out of the bound (they are counted and reported).
    """
    from temporalio.api.enums.v1 import EventType

    events = (await h.fetch_history()).events
    timeouts = sum(
        1 for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
    )
    return len(events) - 3 * timeouts


async def events_to_running(env, takes: timedelta) -> int:
    """Events (of our code) from start to RUNNING when the stack takes ``takes``."""

    async def body(h):
        await until_state(env, h, m.ClusterState.RUNNING, step=timedelta(minutes=5))
        n = await history_len(h)
        await h.terminate("measured")
        return n

    return await run_cluster(env, FakeCloud(create_takes=takes), body)


async def test_twin_a_wait_that_looks_every_minute_exceeds_the_history_bound(ts_env, monkeypatch):
    """Planted defect: the safety net looks every minute (no growth). The bound the test above
    derives from the shipped schedule (``safety_net_offsets()``, taken before the plant) is
    exceeded, so that test would fail."""
    from temporalio.worker import UnsandboxedWorkflowRunner

    import workflows._waiting as waiting

    takes = timedelta(minutes=40)
    setup = await events_to_running(ts_env, timedelta(0))
    bound = setup + EVENTS_PER_CHECK * (checks_until(takes) - 1) + 3
    monkeypatch.setattr(waiting, "SAFETY_NET_GROWTH", 1)

    async def body(h):
        await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(minutes=5))
        n = await history_len(h)
        await h.terminate("measured")
        return n

    events = await run_cluster(
        ts_env, FakeCloud(create_takes=takes), body, runner=UnsandboxedWorkflowRunner()
    )
    assert events > bound, (events, bound)


@pytest.mark.parametrize("takes", [timedelta(minutes=40), timedelta(hours=3)])
async def test_long_stack_creation_then_delete_with_bounded_history(ts_env, takes):
    cloud = FakeCloud(create_takes=takes)
    # Set-up measured, not guessed: the same cluster with a stack that completes at once (its one
    # safety-net check included). No event arrives here: every further check adds 11 events.
    setup = await events_to_running(ts_env, timedelta(0))
    needed = checks_until(takes)

    async def body(h):
        s = await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(minutes=5))
        assert s.login_address == "203.0.113.10"
        events_running = await history_len(h)
        # Bound (workflows/_waiting.py): EVENTS_PER_CHECK per safety-net check, plus one workflow
        # task (3 events) the server may add when a result arrives while a task runs (seen: 117
        # and 120 events for the same 40-minute wait).
        bound = setup + EVENTS_PER_CHECK * (needed - 1) + 3
        assert events_running <= bound, (setup, await event_types(h))
        await h.signal("delete")
        await h.signal("delete")
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert res.state == m.ClusterState.DELETED
    assert cloud.calls.count("create_stack") == 1 and cloud.calls.count("delete_stack") == 1
    assert len(res.segments) == 1 and res.segments[0].end is not None
    # Without events the safety net alone saw the stack: its checks, then one for the deletion.
    expected = ["CREATE_IN_PROGRESS"] * (needed - 1) + ["CREATE_COMPLETE", "DELETE_COMPLETE"]
    assert [status for _, status in cloud.checks] == expected
    assert cloud.polls == 0


def checks_until(takes: timedelta) -> int:
    """Checks until the first one at or after ``takes`` (workflows/_waiting.py)."""
    return 1 + sum(1 for at in safety_net_offsets() if at < takes)


async def test_failure_after_25_minutes_reports_resource_and_bills_nothing(ts_env):
    cloud = FakeCloud(create_takes=timedelta(hours=1), fail_at=timedelta(minutes=25))

    async def body(h):
        s = await until_state(ts_env, h, m.ClusterState.FAILED, step=timedelta(minutes=5))
        assert (
            s.failure_resource == "HeadNode (AWS::EC2::Instance)"
            and "stabilize" in s.failure_reason
        )
        await h.signal("delete")  # removing a FAILED cluster
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert res.state == m.ClusterState.DELETED and res.segments == []
    assert "register:FAILED" in cloud.calls and "delete_stack" in cloud.calls


async def test_cancel_at_minute_12(ts_env):
    cloud = FakeCloud(create_takes=timedelta(minutes=40))

    async def body(h):
        await until_state(ts_env, h, m.ClusterState.CREATING)
        await ts_env.sleep(timedelta(minutes=12))
        await h.signal("cancel")
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert res.state == m.ClusterState.CANCELLED and res.segments == []
    assert "delete_stack" in cloud.calls and "register:RUNNING" not in cloud.calls


async def test_delete_while_creating_is_a_cancel_and_cancel_while_running_is_ignored(ts_env):
    cloud = FakeCloud(create_takes=timedelta(minutes=40))

    async def deleted_while_creating(h):
        await until_state(ts_env, h, m.ClusterState.CREATING)
        await ts_env.sleep(timedelta(minutes=7))
        await h.signal("delete")
        return await h.result()

    res = await run_cluster(ts_env, cloud, deleted_while_creating)
    assert res.state == m.ClusterState.CANCELLED and res.segments == []  # nothing billable existed
    assert cloud.calls.count("delete_stack") == 1 and "register:RUNNING" not in cloud.calls

    cloud = FakeCloud(create_takes=timedelta(minutes=10))

    async def cancelled_while_running(h):
        await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(minutes=5))
        await h.signal("cancel")  # makes no sense now: logged and ignored
        await ts_env.sleep(timedelta(hours=1))
        assert (
            await h.query("status", result_type=m.ClusterStatus)
        ).state == m.ClusterState.RUNNING
        await h.signal("delete")
        return await h.result()

    res = await run_cluster(ts_env, cloud, cancelled_while_running)
    assert res.state == m.ClusterState.DELETED and len(res.segments) == 1
    assert res.segments[0].end - res.segments[0].start >= timedelta(hours=1)


async def test_resize_validated_and_billed_in_two_parts(ts_env):
    cloud = FakeCloud(create_takes=timedelta(minutes=10))

    async def body(h):
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await h.execute_update(
                "resize", m.ResizeInput(compute_nodes=99), result_type=m.ResizeResult
            )
        assert "exceeds compute_max_nodes (8)" in str(e.value.cause)
        await ts_env.sleep(timedelta(minutes=30))
        r = await h.execute_update(
            "resize", m.ResizeInput(compute_nodes=2), result_type=m.ResizeResult
        )
        assert r.compute_nodes == 2
        await ts_env.sleep(timedelta(minutes=30))
        await h.signal("delete")
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert [s.compute_nodes for s in res.segments] == [4, 2]
    assert res.segments[0].end == res.segments[1].start
    assert "resize:2" in cloud.calls and "resize:99" not in cloud.calls


async def test_insufficient_vcpu_quota_refuses_before_creating_anything(ts_env):
    cloud = FakeCloud(quota_vcpus=8)

    async def body(h):
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
        return e.value

    err = await run_cluster(ts_env, cloud, body)
    assert "needs up to 34 more vCPUs" in str(err.cause)
    assert (
        "quota:[('c5.xlarge', 8), ('t3.medium', 1)]" in cloud.calls
    )  # max nodes, not initial ones
    assert "create_stack" not in cloud.calls and not any(
        c.startswith("register") for c in cloud.calls
    )


async def test_delete_failed_is_retried_then_succeeds(ts_env):
    cloud = FakeCloud(create_takes=timedelta(minutes=5), delete_failures=2)

    async def body(h):
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        await h.signal("delete")
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert res.state == m.ClusterState.DELETED
    assert cloud.calls.count("delete_stack") == 3


async def test_delete_failed_every_time_reports_the_blocking_resource_then_a_new_delete_works(
    ts_env,
):
    from workflows.clusters import DELETE_ATTEMPTS

    cloud = FakeCloud(create_takes=timedelta(minutes=5), delete_failures=DELETE_ATTEMPTS)

    async def body(h):
        await until_state(ts_env, h, m.ClusterState.RUNNING)
        await h.signal("delete")
        s = await until_state(ts_env, h, m.ClusterState.FAILED)
        assert s.failure_resource == "NodeSecurityGroup (AWS::EC2::SecurityGroup)"
        assert (
            f"deletion failed after {DELETE_ATTEMPTS} attempts" in s.failure_reason
            and "dependent object" in s.failure_reason
        )
        for _ in range(30):  # FAILED shows at once; the registry write and the email follow
            if any(c.startswith("notify:") and "could not be deleted" in c for c in cloud.calls):
                break
            await ts_env.sleep(timedelta(seconds=10))
        else:
            raise AssertionError(f"no delete-failed notification: {cloud.calls}")
        await h.signal("delete")  # the customer removed the dependency; try again
        return await h.result()

    res = await run_cluster(ts_env, cloud, body)
    assert res.state == m.ClusterState.DELETED
    assert cloud.calls.count("delete_stack") == DELETE_ATTEMPTS + 1
    assert (
        len(res.segments) == 1 and res.segments[0].end is not None
    )  # billing stopped at the first delete


async def test_worker_restarted_during_the_wait(ts_env):
    """The worker goes away at minute 12 of a 40-minute creation and a new one (fresh process
    state, same task queue) takes over: one stack, RUNNING on time, history still bounded."""
    cloud = FakeCloud(create_takes=timedelta(minutes=40))
    # Both workers run without a workflow cache (no sticky queue): every task is replayed from
    # history as in a fresh process, and the time-skipping server, which does not move sticky
    # tasks to a new worker, hands them to whichever worker polls.
    first = serve(ts_env, cloud.activities(), max_cached_workflows=0, end_leftovers=False)
    async with first as w:
        h = await w.start_cluster(CFG, f"c1x{uuid.uuid4().hex[:6]}")
        await until_state(ts_env, h, m.ClusterState.CREATING)
        await ts_env.sleep(timedelta(minutes=12))
    # No worker: the workflow is not lost, it waits.
    assert (await h.describe()).status.name == "RUNNING"
    async with serve(
        ts_env, cloud.activities(), task_queue=w.task_queue, max_cached_workflows=0
    ) as second:
        second.track(h)
        s = await until_state(ts_env, h, m.ClusterState.RUNNING, step=timedelta(minutes=2))
        assert s.login_address == "203.0.113.10"
        events = await history_len(h)
        await h.signal("delete")
        res = await h.result()
    assert res.state == m.ClusterState.DELETED
    assert cloud.calls.count("create_stack") == 1
    # The usual bound (set-up measured as above, 40-minute stack: its safety-net checks), plus up to
    # three workflow tasks (9 events): without a cache the time-skipping server hands a wake-up to
    # the workers as one to four tasks (seen: 114, 117, 120 events). Timed-out tasks of the stopped
    # worker are left out by history_len.
    setup = await events_to_running(ts_env, timedelta(0))
    bound = setup + EVENTS_PER_CHECK * (checks_until(timedelta(minutes=40)) - 1) + 9
    assert events <= bound, (events, setup, await event_types(h))


#: Real seconds after which a lifecycle that has not reached RUNNING is taken as stuck (it takes
#: well under a second on a time-skipping server that can skip).
STUCK_AFTER_S = 90


async def largest_event_to_running(cloud: FakeCloud) -> int:
    """The size of the largest history event up to RUNNING (an encrypted payload is about as large
    as its plaintext), on a time-skipping server of its own.

    Not on the module's server: on two fresh-clone CI runs (and once locally) the twin, the
    module's last test, found that server unable to skip time: its one-minute ``sleep`` calls
    did not return within 90 s, nor on a second try on the same server, while the worker sat
    idle. Something an earlier test of
    the module left outstanding locks the skipping; which one is not shown. A run still not
    RUNNING after :data:`STUCK_AFTER_S` on its own server is tried once more on a new one, and
    said on stderr. The assertions are the same either way."""
    from tests.conftest import new_ts_env

    for attempt in (1, 2):
        env = await new_ts_env()
        try:

            async def body(h, env=env):  # type: ignore[no-untyped-def]
                await asyncio.wait_for(until_state(env, h, m.ClusterState.RUNNING), STUCK_AFTER_S)
                return max(e.ByteSize() for e in (await h.fetch_history()).events)

            return await run_cluster(env, cloud, body)
        except TimeoutError:
            if attempt == 2:
                raise
            print(
                f"lifecycle not RUNNING after {STUCK_AFTER_S} s: once more on a new test server",
                file=sys.stderr,
            )
            cloud.requests.clear()
        finally:
            await env.shutdown()  # type: ignore[attr-defined]
    raise AssertionError("unreachable")


TEMPLATE_BYTES = len(policies.cluster_template("acme", "c1", {"bridgehead:org": "acme"}))


async def test_the_template_body_stays_out_of_the_lifecycle_s_history():
    """Issue 23: the plan carries what the template is rendered from; create_stack renders it. No
    event up to RUNNING could hold the body."""
    cloud = FakeCloud(create_takes=timedelta(minutes=10))
    largest = await largest_event_to_running(cloud)
    (req,) = cloud.requests
    assert req.template_body == "" and req.cluster_template is not None
    assert policies.render_cluster_template(req.cluster_template).startswith("{")
    assert TEMPLATE_BYTES > 5_000 and largest < TEMPLATE_BYTES / 2


async def test_twin_a_plan_with_the_body_puts_it_in_history():
    cloud = FakeCloud(create_takes=timedelta(minutes=10), body_always=True)
    largest = await largest_event_to_running(cloud)
    (req,) = cloud.requests
    assert req.template_body and req.cluster_template is None
    assert largest > TEMPLATE_BYTES
