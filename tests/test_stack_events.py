"""CloudFormation notifications to ``stack_event`` hints (activities/stack_events.py): moto's own
CloudFormation notifies the topic (same account: moto delivers nowhere else), SNS delivers to the
queue, the consumer turns stack-level terminal events into exactly one hint each, and drops every
other message, forged ones included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto import mock_aws

from activities.aws import Aws
from activities.stack_events import StackEventConsumer, parse_stack_notification
from bridgehead.settings import get_settings

REGION = "us-east-1"
TEMPLATE = json.dumps(
    {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
)


class FakeClient:
    """Records the signals the consumer sends (a Temporal client's handle, as far as it is used)."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str, str, str]] = []

    def get_workflow_handle(self, workflow_id: str) -> Any:
        client = self

        class Handle:
            async def signal(self, name: str, notice: Any) -> None:
                client.signals.append((workflow_id, name, notice.stack_id, notice.status))

        return Handle()


def envelope(message: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": message})


def cfn_message(
    stack_id: str, name: str, status: str, rtype: str = "AWS::CloudFormation::Stack"
) -> str:
    return (
        f"StackId='{stack_id}'\nTimestamp='2026-11-26T02:00:00.000Z'\nEventId='e-1'\n"
        f"LogicalResourceId='{name}'\nNamespace='222222222222'\nResourceProperties='null'\n"
        f"ResourceStatus='{status}'\nResourceStatusReason=''\nResourceType='{rtype}'\n"
        f"StackName='{name}'\nClientRequestToken='t'"
    )


@pytest.fixture
def moto_queue() -> Any:
    with mock_aws():
        aws = Aws(get_settings())
        sqs, sns = aws.platform("sqs", REGION), aws.platform("sns", REGION)
        url = sqs.create_queue(QueueName="bridgehead-stack-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic = sns.create_topic(Name="bridgehead-stack-events")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield aws, topic, url


async def drain(consumer: StackEventConsumer) -> None:
    while await consumer.poll_once(wait_seconds=0) or consumer.sqs.receive_message(
        QueueUrl=consumer.queue_url(), VisibilityTimeout=0
    ).get("Messages"):
        pass


async def test_moto_stack_notifications_become_one_hint_per_terminal_stack_event(moto_queue):
    aws, topic, url = moto_queue
    cfn = aws.platform("cloudformation", REGION)
    stack_id = cfn.create_stack(
        StackName="bridgehead-acme--cluster-c1", TemplateBody=TEMPLATE, NotificationARNs=[topic]
    )["StackId"]
    # Another stack on the same topic that is not Bridgehead's: its events are dropped.
    cfn.create_stack(StackName="someone-else", TemplateBody=TEMPLATE, NotificationARNs=[topic])
    client = FakeClient()
    consumer = StackEventConsumer(aws, client, queue_name="bridgehead-stack-events")
    await drain(consumer)
    assert client.signals == [
        ("cluster-acme-c1", "stack_event", stack_id, "CREATE_COMPLETE"),
    ]
    # Every message was consumed (in-progress and resource events dropped, hints delivered).
    assert aws.platform("sqs", REGION).receive_message(QueueUrl=url).get("Messages") is None


async def test_twin_without_notification_arns_no_hint_arrives(moto_queue):
    aws, _, _ = moto_queue
    aws.platform("cloudformation", REGION).create_stack(
        StackName="bridgehead-acme--cluster-c1", TemplateBody=TEMPLATE
    )
    client = FakeClient()
    await drain(StackEventConsumer(aws, client, queue_name="bridgehead-stack-events"))
    assert client.signals == []


SID = "arn:aws:cloudformation:us-east-2:222222222222:stack/bridgehead-acme--foundation-us-east-2/0f1e2d3c-4b5a-6978"


@pytest.mark.parametrize(
    "body",
    [
        envelope(cfn_message(SID, "bridgehead-acme--foundation-us-east-2", "CREATE_IN_PROGRESS")),
        envelope(
            cfn_message(
                SID, "bridgehead-acme--foundation-us-east-2", "CREATE_COMPLETE", "AWS::S3::Bucket"
            )
        ),
        # Name in the message differs from the name in the stack id.
        envelope(cfn_message(SID, "bridgehead-acme--cluster-c1", "CREATE_COMPLETE")),
        # A foundation stack of another region than the stack id's.
        envelope(
            cfn_message(
                SID.replace("foundation-us-east-2", "foundation-us-west-1"),
                "bridgehead-acme--foundation-us-west-1",
                "CREATE_COMPLETE",
            )
        ),
        envelope("not a CloudFormation message"),
        "not json",
        json.dumps(["a list"]),
    ],
)
def test_other_and_forged_messages_give_no_hint(body):
    assert parse_stack_notification(body) is None


def test_twin_the_well_formed_foundation_event_gives_its_hint():
    hint = parse_stack_notification(
        envelope(cfn_message(SID, "bridgehead-acme--foundation-us-east-2", "ROLLBACK_COMPLETE"))
    )
    assert hint is not None
    assert (hint.workflow_id, hint.notice.stack_id, hint.notice.status) == (
        "org-acme-region-us-east-2",
        SID,
        "ROLLBACK_COMPLETE",
    )


class _Settings:
    def __init__(self, topic: str) -> None:
        self.stack_events_topic = topic


class _Aws:
    def __init__(self, topic: str) -> None:
        self.settings = _Settings(topic)

    def platform_account(self) -> str:
        return "111111111111"


def test_create_stack_names_the_configured_topic():
    from activities.cloudformation import StackActivities

    acts = StackActivities(_Aws("bridgehead-stack-events"), None)  # type: ignore[arg-type]
    assert acts._notification_arns("eu-west-1") == {
        "NotificationARNs": ["arn:aws:sns:eu-west-1:111111111111:bridgehead-stack-events"]
    }


def test_twin_without_a_topic_stacks_notify_nobody():
    from activities.cloudformation import StackActivities

    acts = StackActivities(_Aws(""), None)  # type: ignore[arg-type]
    assert acts._notification_arns("eu-west-1") == {}
