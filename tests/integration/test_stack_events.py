"""Stack events on the embedded stack: the real worker's consumer reads the platform queue and
signals ``stack_event`` to the cluster's workflow.

What the emulator cannot show: moto notifies only a topic of the stack's own account, so the
customer stack cannot reach the platform topic; the test publishes to that topic the message
CloudFormation would send (moto's own format, ``moto/cloudformation/models.py``), with the
cluster's real stack id. The wait itself completes without it on moto (stacks are instant and the
workflow looks at once), as the safety net completes it when an event is lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from temporalio.api.enums.v1 import EventType

from bridgehead import ids
from bridgehead import models as m
from starter.local import customer_admin
from tests.integration.helpers import onboard_ready, wait_for

pytestmark = pytest.mark.integration
ACCOUNT = "272700000001"  # a customer account only this module touches
ORG = "evts"
REGION = "us-east-2"
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.xlarge",
    compute_initial_nodes=1,
    compute_max_nodes=2,
)


def cfn_message(stack_id: str, name: str, status: str) -> str:
    return (
        f"StackId='{stack_id}'\nTimestamp='2026-11-26T02:00:00.000Z'\nEventId='e-{status}'\n"
        f"LogicalResourceId='{name}'\nNamespace='{ACCOUNT}'\nResourceProperties='null'\n"
        f"ResourceStatus='{status}'\nResourceStatusReason=''\n"
        f"ResourceType='AWS::CloudFormation::Stack'\nStackName='{name}'\nClientRequestToken='t'"
    )


async def stack_event_signals(client: Any, wf_id: str) -> list[str]:
    hist = await client.get_workflow_handle(wf_id).fetch_history()
    out = []
    for e in hist.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            a = e.workflow_execution_signaled_event_attributes
            if a.signal_name == "stack_event":
                (notice,) = await client.data_converter.decode(
                    a.input.payloads, [m.StackEventNotice]
                )
                out.append(f"{notice.stack_id} {notice.status}")
    return out


async def test_a_published_stack_event_reaches_the_cluster_workflow_through_the_worker(
    client, stack
):
    await onboard_ready(client, stack, ORG, ACCOUNT, regions=[REGION])
    name = "ev1"
    wf_id = ids.cluster_workflow_id(ORG, name)
    h = await client.start_workflow(
        "ClusterLifecycle",
        m.ClusterLifecycleInput(org_id=ORG, name=name, region=REGION, config=CFG),
        id=wf_id,
        task_queue="bridgehead",
        result_type=m.ClusterResult,
    )
    s = await wait_for(
        h,
        "status",
        m.ClusterStatus,
        lambda s: s.state != m.ClusterState.CREATING and s.state != m.ClusterState.VALIDATING,
        120,
    )
    assert s.state == m.ClusterState.RUNNING, s
    stack_name = ids.cluster_stack(ORG, name)
    cfn = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", REGION)
    stack_id = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackId"]

    # The platform's topic in the stack's region feeds the worker's queue (platform region).
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="bridgehead-stack-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="bridgehead-stack-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    # A forged in-progress event and another org's stack first: neither becomes a hint for us.
    sns.publish(TopicArn=topic, Message=cfn_message(stack_id, stack_name, "UPDATE_IN_PROGRESS"))
    other = stack_id.replace(stack_name, "bridgehead-other--cluster-ev1")
    sns.publish(
        TopicArn=topic,
        Message=cfn_message(other, "bridgehead-other--cluster-ev1", "CREATE_COMPLETE"),
    )
    sns.publish(TopicArn=topic, Message=cfn_message(stack_id, stack_name, "CREATE_COMPLETE"))
    seen: list[str] = []
    for _ in range(60):
        seen = await stack_event_signals(client, wf_id)
        if seen:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # anything else the consumer would have sent has arrived by now
    assert await stack_event_signals(client, wf_id) == [f"{stack_id} CREATE_COMPLETE"]
    # A hint to a RUNNING cluster changes nothing.
    assert (await h.query("status", result_type=m.ClusterStatus)).state == m.ClusterState.RUNNING
    await h.signal("delete")
    assert (await h.result()).state == m.ClusterState.DELETED
