"""Regional foundation support: render the template, check quotas, record state, find leftovers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from activities.registry import Registry
from bridgehead import org_access, policies
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    ClusterSummary,
    FoundationRecord,
    FoundationStates,
    FoundationStatesInput,
    FoundationTemplateInput,
    Leftovers,
    LeftoversInput,
    OrgClustersInput,
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
        """The foundation's template, refused (before anything is created) where the organisation
        may not get one (bridgehead/org_access.py)."""
        org = self.registry.org(req.org_id)
        why = org_access.refusal(
            "provision a foundation", org.org_id, org.state, org.regions, req.region, req.by_org
        )
        if why is not None:
            raise ApplicationError(why, type="BadInput", non_retryable=True)
        tags = {
            policies.TAG_ORG: req.org_id,
            "bridgehead:region": req.region,
            "bridgehead:kind": "foundation",
        }
        return RenderedTemplate(
            template_body=policies.foundation_template(
                req.org_id, req.region, org.aws_account_id, tags, org.role_arn
            ),
            tags=tags,
        )

    @activity.defn
    def check_vcpu_quota(self, req: QuotaCheckInput) -> QuotaReport:
        """Will the request fit the account's EC2 standard vCPU quota, next to what already runs?

        The need is computed from the vCPU table (``BRIDGEHEAD_VCPUS``; unknown types count 2).
        Degrades to a warning (``available=False``) where Service Quotas cannot be read."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        table = self.aws.settings.vcpus
        needed = req.vcpus_needed or sum(table.get(t, 2) * n for t, n in req.nodes.items())
        try:
            sq = self.aws.customer(org, "service-quotas", req.region)
            value = float(
                sq.get_service_quota(ServiceCode="ec2", QuotaCode=EC2_STANDARD_VCPU_QUOTA)["Quota"][
                    "Value"
                ]
            )
        except ClientError as e:
            return QuotaReport(
                region=req.region,
                available=False,
                needed_vcpus=needed,
                message=f"could not read the EC2 vCPU quota ({error_code(e)}); continuing without the check",
            )
        except Exception as e:  # noqa: BLE001 - an endpoint without Service Quotas must not block provisioning
            return QuotaReport(
                region=req.region,
                available=False,
                needed_vcpus=needed,
                message=f"Service Quotas unavailable ({type(e).__name__}); continuing without the check",
            )
        in_use = 0
        with aws_errors(f"ec2:DescribeInstances in {req.region}"):
            ec2 = self.aws.customer(org, "ec2", req.region)
            running = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
            for page in ec2.get_paginator("describe_instances").paginate(Filters=running):
                for r in page["Reservations"]:
                    in_use += sum(
                        table.get(x["InstanceType"], 2)
                        for x in r["Instances"]
                        if not x.get("InstanceLifecycle") == "spot"
                    )
        ok = needed + in_use <= value
        return QuotaReport(
            region=req.region,
            available=True,
            limit_vcpus=value,
            needed_vcpus=needed,
            in_use_vcpus=in_use,
            sufficient=ok,
            message=f"EC2 standard vCPU quota in {req.region} is {value:g}, {in_use} in use"
            + (
                ""
                if ok
                else f": the cluster needs up to {needed} more vCPUs. Request an increase in Service Quotas "
                f"(code {EC2_STANDARD_VCPU_QUOTA}) or choose smaller instance types or fewer nodes."
            ),
        )

    @activity.defn
    def record_foundation(self, rec: FoundationRecord) -> None:
        """Record the foundation's state. Moving to DELETING is conditional (READY/FAILED/CREATING
        only) so that a cluster registration racing with cleanup is refused by the registry."""
        bind_subject(org_id=rec.org_id, region=rec.region)
        fields: dict[str, Any] = {
            "state": rec.state,
            "stack_name": rec.stack_name,
            "region": rec.region,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        if rec.outputs:
            fields["outputs"] = rec.outputs
        fields.pop("state")
        self.registry.transition_foundation(rec.org_id, rec.region, rec.state, fields)

    @activity.defn
    def foundation_states(self, req: FoundationStatesInput) -> FoundationStates:
        """Each foundation's state as the registry records it (consistent read): what the
        organisation's ``status`` follows after a ``CleanupRegion`` it did not start."""
        bind_subject(org_id=req.org_id)
        return FoundationStates(
            states={
                f["region"]: f.get("state", "PENDING")
                for f in self.registry.foundations(req.org_id)
                if f.get("region")
            }
        )

    @activity.defn
    def begin_foundation_delete(self, req: RegionClustersInput) -> RegionClusters:
        """Mark the foundation DELETING, then list clusters that block deletion (anything not
        DELETED/CANCELLED). If any blocks, the mark is reverted and nothing is deleted."""
        bind_subject(org_id=req.org_id, region=req.region)
        before = self.registry.foundation(req.org_id, req.region)
        marks = {"previous_state": (before or {}).get("state", "NONE"), "region": req.region}
        self.registry.transition_foundation(req.org_id, req.region, "DELETING", marks)
        blocking = [
            ClusterSummary(name=c["name"], region=c["region"], state=c["state"])
            for c in self.registry.clusters(req.org_id)
            if c.get("region") == req.region and c.get("state") not in ("DELETED", "CANCELLED")
        ]
        if blocking:
            # Refused: put back the state it had (the one reverse step the state machine allows,
            # only from the DELETING this call wrote).
            self.registry.revert_foundation_delete(
                req.org_id, req.region, (before or {}).get("state", "READY")
            )
        return RegionClusters(
            clusters=blocking, stack_name=(before or {}).get("stack_name") or None
        )

    @activity.defn
    def org_live_clusters(self, req: OrgClustersInput) -> RegionClusters:
        """Every cluster of the organisation, in any region, that is not DELETED/CANCELLED
        (consistent read): what blocks offboarding."""
        bind_subject(org_id=req.org_id)
        return RegionClusters(
            clusters=[
                ClusterSummary(
                    name=c["name"], region=c.get("region", "?"), state=c.get("state", "?")
                )
                for c in self.registry.clusters(req.org_id)
                if c.get("state") not in ("DELETED", "CANCELLED")
            ]
        )

    @activity.defn
    def sweep_foundation_leftovers(self, req: LeftoversInput) -> Leftovers:
        """After the foundation stack is deleted, remove the network pieces a stack deletion can
        leave behind (retained or DELETE_SKIPPED resources; CloudFormation emulators that cannot
        delete some types). Only resources tagged with this org *and* ``bridgehead:kind=foundation``
        in this region are touched, in dependency order; a resource already gone counts as removed.
        Returns what was removed."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        ec2 = self.aws.customer(org, "ec2", req.region)
        ours = [
            {"Name": f"tag:{policies.TAG_ORG}", "Values": [req.org_id]},
            {"Name": "tag:bridgehead:kind", "Values": ["foundation"]},
        ]
        removed: list[str] = []

        def gone(what: str, fn: Any, **kwargs: Any) -> None:
            try:
                fn(**kwargs)
                removed.append(what)
            except ClientError as e:
                if not error_code(e).endswith(("NotFound", ".Malformed")):
                    raise

        with aws_errors(f"sweeping foundation leftovers in {req.region}"):
            vpcs = [v["VpcId"] for v in ec2.describe_vpcs(Filters=ours)["Vpcs"]]
            for nat in ec2.describe_nat_gateways(Filters=ours)["NatGateways"]:
                if nat["State"] not in ("deleted", "deleting"):
                    gone(
                        f"natgateway/{nat['NatGatewayId']}",
                        ec2.delete_nat_gateway,
                        NatGatewayId=nat["NatGatewayId"],
                    )
            for addr in ec2.describe_addresses(Filters=ours)["Addresses"]:
                if addr.get("AssociationId"):
                    gone(
                        f"eip-association/{addr['AssociationId']}",
                        ec2.disassociate_address,
                        AssociationId=addr["AssociationId"],
                    )
                gone(
                    f"elastic-ip/{addr['AllocationId']}",
                    ec2.release_address,
                    AllocationId=addr["AllocationId"],
                )
            for igw in ec2.describe_internet_gateways(Filters=ours)["InternetGateways"]:
                for att in igw.get("Attachments", []):
                    gone(
                        f"igw-attachment/{igw['InternetGatewayId']}",
                        ec2.detach_internet_gateway,
                        InternetGatewayId=igw["InternetGatewayId"],
                        VpcId=att["VpcId"],
                    )
                gone(
                    f"internet-gateway/{igw['InternetGatewayId']}",
                    ec2.delete_internet_gateway,
                    InternetGatewayId=igw["InternetGatewayId"],
                )
            for rt in ec2.describe_route_tables(Filters=ours)["RouteTables"]:
                if any(a.get("Main") for a in rt.get("Associations", [])):
                    continue  # the VPC's main table goes with the VPC
                for a in rt.get("Associations", []):
                    gone(
                        f"rtb-association/{a['RouteTableAssociationId']}",
                        ec2.disassociate_route_table,
                        AssociationId=a["RouteTableAssociationId"],
                    )
                gone(
                    f"route-table/{rt['RouteTableId']}",
                    ec2.delete_route_table,
                    RouteTableId=rt["RouteTableId"],
                )
            for sn in ec2.describe_subnets(Filters=ours)["Subnets"]:
                gone(f"subnet/{sn['SubnetId']}", ec2.delete_subnet, SubnetId=sn["SubnetId"])
            for sg in ec2.describe_security_groups(Filters=ours)["SecurityGroups"]:
                if sg.get("GroupName") != "default":
                    gone(
                        f"security-group/{sg['GroupId']}",
                        ec2.delete_security_group,
                        GroupId=sg["GroupId"],
                    )
            for vpc in vpcs:
                gone(f"vpc/{vpc}", ec2.delete_vpc, VpcId=vpc)
        if removed:
            log.warning(
                "removed foundation leftovers",
                org_id=req.org_id,
                region=req.region,
                removed=removed,
            )
        return Leftovers(resources=removed)

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
                Filters=[
                    {"Name": f"tag:{policies.TAG_ORG}", "Values": [req.org_id]},
                    {
                        "Name": "instance-state-name",
                        "Values": ["pending", "running", "stopping", "stopped"],
                    },
                ]
            ):
                for r in page["Reservations"]:
                    found.extend(f"instance/{i['InstanceId']}" for i in r["Instances"])
            for vpc in ec2.describe_vpcs(
                Filters=[{"Name": f"tag:{policies.TAG_ORG}", "Values": [req.org_id]}]
            )["Vpcs"]:
                found.append(f"vpc/{vpc['VpcId']}")
            # Deleted NAT gateways stay listed (state "deleted") for about an hour; they are gone.
            nat_ids = [r.rsplit("/", 1)[1] for r in found if ":natgateway/" in r]
            if nat_ids:
                dead = {
                    n["NatGatewayId"]
                    for n in ec2.describe_nat_gateways(NatGatewayIds=nat_ids)["NatGateways"]
                    if n["State"] == "deleted"
                }
                found = [
                    r for r in found if not (":natgateway/" in r and r.rsplit("/", 1)[1] in dead)
                ]
        # Terminated instances and deleted stacks linger in listings; they are not leftovers.
        return Leftovers(resources=sorted(set(r for r in found if ":cloudformation:" not in r)))
