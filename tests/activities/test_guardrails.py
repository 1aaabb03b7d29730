"""activities/guardrails.py against moto, in the customer account through the organisation's
role: the head node's CPU read from CloudWatch (points, maximum, the last busy one), and a cluster
stopped (head node stopped, compute group to 0) and started again (its size restored); repeated
calls repeat the same outcome. Refusals fail at once, throttling is retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.guardrails import GuardrailActivities
from bridgehead import models as m
from tests.activities.conftest import REGION, Platform, admin, customer_client, refuse, run

ACTIVITIES = ("head_cpu", "stop_cluster_nodes", "start_cluster_nodes")

ORG = "acme"
GROUP = "bridgehead-acme--c1-compute"


@pytest.fixture
def acts(platform: Platform) -> GuardrailActivities:
    platform.ready_org(ORG)
    return GuardrailActivities(platform.aws, platform.registry)


@pytest.fixture
def cluster() -> str:
    """A running cluster in the customer account: its head node and a compute group of 2."""
    ec2 = admin("ec2")
    head = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    ec2.create_launch_template(
        LaunchTemplateName=GROUP,
        LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "c5.xlarge"},
    )
    admin("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": GROUP},
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=[f"{REGION}a"],
    )
    return str(head["InstanceId"])


def head_state(instance: str) -> str:
    reservations = admin("ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


def group() -> dict[str, Any]:
    groups = admin("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    g = groups["AutoScalingGroups"][0]
    return {"min": g["MinSize"], "desired": g["DesiredCapacity"], "instances": len(g["Instances"])}


def test_the_head_nodes_cpu_is_read_from_cloudwatch(acts: GuardrailActivities, cluster: str):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    points = {50: 97.0, 40: 3.0, 20: 41.5, 5: 2.0}  # minutes ago -> CPU %
    admin("cloudwatch").put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "InstanceId", "Value": cluster}],
                "Timestamp": now - timedelta(minutes=ago),
                "Value": value,
            }
            for ago, value in points.items()
        ],
    )
    query = m.CpuQuery(
        org_id=ORG,
        region=REGION,
        instance_id=cluster,
        start=now - timedelta(minutes=45),
        end=now,
        threshold_percent=10.0,
    )
    reading = run(acts.head_cpu, query)
    assert (reading.datapoints, reading.max_percent) == (3, 41.5)  # 50 minutes ago is outside
    assert reading.last_busy_at == now - timedelta(minutes=20)
    other = query.model_copy(update={"instance_id": "i-0000000000000000f"})
    assert run(acts.head_cpu, other) == m.CpuReading(datapoints=0)


def test_stop_keeps_storage_and_start_restores_the_size(acts: GuardrailActivities, cluster: str):
    assert group() == {"min": 1, "desired": 2, "instances": 2}
    power = m.PowerInput(
        org_id=ORG,
        region=REGION,
        head_instance_id=cluster,
        compute_group=GROUP,
        compute_nodes=2,
        compute_min_nodes=1,
    )
    stopped = run(acts.stop_cluster_nodes, power)
    run(acts.stop_cluster_nodes, power)  # a retry: still stopped, still 0
    assert stopped.compute_desired == 0 and stopped.head_state in ("stopping", "stopped")
    assert head_state(cluster) == "stopped" and group() == {"min": 0, "desired": 0, "instances": 0}
    started = run(acts.start_cluster_nodes, power)
    run(acts.start_cluster_nodes, power)
    assert started.compute_desired == 2 and started.head_state in ("pending", "running")
    assert head_state(cluster) == "running" and group() == {"min": 1, "desired": 2, "instances": 2}


@pytest.mark.parametrize(
    "service,operation,code,retried",
    [
        ("cloudwatch", "GetMetricStatistics", "AccessDenied", False),
        ("cloudwatch", "GetMetricStatistics", "Throttling", True),
        ("ec2", "StopInstances", "UnauthorizedOperation", False),
        ("autoscaling", "UpdateAutoScalingGroup", "Throttling", True),
    ],
)
def test_refusals_fail_at_once_and_throttling_is_retried(
    acts: GuardrailActivities,
    platform: Platform,
    cluster: str,
    service: str,
    operation: str,
    code: str,
    retried: bool,
):
    refuse(customer_client(platform, ORG, service), operation, code)
    with pytest.raises(ApplicationError) as e:
        if service == "cloudwatch":
            now = datetime.now(UTC)
            query = m.CpuQuery(
                org_id=ORG,
                region=REGION,
                instance_id=cluster,
                start=now - timedelta(hours=1),
                end=now,
                threshold_percent=5,
            )
            run(acts.head_cpu, query)
        else:
            power = m.PowerInput(
                org_id=ORG, region=REGION, head_instance_id=cluster, compute_group=GROUP
            )
            run(acts.stop_cluster_nodes, power)
    kind = "AwsThrottled" if retried else "AwsPermissionError"
    assert (e.value.type, e.value.non_retryable) == (kind, not retried), e.value
    assert e.value.message.startswith(f"{service}:{operation}")
    if not retried:
        assert head_state(cluster) == "running", "nothing was stopped"
