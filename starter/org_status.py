"""An organisation's status when its latest run did not succeed.

A run of ``org-{org_id}`` started again after the organisation ended (the Web UI's start form
reuses the id) is refused by ``register_organization`` and fails at once; querying it shows that
failed run (``REGISTERING``, no External ID), not the organisation. The platform registry holds
the last state the organisation really reached, so for a failed, terminated, timed-out or
cancelled latest run ``status`` shows the registry's record, with the run's failure as
``last_error``. Without a record (the first onboarding was refused) it shows the run's own status
as ``FAILED``, with the same reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridgehead import models as m

#: Latest-run outcomes for which the run's own status is not the organisation's.
UNSUCCESSFUL = {"FAILED", "TERMINATED", "TIMED_OUT", "CANCELED"}


async def failure_reason(handle: Any) -> str:
    """The innermost message of the run's failure (the refusal in words)."""
    from temporalio.client import WorkflowFailureError

    from workflows._common import root_message

    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as e:
        return root_message(e.cause) if e.cause is not None else str(e)
    except Exception as e:  # noqa: BLE001 - cancelled, terminated, timed out: say what it was
        return f"{type(e).__name__}: {e}"
    return "the run ended without a result"


def registry_status(org_id: str, last_error: str) -> m.OrgStatus | None:
    """The organisation as the registry records it (strongly consistent reads), or None when it
    is not registered."""
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    reg = Registry(Aws(get_settings()))
    item = reg.org_item(org_id)
    if item is None:
        return None
    regions = {}
    for region in item.get("regions") or []:
        foundation = reg.foundation(org_id, region) or {}
        images = reg.image_share(org_id, region) or {}
        regions[region] = m.RegionProgress(
            images=images.get("state", "PENDING"), foundation=foundation.get("state", "PENDING")
        )
    return m.OrgStatus(
        org_id=org_id,
        state=m.OrgState(item.get("state", m.OrgState.REGISTERING)),
        external_id=item.get("external_id"),
        role_arn=item.get("role_arn"),
        artifacts=None,
        failed_checks=[],
        regions=regions,
        last_error=last_error,
        steps=[],
    )


async def org_status(handle: Any, run_status: str, queried: m.OrgStatus) -> m.OrgStatus:
    """``queried`` (the latest run's ``status``) when that run is running or completed; else the
    registry's record with the run's failure, or the run's status marked FAILED."""
    if run_status not in UNSUCCESSFUL:
        return queried
    reason = await failure_reason(handle)
    said = f"the latest run ({handle.run_id}) {run_status.lower()}: {reason}"
    # The organisation is the one the workflow id names (a run's own input may not match it).
    org_id = handle.id.removeprefix("org-")
    try:
        truth = await asyncio.to_thread(
            registry_status, org_id, said + "; shown: the registry's record"
        )
    except Exception as e:  # noqa: BLE001 - no registry access: still say what happened
        said += f" (the registry could not be read: {e})"
        truth = None
    if truth is not None:
        return truth
    return queried.model_copy(update={"state": m.OrgState.FAILED, "last_error": said})
