"""The offboarding change (every recorded image revoked, not only the newest release) is guarded by
``_patches.patched("offboard-revoke-recorded-images")``: a history recorded before it (the
``ShareImages`` child) and one recorded after it (``org_shared_images`` + ``revoke_image``) both
replay. Twin: the same change without the guard (the new branch taken unconditionally) fails to
replay the older history."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

import workflows.offboarding as offboarding
from bridgehead.converter import make_data_converter
from tests.conftest import TEST_KEY
from workflows.onboarding import OnboardOrganizationWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
BEFORE = "OnboardOrganization--offboarded"
AFTER = "OnboardOrganization--offboarded-recorded-images"


async def replay_failure(name: str) -> Any:
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(
        path.with_suffix(".id").read_text().strip(), path.read_text()
    )
    replayer = Replayer(
        workflows=[OnboardOrganizationWorkflow],
        data_converter=make_data_converter(TEST_KEY),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure


def activities_of(name: str) -> list[str]:
    history = WorkflowHistory.from_json("x", (HISTORIES / f"{name}.json").read_text())
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_histories_before_and_after_the_patch_replay():
    assert "org_shared_images" not in activities_of(BEFORE)
    assert "org_shared_images" in activities_of(AFTER) and "revoke_image" in activities_of(AFTER)
    assert await replay_failure(BEFORE) is None
    assert await replay_failure(AFTER) is None


async def test_twin_the_change_without_its_guard_breaks_the_older_history(
    monkeypatch: pytest.MonkeyPatch,
):
    from workflows import _patches

    def always_new(patch_id: str) -> bool:
        if patch_id == offboarding.REVOKE_RECORDED_IMAGES:
            return True
        return _patches.patched(patch_id)

    unguarded = SimpleNamespace(start=_patches.start, patched=always_new)
    monkeypatch.setattr(offboarding, "_patches", unguarded)
    failure = await replay_failure(BEFORE)
    assert failure is not None and "nondetermin" in f"{type(failure).__name__} {failure}".lower(), (
        failure
    )
