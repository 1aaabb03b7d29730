"""CloudFormation stack notifications become ``stack_event`` hints to the waiting workflow.

Path: a stack's ``NotificationARNs`` name the regional topic ``stack_events_topic``; the topic
feeds the platform queue ``stack_events_queue``; :class:`StackEventConsumer`, a task of the worker
process (like the Marketplace consumer), long-polls the queue and signals ``stack_event`` to the
workflow that waits on the stack (``ClusterLifecycle`` or ``ProvisionRegion``, found from the stack
name by :func:`bridgehead.ids.stack_waiter`).

Why a worker-side loop and not an activity in a ``StackEvents`` workflow: the queue is the durable
part (a message is deleted only after its signal was delivered, so a crash redelivers it after the
visibility timeout, and a duplicate hint costs one extra check), the loop restarts with every
worker, several workers may run it at once (SQS hands each message to one of them), and it costs
no Temporal action while idle, where a long-running activity would pay for every heartbeat. What
the loop loses in a crash is at most the messages in flight, and the safety net of
workflows/_waiting.py finds those stacks anyway.

Untrusted: anyone allowed to publish to the topic can write any message. Only stack-level events
in a terminal status of a stack named like a Bridgehead stack become hints; the workflow takes a
hint only for its own stack id, and then merely checks the stack through the organisation's role
(the check is the truth, never the message).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from activities.aws import Aws
from activities.errors import error_code
from bridgehead import ids
from bridgehead.logging import get_logger
from bridgehead.models import StackEventNotice

log = get_logger("bridgehead.activities.stack_events")

#: Stack statuses after which nothing more happens without a new request.
TERMINAL = frozenset(
    {
        "CREATE_COMPLETE",
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "DELETE_COMPLETE",
        "DELETE_FAILED",
        "UPDATE_COMPLETE",
        "UPDATE_FAILED",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
    }
)
#: CloudFormation's notification body: one ``Key='value'`` per line.
_FIELD = re.compile(r"^([A-Za-z]+)='(.*)'$", re.MULTILINE)


@dataclass(frozen=True)
class StackHint:
    """A hint for one workflow: its id and the signal payload."""

    workflow_id: str
    notice: StackEventNotice


def parse_stack_notification(body: str) -> StackHint | None:
    """An SQS message from the topic (SNS envelope, or raw delivery) as a hint; None for anything
    else (resource-level or in-progress events, other stacks, malformed text)."""
    try:
        outer = json.loads(body)
    except ValueError:
        return None
    text = outer.get("Message") if isinstance(outer, dict) else None
    if not isinstance(text, str):
        return None
    fields = dict(_FIELD.findall(text[:20_000]))
    status = fields.get("ResourceStatus", "")
    if fields.get("ResourceType") != "AWS::CloudFormation::Stack" or status not in TERMINAL:
        return None
    where = ids.stack_of_id(fields.get("StackId", ""))
    if where is None or where[1] != fields.get("StackName"):
        return None
    region, stack_name = where
    waiter = ids.stack_waiter(stack_name, region)
    if waiter is None:
        return None
    return StackHint(waiter, StackEventNotice(stack_id=fields["StackId"], status=status))


class StackEventConsumer:
    """Reads ``stack_events_queue`` and signals ``stack_event`` (see module doc)."""

    def __init__(self, aws: Aws, client: Any, queue_name: str | None = None) -> None:
        self.aws = aws
        self.client = client
        self.queue_name = queue_name or aws.settings.stack_events_queue
        self._url: str | None = None

    @property
    def sqs(self) -> Any:
        return self.aws.platform("sqs")

    def queue_url(self) -> str:
        if self._url is None:
            try:
                self._url = self.sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
            except ClientError as e:
                if "NonExistent" not in error_code(e) or not self.aws.settings.create_tables:
                    raise
                # Local/dev convenience, like the registry tables: in production the queue and its
                # subscriptions are provisioned with the platform (policies/stack-events-*.json).
                self._url = self.sqs.create_queue(QueueName=self.queue_name)["QueueUrl"]
        return self._url

    async def poll_once(self, wait_seconds: int = 10) -> int:
        """Handle the messages one receive returns; the number of hints delivered."""
        url = await asyncio.to_thread(self.queue_url)
        resp = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
        )
        delivered = 0
        for msg in resp.get("Messages", []):
            delivered += await self._handle(url, msg)
        return delivered

    async def _handle(self, url: str, msg: dict[str, Any]) -> bool:
        from temporalio.service import RPCError, RPCStatusCode

        hint = parse_stack_notification(msg.get("Body", ""))
        delivered = False
        if hint is not None:
            try:
                handle = self.client.get_workflow_handle(hint.workflow_id)
                await handle.signal("stack_event", hint.notice)
                delivered = True
                log.info(
                    "stack event delivered", workflow_id=hint.workflow_id, status=hint.notice.status
                )
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise  # kept in the queue: seen again after its visibility timeout
                log.info("stack event for a workflow that has ended", workflow_id=hint.workflow_id)
        await asyncio.to_thread(
            self.sqs.delete_message, QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"]
        )
        return delivered

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; errors are logged and retried after a pause."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as e:  # noqa: BLE001 - the consumer must outlive a bad message or an outage
                log.warning("stack event queue poll failed", error=str(e)[:300])
                try:
                    await asyncio.wait_for(stop.wait(), timeout=10)
                except TimeoutError:
                    pass
