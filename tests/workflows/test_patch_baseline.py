"""The patch baseline (workflows/_patches.py, issue 23): a new cluster lifecycle records one patch
marker and one ``TemporalChangeVersion`` upsert instead of one per patch it takes; runs recorded
before the baseline replay as they did; the baseline stands for every patch the code asks, and no
workflow asks a patch around it.

Twins: a lifecycle that never decides the baseline records a marker per patch; a baseline taken
without asking (also by runs recorded before it) fails to replay those runs; a patch left out of
the baseline, and a direct ``workflow.patched``, are reported by the source checks."""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

import workflows._patches as patches
from bridgehead import models as m
from bridgehead.converter import make_data_converter
from tests.conftest import TEST_KEY
from tests.support.replay_corpus import HISTORIES, load
from tests.support.timeskip import serve
from tests.workflows.test_cluster_timeskip import CFG, FakeCloud, until_state
from worker import WORKFLOWS, sandbox_runner

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"


def patch_markers(h: WorkflowHistory) -> list[str]:
    """The patch ids of the history's patch markers, in order."""
    out = []
    for e in h.events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = e.marker_recorded_event_attributes.details
        if "patch-data" in details:
            out.append(json.loads(details["patch-data"].payloads[0].data)["id"])
    return out


def version_upserts(h: WorkflowHistory) -> int:
    return sum(
        1
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    )


async def lifecycle_history(env) -> WorkflowHistory:  # type: ignore[no-untyped-def]
    """A new lifecycle, created, RUNNING, then deleted (the shared sandbox: a monkeypatched
    ``workflows._patches`` reaches the workflow)."""
    cloud = FakeCloud(create_takes=timedelta(minutes=12))
    async with serve(env, cloud.activities(), runner=sandbox_runner(shared=True), threads=8) as w:
        h = await w.start_cluster(CFG, f"pb{uuid.uuid4().hex[:6]}")
        await until_state(env, h, m.ClusterState.RUNNING)
        await h.signal("delete")
        assert (await h.result()).state == m.ClusterState.DELETED
        return await h.fetch_history()


async def test_a_new_lifecycle_records_one_patch_marker(ts_env):
    h = await lifecycle_history(ts_env)
    assert patch_markers(h) == [patches.BASELINE]
    assert version_upserts(h) == 1


async def test_twin_a_lifecycle_that_never_decides_records_a_marker_per_patch(
    ts_env, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(patches, "start", lambda: None)
    h = await lifecycle_history(ts_env)
    markers = patch_markers(h)
    assert patches.BASELINE not in markers and len(markers) >= 4, markers
    assert set(markers) <= patches.IN_BASELINE
    assert version_upserts(h) == len(markers)


# --- runs recorded before the baseline --------------------------------------------------------
#: Histories of the corpus recorded before the baseline that took patches it stands for.
def before_baseline() -> list[Path]:
    out = []
    for path in sorted(HISTORIES.glob("*.json")):
        markers = patch_markers(load(path))
        if markers and patches.BASELINE not in markers:
            out.append(path)
    return out


async def replay_failure(path: Path) -> BaseException | None:
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=make_data_converter(TEST_KEY, accept_v1=True),
        workflow_runner=sandbox_runner(shared=True),
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    return result.replay_failure


async def test_runs_recorded_before_the_baseline_replay_with_their_own_markers():
    paths = before_baseline()
    assert paths, "the corpus holds no history with patch markers from before the baseline"
    for path in paths:
        assert await replay_failure(path) is None, path.name


async def test_twin_a_baseline_taken_without_asking_breaks_those_runs(
    monkeypatch: pytest.MonkeyPatch,
):
    def always() -> None:
        setattr(workflow.instance(), patches._DECIDED, True)

    monkeypatch.setattr(patches, "start", always)
    lifecycles = [p for p in before_baseline() if p.name.startswith("ClusterLifecycle")]
    assert lifecycles
    failures = [await replay_failure(p) for p in lifecycles]
    assert all(f is not None for f in failures), [p.name for p in lifecycles]


# --- the source ---------------------------------------------------------------------------------
def asked_patches(sources: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(module, patch id) for every ``_patches.patched(...)`` of ``sources``, the id a string or a
    module-level constant."""
    for name, text in sources.items():
        tree = ast.parse(text)
        consts = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "patched"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "_patches"
                and node.args
            ):
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    yield name, arg.value
                elif isinstance(arg, ast.Name):
                    yield name, consts.get(arg.id, f"<{arg.id}>")


def direct_patched(sources: dict[str, str]) -> list[str]:
    """Modules that call ``workflow.patched`` themselves (only workflows/_patches.py may)."""
    return sorted(
        name
        for name, text in sources.items()
        if name != "_patches.py"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("patched", "deprecate_patch")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "workflow"
    )


def workflow_sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(WORKFLOWS_DIR.glob("*.py"))}


def test_the_baseline_stands_for_every_patch_the_code_asks():
    asked = {pid for _, pid in asked_patches(workflow_sources())}
    assert asked == patches.IN_BASELINE


def test_twin_a_patch_outside_the_baseline_is_reported():
    sources = workflow_sources()
    sources["extra.py"] = 'from workflows import _patches\nX = "new-one"\n_patches.patched(X)\n'
    asked = {pid for _, pid in asked_patches(sources)}
    assert asked - patches.IN_BASELINE == {"new-one"}


def test_no_workflow_asks_a_patch_around_the_baseline():
    assert direct_patched(workflow_sources()) == []


def test_twin_a_direct_workflow_patched_is_reported():
    sources = {"x.py": "from temporalio import workflow\nworkflow.patched('x')\n"}
    assert direct_patched(sources) == ["x.py"]
