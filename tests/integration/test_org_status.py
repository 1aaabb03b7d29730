"""``starter status org-<id>`` after a refused re-onboarding, on the embedded stack: the registry's
record (OFFBOARDED, the External ID it was registered with) and the refusal, not the failed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy

from bridgehead import models as m
from tests.integration.helpers import start_org

pytestmark = pytest.mark.integration
ACCOUNT = "252525252525"


def problems(s: m.OrgStatus, external_id: str) -> list[str]:
    """What is wrong with the status shown for the organisation after its refused restart."""
    found = []
    if s.state != m.OrgState.OFFBOARDED:
        found.append(f"state {s.state.value}, not the registry's OFFBOARDED")
    if s.external_id != external_id:
        found.append(f"external id {s.external_id}, not the registered one")
    if "is already registered" not in (s.last_error or ""):
        found.append("the refusal reason is not shown")
    return found


async def test_status_after_a_refused_re_onboarding_is_the_registry_record(client, stack):
    org = "rerun"
    h = await start_org(client, org, ACCOUNT, ["us-east-1"])
    registered = await h.query("status", result_type=m.OrgStatus)
    await h.execute_update(
        "offboard", m.OffboardInput(confirm_org_id=org), result_type=m.UpdateResult
    )
    await h.result()
    ended = await h.query("status", result_type=m.OrgStatus)
    assert ended.state == m.OrgState.OFFBOARDED
    # Started again as the Web UI's form does (the id may be reused): refused, the run fails.
    again = await client.start_workflow(
        "OnboardOrganization",
        m.OnboardOrganizationInput(
            org_id=org, display_name="Rerun", admin_email="a@rerun.example", aws_account_id=ACCOUNT
        ),
        id=f"org-{org}",
        task_queue="bridgehead",
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    with pytest.raises(WorkflowFailureError):
        await again.result()
    # Twin: the failed run's own answer is what a plain query shows, and the check rejects it.
    raw = await again.query("status", result_type=m.OrgStatus)
    assert problems(raw, registered.external_id) == [
        "state REGISTERING, not the registry's OFFBOARDED",
        "external id None, not the registered one",
        "the refusal reason is not shown",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "starter", "status", f"org-{org}", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **stack.env()},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    shown = m.OrgStatus.model_validate(json.loads(r.stdout))
    assert problems(shown, registered.external_id) == []
    assert shown.last_error.startswith(f"the latest run ({again.result_run_id}) failed: ")
    assert shown.last_error.endswith("; shown: the registry's record")
