"""The overhead scenario's second backend, moto with AWS's latency (bench/fakeaws.py: ``pad``,
``PairedLatency``, ``LatentAws``), and its plain script's concurrency (bench/scenarios/overhead.py:
``predecessors``, ``run_after``). Each claim has a planted-defect twin.

* every call through a padded session lasts at least the latency drawn for it (twin: the same
  call through an unpadded session returns at once);
* two arms of one repetition are given the same draws, whatever order their concurrent branches
  make their calls in (twin: the plain ``Latency``, with the same seed, gives them different ones);
  call by call, keyed by the recorded activity execution (``CALL_KEY``), even where two branches
  of an arm make requests of the same API in another order (twin: keyed by API and order alone,
  as first written, a request's draw moves to another branch);
* moto's ValidateTemplate (cfn-lint, 0.2-0.75 s of CPU) is answered without the endpoint after
  its drawn latency (twin: without the local answer the request is sent: to a closed port here);
* the script starts each call once the calls that had ended before it in Bridgehead's run have
  ended: calls that overlapped in Bridgehead's run overlap in the script's (twin: one call at a
  time, which gave Bridgehead concurrency the script did not have), and ``run_after`` runs them
  so (twin: ``predecessors`` planted to wait for every earlier call).
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.stub import Stubber

import bench.scenarios.overhead as overhead
from bench.fakeaws import (
    ANSWERED_LOCALLY,
    CALL_KEY,
    Latency,
    PairedLatency,
    answer_locally,
    pad,
)
from bench.harness import Call
from bench.scenarios.overhead import predecessors, run_after

DRAW = 0.25


class Fixed(Latency):
    def draw(self, call: str) -> float:
        self.calls.append(call)
        return DRAW

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []


def unpadded_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-east-1"
    )


def padded_session() -> tuple[boto3.session.Session, Fixed]:
    """A session whose clients wait :data:`DRAW` a call (and record each call drawn)."""
    session, latency = unpadded_session(), Fixed()
    pad(session.events, latency)
    return session, latency


def timed_call(padded: bool) -> tuple[float, list[str]]:
    session, latency = padded_session() if padded else (unpadded_session(), Fixed())
    sts = session.client("sts", endpoint_url="http://127.0.0.1:9")  # nothing may be sent
    with Stubber(sts) as stub:
        stub.add_response(
            "get_caller_identity",
            {
                "Account": "260000000001",
                "Arn": "arn:aws:iam::260000000001:user/bench",
                "UserId": "AIDAEXAMPLEUSERID",
            },
        )
        t0 = time.perf_counter()
        sts.get_caller_identity()
        return time.perf_counter() - t0, latency.calls


def test_a_padded_call_lasts_at_least_its_draw():
    seconds, calls = timed_call(padded=True)
    assert calls == ["sts:GetCallerIdentity"]
    assert DRAW <= seconds < DRAW + 0.2


def test_twin_an_unpadded_call_returns_at_once():
    seconds, calls = timed_call(padded=False)
    assert calls == [] and seconds < DRAW / 2


def validate(answered: bool) -> tuple[float, Any]:
    import botocore.exceptions

    session, _ = padded_session()
    if answered:
        answer_locally(session.events, ANSWERED_LOCALLY)
    cfn = session.client(
        "cloudformation",
        endpoint_url="http://127.0.0.1:9",  # nothing listens: a request sent fails
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    t0 = time.perf_counter()
    try:
        out: Any = cfn.validate_template(TemplateBody='{"Resources": {}}')
    except botocore.exceptions.EndpointConnectionError as e:
        out = e
    return time.perf_counter() - t0, out


def test_validate_template_is_answered_without_the_endpoint_after_its_draw():
    seconds, out = validate(answered=True)
    assert out["Parameters"] == [] and DRAW <= seconds < DRAW + 0.2, (seconds, out)


def test_twin_without_the_local_answer_the_request_is_sent():
    import botocore.exceptions

    _, out = validate(answered=False)
    assert isinstance(out, botocore.exceptions.EndpointConnectionError), out


ARM_A = ["dynamodb:GetItem", "cloudformation:CreateStack", "dynamodb:GetItem", "ec2:DescribeImages"]
ARM_B = ["ec2:DescribeImages", "dynamodb:GetItem", "dynamodb:GetItem", "cloudformation:CreateStack"]


def draws(latency: Any, order: list[str], rep: int) -> dict[str, list[float]]:
    if isinstance(latency, PairedLatency):
        latency.begin(rep)
    out: dict[str, list[float]] = {}
    for call in order:
        out.setdefault(call, []).append(latency.draw(call))
    return out


def test_two_arms_of_a_repetition_wait_the_same():
    lat = PairedLatency(seed=7)
    a, b = draws(lat, ARM_A, 3), draws(lat, ARM_B, 3)
    assert a == b
    assert draws(lat, ARM_A, 4) != a  # another repetition, other draws
    assert a["cloudformation:CreateStack"][0] > 0.05  # CreateStack's own distribution (300 ms)


def test_twin_unpaired_draws_differ_between_the_arms():
    a, b = draws(Latency(seed=7), ARM_A, 3), draws(Latency(seed=7), ARM_B, 3)
    assert a != b


# Two branches of an arm, each a keyed call: (key, API) in the order the arm makes them.
IMAGES, REGION = "org-a-images/2", "org-a-region-us-east-1/3"
ORDER_1 = [(IMAGES, "dynamodb:GetItem"), (REGION, "dynamodb:GetItem"), (IMAGES, "dynamodb:GetItem")]
ORDER_2 = [(REGION, "dynamodb:GetItem"), (IMAGES, "dynamodb:GetItem"), (IMAGES, "dynamodb:GetItem")]


def keyed_draws(lat: PairedLatency, order: list[tuple[str, str]], keyed: bool) -> dict[str, list]:
    lat.begin(1)
    out: dict[str, list[float]] = {}
    for key, api in order:
        token = CALL_KEY.set(key if keyed else None)
        try:
            out.setdefault(key, []).append(lat.draw(api))
        finally:
            CALL_KEY.reset(token)
    return out


def test_each_call_gets_its_own_draws_whatever_order_the_branches_run_in():
    lat = PairedLatency(seed=11)
    assert keyed_draws(lat, ORDER_1, keyed=True) == keyed_draws(lat, ORDER_2, keyed=True)


def test_twin_draws_keyed_by_api_and_order_move_between_branches():
    lat = PairedLatency(seed=11)
    assert keyed_draws(lat, ORDER_1, keyed=False) != keyed_draws(lat, ORDER_2, keyed=False)


def call(start: float, end: float, workflow: str, name: str) -> Call:
    return Call(start, end, workflow, name, (), None)


# Onboarding's shape: the organisation's call, its images and its region at once, then its own.
CALLS = [
    call(0.0, 1.0, "org-a", "register_organization"),
    call(2.0, 2.2, "org-a-images", "find_platform_image"),
    call(2.1, 2.6, "org-a-region-us-east-1", "check_vcpu_quota"),
    call(2.3, 2.5, "org-a-images", "share_image"),
    call(2.7, 3.2, "org-a-region-us-east-1", "create_stack"),
    call(3.5, 3.6, "org-a", "notify"),
]


def named(calls: list[Call]) -> dict[str, set[str]]:
    return {
        c.name: {calls[j].name for j in before}
        for c, before in zip(calls, predecessors(calls), strict=True)
    }


def test_the_script_waits_for_what_had_ended_and_nothing_else():
    after = named(CALLS)
    assert after["register_organization"] == set()
    # the images' and the region's first calls overlap: neither waits for the other
    assert after["find_platform_image"] == after["check_vcpu_quota"] == {"register_organization"}
    assert after["share_image"] == {"register_organization", "find_platform_image"}
    # create_stack began once every call before it had ended (share_image's end included)
    assert after["create_stack"] == {c.name for c in CALLS[:4]}
    assert after["notify"] == {c.name for c in CALLS[:5]}


def test_twin_one_call_at_a_time_is_caught():
    def one_at_a_time(calls: list[Call]) -> list[list[int]]:
        return [list(range(i)) for i in range(len(calls))]

    assert one_at_a_time(CALLS) != predecessors(CALLS)
    assert one_at_a_time(CALLS)[2] == [0, 1]  # the region's first call waited for the images'


# Two calls that overlapped in Bridgehead's run, then one after both.
TIMED = [
    call(0.0, 1.0, "org-a-images", "share_image"),
    call(0.5, 1.5, "org-a-region-us-east-1", "create_stack"),
    call(2.0, 3.0, "org-a", "notify"),
]
STEP = 0.2


def replayed_in() -> tuple[float, list[str]]:
    order: list[str] = []

    def fn(c: Call) -> None:
        time.sleep(STEP)
        order.append(c.name)

    t0 = time.perf_counter()
    run_after(TIMED, fn)
    return time.perf_counter() - t0, order


def test_run_after_runs_what_overlapped_at_once_and_the_rest_after():
    seconds, order = replayed_in()
    assert 2 * STEP <= seconds < 2.5 * STEP, seconds
    assert order[-1] == "notify", order


def test_twin_waiting_for_every_earlier_call_is_caught(monkeypatch):
    monkeypatch.setattr(
        overhead, "predecessors", lambda calls: [list(range(i)) for i in range(len(calls))]
    )
    seconds, _ = replayed_in()
    assert seconds >= 3 * STEP, seconds
