"""The overhead scenario's second backend, moto with AWS's latency (bench/fakeaws.py: ``pad``,
``PairedLatency``, ``LatentAws``), and its plain script's concurrency (bench/scenarios/overhead.py:
``overlapping``). Each claim has a planted-defect twin.

* every call through a padded session lasts at least the latency drawn for it (twin: the same
  call through an unpadded session returns at once);
* two arms of one repetition are given the same draws, whatever order their concurrent branches
  make their calls in (twin: the plain ``Latency``, with the same seed, gives them different ones);
* the script replays calls that overlapped in Bridgehead's run at once, one thread per workflow,
  and the rest in order (twin: one call at a time, which gave Bridgehead concurrency the script
  did not have).
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.stub import Stubber

from bench.fakeaws import Latency, PairedLatency, pad
from bench.harness import Call
from bench.scenarios.overhead import overlapping

DRAW = 0.25


class Fixed(Latency):
    def draw(self, call: str) -> float:
        self.calls.append(call)
        return DRAW

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []


def timed_call(padded: bool) -> tuple[float, list[str]]:
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-east-1"
    )
    latency = Fixed()
    if padded:
        pad(session.events, latency)
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


def call(start: float, end: float, workflow: str, name: str) -> Call:
    return Call(start, end, workflow, name, (), None)


# Onboarding's shape: the organisation's call, its images and its region at once, then its own.
CALLS = [
    call(0.0, 1.0, "org-a", "register_organization"),
    call(2.0, 2.2, "org-a-images", "find_platform_image"),
    call(2.1, 2.6, "org-a-region-us-east-1", "check_vcpu_quota"),
    call(2.3, 2.5, "org-a-images", "share_image"),
    call(2.55, 3.2, "org-a-region-us-east-1", "create_stack"),
    call(3.0, 3.1, "org-a-images", "late_share"),  # overlaps create_stack: still the same group
    call(3.5, 3.6, "org-a", "notify"),
]


def names(groups: list[list[list[Call]]]) -> list[list[list[str]]]:
    return [[[c.name for c in seq] for seq in g] for g in groups]


def test_the_script_overlaps_what_overlapped_and_nothing_else():
    assert names(overlapping(list(reversed(CALLS)))) == [
        [["register_organization"]],
        [
            ["find_platform_image", "share_image", "late_share"],
            ["check_vcpu_quota", "create_stack"],
        ],
        [["notify"]],
    ]


def test_a_moment_when_nothing_runs_ends_a_group():
    gap = [*CALLS[:3], call(2.7, 3.2, "org-a-region-us-east-1", "create_stack")]
    assert names(overlapping(gap))[1:] == [
        [["find_platform_image"], ["check_vcpu_quota"]],
        [["create_stack"]],
    ]


def test_twin_one_call_at_a_time_is_caught():
    def one_at_a_time(calls: list[Call]) -> list[list[list[Call]]]:
        return [[[c]] for c in sorted(calls, key=lambda c: c.start)]

    assert names(one_at_a_time(CALLS)) != names(overlapping(CALLS))
    assert len(one_at_a_time(CALLS)) == len(CALLS)
