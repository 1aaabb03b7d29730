"""The patch baseline (workflows/_patches.py, issue 23): a new cluster lifecycle records one patch
marker and one ``TemporalChangeVersion`` upsert instead of one per patch it takes; runs recorded
before the baseline replay as they did; the baseline stands for every patch the code asks, and no
workflow asks a patch around it.

Twins: a lifecycle that never decides the baseline records a marker per patch; a baseline taken
without asking (also by runs recorded before it) fails to replay those runs; a patch left out of
the baseline, and a direct ``workflow.patched``, are reported by the source checks."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
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
    monkeypatch.setattr(patches, "start", lambda instance: None)
    h = await lifecycle_history(ts_env)
    markers = patch_markers(h)
    assert patches.BASELINE not in markers and len(markers) >= 4, markers
    assert set(markers) <= patches.IN_BASELINE
    assert version_upserts(h) == len(markers)


# --- runs recorded before the baseline --------------------------------------------------------
def before_baseline() -> list[Path]:
    """Histories of the corpus recorded before the baseline, of the types that now take it, that
    took patches it stands for."""
    out = []
    for path in sorted(HISTORIES.glob("*.json")):
        if path.stem.split("--")[0] not in patches.BASELINE_TYPES:
            continue
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
    kinds = {p.stem.split("--")[0] for p in paths}
    assert {"ClusterLifecycle", "OnboardOrganization"} <= kinds, kinds
    for path in paths:
        assert await replay_failure(path) is None, path.name


async def test_twin_a_baseline_taken_without_asking_breaks_those_runs(
    monkeypatch: pytest.MonkeyPatch,
):
    def always(instance: object) -> None:
        setattr(instance, patches._DECIDED, True)

    monkeypatch.setattr(patches, "start", always)
    for path in before_baseline():
        failure = await replay_failure(path)
        # sdk-core: a patch marker nobody asks for, or the commands of a branch the run never took.
        assert failure is not None and "nondetermin" in str(failure).lower(), (path.name, failure)


def test_a_recorded_onboarding_took_one_patch_marker():
    """The stored onboarding of the dev-server integration tests (``org-baseline``): the role,
    its verification, the foundation and the reverification schedule under one marker."""
    h = load(HISTORIES / "OnboardOrganization--org-baseline.json")
    assert patch_markers(h) == [patches.BASELINE] and version_upserts(h) == 1


# --- the source ---------------------------------------------------------------------------------
def asked_patches(sources: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(module, patch id) for every ``_patches.patched(...)`` of ``sources``: the id a string or a
    module-level constant, else ``<unresolved ...>`` (which no baseline holds)."""
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
            ):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant):
                    yield name, arg.value
                elif isinstance(arg, ast.Name) and arg.id in consts:
                    yield name, consts[arg.id]
                else:
                    yield name, f"<unresolved {ast.unparse(node)}>"


def direct_patched(sources: dict[str, str]) -> list[str]:
    """Modules that ask Temporal for a patch themselves (only workflows/_patches.py may): any
    ``….patched(…)`` / ``….deprecate_patch(…)`` not on ``_patches``, or either name imported."""
    out = set()
    for name, text in sources.items():
        if name == "_patches.py":
            continue
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("patched", "deprecate_patch")
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "_patches")
            ) or (
                isinstance(node, ast.ImportFrom)
                and any(a.name in ("patched", "deprecate_patch") for a in node.names)
            ):
                out.add(name)
    return sorted(out)


def workflow_sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(WORKFLOWS_DIR.glob("*.py"))}


def test_the_baseline_stands_for_every_patch_the_code_asks():
    asked = {pid for _, pid in asked_patches(workflow_sources())}
    assert asked == patches.IN_BASELINE | patches.AFTER_BASELINE
    assert not patches.IN_BASELINE & patches.AFTER_BASELINE  # a patch is in one or the other


def test_twin_a_patch_outside_the_baseline_is_reported():
    sources = workflow_sources()
    sources["extra.py"] = (
        'from workflows import _patches\nX = "new-one"\n_patches.patched(X)\n'
        "_patches.patched(acts.Y)\n"
    )
    asked = {pid for _, pid in asked_patches(sources)}
    listed = patches.IN_BASELINE | patches.AFTER_BASELINE
    assert asked - listed == {"new-one", "<unresolved _patches.patched(acts.Y)>"}


def test_no_workflow_asks_a_patch_around_the_baseline():
    assert direct_patched(workflow_sources()) == []


def test_twin_a_direct_workflow_patched_is_reported():
    sources = {
        "a.py": "from temporalio import workflow\nworkflow.patched('x')\n",
        "b.py": "import temporalio\ntemporalio.workflow.deprecate_patch('x')\n",
        "c.py": "from temporalio.workflow import patched\n",
    }
    assert direct_patched(sources) == ["a.py", "b.py", "c.py"]


#: What in a workflow's code can lead to a patch: asking one, a registry call (``local-registry-
#: calls``), a stack wait (``event-waits``).
ASKS = ("_patches.patched(", ".registry(", "wait_for_stack(")


def may_ask(cls: type, helpers: set[str]) -> bool:
    """Whether the class (with its bases from workflows/) asks, or calls a helper function that
    does (``helpers``: names of the package's module-level functions that ask)."""
    own = "".join(inspect.getsource(c) for c in cls.__mro__ if c.__module__ != "builtins")
    return any(a in own for a in ASKS) or any(f"{h}(" in own for h in helpers)


def asking_helpers(sources: dict[str, str]) -> set[str]:
    names = set()
    for text in sources.values():
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(a in ast.unparse(node) for a in ASKS):
                    names.add(node.name)
    return names


def missing_from_baseline(classes: list[type], sources: dict[str, str]) -> set[str]:
    helpers = asking_helpers(sources)
    return {
        c.__temporal_workflow_definition.name  # type: ignore[attr-defined]
        for c in classes
        if may_ask(c, helpers)
    } - patches.BASELINE_TYPES


def test_every_type_that_can_ask_a_patch_takes_the_baseline_first():
    assert missing_from_baseline(list(WORKFLOWS), workflow_sources()) == set()
    for cls in WORKFLOWS:
        name = cls.__temporal_workflow_definition.name  # type: ignore[attr-defined]
        if name not in patches.BASELINE_TYPES:
            continue
        init = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__))).body[0]
        assert isinstance(init, ast.FunctionDef), name
        body = [
            n
            for n in init.body
            if not isinstance(n, ast.Expr) or not isinstance(n.value, ast.Constant)
        ]
        assert ast.unparse(body[0]) == "_patches.start(self)", (name, ast.unparse(body[0]))


@workflow.defn(name="Sneaky", sandboxed=False)
class Sneaky:
    """The planted defect of the twin below: a type that makes a registry call (a patch) and is
    not among the baseline's types."""

    @workflow.run
    async def run(self) -> None:
        from workflows import _activities as acts

        await acts.org_regions.registry("x")  # type: ignore[arg-type]


def test_twin_a_type_that_asks_without_the_baseline_is_reported():
    assert missing_from_baseline([Sneaky], workflow_sources()) == {"Sneaky"}
