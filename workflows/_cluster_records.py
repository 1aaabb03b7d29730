"""The bookkeeping of ``ClusterLifecycle`` (state, registry, e-mail, drop-box results, billed
segments) and its ``resize`` update: a mixin of :class:`workflows.clusters.ClusterLifecycleWorkflow`,
kept apart so the entity workflow's module holds its lifecycle."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from bridgehead import metrics
    from bridgehead.models import (
        ClusterLifecycleRun,
        ClusterResult,
        ClusterRuntime,
        ClusterState,
        DropboxResultInput,
        NotifyInput,
        RegisterClusterInput,
        ResizeInput,
        ResizeResult,
        ResizeStackInput,
        StackPoll,
        StackRef,
        UsageSegment,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import request_token, require_payload, root_message, upsert
from workflows._options import AWS_CALL, NOTIFY
from workflows._waiting import StackHints, wait_for_stack

DropboxSuffix = Literal["cf-created", "cf-failed", "cf-deleted", "cf-rejected"]
_DROPBOX_SUFFIX: dict[str, DropboxSuffix] = {
    "running": "cf-created",
    "failed": "cf-failed",
    "delete-failed": "cf-failed",
    "deleted": "cf-deleted",
}


class RecordsCluster:
    """``resize``, and what every step of the lifecycle records and tells."""

    if TYPE_CHECKING:
        _in: ClusterLifecycleRun
        _rt: ClusterRuntime
        _lock: asyncio.Lock
        _hints: StackHints

        @property
        def _compute_type(self) -> str: ...

    @workflow.update
    async def resize(self, req: ResizeInput | None = None) -> ResizeResult:
        """Change the compute node count through a stack update; billing follows the new count."""
        assert req is not None  # the validator refused a missing payload
        async with self._lock:
            if self._rt.state != ClusterState.RUNNING or self._rt.delete_requested_at is not None:
                raise ApplicationError(f"cluster is {self._rt.state.value}; resize needs RUNNING")
            rt = self._rt
            rt.resize_generation += 1
            await acts.resize_stack(
                ResizeStackInput(
                    org_id=self._in.org_id,
                    region=self._in.region,
                    stack_name=rt.stack_name,
                    compute_nodes=req.compute_nodes,
                    client_request_token=request_token(f"resize-{rt.resize_generation}"),
                ),
                summary=f"resize to {req.compute_nodes} compute nodes",
                **AWS_CALL,
            )
            poll = await wait_for_stack(
                StackRef(
                    org_id=self._in.org_id,
                    region=self._in.region,
                    stack_name=rt.stack_name,
                    expect="update",
                ),
                self._progress,
                "wait for resize",
                events=self._hints,
            )
            if not poll.succeeded and poll.status != "CREATE_COMPLETE":
                raise ApplicationError(
                    f"resize failed: {poll.failure_resource or ''} {poll.failure_reason or poll.status}".strip()
                )
            now = workflow.now()
            rt.segments[-1].end = now
            rt.segments.append(self._segment(now, req.compute_nodes))
            rt.compute_nodes = req.compute_nodes
            await self._register(ClusterState.RUNNING)
            return ResizeResult(compute_nodes=rt.compute_nodes, state=rt.state)

    @resize.validator
    def _validate_resize(self, req: ResizeInput | None = None) -> None:
        require_payload(req, "resize", '{"compute_nodes": 4}')
        assert req is not None
        if self._rt.state != ClusterState.RUNNING or self._rt.delete_requested_at is not None:
            raise ApplicationError(f"cluster is {self._rt.state.value}; resize needs RUNNING")
        if req.compute_nodes > self._in.config.compute_max_nodes:
            raise ApplicationError(
                f"compute_nodes: {req.compute_nodes} exceeds compute_max_nodes ({self._in.config.compute_max_nodes})"
            )
        if req.compute_nodes == self._rt.compute_nodes:
            raise ApplicationError(
                f"compute_nodes: the cluster already has {req.compute_nodes} compute nodes"
            )

    async def _finish(self, state: ClusterState) -> ClusterResult:
        if _patches.patched("final-state-after-registry"):
            # ``status`` / ``ClusterStatus`` say DELETED (CANCELLED) only once the registry agrees
            # and the admin was told, so ``cluster delete --wait`` never returns early.
            await self._register(state)
            if state == ClusterState.DELETED:
                await self._notify(
                    "deleted",
                    f"Cluster {self._in.name} deleted",
                    f"Cluster {self._in.name} in {self._in.region} was deleted.",
                )
            self._set(state)
            return self._result()
        self._set(state)
        await self._register(state)
        if state == ClusterState.DELETED:
            await self._notify(
                "deleted",
                f"Cluster {self._in.name} deleted",
                f"Cluster {self._in.name} in {self._in.region} was deleted.",
            )
        return self._result()

    # --- helpers --------------------------------------------------------------------------------------
    def _result(self) -> ClusterResult:
        rt = self._rt
        return ClusterResult(
            org_id=self._in.org_id,
            name=self._in.name,
            state=rt.state,
            login_address=self._login,
            failure_resource=rt.failure_resource,
            failure_reason=rt.failure_reason,
            segments=rt.segments,
            compute_instance_type=self._compute_type if rt.attempts or rt.segments else None,
            attempts=rt.attempts,
        )

    @property
    def _login(self) -> str | None:
        """The head node's public address, else its private one (a head node without a public IP
        is reached through the customer's VPN or bastion)."""
        out = self._rt.outputs
        return out.get("LoginAddress") or out.get("HeadPrivateIp") or None

    async def _dropbox_result(self, kind: str, body: str) -> None:
        """Drop-box clusters also report in the user's S3 prefix (``<name>.cf-created`` etc.)."""
        suffix = _DROPBOX_SUFFIX.get(kind)
        if self._in.dropbox is None or suffix is None:
            return
        text = self._login or "(no address)" if kind == "running" else body
        try:
            await acts.write_dropbox_result(
                DropboxResultInput(
                    target=self._in.dropbox, cluster=self._in.name, suffix=suffix, body=text
                ),
                summary=f"drop-box: {suffix}",
                **AWS_CALL,
            )
        except ActivityError as e:
            workflow.logger.warning(
                f"drop-box result not written: {root_message(e)}",
                extra={"org_id": self._in.org_id, "cluster": self._in.name},
            )

    def _segment(self, start: datetime, nodes: int) -> UsageSegment:
        c = self._in.config
        return UsageSegment(
            start=start,
            head_instance_type=c.head_instance_type,
            compute_instance_type=self._compute_type,
            compute_nodes=nodes,
        )

    def _progress(self, poll: StackPoll) -> None:
        if poll.events:
            self._rt.events = poll.events

    def _set(self, state: ClusterState) -> None:
        if state != self._rt.state:
            metrics.count("bridgehead_cluster_transitions", state=state.value)
        self._rt.state = state
        upsert(status=state.value)
        workflow.set_current_details(
            f"**{state.value}** in {self._in.region}"
            + (f", stack `{self._rt.stack_name}`" if self._rt.stack_name else "")
        )
        workflow.logger.info(
            f"cluster {state.value}", extra={"org_id": self._in.org_id, "cluster": self._in.name}
        )

    def _ignored(self, signal: str) -> None:
        workflow.logger.info(
            f"signal {signal} ignored in state {self._rt.state.value}",
            extra={"org_id": self._in.org_id, "cluster": self._in.name},
        )

    async def _register(self, state: ClusterState) -> None:
        i, rt = self._in, self._rt
        await acts.register_cluster.registry(
            RegisterClusterInput(
                org_id=i.org_id,
                name=i.name,
                region=i.region,
                state=state,
                stack_name=rt.stack_name,
                owner=i.owner,
                login_address=self._login,
                failure_reason=rt.failure_reason,
                segments=rt.segments,
                head_instance_type=i.config.head_instance_type,
                compute_instance_type=self._compute_type,
            ),
            summary=f"registry: {state.value}",
        )

    async def _notify(self, kind: str, subject: str, body: str) -> None:
        await self._dropbox_result(kind, body)
        if not self._rt.admin_email:
            return
        try:
            await acts.notify(
                NotifyInput(
                    to=self._rt.admin_email,
                    subject=subject,
                    body=body,
                    idempotency_key=f"{workflow.info().workflow_id}/{workflow.info().first_execution_run_id}/{kind}",
                ),
                summary=f"email admin: {kind}",
                **NOTIFY,
            )
        except ActivityError as e:
            # Never block the lifecycle on email; the status and registry carry the same facts.
            workflow.logger.warning(
                f"notification failed: {root_message(e)}",
                extra={"org_id": self._in.org_id, "cluster": self._in.name},
            )
