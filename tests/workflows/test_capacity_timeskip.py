"""Capacity failover, bootstrap diagnostics and access on the time-skipping server, with a fake
CloudFormation that fails chosen (instance type, subnet) attempts with EC2's capacity errors.

Each claim is checked by one function returning the problems it sees (``[]`` when right); each
has a planted-defect twin that runs the same scenario with the defect and asserts the check
names it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import UnsandboxedWorkflowRunner

import bridgehead.capacity
from bridgehead import models as m
from tests.support.stack_fakes import stack_poll
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import skip, until_state
from worker import sandbox_runner
from workflows._capacity import FailsOverCapacity

SUBNETS = [
    m.Placement(subnet_id="subnet-a", availability_zone="us-east-1a"),
    m.Placement(subnet_id="subnet-b", availability_zone="us-east-1b"),
]
ICE = (
    "We currently do not have sufficient {t} capacity in the Availability Zone you requested "
    "({az}). Our system will be working on provisioning additional capacity. (Service: AmazonEC2; "
    "Status Code: 500; Error Code: InsufficientInstanceCapacity)"
)
BOOT = "Failed to receive 1 resource signal(s) within the specified duration"
CONSOLE = ["cloud-init: mount.efs: Failed to resolve fs-123.efs", "ready 1"]
TYPES = ["c5.xlarge", "c6i.xlarge"]


@dataclass
class CapacityCloud:
    """Stacks complete 5 minutes after creation, unless their (type, subnet) has no capacity
    (ROLLBACK_COMPLETE with EC2's message on the compute group) or ``boot_fails`` (the head
    node's CreationPolicy times out). Creating over a stack that is not deleted fails, as on AWS."""

    no_capacity: set[tuple[str, str]] = field(default_factory=set)
    boot_fails: bool = False
    calls: list[str] = field(default_factory=list)
    stack: dict = field(default_factory=dict)
    registered_types: list[str] = field(default_factory=list)

    def activities(self):
        cloud = self

        @activity.defn(name="validate_cluster")
        def validate_cluster(req: m.ValidateClusterInput) -> m.ClusterPlan:
            return m.ClusterPlan(
                template_body="{}",
                parameters={"ComputeInstanceType": "x", "PrivateSubnetId": "subnet-a"},
                placements=SUBNETS,
            )

        @activity.defn(name="check_vcpu_quota")
        def check_vcpu_quota(req: m.QuotaCheckInput) -> m.QuotaReport:
            return m.QuotaReport(region=req.region, available=False)

        @activity.defn(name="register_cluster")
        def register_cluster(req: m.RegisterClusterInput) -> None:
            cloud.calls.append(f"register:{req.state.value}")
            for s in req.segments or []:
                cloud.registered_types.append(s.compute_instance_type)

        @activity.defn(name="notify")
        def notify(req: m.NotifyInput) -> bool:
            return True

        @activity.defn(name="create_stack")
        def create_stack(req: m.StackRequest) -> m.StackPoll:
            if cloud.stack.get("status") not in (None, "DELETE_COMPLETE"):
                raise ApplicationError(
                    f"AlreadyExistsException: stack {req.stack_name} exists", non_retryable=True
                )
            t, sn = req.parameters["ComputeInstanceType"], req.parameters["PrivateSubnetId"]
            cloud.calls.append(f"create:{t}@{sn}")
            cloud.stack = {
                "created": activity.info().current_attempt_scheduled_time,
                "status": "CREATE_IN_PROGRESS",
                "key": (t, sn),
            }
            return stack_poll(req.stack_name)

        @activity.defn(name="delete_stack")
        def delete_stack(ref: m.StackRef) -> None:
            cloud.calls.append("delete")
            if cloud.stack:
                cloud.stack["status"] = "DELETE_COMPLETE"

        @activity.defn(name="head_console_tail")
        def head_console_tail(req: m.ConsoleTailInput) -> m.ConsoleTail:
            cloud.calls.append("console")
            return m.ConsoleTail(instance_id="i-0head", lines=CONSOLE)

        @activity.defn(name="poll_stack")
        def poll_stack(ref: m.StackRef) -> m.StackPoll:
            poll = look(ref)
            if not poll.terminal:
                raise ApplicationError(
                    "in progress", type="StackInProgress", category=ApplicationErrorCategory.BENIGN
                )
            return poll

        @activity.defn(name="check_stack")
        def check_stack(ref: m.StackRef) -> m.StackPoll:
            """One look (the event-driven wait, patch event-waits): in progress is an answer."""
            return look(ref)

        def look(ref: m.StackRef) -> m.StackPoll:
            now = activity.info().current_attempt_scheduled_time
            st = cloud.stack
            if ref.expect == "delete":
                return stack_poll(ref.stack_name, "DELETE_COMPLETE", terminal=True, succeeded=True)
            if now - st["created"] < timedelta(minutes=5):
                return stack_poll(ref.stack_name)
            t, sn = st["key"]
            az = next(p.availability_zone for p in SUBNETS if p.subnet_id == sn)
            if st["key"] in cloud.no_capacity:
                resource, reason = (
                    "ComputeGroup (AWS::AutoScaling::AutoScalingGroup)",
                    ICE.format(t=t, az=az),
                )
            elif cloud.boot_fails:
                resource, reason = "HeadNode (AWS::EC2::Instance)", BOOT
            else:
                st["status"] = "CREATE_COMPLETE"
                return stack_poll(
                    ref.stack_name,
                    "CREATE_COMPLETE",
                    terminal=True,
                    succeeded=True,
                    outputs={"HeadInstanceId": "i-0head", "LoginAddress": "203.0.113.10"},
                )
            st["status"] = "ROLLBACK_COMPLETE"
            return stack_poll(
                ref.stack_name,
                "ROLLBACK_COMPLETE",
                terminal=True,
                events=[
                    m.StackEvent(
                        timestamp=now,
                        logical_id=resource.split()[0],
                        resource_type=resource.split("(")[1].rstrip(")"),
                        status="CREATE_FAILED",
                        reason=reason,
                    )
                ],
                failure_resource=resource,
                failure_reason=reason,
            )

        return [
            validate_cluster,
            check_vcpu_quota,
            register_cluster,
            notify,
            create_stack,
            delete_stack,
            head_console_tail,
            poll_stack,
            check_stack,
        ]


async def run(env, cloud: CapacityCloud, config: m.ClusterConfig, body, sandboxed: bool = True):
    runner = sandbox_runner() if sandboxed else UnsandboxedWorkflowRunner()
    async with serve(env, cloud.activities(), runner=runner, threads=8) as w:
        return await body(await w.start_cluster(config, f"cap{uuid.uuid4().hex[:6]}"))


@pytest_asyncio.fixture(loop_scope="session")
async def ts_env() -> AsyncIterator[object]:
    """A time-skipping server of each test's own (overrides the session's): these waits keep
    safety-net timers, and on the shared server what one test leaves behind has stopped time
    skipping for the next (seen as ``unlock_time_skipping_with_sleep`` timing out)."""
    from tests.conftest import new_ts_env

    env = await new_ts_env()
    yield env
    await env.shutdown()  # type: ignore[attr-defined]


async def failed_then_deleted(env, h) -> m.ClusterResult:
    """A FAILED cluster stays (blocking cleanup) until deleted: the result keeps its reason."""
    await until_state(env, h, m.ClusterState.FAILED, limit=60)
    await h.signal("delete")
    return await h.result()


FALLBACK = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_types=TYPES,
    compute_initial_nodes=2,
    compute_max_nodes=4,
)


async def fail_over(env, cloud: CapacityCloud, sandboxed: bool = True):
    """c5.xlarge has no capacity in either zone: the third attempt (c6i.xlarge in zone a) runs."""
    cloud.no_capacity |= {("c5.xlarge", "subnet-a"), ("c5.xlarge", "subnet-b")}

    async def body(h):
        s = await until_state(env, h, m.ClusterState.RUNNING, limit=60)
        await h.signal("delete")
        return s, await h.result()

    return await run(env, cloud, FALLBACK, body, sandboxed)


def failover_problems(cloud: CapacityCloud, status: m.ClusterStatus | None, res) -> list[str]:
    """What capacity failover must show: the attempts in order with their reasons, each failed
    stack deleted before the next creation, and the type that ran billed and registered."""
    out = []
    if status is None or res.state != m.ClusterState.DELETED:
        return [f"cluster did not run and delete: {res.state.value} {res.failure_reason}"]
    seen = [
        (a.number, a.compute_instance_type, a.availability_zone, a.outcome, a.error_code)
        for a in status.attempts
    ]
    want = [
        (1, "c5.xlarge", "us-east-1a", "capacity", "InsufficientInstanceCapacity"),
        (2, "c5.xlarge", "us-east-1b", "capacity", "InsufficientInstanceCapacity"),
        (3, "c6i.xlarge", "us-east-1a", "running", None),
    ]
    if seen != want:
        out.append(f"attempts {seen}")
    if not all("sufficient c5.xlarge capacity" in a.reason for a in status.attempts[:2]):
        out.append("attempt reasons missing")
    creates = [c for c in cloud.calls if c.startswith(("create", "delete"))]
    if creates[:5] != [
        "create:c5.xlarge@subnet-a",
        "delete",
        "create:c5.xlarge@subnet-b",
        "delete",
        "create:c6i.xlarge@subnet-a",
    ]:
        out.append(f"stack calls {creates}")
    if status.compute_instance_type != "c6i.xlarge":
        out.append(f"status type {status.compute_instance_type}")
    if [s.compute_instance_type for s in res.segments] != ["c6i.xlarge"]:
        out.append(f"billed {[s.compute_instance_type for s in res.segments]}")
    if set(cloud.registered_types) != {"c6i.xlarge"}:
        out.append(f"registered {sorted(set(cloud.registered_types))}")
    return out


async def test_capacity_errors_fail_over_to_the_next_zone_then_the_next_type(ts_env):
    cloud = CapacityCloud()
    status, res = await fail_over(ts_env, cloud)
    assert failover_problems(cloud, status, res) == []
    assert res.compute_instance_type == "c6i.xlarge" and len(res.attempts) == 3


async def test_twin_without_classification_a_capacity_error_fails_the_cluster(ts_env, monkeypatch):
    """Planted defect: capacity errors not recognised. The cluster ends FAILED after one attempt."""
    monkeypatch.setattr(bridgehead.capacity, "capacity_error", lambda reasons: None)
    cloud = CapacityCloud(no_capacity={("c5.xlarge", "subnet-a"), ("c5.xlarge", "subnet-b")})

    async def body(h):
        return None, await failed_then_deleted(ts_env, h)

    status, res = await run(ts_env, cloud, FALLBACK, body)
    assert res.state == m.ClusterState.DELETED and res.segments == []
    assert failover_problems(cloud, status, res) == [
        f"cluster did not run and delete: DELETED {res.failure_reason}"
    ]
    assert [a.outcome for a in res.attempts] == ["failed"]


async def test_twin_billing_the_configured_type_instead_of_the_running_one_is_caught(
    ts_env, monkeypatch
):
    """Planted defect: billing and the registry use the config's first type, not the one that ran."""
    monkeypatch.setattr(
        FailsOverCapacity, "_compute_type", property(lambda self: self._in.config.compute_types[0])
    )
    cloud = CapacityCloud()
    status, res = await fail_over(ts_env, cloud, sandboxed=False)
    assert failover_problems(cloud, status, res) == [
        "status type c5.xlarge",
        "billed ['c5.xlarge']",
        "registered ['c5.xlarge']",
    ]


async def test_no_capacity_anywhere_fails_naming_every_attempt_and_a_non_capacity_error_is_not_retried(
    ts_env,
):
    every = {(t, p.subnet_id) for t in TYPES for p in SUBNETS}
    cloud = CapacityCloud(no_capacity=every)

    async def body(h):
        return await failed_then_deleted(ts_env, h)

    res = await run(ts_env, cloud, FALLBACK, body)
    assert res.state == m.ClusterState.DELETED and res.segments == []
    assert [(a.compute_instance_type, a.availability_zone, a.outcome) for a in res.attempts] == [
        ("c5.xlarge", "us-east-1a", "capacity"),
        ("c5.xlarge", "us-east-1b", "capacity"),
        ("c6i.xlarge", "us-east-1a", "capacity"),
        ("c6i.xlarge", "us-east-1b", "capacity"),
    ]
    assert res.failure_reason == (
        ICE.format(t="c6i.xlarge", az="us-east-1b")
        + " (no capacity left to try: 4 attempts over 2 instance types and 2 Availability Zones)"
    )
    # A failure that is not about capacity (the head node never signalled) is not retried.
    cloud = CapacityCloud(boot_fails=True)
    res = await run(ts_env, cloud, FALLBACK, body)
    assert res.state == m.ClusterState.DELETED
    assert [c for c in cloud.calls if c.startswith("create")] == ["create:c5.xlarge@subnet-a"]
    assert [a.outcome for a in res.attempts] == ["failed"]


def bootstrap_problems(res) -> list[str]:
    want = f"{BOOT}\nhead node i-0head console output, last 2 lines:\n" + "\n".join(CONSOLE)
    return [] if res.failure_reason == want else [f"reason {res.failure_reason!r}"]


async def test_bootstrap_failure_reports_the_head_nodes_console_tail(ts_env):
    cloud = CapacityCloud(boot_fails=True)

    async def body(h):
        return await failed_then_deleted(ts_env, h)

    res = await run(ts_env, cloud, FALLBACK, body)
    assert res.state == m.ClusterState.DELETED
    assert res.failure_resource == "HeadNode (AWS::EC2::Instance)"
    assert bootstrap_problems(res) == []
    assert cloud.calls.index("console") < cloud.calls.index(
        "delete"
    )  # read before rollback cleanup


async def test_twin_a_bootstrap_failure_not_recognised_reports_no_console(ts_env, monkeypatch):
    monkeypatch.setattr(bridgehead.capacity, "bootstrap_failed", lambda resource, reason: False)
    cloud = CapacityCloud(boot_fails=True)

    async def body(h):
        return await failed_then_deleted(ts_env, h)

    res = await run(ts_env, cloud, FALLBACK, body)
    assert bootstrap_problems(res) == [f"reason {BOOT!r}"] and "console" not in cloud.calls


@pytest.mark.parametrize(
    "ssh, want_ssh",
    [
        ({}, None),
        (
            {"ssh_cidr": "203.0.113.0/24", "ssh_key_name": "ops"},
            "ssh -i ~/.ssh/ops.pem ec2-user@203.0.113.10",
        ),
    ],
)
async def test_running_status_says_how_to_connect(ts_env, ssh, want_ssh):
    cloud = CapacityCloud()
    config = m.ClusterConfig(
        head_instance_type="t3.medium", compute_instance_type="c5.xlarge", **ssh
    )

    async def body(h):
        s = await until_state(ts_env, h, m.ClusterState.RUNNING, limit=60)
        await h.terminate("done")
        return s

    s = await run(ts_env, cloud, config, body)
    assert s.connect == m.ConnectInfo(
        head_instance_id="i-0head",
        ssm_command="aws ssm start-session --target i-0head --region us-east-1",
        ssh_command=want_ssh,
    )
    assert [(a.compute_instance_type, a.outcome) for a in s.attempts] == [("c5.xlarge", "running")]


async def test_cancel_during_the_second_attempt_ends_cancelled_and_bills_nothing(ts_env):
    cloud = CapacityCloud(no_capacity={("c5.xlarge", "subnet-a")})

    async def body(h):
        for _ in range(60):
            s = await h.query("status", result_type=m.ClusterStatus)
            if len(s.attempts) == 2:
                break
            await skip(ts_env, timedelta(seconds=30))
        await h.signal("cancel")
        return await h.result()

    res = await run(ts_env, cloud, FALLBACK, body)
    assert res.state == m.ClusterState.CANCELLED and res.segments == []
    assert [a.outcome for a in res.attempts] == ["capacity", "cancelled"]
    assert [c for c in cloud.calls if c.startswith(("create", "delete"))] == [
        "create:c5.xlarge@subnet-a",
        "delete",
        "create:c5.xlarge@subnet-b",
        "delete",
    ]
