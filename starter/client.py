"""The CLI's Temporal side: the workflows it can start (input model, id, status query), the
connection, starting with the house id policies, querying and waiting for a state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from bridgehead import ids
from bridgehead import models as m
from starter.output import BAD_INPUT, UNREACHABLE, CliError

Spec = tuple[type[BaseModel], Callable[[Any], str], str | None, type[BaseModel] | None]

# workflow type -> (public input model, workflow id from the input, query name, query result).
# Ids come from bridgehead.ids, the same functions the workflows check their id against.
WORKFLOWS: dict[str, Spec] = {
    "OnboardOrganization": (
        m.OnboardOrganizationInput,
        lambda i: ids.org_workflow_id(i.org_id),
        "status",
        m.OrgStatus,
    ),
    # A manual verification gets a sequence number far above the organisation's own.
    "VerifyRole": (
        m.VerifyRoleInput,
        lambda i: ids.verify_workflow_id(i.org_id, int(time.time())),
        None,
        None,
    ),
    "ShareImages": (
        m.ShareImagesInput,
        lambda i: ids.images_workflow_id(i.org_id),
        "status",
        m.ShareImagesResult,
    ),
    "ProvisionRegion": (
        m.ProvisionRegionInput,
        lambda i: ids.region_workflow_id(i.org_id, i.region),
        "status",
        m.FoundationStatus,
    ),
    "CleanupRegion": (
        m.CleanupRegionInput,
        lambda i: ids.cleanup_workflow_id(i.org_id, i.region),
        None,
        None,
    ),
    "ClusterLifecycle": (
        m.ClusterLifecycleInput,
        lambda i: ids.cluster_workflow_id(i.org_id, i.name),
        "status",
        m.ClusterStatus,
    ),
    "BillingMeter": (
        m.BillingMeterInput,
        lambda i: ids.billing_workflow_id(i.org_id),
        "usage",
        m.UsageTotals,
    ),
    "ReverifyOrganization": (
        m.ReverifyInput,
        lambda i: ids.reverify_schedule_id(i.org_id) + "-manual",
        None,
        None,
    ),
    "DropboxWatch": (
        m.DropboxWatchInput,
        lambda i: ids.DROPBOX_WATCH_SCHEDULE + "-manual",
        None,
        None,
    ),
    "MarketplaceSubscription": (
        m.MarketplaceSubscriptionInput,
        lambda i: ids.marketplace_workflow_id(i.org_id),
        "status",
        m.MarketplaceStatus,
    ),
    "ImageRelease": (
        m.ImageReleaseInput,
        lambda i: ids.image_release_workflow_id(i.version),
        "status",
        m.ImageReleaseStatus,
    ),
}

#: One-line summaries the Web UI shows for workflows started here (default: "<type> <org_id>").
SUMMARIES = {
    "ClusterLifecycle": "cluster {name} in {region} for {org_id}",
    "OnboardOrganization": "onboard {org_id} (account {aws_account_id})",
    "ProvisionRegion": "foundation of {org_id} in {region}",
    "CleanupRegion": "clean up {org_id} in {region}",
    "ImageRelease": "image release {version}",
}


async def client() -> Any:
    from bridgehead.client import make_client
    from bridgehead.settings import get_settings

    try:
        get_settings()
    except ValidationError as e:
        hint = "; with the embedded stack (make run): export BRIDGEHEAD_ENVIRONMENT=local"
        problems = "; ".join(err["msg"] for err in e.errors())
        raise CliError("configuration: " + problems + hint, BAD_INPUT) from None
    try:
        return await make_client()
    except Exception as e:  # noqa: BLE001
        message = f"cannot connect to Temporal ({e}); is the stack up? (make run)"
        raise CliError(message, UNREACHABLE) from None


def workflow_id(wf_type: str, inp: BaseModel) -> str:
    return WORKFLOWS[wf_type][1](inp)


def search_attrs_for(inp: BaseModel) -> Any:
    from workflows._common import search_attributes

    values = {}
    if getattr(inp, "org_id", None):
        values["org_id"] = inp.org_id  # type: ignore[attr-defined]
    if isinstance(inp, m.ClusterLifecycleInput):
        values.update(cluster=inp.name, region=inp.region, status="VALIDATING")
    elif getattr(inp, "region", None):
        values["region"] = inp.region  # type: ignore[attr-defined]
    return search_attributes(**values)


def summary_for(wf_type: str, inp: BaseModel) -> str:
    """The one-line summary the Web UI shows for a workflow started here."""
    f = inp.model_dump()
    what = SUMMARIES.get(wf_type)
    try:
        return (what or wf_type + " {org_id}").format(**f)
    except KeyError:
        return wf_type


async def start(wf_type: str, inp: BaseModel, wf_id: str | None = None) -> Any:
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from bridgehead.settings import get_settings

    c = await client()
    wf_id = wf_id or workflow_id(wf_type, inp)
    try:
        return await c.start_workflow(
            wf_type,
            inp,
            id=wf_id,
            task_queue=get_settings().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=search_attrs_for(inp),
            static_summary=summary_for(wf_type, inp),
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"{wf_id} is already running (or completed and may not be reused); "
            f"query it with `starter status {wf_id}`"
        ) from None


async def query(wf_id: str, wf_type: str | None = None) -> Any:
    """The workflow's status query. For an organisation whose latest run did not succeed, the
    registry's record instead, with the run's failure (:mod:`starter.org_status`)."""
    from starter.org_status import org_status

    c = await client()
    desc = await c.get_workflow_handle(wf_id).describe()
    # Pinned to the run described, so the status and the failure read belong to the same run.
    h = c.get_workflow_handle(wf_id, run_id=desc.run_id)
    wf_type = wf_type or desc.workflow_type
    _, _, qname, qtype = WORKFLOWS.get(wf_type, (None, None, None, None))
    if qname is None:
        raise CliError(
            f"{wf_type} has no status query; use `temporal workflow show --workflow-id {wf_id}`"
        )
    s = await h.query(qname, result_type=qtype)
    if wf_type == "OnboardOrganization" and desc.status is not None:
        return await org_status(h, desc.status.name, s)
    return s


async def wait_state(
    wf_id: str, wf_type: str, done: set[str], timeout: float, show: Any = None
) -> Any:
    """Poll the status query until a state in ``done``; ``show`` gets each change of state or of
    the latest stack event (live progress for long waits)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        s = await query(wf_id, wf_type)
        events = getattr(s, "latest_events", None)
        marker = (s.state, s.latest_events[0].model_dump_json() if events else None)
        if show and marker != last:
            show(s)
            last = marker
        if s.state.value in done:
            return s
        if wf_type == "OnboardOrganization" and s.state == m.OrgState.FAILED:
            # The run ended unsuccessfully (starter.org_status): waiting longer changes nothing.
            raise CliError(f"{wf_id}: {s.last_error}")
        if time.monotonic() > deadline:
            raise CliError(
                f"timed out waiting for {wf_id} to reach {sorted(done)}; it is {s.state.value}"
            )
        await asyncio.sleep(1)
