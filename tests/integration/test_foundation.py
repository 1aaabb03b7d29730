"""Issue #2 checks on the embedded stack: the `temporal` CLI's plain JSON reaches workflows as
validated models, the starter CLI works, and log lines carry workflow and subject context."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bridgehead import models as m
from starter.local import LocalStack, bin_path, free_port, port_open
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("temporal"), *args, "--address", stack.temporal_address],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_temporal_cli_json_input_becomes_a_validated_model(client, stack):
    payload = {
        "org_id": "clijson",
        "display_name": "Cli Json",
        "admin_email": "a@cli.example",
        "aws_account_id": "121212121212",
        "regions": ["us-east-1"],
    }
    r = cli(
        stack,
        "workflow",
        "start",
        "--type",
        "OnboardOrganization",
        "--task-queue",
        "bridgehead",
        "--workflow-id",
        "org-clijson",
        "--input",
        json.dumps(payload),
    )
    assert r.returncode == 0, r.stderr
    s = await wait_for(
        client.get_workflow_handle("org-clijson"),
        "status",
        m.OrgStatus,
        lambda s: s.state == m.OrgState.AWAITING_ROLE,
    )
    assert s.external_id and len(s.external_id) >= 32 and s.regions.keys() == {"us-east-1"}
    # Search attributes were upserted by the workflow itself (no client-side help).
    r = cli(stack, "workflow", "list", "--query", "OrgId='clijson'", "-o", "json")
    assert "org-clijson" in r.stdout
    bad = cli(
        stack,
        "workflow",
        "execute",
        "--type",
        "OnboardOrganization",
        "--task-queue",
        "bridgehead",
        "--workflow-id",
        "org-clibad",
        "--input",
        json.dumps({**payload, "org_id": "clibad", "aws_account_id": "1"}),
    )
    assert bad.returncode != 0 and "aws_account_id" in bad.stdout + bad.stderr


def test_starter_cli_status_json_and_bad_input_exit_codes(stack):
    env = {**os.environ, **stack.env()}
    r = subprocess.run(
        [sys.executable, "-m", "starter", "--json", "status", "org-clijson"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["org_id"] == "clijson"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "starter",
            "cluster",
            "create",
            "--org",
            "acme",
            "--name",
            "9bad",
            "--region",
            "us-east-1",
            "--config",
            '{"head_instance_type":"t3.medium","compute_instance_type":"c5.xlarge"}',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and "name" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "starter", "schema", "ClusterLifecycle"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "compute_max_nodes" in r.stdout


def test_worker_log_lines_carry_workflow_and_subject_context(stack):
    lines = [
        json.loads(x)
        for x in (stack.state_dir / "worker.log").read_text().splitlines()
        if x.startswith("{")
    ]
    acts = [x for x in lines if x.get("activity_type") == "register_organization"]
    assert acts and all(x["workflow_id"].startswith("org-") and x["run_id"] for x in acts), [
        x for x in acts if not x.get("run_id")
    ][:2]
    # Our own lines name the organisation too (the SDK's, e.g. "Completing activity as failed",
    # carry the workflow and run only).
    own = [x for x in acts if x.get("logger", "").startswith("bridgehead")]
    assert own and all(x.get("org_id") for x in own), [x for x in own if not x.get("org_id")][:2]
    wf = [x for x in lines if x.get("logger") == "temporalio.workflow"]
    assert wf and all(x.get("workflow_type") and x.get("workflow_id") for x in wf)
    # Org-scoped workflows name their organisation; drop-box handlers name the request file instead.
    assert all(
        x.get("org_id") or (x["workflow_type"].startswith("Dropbox") and x.get("key")) for x in wf
    ), [x for x in wf if not x.get("org_id")][:3]


def test_local_stack_starts_and_stops_cleanly(tmp_path):
    st = LocalStack(
        state_dir=tmp_path,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        with_worker=False,
    )
    st.start(seed=False)
    assert (
        port_open(st.temporal_port)
        and port_open(st.moto_port)
        and (tmp_path / "temporal.db").exists()
    )
    procs = list(st.procs.values())
    st.stop()
    assert all(p.poll() is not None for p in procs)
    assert not port_open(st.temporal_port) and not port_open(st.moto_port)
