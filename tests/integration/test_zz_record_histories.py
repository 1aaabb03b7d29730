"""Grow the replay corpus from the dev-server integration tests: ``BRIDGEHEAD_RECORD_HISTORIES=1``
then run the integration tests whose paths are wanted (this module runs last among them).

For every path of tests/support/replay_corpus.py (encrypted payload, offboarding, drop-box...) the
richest history of this run holding it is stored as ``{Type}--{path}.json``; a workflow type with no
stored history yet gets ``{Type}.json``. Nothing is re-recorded wholesale: an existing history is
replaced only while it still replays against today's code, else the recorder refuses (guard the
change with ``workflow.patched``). Time-skipping paths (resize, failed stack, cancel,
continue-as-new): tests/workflows/test_zz_record_paths.py. Skipped unless asked for."""

from __future__ import annotations

import os

import pytest

from tests.support.replay_corpus import HISTORIES, _type, best_by_feature, store

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"),
    reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories",
)
async def test_record_histories_by_path(client):
    histories = []
    async for wf in client.list_workflows():
        histories.append(await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
    # BRIDGEHEAD_RECORD_ONLY=path,path: store only those paths (the others keep their histories,
    # e.g. the ones recorded before a patch, which runs still in flight would replay).
    only = {f for f in os.environ.get("BRIDGEHEAD_RECORD_ONLY", "").split(",") if f}
    stored = []
    for feature, h in sorted(best_by_feature(histories).items()):
        if only and feature not in only:
            continue
        stored.append(await store(h, f"{_type(h)}--{feature}"))
    if only:
        assert stored, f"no history of this run holds {sorted(only)}"
        return
    richest: dict[str, object] = {}
    for h in histories:
        t = _type(h)
        if not (HISTORIES / f"{t}.json").exists() and (
            t not in richest or len(h.events) > len(richest[t].events)
        ):  # type: ignore[attr-defined]
            richest[t] = h
    for t, h in richest.items():
        stored.append(await store(h, t))  # type: ignore[arg-type]
    assert stored, "nothing recorded"


@pytest.mark.skipif(
    not os.environ.get("BRIDGEHEAD_RECORD_HISTORIES"),
    reason="set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories",
)
async def test_record_release_and_offboarding_histories(client):
    """Store the release of tests/integration/test_image_release.py (copy, KEPT refusal,
    revocations on the real worker) and the offboarding that revoked every recorded image (the
    ``offboard-revoke-recorded-images`` path), beside the older offboarding history (which keeps
    the pre-patch path in the corpus). Run that module first, in the same session."""
    from tests.integration.test_image_release import RECORDED

    assert RECORDED, "run tests/integration/test_image_release.py first (same session)"
    for wf_id, name in RECORDED:
        await store(await client.get_workflow_handle(wf_id).fetch_history(), name)
