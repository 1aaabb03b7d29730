"""Refresh the replay corpus: ``BRIDGEHEAD_RECORD_HISTORIES=1 make test`` stores, for every
workflow type, the richest history the integration tests produced in ``tests/histories/``
(this module runs last among the integration tests). Skipped otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker import WORKFLOWS

pytestmark = pytest.mark.integration
HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.skipif(not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"), reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories")
async def test_record_one_history_per_workflow_type(client):
    best: dict[str, tuple[int, str, str]] = {}
    async for wf in client.list_workflows():
        hist = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        size = len(hist.events)
        if size > best.get(wf.workflow_type, (0, "", ""))[0]:
            best[wf.workflow_type] = (size, wf.id, hist.to_json())
    HISTORIES.mkdir(exist_ok=True)
    for wf_type, (_, wf_id, text) in best.items():
        (HISTORIES / f"{wf_type}.json").write_text(text)
        (HISTORIES / f"{wf_type}.id").write_text(wf_id + "\n")
    missing = {w.__temporal_workflow_definition.name for w in WORKFLOWS} - set(best)  # type: ignore[attr-defined]
    assert not missing, f"no history recorded for {missing}"
