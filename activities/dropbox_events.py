"""S3 event notifications of the drop-box inbox start ``DropboxRequest`` within seconds.

Path: ``starter dropbox setup`` makes the inbox notify ``dropbox_events_queue`` (platform account
and region) of ``ObjectCreated`` under ``home/`` with the suffixes ``.cf-create`` and
``.cf-delete``, and gives the queue a policy that lets only that bucket (of that account) send;
:class:`DropboxEventConsumer`, a task of the worker process like the stack-event consumer,
long-polls the queue and starts one ``DropboxRequest`` per request file. The Schedule
``dropbox-watch`` stays as a slow safety net (``dropbox_safety_net_seconds``) for an event that
never arrived.

**Exactly once with the scan.** The event only says *which key* changed. The consumer then lists
that key's versions in the configured inbox with the scan's own function
(:func:`activities.dropbox.pending_requests`) and starts ``DropboxRequest`` for the current version
under ``ids.dropbox_request_id(key, version)``, the id ``DropboxWatch`` gives the same file, with
``REJECT_DUPLICATE``: a duplicate delivery, a second event for the same upload or a safety-net
scan that sees the file too meets ``WorkflowAlreadyStarted``, which means done. A file already
handled and removed has no current version: nothing to start.

**Untrusted.** Anyone allowed to send to the queue can write any message. The message names a
bucket and a key, nothing else is used: the bucket must be the configured inbox (the request
names the inbox from settings, never from the message), the key a request file; the request is
then read and checked by ``DropboxRequest`` exactly as for the scan (unknown users refused, path,
name and config checked). A forged message can at most make the worker look at a key of the
inbox early. Malformed bodies are deleted with a log line; ``s3:TestEvent`` (sent by S3 when the
notification is configured) is deleted quietly.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from activities.aws import Aws
from activities.dropbox import REQUEST_SUFFIXES, is_request_key, pending_requests
from activities.errors import error_code
from activities.queue_consumer import QueueConsumer, queue_missing
from bridgehead import ids
from bridgehead.logging import get_logger
from bridgehead.models import DropboxRequestInput

log = get_logger("bridgehead.activities.dropbox_events")

#: Ids of the inbox's notification rules that ``starter dropbox setup`` owns (one per suffix: a
#: rule filters on one prefix and one suffix).
RULE_IDS = {suffix: f"bridgehead-dropbox{suffix.replace('.cf', '')}" for suffix in REQUEST_SUFFIXES}
#: The ``Sid`` of the queue-policy statement that setup owns (other statements are kept).
POLICY_SID = "BridgeheadInboxNotifies"


@dataclass(frozen=True)
class InboxEvent:
    """What one SQS message from the inbox asks for."""

    #: ``(key, eTag)`` of each request file the message names, keys URL-decoded.
    requests: tuple[tuple[str, str], ...] = ()
    #: Why the other records were left (for the log).
    skipped: tuple[str, ...] = ()
    #: ``s3:TestEvent``: S3 checking the destination when the notification is configured.
    test: bool = False


def _valid_key(key: str) -> bool:
    """An S3 key: at most 1,024 bytes of UTF-8 (a message from anyone allowed to send to the
    queue may carry anything; S3 itself never sends such a key)."""
    try:
        return len(key.encode("utf-8")) <= 1024
    except UnicodeEncodeError:
        return False


def parse_s3_event(body: str, inbox: str) -> InboxEvent:
    """The request files an S3 event message names in ``inbox``; ``ValueError`` when the body is
    not an S3 event message at all. S3 URL-encodes keys in events (``+`` for a space)."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return InboxEvent(test=True)
    records = doc.get("Records")
    if not isinstance(records, list):
        raise ValueError("neither Records nor an s3:TestEvent")
    requests: list[tuple[str, str]] = []
    skipped: list[str] = []
    for record in records:
        try:
            name = str(record["eventName"])
            bucket = str(record["s3"]["bucket"]["name"])
            key = unquote_plus(str(record["s3"]["object"]["key"]))
            etag = str(record["s3"]["object"].get("eTag", ""))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"an S3 record without {e}") from None
        if record.get("eventSource", "aws:s3") != "aws:s3" or not name.startswith("ObjectCreated:"):
            skipped.append(f"{name[:80]} is not an upload")
        elif bucket != inbox:
            skipped.append(f"bucket {bucket[:80]!r} is not the inbox")
        elif not _valid_key(key) or not is_request_key(key):
            skipped.append(f"{key[:200]!r} is not a request file")
        else:
            requests.append((key, etag))
    return InboxEvent(requests=tuple(requests), skipped=tuple(skipped))


class DropboxEventConsumer(QueueConsumer):
    """Reads ``dropbox_events_queue`` and starts ``DropboxRequest`` (see module doc)."""

    WHAT = "drop-box event queue"

    def __init__(self, aws: Aws, client: Any, queue_name: str | None = None) -> None:
        super().__init__(aws, queue_name or aws.settings.dropbox_events_queue)
        self.client = client

    @property
    def inbox(self) -> str:
        return str(self.aws.settings.inbox_bucket)

    def version_of(self, key: str, etag: str) -> str | None:
        """The version of ``key`` to handle, as the scan would name it; None once handled. The
        event's own ``etag`` is not used: the listing is the truth, and the only way to the id the
        scan gives the same upload (the twin in tests/test_dropbox_events.py uses the ETag)."""
        s3 = self.aws.platform("s3", self.aws.settings.platform_region)
        found = [f for f in pending_requests(s3, self.inbox, key) if f.key == key]
        return found[0].etag if found else None

    async def _start(self, key: str, version: str) -> bool:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        wid = ids.dropbox_request_id(key, version)
        try:
            await self.client.start_workflow(
                "DropboxRequest",
                DropboxRequestInput(bucket=self.inbox, key=key, etag=version),
                id=wid,
                task_queue=self.aws.settings.task_queue,
                # One handler per upload, whoever starts it first (this consumer or the scan).
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=f"handle {key}",
            )
        except WorkflowAlreadyStartedError:
            log.info("drop-box request already handled or in hand", key=key, workflow_id=wid)
            return False
        log.info("drop-box request started from its event", key=key, workflow_id=wid)
        return True

    async def _handle(self, url: str, msg: dict[str, Any]) -> bool:
        try:
            event = parse_s3_event(msg.get("Body", ""), self.inbox)
        except ValueError as e:
            log.error(
                "unreadable drop-box event dropped",
                error=str(e)[:300],
                sqs_message_id=msg.get("MessageId"),
            )
            await self.delete(url, msg)
            return False
        if event.skipped:
            log.warning("drop-box event records ignored", reasons=list(event.skipped)[:10])
        started = False
        for key, etag in event.requests:
            # An S3 outage raises here: the message stays and is seen again after the visibility
            # timeout (the safety-net scan finds the file anyway).
            version = await asyncio.to_thread(self.version_of, key, etag)
            if version is None:
                log.info("drop-box event for a request already handled", key=key)
                continue
            started = await self._start(key, version) or started
        await self.delete(url, msg)
        return started


# --- set-up (``starter dropbox setup``) and the worker's check --------------------------------------
def queue_policy_statement(queue_arn: str, bucket: str) -> dict[str, Any]:
    """The queue-policy statement letting S3 deliver the inbox's events, and nothing else: the
    service principal, only ``sqs:SendMessage``, only for this bucket of this account."""
    partition, account = queue_arn.split(":")[1], queue_arn.split(":")[4]
    return {
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnEquals": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"},
            "StringEquals": {"aws:SourceAccount": account},
        },
    }


def notification_rules(queue_arn: str) -> list[dict[str, Any]]:
    """The inbox's two queue notifications (uploads of ``home/**.cf-create`` and ``.cf-delete``)."""
    return [
        {
            "Id": RULE_IDS[suffix],
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {
                    "FilterRules": [
                        {"Name": "prefix", "Value": "home/"},
                        {"Name": "suffix", "Value": suffix},
                    ]
                }
            },
        }
        for suffix in REQUEST_SUFFIXES
    ]


def _rule_shape(rule: dict[str, Any]) -> tuple[str, str, tuple[str, ...], frozenset[Any]]:
    # S3 answers filter names capitalised ("Prefix"), moto as sent: compare them case-blind.
    rules = rule.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return (
        rule.get("Id", ""),
        rule.get("QueueArn", ""),
        tuple(sorted(rule.get("Events", []))),
        frozenset((r["Name"].lower(), r["Value"]) for r in rules),
    )


def rules_in_place(config: dict[str, Any], queue_arn: str) -> bool:
    """Whether ``config`` (a bucket notification configuration) holds setup's two rules for
    ``queue_arn``, exactly."""
    have = {r.get("Id"): r for r in config.get("QueueConfigurations", [])}
    return all(
        want["Id"] in have and _rule_shape(have[want["Id"]]) == _rule_shape(want)
        for want in notification_rules(queue_arn)
    )


def ensure_dropbox_events(aws: Aws) -> bool:
    """Bring the inbox's event notifications to the settings (idempotent): with
    ``dropbox_events_queue`` set, the queue exists, its policy lets the inbox send, and the inbox
    notifies it; with it empty, setup's rules are removed. Other statements and rules are kept.
    Returns whether events are on."""
    settings = aws.settings
    bucket, name = settings.inbox_bucket, settings.dropbox_events_queue
    s3 = aws.platform("s3", settings.platform_region)
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    others = [
        r for r in current.get("QueueConfigurations", []) if r.get("Id") not in RULE_IDS.values()
    ]
    if not name:
        if len(others) != len(current.get("QueueConfigurations", [])):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={**current, "QueueConfigurations": others}
            )
        return False
    sqs = aws.platform("sqs", settings.platform_region)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if not queue_missing(e):
            raise
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])[
        "Attributes"
    ]
    arn = str(attrs["QueueArn"])
    # The policy first: S3 checks the destination (a test event) when the rules are written.
    policy = json.loads(attrs.get("Policy") or "{}")
    kept = [s for s in policy.get("Statement", []) if s.get("Sid") != POLICY_SID]
    policy = {"Version": "2012-10-17", "Statement": [*kept, queue_policy_statement(arn, bucket)]}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    if not rules_in_place(current, arn):
        config = {**current, "QueueConfigurations": others + notification_rules(arn)}
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        log.info("drop-box inbox notifies its queue", bucket=bucket, queue=arn)
    return True


def dropbox_events_configured(aws: Aws) -> bool:
    """Whether the inbox sends its events to ``dropbox_events_queue`` (what the worker checks
    before it slows the Schedule to the safety net). False when either is missing."""
    settings = aws.settings
    if not settings.dropbox_events_queue:
        return False
    s3 = aws.platform("s3", settings.platform_region)
    try:
        config = s3.get_bucket_notification_configuration(Bucket=settings.inbox_bucket)
    except ClientError as e:
        if error_code(e) in ("NoSuchBucket", "404"):
            return False
        raise
    ours = [r for r in config.get("QueueConfigurations", []) if r.get("Id") in RULE_IDS.values()]
    arn = str(ours[0].get("QueueArn", "")) if ours else ""
    # The queue of the setting, in the bucket's region and the platform account.
    parts = arn.split(":")
    wanted = len(parts) == 6 and parts[2:] == [
        "sqs",
        settings.platform_region,
        aws.platform_account(),
        settings.dropbox_events_queue,
    ]
    if not (wanted and rules_in_place(config, arn)):
        return False
    # ...and the queue exists and still lets S3 send (a queue deleted, or recreated without its
    # policy, receives nothing while the rules look right).
    sqs = aws.platform("sqs", settings.platform_region)
    try:
        url = sqs.get_queue_url(QueueName=settings.dropbox_events_queue)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])
    except ClientError as e:
        if queue_missing(e):
            return False
        raise
    policy = json.loads(attrs["Attributes"].get("Policy") or "{}")
    return attrs["Attributes"].get("QueueArn") == arn and any(
        st.get("Sid") == POLICY_SID for st in policy.get("Statement", [])
    )
