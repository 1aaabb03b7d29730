"""Scenario 1, overhead: one organisation onboarded and one cluster created and deleted through
Bridgehead, against a plain script making the same AWS calls (the same activity code, called in the
order Bridgehead called it, with no Temporal; calls that overlapped in Bridgehead's run, the
organisation's images and its region, overlap in the script's too). Ratio Bridgehead / script. The
customer's own step, launching the role template in their account, is timed in neither arm.

Two backends: moto as it answers (a few milliseconds a call, far faster than AWS, so the ratio is
Temporal's round trips against almost no AWS time), and moto with AWS's latency (``aws-latency``:
every call padded to a latency drawn from :data:`bench.fakeaws.LATENCY_MS`, the two arms of a
repetition given the same draws by :class:`bench.fakeaws.PairedLatency`)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import (
    ACCOUNT,
    CLUSTER_CONFIG,
    NOT_AWS,
    ORG,
    REGION,
    SCRIPT_ACCOUNT,
    SCRIPT_ORG,
    Bench,
    Call,
    Recorder,
    launch_customer_role,
    make_interceptor,
    status_attr,
    until,
    until_settled,
)
from bench.stats import ratios, summarise


async def overhead(b: Bench, runners: list[str], reps: int = 1) -> dict[str, Any]:
    """Bridgehead (with each workflow runner) and the plain script, interleaved ``reps`` times:
    Bridgehead, script, Bridgehead without the sandbox, Bridgehead, script, … Each repetition
    onboards its own organisation in its own account; its script replays that repetition's calls
    for another organisation. Ratios are per repetition (see :mod:`bench.stats`)."""
    # Warm-up (not timed): first imports, first sandbox, first clients, moto's first requests.
    if "unsandboxed" in runners or reps > 1:
        await bridgehead_run(b, f"{ORG}w", "250000000019", sandboxed=True)
    seconds: dict[str, list[float]] = {
        "bridgehead": [],
        "script": [],
        "unsandboxed": [],
        "latent_bridgehead": [],
        "latent_script": [],
    }
    first: dict[str, Any] = {}
    aws_calls = 0
    latent, latent_calls = None, 0
    seed = int(time.time()) % 1_000_000  # this run's draws: another run, other draws
    if "aws-latency" in runners:
        from bench.fakeaws import LatentAws, PairedLatency

        latent = LatentAws(b.settings, PairedLatency(seed=seed))
        if reps > 1:  # warm-up (not timed): the padded session's clients and models
            latent.latency.begin(-1)
            await bridgehead_run(b, f"{ORG}lw", "250000000018", sandboxed=True, aws=latent)
    for i in range(reps):
        org, account = (ORG, ACCOUNT) if i == 0 else (f"{ORG}r{i}", f"2500000002{i:02d}")
        script_org, script_account = (
            (SCRIPT_ORG, SCRIPT_ACCOUNT) if i == 0 else (f"{SCRIPT_ORG}r{i}", f"2500000003{i:02d}")
        )
        run, script_s, aws_calls = await bridgehead_and_script(
            b, (org, account), (script_org, script_account)
        )
        first = first or run
        seconds["bridgehead"].append(run["seconds"])
        seconds["script"].append(script_s)
        if "unsandboxed" in runners:
            u, _ = await bridgehead_run(b, f"{ORG}u{i}", f"2500000004{i:02d}", sandboxed=False)
            seconds["unsandboxed"].append(u["seconds"])
        if latent is not None:
            lb, ls, latent_calls = await bridgehead_and_script(
                b,
                (f"{ORG}l{i}", f"2500000005{i:02d}"),
                (f"{SCRIPT_ORG}l{i}", f"2500000006{i:02d}"),
                latent,
                rep=i,
            )
            seconds["latent_bridgehead"].append(lb["seconds"])
            seconds["latent_script"].append(ls)
    out: dict[str, Any] = {
        "reps": reps,
        "order": "interleaved: bridgehead script"
        + (" unsandboxed" if seconds["unsandboxed"] else "")
        + " ...",
        "ratio": summarise(ratios(seconds["bridgehead"], seconds["script"]), 3),
        "bridgehead_seconds": summarise(seconds["bridgehead"], 2),
        "script_seconds": summarise(seconds["script"], 2),
        "onboarding_seconds": first["onboarding_seconds"],
        "customer_launch_seconds_not_timed": first["customer_launch_seconds"],
        "activities": first["activities"],
        "activity_seconds": first["activity_seconds"],
        "aws_activity_calls_replayed": aws_calls,
    }
    if seconds["unsandboxed"]:
        out["unsandboxed_seconds"] = summarise(seconds["unsandboxed"], 2)
        out["unsandboxed_ratio"] = summarise(ratios(seconds["unsandboxed"], seconds["script"]), 3)
    if seconds["latent_bridgehead"]:
        bh, sc = seconds["latent_bridgehead"], seconds["latent_script"]
        out["aws_latency"] = {
            "backend": "moto, every call padded to a latency drawn from bench.fakeaws.LATENCY_MS; "
            "both arms of a repetition given the same draws",
            "ratio": summarise(ratios(bh, sc), 3),
            "bridgehead_seconds": summarise(bh, 2),
            "script_seconds": summarise(sc, 2),
            "difference_seconds": summarise([x - y for x, y in zip(bh, sc, strict=True)], 2),
            "aws_activity_calls_replayed": latent_calls,
            "latency_seed": seed,
        }
    return out


async def bridgehead_and_script(
    b: Bench,
    tenant: tuple[str, str],
    script_tenant: tuple[str, str],
    aws: Any = None,
    rep: int = 0,
) -> tuple[dict[str, Any], float, int]:
    """One repetition's two arms: Bridgehead for ``tenant`` (org, account), then the plain script
    replaying its calls for ``script_tenant``; on a padded ``aws``, both arms given the draws of
    repetition ``rep``. Returns Bridgehead's run, the script's seconds and its calls replayed."""
    if aws is not None:
        aws.latency.begin(rep)
    run, calls = await bridgehead_run(b, *tenant, sandboxed=True, aws=aws)
    if aws is not None:
        aws.latency.begin(rep)  # the same draws again (PairedLatency)
    swap = dict(zip(tenant, script_tenant, strict=True))
    script_s, replayed = await asyncio.to_thread(plain_script, b, calls, swap, aws)
    return run, script_s, replayed


async def bridgehead_run(
    b: Bench, org: str, account: str, sandboxed: bool, aws: Any = None
) -> tuple[dict[str, Any], list[Call]]:
    """Onboard ``org`` (one region) and create and delete one cluster, timed; records the activities.
    ``aws``: the activities' AWS (default: the bench's, moto as it answers)."""
    from bridgehead import models as m

    rec = Recorder()
    acts = b.real_activities(aws)
    tq = b.settings.task_queue if sandboxed else f"{b.settings.task_queue}-unsandboxed"
    if aws is not None:
        tq += "-latent"  # its own worker: no other activities on this queue
    w, ex = b.worker(tq, "default", acts, interceptors=[make_interceptor(rec)], sandboxed=sandboxed)
    async with w:
        rec.enabled = True
        t0 = time.perf_counter()
        inp = m.OnboardOrganizationInput(
            org_id=org,
            display_name="Bench",
            admin_email="ops@bench.example",
            aws_account_id=account,
            regions=[REGION],
        )
        h = await b.client.start_workflow(
            "OnboardOrganization", inp, id=f"org-{org}", task_queue=tq
        )
        s = await until_settled(
            h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE, 60
        )
        t_launch = time.perf_counter()
        arn = await asyncio.to_thread(
            launch_customer_role,
            b.stack,
            account,
            s.artifacts.cloudformation_template,
            f"bridgehead-access-{org}",
        )
        customer_s = time.perf_counter() - t_launch
        await h.execute_update(
            "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
        )
        s = await until_settled(
            h,
            "status",
            m.OrgStatus,
            lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED),
            300,
        )
        if s.state != m.OrgState.READY:
            raise RuntimeError(f"onboarding did not reach READY: {s.last_error}")
        t_ready = time.perf_counter()
        c = await b.client.start_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(
                org_id=org, name="c1", region=REGION, config=m.ClusterConfig(**CLUSTER_CONFIG)
            ),
            id=f"cluster-{org}-c1",
            task_queue=tq,
            result_type=m.ClusterResult,
        )
        # The ClusterStatus search attribute: the server answers, the worker is left alone.
        await until(lambda: status_attr(c), lambda s: s == "RUNNING", 300, 0.02)
        await c.signal("delete")
        result = await c.result()
        t1 = time.perf_counter()
        rec.enabled = False
        # The organisation's meter outlives it (ABANDON): stopped here, so that its hourly tick
        # does not run inside a later repetition's timed run.
        try:
            await b.client.get_workflow_handle(f"billing-{org}").terminate("bench: run over")
        except Exception:  # noqa: BLE001 - not started (a failed run) or already ended
            pass
    ex.shutdown()
    assert result.state == m.ClusterState.DELETED, result
    # Only this organisation's workflows (an earlier organisation's leftover would otherwise be
    # replayed by the script against an organisation it never swapped).
    calls = sorted((c for c in rec.calls if org in c.workflow_id.split("-")), key=lambda c: c.start)
    return {
        # The customer's own step (launching the role template) is not Bridgehead's work: left
        # out of both arms, so the ratio compares Bridgehead's calls with the script's alone.
        "seconds": round(t1 - t0 - customer_s, 2),
        "customer_launch_seconds": round(customer_s, 2),
        "onboarding_seconds": round(t_ready - t0 - customer_s, 2),
        "activities": len(calls),
        "activity_seconds": round(rec.busy_seconds, 2),
    }, calls


def _leaves(value: Any, path: str = "") -> dict[str, str]:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k2: v2 for k, v in value.items() for k2, v2 in _leaves(v, f"{path}/{k}").items()}
    if isinstance(value, list):
        return {k2: v2 for i, v in enumerate(value) for k2, v2 in _leaves(v, f"{path}/{i}").items()}
    return {path: value} if isinstance(value, str) else {}


def predecessors(calls: list[Call]) -> list[list[int]]:
    """For each of Bridgehead's calls (in the order they started), the calls the script must
    have finished before it starts: those that had ended when it started in Bridgehead's run.
    A workflow's own calls follow one another; calls that overlapped in Bridgehead's run (the
    images shared while the foundation is provisioned) overlap in the script's. So the script is
    given the concurrency Bridgehead had, and no more."""
    return [[j for j in range(i) if calls[j].end <= c.start] for i, c in enumerate(calls)]


def run_after(calls: list[Call], fn: Any) -> None:
    """``fn(call)`` for each call (in the order they started), each once its
    :func:`predecessors` are done, one thread per call; the first failure is raised."""
    after = predecessors(calls)
    with ThreadPoolExecutor(max_workers=len(calls) or 1, thread_name_prefix="bench-script") as pool:
        done: list[Any] = []
        for c, before in zip(calls, after, strict=True):

            def step(c: Call = c, before: list[int] = before) -> None:
                for j in before:
                    done[j].result()  # raises if a call it follows failed
                fn(c)

            done.append(pool.submit(step))
        for f in done:
            f.result()


def plain_script(
    b: Bench, calls: list[Call], swap: dict[str, str], aws: Any = None
) -> tuple[float, int]:
    """The same AWS work as a plain script: each activity Bridgehead ran, in the same order, called
    directly (no Temporal) for another organisation in another account, with the concurrency
    Bridgehead had (:func:`predecessors`); the customer launches the role template in between, as in
    the Bridgehead run; in-progress polls are retried every second. Identifiers the recorded run
    learned from AWS (subnets, stack ids...) are swapped for the ones this run learns, by comparing
    each recorded result with the script's own."""
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from bench.fakeaws import CALL_KEY

    by_name = {
        getattr(fn, "__temporal_activity_definition").name: fn for fn in b.real_activities(aws)
    }
    replayed = 0
    script_org, script_account = swap.values()
    swap = dict(swap)  # grows with the identifiers learned along the way
    lock = threading.Lock()
    customer_s = 0.0  # the customer's launch of the role template: not timed (as in bridgehead_run)

    def replay(c: Call) -> None:
        nonlocal replayed, customer_s
        if c.name in NOT_AWS:
            return
        new_args = []
        for a in c.args:
            text = a.model_dump_json()
            with lock:
                learned = sorted(swap.items(), key=lambda kv: len(kv[0]), reverse=True)
            for old, new in learned:
                text = text.replace(old, new)
            new_args.append(type(a).model_validate_json(text))
        deadline = time.monotonic() + 300
        token = CALL_KEY.set(c.key)  # the same paired latencies as the call it replays
        try:
            while True:
                try:
                    result = ActivityEnvironment().run(by_name[c.name], *new_args)
                    break
                except ApplicationError as e:
                    if e.type not in ("StackInProgress", "ImageNotReady"):
                        raise
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{c.name} still in progress after 300 s") from e
                    time.sleep(1)
        finally:
            CALL_KEY.reset(token)
        mine = _leaves(result)
        with lock:
            replayed += 1
            for path, old in _leaves(c.result).items():
                new = mine.get(path)
                if new and new != old and len(old) >= 8 and old not in swap:
                    swap[old] = new
        if c.name == "register_organization":
            t_launch = time.perf_counter()
            launch_customer_role(
                b.stack,
                script_account,
                result.artifacts.cloudformation_template,
                f"bridgehead-access-{script_org}",
            )
            with lock:
                customer_s += time.perf_counter() - t_launch

    t0 = time.perf_counter()
    run_after(sorted(calls, key=lambda c: c.start), replay)
    return time.perf_counter() - t0 - customer_s, replayed
