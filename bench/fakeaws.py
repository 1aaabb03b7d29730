"""A latency-faithful fake AWS for the benchmark: an AWS that behaves like AWS *for throughput*.

Why it exists: moto is a CPU-bound Python emulator (it parses templates, builds resources, answers
XML) and, on this 2-core machine, it competes with the worker and the Temporal server for the same
cores. A lifecycle against moto measures moto. Real AWS costs the worker almost no CPU per call: the
calling thread waits on the network for tens to hundreds of milliseconds.

How: an injected boto3 stub at the client layer. :class:`FakeAws` is Bridgehead's own
:class:`activities.aws.Aws` whose clients get two botocore event handlers: ``before-parameter-build``
keeps the caller's arguments, and ``before-call`` sleeps for a latency drawn from the call's
distribution (in the activity's own thread, GIL released, exactly as a blocking HTTPS call holds
it), then answers from :class:`bench.fakeworld.FakeWorld` instead of sending the request. What
still runs is everything Bridgehead runs with real AWS: the activity code, the registry's request
building, botocore's parameter validation and serialisation, error classification; what is skipped
is signing, the socket and response parsing (tens of microseconds per call here, far below the
latencies drawn). Chosen over an HTTP fake because such a server would be one more Python process
parsing and writing XML on the same two cores: the thing being removed.

Latency model: lognormal per API, given as (median, p99) in milliseconds, so
``sigma = ln(p99 / median) / 2.326`` (2.326 is the standard normal's 99th percentile). These are
**assumptions, not measurements**, of the order of magnitude of real calls from a worker in the
same region:

* DynamoDB GetItem / Query 6 ms (p99 25), PutItem / UpdateItem 8 ms (p99 30), TransactWriteItems
  15 ms (p99 60): AWS documents single-digit-millisecond latency for item reads and writes;
  transactions do two-phase writes (about twice a single write).
* CloudFormation CreateStack 300 ms (p99 1,000), DeleteStack 200 ms (p99 800), DescribeStacks
  100 ms (p99 400), DescribeStackEvents 120 ms (p99 500): the control plane answers a synchronous
  "accepted" in a few hundred milliseconds; describes are light reads.
* STS AssumeRole 150 ms (p99 600), GetCallerIdentity 40 ms (p99 150); SES SendEmail 80 ms
  (p99 300); Service Quotas GetServiceQuota 80 ms (p99 300); EC2 DescribeInstances 150 ms (p99 600).

An unlisted call gets :data:`DEFAULT_LATENCY` (50 ms, p99 200). Stacks complete after the world's
``create_seconds`` (0 in the throughput scenario, like moto; long in the waiting scenario).
"""

from __future__ import annotations

import contextvars
import math
import random
import threading
import time
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from activities.aws import Aws
from bench.fakeworld import FakeWorld

Z99 = 2.326  # the standard normal's 99th percentile
LATENCY_MS: dict[str, tuple[float, float]] = {
    "dynamodb:GetItem": (6, 25),
    "dynamodb:Query": (6, 25),
    "dynamodb:PutItem": (8, 30),
    "dynamodb:UpdateItem": (8, 30),
    "dynamodb:DeleteItem": (8, 30),
    "dynamodb:TransactWriteItems": (15, 60),
    "cloudformation:CreateStack": (300, 1000),
    "cloudformation:DeleteStack": (200, 800),
    "cloudformation:DescribeStacks": (100, 400),
    "cloudformation:DescribeStackEvents": (120, 500),
    "sts:AssumeRole": (150, 600),
    "sts:GetCallerIdentity": (40, 150),
    "ses:SendEmail": (80, 300),
    "service-quotas:GetServiceQuota": (80, 300),
    "ec2:DescribeInstances": (150, 600),
    # Onboarding's calls, for moto with AWS's latency (:class:`LatentAws`, the overhead scenario):
    "cloudformation:ValidateTemplate": (150, 600),
    "iam:GetRole": (80, 300),
    "iam:GetRolePolicy": (80, 300),
    "iam:ListRolePolicies": (80, 300),
    "iam:ListAttachedRolePolicies": (80, 300),
    "iam:ListInstanceProfilesForRole": (80, 300),
    "iam:SimulatePrincipalPolicy": (400, 1500),
    "ec2:DescribeImages": (150, 600),
    "ec2:DescribeRegions": (60, 250),
    "ec2:CopyImage": (300, 1000),
    "ec2:ModifyImageAttribute": (150, 600),
    "ec2:ModifySnapshotAttribute": (150, 600),
    "ec2:RunInstances": (200, 800),
}
DEFAULT_LATENCY = (50.0, 200.0)


class Latency:
    """Draws per-call latencies (seconds) from the lognormal of each API; ``scale=0`` turns them
    off (the unit tests of the world), ``seed`` makes a run reproducible."""

    def __init__(self, scale: float = 1.0, seed: int | None = None) -> None:
        self.scale = scale
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @staticmethod
    def params(call: str) -> tuple[float, float]:
        """(mu, sigma) of the lognormal of ``call``, from its (median, p99) in milliseconds."""
        median, p99 = LATENCY_MS.get(call, DEFAULT_LATENCY)
        return math.log(median / 1000), math.log(p99 / median) / Z99

    def draw(self, call: str) -> float:
        mu, sigma = self.params(call)
        with self._lock:
            return self.scale * self._rng.lognormvariate(mu, sigma)


#: Which logical call the current thread is making (the overhead scenario sets it to the recorded
#: activity execution, ``{workflow_id}/{activity_id}``, in both arms): :class:`PairedLatency` keys
#: its draws on it.
CALL_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bench_call_key", default=None
)


class PairedLatency(Latency):
    """Latencies that two arms of a comparison share: after :meth:`begin` with the same ``rep``,
    the k-th request of each API made by the same logical call (:data:`CALL_KEY`: the same
    activity execution, recorded in one arm and replayed in the other) is given the same draw,
    whichever arm makes it and in whatever order the arm's concurrent branches run. Requests made
    outside a keyed call (a helper thread does not inherit the key) are paired by API and order.
    Two arms making the same calls then wait the same, call by call, and their difference is
    their own (the overhead scenario)."""

    def __init__(self, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__(scale, seed)
        self.seed, self.rep = seed, 0
        self._seen: dict[tuple[str | None, str], int] = {}

    def begin(self, rep: int) -> None:
        with self._lock:
            self.rep, self._seen = rep, {}

    def draw(self, call: str) -> float:
        mu, sigma = self.params(call)
        key = (CALL_KEY.get(), call)
        with self._lock:
            k = self._seen[key] = self._seen.get(key, 0) + 1
            rng = random.Random(f"{self.seed}/{self.rep}/{key[0]}/{call}/{k}")
        return self.scale * rng.lognormvariate(mu, sigma)


def _service_name(service_model: Any) -> str:
    name = service_model.service_name
    return "ses" if name == "email" else str(name)


def _service(client: Any) -> str:
    return _service_name(client.meta.service_model)


def _call_name(model: Any) -> str:
    """``service:Operation`` of an operation model, as :data:`LATENCY_MS` names calls."""
    return f"{_service_name(model.service_model)}:{model.name}"


def pad(events: Any, latency: Latency) -> None:
    """Every call made by a client with these ``events`` (a botocore session's emitter: clients
    built from it afterwards copy it) lasts at least a latency drawn for it: the endpoint (moto)
    answers, then the calling thread sleeps the rest. A call the endpoint answers more slowly
    than the draw is not padded: its own time is kept."""

    def start(context: dict[str, Any], **_: Any) -> None:
        context["latency_t0"] = time.perf_counter()

    def finish(model: Any, context: dict[str, Any], **_: Any) -> None:
        want = latency.draw(_call_name(model))
        spent = time.perf_counter() - context.get("latency_t0", time.perf_counter())
        if want > spent:
            time.sleep(want - spent)

    events.register("before-call.*.*", start, unique_id="latency-start")
    events.register("after-call.*.*", finish, unique_id="latency-finish")


def install(client: Any, world: Any, latency: Latency) -> Any:
    """Make ``client`` answer from ``world`` after a drawn latency, without sending anything."""
    service = _service(client)
    region = client.meta.region_name or ""

    def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_params"] = dict(params)

    def answer(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, Any]:
        # The network round trip: the thread waits, CPU stays free.
        time.sleep(latency.draw(_call_name(model)))
        status, parsed = world.call(service, model.name, region, context.get("fake_params", {}))
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "RetryAttempts": 0})
        return AWSResponse("https://fake.invalid/", status, HTTPHeaders(), None), parsed

    events = client.meta.events
    events.register("before-parameter-build.*.*", keep_params, unique_id="fakeaws-params")
    events.register("before-call.*.*", answer, unique_id="fakeaws-answer")
    return client


class FakeAws(Aws):
    """Bridgehead's AWS factory whose every client answers from the fake world."""

    def __init__(self, settings: Any, world: Any | None = None, latency: Latency | None = None):
        super().__init__(settings)
        self.world = world if world is not None else FakeWorld()
        self.latency = latency or Latency()
        self._installed: set[int] = set()

    def _fake(self, client: Any) -> Any:
        if id(client) not in self._installed:
            install(client, self.world, self.latency)
            self._installed.add(id(client))
        return client

    def platform(self, service: str, region: str | None = None) -> Any:
        return self._fake(super().platform(service, region))

    def customer(self, org: Any, service: str, region: str) -> Any:
        return self._fake(super().customer(org, service, region))


#: Stateless calls whose emulation costs more than AWS's latency, answered by :class:`LatentAws`
#: without the endpoint: moto's ValidateTemplate runs cfn-lint, 0.2-0.75 s of its CPU a call (the
#: only call of the overhead scenario whose emulator time exceeded its drawn latency by more than
#: a few milliseconds), where AWS answers in about 150 ms (:data:`LATENCY_MS`).
ANSWERED_LOCALLY: dict[str, dict[str, Any]] = {
    "cloudformation:ValidateTemplate": {"Parameters": [], "Description": ""},
}


def answer_locally(events: Any, answers: dict[str, dict[str, Any]]) -> None:
    """Calls named in ``answers`` get that answer without a request (the latency is still drawn
    and waited by :func:`pad`)."""

    def answer(model: Any, **_: Any) -> tuple[AWSResponse, Any] | None:
        parsed = answers.get(_call_name(model))
        if parsed is None:
            return None
        meta = {"HTTPStatusCode": 200, "RetryAttempts": 0}
        return AWSResponse("https://latency.invalid/", 200, HTTPHeaders(), None), {
            **parsed,
            "ResponseMetadata": meta,
        }

    for call in answers:
        service, op = call.split(":")
        events.register(f"before-call.{service}.{op}", answer, unique_id=f"latency-{call}")


class LatentAws(Aws):
    """Bridgehead's AWS factory against the real endpoint (moto), every call padded to a latency
    drawn for it (:func:`pad`): moto's semantics and state, AWS's waiting; the stateless calls of
    :data:`ANSWERED_LOCALLY` are not sent. Used by the overhead scenario, whose onboarding makes
    calls (IAM, EC2 images, ValidateTemplate) the fake world does not answer."""

    def __init__(self, settings: Any, latency: Latency | None = None) -> None:
        super().__init__(settings)
        self.latency = latency or PairedLatency()
        pad(self._platform_session.events, self.latency)
        answer_locally(self._platform_session.events, ANSWERED_LOCALLY)


def seed_from(aws: Aws, world: Any) -> int:
    """Copy the platform registry (as onboarded for real, against moto) into ``world``: the fake
    then knows the organisations, foundations and image shares the lifecycle validates against."""
    table = aws.settings.registry_table
    client = aws.platform("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return int(world.load_items(table, items))
