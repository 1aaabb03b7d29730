"""Scenario 2, throughput: N concurrent cluster lifecycles against N no-op workflows of the same
shape (same number of activities, same wait for ``delete``): the orchestration ceiling of this
server, worker and machine. Four arms, run interleaved ``reps`` times (ceiling, commands, fake,
moto, ceiling, …, see :mod:`bench.stats`; ``--backends`` chooses fake and moto):

* ``ceiling``: the no-op workflows;
* ``commands``: the command ceiling, no-op workflows replaying the lifecycle's commands
  (:mod:`bench.commands`);
* ``fake``: the real lifecycles and activities against the latency-faithful fake AWS
  (:mod:`bench.fakeaws`): what Bridgehead adds on top of Temporal when AWS answers like AWS;
* ``moto``: the same against moto's server, bounded by moto's CPU on the shared cores.

Each ratio is computed per repetition (ceiling seconds / arm seconds) and reported as median with
min–max; every sample is kept."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from typing import Any

from bench.cpu import ACTIVITY_THREADS, cpu_since, processes_total, thread_cpu_seconds
from bench.harness import (
    ACCOUNT,
    CLUSTER_CONFIG,
    ORG,
    REGION,
    TUNINGS,
    Bench,
    Recorder,
    activity_threads_prefix,
    cpu_seconds,
    load_average,
    make_interceptor,
    status_attr,
    until,
)
from bench.stats import interleaved, ratios, summarise


async def lifecycles(
    b: Bench, tq: str, n: int, prefix: str, deadline: float = 900
) -> tuple[float, list[Any]]:
    """``n`` clusters at once, each deleted as soon as it runs; wall seconds and the handles.
    Past ``deadline`` seconds the clusters still running are terminated and TimeoutError raised."""
    from bridgehead import models as m

    async def one(i: int) -> Any:
        name = f"{prefix}-{i}"
        h = await b.client.start_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(
                org_id=ORG, name=name, region=REGION, config=m.ClusterConfig(**CLUSTER_CONFIG)
            ),
            id=f"cluster-{ORG}-{name}",
            task_queue=tq,
            result_type=m.ClusterResult,
        )
        await until(lambda: status_attr(h), lambda s: s in ("RUNNING", "FAILED"), 900, 1.0)
        await h.signal("delete")
        r = await asyncio.wait_for(h.result(), 900)
        if r.state != m.ClusterState.DELETED:
            raise RuntimeError(f"{h.id} ended {r.state.value}, not DELETED")
        return h

    t0 = time.perf_counter()
    try:
        handles = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), deadline)
    except TimeoutError:
        for i in range(n):
            with contextlib.suppress(Exception):
                await b.client.get_workflow_handle(f"cluster-{ORG}-{prefix}-{i}").terminate(
                    "benchmark repetition past its deadline"
                )
        raise
    return time.perf_counter() - t0, handles


#: Seconds a repetition may take. moto, starved of CPU, answers HTTP 500 and can leave a stack
#: CREATE_IN_PROGRESS for ever (its 30 s polls would then run out the 10-minute window): such a
#: repetition is terminated and counted as failed instead of stalling the benchmark.
MOTO_DEADLINE = {"moto": 240.0, "fake": 900.0}


async def noops(
    b: Bench, tq: str, n: int, prefix: str, before: str, after: str, script: Any = None
) -> float:
    """``n`` no-op lifecycles whose steps are ``before`` and ``after`` (see :func:`lifecycle_shape`),
    or, given ``script`` (before, after), the command ceiling replaying it (bench/commands.py)."""
    from bench.noop import NoopInput

    inp = NoopInput(before=0, after=0, steps_before=before, steps_after=after)
    if script is not None:
        inp = NoopInput(before=0, after=0, script_before=script[0], script_after=script[1])

    async def one(i: int) -> Any:
        h = await b.client.start_workflow(
            "BenchNoopLifecycle",
            inp,
            id=f"noop-{prefix}-{i}",
            task_queue=tq,
        )
        await until(lambda: status_attr(h), lambda s: s == "RUNNING", 900, 1.0)
        await h.signal("delete")
        return await asyncio.wait_for(h.result(), 900)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


async def ensure_org(b: Bench) -> None:
    """The lifecycles validate against an onboarded organisation (onboarded for real, on moto)."""
    from activities.registry import Registry
    from bench.scenarios.overhead import bridgehead_run

    if Registry(b.aws).org_item(ORG) is None:
        await bridgehead_run(b, ORG, ACCOUNT, sandboxed=True)


async def throughput(
    b: Bench, n: int, tuning: str, reps: int, arms: tuple[str, ...] = ("fake", "moto")
) -> dict[str, Any]:
    from bench.commands import command_script
    from bench.fakeaws import FakeAws, seed_from
    from bench.noop import NoopLifecycle, bench_echo, bench_noop
    from worker import build_activities

    await ensure_org(b)
    fake_aws = FakeAws(b.settings)
    seeded = seed_from(b.aws, fake_aws.world)
    load_before = load_average()
    recs = {arm: Recorder() for arm in arms}
    workers, executors = [], []
    for arm in arms:
        acts = b.real_activities() if arm == "moto" else build_activities(b.settings, fake_aws)
        w, ex = b.worker(_task_queue(arm, tuning), tuning, acts, [], [make_interceptor(recs[arm])])
        workers.append(w)
        executors.append(ex)
    w_noop, ex_noop = b.worker(
        _task_queue("ceiling", tuning), tuning, [bench_noop, bench_echo], [NoopLifecycle]
    )
    tag = uuid.uuid4().hex[:4]
    shape: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as running:
        for w in [*workers, w_noop]:
            await running.enter_async_context(w)
        # Warm-up (not timed), and the shape and commands of a lifecycle from one real history.
        _, hs = await lifecycles(b, _task_queue(arms[0], tuning), 1, f"t{tag}w")
        events = list((await hs[0].fetch_history()).events)
        script = command_script(events)
        shape["before"], shape["after"] = steps_of(script)
        await same_commands(b, _task_queue("commands", tuning), f"{tag}check", events, script)

        # CPU per lifecycle of each arm in each repetition: this process (worker, driver and the
        # fake's bookkeeping), the dev server, and moto's server when its arm runs; and, inside
        # this process, the arm's activity threads (its worker's executor: the AWS client's work
        # and Bridgehead's code in the activities). On two cores, once both are busy, the ratio of
        # two arms' throughput is about the inverse ratio of their CPU per lifecycle.
        cpu: dict[str, list[dict[str, float] | None]] = {}
        procs = {"bench_process": os.getpid(), "dev_server": b.stack.procs["temporal"].pid}
        if "moto" in arms:
            procs["moto_server"] = b.stack.procs["moto"].pid

        def arm_fn(arm: str) -> Any:
            tq = _task_queue(arm, tuning)
            threads = activity_threads_prefix(tq)

            async def timed(i: int) -> float | None:
                before = {k: cpu_seconds(pid) for k, pid in procs.items()}
                threads_before = thread_cpu_seconds(threads)
                seconds = await run(i)
                per_lifecycle: dict[str, float] | None = None
                if seconds is not None:
                    spent = {k: cpu_seconds(pid) - before[k] for k, pid in procs.items()}
                    spent[ACTIVITY_THREADS] = cpu_since(threads_before, thread_cpu_seconds(threads))
                    per_lifecycle = {k: round(v * 1000 / n, 1) for k, v in spent.items()}
                cpu.setdefault(arm, []).append(per_lifecycle)
                return seconds

            async def run(i: int) -> float | None:
                if arm in ("ceiling", "commands"):
                    return await noops(
                        b,
                        tq,
                        n,
                        f"{tag}{arm[:3]}{i}",
                        shape["before"],
                        shape["after"],
                        script if arm == "commands" else None,
                    )
                prefix = f"t{tag}{arm[0]}{i}"
                try:
                    seconds, _ = await lifecycles(b, tq, n, prefix, MOTO_DEADLINE[arm])
                except TimeoutError:
                    if arm != "moto":
                        raise
                    return None  # reported as a failed repetition (see MOTO_DEADLINE)
                return seconds

            return timed

        samples = await interleaved({a: arm_fn(a) for a in ("ceiling", "commands", *arms)}, reps)
    for ex in [*executors, ex_noop]:
        ex.shutdown()
    out: dict[str, Any] = {
        "tuning": tuning,
        **TUNINGS[tuning],
        "clusters": n,
        "reps": reps,
        "order": "interleaved: " + " ".join(("ceiling", "commands", *arms)) + " ...",
        "activities_before_running": shape["before"].count("A"),
        "activities_after_delete": shape["after"].count("A"),
        "local_activities_before_running": shape["before"].count("L"),
        "local_activities_after_delete": shape["after"].count("L"),
        "steps": shape,
        "registry_items_seeded_into_fake": seeded,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds": {arm: summarise(s, 2) for arm, s in samples.items()},
        "ceiling_per_second": summarise([n / s for s in samples["ceiling"]], 2),
        "command_script": {
            "before": "".join(x.kind for x in script[0]),
            "after": "".join(x.kind for x in script[1]),
        },
        "commands_per_second": summarise([n / s for s in samples["commands"]], 2),
        "commands_ratio_to_ceiling": summarise(ratios(samples["ceiling"], samples["commands"]), 3),
    }
    for arm in arms:
        out[f"{arm}_per_second"] = summarise(
            [None if s is None else n / s for s in samples[arm]], 2
        )
        out[f"{arm}_ratio_to_ceiling"] = summarise(ratios(samples["ceiling"], samples[arm]), 3)
        out[f"{arm}_ratio_to_commands"] = summarise(ratios(samples["commands"], samples[arm]), 3)
        # Time inside the activities: near wall time x threads means the backend is the bound.
        out[f"{arm}_activity_seconds"] = round(recs[arm].busy_seconds, 1)
    out["cpu_ms_per_lifecycle"] = {arm: _mean(per_rep) for arm, per_rep in cpu.items()}
    out["cpu_ms_per_lifecycle_per_rep"] = cpu
    out.update(cpu_ratios(cpu, arms))
    out["fake_calls"] = fake_aws.world.counts()
    return out


def _mean(per_rep: list[dict[str, float] | None]) -> dict[str, float]:
    done = [r for r in per_rep if r is not None]
    return {k: round(sum(r[k] for r in done) / len(done), 1) for k in done[0]} if done else {}


def cpu_ratios(
    cpu: dict[str, list[dict[str, float] | None]], arms: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Per repetition, then summarised (:mod:`bench.stats`): ``{arm}_cpu_ratio_to_ceiling``, the
    ceiling's CPU per lifecycle over the arm's, and ``{arm}_cpu_ratio_if_activities_were_noops``,
    the same with the arm's activity-thread CPU replaced by the ceiling's.

    The second is an estimate of what making the activities' own work free (the AWS client's
    work, Bridgehead's code in the activities, the fake's answers) would bring, not a bound: what
    the activities cause elsewhere stays in it (their payloads converted and encrypted on the
    event loop, carried by the SDK core and the server; the heartbeat interceptor's task), and a
    garbage collection that happens to run in an activity thread leaves with them. The rest is the
    lifecycle's commands, its workflow code and how its steps reach the server."""
    out: dict[str, dict[str, Any]] = {}
    base = cpu.get("ceiling") or []
    ceiling = [processes_total(b) if b else None for b in base]
    for arm in arms:
        pairs = list(zip(base, cpu.get(arm) or [None] * len(base), strict=True))
        if not any(b and a for b, a in pairs):
            continue
        measured = [processes_total(a) if a else None for _, a in pairs]
        # The arm's activity threads costing what the ceiling's cost.
        free = [
            processes_total(a) - a[ACTIVITY_THREADS] + b[ACTIVITY_THREADS] if b and a else None
            for b, a in pairs
        ]
        out[f"{arm}_cpu_ratio_to_ceiling"] = summarise(ratios(ceiling, measured), 3)
        out[f"{arm}_cpu_ratio_if_activities_were_noops"] = summarise(ratios(ceiling, free), 3)
    return out


def _task_queue(arm: str, tuning: str) -> str:
    """The task queue of an arm's worker: both ceilings share the no-op worker."""
    return f"bench-noop-{tuning}" if arm in ("ceiling", "commands") else f"bench-{arm}-{tuning}"


async def same_commands(b: Bench, tq: str, prefix: str, events: Any, script: Any) -> None:
    """Run one command ceiling and refuse to measure unless it issued the lifecycle's commands."""
    from bench.commands import command_signature

    await noops(b, tq, 1, prefix, "", "", script)
    ran = (await b.client.get_workflow_handle(f"noop-{prefix}-0").fetch_history()).events
    ours, theirs = command_signature(ran), command_signature(events)
    if ours != theirs:
        raise RuntimeError(f"the command ceiling issued {ours}, the lifecycle {theirs}")


async def lifecycle_shape(handle: Any) -> tuple[str, str]:
    """The lifecycle's steps before the ``delete`` signal and after it (:func:`lifecycle_steps`)."""
    return lifecycle_steps((await handle.fetch_history()).events)


def lifecycle_steps(events: Any) -> tuple[str, str]:
    """A lifecycle's steps before the ``delete`` signal and after it, in order: ``A`` for each
    activity, ``L`` for each local activity (its marker), so the ceiling has the same shape."""
    from bench.commands import command_script

    return steps_of(command_script(events))


def steps_of(script: Any) -> tuple[str, str]:
    """The activities and local activities of a command script (:mod:`bench.commands`)."""
    before, after = ("".join(s.kind for s in part if s.kind in "AL") for part in script)
    return before, after
