"""The Bridgehead worker: every workflow and activity on one task queue.

Run: ``python worker.py`` (Temporal connection from temporal.toml / TEMPORAL_* variables, AWS from
the boto3 chain, Bridgehead settings from BRIDGEHEAD_*). Stops gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import compileall
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_core import ValidationError
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.aws import Aws
from activities.billing import BillingActivities
from activities.budget import BudgetActivities
from activities.cloudformation import StackActivities
from activities.clusters import ClusterActivities
from activities.dropbox import DropboxActivities
from activities.dropbox_events import DropboxEventConsumer, dropbox_events_configured
from activities.guardrails import GuardrailActivities
from activities.heartbeat import HeartbeatInterceptor
from activities.image_release import ImageReleaseActivities
from activities.images import ImageActivities
from activities.marketplace import MarketplaceActivities, NotificationConsumer
from activities.onboarding import OnboardingActivities
from activities.queue_consumer import QueueConsumer
from activities.regions import RegionActivities
from activities.registry import Registry
from activities.schedules import ScheduleActivities, sync_dropbox_schedule
from activities.stack_events import StackEventConsumer
from bridgehead import code_cache
from bridgehead.client import make_client
from bridgehead.logging import configure_logging, get_logger
from bridgehead.settings import Settings, get_settings
from workflows.billing import BillingMeterWorkflow, BillingReportWorkflow
from workflows.clusters import ClusterLifecycleWorkflow
from workflows.dropbox import DropboxRequestWorkflow, DropboxWatchWorkflow
from workflows.image_release import ImageReleaseWorkflow
from workflows.images import ShareImagesWorkflow
from workflows.marketplace import MarketplaceSubscriptionWorkflow
from workflows.onboarding import OnboardOrganizationWorkflow
from workflows.regions import CleanupRegionWorkflow, ProvisionRegionWorkflow
from workflows.verification import ReverifyOrganizationWorkflow, VerifyRoleWorkflow

WORKFLOWS = [
    OnboardOrganizationWorkflow,
    VerifyRoleWorkflow,
    ReverifyOrganizationWorkflow,
    ShareImagesWorkflow,
    ProvisionRegionWorkflow,
    CleanupRegionWorkflow,
    ClusterLifecycleWorkflow,
    BillingMeterWorkflow,
    DropboxWatchWorkflow,
    DropboxRequestWorkflow,
    MarketplaceSubscriptionWorkflow,
    BillingReportWorkflow,
    ImageReleaseWorkflow,
]

log = get_logger("bridgehead.worker")


def build_activities(
    settings: Settings, aws: Aws | None = None, client: Client | None = None
) -> list[Any]:
    """Bound activity methods of every activity class, sharing one AWS factory and registry
    (and the worker's Temporal client, for the activities that manage Schedules)."""
    aws = aws or Aws(settings)
    registry = Registry(aws)
    instances: list[Any] = [
        OnboardingActivities(aws, registry),
        ImageActivities(aws, registry),
        ImageReleaseActivities(aws, registry),
        RegionActivities(aws, registry),
        StackActivities(aws, registry),
        ClusterActivities(aws, registry),
        BillingActivities(aws, registry),
        DropboxActivities(aws, registry),
        GuardrailActivities(aws, registry),
        BudgetActivities(aws, registry),
    ]
    instances.append(MarketplaceActivities(aws, registry))
    if client is not None:
        instances.append(ScheduleActivities(client, settings))
    acts = []
    for inst in instances:
        for name in dir(type(inst)):
            fn = getattr(type(inst), name)
            if hasattr(fn, "__temporal_activity_definition"):
                acts.append(getattr(inst, name))
    return acts


#: The package the isolated sandbox imports again for every new workflow run.
WORKFLOWS_DIR = Path(__file__).resolve().parent / "workflows"


def warm_bytecode(package: Path = WORKFLOWS_DIR) -> bool:
    """Write the ``workflows`` package's bytecode cache (``__pycache__``) if it is missing or stale.

    The isolated sandbox re-imports the package for every new workflow run. Without a cache (an
    environment with ``PYTHONDONTWRITEBYTECODE``, a fresh image) each import compiles every module
    from source: a quarter of the worker's CPU per new run in the throughput benchmark
    (docs/benchmarks.md). Python reads an existing cache even when told not to write one, so
    writing it once here is enough. A read-only checkout is no error: imports compile as before.
    Returns whether every module has an up-to-date cache."""
    try:
        return bool(compileall.compile_dir(package, quiet=2, workers=1))
    except OSError:
        return False


def tune_gc(young_threshold: int) -> None:
    """Once the worker is built: collect, then freeze what is alive (imported modules, the
    SDK, clients, settings), so no later full collection walks it again: one that landed inside a
    timed onboarding took 137-154 ms with the start-up heap and 38 ms without it. With
    ``young_threshold`` (setting ``gc_young_threshold``; 0, the default, leaves CPython's 700) the
    young generation is collected that much less often: less collector CPU, more memory held (the
    trade-off is measured in docs/benchmarks.md, session 8)."""
    gc.collect()
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


def sandbox_runner(shared: bool = False) -> SandboxedWorkflowRunner:
    """Models and pydantic are pure: passed through instead of re-imported per workflow run.
    ``shared`` (setting ``workflow_sandbox``): the ``workflows`` package too, a third of the memory
    per cached run, without the sandbox's run-time guard on the workflows' own calls."""
    modules = ["bridgehead", "pydantic", "pydantic_core", "annotated_types", "opentelemetry"]
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *modules, *(["workflows"] if shared else [])
        )
    )


def activity_threads(activities: int, local_activities: int) -> int:
    """Threads of the executor shared by activities and local activities: one per slot of each.

    The SDK runs both kinds of sync function on the one ``activity_executor``. Sized to the
    activity slots alone (as before), a worker whose activities all wait on a slow AWS call had no
    thread for a workflow task's local activity (a registry read), so every workflow on the worker
    stalled behind them: with 200 lifecycles on the fake AWS, workflow tasks took over 5 s
    (tests/test_worker_threads.py shows the starved local activity)."""
    return activities + local_activities


def build_worker(
    client: Client,
    settings: Settings,
    activities: list[Any],
    executor: ThreadPoolExecutor,
    **overrides: Any,
) -> Worker:
    warm_bytecode()
    code_cache.install("workflows")
    options: dict[str, Any] = dict(
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        activity_executor=executor,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        workflow_runner=sandbox_runner(shared=settings.workflow_sandbox == "shared"),
        # Bad JSON input fails the run with pydantic's message instead of retrying forever.
        workflow_failure_exception_types=[ValidationError],
        graceful_shutdown_timeout=timedelta(seconds=20),
        # Failover (issue 19): heartbeats for every running activity that has a heartbeat timeout,
        # so a dead worker's attempts are retried elsewhere within ~10 s (activities/heartbeat.py).
        interceptors=[HeartbeatInterceptor()],
        # A workflow cached on a worker that died gets its next task on the normal queue after
        # this (default 10 s); a live worker polls its sticky queue continuously.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
    )
    options.update(overrides)
    return Worker(client, **options)


def install_runtime(settings: Settings) -> None:
    """Set the SDK runtime once (Runtime.set_default avoids the interpreter-exit abort, sdk-python#300).

    The SDK core's own log lines (Rust) are forwarded to the ``temporalio.core`` Python logger, so
    they come out in the same structlog JSON stream as everything else, without terminal colours.
    Counters carry Prometheus' ``_total`` suffix; the endpoint binds ``metrics_address`` (loopback
    unless configured otherwise).
    """
    core_logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    metrics = None
    if settings.metrics_port:
        metrics = PrometheusConfig(
            bind_address=f"{settings.metrics_address}:{settings.metrics_port}",
            counters_total_suffix=True,
        )
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=core_logs, metrics=metrics)),
        error_if_already_set=False,
    )


async def publish_cluster_gauge(
    client: Client, settings: Settings, stop: asyncio.Event, meter: Any = None
) -> None:
    """Keep ``bridgehead_clusters{state=...}`` current from visibility (the ClusterStatus search
    attribute), so dashboards need no registry access. Errors are logged and retried next round."""
    from bridgehead.metrics import set_gauge
    from bridgehead.models import ClusterState

    meter = meter or Runtime.default().metric_meter
    while not stop.is_set():
        try:
            for state in ClusterState:
                q = f"WorkflowType='ClusterLifecycle' AND ClusterStatus='{state.value}'"
                set_gauge(
                    meter,
                    "bridgehead_clusters",
                    (await client.count_workflows(q)).count,
                    state=state.value,
                )
        except Exception as e:  # noqa: BLE001 - a metrics refresh must never stop the worker
            log.warning("cluster gauge refresh failed", error=str(e))
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.metrics_refresh_seconds)
        except TimeoutError:
            pass


def queue_consumers(settings: Settings, aws: Aws, client: Client) -> list[QueueConsumer]:
    """The SQS long-poll loops the settings turn on (each off when its queue name is empty)."""
    consumers: list[QueueConsumer] = []
    # AWS Marketplace subscription notifications (SNS -> SQS) become signals to MarketplaceSubscription.
    if settings.marketplace_notification_queue:
        consumers.append(NotificationConsumer(aws, Registry(aws), client))
    # CloudFormation stack notifications (SNS -> SQS) become stack_event hints.
    if settings.stack_events_queue:
        consumers.append(StackEventConsumer(aws, client))
    # The drop-box inbox's S3 events (S3 -> SQS) start DropboxRequest at once.
    if settings.dropbox_events_queue:
        consumers.append(DropboxEventConsumer(aws, client))
    return consumers


async def sync_dropbox(client: Client, settings: Settings, aws: Aws) -> None:
    """Bring ``dropbox-watch`` (if set up) to the settings: the safety-net interval only while the
    inbox really sends its events to the queue. Never stops the worker from starting."""
    try:
        events = await asyncio.to_thread(dropbox_events_configured, aws)
        synced = await sync_dropbox_schedule(client, settings, events)
        if synced and settings.dropbox_events_queue and not events:
            log.warning(
                "drop-box events are not set up on the inbox; dropbox-watch keeps polling "
                "(run `python -m starter dropbox setup`)",
                queue=settings.dropbox_events_queue,
            )
    except Exception as e:  # noqa: BLE001 - the drop-box must not keep the worker down
        log.warning("drop-box schedule not brought up to date", error=str(e)[:300])


async def recheck_dropbox(
    client: Client, settings: Settings, aws: Aws, stop: asyncio.Event, every: float = 3600
) -> None:
    """:func:`sync_dropbox` every ``every`` seconds until ``stop``."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            await sync_dropbox(client, settings, aws)


REQUIRED_SEARCH_ATTRIBUTES = ("OrgId", "ClusterName", "ClusterStatus", "Region")


async def missing_search_attributes(
    client: Client, required: tuple[str, ...] = REQUIRED_SEARCH_ATTRIBUTES
) -> list[str] | None:
    """The Keyword search attributes Bridgehead needs that the namespace lacks (None: the server
    would not say, e.g. Temporal Cloud without operator rights)."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.service import RPCError

    try:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError:
        return None
    return [name for name in required if name not in resp.custom_attributes]


def search_attribute_help(missing: list[str], namespace: str) -> str:
    """How to create them, for each kind of server."""
    names = ", ".join(missing)
    cli = " ".join(f"--search-attribute {n}=Keyword" for n in missing)
    op = "; ".join(
        f"temporal operator search-attribute create --namespace {namespace} --name {n} --type Keyword"
        for n in missing
    )
    return (
        f"the namespace {namespace!r} lacks the search attributes {names} (Keyword), which workflows set: create them, then "
        f"start the worker again. Dev server: start it with {cli}. Self-hosted: {op}. Temporal Cloud: add them in the "
        f"namespace's settings, or tcld namespace search-attributes add --namespace <ns>.<account> "
        + " ".join(f"--search-attribute {n}=Keyword" for n in missing)
    )


async def main() -> None:
    settings = get_settings()
    configure_logging()
    install_runtime(settings)
    aws = Aws(settings)
    if settings.create_tables:
        Registry(aws).ensure_tables()
    client = await make_client(settings)
    missing = await missing_search_attributes(client)
    if missing is None:
        log.warning(
            "could not list the namespace's search attributes; make sure these exist (Keyword)",
            names=list(REQUIRED_SEARCH_ATTRIBUTES),
        )
    elif missing:
        log.error(
            "missing search attributes", detail=search_attribute_help(missing, client.namespace)
        )
        raise SystemExit(2)
    await sync_dropbox(client, settings, aws)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(
        max_workers=activity_threads(
            settings.max_concurrent_activities, settings.max_concurrent_local_activities
        ),
        thread_name_prefix="activity",
    ) as executor:
        worker = build_worker(client, settings, build_activities(settings, aws, client), executor)
        tune_gc(settings.gc_young_threshold)
        log.info(
            "worker started",
            task_queue=settings.task_queue,
            namespace=client.namespace,
            metrics_port=settings.metrics_port,
        )
        gauge = (
            asyncio.create_task(publish_cluster_gauge(client, settings, stop))
            if settings.metrics_port
            else None
        )
        consumers = [
            asyncio.create_task(c.run(stop)) for c in queue_consumers(settings, aws, client)
        ]
        # The drop-box events are checked again every hour: a queue deleted or rules overwritten
        # after the start bring the Schedule's 30 s poll back within the hour, not at a restart.
        consumers.append(asyncio.create_task(recheck_dropbox(client, settings, aws, stop)))
        async with worker:
            await stop.wait()
            if gauge is not None:
                await gauge
            await asyncio.gather(*consumers)
            log.info("shutting down worker")
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
