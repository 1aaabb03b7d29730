"""Tenant probes (issue #17) against the real worker on the embedded stack: every crafted input a
namespace user could send to act for another organisation ends with a clear error, and a full
snapshot of every account (stacks incl. deleted, instances, roles, image grants, buckets, the
registry, the ledger, schedules) is exactly the same before and after the probes."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.converter import WorkflowSerializationContext

from bridgehead import ids
from bridgehead import models as m
from bridgehead.converter import SensitivePayloadCodec, make_data_converter
from tests.conftest import TEST_KEY
from tests.integration.helpers import onboard_ready, wait_for
from tests.support.secret_scan import readable_and_encrypted
from tests.support.snapshot import diff, snapshot_async

pytestmark = pytest.mark.integration

VICTIM, VICTIM_ACCOUNT = "victim", "271000000001"
ATTACKER_ACCOUNT = "271000000002"
REGIONS = ["us-east-1"]
CFG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.xlarge",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}
KEYS = m.CreateRoleForMeInput(
    access_key_id="ASIAABCDEFGHIJKLMNOP",
    secret_access_key="probe-secret-value-0001",
    session_token="probe-session-token-0001",
)
#: The probes' keys, each looked for in the victim's history.
PROBE_KEYS = {
    "probe access key id": "ASIAABCDEFGHIJKLMNOP",
    "probe secret access key": "probe-secret-value-0001",
    "probe session token": "probe-session-token-0001",
}


async def start_fails(client, wf_type: str, payload: object, wf_id: str) -> str:  # type: ignore[no-untyped-def]
    args = [] if payload is None else [payload]
    h = await client.start_workflow(wf_type, args=args, id=wf_id, task_queue="bridgehead")
    try:
        with pytest.raises(WorkflowFailureError) as e:
            await asyncio.wait_for(h.result(), 60)
    except TimeoutError:
        # The probe was not refused: say which one (a bare time-out named none; an audit).
        await h.terminate("probe not refused within 60 s")
        raise AssertionError(f"probe {wf_type} {wf_id} was not refused within 60 s") from None
    cause = e.value.cause
    return f"{getattr(cause, 'type', '')}: {getattr(cause, 'message', cause)}"


class _OtherWorkflowCodec(SensitivePayloadCodec):
    """An attacker's copy of the codec (same key!) that encrypts for another workflow: the
    ciphertext is then replayed into the victim's workflow."""

    def with_context(self, context):  # type: ignore[no-untyped-def]
        return super().with_context(
            WorkflowSerializationContext(namespace="default", workflow_id="org-attacker")
        )


async def test_tenant_probes_change_nothing_anywhere(client, stack):
    victim = await onboard_ready(client, stack, VICTIM, VICTIM_ACCOUNT, REGIONS)
    assert victim.state == m.OrgState.READY, victim
    foundation = ids.foundation_stack(VICTIM, "us-east-1")
    before = await snapshot_async(stack, [VICTIM_ACCOUNT, ATTACKER_ACCOUNT], REGIONS)
    org = {
        "display_name": "Eve",
        "admin_email": "eve@x.example",
        "aws_account_id": ATTACKER_ACCOUNT,
    }
    cluster = {"name": "cross", "region": "us-east-1", "config": CFG}
    outcomes: dict[str, str] = {}

    # 1. A cluster of the victim under a borrowed id.
    outcomes["borrowed cluster id"] = await start_fails(
        client, "ClusterLifecycle", {**cluster, "org_id": VICTIM}, "cluster-zeta-cross"
    )
    # 2. Another org registered under a borrowed id.
    outcomes["borrowed org id"] = await start_fails(
        client, "OnboardOrganization", {**org, "org_id": "bar"}, "org-foo"
    )
    # 3. Internal state in a fresh start: delete the victim's foundation ...
    rt = {"state": "DELETING", "stack_name": foundation}
    outcomes["runtime DELETING"] = await start_fails(
        client,
        "ClusterLifecycle",
        {**cluster, "org_id": VICTIM, "runtime": rt},
        ids.cluster_workflow_id(VICTIM, "cross"),
    )
    # ... or bill it 5,000 back-dated nodes.
    seg = {
        "state": "RUNNING",
        "segments": [
            {
                "start": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
                "head_instance_type": "t3.medium",
                "compute_instance_type": "x9.huge",
                "compute_nodes": 5000,
            }
        ],
    }
    outcomes["runtime RUNNING"] = await start_fails(
        client,
        "ClusterLifecycle",
        {**cluster, "org_id": VICTIM, "name": "bill", "runtime": seg},
        ids.cluster_workflow_id(VICTIM, "bill"),
    )
    # 4. A drop-box target in any bucket.
    box = {"bucket": "someone-elses-bucket", "user": "u"}
    outcomes["dropbox bucket"] = await start_fails(
        client,
        "ClusterLifecycle",
        {**cluster, "org_id": VICTIM, "name": "box", "dropbox": box},
        ids.cluster_workflow_id(VICTIM, "box"),
    )
    # 5. The victim's org id with a crafted resume, under another id, and under its own.
    resume = {
        "state": "READY",
        "role_arn": f"arn:aws:iam::{VICTIM_ACCOUNT}:role/BridgeheadAccess",
        "regions": {"us-east-1": {"images": "SHARED", "foundation": "READY"}},
    }
    outcomes["resume, borrowed id"] = await start_fails(
        client, "OnboardOrganization", {**org, "org_id": VICTIM, "resume": resume}, "org-eve"
    )
    outcomes["resume, own id"] = await start_fails(
        client, "OnboardOrganization", {**org, "org_id": "eve", "resume": resume}, "org-eve2"
    )
    # 6. The victim's AWS account claimed by another organisation.
    eve = await client.start_workflow(
        "OnboardOrganization",
        {**org, "org_id": "eve", "aws_account_id": VICTIM_ACCOUNT},
        id="org-eve",
        task_queue="bridgehead",
    )
    with pytest.raises(WorkflowFailureError) as e:
        await asyncio.wait_for(eve.result(), 60)
    outcomes["account of another org"] = str(e.value.cause.cause or e.value.cause)
    # 7. A direct cleanup of the victim's foundation under a borrowed id.
    outcomes["cleanup, borrowed id"] = await start_fails(
        client,
        "CleanupRegion",
        {"org_id": VICTIM, "region": "us-east-1"},
        "org-eve-cleanup-us-east-1",
    )
    # 8. Sloppy types and no input.
    outcomes["string nodes"] = await start_fails(
        client,
        "ClusterLifecycle",
        {
            **cluster,
            "org_id": VICTIM,
            "name": "s2",
            "config": {**CFG, "compute_initial_nodes": "2"},
        },
        ids.cluster_workflow_id(VICTIM, "s2"),
    )
    outcomes["no input"] = await start_fails(
        client, "ClusterLifecycle", None, ids.cluster_workflow_id(VICTIM, "none")
    )

    # 9. Secrets: plain JSON keys, keys encrypted for another workflow, keys under another key.
    h = client.get_workflow_handle(ids.org_workflow_id(VICTIM))
    plain = {
        "access_key_id": KEYS.access_key_id,
        "secret_access_key": "probe-secret-value-0001",
        "session_token": "probe-session-token-0001",
    }
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update("create_role_for_me", plain)
    outcomes["plain keys"] = str(e.value.cause)
    replay_dc = dataclasses.replace(
        make_data_converter(TEST_KEY), payload_codec=_OtherWorkflowCodec(TEST_KEY)
    )
    replayer = await Client.connect(stack.temporal_address, data_converter=replay_dc)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await replayer.get_workflow_handle(ids.org_workflow_id(VICTIM)).execute_update(
            "create_role_for_me", KEYS
        )
    outcomes["keys for another workflow"] = str(e.value.cause)
    stranger = await Client.connect(
        stack.temporal_address, data_converter=make_data_converter(b"s" * 32)
    )
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await stranger.get_workflow_handle(ids.org_workflow_id(VICTIM)).execute_update(
            "create_role_for_me", KEYS
        )
    outcomes["keys under another key"] = str(e.value.cause)
    # The victim's workflow is not stuck: it still answers at once and is READY.
    s = await asyncio.wait_for(h.query("status", result_type=m.OrgStatus), 10)
    assert s.state == m.OrgState.READY

    expected = {
        "borrowed cluster id": ["cluster-zeta-cross", "cluster-victim-cross"],
        "borrowed org id": ["org-foo", "org-bar"],
        "runtime DELETING": ["runtime", "internal state"],
        "runtime RUNNING": ["runtime", "internal state"],
        "dropbox bucket": ["dropbox", "internal state"],
        "resume, borrowed id": ["org-eve", "org-victim"],
        "resume, own id": ["org-eve2", "org-eve"],
        "account of another org": [VICTIM_ACCOUNT, "already belongs to organisation victim"],
        "cleanup, borrowed id": ["org-victim-cleanup-us-east-1"],
        "string nodes": ["compute_initial_nodes", "a whole number"],
        "no input": ["needs a JSON input"],
        "plain keys": ["encrypted"],
        "keys for another workflow": ["not made for this workflow"],
        "keys under another key": ["does not hold"],
    }
    for case, words in expected.items():
        for w in words:
            assert w in outcomes[case], (case, outcomes[case])
    for case, text in outcomes.items():
        assert "probe-secret-value-0001" not in text and "probe-session-token-0001" not in text, (
            case
        )
    after = await snapshot_async(stack, [VICTIM_ACCOUNT, ATTACKER_ACCOUNT], REGIONS)
    assert diff(before, after) == []
    # Nothing of the plain keys reached the victim's history, in any form a reader could recover
    # (every payload decoded: JSON, base64, the codec; tests/support/secret_scan.py and its twins).
    readable, _ = await readable_and_encrypted(
        await h.fetch_history(), PROBE_KEYS, make_data_converter(TEST_KEY).payload_codec
    )
    assert readable == []


async def test_twin_the_snapshot_sees_what_a_successful_probe_would_change(client, stack):
    """Planted defect: a cluster start that *does* act for the org (a legitimate start stands in
    for a probe that got through) shows up in the snapshot diff: registry row, stack, instance."""
    org, account = f"twin{uuid.uuid4().hex[:4]}", "271000000003"
    assert (await onboard_ready(client, stack, org, account, REGIONS)).state == m.OrgState.READY
    before = await snapshot_async(stack, [account], REGIONS)
    h = await client.start_workflow(
        "ClusterLifecycle",
        m.ClusterLifecycleInput(
            org_id=org, name="got-through", region="us-east-1", config=m.ClusterConfig(**CFG)
        ),
        id=ids.cluster_workflow_id(org, "got-through"),
        task_queue="bridgehead",
    )
    await wait_for(h, "status", m.ClusterStatus, lambda s: s.state == m.ClusterState.RUNNING, 120)
    changes = diff(before, await snapshot_async(stack, [account], REGIONS))
    assert any(c.startswith("+ registry") and "CLUSTER#got-through" in c for c in changes), changes
    assert any(
        c.startswith("+ stacks") and ids.cluster_stack(org, "got-through") in c for c in changes
    ), changes
    assert any(c.startswith("+ instances") for c in changes), changes
    await h.signal("delete")
    await wait_for(h, "status", m.ClusterStatus, lambda s: s.state == m.ClusterState.DELETED, 120)


def test_secret_never_in_model_repr():
    keys = m.CreateRoleForMeInput(
        access_key_id="ASIAABCDEFGHIJKLMNOP",
        secret_access_key=SecretStr("s3cr3t-value"),
        session_token=SecretStr("t0ken-value"),
    )
    assert "s3cr3t-value" not in repr(keys) and "t0ken-value" not in repr(keys)
