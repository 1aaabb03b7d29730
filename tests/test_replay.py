"""Replay suite: every stored history (tests/histories, recorded from the integration tests) must
replay against today's workflow code without non-determinism. When this fails after a change,
the change alters commands of running workflows: guard it with ``workflow.patched`` (see
docs/reliability.md) instead of refreshing the histories."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bridgehead.converter import make_data_converter
from tests.conftest import TEST_KEY
from worker import WORKFLOWS, sandbox_runner

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
    replayer = Replayer(workflows=WORKFLOWS, data_converter=make_data_converter(TEST_KEY), workflow_runner=sandbox_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
