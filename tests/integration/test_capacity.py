"""Capacity failover and access on the embedded stack: the real worker, dev server and moto, with
the test proxy failing chosen stacks on EC2 capacity (tests/support/emulator_proxy.py, extension
6: moto itself completes every stack at once).

Twin: with no capacity for any (type, zone) the same check reports the failure, so a run where
failover did not happen cannot pass it (the logic's own planted defects are in
tests/workflows/test_capacity_timeskip.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import pytest_asyncio

from bridgehead import ids
from bridgehead import models as m
from starter.local import LocalStack, customer_admin, seed_emulator
from tests.conftest import ROOT, TEST_KEY, TEST_KEY_B64, free_port
from tests.integration.helpers import onboard_ready, wait_for

pytestmark = pytest.mark.integration
ACCOUNT = "330000000001"
ORG = "capco"
REGION = "us-east-1"
TYPES = ["c5.xlarge", "c5.large"]


@pytest.fixture(scope="module")
def proxied_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """An embedded stack whose worker reaches moto through the test proxy (no IAM enforcement)."""
    from tests.support.emulator_proxy import EmulatorProxy

    state = tmp_path_factory.mktemp("capacity")
    st = LocalStack(
        state_dir=state,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        worker_env={"BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64},
    )
    proxy = None
    try:
        st.start_moto()
        proxy = EmulatorProxy(st.moto_endpoint, st.platform_keys).start()
        st.endpoint_override = proxy.endpoint
        seed_emulator(st.moto_endpoint, creds=st.platform_keys)
        from starter.local import platform_role_session

        st.worker_keys = platform_role_session(st.moto_endpoint, st.platform_keys)
        st.start_temporal()
        st.start_worker()
        st.proxy = proxy  # type: ignore[attr-defined]
        yield st
    finally:
        st.stop()
        if proxy:
            proxy.stop()
        artifacts = ROOT / "test-artifacts" / "capacity"
        artifacts.mkdir(parents=True, exist_ok=True)
        for log in state.glob("*.log"):
            shutil.copy(log, artifacts / log.name)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def org(proxied_stack: LocalStack):  # type: ignore[no-untyped-def]
    from temporalio.client import Client

    from bridgehead.converter import make_data_converter

    client = await Client.connect(
        proxied_stack.temporal_address, data_converter=make_data_converter(TEST_KEY)
    )
    s = await onboard_ready(client, proxied_stack, ORG, ACCOUNT, [REGION])
    assert s.state == m.OrgState.READY, s
    return client


def foundation_outputs(stack: LocalStack) -> dict[str, str]:
    cfn = customer_admin(stack.aws_endpoint, ACCOUNT, "cloudformation", REGION)
    out = cfn.describe_stacks(StackName=ids.foundation_stack(ORG, REGION))["Stacks"][0]["Outputs"]
    return {o["OutputKey"]: o["OutputValue"] for o in out}


async def create(client, name: str, config: m.ClusterConfig) -> tuple[object, m.ClusterStatus]:
    h = client.get_workflow_handle(ids.cluster_workflow_id(ORG, name), result_type=m.ClusterResult)
    await client.start_workflow(
        "ClusterLifecycle",
        m.ClusterLifecycleInput(org_id=ORG, name=name, region=REGION, config=config),
        id=ids.cluster_workflow_id(ORG, name),
        task_queue="bridgehead",
    )
    s = await wait_for(
        h,
        "status",
        m.ClusterStatus,
        lambda s: s.state in (m.ClusterState.RUNNING, m.ClusterState.FAILED),
        240,
    )
    return h, s


def capacity_problems(stack: LocalStack, s: m.ClusterStatus, out: dict[str, str]) -> list[str]:
    """Failover as seen from outside: attempts, and the compute group really running the next
    type in the first zone."""
    a, b = out["PrivateSubnet1Id"], out["PrivateSubnet2Id"]
    if s.state != m.ClusterState.RUNNING:
        return [f"cluster {s.state.value}: {s.failure_reason}"]
    problems = []
    seen = [(x.compute_instance_type, x.subnet_id, x.outcome, x.error_code) for x in s.attempts]
    if seen != [
        ("c5.xlarge", a, "capacity", "InsufficientInstanceCapacity"),
        ("c5.xlarge", b, "capacity", "InsufficientInstanceCapacity"),
        ("c5.large", a, "running", None),
    ]:
        problems.append(f"attempts {seen}")
    asg = customer_admin(stack.aws_endpoint, ACCOUNT, "autoscaling", REGION)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[s.outputs["ComputeGroupName"]])
    g = group["AutoScalingGroups"][0]
    ec2 = customer_admin(stack.aws_endpoint, ACCOUNT, "ec2", REGION)
    lt = ec2.describe_launch_template_versions(
        LaunchTemplateId=g["LaunchTemplate"]["LaunchTemplateId"], Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    if (lt["InstanceType"], g["VPCZoneIdentifier"]) != ("c5.large", a):
        problems.append(f"compute group runs {lt['InstanceType']} in {g['VPCZoneIdentifier']}")
    if s.compute_instance_type != "c5.large":
        problems.append(f"status type {s.compute_instance_type}")
    return problems


async def test_foundation_has_private_subnets_in_two_zones(org, proxied_stack):
    out = foundation_outputs(proxied_stack)
    ec2 = customer_admin(proxied_stack.aws_endpoint, ACCOUNT, "ec2", REGION)
    subnets = ec2.describe_subnets(SubnetIds=[out["PrivateSubnet1Id"], out["PrivateSubnet2Id"]])
    zones = {sn["SubnetId"]: sn["AvailabilityZone"] for sn in subnets["Subnets"]}
    assert zones == {
        out["PrivateSubnet1Id"]: out["PrivateSubnet1Az"],
        out["PrivateSubnet2Id"]: out["PrivateSubnet2Az"],
    }
    assert out["PrivateSubnet1Az"] != out["PrivateSubnet2Az"]
    assert out["PrivateSubnetId"] == out["PrivateSubnet1Id"]  # older readers keep working


async def test_injected_capacity_errors_fail_over_to_the_next_zone_then_type(org, proxied_stack):
    proxy = proxied_stack.proxy  # type: ignore[attr-defined]
    out = foundation_outputs(proxied_stack)
    a, b = out["PrivateSubnet1Id"], out["PrivateSubnet2Id"]
    proxy.no_capacity, proxy.capacity_failures = {("c5.xlarge", a), ("c5.xlarge", b)}, []
    try:
        config = m.ClusterConfig(
            head_instance_type="t3.medium",
            compute_instance_types=TYPES,
            compute_initial_nodes=1,
            compute_max_nodes=2,
        )
        h, s = await create(org, "cap1", config)
    finally:
        proxy.no_capacity = set()
    assert capacity_problems(proxied_stack, s, out) == []
    assert proxy.capacity_failures == [("c5.xlarge", a), ("c5.xlarge", b)]
    assert all("sufficient c5.xlarge capacity" in x.reason for x in s.attempts[:2])
    head = s.outputs["HeadInstanceId"]
    assert s.connect == m.ConnectInfo(
        head_instance_id=head,
        ssm_command=f"aws ssm start-session --target {head} --region {REGION}",
    )
    # The deployed template waits for the head node's readiness signal (moto does not honour it).
    cfn = customer_admin(proxied_stack.aws_endpoint, ACCOUNT, "cloudformation", REGION)
    body = cfn.get_template(StackName=s.stack_name)["TemplateBody"]
    body = body if isinstance(body, dict) else __import__("json").loads(body)
    assert body["Resources"]["HeadNode"]["CreationPolicy"] == {
        "ResourceSignal": {"Count": 1, "Timeout": "PT20M"}
    }
    await h.signal("delete")
    res = await h.result()
    assert res.state == m.ClusterState.DELETED
    assert [x.compute_instance_type for x in res.segments] == ["c5.large"]


async def test_twin_with_no_capacity_anywhere_the_check_reports_the_failure(org, proxied_stack):
    proxy = proxied_stack.proxy  # type: ignore[attr-defined]
    out = foundation_outputs(proxied_stack)
    proxy.no_capacity = {(t, out[f"PrivateSubnet{n}Id"]) for t in TYPES for n in (1, 2)}
    try:
        config = m.ClusterConfig(
            head_instance_type="t3.medium",
            compute_instance_types=TYPES,
            compute_initial_nodes=1,
            compute_max_nodes=2,
        )
        h, s = await create(org, "cap2", config)
    finally:
        proxy.no_capacity = set()
    problems = capacity_problems(proxied_stack, s, out)
    assert problems == [f"cluster FAILED: {s.failure_reason}"]
    assert s.failure_reason.endswith(
        "(no capacity left to try: 4 attempts over 2 instance types and 2 Availability Zones)"
    )
    assert [x.outcome for x in s.attempts] == ["capacity"] * 4
    await h.signal("delete")
    assert (await h.result()).state == m.ClusterState.DELETED


def ssh_rules(stack: LocalStack, groups: list[str] | None = None) -> list[tuple[int, str]]:
    """Inbound CIDR rules of security groups (default: the foundation's shared head group)."""
    ec2 = customer_admin(stack.aws_endpoint, ACCOUNT, "ec2", REGION)
    groups = groups or [foundation_outputs(stack)["HeadSecurityGroupId"]]
    return [
        (p.get("FromPort", -1), r["CidrIp"])
        for sg in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
        for p in sg["IpPermissions"]
        for r in p.get("IpRanges", [])
    ]


def console_tail_of(stack: LocalStack, stack_name: str, monkeypatch) -> m.ConsoleTail:
    from temporalio.testing import ActivityEnvironment

    from activities.aws import Aws
    from activities.clusters import ClusterActivities
    from activities.registry import Registry
    from bridgehead.settings import get_settings

    for k, v in stack.env().items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        aws = Aws(get_settings())
        acts = ClusterActivities(aws, Registry(aws))
        req = m.ConsoleTailInput(org_id=ORG, region=REGION, stack_name=stack_name)
        return ActivityEnvironment().run(acts.head_console_tail, req)
    finally:
        get_settings.cache_clear()


async def test_ssh_only_where_configured_and_status_gives_the_command(
    org, proxied_stack, monkeypatch
):
    assert ssh_rules(proxied_stack) == []  # no inbound SSH by default
    ec2 = customer_admin(proxied_stack.aws_endpoint, ACCOUNT, "ec2", REGION)
    ec2.create_key_pair(KeyName="ops")
    config = m.ClusterConfig(
        head_instance_type="t3.medium",
        compute_instance_type="c5.large",
        compute_initial_nodes=0,
        ssh_cidr="203.0.113.0/24",
        ssh_key_name="ops",
    )
    h, s = await create(org, "cap3", config)
    assert s.state == m.ClusterState.RUNNING, s.failure_reason
    # The rule is on a security group of this cluster's own stack, never on the region's shared
    # one. (moto ignores an instance's SecurityGroupIds in a template, so that the head node wears
    # it is checked on the template: tests/test_units.py::test_ssh_group_is_the_clusters_own.)
    cfn = customer_admin(proxied_stack.aws_endpoint, ACCOUNT, "cloudformation", REGION)
    own = cfn.describe_stack_resource(
        StackName=s.stack_name, LogicalResourceId="HeadSshSecurityGroup"
    )
    group = own["StackResourceDetail"]["PhysicalResourceId"]
    assert ssh_rules(proxied_stack, [group]) == [(22, "203.0.113.0/24")]
    assert ssh_rules(proxied_stack) == []
    head = ec2.describe_instances(InstanceIds=[s.outputs["HeadInstanceId"]])
    instance = head["Reservations"][0]["Instances"][0]
    address = s.outputs.get("LoginAddress") or s.outputs["HeadPrivateIp"]
    assert (
        s.connect is not None
        and s.connect.ssh_command == f"ssh -i ~/.ssh/ops.pem ec2-user@{address}"
    )
    assert instance["KeyName"] == "ops"
    # The console tail a bootstrap failure would report, read through the org's role (moto answers
    # a fixed 10-line sample, base64-encoded as EC2 does).
    tail = console_tail_of(proxied_stack, s.stack_name, monkeypatch)
    assert tail.instance_id == s.outputs["HeadInstanceId"] and len(tail.lines) == 10
    assert tail.lines[0].startswith("Linux version 2.6.16-xenU") and tail.lines[-1] == (
        "Enabling fast FPU save and restore... done."
    )
    await h.signal("delete")
    assert (await h.result()).state == m.ClusterState.DELETED
