"""The drop-box: ``DropboxWatch`` (run by the Schedule ``dropbox-watch``: every
``dropbox_every_seconds``, or every ``dropbox_safety_net_seconds`` once the inbox's S3 events start
requests, see
:mod:`activities.dropbox_events`) lists request files and hands each to its own ``DropboxRequest``
workflow, whose id is derived from the file's key and ETag. Temporal refuses a second workflow with
the same id, so each file is handled exactly once even if a watcher run dies between reading and
acting and the next run sees the file again, or its event started it first.
"""

from __future__ import annotations

from typing import Literal

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        ClusterLifecycleRun,
        ClusterPlan,
        DropboxParsed,
        DropboxRequestInput,
        DropboxResultInput,
        DropboxScan,
        DropboxTarget,
        DropboxWatchInput,
        ValidateClusterInput,
    )

from workflows import _activities as acts
from workflows._common import bind_input, require_input, root_message, upsert
from workflows._options import AWS_CALL, REGISTRY

_ENDED = ("DELETED", "CANCELLED")


DropboxSuffix = Literal["cf-created", "cf-failed", "cf-deleted", "cf-rejected"]


@workflow.defn(name="DropboxWatch", failure_exception_types=[ValidationError])
class DropboxWatchWorkflow:
    @workflow.run
    async def run(self, input: DropboxWatchInput | None = None) -> int:
        input = input or DropboxWatchInput()
        bind_input(ids.DROPBOX_WATCH_SCHEDULE, scheduled=True)
        scan: DropboxScan = await acts.scan_inbox(
            input, summary="list drop-box requests", **AWS_CALL
        )
        started = 0
        for f in scan.files:
            try:
                await workflow.start_child_workflow(
                    "DropboxRequest",
                    DropboxRequestInput(bucket=scan.bucket, key=f.key, etag=f.etag),
                    id=ids.dropbox_request_id(f.key, f.etag),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"handle {f.key}",
                )
                started += 1
            except WorkflowAlreadyStartedError:
                pass  # this exact file is being (or was) handled
        return started


@workflow.defn(name="DropboxRequest", failure_exception_types=[ValidationError])
class DropboxRequestWorkflow:
    @workflow.run
    async def run(self, input: DropboxRequestInput | None = None) -> str:
        require_input(
            input,
            "DropboxRequest",
            '{"bucket": "bridgehead-inbox", "key": "home/<user>/<CLUSTER>.cf-create", "etag": "<etag>@<time>"}',
        )
        assert input is not None
        bind_input(ids.dropbox_request_id(input.key, input.etag))
        req: DropboxParsed = await acts.load_dropbox_request(
            input, summary=f"read {input.key}", **AWS_CALL
        )
        if req.org_id:
            upsert(org_id=req.org_id, cluster=req.cluster)
        self._in, self._req = input, req
        self._target = DropboxTarget(bucket=input.bucket, user=req.user)
        if req.error:
            return await self._reject(req.error)
        existing: str | None = await acts.cluster_owner(
            req, summary="look up the cluster", **REGISTRY
        )  # type: ignore[arg-type]
        owner, _, state = (existing or "::").partition(":")
        if req.kind == "create":
            return await self._create(existing is not None and state not in _ENDED, owner, state)
        if existing is None or state in _ENDED:
            return await self._reject(f"there is no cluster named {req.cluster} to delete")
        if owner != req.owner:
            return await self._reject(
                f"cluster {req.cluster} belongs to {owner or 'an administrator'}, not to {req.owner}"
            )
        assert req.org_id is not None  # a parsed request names its organisation
        try:
            await workflow.get_external_workflow_handle(
                ids.cluster_workflow_id(req.org_id, req.cluster)
            ).signal("delete")
        except FailureError as e:
            return await self._reject(f"could not reach cluster {req.cluster}: {e}")
        await self._consume()  # the cluster writes .cf-deleted once its stack is gone
        return "delete requested"

    async def _create(self, exists: bool, owner: str, state: str) -> str:
        req = self._req
        assert req.config is not None and req.org_id and req.region
        if exists:
            whose = "you already have" if owner == req.owner else "your organisation already has"
            return await self._reject(
                f"{whose} a cluster named {req.cluster} ({state}); choose another name or delete it first"
            )
        plan: ClusterPlan = await acts.validate_cluster(
            ValidateClusterInput(
                org_id=req.org_id,
                name=req.cluster,
                region=req.region,
                config=req.config,
                owner=req.owner,
            ),
            summary="validate the requested cluster",
            **REGISTRY,
        )
        if plan.errors:
            return await self._reject("; ".join(plan.errors))
        try:
            await workflow.start_child_workflow(
                "ClusterLifecycle",
                ClusterLifecycleRun(
                    org_id=req.org_id,
                    name=req.cluster,
                    region=req.region,
                    config=req.config,
                    owner=req.owner,
                    dropbox=self._target,
                ),
                id=ids.cluster_workflow_id(req.org_id, req.cluster),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"cluster {req.cluster} for {req.owner}",
            )
        except WorkflowAlreadyStartedError:
            return await self._reject(
                f"a cluster named {req.cluster} is already being created or running"
            )
        await self._consume()
        return "cluster started"

    def _result(self, suffix: DropboxSuffix, body: str) -> DropboxResultInput:
        return DropboxResultInput(
            target=self._target,
            cluster=self._req.cluster,
            suffix=suffix,
            body=body,
            request_key=self._in.key,
            request_version=self._in.etag,
        )

    async def _reject(self, reason: str) -> str:
        workflow.logger.info(
            f"drop-box request rejected: {reason}",
            extra={"key": self._in.key, "org_id": self._req.org_id},
        )
        await acts.write_dropbox_result(
            self._result("cf-rejected", reason), summary="write .cf-rejected", **AWS_CALL
        )
        return f"rejected: {reason}"

    async def _consume(self) -> None:
        try:
            await acts.delete_dropbox_request(
                self._in, summary="remove the handled request", **AWS_CALL
            )
        except (
            ActivityError
        ) as e:  # the work is done; a leftover request file is harmless (same id, never re-run)
            workflow.logger.warning(
                f"could not remove {self._in.key}: {root_message(e)}",
                extra={"key": self._in.key, "org_id": self._req.org_id},
            )
