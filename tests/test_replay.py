"""Replay suite: every stored history (tests/histories, recorded from the integration tests and the
time-skipping recorder) must replay against today's workflow code without non-determinism. When
this fails after a change, the change alters commands of running workflows: guard it with
``workflow.patched`` (see docs/reliability.md) instead of refreshing the histories; the recorder
refuses to overwrite a history that no longer replays.

The corpus must cover every path of tests/support/replay_corpus.py (read from the histories).
Twins: a workflow with one added timer fails to replay a stored history; the recorder refuses to
overwrite a stored history that no longer replays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bridgehead.converter import make_data_converter
from tests.conftest import TEST_KEY
from worker import WORKFLOWS, sandbox_runner
from workflows.dropbox import DropboxRequestWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))


def test_every_workflow_type_has_a_stored_history():
    names = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    # ``Type--variant.json`` files keep extra paths of a type (e.g. offboarding) in the corpus.
    assert {f.stem.split("--")[0] for f in FILES} == names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_history_replays_without_nondeterminism(path: Path):
    wf_id = (path.with_suffix(".id")).read_text().strip()
    history = WorkflowHistory.from_json(wf_id, path.read_text())
    assert len(history.events) > 5
    # Both sandbox modes a worker can run (setting ``workflow_sandbox``): the isolated one, and the
    # one sharing the workflows package between runs.
    # Old runs hold v1 payloads (written before payloads were bound to their workflow): a worker
    # replaying them runs with BRIDGEHEAD_CODEC_ACCEPT_V1 until they finish (README).
    for shared in (False, True):
        replayer = Replayer(
            workflows=WORKFLOWS,
            data_converter=make_data_converter(TEST_KEY, accept_v1=True),
            workflow_runner=sandbox_runner(shared=shared),
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
        assert result.replay_failure is None


@workflow.defn(name="DropboxRequest", sandboxed=False)
class WithTimer(DropboxRequestWorkflow):
    """The planted defect of the replay twin: one unguarded timer before the real work."""

    @workflow.run
    async def run(self, input):  # type: ignore[no-untyped-def, override]
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(input)


def test_corpus_covers_every_required_path():
    from tests.support.replay_corpus import coverage

    missing = sorted(f for f, files in coverage(HISTORIES).items() if not files)
    assert missing == [], (
        f"no stored history holds {missing}; record them (tests/support/replay_corpus.py)"
    )


async def test_twin_an_added_timer_breaks_replay():
    """A DropboxRequest that sleeps one second before its work (an added timer, unguarded) must
    fail to replay the stored history: the suite catches a non-deterministic change."""
    from temporalio.worker import UnsandboxedWorkflowRunner

    from workflows.dropbox import DropboxRequestWorkflow

    path = HISTORIES / "DropboxRequest.json"
    history = WorkflowHistory.from_json(
        path.with_suffix(".id").read_text().strip(), path.read_text()
    )
    ok = Replayer(
        workflows=[DropboxRequestWorkflow],
        data_converter=make_data_converter(TEST_KEY),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    assert (await ok.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    timered = Replayer(
        workflows=[WithTimer],
        data_converter=make_data_converter(TEST_KEY),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    failure = (await timered.replay_workflow(history, raise_on_replay_failure=False)).replay_failure
    assert failure is not None and "nondetermin" in f"{type(failure).__name__} {failure}".lower(), (
        failure
    )


async def test_twin_recorder_refuses_to_overwrite_a_history_that_no_longer_replays(tmp_path):
    """A stored history whose commands today's code no longer issues (its first activity renamed,
    as a code change would) is not overwritten; one that still replays is."""
    import shutil

    from temporalio.api.enums.v1 import EventType

    from tests.support.replay_corpus import RefusedOverwrite, load, store

    src = HISTORIES / "DropboxRequest.json"
    fresh = load(src)
    for name in ("ok", "broken"):
        shutil.copy(src, tmp_path / f"{name}.json")
        shutil.copy(src.with_suffix(".id"), tmp_path / f"{name}.id")
    broken = load(tmp_path / "broken.json")
    first = next(
        e for e in broken.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    first.activity_task_scheduled_event_attributes.activity_type.name = "read_request_v0"
    (tmp_path / "broken.json").write_text(broken.to_json())
    before = (tmp_path / "broken.json").read_text()
    with pytest.raises(RefusedOverwrite, match="no longer replays"):
        await store(fresh, "broken", folder=tmp_path)
    assert (tmp_path / "broken.json").read_text() == before
    await store(fresh, "ok", folder=tmp_path)


async def test_old_runs_with_v1_payloads_need_the_v1_setting():
    """The histories recorded before the binding fail to replay without the setting (so the
    upgrade note is needed, and a default worker refuses a v1 payload)."""
    path = HISTORIES / "OnboardOrganization--encrypted-payload.json"
    wf_id = path.with_suffix(".id").read_text().strip()
    history = WorkflowHistory.from_json(wf_id, path.read_text())
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=make_data_converter(TEST_KEY),
        workflow_runner=sandbox_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
