"""Temporal actions and history events per cluster-hour of a RUNNING cluster, worst case.

Every recurring piece is measured from real histories on the time-skipping server with fake
activities (bridgehead/history_stats.billable_actions), then combined by one pure function,
:func:`per_cluster_hour`, for ``clusters_per_org`` clusters in each of ``orgs`` organisations:

* per cluster: ``ClusterLifecycle`` while RUNNING (it waits on a condition: no timer);
* per organisation: ``BillingMeter`` (hourly tick, continue-as-new every ``TICKS_PER_RUN`` ticks)
  and the daily re-verification (Schedule action + ``ReverifyOrganization`` + ``VerifyRole``, and
  in ``OnboardOrganization`` the signal it receives and one ``set_org_state``: those two counted
  from the code, the organisation workflow needing a whole onboarding to run);
* per platform: the ``dropbox-watch`` Schedule (a Schedule action + ``DropboxWatch``), shared by
  every cluster of every organisation: every ``dropbox_every_seconds`` while it alone finds
  requests, every ``dropbox_safety_net_seconds`` once the inbox's S3 events start them (the event
  consumer is a loop of the worker process: no Temporal action while idle).

Not hourly: a drop-box request costs its own ``DropboxRequest`` run (:func:`measure_dropbox_request`),
the same whether its event or the Schedule started it (a child's start is counted in its own
history).

``python -m tests.support.cluster_costs`` prints the table of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

from bridgehead import ids
from bridgehead import models as m
from bridgehead.history_stats import Actions, billable_actions
from tests.support.meter_fakes import closed, meter_sent
from tests.support.timeskip import at_minute, serve
from workflows.dropbox import DropboxRequestWorkflow

#: ``OnboardOrganization``'s share of a re-verification, from workflows/onboarding.py (_converge on
#: a READY organisation): the ``reverify`` signal it receives and one ``set_org_state`` activity
#: (no e-mail: "re-verified" says nothing new; the VerifyRole child is measured on its own).
ORG_SIDE_OF_REVERIFY = 2
SCHEDULE_ACTION = 1


@dataclass(frozen=True)
class Recurring:
    """Measured cost of the recurring pieces (actions and events per hour or per run)."""

    meter_actions_per_hour: float
    meter_events_per_hour: float
    running_cluster_actions_per_hour: float
    running_cluster_events_per_hour: float
    reverify_actions_per_run: int
    reverify_events_per_run: int
    reverify_every_hours: float
    dropbox_actions_per_run: int
    dropbox_events_per_run: int
    dropbox_every_seconds: float
    dropbox_safety_net_seconds: float


def per_cluster_hour(
    r: Recurring, clusters_per_org: int, orgs: int, events: bool = True
) -> dict[str, float]:
    """Actions and events per cluster-hour, by piece and in total (the one place this is summed);
    ``events``: the drop-box's S3 events are set up (the Schedule is the safety net)."""
    clusters = clusters_per_org * orgs
    every = r.dropbox_safety_net_seconds if events else r.dropbox_every_seconds
    dropbox_runs = 3600 / every
    parts = {
        "cluster (RUNNING)": r.running_cluster_actions_per_hour,
        "billing meter": r.meter_actions_per_hour / clusters_per_org,
        "re-verification": r.reverify_actions_per_run / r.reverify_every_hours / clusters_per_org,
        "drop-box watch": r.dropbox_actions_per_run * dropbox_runs / clusters,
    }
    events = (
        r.running_cluster_events_per_hour
        + r.meter_events_per_hour / clusters_per_org
        + r.reverify_events_per_run / r.reverify_every_hours / clusters_per_org
        + r.dropbox_events_per_run * dropbox_runs / clusters
    )
    return {**parts, "actions": sum(parts.values()), "events": events}


def meter_fakes(failures_per_tick: int = 0) -> list[Any]:
    """``close_billing_periods`` / ``meter_usage`` fakes; ``failures_per_tick`` transient failures
    of the close before it succeeds (a planted defect for the twin)."""
    failed: dict[str, int] = {}

    @activity.defn(name="close_billing_periods")
    def close_billing_periods(req: m.CloseBillingPeriodsInput) -> m.CloseBillingPeriodsResult:
        key = req.until.isoformat()
        if failed.get(key, 0) < failures_per_tick:
            failed[key] = failed.get(key, 0) + 1
            raise RuntimeError("planted transient failure")
        return closed(req)

    return [close_billing_periods, meter_sent]


async def measure_meter(env: Any, hours: int = 24, failures_per_tick: int = 0) -> Actions:
    """``BillingMeter`` over ``hours`` hourly ticks (its start excluded: paid once per org)."""

    async with serve(env, meter_fakes(failures_per_tick)) as w:
        # Start at 20 past the hour, so ``hours`` + 15 minutes hold exactly ``hours`` clock-hour
        # ticks whatever the wall clock says (started at 05:59, a 25th tick fell in the window).
        await at_minute(env, 20)
        h = await w.start_meter(f"cost{uuid.uuid4().hex[:6]}")
        await env.sleep(timedelta(hours=hours, minutes=15))
        hist = await h.fetch_history()
        await h.terminate("measured")
    return billable_actions(hist.events)


async def measure_running_cluster(env: Any, hours: int = 24) -> tuple[Actions, Actions]:
    """``ClusterLifecycle``: what it cost until RUNNING, and after ``hours`` more of RUNNING."""
    from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state

    cloud = FakeCloud(create_takes=timedelta(0))

    async with serve(env, cloud.activities()) as w:
        h = await w.start_cluster(CFG, f"cost{uuid.uuid4().hex[:6]}")
        await until_state(env, h, m.ClusterState.RUNNING)
        at_running = billable_actions((await h.fetch_history()).events)
        await env.sleep(timedelta(hours=hours))
        later = billable_actions((await h.fetch_history()).events)
        await h.terminate("measured")
    return at_running, later


async def measure_reverify(env: Any) -> Actions:
    """One ``ReverifyOrganization`` run (as its Schedule starts it) and the ``VerifyRole`` run it
    leads to (started here as the organisation workflow would)."""

    @activity.defn(name="verify_role")
    def verify_role(req: m.VerifyRoleInput) -> m.VerificationReport:
        return m.VerificationReport(
            org_id=req.org_id, role_arn=req.role_arn, passed=True, checks=[]
        )

    org = f"cost{uuid.uuid4().hex[:6]}"
    async with serve(env, [verify_role]) as w:
        h = await w.start(
            "ReverifyOrganization",
            m.ReverifyInput(org_id=org),
            id=ids.reverify_schedule_id(org) + "-2026-11-26T00:00:00Z",
        )
        await h.result()
        total = billable_actions((await h.fetch_history()).events)
        v = await w.start(
            "VerifyRole",
            m.VerifyRoleInput(
                org_id=org, role_arn="arn:aws:iam::222222222222:role/BridgeheadAccess"
            ),
            id=ids.verify_workflow_id(org, 2),
        )
        await v.result()
        return total + billable_actions((await v.fetch_history()).events)


async def measure_dropbox_watch(env: Any) -> Actions:
    """One ``DropboxWatch`` run that finds no request (the steady state)."""

    @activity.defn(name="scan_inbox")
    def scan_inbox(req: m.DropboxWatchInput) -> m.DropboxScan:
        return m.DropboxScan(bucket="bridgehead-inbox")

    async with serve(env, [scan_inbox]) as w:
        h = await w.start(
            "DropboxWatch",
            m.DropboxWatchInput(),
            id=ids.DROPBOX_WATCH_SCHEDULE + f"-{uuid.uuid4().hex[:8]}",
        )
        await h.result()
        return billable_actions((await h.fetch_history()).events)


async def measure_dropbox_request(env: Any, outcome: str) -> Actions:
    """One ``DropboxRequest`` run as the event consumer starts it: ``rejected`` (an unregistered
    user: read, answer) or ``created`` (read, owner look-up, validation, the cluster's start, the
    request removed; the ``ClusterLifecycle`` it starts is the cluster's own cost)."""
    parsed = m.DropboxParsed(kind="create", user="alice", cluster="c1")
    if outcome == "created":
        from tests.workflows.test_cluster_timeskip import CFG

        parsed = parsed.model_copy(
            update={"org_id": "acme", "owner": "alice", "region": "us-east-1", "config": CFG}
        )
    else:
        parsed = parsed.model_copy(update={"error": "user alice is not registered"})

    @activity.defn(name="load_dropbox_request")
    def load_dropbox_request(req: m.DropboxRequestInput) -> m.DropboxParsed:
        return parsed

    @activity.defn(name="cluster_owner")
    def cluster_owner(req: m.DropboxParsed) -> str | None:
        return None

    @activity.defn(name="validate_cluster")
    def validate_cluster(req: m.ValidateClusterInput) -> m.ClusterPlan:
        return m.ClusterPlan(template_body="{}")

    @activity.defn(name="write_dropbox_result")
    def write_dropbox_result(req: m.DropboxResultInput) -> None:
        return None

    @activity.defn(name="delete_dropbox_request")
    def delete_dropbox_request(req: m.DropboxRequestInput) -> None:
        return None

    fakes = [
        load_dropbox_request,
        cluster_owner,
        validate_cluster,
        write_dropbox_result,
        delete_dropbox_request,
    ]
    key, version = f"home/alice/c{uuid.uuid4().hex[:6]}.cf-create", "e@2026-11-26T00:00:00"
    async with serve(env, fakes, workflows=[DropboxRequestWorkflow, StartedCluster]) as w:
        h = await w.start(
            "DropboxRequest",
            m.DropboxRequestInput(bucket="bridgehead-inbox", key=key, etag=version),
            id=ids.dropbox_request_id(key, version),
        )
        await h.result()
        return billable_actions((await h.fetch_history()).events)


@workflow.defn(name="ClusterLifecycle", sandboxed=False)
class StartedCluster:
    """Stands in for the cluster a drop-box request starts (its cost is the cluster's own)."""

    @workflow.run
    async def run(self, input: m.ClusterLifecycleRun) -> None:
        return None


async def measure_all(env: Any, hours: int = 24, failures_per_tick: int = 0) -> Recurring:
    from bridgehead.settings import Settings
    from workflows.billing import TICKS_PER_RUN

    meter = await measure_meter(env, hours, failures_per_tick)
    at_running, later = await measure_running_cluster(env, hours)
    reverify = await measure_reverify(env)
    dropbox = await measure_dropbox_watch(env)
    # The meter's own start is paid once per continue-as-new: 1 per TICKS_PER_RUN hours.
    meter_per_hour = (meter.total - meter.starts) / hours + 1 / TICKS_PER_RUN
    return Recurring(
        meter_actions_per_hour=meter_per_hour,
        meter_events_per_hour=meter.events / hours,
        running_cluster_actions_per_hour=(later.total - at_running.total) / hours,
        running_cluster_events_per_hour=(later.events - at_running.events) / hours,
        reverify_actions_per_run=reverify.total + SCHEDULE_ACTION + ORG_SIDE_OF_REVERIFY,
        reverify_events_per_run=reverify.events,
        reverify_every_hours=m.ReverifyInput(org_id="any").every_hours,
        dropbox_actions_per_run=dropbox.total + SCHEDULE_ACTION,
        dropbox_events_per_run=dropbox.events,
        dropbox_every_seconds=Settings.model_fields["dropbox_every_seconds"].default,
        dropbox_safety_net_seconds=Settings.model_fields["dropbox_safety_net_seconds"].default,
    )


async def _main() -> None:
    from tests.conftest import new_ts_env

    env = await new_ts_env()
    async with env:
        r = await measure_all(env)
        requests = {o: await measure_dropbox_request(env, o) for o in ("rejected", "created")}
    print(r)
    print({o: (a.total, dict(a.activities), a.upserts) for o, a in requests.items()})
    for events in (True, False):
        print("drop-box events set up" if events else "drop-box Schedule alone (no events)")
        for per_org, orgs in ((1, 1), (1, 100), (1, 1000), (10, 1), (10, 100)):
            c = per_cluster_hour(r, per_org, orgs, events)
            print(
                f"| {per_org} | {orgs} | "
                + " | ".join(f"{c[k]:.2f}" for k in c if k not in ("actions", "events"))
                + f" | **{c['actions']:.2f}** | {c['events']:.1f} |"
            )


if __name__ == "__main__":
    asyncio.run(_main())
