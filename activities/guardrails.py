"""Guard rails in customer accounts: read the head node's CPU from CloudWatch, stop and start a
cluster's instances (storage kept).

Idempotency: stopping and starting set absolute states (an instance stopped twice stays stopped,
the compute group's capacity is set, not changed by a delta), so a retried activity repeats the
same outcome. Every call goes through the organisation's own role (looked up by ``org_id``).
"""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

from temporalio import activity

from activities.aws import Aws
from activities.errors import aws_errors
from activities.registry import Registry
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import CpuQuery, CpuReading, PowerInput, PowerResult

log = get_logger("bridgehead.activities.guardrails")

#: GetMetricStatistics returns at most 1,440 data points per call.
MAX_POINTS = 1440


class GuardrailActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    def _client(self, org_id: str, service: str, region: str) -> Any:
        return self.aws.customer(self.registry.org(org_id), service, region)

    @activity.defn
    def head_cpu(self, req: CpuQuery) -> CpuReading:
        """The head node's ``CPUUtilization`` (per-minute maxima, or coarser for long windows so
        one call suffices): how many points, their maximum, the latest at or above the threshold."""
        bind_subject(org_id=req.org_id, region=req.region)
        seconds = max((req.end - req.start).total_seconds(), 60)
        period = 60 * max(1, math.ceil(seconds / 60 / MAX_POINTS))
        cw = self._client(req.org_id, "cloudwatch", req.region)
        with aws_errors("cloudwatch:GetMetricStatistics"):
            points = cw.get_metric_statistics(
                Namespace="AWS/EC2",
                MetricName="CPUUtilization",
                Dimensions=[{"Name": "InstanceId", "Value": req.instance_id}],
                StartTime=req.start,
                EndTime=req.end,
                Period=period,
                Statistics=["Maximum"],
            ).get("Datapoints", [])
        values = [(p["Timestamp"].astimezone(UTC), float(p["Maximum"])) for p in points]
        busy = [t for t, v in values if v >= req.threshold_percent]
        reading = CpuReading(
            datapoints=len(values),
            max_percent=max((v for _, v in values), default=None),
            last_busy_at=max(busy, default=None),
        )
        log.info(
            "head node CPU read",
            instance=req.instance_id,
            datapoints=reading.datapoints,
            max_percent=reading.max_percent,
        )
        return reading

    @activity.defn
    def stop_cluster_nodes(self, req: PowerInput) -> PowerResult:
        """Compute group to 0 (its instances terminate; the shared file system stays), head node
        stopped (its EBS volume stays)."""
        bind_subject(org_id=req.org_id, region=req.region)
        desired = None
        if req.compute_group:
            auto = self._client(req.org_id, "autoscaling", req.region)
            with aws_errors("autoscaling:UpdateAutoScalingGroup"):
                auto.update_auto_scaling_group(
                    AutoScalingGroupName=req.compute_group, MinSize=0, DesiredCapacity=0
                )
            desired = 0
        state = None
        if req.head_instance_id:
            ec2 = self._client(req.org_id, "ec2", req.region)
            with aws_errors("ec2:StopInstances"):
                out = ec2.stop_instances(InstanceIds=[req.head_instance_id])
            state = out["StoppingInstances"][0]["CurrentState"]["Name"]
        return PowerResult(head_state=state, compute_desired=desired)

    @activity.defn
    def start_cluster_nodes(self, req: PowerInput) -> PowerResult:
        """Head node started, compute group back to ``compute_nodes``."""
        bind_subject(org_id=req.org_id, region=req.region)
        state = None
        if req.head_instance_id:
            ec2 = self._client(req.org_id, "ec2", req.region)
            with aws_errors("ec2:StartInstances"):
                out = ec2.start_instances(InstanceIds=[req.head_instance_id])
            state = out["StartingInstances"][0]["CurrentState"]["Name"]
        desired = None
        if req.compute_group:
            auto = self._client(req.org_id, "autoscaling", req.region)
            with aws_errors("autoscaling:UpdateAutoScalingGroup"):
                auto.update_auto_scaling_group(
                    AutoScalingGroupName=req.compute_group,
                    MinSize=req.compute_min_nodes,
                    DesiredCapacity=req.compute_nodes,
                )
            desired = req.compute_nodes
        return PowerResult(head_state=state, compute_desired=desired)
