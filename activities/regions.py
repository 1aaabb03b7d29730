"""Regional foundation support: render the template, check quotas, record state, find leftovers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from activities.registry import Registry
from bridgehead import policies
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    ClusterSummary,
    FoundationRecord,
    FoundationTemplateInput,
    Leftovers,
    LeftoversInput,
    QuotaCheckInput,
    QuotaReport,
    RegionClusters,
    RegionClustersInput,
    RenderedTemplate,
)

log = get_logger("bridgehead.activities.regions")
#: Service Quotas code of "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (vCPUs).
EC2_STANDARD_VCPU_QUOTA = "L-1216C47A"


class RegionActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    @activity.defn
    def render_foundation_template(self, req: FoundationTemplateInput) -> RenderedTemplate:
        org = self.registry.org(req.org_id)
        tags = {policies.TAG_ORG: req.org_id, "bridgehead:region": req.region, "bridgehead:kind": "foundation"}
        return RenderedTemplate(template_body=policies.foundation_template(req.org_id, req.region, org.aws_account_id, tags), tags=tags)

    @activity.defn
    def check_vcpu_quota(self, req: QuotaCheckInput) -> QuotaReport:
        """EC2 vCPU quota through Service Quotas; degrades to a warning where the API is unavailable."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        try:
            sq = self.aws.customer(org, "service-quotas", req.region)
            value = float(sq.get_service_quota(ServiceCode="ec2", QuotaCode=EC2_STANDARD_VCPU_QUOTA)["Quota"]["Value"])
        except ClientError as e:
            return QuotaReport(region=req.region, available=False, needed_vcpus=req.vcpus_needed,
                               message=f"could not read the EC2 vCPU quota ({error_code(e)}); continuing without the check")  # fmt: skip
        except Exception as e:  # noqa: BLE001 - an endpoint without Service Quotas must not block provisioning
            return QuotaReport(region=req.region, available=False, needed_vcpus=req.vcpus_needed,
                               message=f"Service Quotas unavailable ({type(e).__name__}); continuing without the check")  # fmt: skip
        ok = req.vcpus_needed <= value
        return QuotaReport(
            region=req.region, available=True, limit_vcpus=value, needed_vcpus=req.vcpus_needed, sufficient=ok,
            message=f"EC2 standard vCPU quota is {value:g}" + ("" if ok else f", below the {req.vcpus_needed} vCPUs needed; "
                    "request an increase in Service Quotas (code L-1216C47A)"),
        )  # fmt: skip

    @activity.defn
    def record_foundation(self, rec: FoundationRecord) -> None:
        """Record the foundation's state. Moving to DELETING is conditional (READY/FAILED/CREATING
        only) so that a cluster registration racing with cleanup is refused by the registry."""
        bind_subject(org_id=rec.org_id, region=rec.region)
        fields: dict[str, Any] = {"state": rec.state, "stack_name": rec.stack_name, "region": rec.region,
                                  "updated_at": datetime.now(UTC).isoformat()}  # fmt: skip
        if rec.outputs:
            fields["outputs"] = rec.outputs
        self.registry.update(f"ORG#{rec.org_id}", f"REGION#{rec.region}", fields)

    @activity.defn
    def begin_foundation_delete(self, req: RegionClustersInput) -> RegionClusters:
        """Mark the foundation DELETING, then list clusters that block deletion (anything not
        DELETED/CANCELLED). If any blocks, the mark is reverted and nothing is deleted."""
        bind_subject(org_id=req.org_id, region=req.region)
        pk, sk = f"ORG#{req.org_id}", f"REGION#{req.region}"
        before = self.registry.foundation(req.org_id, req.region)
        self.registry.update(pk, sk, {"state": "DELETING", "previous_state": (before or {}).get("state", "NONE"), "region": req.region})
        blocking = [
            ClusterSummary(name=c["name"], region=c["region"], state=c["state"])
            for c in self.registry.clusters(req.org_id)
            if c.get("region") == req.region and c.get("state") not in ("DELETED", "CANCELLED")
        ]
        if blocking:
            self.registry.update(pk, sk, {"state": (before or {}).get("state", "READY")})
        return RegionClusters(clusters=blocking)

    @activity.defn
    def find_leftovers(self, req: LeftoversInput) -> Leftovers:
        """Anything still tagged with the org in the region (tagging API plus live EC2 instances)."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        found: list[str] = []
        tag_filter = [{"Key": policies.TAG_ORG, "Values": [req.org_id]}]
        with aws_errors(f"tag:GetResources in {req.region}"):
            tagging = self.aws.customer(org, "resourcegroupstaggingapi", req.region)
            for page in tagging.get_paginator("get_resources").paginate(TagFilters=tag_filter):
                for mapping in page.get("ResourceTagMappingList", []):
                    arn = mapping["ResourceARN"]
                    if ":instance/" in arn:
                        continue  # terminated instances stay listed; live ones are found below
                    if arn.startswith("arn:aws:s3:::") and f"-{req.region}-" not in arn:
                        continue  # S3 is global in this listing; other regions' buckets are not ours to judge
                    found.append(arn)
            ec2 = self.aws.customer(org, "ec2", req.region)
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": f"tag:{policies.TAG_ORG}", "Values": [req.org_id]},
                         {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
            ):  # fmt: skip
                for r in page["Reservations"]:
                    found.extend(f"instance/{i['InstanceId']}" for i in r["Instances"])
            for vpc in ec2.describe_vpcs(Filters=[{"Name": f"tag:{policies.TAG_ORG}", "Values": [req.org_id]}])["Vpcs"]:
                found.append(f"vpc/{vpc['VpcId']}")
        # Terminated instances and deleted stacks linger in listings; they are not leftovers.
        return Leftovers(resources=sorted(set(r for r in found if ":cloudformation:" not in r)))

