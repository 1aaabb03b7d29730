"""S3 events of the drop-box inbox to ``DropboxRequest`` starts (activities/dropbox_events.py):
event bodies parsed (test events, malformed bodies, URL-encoded keys, other buckets and keys),
the set-up idempotent and confined to the inbox, and moto's own S3 notifications (in process)
consumed into one start per upload, under the id the watcher's scan gives the same file."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.aws import Aws
from activities.dropbox_events import (
    RULE_IDS,
    DropboxEventConsumer,
    dropbox_events_configured,
    ensure_dropbox_events,
    parse_s3_event,
)
from bridgehead import ids
from bridgehead.settings import get_settings

INBOX = "bridgehead-inbox"


def record(key: str, bucket: str = INBOX, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": "abc", "size": 2}},
    }


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def test_keys_are_url_decoded_as_s3_encodes_them():
    event = parse_s3_event(
        body(
            record("home/alice/my+cluster.cf-create"),  # '+' is a space
            record("home%2Fbob%2Fc%C3%A9.cf-delete"),  # moto encodes '/' too
            record("home/carol/a%2Bb.cf-create"),  # a real '+'
        ),
        INBOX,
    )
    assert [k for k, _ in event.requests] == [
        "home/alice/my cluster.cf-create",
        "home/bob/cé.cf-delete",
        "home/carol/a+b.cf-create",
    ]
    assert event.skipped == () and not event.test


def test_the_test_event_is_recognised_and_asks_for_nothing():
    msg = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": INBOX}
    event = parse_s3_event(json.dumps(msg), INBOX)
    assert event.test and event.requests == ()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"Message": "an SNS envelope is not what S3 sends to a queue"}),
        body({"eventName": "ObjectCreated:Put"}),  # no s3 part
        body({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": INBOX}}}),
        json.dumps({"Records": [None]}),
    ],
)
def test_malformed_bodies_are_refused(text):
    with pytest.raises(ValueError):
        parse_s3_event(text, INBOX)


def test_other_buckets_events_and_keys_are_skipped_with_a_reason():
    event = parse_s3_event(
        body(
            record("home/alice/c1.cf-create", bucket="someone-else"),
            record("home/alice/c1.cf-create", name="ObjectRemoved:Delete"),
            record("home/alice/c1.cf-created"),  # a result file
            record("elsewhere/c1.cf-create"),
            record("home/alice/c1.cf-create"),
        ),
        INBOX,
    )
    assert event.requests == (("home/alice/c1.cf-create", "abc"),)
    assert len(event.skipped) == 4
    assert "'someone-else' is not the inbox" in event.skipped[0]


# --- set-up and consumer on moto in process ------------------------------------------------------
class FakeClient:
    """Records workflow starts; a second start under an id fails as Temporal's would."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str, Any]] = []
        self.refused: list[str] = []

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **kw: Any) -> None:
        if any(s[1] == id for s in self.starts):
            self.refused.append(id)
            raise WorkflowAlreadyStartedError(id, workflow)
        self.starts.append((workflow, id, arg))


@pytest.fixture
def aws(in_process_aws: None) -> Aws:
    # moto in process: tests/conftest.py::in_process_aws (moto's S3 notifies its SQS itself)
    aws = Aws(get_settings())
    s3 = aws.platform("s3")
    s3.create_bucket(Bucket=INBOX)
    s3.put_bucket_versioning(Bucket=INBOX, VersioningConfiguration={"Status": "Enabled"})
    return aws


async def drain(consumer: DropboxEventConsumer) -> None:
    while await consumer.poll_once(wait_seconds=0) or consumer.sqs.receive_message(
        QueueUrl=consumer.queue_url(), VisibilityTimeout=0
    ).get("Messages"):
        pass


def scanned_id(aws: Aws, key: str) -> str:
    """The id the watcher's scan (``scan_inbox``) gives the current version of ``key``."""
    from activities.dropbox import DropboxActivities
    from bridgehead.models import DropboxWatchInput

    scan = DropboxActivities(aws, None).scan_inbox(DropboxWatchInput())  # type: ignore[arg-type]
    return next(ids.dropbox_request_id(f.key, f.etag) for f in scan.files if f.key == key)


def queue_left(consumer: DropboxEventConsumer) -> list[Any]:
    return consumer.sqs.receive_message(QueueUrl=consumer.queue_url()).get("Messages", [])


def test_setup_is_idempotent_keeps_other_rules_and_confines_the_policy_to_the_inbox(aws):
    s3, sqs = aws.platform("s3"), aws.platform("sqs")
    other = sqs.create_queue(QueueName="someone-elses")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])
    foreign = {
        "Id": "theirs",
        "QueueArn": other_arn["Attributes"]["QueueArn"],
        "Events": ["s3:ObjectRemoved:*"],
    }
    s3.put_bucket_notification_configuration(
        Bucket=INBOX, NotificationConfiguration={"QueueConfigurations": [foreign]}
    )
    assert not dropbox_events_configured(aws)
    assert ensure_dropbox_events(aws) and ensure_dropbox_events(aws)
    config = s3.get_bucket_notification_configuration(Bucket=INBOX)["QueueConfigurations"]
    assert sorted(r["Id"] for r in config) == sorted(["theirs", *RULE_IDS.values()])
    assert dropbox_events_configured(aws)
    url = sqs.get_queue_url(QueueName="bridgehead-dropbox-events")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy", "QueueArn"])
    (statement,) = json.loads(attrs["Attributes"]["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == attrs["Attributes"]["QueueArn"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{INBOX}"},
        "StringEquals": {"aws:SourceAccount": attrs["Attributes"]["QueueArn"].split(":")[4]},
    }
    # Events switched off in the settings: setup removes its own rules, and only those.
    off = Aws(get_settings().model_copy(update={"dropbox_events_queue": ""}))
    assert not ensure_dropbox_events(off)
    config = s3.get_bucket_notification_configuration(Bucket=INBOX)["QueueConfigurations"]
    assert [r["Id"] for r in config] == ["theirs"]
    assert not dropbox_events_configured(aws)


def misconfigurations_seen(aws) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    """Break a working set-up three ways S3 cannot see; for each, whether the check says the
    events are still set up (each case restores the set-up first)."""
    sqs = aws.platform("sqs")
    seen = {}
    ensure_dropbox_events(aws)
    assert dropbox_events_configured(aws)
    url = sqs.get_queue_url(QueueName="bridgehead-dropbox-events")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
    seen["queue policy removed"] = dropbox_events_configured(aws)
    ensure_dropbox_events(aws)
    sqs.delete_queue(QueueUrl=url)
    seen["queue deleted"] = dropbox_events_configured(aws)
    ensure_dropbox_events(aws)
    s3 = aws.platform("s3")
    config = s3.get_bucket_notification_configuration(Bucket=INBOX)
    config.pop("ResponseMetadata", None)
    for rule in config["QueueConfigurations"]:
        rule["QueueArn"] = rule["QueueArn"].replace(aws.platform_account(), "999999999999")
    s3.put_bucket_notification_configuration(Bucket=INBOX, NotificationConfiguration=config)
    seen["rules naming another account's queue"] = dropbox_events_configured(aws)
    return seen


def test_a_set_up_broken_behind_the_rules_is_not_taken_for_events(aws):
    """The worker slows the Schedule to the 6-hour safety net only while events can arrive."""
    assert misconfigurations_seen(aws) == {
        "queue policy removed": False,
        "queue deleted": False,
        "rules naming another account's queue": False,
    }


def test_twin_a_check_of_the_rules_alone_misses_them(aws, monkeypatch):
    """Planted defect: the check looks at the bucket's rules only (the first version)."""
    import activities.dropbox_events as de

    def rules_only(aws):  # type: ignore[no-untyped-def]
        config = aws.platform("s3").get_bucket_notification_configuration(Bucket=INBOX)
        ours = [r for r in config.get("QueueConfigurations", []) if r["Id"] in RULE_IDS.values()]
        return bool(ours) and ours[0]["QueueArn"].endswith(":bridgehead-dropbox-events")

    monkeypatch.setattr(de, "dropbox_events_configured", rules_only)
    monkeypatch.setattr(sys.modules[__name__], "dropbox_events_configured", rules_only)
    assert misconfigurations_seen(aws) == {
        "queue policy removed": True,
        "queue deleted": True,
        "rules naming another account's queue": True,
    }


async def test_an_upload_starts_one_request_under_the_watchers_id(aws):
    ensure_dropbox_events(aws)
    client = FakeClient()
    consumer = DropboxEventConsumer(aws, client)
    await drain(consumer)  # S3's test event: deleted, nothing started
    assert client.starts == []
    key = "home/alice/c1.cf-create"
    s3 = aws.platform("s3")
    s3.put_object(Bucket=INBOX, Key=key, Body=b"{}")
    s3.put_object(Bucket=INBOX, Key="home/alice/c1.cf-created", Body=b"1.2.3.4")  # no event
    await drain(consumer)
    assert [(w, i) for w, i, _ in client.starts] == [("DropboxRequest", scanned_id(aws, key))]
    (_, _, arg) = client.starts[0]
    assert arg.bucket == INBOX and arg.key == key
    assert queue_left(consumer) == []


async def test_duplicates_malformed_foreign_and_handled_events_start_nothing_more(aws):
    ensure_dropbox_events(aws)
    client = FakeClient()
    consumer = DropboxEventConsumer(aws, client)
    s3, sqs = aws.platform("s3"), consumer.sqs
    key = "home/bob/c2 b.cf-delete"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"")
    await drain(consumer)
    assert len(client.starts) == 1
    url = consumer.queue_url()
    # A duplicate delivery of the same upload's event: refused by id, i.e. done.
    sqs.send_message(QueueUrl=url, MessageBody=body(record("home/bob/c2+b.cf-delete")))
    # Malformed, for another bucket, outside the pattern: deleted with a log line.
    for text in ("{not json", body(record(key, bucket="other")), body(record("home/x.txt"))):
        sqs.send_message(QueueUrl=url, MessageBody=text)
    await drain(consumer)
    assert len(client.starts) == 1 and client.refused == [client.starts[0][1]]
    # The request handled and removed: its late event starts nothing.
    s3.delete_object(Bucket=INBOX, Key=key)
    sqs.send_message(QueueUrl=url, MessageBody=body(record(key)))
    await drain(consumer)
    assert len(client.starts) == 1 and len(client.refused) == 1
    assert queue_left(consumer) == []
    # A new upload of the same key is a new request, under a new id.
    s3.put_object(Bucket=INBOX, Key=key, Body=b"")
    await drain(consumer)
    assert len(client.starts) == 2 and client.starts[1][1] == scanned_id(aws, key)


class EventETagConsumer(DropboxEventConsumer):
    """Planted defect: the version taken from the event's ETag instead of the listing."""

    def version_of(self, key: str, etag: str) -> str | None:
        return etag


async def test_twin_a_consumer_trusting_the_events_etag_would_let_the_scan_start_it_again(aws):
    ensure_dropbox_events(aws)
    client = FakeClient()
    key = "home/alice/c3.cf-create"
    aws.platform("s3").put_object(Bucket=INBOX, Key=key, Body=b"{}")
    await drain(EventETagConsumer(aws, client))
    (started,) = [i for _, i, _ in client.starts]
    assert started != scanned_id(aws, key)  # the watcher would start a second handler


class FailsOnBoom(DropboxEventConsumer):
    """A consumer whose handling of one message always fails (an outage for that message only)."""

    async def _handle(self, url: str, msg: dict[str, Any]) -> bool:
        if "boom" in msg["Body"]:
            raise RuntimeError("this message cannot be handled")
        return await super()._handle(url, msg)


async def poison(aws: Aws, max_receives: int) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    """A failing message queued before an upload's event: (requests started, messages left
    after ten polls, the failing one seen again at once)."""
    ensure_dropbox_events(aws)
    client = FakeClient()
    consumer = FailsOnBoom(aws, client)
    consumer.MAX_RECEIVES = max_receives
    await drain(consumer)
    url = consumer.queue_url()
    consumer.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    consumer.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"boom": True}))
    aws.platform("s3").put_object(Bucket=INBOX, Key="home/alice/c1.cf-create", Body=b"{}")
    for _ in range(10):
        await consumer.poll_once(wait_seconds=0)
    left = consumer.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [i for _, i, _ in client.starts], len(left)


async def test_a_message_that_keeps_failing_holds_up_nothing_and_is_dropped(aws):
    started, left = await poison(aws, max_receives=5)
    assert started == [scanned_id(aws, "home/alice/c1.cf-create")] and left == 0


async def test_twin_without_a_receive_limit_the_failing_message_stays_forever(aws):
    started, left = await poison(aws, max_receives=10**9)
    assert len(started) == 1 and left == 1


def test_keys_that_s3_cannot_hold_are_skipped():
    huge = "home/alice/" + "x" * 1100 + ".cf-create"
    lone = "home/alice/\ud800.cf-create"
    event = parse_s3_event(body(record(huge), record(lone)), INBOX)
    assert event.requests == () and len(event.skipped) == 2
    assert all(len(s) < 250 for s in event.skipped)  # logged shortened
