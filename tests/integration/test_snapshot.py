"""The snapshot helper (tests/support/snapshot.py) is itself a proof that must be able to fail:
each kind of stray resource a rejected input could leave behind is planted, and the diff must
name every one of them. Two snapshots with nothing in between must diff to nothing (else every
"nothing created" check built on it would be noise)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from bridgehead.settings import get_settings
from starter.local import PLATFORM_ACCOUNT
from tests.support.snapshot import diff, snapshot, snapshot_async

pytestmark = pytest.mark.integration
ACCOUNT = "270000000019"  # a customer account only this module touches
REGIONS = ["us-east-1", "us-west-2"]
TEMPLATE = json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})


def test_two_snapshots_with_nothing_between_are_equal(stack):
    # Two regions (every supported region across every account the session registered took
    # 100 s; the regions are looked at the same way).
    a = snapshot(stack, accounts=[ACCOUNT], regions=REGIONS)
    b = snapshot(stack, accounts=[ACCOUNT], regions=REGIONS)
    assert diff(a, b) == []
    assert a["image_grants"], (
        "the seeded platform images must appear (else image grants are never looked at)"
    )


async def test_every_planted_stray_is_reported(stack, client):
    settings = get_settings()
    before = await snapshot_async(stack, accounts=[ACCOUNT], regions=REGIONS)

    # A stray registry row naming a new customer account: the snapshot must also discover that
    # account from the registry (the stack planted there is not in ``accounts``).
    discovered = "270000000020"
    ddb = stack.platform("dynamodb")
    ddb.put_item(
        TableName=settings.registry_table,
        Item={
            "pk": {"S": "ORG#stray"},
            "sk": {"S": "META"},
            "org_id": {"S": "stray"},
            "aws_account_id": {"S": discovered},
        },
    )
    ddb.put_item(
        TableName=settings.ledger_table,
        Item={
            "pk": {"S": "ORG#stray"},
            "sk": {"S": "PERIOD#2026-11-25T00#k1"},
            "minutes": {"N": "3"},
        },
    )
    cfn = stack.customer_admin(ACCOUNT, "cloudformation", "us-west-2")
    stack_id = cfn.create_stack(StackName="bridgehead-stray--cluster-k1", TemplateBody=TEMPLATE)[
        "StackId"
    ]
    far_stack = stack.customer_admin(discovered, "cloudformation").create_stack(
        StackName="stray-far", TemplateBody=TEMPLATE
    )["StackId"]
    iam = stack.customer_admin(ACCOUNT, "iam")
    iam.create_role(
        RoleName="BridgeheadStray",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    ec2 = stack.platform("ec2")
    image = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:bridgehead:release", "Values": ["current"]}]
    )["Images"][0]["ImageId"]
    ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": ACCOUNT}]})
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    cust_ec2 = stack.customer_admin(ACCOUNT, "ec2")
    instance = cust_ec2.run_instances(
        ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro"
    )["Instances"][0]["InstanceId"]
    stack.customer_admin(ACCOUNT, "s3").create_bucket(Bucket="bridgehead-stray--bucket")
    sid = "org-stray-reverify"
    await client.create_schedule(
        sid,
        Schedule(
            action=ScheduleActionStartWorkflow(
                "ReverifyOrganization", {"org_id": "stray"}, id=sid, task_queue="bridgehead"
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=24))]),
        ),
    )
    try:
        after = await snapshot_async(stack, accounts=[ACCOUNT], regions=REGIONS)
        lines = diff(before, after)
        text = "\n".join(lines)
        expected = {
            "registry row": "+ registry ORG#stray/META",
            "ledger row": "+ ledger ORG#stray/PERIOD#2026-11-25T00#k1",
            "stack": f"+ stacks {ACCOUNT}/us-west-2/{stack_id}",
            "stack in a discovered account": f"+ stacks {discovered}/us-east-1/{far_stack}",
            "role": f"+ roles {ACCOUNT}/BridgeheadStray",
            "image grant": f"~ image_grants {PLATFORM_ACCOUNT}/us-east-1/{image}: launch_permissions",
            "instance": f"+ instances {ACCOUNT}/us-east-1/{instance}",
            "bucket": f"+ buckets {ACCOUNT}/bridgehead-stray--bucket",
            "schedule": f"+ schedules {sid}",
        }
        missed = [
            what for what, line in expected.items() if not any(x.startswith(line) for x in lines)
        ]
        assert missed == [], f"diff did not report {missed}:\n{text}"
        grant = next(x for x in lines if x.startswith(expected["image grant"]))
        assert ACCOUNT in grant.split("->")[1] and ACCOUNT not in grant.split("->")[0], grant
        # Nothing but what was planted (the new account's own admin role aside).
        planted = [x for x in lines if any(x.startswith(line) for line in expected.values())]
        others = [
            x
            for x in lines
            if x not in planted
            and not x.startswith(f"+ roles {discovered}/OrganizationAccountAccessRole")
        ]
        assert others == [], others
        # An expected change can be left out by prefix; everything else is still reported.
        kept = diff(before, after, ignore=["registry ORG#stray/", "ledger ORG#stray/"])
        assert not any(x.startswith(("+ registry ORG#stray", "+ ledger ORG#stray")) for x in kept)
        assert len(kept) == len(lines) - 2, kept
    finally:
        await client.get_schedule_handle(sid).delete()
        ddb.delete_item(
            TableName=settings.registry_table, Key={"pk": {"S": "ORG#stray"}, "sk": {"S": "META"}}
        )
        ddb.delete_item(
            TableName=settings.ledger_table,
            Key={"pk": {"S": "ORG#stray"}, "sk": {"S": "PERIOD#2026-11-25T00#k1"}},
        )
        cfn.delete_stack(StackName=stack_id)
        iam.delete_role(RoleName="BridgeheadStray")
        ec2.modify_image_attribute(
            ImageId=image, LaunchPermission={"Remove": [{"UserId": ACCOUNT}]}
        )
        cust_ec2.terminate_instances(InstanceIds=[instance])
        stack.customer_admin(ACCOUNT, "s3").delete_bucket(Bucket="bridgehead-stray--bucket")

    # Removal and state changes are differences too: a deleted stack stays, by id, as DELETE_COMPLETE.
    cleaned = await snapshot_async(stack, accounts=[ACCOUNT], regions=REGIONS)
    back = diff(before, cleaned)
    assert f"~ stacks {ACCOUNT}/us-west-2/{stack_id}" not in "\n".join(back)
    assert any(
        x.startswith(f"+ stacks {ACCOUNT}/us-west-2/{stack_id}") and "DELETE_COMPLETE" in x
        for x in back
    ), back
    assert any(
        x.startswith(f"+ instances {ACCOUNT}/us-east-1/{instance}") and "terminated" in x
        for x in back
    ), back
    assert not any(
        x.startswith(
            ("+ registry", "+ ledger", "+ roles", "+ schedules", "+ buckets", "~ image_grants")
        )
        for x in back
    ), back
    changed = diff(after, cleaned)
    assert f"- schedules {sid}" in "\n".join(changed) and any(
        x.startswith("- registry ORG#stray/META") for x in changed
    ), changed
