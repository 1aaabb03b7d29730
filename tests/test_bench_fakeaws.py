"""The benchmark's latency-faithful fake AWS (bench/fakeaws.py, bench/fakeworld.py): Bridgehead's real
stack and registry code runs against it with nothing sent on the network (the endpoint is a closed
port: a request that escaped the fake would fail), stacks complete after their configured duration,
and latencies follow the stated lognormals. Each check has a planted-defect twin."""

from __future__ import annotations

import dataclasses
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cloudformation import StackActivities
from activities.registry import Registry
from bench.fakeaws import LATENCY_MS, FakeAws, Latency
from bench.fakeworld import FakeWorld, apply_update
from bridgehead import models as m
from bridgehead.settings import Settings

ORG = "fakeorg1"


@pytest.fixture
def closed_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: discard port


def _fake(world: FakeWorld) -> tuple[FakeAws, StackActivities]:
    aws = FakeAws(Settings(), world, Latency(scale=0))
    reg = Registry(aws)
    reg.put_org(
        ORG,
        {
            "aws_account_id": "260000000001",
            "external_id": "x" * 32,
            "role_arn": "arn:aws:iam::260000000001:role/BridgeheadAccess",
            "state": "READY",
        },
    )
    return aws, StackActivities(aws, reg)


def check_stack_takes_its_time(world: FakeWorld) -> None:
    """Created, the stack is in progress until ``create_seconds`` have passed, then complete with
    its outputs; deleted, it is gone after ``delete_seconds``."""
    _, acts = _fake(world)
    env = ActivityEnvironment()
    # An attempt early in a 10-minute polling window (not its last: that one returns, not raises).
    now = datetime.now(UTC)
    env.info = dataclasses.replace(
        env.info,
        scheduled_time=now,
        current_attempt_scheduled_time=now,
        schedule_to_close_timeout=timedelta(minutes=10),
    )
    req = m.StackRequest(
        org_id=ORG,
        region="us-east-1",
        stack_name="bh-fake-c1",
        template_body="{}",
        parameters={},
        tags={"bridgehead:org": ORG},
        client_request_token="tok-1",
    )
    ref = m.StackRef(org_id=ORG, region="us-east-1", stack_name="bh-fake-c1")
    created = env.run(acts.create_stack, req)
    assert created.status == "CREATE_IN_PROGRESS"
    with pytest.raises(ApplicationError, match="bh-fake-c1 is CREATE_IN_PROGRESS"):
        env.run(acts.poll_stack, ref)
    time.sleep(world.create_seconds)
    done = env.run(acts.poll_stack, ref)
    assert (done.status, done.succeeded, done.outputs) == (
        "CREATE_COMPLETE",
        True,
        {"LoginAddress": "203.0.113.7"},
    )
    assert [e.status for e in done.events] == ["CREATE_COMPLETE", "CREATE_IN_PROGRESS"]
    # Retried CreateStack: AlreadyExists, found carrying our token, success (idempotency).
    assert env.run(acts.create_stack, req).stack_id == created.stack_id
    env.run(acts.delete_stack, ref)
    gone = ref.model_copy(update={"expect": "delete"})
    with pytest.raises(ApplicationError, match="is DELETE_IN_PROGRESS"):
        env.run(acts.poll_stack, gone)
    time.sleep(world.delete_seconds)
    assert env.run(acts.poll_stack, gone).status == "DELETE_COMPLETE"


def test_real_stack_activities_against_the_fake(closed_endpoint: None) -> None:
    world = FakeWorld(create_seconds=0.3, delete_seconds=0.2)
    check_stack_takes_its_time(world)
    assert world.counts()["cloudformation:CreateStack"] == 2
    assert world.counts()["sts:AssumeRole"] == 1  # credentials cached, as with real STS


class _InstantWorld(FakeWorld):
    """Planted defect: stacks complete the moment they are created (moto's behaviour)."""

    def _status(self, s: dict[str, Any]) -> str:
        return "DELETE_IN_PROGRESS" if s["deleted_at"] is not None else "CREATE_COMPLETE"


def test_twin_instant_stacks_are_caught(closed_endpoint: None) -> None:
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        check_stack_takes_its_time(_InstantWorld(create_seconds=0.3, delete_seconds=0.2))


def test_unknown_call_is_refused_by_name(closed_endpoint: None) -> None:
    aws = FakeAws(Settings(), FakeWorld(), Latency(scale=0))
    with pytest.raises(NotImplementedError, match="the fake AWS does not answer ec2:DescribeVpcs"):
        aws.platform("ec2").describe_vpcs()


def test_update_expressions_of_the_registry() -> None:
    item: dict[str, Any] = {"a": {"S": "x"}, "n": {"N": "2"}}
    apply_update(
        item,
        "SET #f0 = :v0, #f1 = :v1 REMOVE #f2",
        {"#f0": "state", "#f1": "b", "#f2": "a"},
        {":v0": {"S": "RUNNING"}, ":v1": {"N": "1"}},
    )
    assert item == {"n": {"N": "2"}, "state": {"S": "RUNNING"}, "b": {"N": "1"}}
    apply_update(item, "ADD #a0 :a0", {"#a0": "n"}, {":a0": {"N": "3"}})
    assert item["n"] == {"N": "5"}


def check_latency(latency: Latency, call: str) -> None:
    """Drawn latencies have the stated median and p99 (within sampling error)."""
    median_ms, p99_ms = LATENCY_MS[call]
    draws = sorted(latency.draw(call) * 1000 for _ in range(20000))
    assert statistics.median(draws) == pytest.approx(median_ms, rel=0.05)
    assert draws[int(0.99 * len(draws))] == pytest.approx(p99_ms, rel=0.12)


@pytest.mark.parametrize("call", ["dynamodb:GetItem", "cloudformation:CreateStack"])
def test_latency_has_the_stated_median_and_p99(call: str) -> None:
    check_latency(Latency(seed=7), call)


class _NarrowLatency(Latency):
    """Planted defect: the spread forgotten (every call takes the median)."""

    @staticmethod
    def params(call: str) -> tuple[float, float]:
        mu, _ = Latency.params(call)
        return mu, 0.0


def test_twin_latency_without_spread_is_caught() -> None:
    with pytest.raises(AssertionError):
        check_latency(_NarrowLatency(seed=7), "cloudformation:CreateStack")


class _CutShort:
    """A proxy connection whose next answer is cut short by an exception raised into the thread
    (as Temporal cancels a threaded activity): it sends, then raises before reading the answer,
    which stays in the socket."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.armed = conn, True

    def recv(self) -> Any:
        if self.armed:
            self.armed = False
            raise RuntimeError("cancelled while reading the answer")
        return self.conn.recv()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _interrupted_then_asked(world: Any, proxy: Any) -> Any:
    """Interrupt a ``counts()`` on this thread's connection, then ask ``stacks_in_progress()``."""
    world.stacks_in_progress()  # this thread's connection now exists
    proxy._tls.connection = _CutShort(proxy._tls.connection)
    with pytest.raises(RuntimeError, match="cancelled"):
        world.counts()
    return world.stacks_in_progress()


def test_a_call_cut_short_leaves_the_next_call_its_own_answer() -> None:
    """bench.fakeworld.Resilient: a call interrupted while its answer is in flight drops the
    thread's connection, so the next call gets its own answer (an int), not the stale one (the
    counts dict) -- or a hang on a length read from the middle of it, which is how a waiting
    benchmark's worker process once failed to exit on CI."""
    from bench.fakeworld import serve

    manager, _, world = serve()
    try:
        assert _interrupted_then_asked(world, world._proxy) == 0
    finally:
        manager.shutdown()


def test_twin_the_bare_proxy_reads_the_stale_answer() -> None:
    """Twin: the proxy without Resilient reads the interrupted call's answer as its own."""
    from bench.fakeworld import serve

    manager, _, world = serve()
    try:
        bare = world._proxy
        assert isinstance(_interrupted_then_asked(bare, bare), dict)
    finally:
        manager.shutdown()
