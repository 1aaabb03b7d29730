"""The real worker against the dev server and moto server: onboarding, images, foundation,
a cluster created and deleted in the customer account, and regional cleanup."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowFailureError

from bridgehead import models as m
from starter.local import customer_admin
from tests.integration.helpers import onboard_ready, start_cluster, wait_for

pytestmark = pytest.mark.integration
ACCOUNT = "222222222222"
CFG = m.ClusterConfig(
    head_instance_type="t3.medium",
    compute_instance_type="c5.xlarge",
    compute_initial_nodes=2,
    compute_max_nodes=4,
)


async def test_onboarding_shares_images_and_builds_foundations(client, stack):
    s = await onboard_ready(client, stack, "acme", ACCOUNT)
    assert s.state == m.OrgState.READY, s
    assert {r: (p.images, p.foundation) for r, p in s.regions.items()} == {
        r: ("SHARED", "READY") for r in ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
    }
    # READY is shown as soon as it is recorded; the meter starts right after.
    await wait_for(
        client.get_workflow_handle("org-acme"),
        "status",
        m.OrgStatus,
        lambda s: any("billing meter started" in x for x in s.steps),
        30,
    )
    meter = await client.get_workflow_handle("billing-acme").describe()
    assert meter.status.name == "RUNNING", "READY starts the organisation's billing meter"
    images = await client.get_workflow_handle(
        "org-acme-images", result_type=m.ShareImagesResult
    ).result()
    assert images.regions["us-west-1"].copied_from, (
        "us-west-1 had no image and must have been copied"
    )
    assert not images.regions["us-east-1"].copied_from
    for region, st in images.regions.items():
        # The grants that let the customer launch the image and use its snapshots. (moto does not
        # model cross-account image visibility; launching it in the customer account is proved by
        # the cluster test, whose head node runs from this image there.)
        platform_ec2 = __import__("boto3").client("ec2", region_name=region)
        perms = platform_ec2.describe_image_attribute(
            ImageId=st.image_id, Attribute="launchPermission"
        )["LaunchPermissions"]
        assert {"UserId": ACCOUNT} in perms
        for snap in st.snapshot_ids:
            sp = platform_ec2.describe_snapshot_attribute(
                SnapshotId=snap, Attribute="createVolumePermission"
            )["CreateVolumePermissions"]
            assert {"UserId": ACCOUNT} in sp
    # Foundation resources exist in the customer account (not the platform account).
    cfn = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", "us-east-2")
    res = cfn.describe_stack_resources(StackName="bridgehead-acme--foundation-us-east-2")[
        "StackResources"
    ]
    types = {r["ResourceType"] for r in res}
    for t in (
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::SecurityGroup",
        "AWS::EFS::FileSystem",
        "AWS::EFS::MountTarget",
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
    ):
        assert t in types, t
    # The node role and profile come from the customer's role template, never from Bridgehead (issue 18).
    assert not [t for t in types if t.startswith("AWS::IAM::")]
    node = "bridgehead-acme--node-us-east-2"
    profiles = customer_admin(stack.aws_endpoint, ACCOUNT, "iam").list_instance_profiles_for_role(
        RoleName=node
    )["InstanceProfiles"]
    assert [p["InstanceProfileName"] for p in profiles] == [node]
    vpcs = customer_admin(stack.aws_endpoint, ACCOUNT, "ec2", "us-east-2").describe_vpcs(
        Filters=[{"Name": "tag:bridgehead:org", "Values": ["acme"]}]
    )["Vpcs"]
    assert len(vpcs) == 1
    # Re-running the image share changes nothing.
    again = await client.execute_workflow(
        "ShareImages",
        m.ShareImagesInput(org_id="acme"),
        id="org-acme-images",
        task_queue="bridgehead",
        result_type=m.ShareImagesResult,
    )
    assert {r: x.image_id for r, x in again.regions.items()} == {
        r: x.image_id for r, x in images.regions.items()
    }


async def test_cluster_created_in_customer_account_then_deleted(client, stack):
    ses = __import__("boto3").client("ses", region_name="us-east-1")
    sent_before = ses.get_send_quota()["SentLast24Hours"]
    h, s = await start_cluster(
        client,
        m.ClusterLifecycleInput(
            org_id="acme", name="c1", region="us-east-2", config=CFG, owner="alice"
        ),
        120,
    )
    assert s.state == m.ClusterState.RUNNING, s
    ec2 = customer_admin(stack.aws_endpoint, ACCOUNT, "ec2", "us-east-2")
    filters = [
        {"Name": "tag:bridgehead:cluster", "Values": ["c1"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    instances = [
        i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]
    ]
    assert instances, "the head node runs in the customer account"
    images = await client.get_workflow_handle(
        "org-acme-images", result_type=m.ShareImagesResult
    ).result()
    for inst in instances:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        assert tags["bridgehead:org"] == "acme" and tags["bridgehead:owner"] == "alice"
        assert inst["ImageId"] == images.regions["us-east-2"].image_id
    # Cleanup is refused while the cluster exists, and deletes nothing.
    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "CleanupRegion",
            m.CleanupRegionInput(org_id="acme", region="us-east-2"),
            id="org-acme-cleanup-us-east-2",
            task_queue="bridgehead",
        )
    assert "c1 (RUNNING)" in str(e.value.cause)
    cfn = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", "us-east-2")
    assert (
        cfn.describe_stacks(StackName="bridgehead-acme--foundation-us-east-2")["Stacks"][0][
            "StackStatus"
        ]
        == "CREATE_COMPLETE"
    )

    await h.signal("delete")
    await h.signal("delete")  # idempotent
    result = await h.result()
    assert result.state == m.ClusterState.DELETED
    assert len(result.segments) == 1 and result.segments[0].end is not None
    left = [
        i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]
    ]
    assert not left
    org_filter = [
        {"Name": "tag:bridgehead:org", "Values": ["acme"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    org_left = [
        (i["InstanceId"], i.get("Tags"))
        for r in ec2.describe_instances(Filters=org_filter)["Reservations"]
        for i in r["Instances"]
    ]
    assert not org_left, org_left
    # The org admin was emailed (SES, platform account) when the cluster ran and when it was deleted.
    # (moto's /moto-api/data.json would show the messages, but reading it brought a terminated
    # instance back to "running" here (moto 5.2.5), so the test counts sends instead.)
    assert ses.get_send_quota()["SentLast24Hours"] - sent_before >= 2
    stacks = [
        x["StackName"]
        for x in cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE", "ROLLBACK_COMPLETE"])[
            "StackSummaries"
        ]
    ]
    assert "bridgehead-acme--cluster-c1" not in stacks

    # A FAILED cluster blocks cleanup too (moto cannot fail a stack, so the registry holds one the
    # way ClusterLifecycle records it), and the refusal names it; once it is deleted, cleanup runs.
    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    reg = Registry(Aws(get_settings()))
    reg.put(
        {
            "pk": "ORG#acme",
            "sk": "CLUSTER#broken",
            "name": "broken",
            "region": "us-east-2",
            "state": "FAILED",
            "segments": [],
        }
    )
    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "CleanupRegion",
            m.CleanupRegionInput(org_id="acme", region="us-east-2"),
            id="org-acme-cleanup-us-east-2",
            task_queue="bridgehead",
        )
    assert "broken (FAILED)" in str(e.value.cause) and "nothing was deleted" in str(e.value.cause)
    assert (
        cfn.describe_stacks(StackName="bridgehead-acme--foundation-us-east-2")["Stacks"][0][
            "StackStatus"
        ]
        == "CREATE_COMPLETE"
    )
    reg.update("ORG#acme", "CLUSTER#broken", {"state": "DELETED"})

    # Now cleanup is allowed: the stack goes, what CloudFormation left behind is swept (moto's
    # CloudFormation cannot delete internet/NAT gateways and route tables), and nothing tagged
    # with the organisation remains in the region.
    res = await client.execute_workflow(
        "CleanupRegion",
        m.CleanupRegionInput(org_id="acme", region="us-east-2"),
        id="org-acme-cleanup-us-east-2",
        task_queue="bridgehead",
        result_type=m.CleanupResult,
    )
    assert res.deleted and "nothing tagged remains" in res.message
    assert "bridgehead-acme--foundation-us-east-2" not in [
        x["StackName"]
        for x in cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]
    ]
    tagging = customer_admin(stack.aws_endpoint, ACCOUNT, "resourcegroupstaggingapi", "us-east-2")
    tagged = [
        r["ResourceARN"]
        for r in tagging.get_resources(TagFilters=[{"Key": "bridgehead:org", "Values": ["acme"]}])[
            "ResourceTagMappingList"
        ]
    ]
    ec2_left = ec2.describe_vpcs(Filters=[{"Name": "tag:bridgehead:org", "Values": ["acme"]}])[
        "Vpcs"
    ]
    nats = {n["NatGatewayId"]: n["State"] for n in ec2.describe_nat_gateways()["NatGateways"]}
    live = [
        x
        for x in tagged
        if ":instance/" not in x
        and ":cloudformation:" not in x
        and not x.startswith("arn:aws:s3:::")
        and nats.get(x.rsplit("/", 1)[-1]) != "deleted"
    ]
    assert not live and not ec2_left, live
    # Other regions of the organisation are untouched.
    east1 = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", "us-east-1")
    assert (
        east1.describe_stacks(StackName="bridgehead-acme--foundation-us-east-1")["Stacks"][0][
            "StackStatus"
        ]
        == "CREATE_COMPLETE"
    )


async def test_offboarding_removes_everything_and_closes_the_last_hour(client, stack):
    """``offboard``: refused (nothing changed) while a cluster remains, FAILED ones included; then
    every foundation stack, image grant, the re-verification Schedule and the billing meter go,
    the meter bills the last, unfinished hour of a deleted cluster, and the org ends OFFBOARDED."""
    from datetime import UTC, datetime, timedelta

    import boto3
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from activities.aws import Aws
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    account, regions = "262626262626", ["us-east-1", "us-west-1"]
    s = await onboard_ready(client, stack, "revo", account, regions)
    assert s.state == m.OrgState.READY, s
    h = client.get_workflow_handle("org-revo", result_type=m.OrgStatus)
    await wait_for(
        h,
        "status",
        m.OrgStatus,
        lambda s: (
            any("billing meter started" in x for x in s.steps)
            and any("re-verification scheduled" in x for x in s.steps)
        ),
        30,
    )
    shared = await client.get_workflow_handle(
        "org-revo-images", result_type=m.ShareImagesResult
    ).result()
    cfns = {r: customer_admin(stack.aws_endpoint, account, "cloudformation", r) for r in regions}

    def foundations() -> dict[str, str]:
        out = {}
        for r, cfn in cfns.items():
            live = {
                x["StackName"]: x["StackStatus"]
                for x in cfn.list_stacks()["StackSummaries"]
                if x["StackStatus"] != "DELETE_COMPLETE"
            }
            out[r] = live.get(f"bridgehead-revo--foundation-{r}", "GONE")
        return out

    assert foundations() == {r: "CREATE_COMPLETE" for r in regions}

    # The wrong organisation id is refused by the validator (nothing reaches history).
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id="acme"), result_type=m.UpdateResult
        )
    assert "confirm_org_id must be this organisation's id ('revo')" in str(e.value.cause)

    # A FAILED cluster blocks offboarding, and the refusal changes nothing.
    reg = Registry(Aws(get_settings()))
    reg.put(
        {
            "pk": "ORG#revo",
            "sk": "CLUSTER#broken",
            "name": "broken",
            "region": "us-west-1",
            "state": "FAILED",
            "segments": [],
        }
    )
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await h.execute_update(
            "offboard", m.OffboardInput(confirm_org_id="revo"), result_type=m.UpdateResult
        )
    assert "broken in us-west-1 (FAILED)" in str(e.value.cause) and "nothing was changed" in str(
        e.value.cause
    )
    assert (await h.query("status", result_type=m.OrgStatus)).state == m.OrgState.READY
    assert reg.org_item("revo")["state"] == "READY"
    assert foundations() == {r: "CREATE_COMPLETE" for r in regions}

    # A cluster that ran 25 minutes ending just now (1 head + 2 compute nodes), deleted: its hour
    # has not ended, so only the meter's final close can bill it.
    end = datetime.now(UTC).replace(microsecond=0)
    seg = {
        "start": (end - timedelta(minutes=25)).isoformat(),
        "end": end.isoformat(),
        "head_instance_type": "t3.medium",
        "compute_instance_type": "c5.xlarge",
        "compute_nodes": 2,
    }
    reg.put(
        {
            "pk": "ORG#revo",
            "sk": "CLUSTER#ran",
            "name": "ran",
            "region": "us-east-1",
            "state": "DELETED",
            "segments": [seg],
        }
    )
    reg.update("ORG#revo", "CLUSTER#broken", {"state": "DELETED"})

    # Through the project's CLI, as an operator would (the update, then progress until the end).
    import os
    import subprocess
    import sys

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "starter",
            "--json",
            "onboard",
            "offboard",
            "--org",
            "revo",
            "--confirm",
            "revo",
            "--wait",
            "--timeout",
            "300",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **stack.env()},
        timeout=400,
    )
    assert cli.returncode == 0, (cli.stdout, cli.stderr)
    # --json prints one document, the outcome.
    assert json.loads(cli.stdout)["state"] == "OFFBOARDED", cli.stdout
    final = await h.result()
    assert final.state == m.OrgState.OFFBOARDED, final
    assert {r: (p.images, p.foundation) for r, p in final.regions.items()} == {
        r: ("REVOKED", "DELETED") for r in regions
    }
    assert reg.org_item("revo")["state"] == "OFFBOARDED"
    assert foundations() == {r: "GONE" for r in regions}
    # Every grant is revoked; another organisation's grants in the same region are untouched.
    for region, st in shared.regions.items():
        ec2 = boto3.client("ec2", region_name=region)
        perms = ec2.describe_image_attribute(ImageId=st.image_id, Attribute="launchPermission")[
            "LaunchPermissions"
        ]
        assert {"UserId": account} not in perms
        for snap in st.snapshot_ids:
            sp = ec2.describe_snapshot_attribute(
                SnapshotId=snap, Attribute="createVolumePermission"
            )["CreateVolumePermissions"]
            assert {"UserId": account} not in sp
    acme = await client.get_workflow_handle(
        "org-acme-images", result_type=m.ShareImagesResult
    ).result()
    perms = boto3.client("ec2", region_name="us-east-1").describe_image_attribute(
        ImageId=acme.regions["us-east-1"].image_id, Attribute="launchPermission"
    )["LaunchPermissions"]
    assert {"UserId": ACCOUNT} in perms
    # The Schedule is gone; the meter closed the unfinished hour, metered it, and ended.
    with pytest.raises(RPCError) as gone:
        await client.get_schedule_handle("org-revo-reverify").describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    usage = await client.get_workflow_handle("billing-revo", result_type=m.UsageTotals).result()
    assert usage.node_minutes == 25 * 3, usage
    # revo has no AWS Marketplace link: its usage stays in the ledger, never sent to Marketplace
    # under a made-up customer (metering a linked buyer is proved in test_marketplace_*.py).
    assert (
        usage.metered_records == 0
        and usage.unprocessed_records == 0
        and "no AWS Marketplace link" in (usage.metering_skipped or "")
    ), usage
    assert reg.query("ORG#revo", "METER#", table=reg.ledger) == []
    # Nothing can be created for an offboarded organisation.
    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(org_id="revo", name="late", region="us-east-1", config=CFG),
            id="cluster-revo-late",
            task_queue="bridgehead",
            result_type=m.ClusterResult,
        )
    assert "OFFBOARDED" in str(e.value.cause)
    if __import__("os").environ.get(
        "BRIDGEHEAD_RECORD_HISTORIES"
    ):  # replay corpus: the offboarding paths
        from tests.integration.helpers import history_json
        from tests.test_replay import HISTORIES

        for wf_id, name in (
            ("org-revo", "OnboardOrganization--offboarded"),
            ("billing-revo", "BillingMeter--stopped"),
        ):
            (HISTORIES / f"{name}.json").write_text(await history_json(client, wf_id))
            (HISTORIES / f"{name}.id").write_text(wf_id + "\n")


async def test_invalid_cluster_request_fails_clearly_and_creates_nothing(client, stack):
    bad = CFG.model_copy(update={"head_instance_type": "x9.mega"})
    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "ClusterLifecycle",
            m.ClusterLifecycleInput(org_id="acme", name="bad1", region="us-east-1", config=bad),
            id="cluster-acme-bad1",
            task_queue="bridgehead",
        )
    assert "config.head_instance_type: 'x9.mega' is not an offered instance type" in str(
        e.value.cause
    )
    cfn = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", "us-east-1")
    assert all("bad1" not in x["StackName"] for x in cfn.list_stacks()["StackSummaries"])


async def test_plain_json_start_is_validated(client, stack):
    """What `temporal workflow start --input '{...}'` sends: raw JSON, rejected with pydantic's message."""
    from temporalio.api.common.v1 import Payload

    with pytest.raises(WorkflowFailureError) as e:
        await client.execute_workflow(
            "OnboardOrganization",
            {
                "org_id": "Bad Id!",
                "display_name": "x",
                "admin_email": "nope",
                "aws_account_id": "12",
                "bogus": 1,
            },
            id="org-badinput",
            task_queue="bridgehead",
        )
    text = str(e.value.cause)
    for field in ("org_id", "admin_email", "aws_account_id", "bogus"):
        assert field in text
    assert Payload  # the client sent plain json/plain payloads (no codec for non-sensitive values)
