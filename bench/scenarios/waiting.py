"""Scenario 3, waiting at scale: W clusters waiting at once on one worker process, their stacks
``CREATE_IN_PROGRESS`` in the latency-faithful fake AWS (:mod:`bench.fakeaws`), so every poll is
the real ``poll_stack`` activity making its real calls (DescribeStacks, DescribeStackEvents, the
registry read) with AWS-like latency. Measured over a sampling window, once per workflow-cache size:

* worker RSS (this process: the worker, the fake's bookkeeping and the driver) before and while
  waiting, and per waiting cluster;
* activity slots busy on average (executions in flight / ``max_concurrent_activities``, sampled
  every 0.1 s) and the polls made;
* the dev server's CPU (its process, from /proc) and the growth of its SQLite files;
* what a workflow-cache miss costs: the latency of a ``status`` query (a workflow task on the
  worker) on clusters that are cached against clusters that were evicted and must be replayed.

History events per cluster after one hour are measured on the time-skipping server (a controllable
CloudFormation, :mod:`bench.heldstacks`)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from bench.harness import (
    CLUSTER_CONFIG,
    ORG,
    REGION,
    TUNINGS,
    Bench,
    Recorder,
    cpu_seconds,
    load_average,
    make_interceptor,
    rss_mib,
    sqlite_bytes,
    start_worker,
    time_skipping_env,
    wait_ready,
)
from bench.stats import summarise

#: Stacks stay in progress far longer than any run: the clusters wait for the whole window.
HELD_SECONDS = 24 * 3600


async def waiting(
    b: Bench,
    n: int,
    seconds: float,
    hour_sample: int,
    caches: list[int] | None = None,
    slots: int | None = None,
    process: bool = False,
    settle: float = 0.0,
    sandbox: str | None = None,
) -> dict[str, Any]:
    """``slots``: the worker's activity slots (and threads), default the ``default`` tuning's;
    ``process``: the worker in a process of its own (:func:`wait_once`); ``settle``: seconds
    between the last cluster waiting and the sampling window; ``sandbox``: the worker process's
    sandbox mode (default: the setting ``workflow_sandbox``)."""
    from bench.scenarios.throughput import ensure_org

    await ensure_org(b)
    runs = [
        await wait_once(b, n, seconds, cache, slots, process, settle, sandbox)
        for cache in caches or [n]
    ]
    try:
        hour = await waiting_one_hour(hour_sample)
    except Exception as e:  # noqa: BLE001 - keep the figures of a 20-minute run whatever happens here
        hour = {"hour_sample_error": f"{type(e).__name__}: {e}"[:300]}
    first = runs[0]
    return {
        # The first run (the cache holds every waiting cluster) gives the headline figures.
        **{k: v for k, v in first.items() if not isinstance(v, dict)},
        "by_cache_size": runs,
        **hour,
    }


async def wait_once(
    b: Bench,
    n: int,
    seconds: float,
    cache: int,
    slots: int | None = None,
    process: bool = False,
    settle: float = 0.0,
    sandbox: str | None = None,
) -> dict[str, Any]:
    """One sampling window, ``settle`` seconds after the last cluster started waiting. ``process``: the worker runs in a process of its own
    (:mod:`bench.workerproc`, the fake world served to it), so its RSS and CPU are the worker's
    alone, without this driver's handles and the fake's bookkeeping."""
    from bench.fakeaws import FakeAws, seed_from
    from bench.fakeworld import FakeWorld, serve
    from bridgehead import models as m
    from worker import build_activities

    rec = Recorder()
    tq = f"bench-wait-{cache}-{uuid.uuid4().hex[:4]}"
    slots = slots or TUNINGS["default"]["max_concurrent_activities"]
    if process:
        manager, address, world = serve()
        world.configure(HELD_SECONDS, 0.0)
        seed_from(b.aws, world)
        under_test: Any = WorkerProcess(tq, address, cache, slots, sandbox)
    else:
        manager, fake = None, FakeAws(b.settings, FakeWorld(create_seconds=HELD_SECONDS))
        world = fake.world
        seed_from(b.aws, world)
        under_test = InProcessWorker(b, tq, cache, slots, build_activities(b.settings, fake), rec)
    temporal_pid = b.stack.procs["temporal"].pid
    db = b.stack.state_dir / "temporal.db"
    cfg = m.ClusterConfig(**CLUSTER_CONFIG)
    tag = uuid.uuid4().hex[:4]  # the workflow id must be the one its input computes
    try:
        async with under_test:
            # Before: the worker polling, nothing started (its fixed start-up costs come later,
            # with the first workflow; read the per-cluster figure at large n).
            rss_before, db_before, load_before = under_test.rss(), sqlite_bytes(db), load_average()
            t0 = time.perf_counter()
            handles: list[Any] = []
            for batch in range(0, n, 100):
                handles += await asyncio.gather(
                    *(
                        b.client.start_workflow(
                            "ClusterLifecycle",
                            m.ClusterLifecycleInput(
                                org_id=ORG, name=f"w{tag}-{i}", region=REGION, config=cfg
                            ),
                            id=f"cluster-{ORG}-w{tag}-{i}",
                            task_queue=tq,
                        )
                        for i in range(batch, min(n, batch + 100))
                    )
                )
            while world.stacks_in_progress() < n:
                first = await handles[0].describe()  # a lifecycle failing early would hang here
                if first.status is not None and first.status.name == "FAILED":
                    raise RuntimeError(f"{handles[0].id} failed before creating its stack")
                await asyncio.sleep(0.5)
            all_waiting_s = time.perf_counter() - t0
            db_waiting = sqlite_bytes(db)
            await asyncio.sleep(settle)  # the clusters keep waiting (and looking) meanwhile
            db_window = sqlite_bytes(db)
            settled_s = time.perf_counter() - t0 - all_waiting_s
            # The sampling window: nothing but waiting happens.
            polls0 = world.counts().get("cloudformation:DescribeStacks", 0)
            srv0, me0 = cpu_seconds(temporal_pid), under_test.cpu()
            window_stats = await under_test.sample(seconds)
            polls = world.counts().get("cloudformation:DescribeStacks", 0) - polls0
            server_cpu = cpu_seconds(temporal_pid) - srv0
            worker_cpu = under_test.cpu() - me0
            rss_waiting = under_test.rss()
            mode = under_test.sandbox() if process else b.settings.workflow_sandbox
            # Cache hit against miss: the newest-started clusters are the likeliest still cached,
            # the oldest the likeliest evicted when the cache is smaller than n.
            k = min(30, n // 2)
            newest = await query_latencies(handles[-k:])
            oldest = await query_latencies(handles[:k])
            sample = handles[:: max(1, n // 20)]
            events = [len((await h.fetch_history()).events) for h in sample]
            for chunk in range(0, n, 200):
                await asyncio.gather(
                    *(h.terminate("benchmark finished") for h in handles[chunk : chunk + 200]),
                    return_exceptions=True,
                )
    finally:
        if manager is not None:
            manager.shutdown()
    window, busy, mean_in_flight, max_in_flight = window_stats
    return {
        "clusters_waiting": n,
        "max_cached_workflows": cache,
        "max_concurrent_activities": slots,
        "workflow_sandbox": mode,
        "worker": "own process" if process else "benchmark process",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds_to_all_waiting": round(all_waiting_s, 1),
        "seconds_settled_before_window": round(settled_s, 1),
        "sampled_seconds": round(window, 1),
        "polls_in_window": polls,
        "polls_per_second": round(polls / window, 2),
        "activities_in_flight_max": max_in_flight,
        "activities_in_flight_mean": round(mean_in_flight, 3),
        "slots_busy_fraction": round(busy / (window * slots), 4),
        "activity_seconds_per_poll": round(busy / polls, 3) if polls else None,
        "worker_rss_mib_before": round(rss_before),
        "worker_rss_mib_waiting": round(rss_waiting),
        "rss_kib_per_waiting_cluster": round((rss_waiting - rss_before) * 1024 / n, 1),
        "worker_rss_kib_per_waiting_cluster_all_in": round(rss_waiting * 1024 / n, 1),
        "worker_cpu_percent": round(100 * worker_cpu / window, 1),
        "server_cpu_percent": round(100 * server_cpu / window, 1),
        "sqlite_mib_growth_to_all_waiting": round((db_waiting - db_before) / 2**20, 1),
        "sqlite_kib_per_cluster": round((db_waiting - db_before) / 1024 / n, 1),
        "sqlite_mib_growth_while_settling": round((db_window - db_waiting) / 2**20, 2),
        "sqlite_mib_growth_in_window": round((sqlite_bytes(db) - db_window) / 2**20, 2),
        "query_ms_newest": summarise(newest, 1),
        "query_ms_oldest": summarise(oldest, 1),
        "history_events_per_cluster_now": round(statistics.fmean(events), 1),
    }


class InProcessWorker:
    """The worker inside this process, its activity executions recorded by ``rec``."""

    def __init__(self, b: Bench, tq: str, cache: int, slots: int, acts: list[Any], rec: Any):
        self.rec = rec
        self.w, self.ex = b.worker(
            tq,
            "default",
            acts,
            interceptors=[make_interceptor(rec)],
            overrides={"max_cached_workflows": cache, "max_concurrent_activities": slots},
        )

    async def __aenter__(self) -> InProcessWorker:
        await self.w.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.w.__aexit__(*exc)
        self.ex.shutdown()

    def rss(self) -> float:
        return rss_mib()

    def cpu(self) -> float:
        return time.process_time()

    async def sample(self, seconds: float) -> tuple[float, float, float, int]:
        """(window, activity seconds, mean and max executions in flight), sampled every 0.1 s."""
        busy0, samples, t_start = self.rec.busy_seconds, [], time.monotonic()
        while time.monotonic() < t_start + seconds:
            samples.append(self.rec.in_flight)
            await asyncio.sleep(0.1)
        window = time.monotonic() - t_start
        return window, self.rec.busy_seconds - busy0, statistics.fmean(samples), max(samples)


class WorkerProcess:
    """The worker in a process of its own (:mod:`bench.workerproc` ``--stats``), read through the
    lines it prints every second and /proc."""

    def __init__(
        self, tq: str, address: str, cache: int, slots: int, sandbox: str | None = None
    ) -> None:
        self.tq, self.address = tq, address
        self.options = ("--cache", str(cache), "--slots", str(slots), "--stats")
        self.options += ("--sandbox", sandbox) if sandbox else ()
        self.lines: list[tuple[float, dict[str, Any]]] = []

    async def __aenter__(self) -> WorkerProcess:
        import json
        import threading

        self.p = start_worker(self.tq, self.address, *self.options)
        await asyncio.to_thread(wait_ready, self.p)

        def read() -> None:
            assert self.p.stdout is not None
            for line in self.p.stdout:
                if line.startswith("stats "):
                    self.lines.append((time.monotonic(), json.loads(line[6:])))

        threading.Thread(target=read, daemon=True).start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        import subprocess

        self.p.terminate()
        try:
            await asyncio.to_thread(self.p.wait, 60)
        except subprocess.TimeoutExpired as e:
            self.p.kill()  # never left behind, and the run says why it failed
            await asyncio.to_thread(self.p.wait, 10)
            if exc[1] is not None:
                return  # the scenario's own error says more than this one would
            raise RuntimeError(
                f"worker process {self.p.pid} did not exit in 60 s of SIGTERM"
            ) from e

    def rss(self) -> float:
        return rss_mib(self.p.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.p.pid)

    def sandbox(self) -> str | None:
        """The sandbox mode the worker process says it runs."""
        return self.lines[-1][1].get("sandbox") if self.lines else None

    async def sample(self, seconds: float) -> tuple[float, float, float, int]:
        """As :meth:`InProcessWorker.sample`, from the first and last lines of the window."""
        while not self.lines:
            await asyncio.sleep(0.1)
        (t0, a), first = self.lines[-1], len(self.lines)
        await asyncio.sleep(seconds)
        # A line comes about once a second, a little later on a loaded machine: wait for the first
        # one at least ``seconds`` after ``t0``, so the window is never a line short (a fresh-clone
        # CI run measured 3.0 s for 4 asked). Bounded: a silent worker ends the window anyway.
        deadline = time.monotonic() + 10
        while self.lines[-1][0] - t0 < seconds and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        t1, z = self.lines[-1]
        inside = [s for _, s in self.lines[first:]] or [z]
        mean = (z["sum"] - a["sum"]) / max(1, z["count"] - a["count"])
        return t1 - t0, z["busy"] - a["busy"], mean, max(s["max"] for s in inside)


async def query_latencies(handles: list[Any]) -> list[float]:
    """Milliseconds to answer the ``status`` query, one cluster at a time (a workflow task each:
    a cached workflow answers from memory, an evicted one is replayed from its history first)."""
    out = []
    for h in handles:
        t0 = time.perf_counter()
        await h.query("status")
        out.append((time.perf_counter() - t0) * 1000)
    return out


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
            async with Worker(
                env.client,
                task_queue="bench-hour",
                workflows=WORKFLOWS,
                activities=held.activities(),
                activity_executor=ex,
                workflow_runner=sandbox_runner(),
            ):
                cfg = m.ClusterConfig(**CLUSTER_CONFIG)
                hs = [
                    await env.client.start_workflow(
                        "ClusterLifecycle",
                        m.ClusterLifecycleInput(
                            org_id="bhhour", name=f"h{i}", region=REGION, config=cfg
                        ),
                        id=f"cluster-bhhour-h{i}",
                        task_queue="bench-hour",
                    )
                    for i in range(n)
                ]
                await env.sleep(timedelta(hours=1))
                events = [len((await h.fetch_history()).events) for h in hs]
                for h in hs:
                    await h.terminate("benchmark finished")
        return {
            "history_events_per_cluster_after_1h": round(sum(events) / len(events), 1),
            "hour_sample": n,
            "polls_in_the_hour": held.polls,
        }
    finally:
        await env.shutdown()
