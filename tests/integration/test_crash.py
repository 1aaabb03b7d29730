"""Crash suite: the real worker process runs onboardings and cluster lifecycles while the harness
kills it with SIGKILL at random moments and restarts it, and restarts the Temporal dev server once
(its SQLite file kept). Afterwards every workflow ended where it should, each cluster's stack was
created exactly once, nothing is left running, and the billing ledger holds exactly the node-minutes
the clusters ran (each cluster is kept RUNNING for BRIDGEHEAD_CRASH_HOLD_SECONDS, 32 by default,
so it bills at least one minute per node; the ledger is closed twice, as a retried tick would).
Sizes: BRIDGEHEAD_CRASH_ORGS / _CLUSTERS / _KILLS (CI defaults 1 / 2 / 2; a run with 2 / 3 / 3 took
200 s here)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from pathlib import Path

import pytest

from bridgehead import models as m
from starter.local import LocalStack, free_port
from tests.conftest import TEST_KEY, TEST_KEY_B64
from tests.integration.helpers import launch_role_template

pytestmark = pytest.mark.integration
ORGS = int(os.environ.get("BRIDGEHEAD_CRASH_ORGS", "1"))
CLUSTERS = int(os.environ.get("BRIDGEHEAD_CRASH_CLUSTERS", "2"))
KILLS = int(os.environ.get("BRIDGEHEAD_CRASH_KILLS", "2"))
HOLD = float(os.environ.get("BRIDGEHEAD_CRASH_HOLD_SECONDS", "32"))
CFG = m.ClusterConfig(head_instance_type="t3.medium", compute_instance_type="c5.large", compute_initial_nodes=1, compute_max_nodes=2)


async def connect(st: LocalStack):  # noqa: ANN201
    from temporalio.client import Client

    from bridgehead.converter import make_data_converter

    for _ in range(60):
        try:
            return await Client.connect(st.temporal_address, data_converter=make_data_converter(TEST_KEY))
        except Exception:  # noqa: BLE001 - the server is restarting
            await asyncio.sleep(0.5)
    raise AssertionError("Temporal did not come back")


async def retrying(fn, tries: int = 120):  # noqa: ANN001, ANN201
    """Client calls ride over the dev-server restart."""
    for i in range(tries):
        try:
            return await fn()
        except Exception:  # noqa: BLE001
            if i == tries - 1:
                raise
            await asyncio.sleep(0.5)


def close_ledgers(orgs: list[str], results: list[m.ClusterResult]) -> tuple[int, int]:
    """Close every billing period up to two hours ahead with the real ledger activity, twice (a
    retried tick); returns (node-minutes in the ledger, node-minutes the clusters' segments are worth)."""
    from datetime import UTC, datetime, timedelta

    from temporalio.testing import ActivityEnvironment

    from activities.aws import Aws
    from activities.billing import BillingActivities, ledger_entries
    from activities.registry import Registry
    from bridgehead.billing import rounded_minutes
    from bridgehead.settings import get_settings

    get_settings.cache_clear()
    aws = Aws(get_settings())
    reg = Registry(aws)
    acts = BillingActivities(aws, reg)
    until = datetime.now(UTC) + timedelta(hours=2)
    for _ in range(2):
        for org in orgs:
            ActivityEnvironment().run(acts.close_billing_periods, m.CloseBillingPeriodsInput(org_id=org, until=until))
    ledger = sum(int(e["node_minutes"]) for org in orgs for e in ledger_entries(reg, org))
    expected = sum(rounded_minutes((s.end - s.start).total_seconds()) * (1 + s.compute_nodes) for r in results for s in r.segments)
    return ledger, expected


async def test_kills_and_a_server_restart_lose_and_duplicate_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("BRIDGEHEAD_CRASH_SEED", "11")))
    st = LocalStack(state_dir=tmp_path, temporal_port=free_port(), ui_port=free_port(), moto_port=free_port(),
                    worker_env={"BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64})  # fmt: skip
    saved = dict(os.environ)
    st.start()
    os.environ.update({**st.env(), "BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64})
    kills = server_restarts = 0
    try:
        client = await connect(st)
        chaos_done = asyncio.Event()

        async def chaos() -> None:
            nonlocal kills, server_restarts
            for k in range(KILLS):
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                st.procs["worker"].send_signal(signal.SIGKILL)
                st.procs["worker"].wait()
                kills += 1
                if k == 0:  # once: the dev server too, keeping its SQLite file
                    st._stop("temporal")
                    st.start_temporal()
                    server_restarts += 1
                st.start_worker()
            chaos_done.set()

        async def org_flow(i: int) -> tuple[str, str]:
            org, account = f"crash{i}", f"29{i:010d}"
            inp = m.OnboardOrganizationInput(org_id=org, display_name=org, admin_email=f"a@{org}.example", aws_account_id=account,
                                             regions=["us-east-1"])  # fmt: skip
            h = await retrying(lambda: client.start_workflow("OnboardOrganization", inp, id=f"org-{org}", task_queue="bridgehead"))
            s = await poll(h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE)
            arn = launch_role_template(st, account, s, f"bridgehead-access-{org}")
            await retrying(lambda: h.execute_update("submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult))
            s = await poll(h, "status", m.OrgStatus, lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED), 240)
            assert s.state == m.OrgState.READY, s
            handles = []
            for c in range(CLUSTERS):
                name = f"k{c}"
                handles.append(await retrying(lambda name=name: client.start_workflow(
                    "ClusterLifecycle", m.ClusterLifecycleInput(org_id=org, name=name, region="us-east-1", config=CFG),
                    id=f"cluster-{org}-{name}", task_queue="bridgehead", result_type=m.ClusterResult)))  # fmt: skip
            for ch in handles:
                cs = await poll(ch, "status", m.ClusterStatus, lambda s: s.state in (m.ClusterState.RUNNING, m.ClusterState.FAILED), 240)
                assert cs.state == m.ClusterState.RUNNING, cs
            await asyncio.sleep(HOLD)  # something to bill
            for ch in handles:
                await retrying(lambda ch=ch: ch.signal("delete"))
            return org, account

        async def poll(h, q, t, pred, timeout: float = 180):  # noqa: ANN001, ANN202
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            last = None
            while loop.time() < end:
                try:
                    last = await h.query(q, result_type=t)
                    if pred(last):
                        return last
                except Exception:  # noqa: BLE001 - worker or server down for a moment
                    pass
                await asyncio.sleep(0.5)
            raise AssertionError(f"{h.id}: timed out, last {last}")

        results = await asyncio.gather(chaos(), *(org_flow(i) for i in range(ORGS)))
        await chaos_done.wait()
        orgs = results[1:]
        # Every cluster ends DELETED, its stack was created exactly once, nothing runs.
        for org, account in orgs:
            cfn = st.customer_admin(account, "cloudformation")
            ec2 = st.customer_admin(account, "ec2")
            for c in range(CLUSTERS):
                res = await retrying(lambda org=org, c=c: client.get_workflow_handle(f"cluster-{org}-k{c}", result_type=m.ClusterResult).result())
                assert res.state == m.ClusterState.DELETED
                assert len(res.segments) == 1 and res.segments[0].end is not None
            summaries = cfn.list_stacks()["StackSummaries"]
            for c in range(CLUSTERS):
                assert [x["StackName"] for x in summaries].count(f"bridgehead-{org}--cluster-k{c}") == 1, summaries
            running = ec2.describe_instances(Filters=[{"Name": "tag:bridgehead:kind", "Values": ["cluster"]},
                                                      {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]  # fmt: skip
            assert running == []
            foundations = [x for x in summaries if x["StackName"] == f"bridgehead-{org}--foundation-us-east-1"]
            assert len(foundations) == 1
        # The ledger: exactly what the clusters ran, after the kills and with a repeated tick.
        results_all = [await client.get_workflow_handle(f"cluster-{org}-k{c}", result_type=m.ClusterResult).result()
                       for org, _ in orgs for c in range(CLUSTERS)]  # fmt: skip
        ledger_minutes, expected_minutes = await asyncio.to_thread(close_ledgers, [o for o, _ in orgs], results_all)
        assert expected_minutes >= ORGS * CLUSTERS * 2  # every cluster billed at least a minute per node
        assert ledger_minutes == expected_minutes, (ledger_minutes, expected_minutes)
        assert kills == KILLS and server_restarts == 1
        out = Path(__file__).resolve().parents[2] / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "crash-suite.json").write_text(json.dumps({"orgs": ORGS, "clusters": ORGS * CLUSTERS, "worker_kills": kills,
                                                          "server_restarts": server_restarts, "ledger_node_minutes": ledger_minutes,
                                                          "expected_node_minutes": expected_minutes}, indent=2))  # fmt: skip
    finally:
        st.stop()
        os.environ.clear()
        os.environ.update(saved)
