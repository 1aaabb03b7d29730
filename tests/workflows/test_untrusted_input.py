"""Every input is untrusted (issue #17), on the time-skipping server with recording fakes: a
workflow id not derived from the input, internal state in a fresh start, a start without input,
a string where a number is meant, a misspelled signal or update. Each ends with a clear error (or
is recorded) and no activity is ever called."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from bridgehead import ids
from bridgehead import models as m
from tests.support.stack_fakes import stack_poll
from tests.support.timeskip import serve

CFG = {
    "head_instance_type": "t3.medium",
    "compute_instance_type": "c5.xlarge",
    "compute_initial_nodes": 1,
    "compute_max_nodes": 2,
}
ORG = {
    "org_id": "acme",
    "display_name": "Acme",
    "admin_email": "a@acme.example",
    "aws_account_id": "222222222222",
}


def recorder(calls: list[str]) -> list:
    """Every activity a start could reach first; each records that it was called."""

    def fake(name: str):  # type: ignore[no-untyped-def]
        @activity.defn(name=name)
        def _f(_: object) -> None:
            calls.append(name)
            raise ApplicationError(f"{name} must not be called", non_retryable=True)

        return _f

    names = (
        "validate_cluster",
        "register_cluster",
        "delete_stack",
        "poll_stack",
        "register_organization",
        "org_regions",
        "check_vcpu_quota",
        "begin_foundation_delete",
        "verify_role",
        "scan_inbox",
        "load_dropbox_request",
    )
    return [fake(n) for n in names]


async def failure_of(env, wf_type: str, payload: object, wf_id: str, calls: list[str]) -> str:  # type: ignore[no-untyped-def]
    async with serve(env, recorder(calls), threads=2) as w:
        h = await w.start(wf_type, args=[] if payload is None else [payload], id=wf_id)
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
    cause = e.value.cause
    return f"{getattr(cause, 'type', '')}: {getattr(cause, 'message', cause)}"


def cluster(**over: object) -> dict:
    return {"org_id": "acme", "name": "c1", "region": "us-east-1", "config": dict(CFG), **over}


RUNTIME = {"state": "DELETING", "stack_name": "bridgehead-victim--foundation-us-east-1"}
SEGMENT = {
    "state": "RUNNING",
    "segments": [
        {
            "start": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
            "head_instance_type": "t3.medium",
            "compute_instance_type": "c5.xlarge",
            "compute_nodes": 5000,
        }
    ],
}
CASES = [
    # (case, workflow type, input, workflow id, words the failure must contain)
    (
        "cluster id of another org",
        "ClusterLifecycle",
        cluster(org_id="eta", name="cross"),
        "cluster-zeta-cross",
        ["cluster-zeta-cross", "cluster-eta-cross"],
    ),
    (
        "org id of another org",
        "OnboardOrganization",
        {**ORG, "org_id": "bar"},
        "org-foo",
        ["org-foo", "org-bar"],
    ),
    (
        "runtime DELETING with a foundation's stack",
        "ClusterLifecycle",
        cluster(runtime=RUNTIME),
        "cluster-acme-c1",
        ["runtime", "internal"],
    ),
    (
        "runtime RUNNING with a back-dated segment",
        "ClusterLifecycle",
        cluster(runtime=SEGMENT),
        "cluster-acme-c1",
        ["runtime"],
    ),
    (
        "drop-box target from a direct start",
        "ClusterLifecycle",
        cluster(dropbox={"bucket": "any-bucket", "user": "u"}),
        "cluster-acme-c1",
        ["dropbox", "internal"],
    ),
    (
        "resume from a direct start",
        "OnboardOrganization",
        {**ORG, "resume": {"state": "READY", "role_arn": "arn:aws:iam::222222222222:role/x"}},
        "org-acme",
        ["resume", "internal"],
    ),
    (
        "string node count",
        "ClusterLifecycle",
        cluster(config={**CFG, "compute_initial_nodes": "2"}),
        "cluster-acme-c1",
        ["compute_initial_nodes", "a whole number"],
    ),
    (
        "float node count",
        "ClusterLifecycle",
        cluster(config={**CFG, "compute_initial_nodes": 2.0}),
        "cluster-acme-c1",
        ["compute_initial_nodes", "a whole number"],
    ),
    ("no input", "ClusterLifecycle", None, "cluster-acme-c1", ["needs a JSON input", '"org_id"']),
    (
        "no input",
        "OnboardOrganization",
        None,
        "org-acme",
        ["needs a JSON input", '"aws_account_id"'],
    ),
    (
        "cleanup id of another org",
        "CleanupRegion",
        {"org_id": "victim", "region": "us-east-1"},
        "org-acme-cleanup-us-east-1",
        ["org-victim-cleanup-us-east-1"],
    ),
    (
        "foundation id of another region",
        "ProvisionRegion",
        {"org_id": "acme", "region": "us-west-2"},
        "org-acme-region-us-east-1",
        ["org-acme-region-us-west-2"],
    ),
    (
        "images of another org",
        "ShareImages",
        {"org_id": "victim", "revoke": True},
        "org-acme-images",
        ["org-victim-images"],
    ),
    (
        "verification not numbered",
        "VerifyRole",
        {"org_id": "acme", "role_arn": "arn:aws:iam::222222222222:role/x"},
        "org-acme-verify-x",
        ["org-acme-verify-"],
    ),
    (
        "re-verification of another org",
        "ReverifyOrganization",
        {"org_id": "victim"},
        "org-acme-reverify-1",
        ["org-victim-reverify"],
    ),
    (
        "release id of another version",
        "ImageRelease",
        {"version": "v9", "images": {"us-east-1": "ami-0123456789abcdef0"}},
        "image-release-v1",
        ["image-release-v1", "image-release-v9"],
    ),
    (
        "release progress from a direct start",
        "ImageRelease",
        {
            "version": "v1",
            "images": {"us-east-1": "ami-0123456789abcdef0"},
            "carried": {
                "phase": "REVOKING",
                "source_region": "us-east-1",
                "images": {"us-east-1": "ami-0123456789abcdef0"},
                "previous_images": {"us-east-1": "ami-0fedcba987654321f"},
                "concurrency": 16,
                "grace_seconds": 0,
            },
        },
        "image-release-v1",
        ["carried", "internal"],
    ),
    (
        "release image that is not an image id",
        "ImageRelease",
        {"version": "v1", "images": {"us-east-1": "snap-0123456789abcdef0"}},
        "image-release-v1",
        ["images.us-east-1"],
    ),
    ("no input", "ImageRelease", None, "image-release-v1", ["needs a JSON input", '"version"']),
    (
        "org id with the name delimiter",
        "OnboardOrganization",
        {**ORG, "org_id": "acme--prod"},
        "org-acme--prod",
        ["org_id"],
    ),
    (
        "image revocation started directly (only offboarding revokes)",
        "ShareImages",
        {"org_id": "acme", "revoke": True},
        "org-acme-images",
        ["revoke", "offboard"],
    ),
    ("meter started without input", "BillingMeter", None, "billing-acme", ["needs a JSON input"]),
    (
        "Marketplace subscription without input (its task failed and was retried forever)",
        "MarketplaceSubscription",
        None,
        "marketplace-acme",
        ["needs a JSON input", "registration_token"],
    ),
    (
        "meter with a daily tick (Marketplace's window is six hours)",
        "BillingMeter",
        {"org_id": "acme", "tick_minutes": 1440},
        "billing-acme",
        ["tick_minutes"],
    ),
    (
        "meter tick that does not divide the hour",
        "BillingMeter",
        {"org_id": "acme", "tick_minutes": 7},
        "billing-acme",
        ["tick_minutes", "divide 60"],
    ),
]


@pytest.mark.parametrize(
    "case,wf_type,payload,wf_id,words", CASES, ids=[f"{c[1]}: {c[0]}" for c in CASES]
)
async def test_untrusted_start_fails_at_once_and_calls_nothing(
    ts_env, case, wf_type, payload, wf_id, words
):
    calls: list[str] = []
    text = await failure_of(ts_env, wf_type, payload, wf_id, calls)
    for w in words:
        assert w in text, (case, text)
    assert calls == [], f"{case}: activities were called: {calls}"


async def test_twin_the_matrix_catches_an_unchecked_start(ts_env, monkeypatch):
    """Planted defect: with the workflow-id check switched off, the first case of the matrix
    starts work (the fakes record the call) instead of failing at once."""
    monkeypatch.setattr(ids, "check_workflow_id", lambda *a, **k: None)
    calls: list[str] = []
    case = CASES[0]
    await failure_of(ts_env, case[1], case[2], case[3], calls)
    assert calls == ["validate_cluster"], "an unchecked start must reach the activities"


@pytest.fixture
async def own_env():  # type: ignore[no-untyped-def]
    """A time-skipping server of its own: a rejected update leaves the shared server's time
    skipping locked, which would stall the tests after this one."""
    from tests.conftest import new_ts_env

    env = await new_ts_env()
    yield env
    await env.shutdown()


async def test_misspelled_signal_is_recorded_and_unknown_update_refused(own_env):
    ts_env = own_env
    calls: list[str] = []

    @activity.defn(name="validate_cluster")
    def validate(req: m.ValidateClusterInput) -> m.ClusterPlan:
        return m.ClusterPlan(template_body="{}")

    @activity.defn(name="check_vcpu_quota")
    def quota(req: m.QuotaCheckInput) -> m.QuotaReport:
        return m.QuotaReport(region=req.region, available=False)

    @activity.defn(name="register_cluster")
    def register(req: m.RegisterClusterInput) -> None:
        calls.append(f"register:{req.state.value}")

    @activity.defn(name="create_stack")
    def create(req: m.StackRequest) -> m.StackPoll:
        return stack_poll(req.stack_name)

    @activity.defn(name="poll_stack")
    def poll(ref: m.StackRef) -> m.StackPoll:
        return stack_poll(ref.stack_name)

    @activity.defn(name="check_stack")
    def check(ref: m.StackRef) -> m.StackPoll:
        return poll(ref)

    async with serve(ts_env, [validate, quota, register, create, poll, check], threads=2) as w:
        h = await w.start_cluster(m.ClusterConfig(**CFG), f"u{uuid.uuid4().hex[:6]}")
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.05)
        await h.signal("Delete")
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await h.execute_update("Resize", {"compute_nodes": 2})
        assert "unknown update 'Resize' refused" in str(e.value.cause) and "'resize'" in str(
            e.value.cause
        )
        s = await h.query("status", result_type=m.ClusterStatus)
        assert (
            len(s.ignored_requests) == 1
            and "'Delete'" in s.ignored_requests[0]
            and "'delete'" in s.ignored_requests[0]
        )
        assert s.state == m.ClusterState.CREATING  # the misspelled delete did not act
        await h.terminate("test over")


async def test_a_rejected_request_ends_failed_with_its_reason_everywhere(ts_env):
    """Not stuck at VALIDATING: ``status``, the ``ClusterStatus`` search attribute and the run's
    failure all say FAILED and why."""
    from workflows._common import CLUSTER_STATUS

    @activity.defn(name="validate_cluster")
    def validate(req: m.ValidateClusterInput) -> m.ClusterPlan:
        return m.ClusterPlan(
            errors=[
                "region: the regional foundation in us-east-1 is missing, not READY (run ProvisionRegion)"
            ]
        )

    async with serve(ts_env, [validate], threads=2) as w:
        h = await w.start_cluster(m.ClusterConfig(**CFG), f"r{uuid.uuid4().hex[:6]}")
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
        s = await h.query("status", result_type=m.ClusterStatus)
    assert "not READY" in str(e.value.cause)
    assert s.state == m.ClusterState.FAILED and "not READY" in (s.failure_reason or ""), s
    assert (await h.describe()).typed_search_attributes.get(CLUSTER_STATUS) == "FAILED"


#: The attack of the security review: internal state naming another stack (the org's foundation)
#: in a start that Temporal itself would re-run as if continued (cron, or a retry policy).
_FOUNDATION_DELETE = cluster(
    name="zz1",
    runtime={"state": "DELETING", "stack_name": ids.foundation_stack("acme", "us-east-1")},
)


first_run: list[str | None] = []


async def _run_re_started(env, calls: list[str], **start: object) -> str:
    from datetime import timedelta

    from tests.workflows.test_cluster_timeskip import skip

    # type: ignore[no-untyped-def]
    """Start the crafted cluster with ``start`` options (cron or retry policy), let Temporal make
    its later runs (three minutes of skipped time), and return the first run's failure."""
    async with serve(env, recorder(calls), threads=2) as w:
        wid = ids.cluster_workflow_id("acme", "zz1")
        h = await w.start("ClusterLifecycle", _FOUNDATION_DELETE, id=wid, **start)
        first = env.client.get_workflow_handle(wid, run_id=h.result_run_id)
        first_run[:] = [h.result_run_id]
        with pytest.raises(WorkflowFailureError) as e:
            await first.result(follow_runs=False)
        await skip(env, timedelta(seconds=10))  # past the retry policy's 1 s interval
        await asyncio.sleep(1)
    cause = e.value.cause
    return f"{getattr(cause, 'type', '')}: {getattr(cause, 'message', cause)}"


async def test_a_retry_policy_cannot_smuggle_internal_state_into_a_retry(ts_env):
    from datetime import timedelta

    from temporalio.common import RetryPolicy

    calls: list[str] = []
    retry = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
    text = await _run_re_started(ts_env, calls, retry_policy=retry)
    assert "BadInput" in text and "runtime" in text, text
    assert calls == [], f"activities were called: {calls}"
    # The refusal is non-retryable: Temporal made no second run to carry the input again.
    wid = ids.cluster_workflow_id("acme", "zz1")
    latest = await ts_env.client.get_workflow_handle(wid).describe()
    assert latest.run_id == first_run[0], "a retry run was made"


def test_only_a_run_continued_by_itself_carries_state():
    """The rule over ``workflow.info()``: a continued run (first attempt, no cron) carries state;
    a cron run and a retry (Temporal sets ``continued_run_id`` on both) do not; nor a fresh start.
    The cron and retry cases are seen on a real server in
    ``tests/integration/test_cron_and_retry.py``."""
    from bridgehead import runs

    assert runs.continued_by_itself("r1", None, 1)
    assert not runs.continued_by_itself(None, None, 1)
    assert not runs.continued_by_itself("r1", "* * * * *", 1)
    assert not runs.continued_by_itself("r1", None, 2)
    assert runs.cron_refusal("@every 5s") and runs.cron_refusal(None) is None


async def _status_of_a_crafted_resume(env, runner=None) -> str:  # type: ignore[no-untyped-def]
    """``OnboardOrganization`` started under its own id with ``resume`` saying READY: the run is
    refused; what does a handler of that run (``status`` here; an update sent with the start would
    see the same) find as the organisation's state?"""
    calls: list[str] = []
    payload = {**ORG, "resume": {"state": "READY", "role_arn": "arn:aws:iam::222222222222:role/x"}}
    async with serve(env, recorder(calls), threads=2, runner=runner) as w:
        h = await w.start("OnboardOrganization", args=[payload], id="org-acme")
        with pytest.raises(WorkflowFailureError) as e:
            await h.result()
        assert "internal state" in str(e.value.cause), e.value.cause
        state = (await h.query("status", result_type=m.OrgStatus)).state.value
    assert calls == []
    return state


async def test_handlers_of_a_crafted_start_never_see_its_carried_state(ts_env):
    """Found by an adversarial review (session 13): update validators and handlers run before
    ``run`` refuses the start, on the state ``__init__`` built from the input's carried fields."""
    assert await _status_of_a_crafted_resume(ts_env) != "READY"


async def test_twin_init_trusting_the_carried_state_shows_it_to_handlers(ts_env, monkeypatch):
    from temporalio.worker import UnsandboxedWorkflowRunner

    import workflows.onboarding as onboarding

    monkeypatch.setattr(onboarding, "continued_by_itself", lambda: True)
    assert await _status_of_a_crafted_resume(ts_env, UnsandboxedWorkflowRunner()) == "READY"
