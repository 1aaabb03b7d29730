"""``ClusterLifecycle``: one entity workflow per cluster, from validation to deletion.

States: VALIDATING -> CREATING -> RUNNING (<-> STOPPED) -> DELETING -> DELETED, or FAILED /
CANCELLED. RUNNING and STOPPED, with the cost guard rails, live in workflows/_guardrails.py.
A FAILED cluster stays open (it blocks regional cleanup) until it receives ``delete``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.capacity import connect_info
    from bridgehead.models import (
        ClusterConfig,
        ClusterLifecycleRun,
        ClusterPlan,
        ClusterResult,
        ClusterRuntime,
        ClusterState,
        ClusterStatus,
        QuotaCheckInput,
        QuotaReport,
        StackEventNotice,
        StackPoll,
        StackRef,
        StackRequest,
        ValidateClusterInput,
    )

from workflows import _activities as acts
from workflows import _guardrails as guard
from workflows import _patches
from workflows._capacity import FailsOverCapacity
from workflows._cluster_records import RecordsCluster
from workflows._common import (
    ReportsUnknownRequests,
    bind_input,
    continued_by_itself,
    request_token,
    require_input,
    root_message,
    upsert,
)
from workflows._options import AWS_CALL
from workflows._waiting import StackHints, wait_for_stack

#: DELETE_FAILED is retried this many times (with a growing pause) before it is reported.
DELETE_ATTEMPTS = 3
_SIGNALS = ("cancel", "delete", "stack_event", *guard.SIGNALS)
_UPDATES = ("resize", *guard.UPDATES)
_EXAMPLE = (
    '{"org_id": "acme", "name": "c1", "region": "us-east-2", "config": {"head_instance_type": "t3.medium", '
    '"compute_instance_type": "c5.xlarge", "compute_initial_nodes": 2, "compute_max_nodes": 4}}'
)


@workflow.defn(name="ClusterLifecycle", failure_exception_types=[ValidationError])
class ClusterLifecycleWorkflow(
    guard.ClusterGuardrails, FailsOverCapacity, RecordsCluster, ReportsUnknownRequests
):
    KNOWN_SIGNALS = _SIGNALS
    KNOWN_UPDATES = _UPDATES

    @workflow.init
    def __init__(self, input: ClusterLifecycleRun | None = None) -> None:
        _patches.start(self)  # first: the run decides its patch baseline before any handler
        # A start without input fails in ``run``; the placeholder only keeps queries answerable.
        self._in = input or ClusterLifecycleRun.model_construct(
            org_id="-",
            name="-",
            region="-",
            config=ClusterConfig.model_construct(compute_initial_nodes=0),
        )
        # Carried state only from this workflow's own previous run (see workflows/_common.py).
        carried = self._in.runtime if continued_by_itself() else None
        self._rt = carried or ClusterRuntime(compute_nodes=self._in.config.compute_initial_nodes)
        if not self._rt.stack_name and input is not None:
            self._rt.stack_name = ids.cluster_stack(input.org_id, input.name)
        self._lock = asyncio.Lock()
        self._unknown: list[str] = []
        self._plan: ClusterPlan | None = None
        self._hints = StackHints()

    # --- interface ------------------------------------------------------------------------------
    def _log_subject(self) -> dict[str, str]:
        return {"org_id": self._in.org_id, "cluster": self._in.name}

    @workflow.query
    def status(self) -> ClusterStatus:
        rt = self._rt
        return ClusterStatus(
            org_id=self._in.org_id,
            name=self._in.name,
            region=self._in.region,
            state=rt.state,
            stack_name=rt.stack_name,
            compute_nodes=rt.compute_nodes,
            login_address=self._login,
            outputs=rt.outputs,
            latest_events=rt.events,
            failure_resource=rt.failure_resource,
            failure_reason=rt.failure_reason,
            ignored_requests=self._unknown[-20:],
            compute_instance_type=self._compute_type if rt.attempts or rt.segments else None,
            attempts=rt.attempts,
            connect=connect_info(rt.outputs, self._in.region, self._in.config)
            if rt.state == ClusterState.RUNNING
            else None,
            deletion_protection=self._protected,
            pending_action=rt.pending,
            stopped_at=rt.stopped_at,
            decisions=rt.decisions,
        )

    @workflow.signal
    def cancel(self) -> None:
        """Stop creating: delete whatever was created, end CANCELLED, bill nothing.

        Signal handlers only record the request and the time it arrived; the main flow decides what
        it means. Deciding here from the state would make the outcome depend on whether an activity
        result delivered in the same workflow task was applied first, which a cached worker and a
        replaying one may do in different orders (found by the throughput benchmark under load).
        """
        self._rt.cancel_requested = True
        if self._rt.state not in (ClusterState.VALIDATING, ClusterState.CREATING):
            self._ignored("cancel")

    @workflow.signal
    def delete(self) -> None:
        """Delete the cluster. Billing stops at the moment this signal is received. Refused (and
        recorded in ``status``) while deletion protection is on."""
        rt = self._rt
        if self._refuse_delete():
            return
        # Recorded whatever the state (see ``cancel``): before RUNNING the main flow treats it as a
        # cancel (nothing billable exists yet); while RUNNING or FAILED it starts the deletion.
        if rt.delete_requested_at is None:
            rt.delete_requested_at = workflow.now()
        if rt.state in (ClusterState.DELETING, ClusterState.DELETED, ClusterState.CANCELLED):
            self._ignored("delete")

    @workflow.signal
    def stack_event(self, notice: StackEventNotice | None = None) -> None:
        """A hint from the stack-event consumer: look at the stack now (workflows/_waiting.py)."""
        if not self._hints.receive(notice, self._rt.stack_name, self._in.region):
            self._ignored("stack_event")

    # --- lifecycle ----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ClusterLifecycleRun | None = None) -> ClusterResult:
        require_input(input, "ClusterLifecycle", _EXAMPLE)
        assert input is not None
        parent = workflow.info().parent
        # Only a DropboxRequest (ids bound to the request file it read) starts clusters as a child.
        from_dropbox = parent is not None and parent.workflow_id.startswith("dropbox-")
        bind_input(
            ids.cluster_workflow_id(input.org_id, input.name),
            carried={"runtime": input.runtime, "dropbox": input.dropbox},
            fresh_allowed=("dropbox",) if from_dropbox else (),
        )
        rt = self._rt
        upsert(org_id=input.org_id, cluster=input.name, region=input.region, status=rt.state.value)
        if rt.state == ClusterState.VALIDATING:
            plan = await self._validate()
            if input.dry_run:
                return ClusterResult(
                    org_id=input.org_id,
                    name=input.name,
                    state=ClusterState.VALIDATING,
                    rendered_template=plan.template_body,
                    price=plan.price,
                )
            if self._stop_creating():
                return await self._finish(ClusterState.CANCELLED)
            await self._register(ClusterState.CREATING)
            self._set(ClusterState.CREATING)
            try:
                await acts.create_stack(
                    StackRequest(
                        org_id=input.org_id,
                        region=input.region,
                        stack_name=rt.stack_name,
                        **plan.template_fields(),
                        parameters=self._first_attempt(plan),
                        tags=plan.tags,
                        client_request_token=request_token("cluster-create"),
                        keep_on_failure=input.keep_failed_stack,
                    ),
                    summary=f"create stack {rt.stack_name} in {input.region}",
                    **AWS_CALL,
                )
            except ActivityError as e:
                rt.failure_reason = root_message(e)
                await self._fail(delete_stack=False)
        while rt.state == ClusterState.CREATING:  # again after a capacity failover
            await self._wait_creation()
        if rt.state in (ClusterState.RUNNING, ClusterState.STOPPED):
            await self._run_until_deleted()
        if rt.state == ClusterState.FAILED:
            await self._wait_failed_removed()
        if rt.state == ClusterState.DELETING:
            await self._delete()
        return self._result()

    async def _validate(self) -> ClusterPlan:
        i = self._in
        # The template's body stays out of history (about 13 KB in each of two events, and in the
        # cached workflow): create_stack renders it from the plan. A dry run returns the body.
        with_body = i.dry_run or not _patches.patched("template-by-reference")
        plan: ClusterPlan = await acts.validate_cluster.registry(
            ValidateClusterInput(
                org_id=i.org_id,
                name=i.name,
                region=i.region,
                config=i.config,
                owner=i.owner,
                with_body=with_body,
            ),
            summary="validate request and render template",
        )
        if plan.errors:
            await self._reject(
                "invalid cluster request: " + "; ".join(plan.errors), "InvalidClusterRequest"
            )
        self._rt.admin_email = plan.admin_email
        c = i.config
        nodes = {c.head_instance_type: 1}
        first = c.compute_types[0]
        nodes[first] = nodes.get(first, 0) + c.compute_max_nodes
        quota: QuotaReport = await acts.check_vcpu_quota(
            QuotaCheckInput(org_id=i.org_id, region=i.region, nodes=nodes),
            summary="check EC2 vCPU quota",
            **AWS_CALL,
        )
        if quota.available and not quota.sufficient:
            await self._reject(f"invalid cluster request: {quota.message}", "InsufficientQuota")
        return plan

    async def _reject(self, reason: str, kind: str) -> None:
        """End a refused request FAILED with its reason where operators look (``status``, the
        ``ClusterStatus`` search attribute, the CLI), not stuck at VALIDATING."""
        if _patches.patched("rejected-shows-failed"):
            self._rt.failure_reason = reason
            self._set(ClusterState.FAILED)
        raise ApplicationError(reason, type=kind)

    def _stop_creating(self) -> bool:
        """A cancel, or a delete received before the cluster was RUNNING."""
        return self._rt.cancel_requested or self._rt.delete_requested_at is not None

    async def _wait_creation(self) -> None:
        """Poll in windows; a cancel interrupts the current window at once."""
        rt = self._rt
        ref = StackRef(org_id=self._in.org_id, region=self._in.region, stack_name=rt.stack_name)
        poll = await wait_for_stack(
            ref,
            self._progress,
            f"wait for stack {rt.stack_name}",
            interrupt=self._stop_creating,
            events=self._hints,
        )
        if self._stop_creating():
            if rt.attempts:
                rt.attempts[-1].outcome = "cancelled"
            self._set(ClusterState.DELETING)
            await self._delete(final=ClusterState.CANCELLED)
            return
        assert poll is not None
        if poll.succeeded:
            rt.outputs = poll.outputs
            started = (
                poll.completed_at
                if poll.completed_at and poll.completed_at <= workflow.now()
                else workflow.now()
            )
            rt.segments = [self._segment(started, rt.compute_nodes)]
            if rt.attempts:
                rt.attempts[-1].outcome = "running"
            self._set(ClusterState.RUNNING)
            await self._register(ClusterState.RUNNING)
            await self._notify(
                "running",
                f"Cluster {self._in.name} is running",
                f"Cluster {self._in.name} in {self._in.region} is running. Log in at {self._login or '(no address)'}.",
            )
        else:
            rt.failure_resource, rt.failure_reason = (
                poll.failure_resource,
                poll.failure_reason or poll.status,
            )
            await self._explain_bootstrap_failure(poll)
            if await self._next_attempt(poll):
                return  # still CREATING: the run waits for the next attempt
            await self._fail(delete_stack=not self._in.keep_failed_stack)

    async def _run_until_deleted(self) -> None:
        if _patches.patched("guardrails"):
            await self._guarded_run()  # workflows/_guardrails.py
            return
        rt = self._rt
        while True:
            await workflow.wait_condition(
                lambda: (
                    rt.delete_requested_at is not None
                    or workflow.info().is_continue_as_new_suggested()
                )
            )
            if rt.delete_requested_at is not None:
                break
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self._in.model_copy(update={"runtime": rt}))
        async with self._lock:  # let a resize in flight finish first
            rt.segments[-1].end = max(rt.segments[-1].start, rt.delete_requested_at)
            self._set(ClusterState.DELETING)
            await self._register(ClusterState.DELETING)

    async def _wait_failed_removed(self) -> None:
        rt = self._rt
        await workflow.wait_condition(lambda: rt.delete_requested_at is not None)
        self._set(ClusterState.DELETING)
        await self._register(ClusterState.DELETING)

    async def _delete(self, final: ClusterState = ClusterState.DELETED) -> None:
        rt = self._rt
        ref = StackRef(
            org_id=self._in.org_id,
            region=self._in.region,
            stack_name=rt.stack_name,
            expect="delete",
        )
        poll: StackPoll | None = None
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            await acts.delete_stack(
                ref.model_copy(
                    update={
                        "client_request_token": request_token(f"delete-{final.value}-{attempt}")
                    }
                ),
                summary=f"delete stack {rt.stack_name}",
                **AWS_CALL,
            )
            poll = await wait_for_stack(
                ref, self._progress, f"wait for deletion of {rt.stack_name}", events=self._hints
            )
            if poll.succeeded:
                break
            await workflow.sleep(timedelta(minutes=2 * attempt))
        assert poll is not None
        if not poll.succeeded:
            rt.failure_resource = poll.failure_resource
            rt.failure_reason = f"deletion failed after {DELETE_ATTEMPTS} attempts: {poll.failure_reason or poll.status}"
            rt.delete_requested_at = None
            self._set(ClusterState.FAILED)
            await self._register(ClusterState.FAILED)
            await self._notify(
                "delete-failed", f"Cluster {self._in.name} could not be deleted", rt.failure_reason
            )
            await self._wait_failed_removed()
            await self._delete(final)
            return
        await self._finish(final)

    async def _fail(self, delete_stack: bool) -> None:
        rt = self._rt
        self._set(ClusterState.FAILED)
        rt.segments = []  # nothing is billed for a failed creation
        if delete_stack:
            ref = StackRef(
                org_id=self._in.org_id,
                region=self._in.region,
                stack_name=rt.stack_name,
                expect="delete",
                client_request_token=request_token("cleanup-failed"),
            )
            await acts.delete_stack(ref, summary="delete the failed stack", **AWS_CALL)
            await wait_for_stack(ref, None, "wait for failed stack deletion", events=self._hints)
        await self._register(ClusterState.FAILED)
        await self._notify(
            "failed",
            f"Cluster {self._in.name} failed",
            f"Creating cluster {self._in.name} failed at {rt.failure_resource or 'the stack'}: {rt.failure_reason}",
        )
