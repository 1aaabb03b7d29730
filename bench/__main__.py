"""``python -m bench``: what Temporal's durability costs and buys, measured side by side in one run.

Sizes: ``--size smoke`` (CI, a minute or two), ``small`` (default, a quick look), ``full`` (the
figures in docs/benchmarks.md: 200 concurrent lifecycles, 2,000 waiting clusters). Every count can
be overridden by a flag. Prints one table and writes it as JSON (``bench/results/`` by default).

Scenarios (all on the embedded stack: Temporal dev server + moto server, worker in this process):

1. overhead   -- one organisation onboarded and one cluster created and deleted through Bridgehead,
                 against a plain script making the same AWS calls (the same activity code, called in
                 the order Bridgehead called it, with no Temporal). Ratio Bridgehead / script.
2. throughput -- N concurrent cluster lifecycles against N no-op workflows of the same shape (same
                 number of activities, same wait for ``delete``): the orchestration ceiling of this
                 server, worker and machine. Ratio and clusters per second, per worker tuning.
3. waiting    -- W clusters whose stacks stay CREATE_IN_PROGRESS (a controllable CloudFormation):
                 worker memory, activity executions in flight while waiting, history events per
                 cluster; events after one hour measured on the time-skipping server.
4. billing    -- the real BillingMeter and ledger activities (DynamoDB on moto) under time skipping:
                 cluster-hours metered per wall second, actions and events per cluster-hour.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNNERS_ALL = ("sandboxed", "unsandboxed")
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"clusters": 3, "waiting": 20, "wait_seconds": 3, "hour_sample": 3, "billing_clusters": 3, "billing_hours": 12, "tunings": ["default"],
              "overhead_runners": ["sandboxed"]},
    "small": {"overhead_runners": list(RUNNERS_ALL), "clusters": 40, "waiting": 300, "wait_seconds": 30, "hour_sample": 20, "billing_clusters": 10, "billing_hours": 72,
              "tunings": ["default", "narrow"]},
    "full": {"overhead_runners": list(RUNNERS_ALL), "clusters": 200, "waiting": 2000, "wait_seconds": 90, "hour_sample": 50, "billing_clusters": 10, "billing_hours": 72,
             "tunings": ["default", "narrow", "wide"]},
}  # fmt: skip

#: Worker settings compared in the throughput scenario (threads = max concurrent activities).
TUNINGS: dict[str, dict[str, int]] = {
    "default": {"max_concurrent_activities": 32, "max_concurrent_workflow_tasks": 64, "max_cached_workflows": 2000},
    "narrow": {"max_concurrent_activities": 4, "max_concurrent_workflow_tasks": 4, "max_cached_workflows": 50},
    "wide": {"max_concurrent_activities": 100, "max_concurrent_workflow_tasks": 200, "max_cached_workflows": 5000},
}
#: Overhead is measured with the sandboxed workflow runner (what worker.py uses) and, except at the
#: smoke size, without it and after a warm-up run.

ORG, SCRIPT_ORG = "bhbench1", "bhscript1"
ACCOUNT, SCRIPT_ACCOUNT = "250000000001", "250000000002"
REGION = "us-east-1"
CLUSTER_CONFIG = {"head_instance_type": "t3.medium", "compute_instance_type": "c5.large", "compute_initial_nodes": 1, "compute_max_nodes": 2}
#: Activities that are Temporal bookkeeping, not AWS calls: a plain script has no equivalent.
NOT_AWS = {"ensure_reverify_schedule"}


def rss_mib() -> float:
    """Resident memory of this process (the worker runs in it) now, from /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- recording which activities ran, with their inputs ----------------------------------------------
class Recorder:
    """Worker interceptor that records each successful activity execution (type, arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, tuple[Any, ...], Any]] = []
        self.busy_seconds = 0.0  # time spent inside activities (the AWS work), successful or not
        self.enabled = False

    def intercept_activity(self, next: Any) -> Any:
        from temporalio import activity
        from temporalio.worker import ActivityInboundInterceptor

        rec = self

        class _Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: Any) -> Any:
                started = time.monotonic()
                try:
                    result = await super().execute_activity(input)
                finally:
                    rec.busy_seconds += time.monotonic() - started
                if rec.enabled:
                    rec.calls.append((started, activity.info().activity_type, tuple(input.args), result))
                return result

        return _Inbound(next)

    def intercept_client(self, next: Any) -> Any:  # a worker interceptor may also be asked for this
        return next


def make_interceptor(rec: Recorder) -> Any:
    from temporalio.worker import Interceptor

    class _I(Interceptor):
        def intercept_activity(self, next: Any) -> Any:
            return rec.intercept_activity(next)

    return _I()


# --- the embedded stack --------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    stack: Any = None
    client: Any = None
    settings: Any = None
    aws: Any = None

    async def __aenter__(self) -> Bench:
        from starter.local import LocalStack, free_port

        state = Path(tempfile.mkdtemp(prefix="bridgehead-bench-"))
        self.stack = LocalStack(state_dir=state, temporal_port=free_port(), ui_port=free_port(), moto_port=free_port(), with_worker=False)
        self.stack.start()
        os.environ.update(self.stack.env())
        os.environ["BRIDGEHEAD_CODEC_KEY"] = base64.b64encode(os.urandom(32)).decode()
        from activities.aws import Aws
        from activities.registry import Registry
        from bridgehead.client import make_client
        from bridgehead.settings import get_settings

        get_settings.cache_clear()
        self.settings = get_settings()
        self.aws = Aws(self.settings)
        Registry(self.aws).ensure_tables()
        self.client = await make_client(self.settings)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stack.stop()

    def worker(self, task_queue: str, tuning: str, activities: list[Any], workflows: list[Any] | None = None,
               interceptors: list[Any] | None = None, sandboxed: bool = True) -> tuple[Any, ThreadPoolExecutor]:  # fmt: skip
        from temporalio.worker import UnsandboxedWorkflowRunner

        from worker import WORKFLOWS, build_worker

        t = TUNINGS[tuning]
        ex = ThreadPoolExecutor(max_workers=t["max_concurrent_activities"], thread_name_prefix="bench-activity")
        extra = {} if sandboxed else {"workflow_runner": UnsandboxedWorkflowRunner()}
        w = build_worker(self.client, self.settings, activities, ex, task_queue=task_queue, workflows=[*WORKFLOWS, *(workflows or [])],
                         interceptors=interceptors or [], **t, **extra)  # fmt: skip
        return w, ex

    def real_activities(self) -> list[Any]:
        from worker import build_activities

        return build_activities(self.settings, self.aws, self.client)


async def status_attr(handle: Any) -> str | None:
    """The ClusterStatus search attribute from ``describe`` (the server's own state: no query task
    reaches the worker, so the driver does not load the worker it measures)."""
    from temporalio.common import SearchAttributeKey

    desc = await handle.describe()
    return desc.typed_search_attributes.get(SearchAttributeKey.for_keyword("ClusterStatus"))


async def until(fn: Any, pred: Any, timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await fn()
            if pred(value):
                return value
        except Exception:  # noqa: BLE001 - a query before the first workflow task is answered fails
            value = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout:.0f} s (last: {value!r})")
        await asyncio.sleep(every)


def launch_customer_role(stack: Any, account: str, template_body: str, name: str) -> str:
    """The customer's step: launch our role template in their account; returns the role ARN."""
    cfn = stack.customer_admin(account, "cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=template_body, Capabilities=["CAPABILITY_NAMED_IAM"])
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]


# --- 1. overhead -----------------------------------------------------------------------------------------
async def overhead(b: Bench, runners: list[str]) -> dict[str, Any]:
    """Bridgehead with each workflow runner, then the plain script once (same AWS calls)."""
    runs = {}
    calls: list[Any] = []
    # Warm-up (not timed): first imports, first sandbox, first clients, moto's first requests.
    if len(runners) > 1:
        await bridgehead_run(b, f"{ORG}w", "250000000019", sandboxed=True)
    for i, runner in enumerate(runners):
        org, account = (ORG, ACCOUNT) if i == 0 else (f"{ORG}u", f"25000000001{i}")
        runs[runner], recorded = await bridgehead_run(b, org, account, sandboxed=runner == "sandboxed")
        calls = calls or recorded
    script_s, aws_calls = await asyncio.to_thread(plain_script, b, calls)
    main = runs["sandboxed"]
    return {
        "bridgehead_seconds": main["seconds"], "script_seconds": round(script_s, 2), "ratio": round(main["seconds"] / script_s, 2),
        "onboarding_seconds": main["onboarding_seconds"], "activities": main["activities"],
        **({"unsandboxed_seconds": runs["unsandboxed"]["seconds"], "unsandboxed_ratio": round(runs["unsandboxed"]["seconds"] / script_s, 2)}
           if "unsandboxed" in runs else {}),
        "activity_seconds": main["activity_seconds"], "aws_activity_calls_replayed": aws_calls,
    }  # fmt: skip


async def bridgehead_run(b: Bench, org: str, account: str, sandboxed: bool) -> tuple[dict[str, Any], list[Any]]:
    """Onboard ``org`` (one region) and create and delete one cluster, timed; records the activities."""
    from bridgehead import models as m

    rec = Recorder()
    acts = b.real_activities()
    tq = b.settings.task_queue if sandboxed else f"{b.settings.task_queue}-unsandboxed"
    w, ex = b.worker(tq, "default", acts, interceptors=[make_interceptor(rec)], sandboxed=sandboxed)
    async with w:
        rec.enabled = True
        t0 = time.perf_counter()
        inp = m.OnboardOrganizationInput(org_id=org, display_name="Bench", admin_email="ops@bench.example", aws_account_id=account, regions=[REGION])
        h = await b.client.start_workflow("OnboardOrganization", inp, id=f"org-{org}", task_queue=tq)
        s = await until(lambda: h.query("status", result_type=m.OrgStatus), lambda s: s and s.state == m.OrgState.AWAITING_ROLE, 60, 0.05)
        arn = launch_customer_role(b.stack, account, s.artifacts.cloudformation_template, f"bridgehead-access-{org}")
        await h.execute_update("submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult)
        s = await until(lambda: h.query("status", result_type=m.OrgStatus), lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED), 300, 0.05)
        if s.state != m.OrgState.READY:
            raise RuntimeError(f"onboarding did not reach READY: {s.last_error}")
        t_ready = time.perf_counter()
        c = await b.client.start_workflow("ClusterLifecycle", m.ClusterLifecycleInput(org_id=org, name="c1", region=REGION, config=m.ClusterConfig(**CLUSTER_CONFIG)),
                                          id=f"cluster-{org}-c1", task_queue=tq, result_type=m.ClusterResult)  # fmt: skip
        await until(lambda: c.query("status", result_type=m.ClusterStatus), lambda s: s.state == m.ClusterState.RUNNING, 300, 0.05)
        await c.signal("delete")
        result = await c.result()
        t1 = time.perf_counter()
        rec.enabled = False
    ex.shutdown()
    assert result.state == m.ClusterState.DELETED, result
    calls = sorted(rec.calls, key=lambda x: x[0])
    return {"seconds": round(t1 - t0, 2), "onboarding_seconds": round(t_ready - t0, 2), "activities": len(calls),
            "activity_seconds": round(rec.busy_seconds, 2)}, calls  # fmt: skip


def _leaves(value: Any, path: str = "") -> dict[str, str]:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k2: v2 for k, v in value.items() for k2, v2 in _leaves(v, f"{path}/{k}").items()}
    if isinstance(value, list):
        return {k2: v2 for i, v in enumerate(value) for k2, v2 in _leaves(v, f"{path}/{i}").items()}
    return {path: value} if isinstance(value, str) else {}


def plain_script(b: Bench, calls: list[tuple[float, str, tuple[Any, ...], Any]]) -> tuple[float, int]:
    """The same AWS work as a plain script: each activity Bridgehead ran, in the same order, called
    directly (no Temporal) for another organisation in another account; the customer launches the
    role template in between, as in the Bridgehead run; in-progress polls are retried every second.
    Identifiers the recorded run learned from AWS (subnets, stack ids...) are swapped for the ones
    this run learns, by comparing each recorded result with the script's own."""
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    by_name = {getattr(fn, "__temporal_activity_definition").name: fn for fn in b.real_activities()}
    env = ActivityEnvironment()
    replayed = 0
    swap: dict[str, str] = {ORG: SCRIPT_ORG, ACCOUNT: SCRIPT_ACCOUNT}
    t0 = time.perf_counter()
    for _, name, args, recorded in calls:
        if name in NOT_AWS:
            continue
        new_args = []
        for a in args:
            text = a.model_dump_json()
            for old in sorted(swap, key=len, reverse=True):
                text = text.replace(old, swap[old])
            new_args.append(type(a).model_validate_json(text))
        while True:
            try:
                result = env.run(by_name[name], *new_args)
                break
            except ApplicationError as e:
                if e.type != "StackInProgress" and e.type != "ImageNotReady":
                    raise
                time.sleep(1)
        replayed += 1
        mine = _leaves(result)
        for path, old in _leaves(recorded).items():
            new = mine.get(path)
            if new and new != old and len(old) >= 8 and old not in swap:
                swap[old] = new
        if name == "register_organization":
            launch_customer_role(b.stack, SCRIPT_ACCOUNT, result.artifacts.cloudformation_template, f"bridgehead-access-{SCRIPT_ORG}")
    return time.perf_counter() - t0, replayed


# --- 2. throughput ----------------------------------------------------------------------------------------
async def throughput(b: Bench, n: int, tuning: str) -> dict[str, Any]:
    from bench.heldstacks import HeldStacks
    from bench.noop import NoopInput, NoopLifecycle, bench_noop
    from bridgehead import models as m

    tq = f"bench-{tuning}"
    acts = [*b.real_activities(), bench_noop]
    rec = Recorder()
    w, ex = b.worker(tq, tuning, acts, workflows=[NoopLifecycle], interceptors=[make_interceptor(rec)])
    held = HeldStacks()
    held.released = True
    tq_stub = f"bench-stub-{tuning}"
    w_stub, ex_stub = b.worker(tq_stub, tuning, held.activities())
    tag = uuid.uuid4().hex[:4]
    async with w, w_stub:
        # Bridgehead: n clusters at once, each deleted as soon as it runs.
        async def one_cluster(i: int) -> Any:
            h = await b.client.start_workflow("ClusterLifecycle", m.ClusterLifecycleInput(org_id=ORG, name=f"t{tag}-{i}", region=REGION,
                                              config=m.ClusterConfig(**CLUSTER_CONFIG)), id=f"cluster-{ORG}-t{tag}-{i}", task_queue=tq,
                                              result_type=m.ClusterResult)  # fmt: skip
            await until(lambda: status_attr(h), lambda s: s in ("RUNNING", "FAILED"), 900, 1.0)
            await h.signal("delete")
            return h, await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one_cluster(i) for i in range(n)))
        real_s = time.perf_counter() - t0
        aws_s = rec.busy_seconds
        states = [r.state.value for _, r in done]
        # The shape of a lifecycle, from one real history: activities before RUNNING and after.
        before, after = await lifecycle_shape(done[0][0])

        # The same lifecycles with AWS stubbed (stacks complete at the first poll): Bridgehead's own
        # workflow logic against the ceiling, without the emulator's cost.
        async def one_stubbed(i: int) -> Any:
            h = await b.client.start_workflow("ClusterLifecycle", m.ClusterLifecycleInput(org_id="bhstub", name=f"s{tag}-{i}", region=REGION,
                                              config=m.ClusterConfig(**CLUSTER_CONFIG)), id=f"cluster-bhstub-s{tag}-{i}", task_queue=tq_stub,
                                              result_type=m.ClusterResult)  # fmt: skip
            await until(lambda: status_attr(h), lambda s: s in ("RUNNING", "FAILED"), 900, 1.0)
            await h.signal("delete")
            return await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        stubbed = await asyncio.gather(*(one_stubbed(i) for i in range(n)))
        stub_s = time.perf_counter() - t0

        async def one_noop(i: int) -> Any:
            h = await b.client.start_workflow("BenchNoopLifecycle", NoopInput(before=before, after=after), id=f"noop-{tag}-{i}", task_queue=tq)
            await until(lambda: status_attr(h), lambda s: s == "RUNNING", 900, 1.0)
            await h.signal("delete")
            return await asyncio.wait_for(h.result(), 900)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_noop(i) for i in range(n)))
        noop_s = time.perf_counter() - t0
    ex.shutdown()
    ex_stub.shutdown()
    return {
        "tuning": tuning, **TUNINGS[tuning], "clusters": n, "deleted": states.count("DELETED"), "bridgehead_seconds": round(real_s, 2),
        "ceiling_seconds": round(noop_s, 2), "clusters_per_second": round(n / real_s, 2), "ceiling_per_second": round(n / noop_s, 2),
        "ratio_to_ceiling": round((n / real_s) / (n / noop_s), 2), "activities_before_running": before, "activities_after_delete": after,
        "stubbed_aws_seconds": round(stub_s, 2), "stubbed_deleted": sum(r.state == m.ClusterState.DELETED for r in stubbed),
        "stubbed_ratio_to_ceiling": round(noop_s / stub_s, 2),
        # Time inside the real activities (the emulated AWS work) and the wall time it needs at
        # best with this many activity threads: when this approaches bridgehead_seconds, the
        # emulator, not orchestration, is the bottleneck.
        "activity_seconds": round(aws_s, 1), "activity_bound_seconds": round(aws_s / TUNINGS[tuning]["max_concurrent_activities"], 1),
    }  # fmt: skip


async def lifecycle_shape(handle: Any) -> tuple[int, int]:
    from temporalio.api.enums.v1 import EventType

    before = after = 0
    signalled = False
    for e in (await handle.fetch_history()).events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signalled = True
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            after += signalled
            before += not signalled
    return before, after


# --- 3. waiting --------------------------------------------------------------------------------------------
async def waiting(b: Bench, n: int, seconds: float, hour_sample: int) -> dict[str, Any]:
    from bench.heldstacks import HeldStacks
    from bridgehead import models as m

    held = HeldStacks()
    tq = "bench-wait"
    w, ex = b.worker(tq, "default", held.activities())
    rss_before = rss_mib()
    cfg = m.ClusterConfig(**CLUSTER_CONFIG)
    async with w:
        t0 = time.perf_counter()
        handles = []
        for batch in range(0, n, 100):
            handles += await asyncio.gather(*(b.client.start_workflow(
                "ClusterLifecycle", m.ClusterLifecycleInput(org_id="bhwait", name=f"w{i}", region=REGION, config=cfg),
                id=f"cluster-bhwait-w{i}-{uuid.uuid4().hex[:4]}", task_queue=tq) for i in range(batch, min(n, batch + 100))))  # fmt: skip
        while len(held.created) < n:
            await asyncio.sleep(0.2)
        all_waiting_s = time.perf_counter() - t0
        samples, t_end = [], time.monotonic() + seconds
        while time.monotonic() < t_end:
            samples.append(held.in_flight)
            await asyncio.sleep(0.05)
        rss_waiting = rss_mib()
        sample = handles[:: max(1, n // 20)]
        events = [len((await h.fetch_history()).events) for h in sample]
        for chunk in range(0, n, 200):
            await asyncio.gather(*(h.terminate("benchmark finished") for h in handles[chunk : chunk + 200]), return_exceptions=True)
    ex.shutdown()
    hour = await waiting_one_hour(hour_sample)
    return {
        "clusters_waiting": n, "seconds_to_all_waiting": round(all_waiting_s, 1), "sampled_seconds": seconds, "polls": held.polls,
        "activities_in_flight_max": max(samples), "activities_in_flight_mean": round(sum(samples) / len(samples), 3),
        "worker_rss_mib_before": round(rss_before), "worker_rss_mib_waiting": round(rss_waiting),
        "rss_kib_per_waiting_cluster": round((rss_waiting - rss_before) * 1024 / n, 1),
        "history_events_per_cluster_now": round(sum(events) / len(events), 1), **hour,
    }  # fmt: skip


async def time_skipping_env() -> Any:
    """The time-skipping test server (no download) with Bridgehead's search attributes."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.testing import WorkflowEnvironment

    from bridgehead.converter import make_data_converter
    from starter.local import SEARCH_ATTRIBUTES, bin_path

    env = await WorkflowEnvironment.start_time_skipping(data_converter=make_data_converter(os.urandom(32)),
                                                       test_server_existing_path=bin_path("temporal-test-server"))  # fmt: skip
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=env.client.namespace, search_attributes={k: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES}))  # fmt: skip
    return env


async def waiting_one_hour(n: int) -> dict[str, Any]:
    """History events per cluster after one hour of waiting, on the time-skipping server."""
    from temporalio.worker import Worker

    from bench.heldstacks import HeldStacks
    from bridgehead import models as m
    from worker import WORKFLOWS, sandbox_runner

    env = await time_skipping_env()
    try:
        held = HeldStacks()
        with ThreadPoolExecutor(8) as ex:
            async with Worker(env.client, task_queue="bench-hour", workflows=WORKFLOWS, activities=held.activities(), activity_executor=ex,
                              workflow_runner=sandbox_runner()):  # fmt: skip
                cfg = m.ClusterConfig(**CLUSTER_CONFIG)
                hs = [await env.client.start_workflow("ClusterLifecycle", m.ClusterLifecycleInput(org_id="bhhour", name=f"h{i}", region=REGION, config=cfg),
                                                      id=f"cluster-bhhour-h{i}", task_queue="bench-hour") for i in range(n)]  # fmt: skip
                await env.sleep(timedelta(hours=1))
                events = [len((await h.fetch_history()).events) for h in hs]
                for h in hs:
                    await h.terminate("benchmark finished")
        return {"history_events_per_cluster_after_1h": round(sum(events) / len(events), 1), "hour_sample": n, "polls_in_the_hour": held.polls}
    finally:
        await env.shutdown()


# --- 4. billing ---------------------------------------------------------------------------------------------
async def billing(b: Bench, clusters: int, hours: int) -> dict[str, Any]:
    """The real BillingMeter and ledger activities for ``clusters`` running clusters, ``hours`` of
    time-skipped ticks. Cluster items are written to the registry as ClusterLifecycle would."""
    from temporalio.worker import Worker

    from activities.billing import BillingActivities
    from activities.registry import Registry
    from bridgehead import models as m
    from bridgehead.history_stats import count_actions
    from worker import WORKFLOWS, sandbox_runner

    reg = Registry(b.aws)
    org = f"bhbill{uuid.uuid4().hex[:4]}"
    reg.put_org(org, {"aws_account_id": "250000000009", "external_id": "bh-bench",
             "regions": [REGION], "state": "READY"})  # fmt: skip
    env = await time_skipping_env()
    try:
        now = await env.get_current_time()
        start = now.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        for i in range(clusters):
            seg = m.UsageSegment(start=start, head_instance_type="t3.medium", compute_instance_type="c5.large", compute_nodes=2)
            reg.put_cluster(org, f"b{i}", {"name": f"b{i}", "region": REGION, "state": "RUNNING",
                     "segments": [json.loads(seg.model_dump_json())]})  # fmt: skip
        acts = BillingActivities(b.aws, reg)
        with ThreadPoolExecutor(8) as ex:
            async with Worker(env.client, task_queue="bench-billing", workflows=WORKFLOWS, activities=[acts.close_billing_periods, acts.meter_usage],
                              activity_executor=ex, workflow_runner=sandbox_runner()):  # fmt: skip
                h = await env.client.start_workflow("BillingMeter", m.BillingMeterInput(org_id=org), id=f"billing-{org}", task_queue="bench-billing")
                t0 = time.perf_counter()
                for _ in range(hours):  # hour by hour: one long skip's RPC times out while many ticks run
                    await env.sleep(timedelta(hours=1))
                await env.sleep(timedelta(minutes=15))
                wall = time.perf_counter() - t0
                usage = await h.query("usage", result_type=m.UsageTotals)
                runs, events, actions = await walk_runs(env.client, f"billing-{org}", count_actions)
                await env.client.get_workflow_handle(f"billing-{org}").terminate("benchmark finished")
        cluster_hours = usage.periods_closed * clusters
        expected_minutes = usage.periods_closed * 60 * 3 * clusters
        return {
            "clusters": clusters, "hours": hours, "periods_closed": usage.periods_closed, "cluster_hours": cluster_hours,
            "node_minutes_ledger": usage.node_minutes, "node_minutes_expected": expected_minutes, "wall_seconds": round(wall, 2),
            "cluster_hours_per_wall_second": round(cluster_hours / wall, 1), "runs": runs, "history_events": events,
            "actions": actions, "actions_per_cluster_hour": round(actions / cluster_hours, 4),
            "actions_per_org_hour": round(actions / max(1, usage.periods_closed), 2),
            "events_per_cluster_hour": round(events / cluster_hours, 4),
        }  # fmt: skip
    finally:
        await env.shutdown()


async def walk_runs(client: Any, wf_id: str, count_actions: Any) -> tuple[int, int, int]:
    """Every run of a continue-as-new chain, from the first: (runs, events, actions)."""
    from temporalio.api.enums.v1 import EventType

    first = None
    runs = events = actions = 0
    handle = client.get_workflow_handle(wf_id)
    desc = await handle.describe()
    # Walk back to the first run, then forward through continued runs.
    run_id = desc.run_id
    chain = [run_id]
    while True:
        hist = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        first = hist.events[0].workflow_execution_started_event_attributes
        prev = first.continued_execution_run_id
        if not prev:
            break
        run_id = prev
        chain.append(run_id)
    for rid in chain:
        hist = await client.get_workflow_handle(wf_id, run_id=rid).fetch_history()
        runs += 1
        events += len(hist.events)
        actions += count_actions(hist.events) + 1  # + the run's start (or continue-as-new)
        assert hist.events[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    return runs, events, actions


# --- report --------------------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    from collections import defaultdict

    def safe(d: Any) -> Any:
        return defaultdict(lambda: "failed", d) if "error" not in d else defaultdict(lambda: "failed")

    o, w, bl = (safe(result.get(k, {"error": "not run"})) for k in ("overhead", "waiting", "billing"))
    rows = [
        ("overhead: Bridgehead / plain script", f"{o['ratio']}x", f"{o['bridgehead_seconds']} s vs {o['script_seconds']} s, {o['activities']} activities"),
        ("overhead without the workflow sandbox", f"{o.get('unsandboxed_ratio', 'not run')}x", f"{o.get('unsandboxed_seconds', '-')} s"),
    ]
    for t in map(safe, result.get("throughput", [])):
        rows.append((f"throughput [{t['tuning']}]: lifecycles / ceiling", f"{t['ratio_to_ceiling']}",
                     f"{t['clusters']} clusters, {t['clusters_per_second']}/s vs {t['ceiling_per_second']}/s"))  # fmt: skip
        rows.append((f"throughput [{t['tuning']}]: AWS stubbed / ceiling", f"{t['stubbed_ratio_to_ceiling']}",
                     f"{t['stubbed_aws_seconds']} s vs {t['ceiling_seconds']} s (Bridgehead's workflow logic alone)"))  # fmt: skip
    rows += [
        ("waiting: activities in flight (max / mean)", f"{w['activities_in_flight_max']} / {w['activities_in_flight_mean']}",
         f"{w['clusters_waiting']} clusters held in CREATE_IN_PROGRESS for {w['sampled_seconds']} s"),
        ("waiting: worker memory", f"{w['worker_rss_mib_waiting']} MiB", f"{w['rss_kib_per_waiting_cluster']} KiB per waiting cluster"),
        ("waiting: history events per cluster after 1 h", f"{w['history_events_per_cluster_after_1h']}", f"sample of {w['hour_sample']}, time-skipped"),
        ("billing: cluster-hours metered per wall second", f"{bl['cluster_hours_per_wall_second']}", f"{bl['clusters']} clusters x {bl['hours']} h"),
        ("billing: actions per cluster-hour", f"{bl['actions_per_cluster_hour']}", f"{bl['actions_per_org_hour']} per org-hour, {bl['runs']} runs"),
        ("billing: history events per cluster-hour", f"{bl['events_per_cluster_hour']}", f"ledger {bl['node_minutes_ledger']} = expected {bl['node_minutes_expected']} node-min"),
    ]  # fmt: skip
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    lines = [f"{'measure'.ljust(w1)}  {'value'.ljust(w2)}  detail", f"{'-' * w1}  {'-' * w2}  {'-' * 6}"]
    lines += [f"{a.ljust(w1)}  {b.ljust(w2)}  {c}" for a, b, c in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every scenario in turn; the JSON is rewritten after each, so a long run keeps what it measured."""
    result: dict[str, Any] = {
        "size": args.size, "command": "python -m bench " + " ".join(sys.argv[1:]), "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "worker_tunings": {t: TUNINGS[t] for t in args.tunings},
    }  # fmt: skip

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    async with Bench(args) as b:
        steps: list[tuple[str, Any]] = [("overhead", lambda: overhead(b, args.overhead_runners))]
        steps += [(f"throughput:{t}", lambda t=t: throughput(b, args.clusters, t)) for t in args.tunings]
        steps += [("waiting", lambda: waiting(b, args.waiting, args.wait_seconds, args.hour_sample)),
                  ("billing", lambda: billing(b, args.billing_clusters, args.billing_hours))]  # fmt: skip
        for name, step in steps:
            if args.only and name.split(":")[0] not in args.only:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                value = await step()
            except Exception as e:  # noqa: BLE001 - report the failure, keep the other figures
                value = {"error": f"{type(e).__name__}: {e}"[:500]}
            value["scenario_seconds"] = round(time.perf_counter() - t0, 1)
            if name.startswith("throughput:"):
                result.setdefault("throughput", []).append(value)
            else:
                result[name] = value
            save()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--clusters", type=int, help="concurrent lifecycles in the throughput scenario")
    p.add_argument("--waiting", type=int, help="clusters held waiting")
    p.add_argument("--wait-seconds", type=float, help="how long to sample the waiting clusters")
    p.add_argument("--hour-sample", type=int, help="clusters waiting one time-skipped hour")
    p.add_argument("--billing-clusters", type=int)
    p.add_argument("--billing-hours", type=int)
    p.add_argument("--tunings", nargs="+", choices=sorted(TUNINGS))
    p.add_argument("--only", nargs="+", choices=["overhead", "throughput", "waiting", "billing"], help="run only these scenarios")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<size>-<time>.json)")
    args = p.parse_args(argv)
    for k, v in SIZES[args.size].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    from bridgehead.logging import configure_logging

    configure_logging("WARNING")  # the table is the output; warnings and errors still reach stderr
    out = args.out or ROOT / "bench" / "results" / f"{args.size}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    result = asyncio.run(run(args, out))
    print(table(result))
    print(f"\nwritten to {out}")
    failed = [k for k, v in result.items() if isinstance(v, dict) and "error" in v] + [
        f"throughput:{t.get('tuning', '?')}" for t in result.get("throughput", []) if "error" in t]  # fmt: skip
    if failed:
        print(f"scenarios that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the SDK runtime can abort at interpreter exit (sdk-python#300)
