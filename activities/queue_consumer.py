"""A long-poll loop over one platform SQS queue, run by the worker process beside its workers
(not an activity: no Temporal action while idle). The queue is what makes it durable: a message
is deleted only once it was handled, so one whose handling failed is seen again after the queue's
visibility timeout. Subclasses say how a message is handled: the Marketplace subscription
notifications (:mod:`activities.marketplace`), the stack events (:mod:`activities.stack_events`)
and the drop-box inbox's S3 events (:mod:`activities.dropbox_events`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import ClientError

from activities.aws import Aws
from activities.errors import error_code
from bridgehead.logging import get_logger

log = get_logger("bridgehead.activities.queue_consumer")


def queue_missing(e: ClientError) -> bool:
    """Whether SQS answered that the queue does not exist (``AWS.SimpleQueueService.NonExistentQueue``
    or, in the JSON protocol, ``QueueDoesNotExist``)."""
    code = error_code(e)
    return "NonExistent" in code or code == "QueueDoesNotExist"


class QueueConsumer:
    #: Words for the log when a poll fails ("stack event queue").
    WHAT = "queue"

    def __init__(self, aws: Aws, queue_name: str) -> None:
        self.aws = aws
        self.queue_name = queue_name
        self._url: str | None = None

    @property
    def sqs(self) -> Any:
        return self.aws.platform("sqs")

    def queue_url(self) -> str:
        if self._url is None:
            try:
                self._url = self.sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
            except ClientError as e:
                if not queue_missing(e) or not self.aws.settings.create_tables:
                    raise
                # Local/dev convenience, like the registry tables: in production the queue (and its
                # subscriptions) is provisioned with the platform.
                self._url = self.sqs.create_queue(QueueName=self.queue_name)["QueueUrl"]
        return self._url

    async def delete(self, url: str, msg: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self.sqs.delete_message, QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"]
        )

    #: Receives after which a message whose handling keeps failing is dropped (logged), so one
    #: bad message cannot come back forever (the queues have no dead-letter queue of their own).
    MAX_RECEIVES = 5

    async def poll_once(self, wait_seconds: int = 10) -> int:
        """Handle the messages one receive returns, each on its own (one failing leaves the others
        handled; it is seen again after the visibility timeout, and dropped after
        ``MAX_RECEIVES``); the number delivered."""
        url = await asyncio.to_thread(self.queue_url)
        resp = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        delivered = 0
        for msg in resp.get("Messages", []):
            try:
                delivered += await self._handle(url, msg)
            except Exception as e:  # noqa: BLE001 - one message must not hold up the others
                received = int(msg.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                if received >= self.MAX_RECEIVES:
                    log.error(
                        f"{self.WHAT} message dropped after {received} failed attempts",
                        error=str(e)[:300],
                        body=str(msg.get("Body", ""))[:300],
                    )
                    await self.delete(url, msg)
                else:
                    log.warning(
                        f"{self.WHAT} message not handled; seen again later",
                        error=str(e)[:300],
                        attempt=received,
                    )
        return delivered

    async def _handle(self, url: str, msg: dict[str, Any]) -> bool:
        """Handle one message (delete it when done with it); True when it was delivered."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; errors are logged and retried after a pause."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as e:  # noqa: BLE001 - the consumer must outlive a bad message or an outage
                log.warning(f"{self.WHAT} poll failed", error=str(e)[:300])
                try:
                    await asyncio.wait_for(stop.wait(), timeout=10)
                except TimeoutError:
                    pass
