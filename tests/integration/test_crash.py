"""Crash suite: the real worker process onboards an organisation, creates and deletes clusters and
offboards it while the harness SIGKILLs it under work in flight, and SIGKILLs the Temporal dev
server once (its SQLite file kept). Afterwards:

* every workflow ended where it should (clusters DELETED, the organisation OFFBOARDED);
* every creation happened exactly once, counted by identity on moto's side (snapshot diff: stack
  ids, instance ids), and nothing of the organisation is left alive (no stack, instance or grant);
* the ledger holds the node-minutes the *driver's own clock* says the clusters ran (from the moment
  the driver, reading moto itself, saw each stack reach CREATE_COMPLETE to the moment it sent
  ``delete``, bounded by its observations), not a figure read back from the registry;
* each kill's landing phase (which activity or workflow task it interrupted, read from the
  histories afterwards) is in test-artifacts/crash-suite.json, and the kills landed in at least
  five distinct phases among onboarding, create, wait, delete, offboarding and billing.

Kill points come from a seed (``BRIDGEHEAD_CRASH_SEED``, else a fresh one), recorded in the
artifact so a failing run can be repeated: which phases are targeted in which order, the delay
after the targeted activity is seen in flight, and which kill also takes the dev server down.
Targeting is possible because the test proxy holds the AWS calls of those activities for a
moment (moto answers in milliseconds). Planted-defect twin: a cluster stack left behind, as a
worker killed between creating a stack and recording it would, is reported by the same check.

Failover: two worker processes poll the task queue. Each kill SIGKILLs the worker running the
targeted activity; the other one survives, and the killed one is replaced only once nothing is
left running on it (or after ``REPLACE_AFTER``), so the work it held resumes on the survivor. Per
kill the suite reads from history when the interrupted work started again, on which worker: the
retry's ActivityTaskStarted (an activity attempt cut short), or the first WorkflowTaskStarted /
Completed after a workflow task timed out, by a worker other than the killed one. The resume
times are in the artifact; their p95 must be at most ``FAILOVER_P95`` (15 s) and the largest at
most ``FAILOVER_MAX`` (20 s). Twins: the same measurement over a history shaped by a long
start-to-close and no heartbeat timeout reports more than 15 s and fails the same check
(tests/test_crash_landing.py), and so it does on a real dev server with probe workers whose
options are planted that way (tests/integration/test_failover.py).

Sizes: BRIDGEHEAD_CRASH_CLUSTERS (2), BRIDGEHEAD_CRASH_HOLD_SECONDS (32: at least a minute per
node). Each kill costs about the heartbeat timeout (10 s, workflows/_options.py) before Temporal
retries the interrupted activity on the survivor.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from bridgehead import ids
from bridgehead import models as m
from starter.local import LocalStack, free_port, seed_emulator
from tests.conftest import TEST_KEY, TEST_KEY_B64
from tests.integration.helpers import launch_role_template

pytestmark = pytest.mark.integration
CLUSTERS = int(os.environ.get("BRIDGEHEAD_CRASH_CLUSTERS", "2"))
HOLD = float(os.environ.get("BRIDGEHEAD_CRASH_HOLD_SECONDS", "32"))
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.large",
    compute_initial_nodes=1,
    compute_max_nodes=2,
)
NODES = 1 + CFG.compute_initial_nodes
ORG, ACCOUNT, REGION = "crash0", "290000000000", "us-east-1"
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "crash-suite.json"
#: AWS calls held by the proxy so the activities making them can be caught in flight.
DELAYS = {
    "CreateStack": 3.0,
    "DescribeStacks": 2.0,
    "DeleteStack": 3.0,
    "ModifyImageAttribute": 3.0,
    "ModifySnapshotAttribute": 1.0,
    "TransactWriteItems": 3.0,
    "BatchMeterUsage": 3.0,
}
#: Phases in the order the flow reaches them; each is a target of one kill.
PHASES = ("onboarding", "create", "wait", "delete", "offboarding", "billing")
#: The driver's observation step (seconds between status queries).
STEP = 0.5
#: Two worker processes on the task queue: one is killed, the other survives.
WORKERS = ("worker", "worker2")
#: A killed worker is replaced once nothing runs on it any more, or after this long at most.
REPLACE_AFTER = 25.0
#: Failover bounds (issue 19). The p95 is the target. The largest resume time may exceed it by
#: what a single kill can add on this shared 2-core machine and not on a fleet: the kill that also
#: SIGKILLs the dev server waits for the server's restart (its SQLite recovery and namespace
#: check, several seconds under load) before any timeout can fire; 20 s bounds that.
FAILOVER_P95 = 15.0
FAILOVER_MAX = 20.0


def identity(pid: int) -> str:
    """The SDK's default worker identity (``make_client`` sets none): ``pid@host``."""
    return f"{pid}@{socket.gethostname()}"


def phase_of(wf_id: str, activity: str, cluster_deleting: bool = False) -> str:
    """The phase an activity (or workflow task, ``activity == ""``) of a workflow belongs to."""
    if wf_id.startswith("billing-"):
        return "billing"
    if "-cleanup-" in wf_id:
        return "offboarding"
    if wf_id.startswith("cluster-"):
        if activity == "create_stack":
            return "create"
        if activity in ("delete_stack",) or cluster_deleting:
            return "delete"
        if activity in ("poll_stack", "check_stack"):
            return "wait"
        return "create"
    return "onboarding"


def workflow_ids(clusters: int) -> list[str]:
    return [
        ids.org_workflow_id(ORG),
        ids.images_workflow_id(ORG),
        ids.region_workflow_id(ORG, REGION),
        ids.cleanup_workflow_id(ORG, REGION),
        ids.billing_workflow_id(ORG),
        *(ids.cluster_workflow_id(ORG, f"k{c}") for c in range(clusters)),
    ]


async def connect(st: LocalStack):  # noqa: ANN201
    from temporalio.client import Client

    from bridgehead.converter import make_data_converter

    for _ in range(120):
        try:
            return await Client.connect(
                st.temporal_address, data_converter=make_data_converter(TEST_KEY)
            )
        except Exception:  # noqa: BLE001 - the server is restarting
            await asyncio.sleep(0.5)
    raise AssertionError("Temporal did not come back")


async def retrying(fn, tries: int = 240):  # noqa: ANN001, ANN201
    """Client calls ride over the dev-server restart."""
    for i in range(tries):
        try:
            return await fn()
        except Exception:  # noqa: BLE001
            if i == tries - 1:
                raise
            await asyncio.sleep(0.5)


async def in_flight(client, wf_ids: list[str]) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(workflow id, activity type, worker identity) of every activity a worker is running now
    (or ran when it died, until the attempt times out)."""
    from temporalio.api.enums.v1 import PendingActivityState

    out = []
    for wf_id in wf_ids:
        try:
            desc = await client.get_workflow_handle(wf_id).describe()
        except Exception:  # noqa: BLE001 - not started yet, or the server is down
            continue
        for pa in desc.raw_description.pending_activities:
            if pa.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                out.append((wf_id, pa.activity_type.name, pa.last_worker_identity))
    return out


class Span(NamedTuple):
    """A stretch of history during which a kill would have cut work short, and its resumption."""

    began: float  # the activity's scheduling, or the workflow task's start (or scheduling)
    ended: float  # the retry's start (activity), or the workflow task's time-out
    wf_id: str
    what: str  # activity type, or "" for a workflow task
    resumed: float | None  # when the work started again (None: never, in this history)
    resumed_by: str  # the worker identity that took it up


def spans(wf_id: str, events: list) -> list[Span]:  # noqa: ANN001
    """Stretches of a history during which a kill would have cut work short. An activity counts
    from its scheduling to the start of its final attempt when an earlier attempt timed out (the
    attempt that died with the worker); that start, and the final attempt's worker, are its
    resumption (the server writes a retried activity's ActivityTaskStarted when the activity
    closes, stamped with the final attempt's start). A workflow task counts from its start (or
    scheduling) to its time-out; it resumed at the next WorkflowTaskStarted (else Completed)."""
    from temporalio.api.enums.v1 import EventType

    def ts(e) -> float:  # noqa: ANN001
        return e.event_time.ToDatetime(tzinfo=UTC).timestamp()

    ev = {e.event_id: e for e in events}
    out = []
    for i, e in enumerate(events):
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = e.activity_task_started_event_attributes
            if a.attempt > 1 and a.last_failure.HasField("timeout_failure_info"):
                sched = ev[a.scheduled_event_id]
                name = sched.activity_task_scheduled_event_attributes.activity_type.name
                out.append(Span(ts(sched), ts(e), wf_id, name, ts(e), a.identity))
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            a = e.workflow_task_timed_out_event_attributes
            began = (
                ev.get(a.started_event_id) or ev[a.scheduled_event_id]
            )  # schedule-to-start: never started
            nxt = next(
                (
                    n
                    for n in events[i + 1 :]
                    if n.event_type
                    in (
                        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                    )
                ),
                None,
            )
            who = ""
            if nxt is not None:
                who = (
                    nxt.workflow_task_started_event_attributes.identity
                    if nxt.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
                    else nxt.workflow_task_completed_event_attributes.identity
                )
            out.append(Span(ts(began), ts(e), wf_id, "", ts(nxt) if nxt else None, who))
    return out


def land(kills: list[dict], all_spans: list[Span], deleting_since: dict[str, float]) -> None:
    """Record on each kill (wall time ``at``, killed worker ``victim``) the work it cut short, the
    phases of that work, and how long until all of it resumed on another worker."""
    for k in kills:
        hits = [sp for sp in all_spans if sp.began <= k["at"] < sp.ended]
        k["landed_on"] = [f"{sp.wf_id} {sp.what or 'workflow task'}" for sp in hits]
        # Failover as measured: from the kill until every piece of work it cut short started
        # again on a worker other than the killed one (None: it never did -- a failure).
        resumes = [
            sp.resumed - k["at"]
            if sp.resumed is not None and sp.resumed_by != k.get("victim")
            else None
            for sp in hits
        ]
        k["resumed_by"] = sorted({sp.resumed_by for sp in hits})
        k["resumed_after_s"] = (
            None
            if not hits
            else float("inf")
            if None in resumes
            else round(max(r for r in resumes if r is not None), 1)
        )
        k["landing_phases"] = sorted(
            {
                phase_of(sp.wf_id, sp.what, k["at"] >= deleting_since.get(sp.wf_id, float("inf")))
                for sp in hits
            }
        )


def failover(kills: list[dict]) -> dict:
    """The resume times of the kills that cut work short, their p95 (inclusive quantiles) and
    largest, and whether they meet the bounds."""
    times = sorted(k["resumed_after_s"] for k in kills if k.get("resumed_after_s") is not None)
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else None
    if len(times) == 1:
        p95 = times[0]
    worst = times[-1] if times else None
    return {
        "resume_times_s": times,
        "p95_s": None if p95 is None else round(p95, 1),
        "max_s": worst,
        "within_bounds": bool(times)
        and p95 is not None
        and p95 <= FAILOVER_P95
        and worst is not None
        and worst <= FAILOVER_MAX,
    }


async def landing(
    client, wf_ids: list[str], kills: list[dict], deleting_since: dict[str, float]
) -> None:  # noqa: ANN001
    """:func:`land` with the spans of every workflow's history."""
    all_spans = []
    for wf_id in wf_ids:
        try:
            hist = await retrying(
                lambda wf_id=wf_id: client.get_workflow_handle(wf_id).fetch_history(), tries=10
            )
        except Exception:  # noqa: BLE001 - never started
            continue
        all_spans += spans(wf_id, list(hist.events))
    land(kills, all_spans, deleting_since)


@pytest.mark.timeout(
    900
)  # a healthy run takes a few minutes; a failover regression must not hang CI
async def test_kills_and_a_server_kill_lose_and_duplicate_nothing(tmp_path):
    from tests.support.emulator_proxy import EmulatorProxy
    from tests.support.snapshot import creations, leftovers, snapshot_async

    seed = int(os.environ.get("BRIDGEHEAD_CRASH_SEED") or random.SystemRandom().randrange(2**31))
    rng = random.Random(seed)
    plan = [
        {"target": p, "delay": round(rng.uniform(0.0, 0.5), 3)} for p in PHASES
    ]  # within the held call
    server_kill_at = rng.randrange(len(plan))  # which kill also SIGKILLs the dev server
    st = LocalStack(
        state_dir=tmp_path,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        worker_env={"BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64},
    )
    saved = dict(os.environ)
    proxy = None
    report: dict = {"seed": seed, "plan": plan, "server_kill_at": server_kill_at, "delays": DELAYS}
    try:
        st.start_moto()
        proxy = EmulatorProxy(st.moto_endpoint, st.platform_keys).start()
        proxy.delays.update(DELAYS)
        st.endpoint_override = proxy.endpoint  # the worker's AWS calls go through the proxy
        seed_emulator(st.moto_endpoint)
        st.start_temporal()
        for name in WORKERS:  # one after the other: each creates the tables if missing
            st.start_worker(name)
        identities = {name: identity(st.procs[name].pid) for name in WORKERS}
        report["workers"] = {name: [who] for name, who in identities.items()}
        os.environ.update({**st.env(), "BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64})
        from bridgehead.settings import get_settings

        get_settings.cache_clear()
        client = await connect(st)
        before = await snapshot_async(st, accounts=[ACCOUNT], regions=[REGION])
        wf_ids = workflow_ids(CLUSTERS)
        clock: dict[str, dict[str, float]] = {f"k{c}": {} for c in range(CLUSTERS)}
        deleting_since: dict[str, float] = {}
        kills: list[dict] = []
        flow_done = asyncio.Event()

        async def chaos() -> None:
            for i, step in enumerate(plan):
                deadline = time.monotonic() + 240
                caught = None
                while time.monotonic() < deadline and not flow_done.is_set():
                    live = set(
                        identities.values()
                    )  # not a dead worker's attempt awaiting its time-out
                    for wf_id, act, who in await in_flight(client, wf_ids):
                        in_phase = phase_of(wf_id, act, wf_id in deleting_since) == step["target"]
                        if in_phase and who in live:
                            caught = (wf_id, act, who)
                            break
                    if caught:
                        break
                    await asyncio.sleep(0.2)
                if not caught:
                    kills.append({"target": step["target"], "caught": None})
                    continue
                victim = next(n for n, who in identities.items() if who == caught[2])
                await asyncio.sleep(step["delay"])
                at = time.time()
                st.procs[victim].send_signal(signal.SIGKILL)
                st.procs[victim].wait()
                kill = {
                    "target": step["target"],
                    "caught": f"{caught[0]} {caught[1]}",
                    "at": at,
                    "at_utc": datetime.fromtimestamp(at, UTC).isoformat(),
                    "victim": caught[2],
                    "survivor": next(w for n, w in identities.items() if n != victim),
                    "server_killed": i == server_kill_at,
                }
                if i == server_kill_at:  # the dev server too, mid-flight, keeping its SQLite file
                    st.procs["temporal"].send_signal(signal.SIGKILL)
                    st.procs["temporal"].wait()
                    st.procs.pop("temporal")
                    await asyncio.to_thread(
                        st.start_temporal
                    )  # the driver's clock keeps running meanwhile
                # Replace the killed worker only once nothing runs on it any more (its attempts
                # timed out and went to the survivor), so the work resumes on the survivor.
                until = time.monotonic() + REPLACE_AFTER
                while time.monotonic() < until:
                    if all(who != caught[2] for _, _, who in await in_flight(client, wf_ids)):
                        break
                    await asyncio.sleep(0.5)
                kill["replaced_after_s"] = round(time.time() - at, 1)
                await asyncio.to_thread(st.start_worker, victim)
                identities[victim] = identity(st.procs[victim].pid)
                report["workers"][victim].append(identities[victim])
                kills.append(kill)

        async def poll(h, q, t, pred, timeout: float = 420):  # noqa: ANN001, ANN202
            end = time.monotonic() + timeout
            last = None
            while time.monotonic() < end:
                try:
                    last = await h.query(q, result_type=t)
                    if pred(last):
                        return last
                except Exception:  # noqa: BLE001 - worker or server down for a moment
                    pass
                await asyncio.sleep(STEP)
            raise AssertionError(f"{h.id}: timed out, last {last}")

        async def flow() -> m.UsageTotals:
            try:
                inp = m.OnboardOrganizationInput(
                    org_id=ORG,
                    display_name=ORG,
                    admin_email=f"a@{ORG}.example",
                    aws_account_id=ACCOUNT,
                    regions=[REGION],
                )
                h = await retrying(
                    lambda: client.start_workflow(
                        "OnboardOrganization",
                        inp,
                        id=ids.org_workflow_id(ORG),
                        task_queue="bridgehead",
                    )
                )
                s = await poll(
                    h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE
                )
                arn = launch_role_template(st, ACCOUNT, s, f"bridgehead-access-{ORG}")
                await retrying(
                    lambda: h.execute_update(
                        "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
                    )
                )
                s = await poll(
                    h,
                    "status",
                    m.OrgStatus,
                    lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED),
                )
                assert s.state == m.OrgState.READY, s
                handles = {}
                for name in clock:
                    clock[name]["not_running_seen"] = (
                        time.time()
                    )  # not RUNNING before it is started
                    handles[name] = await retrying(
                        lambda name=name: client.start_workflow(
                            "ClusterLifecycle",
                            m.ClusterLifecycleInput(
                                org_id=ORG, name=name, region=REGION, config=CFG
                            ),
                            id=ids.cluster_workflow_id(ORG, name),
                            task_queue="bridgehead",
                            result_type=m.ClusterResult,
                        )
                    )

                async def until_running(name: str) -> None:
                    # The driver's clock: the last moment it saw the cluster not yet RUNNING and the
                    # first it saw RUNNING bound the moment it started to bill.
                    end = time.monotonic() + 420
                    while time.monotonic() < end:
                        asked = time.time()
                        try:
                            s = await handles[name].query("status", result_type=m.ClusterStatus)
                        except Exception:  # noqa: BLE001
                            await asyncio.sleep(STEP)
                            continue
                        if s.state == m.ClusterState.RUNNING:
                            clock[name]["running_seen"] = time.time()
                            return
                        assert s.state != m.ClusterState.FAILED, s
                        clock[name]["not_running_seen"] = asked
                        await asyncio.sleep(STEP)
                    raise AssertionError(f"{name} never RUNNING")

                await asyncio.gather(*(until_running(n) for n in clock))
                # Stack ids seen while everything exists (moto drops a stack whose deletion raised,
                # as the foundation's does: it then appears neither live nor deleted).
                mid.update(await snapshot_async(st, accounts=[ACCOUNT], regions=[REGION]))
                await asyncio.sleep(HOLD)  # something to bill
                for name, ch in handles.items():
                    clock[name]["delete_sent_after"] = time.time()
                    deleting_since[ch.id] = time.time()
                    await retrying(lambda ch=ch: ch.signal("delete"))
                    clock[name]["delete_acknowledged"] = time.time()
                for ch in handles.values():
                    res = await retrying(lambda ch=ch: ch.result())
                    assert res.state == m.ClusterState.DELETED and len(res.segments) == 1, res
                await retrying(
                    lambda: h.execute_update(
                        "offboard", m.OffboardInput(confirm_org_id=ORG), result_type=m.UpdateResult
                    )
                )
                final = await retrying(
                    lambda: client.get_workflow_handle(
                        ids.org_workflow_id(ORG), result_type=m.OrgStatus
                    ).result()
                )
                assert final.state == m.OrgState.OFFBOARDED, final
                return await retrying(
                    lambda: client.get_workflow_handle(
                        ids.billing_workflow_id(ORG), result_type=m.UsageTotals
                    ).result()
                )
            finally:
                flow_done.set()

        async def watch_stacks() -> None:
            """The driver's own view of when each cluster's stack reached CREATE_COMPLETE (billing
            starts there): straight from moto, not through Bridgehead or its proxy."""
            from starter.local import customer_admin

            cfn = customer_admin(
                st.moto_endpoint, ACCOUNT, "cloudformation", REGION, creds=st.platform_keys
            )
            names = {ids.cluster_stack(ORG, n): n for n in clock}
            for n in clock:  # no cluster stack exists yet
                clock[n]["not_complete_seen"] = time.time()
            while not flow_done.is_set() and not all("complete_seen" in clock[n] for n in clock):
                asked = time.time()
                status = {
                    x["StackName"]: x["StackStatus"]
                    for x in (await asyncio.to_thread(cfn.list_stacks))["StackSummaries"]
                    if x["StackName"] in names and x["StackStatus"] != "DELETE_COMPLETE"
                }
                for stack_name, n in names.items():
                    if "complete_seen" in clock[n]:
                        continue
                    if status.get(stack_name) == "CREATE_COMPLETE":
                        clock[n]["complete_seen"] = time.time()
                    else:
                        clock[n]["not_complete_seen"] = asked
                await asyncio.sleep(STEP)

        mid: dict = {}
        _, usage, _ = await asyncio.gather(chaos(), flow(), watch_stacks())
        client = await connect(st)
        await landing(client, wf_ids, [k for k in kills if k.get("at")], deleting_since)

        # Expected node-minutes from the driver's clock: billing runs from RUNNING to ``delete``.
        from bridgehead.billing import rounded_minutes

        # Billing runs from the stack's CREATE_COMPLETE to the ``delete`` request. Per cluster the
        # driver saw the stack complete between two of its own reads of moto, and sent ``delete``
        # between two clock readings: the billed stretch lies between (delete sent - first seen
        # complete) and (delete acknowledged - last seen not complete); rounding is monotonic.
        low = sum(
            rounded_minutes(max(0.0, c["delete_sent_after"] - c["complete_seen"])) * NODES
            for c in clock.values()
        )
        high = sum(
            rounded_minutes(c["delete_acknowledged"] - c["not_complete_seen"]) * NODES
            for c in clock.values()
        )
        from activities.aws import Aws
        from activities.billing import ledger_entries
        from activities.registry import Registry

        get_settings.cache_clear()
        ledger = sum(
            int(e["node_minutes"]) for e in ledger_entries(Registry(Aws(get_settings())), ORG)
        )
        after = await snapshot_async(st, accounts=[ACCOUNT], regions=[REGION])
        made = creations(
            before, {**after, "stacks": {**mid["stacks"], **after["stacks"]}}
        )  # every stack id ever seen
        landed = sorted({p for k in kills for p in k.get("landing_phases", [])})
        fo = failover(kills)
        report.update(
            {
                "kills": kills,
                "distinct_landing_phases": landed,
                "failover": fo,
                "clock": clock,
                "expected_node_minutes": [low, high],
                "ledger_node_minutes": ledger,
                "meter_node_minutes": usage.node_minutes,
                "created": made,
                "leftovers": leftovers(after, ACCOUNT, ids.org_prefix(ORG)),
            }
        )

        # Created exactly once, by identity; nothing left alive.
        want = {
            f"stack {ACCOUNT}/{REGION}/{ids.foundation_stack(ORG, REGION)}": 1,
            f"instances {ACCOUNT}/{REGION}": NODES * CLUSTERS,
            **{f"stack {ACCOUNT}/{REGION}/{ids.cluster_stack(ORG, n)}": 1 for n in clock},
            f"stack {ACCOUNT}/{REGION}/bridgehead-access-{ORG}": 1,
        }
        assert {
            k: v for k, v in made.items() if not k.startswith(("launch grant", "volume grant"))
        } == want, made
        assert report["leftovers"] == []
        # The ledger: what the driver's clock says ran, no more (a double-counted retry) and no less.
        assert usage.node_minutes == ledger
        assert low <= ledger <= high, (low, ledger, high)
        assert low >= CLUSTERS * NODES  # at least a minute per node
        # Where the kills landed.
        assert sum(1 for k in kills if k.get("server_killed")) == 1
        assert len(landed) >= 5, kills
        # Failover: every kill that cut work short saw it resume on another worker, fast.
        assert all(k["resumed_after_s"] != float("inf") for k in kills if k.get("at")), kills
        assert fo["within_bounds"], fo

        # Twin: a cluster stack a killed worker left behind is reported by the same check.
        cfn = st.customer_admin(ACCOUNT, "cloudformation", REGION)
        stray = cfn.create_stack(
            StackName=ids.cluster_stack(ORG, "orphan"),
            TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}),
        )
        planted = await snapshot_async(st, accounts=[ACCOUNT], regions=[REGION])
        assert leftovers(planted, ACCOUNT, ids.org_prefix(ORG)) == [
            f"stack {ACCOUNT}/{REGION}/{stray['StackId']} {ids.cluster_stack(ORG, 'orphan')} CREATE_COMPLETE"
        ]
        assert creations(after, planted) == {
            f"stack {ACCOUNT}/{REGION}/{ids.cluster_stack(ORG, 'orphan')}": 1
        }
    finally:
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.write_text(json.dumps(report, indent=2, default=str))
        st.stop()
        if proxy:
            proxy.stop()
        os.environ.clear()
        os.environ.update(saved)
        from bridgehead.settings import get_settings

        get_settings.cache_clear()
