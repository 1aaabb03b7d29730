"""The replay corpus (tests/histories): which paths it must cover, how to tell from a history
which paths it holds, and the one way to store a history into it.

Coverage is read from the histories themselves (never from file names): an encrypted payload, a
continue-as-new (ending in one, or starting as one), a resize, a failed stack, a cancel, an
offboarding, an organisation following a foundation changed behind its back and the cleanup that
told it, both drop-box workflows, a cluster's guard rails, the meter's budget stop, a lifecycle
and an organisation that took the patch baseline, an organisation that shared its images while
its foundations were provisioned, and one from before that whose images were refused, and an
organisation that started its e-mail, billing meter and schedule at once when READY.

Storing refuses to overwrite a history that no longer replays against today's code: re-recording
would hide the non-determinism the corpus exists to catch. Guard the change with
``workflow.patched`` instead (docs/reliability.md), then record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def _type(h: WorkflowHistory) -> str:
    return h.events[0].workflow_execution_started_event_attributes.workflow_type.name


def _updates(h: WorkflowHistory) -> set[str]:
    return {
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    }


def _signals(h: WorkflowHistory) -> set[str]:
    return {
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    }


def _encrypted(h: WorkflowHistory) -> bool:
    from tests.support.secret_scan import payloads_in

    return any(
        p.metadata.get("encoding") == b"binary/encrypted"
        for e in h.events
        for _, p in payloads_in(e)
    )


def _result_state(h: WorkflowHistory) -> str | None:
    last = h.events[-1]
    if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return None
    payloads = last.workflow_execution_completed_event_attributes.result.payloads
    try:
        return json.loads(payloads[0].data).get("state") if payloads else None
    except (ValueError, AttributeError):
        return None


def _failed_stack(h: WorkflowHistory) -> bool:
    """A ClusterLifecycle whose stack failed: the poll reported a failure (a FAILED state upserted)."""
    if _type(h) != "ClusterLifecycle":
        return False
    for e in h.events:
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            p = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields.get(
                "ClusterStatus"
            )
            if p is not None and b"FAILED" in p.data:
                return True
    return False


def _capacity_failover(h: WorkflowHistory) -> bool:
    """A ClusterLifecycle that created its stack again after a capacity error (patch marker
    ``capacity-failover`` and more than one ``create_stack``)."""
    if _type(h) != "ClusterLifecycle":
        return False
    creates = sum(
        1
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "create_stack"
    )
    marker = any(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and b"capacity-failover"
        in e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and "patch-data" in e.marker_recorded_event_attributes.details
    )
    return marker and creates > 1


def _patch_baseline(h: WorkflowHistory) -> bool:
    """A run that took the patch baseline (workflows/_patches.py): its one patch marker."""
    from workflows._patches import BASELINE

    return _took(h, BASELINE)


def _children(h: WorkflowHistory) -> set[str]:
    """Workflow types of the children ``h`` started."""
    return {
        e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    }


def _took(h: WorkflowHistory, patch_id: str) -> bool:
    """A run that recorded the marker of ``patch_id``."""
    return any(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and "patch-data" in e.marker_recorded_event_attributes.details
        and json.loads(
            e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
        ).get("id")
        == patch_id
        for e in h.events
    )


#: Path name -> test on a history. Every one must be covered by at least one stored history.
FEATURES: dict[str, Callable[[WorkflowHistory], bool]] = {
    "encrypted-payload": _encrypted,
    "continued-as-new": lambda h: (
        h.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    ),
    "continuation": lambda h: bool(
        h.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    ),
    "resize": lambda h: _type(h) == "ClusterLifecycle" and "resize" in _updates(h),
    "failed-stack": _failed_stack,
    "cancel": lambda h: (
        _type(h) == "ClusterLifecycle"
        and "cancel" in _signals(h)
        and _result_state(h) == "CANCELLED"
    ),
    "capacity-failover": _capacity_failover,
    "offboarding": lambda h: _type(h) == "OnboardOrganization" and "offboard" in _updates(h),
    # Issue 21: guard rails (an automatic stop announced, kept, carried out; start; protection).
    "guard-rails": lambda h: (
        _type(h) == "ClusterLifecycle"
        and {"keep", "start", "delete"} <= _signals(h)
        and "set_deletion_protection" in _updates(h)
    ),
    "budget-stop": lambda h: (
        _type(h) == "BillingMeter"
        and any(
            e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
            for e in h.events
        )
    ),
    "foundation-followed": lambda h: (
        _type(h) == "OnboardOrganization" and "foundation_changed" in _signals(h)
    ),
    "cleanup-tells-org": lambda h: (
        _type(h) == "CleanupRegion"
        and any(
            e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
            for e in h.events
        )
    ),
    # The event-driven wait (patch event-waits): a stack_event hint, then the stack seen RUNNING.
    "event-wait": lambda h: _type(h) == "ClusterLifecycle" and "stack_event" in _signals(h),
    # Issue 23: runs that decided the patch baseline in their first task.
    "lifecycle-baseline": lambda h: _type(h) == "ClusterLifecycle" and _patch_baseline(h),
    "org-baseline": lambda h: _type(h) == "OnboardOrganization" and _patch_baseline(h),
    # Issue 23, after the baseline: images shared while the foundations are provisioned.
    "images-beside-foundations": lambda h: (
        _type(h) == "OnboardOrganization" and _took(h, "images-beside-foundations")
    ),
    # ... and a run from before it whose images were refused: the former order never started a
    # foundation (the branch the refactor into workflows/_org_setup.py must keep).
    "images-first-refused": lambda h: (
        _type(h) == "OnboardOrganization"
        and not _took(h, "images-beside-foundations")
        and "ShareImages" in _children(h)
        and "ProvisionRegion" not in _children(h)
    ),
    # ... and, once READY, the e-mail, the billing meter and the schedule started by one task.
    "ready-at-once": lambda h: _type(h) == "OnboardOrganization" and _took(h, "ready-at-once"),
    "dropbox-request": lambda h: _type(h) == "DropboxRequest",
    "dropbox-watch": lambda h: _type(h) == "DropboxWatch",
}


def features(h: WorkflowHistory) -> set[str]:
    return {name for name, test in FEATURES.items() if test(h)}


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.with_suffix(".id").read_text().strip(), path.read_text())


async def replay_failure(h: WorkflowHistory) -> str | None:
    """Why ``h`` does not replay against today's workflow code, or None."""
    from temporalio.worker import Replayer

    from bridgehead.converter import make_data_converter
    from tests.conftest import TEST_KEY
    from worker import WORKFLOWS, sandbox_runner

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=make_data_converter(TEST_KEY, accept_v1=True),
        workflow_runner=sandbox_runner(),
    )
    result = await replayer.replay_workflow(h, raise_on_replay_failure=False)
    return (
        None
        if result.replay_failure is None
        else f"{type(result.replay_failure).__name__}: {result.replay_failure}"
    )


class RefusedOverwrite(AssertionError):
    """An existing history no longer replays: record after guarding the change with workflow.patched."""


async def store(h: WorkflowHistory, name: str, folder: Path = HISTORIES) -> Path:
    """Write ``h`` as ``{name}.json`` (and its id), after checking that (1) it replays itself and
    (2) the history it replaces, if any, still replays. Refuses otherwise."""
    path = folder / f"{name}.json"
    if path.exists():
        why = await replay_failure(load(path))
        if why:
            raise RefusedOverwrite(
                f"refusing to overwrite {path.name}: it no longer replays against today's code ({why}). "
                "Guard the change with workflow.patched so running workflows keep their commands, then record."
            )
    why = await replay_failure(h)
    if why:
        raise RefusedOverwrite(f"the new history for {name} does not replay itself: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(h.to_json())
    path.with_suffix(".id").write_text(h.workflow_id + "\n")
    return path


def coverage(folder: Path = HISTORIES) -> dict[str, list[str]]:
    """Feature -> stored histories holding it."""
    out: dict[str, list[str]] = {name: [] for name in FEATURES}
    for path in sorted(folder.glob("*.json")):
        for f in features(load(path)):
            out[f].append(path.stem)
    return out


def best_by_feature(histories: list[WorkflowHistory]) -> dict[str, Any]:
    """For each feature, the largest history holding it (the richest example)."""
    best: dict[str, WorkflowHistory] = {}
    for h in histories:
        for f in features(h):
            if f not in best or len(h.events) > len(best[f].events):
                best[f] = h
    return best
