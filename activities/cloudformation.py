"""CloudFormation in customer accounts: create, poll, update and delete stacks idempotently.

Idempotency: every mutating call carries a ClientRequestToken derived from the workflow, and the
stack is tagged with it (``bridgehead:request``); "already exists and carries our token" is success.
Waiting uses the infrequent-polling pattern (see workflows/_options.py: POLL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import CustomerActionRequired, aws_errors, error_code
from activities.registry import Registry
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import ResizeStackInput, StackEvent, StackPoll, StackRef, StackRequest
from bridgehead.policies import render_cluster_template
from bridgehead.polling import still_waiting

log = get_logger("bridgehead.activities.cloudformation")

TOKEN_TAG = "bridgehead:request"
SUCCESS = {
    "create": {"CREATE_COMPLETE"},
    "update": {"UPDATE_COMPLETE"},
    "delete": {"DELETE_COMPLETE"},
}
FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
    "IMPORT_ROLLBACK_FAILED",
}
#: Margin kept before the polling window closes: the last attempt returns instead of failing.
_WINDOW_MARGIN = timedelta(seconds=90)


def stack_events_topic_arn(region: str, account: str, topic: str) -> str:
    return f"arn:aws:sns:{region}:{account}:{topic}"


def _not_exists(e: ClientError) -> bool:
    return error_code(e) == "ValidationError" and "does not exist" in str(e)


def last_attempt_in_window() -> bool:
    """Whether this poll attempt is the last one its window (schedule-to-close) leaves room for:
    it then returns the in-progress state instead of asking Temporal to retry."""
    info = activity.info()
    if not info.schedule_to_close_timeout:
        return False
    return (
        info.current_attempt_scheduled_time + _WINDOW_MARGIN
        >= info.scheduled_time + info.schedule_to_close_timeout
    )


def still_in_progress(stack_name: str, status: str) -> ApplicationError:
    """The benign, retryable error that makes Temporal poll again after ``POLL_INTERVAL``."""
    return still_waiting(f"stack {stack_name} is {status}", "StackInProgress")


class StackActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _beside(self) -> ThreadPoolExecutor:
        """Where a look's DescribeStackEvents runs beside its DescribeStacks (``check_stack``), so
        the activity slot is held for the slower of the two calls, not their sum: made at the first
        look, its threads started only when needed, never more than one per activity slot."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self.aws.settings.max_concurrent_activities),
                    thread_name_prefix="stack-events",
                )
            return self._pool

    def _cfn(self, org_id: str, region: str) -> Any:
        return self.aws.customer(self.registry.org(org_id), "cloudformation", region)

    @activity.defn
    def create_stack(self, req: StackRequest) -> StackPoll:
        """CreateStack with a ClientRequestToken; a retry finds the stack it already created."""
        bind_subject(org_id=req.org_id, region=req.region)
        cfn = self._cfn(req.org_id, req.region)
        tags = {**req.tags, TOKEN_TAG: req.client_request_token}
        notify = self._notification_arns(req.region)
        with aws_errors(f"cloudformation:CreateStack {req.stack_name}"):
            try:
                resp = cfn.create_stack(
                    **notify,
                    StackName=req.stack_name,
                    TemplateBody=req.template_body or render_cluster_template(req.cluster_template),
                    Parameters=[
                        {"ParameterKey": k, "ParameterValue": v}
                        for k, v in sorted(req.parameters.items())
                    ],
                    Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                    Capabilities=["CAPABILITY_NAMED_IAM"],
                    OnFailure="DO_NOTHING" if req.keep_on_failure else "ROLLBACK",
                    TimeoutInMinutes=req.timeout_minutes,
                    ClientRequestToken=req.client_request_token,
                )
                stack_id = resp["StackId"]
            except ClientError as e:
                if error_code(e) != "AlreadyExistsException":
                    raise
                stack = cfn.describe_stacks(StackName=req.stack_name)["Stacks"][0]
                if not self._ours(stack, req):
                    raise ApplicationError(
                        f"stack {req.stack_name} already exists in {req.region} (status {stack['StackStatus']}) and was "
                        "not created by this request; delete it first or choose another name",
                        type=CustomerActionRequired.__name__,
                        non_retryable=True,
                    ) from None
                stack_id = stack["StackId"]
        log.info("stack create requested", stack=req.stack_name, stack_id=stack_id)
        return StackPoll(
            stack_name=req.stack_name,
            stack_id=stack_id,
            status="CREATE_IN_PROGRESS",
            terminal=False,
            succeeded=False,
        )

    def _notification_arns(self, region: str) -> dict[str, list[str]]:
        """``NotificationARNs``: the platform's stack-event topic in the stack's region, when one is
        configured (workflows/_waiting.py turns its events into prompt checks)."""
        topic = self.aws.settings.stack_events_topic
        if not topic:
            return {}
        return {
            "NotificationARNs": [stack_events_topic_arn(region, self.aws.platform_account(), topic)]
        }

    @staticmethod
    def _ours(stack: dict[str, Any], req: StackRequest) -> bool:
        """Created by this request (token), or a healthy stack with the same identifying tags."""
        theirs = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
        if theirs.get(TOKEN_TAG) == req.client_request_token:
            return True
        identity = {
            k: v
            for k, v in req.tags.items()
            if k in ("bridgehead:org", "bridgehead:kind", "bridgehead:cluster", "bridgehead:region")
        }
        healthy = stack["StackStatus"] in (
            "CREATE_COMPLETE",
            "CREATE_IN_PROGRESS",
            "UPDATE_COMPLETE",
            "UPDATE_IN_PROGRESS",
        )
        return bool(identity) and healthy and all(theirs.get(k) == v for k, v in identity.items())

    @activity.defn
    def poll_stack(self, ref: StackRef) -> StackPoll:
        """One describe per attempt. In progress: fail benignly so Temporal retries after the poll
        interval (no slot held, nothing in history), except on the window's last attempt, which
        returns the in-progress state and the latest events for the workflow's status."""
        return self._describe(ref, give_up=last_attempt_in_window, beside=False)

    @activity.defn
    def check_stack(self, ref: StackRef) -> StackPoll:
        """One look at the stack, in progress or not (the event-driven wait's check, see
        workflows/_waiting.py): the workflow decides when to look again. Its events are read
        beside the describe (both are needed, whatever the status)."""
        return self._describe(ref, give_up=lambda: True, beside=True)

    def _describe(self, ref: StackRef, give_up: Callable[[], bool], beside: bool) -> StackPoll:
        """``give_up()``: an in-progress stack is answered (else the attempt fails, to be retried).
        ``beside``: read the stack's events (by name) while describing it, instead of after. A
        poll that will only be retried reads no events at all (they would be thrown away)."""
        bind_subject(org_id=ref.org_id, region=ref.region)
        cfn = self._cfn(ref.org_id, ref.region)
        early: Future[list[dict[str, Any]]] | None = (
            self._beside().submit(self._raw_events, cfn, ref.stack_name) if beside else None
        )
        with aws_errors(f"cloudformation:DescribeStacks {ref.stack_name}"):
            try:
                stack = cfn.describe_stacks(StackName=ref.stack_name)["Stacks"][0]
            except ClientError as e:
                if not _not_exists(e):
                    raise
                # The events read beside it (if under way) end on their own; their answer is
                # not needed. So do they when the describe fails otherwise: the attempt fails.
                if early is not None:
                    early.cancel()
                gone = ref.expect == "delete"
                return StackPoll(
                    stack_name=ref.stack_name,
                    stack_id=None,
                    status="DELETE_COMPLETE" if gone else "NOT_FOUND",
                    terminal=True,
                    succeeded=gone,
                    failure_reason=None
                    if gone
                    else f"stack {ref.stack_name} does not exist (deleted outside Bridgehead?)",
                )
        status = stack["StackStatus"]
        in_progress = status.endswith("_IN_PROGRESS")
        if in_progress and not give_up():
            raise still_in_progress(ref.stack_name, status)
        events = self._stack_events(cfn, ref.stack_name, stack["StackId"], early)
        seen: dict[str, Any] = {
            "stack_name": ref.stack_name,
            "stack_id": stack["StackId"],
            "status": status,
            "events": events[:5],
        }
        if in_progress:
            return StackPoll(**seen, terminal=False, succeeded=False)
        outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
        if status in SUCCESS[ref.expect]:
            done = next(
                (
                    e.timestamp
                    for e in events
                    if e.resource_type == "AWS::CloudFormation::Stack" and e.status == status
                ),
                None,
            )
            return StackPoll(
                **seen, terminal=True, succeeded=True, outputs=outputs, completed_at=done
            )
        resource, reason = self._first_failure(events)
        return StackPoll(
            **seen,
            terminal=True,
            succeeded=False,
            outputs=outputs,
            failure_resource=resource,
            failure_reason=reason or stack.get("StackStatusReason") or f"stack ended in {status}",
        )

    def _stack_events(
        self, cfn: Any, stack_name: str, stack_id: str, early: Future[list[dict[str, Any]]] | None
    ) -> list[StackEvent]:
        """The events of the stack described (``stack_id``): the ones read beside the describe
        when they all belong to it, else read now by id (none read yet, or the name had meanwhile
        passed to another stack)."""
        with aws_errors(f"cloudformation:DescribeStackEvents {stack_name}"):
            if early is not None:
                try:
                    raw = early.result()
                except ClientError as e:
                    if not _not_exists(e):
                        raise
                else:
                    if all(e.get("StackId", stack_id) == stack_id for e in raw):
                        return self._parse_events(raw)
            return self._parse_events(self._raw_events(cfn, stack_id))

    @staticmethod
    def _raw_events(cfn: Any, stack: str) -> list[dict[str, Any]]:
        """The first page of the stack's events, newest first (enough for status). ``stack``: its
        id, or its name (then the live stack of that name)."""
        return list(cfn.describe_stack_events(StackName=stack).get("StackEvents", [])[:100])

    @staticmethod
    def _parse_events(raw: list[dict[str, Any]]) -> list[StackEvent]:
        out = []
        for e in raw:
            ts = e["Timestamp"]
            if isinstance(ts, str):
                ts = datetime.fromisoformat(ts)
            out.append(
                StackEvent(
                    timestamp=ts.astimezone(UTC),
                    logical_id=e.get("LogicalResourceId", ""),
                    resource_type=e.get("ResourceType", ""),
                    status=e.get("ResourceStatus", ""),
                    reason=e.get("ResourceStatusReason") or "",
                )
            )
        return out

    @staticmethod
    def _first_failure(events: list[StackEvent]) -> tuple[str | None, str | None]:
        """The first resource that failed (oldest first), skipping the cascade of cancellations."""
        for e in reversed(events):
            if e.status.endswith("_FAILED") and e.resource_type != "AWS::CloudFormation::Stack":
                if "cancelled" in e.reason.lower():
                    continue
                return f"{e.logical_id} ({e.resource_type})", e.reason or e.status
        for e in reversed(events):
            if e.status.endswith("_FAILED"):
                return f"{e.logical_id} ({e.resource_type})", e.reason or e.status
        return None, None

    @activity.defn
    def delete_stack(self, ref: StackRef) -> None:
        """DeleteStack (idempotent: a missing or already-deleting stack is success)."""
        bind_subject(org_id=ref.org_id, region=ref.region)
        cfn = self._cfn(ref.org_id, ref.region)
        kwargs: dict[str, Any] = {"StackName": ref.stack_name}
        if ref.client_request_token:
            kwargs["ClientRequestToken"] = ref.client_request_token
        with aws_errors(f"cloudformation:DeleteStack {ref.stack_name}"):
            try:
                cfn.delete_stack(**kwargs)
            except ClientError as e:
                if not _not_exists(e):
                    raise
        log.info("stack delete requested", stack=ref.stack_name)

    @activity.defn
    def resize_stack(self, req: ResizeStackInput) -> StackPoll:
        """UpdateStack with the previous template and a new ComputeNodes value."""
        bind_subject(org_id=req.org_id, region=req.region)
        cfn = self._cfn(req.org_id, req.region)
        with aws_errors(f"cloudformation:UpdateStack {req.stack_name}"):
            stack = cfn.describe_stacks(StackName=req.stack_name)["Stacks"][0]
            params = []
            for p in stack.get("Parameters", []):
                key = p["ParameterKey"]
                if key == "ComputeNodes":
                    params.append({"ParameterKey": key, "ParameterValue": str(req.compute_nodes)})
                else:
                    params.append({"ParameterKey": key, "UsePreviousValue": True})
            try:
                cfn.update_stack(
                    StackName=req.stack_name,
                    UsePreviousTemplate=True,
                    Parameters=params,
                    Capabilities=["CAPABILITY_NAMED_IAM"],
                    ClientRequestToken=req.client_request_token,
                )
            except ClientError as e:
                if "No updates are to be performed" not in str(e):
                    raise
        return StackPoll(
            stack_name=req.stack_name,
            stack_id=stack["StackId"],
            status="UPDATE_IN_PROGRESS",
            terminal=False,
            succeeded=False,
        )
