"""The benchmark's harness: the embedded stack with workers built on demand, an interceptor that
records activity executions, polling helpers, and the names and sizes the scenarios share."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

ROOT_DIR = Path(__file__).resolve().parent.parent

#: Worker settings compared in the throughput scenario (threads: ``worker.activity_threads``).
TUNINGS: dict[str, dict[str, int]] = {
    "default": {
        "max_concurrent_activities": 32,
        "max_concurrent_local_activities": 32,
        "max_concurrent_workflow_tasks": 64,
        "max_cached_workflows": 2000,
    },
    "narrow": {
        "max_concurrent_activities": 4,
        "max_concurrent_local_activities": 4,
        "max_concurrent_workflow_tasks": 4,
        "max_cached_workflows": 50,
    },
    "wide": {
        "max_concurrent_activities": 100,
        "max_concurrent_local_activities": 100,
        "max_concurrent_workflow_tasks": 200,
        "max_cached_workflows": 5000,
    },
}
#: Overhead is measured with the sandboxed workflow runner (what worker.py uses) and, except at the
#: smoke size, without it and after a warm-up run.

ORG, SCRIPT_ORG = "bhbench1", "bhscript1"
ACCOUNT, SCRIPT_ACCOUNT = "250000000001", "250000000002"
REGION = "us-east-1"
CLUSTER_CONFIG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.large",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}
#: Activities that are Temporal bookkeeping, not AWS calls: a plain script has no equivalent.
NOT_AWS = {"ensure_reverify_schedule"}


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of this process (the worker runs in it), or of process ``pid``, now."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- recording which activities ran, with their inputs ----------------------------------------------
class Call(NamedTuple):
    """One successful activity execution: when it ran (``time.monotonic``), for which workflow,
    what it was given and what it returned."""

    start: float
    end: float
    workflow_id: str
    name: str
    args: tuple[Any, ...]
    result: Any
    activity_id: str = ""

    @property
    def key(self) -> str:
        """The execution's identity, the same in the run that recorded it and in its replay."""
        return call_key(self.workflow_id, self.activity_id)


def call_key(workflow_id: str, activity_id: str) -> str:
    """An activity execution's key for the paired latencies (``bench.fakeaws.CALL_KEY``)."""
    return f"{workflow_id}/{activity_id}"


class Recorder:
    """Worker interceptor that records each successful activity execution (type, arguments)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.busy_seconds = 0.0  # time spent inside activities (the AWS work), successful or not
        self.in_flight = 0  # activity executions running now: the slots they hold
        self.started = 0  # executions (attempts) started
        self.enabled = False

    def intercept_activity(self, next: Any) -> Any:
        from temporalio import activity
        from temporalio.worker import ActivityInboundInterceptor

        rec = self

        class _Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: Any) -> Any:
                from bench.fakeaws import CALL_KEY

                started = time.monotonic()
                rec.in_flight += 1
                rec.started += 1
                info = activity.info()
                # Copied into the activity's thread by the SDK: the paired latencies' key.
                token = CALL_KEY.set(call_key(info.workflow_id or "", info.activity_id))
                try:
                    result = await super().execute_activity(input)
                finally:
                    CALL_KEY.reset(token)
                    rec.in_flight -= 1
                    rec.busy_seconds += time.monotonic() - started
                if rec.enabled:
                    rec.calls.append(
                        Call(
                            started,
                            time.monotonic(),
                            info.workflow_id or "",
                            info.activity_type,
                            tuple(input.args),
                            result,
                            info.activity_id,
                        )
                    )
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
    args: Any
    stack: Any = None
    client: Any = None
    settings: Any = None
    aws: Any = None
    gc_tuned: bool = False

    async def __aenter__(self) -> Bench:
        from starter.local import LocalStack, free_port

        state = Path(tempfile.mkdtemp(prefix="bridgehead-bench-"))
        self.stack = LocalStack(
            state_dir=state,
            temporal_port=free_port(),
            ui_port=free_port(),
            moto_port=free_port(),
            with_worker=False,
        )
        self.stack.start()
        try:
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
        except BaseException:
            # __aexit__ does not run when __aenter__ fails (a SIGTERM during the start lands at the
            # await above): stop what was started here.
            self.stack.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stack.stop()
        # The dev server's SQLite file reaches hundreds of MiB at the larger sizes (about 55 KiB per
        # waiting cluster): nothing in it is read after a run, whose figures are in the JSON. A run
        # that failed keeps it, with the logs, to be looked at.
        if exc[0] is None:
            shutil.rmtree(self.stack.state_dir, ignore_errors=True)

    def worker(
        self,
        task_queue: str,
        tuning: str,
        activities: list[Any],
        workflows: list[Any] | None = None,
        interceptors: list[Any] | None = None,
        sandboxed: bool = True,
        overrides: dict[str, int] | None = None,
    ) -> tuple[Any, ThreadPoolExecutor]:
        from temporalio.worker import UnsandboxedWorkflowRunner

        from worker import WORKFLOWS, HeartbeatInterceptor, activity_threads, build_worker, tune_gc

        t = {**TUNINGS[tuning], **(overrides or {})}
        ex = ThreadPoolExecutor(
            max_workers=activity_threads(
                t["max_concurrent_activities"], t["max_concurrent_local_activities"]
            ),
            thread_name_prefix=activity_threads_prefix(task_queue),
        )
        extra = {} if sandboxed else {"workflow_runner": UnsandboxedWorkflowRunner()}
        w = build_worker(
            self.client,
            self.settings,
            activities,
            ex,
            task_queue=task_queue,
            workflows=[*WORKFLOWS, *(workflows or [])],
            # The worker's own interceptor kept (as in worker.py), the scenario's added.
            interceptors=[HeartbeatInterceptor(), *(interceptors or [])],
            **t,
            **extra,
        )
        if not self.gc_tuned:  # once per process, as worker.py does at start
            tune_gc(self.settings.gc_young_threshold)
            self.gc_tuned = True
        return w, ex

    def real_activities(self, aws: Any = None) -> list[Any]:
        """The worker's activities, against ``aws`` (default: the bench's, moto unpadded)."""
        from worker import build_activities

        return build_activities(self.settings, aws or self.aws, self.client)


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


async def until_settled(
    handle: Any, query: str, result_type: Any, pred: Any, timeout: float, every: float = 0.02
) -> Any:
    """Query ``handle`` until ``pred`` holds, without slowing the run being measured.

    A query is a task for the worker, and the server holds the run's next workflow task while one
    is out: a driver querying every 50 ms added about 30 ms to each step of the lifecycle it timed
    (docs/benchmarks.md). So this polls ``describe`` (answered by the server alone) and queries only
    when the history has grown since the last query and no workflow task is in flight."""
    seen = -1

    async def settled() -> Any:
        nonlocal seen
        d = (await handle.describe()).raw_description
        length = d.workflow_execution_info.history_length
        if length == seen or d.HasField("pending_workflow_task"):
            return None
        seen = length
        return await handle.query(query, result_type=result_type)

    return await until(settled, lambda v: v is not None and pred(v), timeout, every)


def launch_customer_role(stack: Any, account: str, template_body: str, name: str) -> str:
    """The customer's step: launch our role template in their account; returns the role ARN."""
    cfn = stack.customer_admin(account, "cloudformation")
    cfn.create_stack(
        StackName=name, TemplateBody=template_body, Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]


async def time_skipping_env() -> Any:
    """The time-skipping test server (no download) with Bridgehead's search attributes."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.testing import WorkflowEnvironment

    from bridgehead.converter import make_data_converter
    from starter.local import SEARCH_ATTRIBUTES, bin_path

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=make_data_converter(os.urandom(32)),
        test_server_existing_path=bin_path("temporal-test-server"),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                k: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES
            },
        )
    )
    return env


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (what ``uptime`` prints): recorded with
    every figure, because this machine is shared and the figures move with its load."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def activity_threads_prefix(task_queue: str) -> str:
    """The names of the activity threads of :meth:`Bench.worker`'s worker on ``task_queue``
    (``ThreadPoolExecutor`` names them ``{prefix}_{n}``)."""
    return f"bench-activity-{task_queue}"


def sqlite_bytes(db: Path) -> int:
    """Bytes on disk of a SQLite database with its write-ahead log and shared memory files."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


# --- worker processes (bench/workerproc.py) -----------------------------------------------------


def start_worker(task_queue: str, address: str, *options: str) -> subprocess.Popen[str]:
    """A worker process on ``task_queue`` whose AWS is the fake world served at ``address``;
    ``options`` pass through (``--cache``, ``--slots``, ``--stats``). Its stdout is a pipe: read
    ``ready`` with :func:`wait_ready`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.workerproc", "--task-queue", task_queue, "--world", address]
        + list(options),
        cwd=ROOT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_ready(p: subprocess.Popen[str]) -> None:
    """Block until the worker process prints ``ready``; raise if it printed anything else."""
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"worker process {p.pid} did not start (exit {p.poll()}): {line!r}")
