"""Cluster support: validate a request and render its template, keep the registry, notify by email."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.budget import budget_status
from activities.errors import CustomerActionRequired, aws_errors, error_code
from activities.registry import Registry
from bridgehead import billing, budget, policies
from bridgehead.capacity import console_tail
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    NO_NEW_CLUSTERS_STATES,
    ClusterConfig,
    ClusterPlan,
    ClusterPrice,
    ClusterTemplate,
    ConsoleTail,
    ConsoleTailInput,
    NotifyInput,
    Placement,
    RegisterClusterInput,
    ValidateClusterInput,
)
from bridgehead.policies import render_cluster_template

log = get_logger("bridgehead.activities.clusters")
LIVE_STATES = ("VALIDATING", "CREATING", "RUNNING", "STOPPED", "DELETING", "FAILED")
OPTIONAL_PARAMETERS = ("SpotPrice", "SshCidr", "SshKeyName")


def placements(outputs: dict[str, str]) -> list[Placement]:
    """The foundation's private subnets in order (``PrivateSubnet{N}Id`` / ``PrivateSubnet{N}Az``);
    a foundation from before multi-AZ has only ``PrivateSubnetId``."""
    out = []
    for n in range(1, 7):
        subnet = outputs.get(f"PrivateSubnet{n}Id")
        if not subnet:
            break
        out.append(
            Placement(subnet_id=subnet, availability_zone=outputs.get(f"PrivateSubnet{n}Az", ""))
        )
    if not out and outputs.get("PrivateSubnetId"):
        out.append(Placement(subnet_id=outputs["PrivateSubnetId"], availability_zone=""))
    return out


class ClusterActivities:
    def __init__(self, aws: Aws, registry: Registry) -> None:
        self.aws = aws
        self.registry = registry

    @activity.defn
    def validate_cluster(self, req: ValidateClusterInput) -> ClusterPlan:
        """Everything that can be checked before any AWS call in the customer account. Each error
        names the field and the rule; on success the plan carries the rendered template."""
        bind_subject(org_id=req.org_id, cluster=req.name, region=req.region)
        s = self.aws.settings
        c = req.config
        errors: list[str] = []
        warnings: list[str] = []
        known = ", ".join(sorted(s.rates))
        field = "compute_instance_types" if c.compute_instance_types else "compute_instance_type"
        for field, value in [("head_instance_type", c.head_instance_type)] + [
            (field, t) for t in c.compute_types
        ]:
            if value not in s.rates:
                errors.append(
                    f"config.{field}: {value!r} is not an offered instance type (rate table {s.rate_version}: {known})"
                )
        if c.compute_max_nodes > s.max_compute_nodes:
            errors.append(
                f"config.compute_max_nodes: {c.compute_max_nodes} exceeds the ceiling of {s.max_compute_nodes}"
            )
        if not s.min_head_volume_gb <= c.head_volume_gb <= s.max_head_volume_gb:
            errors.append(
                f"config.head_volume_gb: {c.head_volume_gb} must be between {s.min_head_volume_gb} and {s.max_head_volume_gb} GiB"
            )
        for t in c.compute_types:
            if c.spot_price is not None and t in s.rates and c.spot_price > s.rates[t]:
                warnings.append(
                    f"config.spot_price {c.spot_price} is above the on-demand rate of {t}"
                )
        idle = c.auto_stop_idle_minutes
        if idle is not None and idle < s.min_auto_stop_idle_minutes:
            errors.append(
                f"config.auto_stop_idle_minutes: {idle} is below the minimum of {s.min_auto_stop_idle_minutes} minutes"
            )
        now = datetime.now(UTC)
        org_item = self.registry.org_item(req.org_id)
        if org_item is None:
            errors.append(f"org_id: organisation {req.org_id!r} is not registered")
            return ClusterPlan(errors=errors, warnings=warnings)
        if org_item.get("state") != "READY":
            errors.append(
                f"org_id: organisation {req.org_id} is {org_item.get('state')}, not READY; finish onboarding first"
            )
        marketplace = self.registry.marketplace(req.org_id) or {}
        if marketplace.get("state") in NO_NEW_CLUSTERS_STATES:
            errors.append(
                f"org_id: the AWS Marketplace subscription of {req.org_id} has ended ({marketplace.get('state')}); "
                "no new cluster can be created until the buyer subscribes again"
            )
        if req.region not in org_item.get("regions", []):
            errors.append(
                f"region: {req.region} is not one of the organisation's regions ({', '.join(org_item.get('regions', []))})"
            )
        image = self.registry.image_share(req.org_id, req.region) or {}
        if image.get("state") != "SHARED":
            errors.append(
                f"region: the platform image is not shared with the organisation in {req.region} (run ShareImages)"
            )
        foundation = self.registry.foundation(req.org_id, req.region) or {}
        if foundation.get("state") != "READY":
            errors.append(
                f"region: the regional foundation in {req.region} is {foundation.get('state', 'missing')}, not READY (run ProvisionRegion)"
            )
        known_types = all(t in s.rates for t in (c.head_instance_type, *c.compute_types))
        spend = budget_status(self.registry, req.org_id, now, org_item)
        if spend is not None and known_types:
            hourly = self._price(c).hourly_usd
            refusal = budget.creation_refusal(
                spend.monthly_budget_usd, spend.spent_usd, hourly, now
            )
            if refusal:
                errors.append(refusal)
        existing = self.registry.cluster(req.org_id, req.name)
        wf = activity.info().workflow_id or ""
        if (
            existing
            and existing.get("state") in LIVE_STATES
            and existing.get("workflow_run") not in (None, activity.info().workflow_run_id)
        ):
            errors.append(
                f"name: a cluster named {req.name} already exists ({existing.get('state')}); delete it or choose another name"
            )
        if errors:
            return ClusterPlan(errors=errors, warnings=warnings)
        out = foundation.get("outputs", {})
        tags = {
            policies.TAG_ORG: req.org_id,
            "bridgehead:cluster": req.name,
            "bridgehead:region": req.region,
            "bridgehead:kind": "cluster",
            "bridgehead:owner": req.owner or "org-admin",
            "bridgehead:workflow": wf,
        }
        params = {
            "ImageId": image["image_id"],
            "HeadInstanceType": c.head_instance_type,
            "ComputeInstanceType": c.compute_types[0],
            "ComputeNodes": str(c.compute_initial_nodes),
            "ComputeMaxNodes": str(c.compute_max_nodes),
            "ComputeMinNodes": "0" if c.autoscaling else str(c.compute_initial_nodes),
            "SpotPrice": str(c.spot_price) if c.spot_price is not None else "",
            "HeadVolumeGb": str(c.head_volume_gb),
            "VpcId": out.get("VpcId", ""),
            "PublicSubnetId": out.get("PublicSubnetId", ""),
            "PrivateSubnetId": out.get("PrivateSubnet1Id") or out.get("PrivateSubnetId", ""),
            "HeadSecurityGroupId": out.get("HeadSecurityGroupId", ""),
            "ComputeSecurityGroupId": out.get("ComputeSecurityGroupId", ""),
            "InstanceProfileName": out.get("InstanceProfileName", ""),
            "FileSystemId": out.get("FileSystemId", ""),
            # Passed through since the template has the rule; the config validated the CIDR.
            "SshCidr": c.ssh_cidr or "",
            "SshKeyName": c.ssh_key_name or "",
        }
        missing = [k for k, v in params.items() if v == "" and k not in OPTIONAL_PARAMETERS]
        if missing:
            return ClusterPlan(
                errors=[
                    f"region: the foundation in {req.region} lacks outputs {', '.join(missing)}; re-run ProvisionRegion"
                ]
            )
        price = self._price(c)
        if spend is not None:
            price.rest_of_month_usd = budget.rest_of_month(price.hourly_usd, now)
            price.budget_left_usd = spend.monthly_budget_usd - spend.spent_usd
        template = ClusterTemplate(
            org_id=req.org_id, name=req.name, tags=tags, bootstrap_minutes=s.head_bootstrap_minutes
        )
        return ClusterPlan(
            warnings=warnings,
            price=price,
            template_body=render_cluster_template(template) if req.with_body else "",
            template=template,
            parameters=params,
            tags=tags,
            admin_email=org_item.get("admin_email", ""),
            placements=placements(out),
        )

    def _price(self, c: ClusterConfig) -> ClusterPrice:
        s = self.aws.settings
        # The first compute type: the one tried first (a failover is reported in ``status``).
        first = c.compute_types[0]
        now = billing.hourly_price(c.head_instance_type, first, c.compute_initial_nodes, s.rates)
        top = billing.hourly_price(c.head_instance_type, first, c.compute_max_nodes, s.rates)
        return ClusterPrice(
            rate_version=s.rate_version,
            hourly_usd=now,
            monthly_usd=now * billing.HOURS_PER_MONTH,
            hourly_usd_at_max=top,
            monthly_usd_at_max=top * billing.HOURS_PER_MONTH,
        )

    @activity.defn
    def register_cluster(self, req: RegisterClusterInput) -> None:
        """Write the cluster's registry entry. The first write (CREATING) is a transaction that
        also checks the region's foundation is READY, so it cannot race with CleanupRegion."""
        bind_subject(org_id=req.org_id, cluster=req.name, region=req.region)
        info = activity.info()
        fields: dict[str, Any] = {
            "name": req.name,
            "region": req.region,
            "state": req.state.value,
            "stack_name": req.stack_name or None,
            "owner": req.owner,
            "workflow_id": req.workflow_id or info.workflow_id,
            "workflow_run": info.workflow_run_id,
            "login_address": req.login_address,
            "failure_reason": req.failure_reason,
            "head_instance_type": req.head_instance_type,
            "compute_instance_type": req.compute_instance_type,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        if req.segments is not None:
            fields["segments"] = [s.model_dump(mode="json") for s in req.segments]
        fields = {k: v for k, v in fields.items() if v is not None}
        if req.state.value == "CREATING":
            # Which image the stack launches from (the one validation just read), so a release
            # never revokes an image a running cluster still uses.
            fields["image_id"] = (self.registry.image_share(req.org_id, req.region) or {}).get(
                "image_id"
            )
        if req.state.value != "CREATING":
            # Only the cluster's own workflow moves its record, and only forwards.
            fields.pop("state")
            self.registry.transition_cluster(
                req.org_id, req.name, req.state.value, fields, workflow_id=fields["workflow_id"]
            )
            return
        if (
            self.registry.create_cluster(
                req.org_id, req.name, req.region, fields, info.workflow_run_id or ""
            )
            is not None
        ):
            raise ApplicationError(
                f"cluster {req.name} cannot be registered: the foundation in {req.region} is not READY (being cleaned up?) "
                "or another cluster with this name exists",
                type=CustomerActionRequired.__name__,
                non_retryable=True,
            ) from None

    @activity.defn
    def notify(self, req: NotifyInput) -> bool:
        """Email the org admin through SES (platform account). Sent at most once per key, barring a
        crash between sending and recording (then at most twice)."""
        marker = self.registry.notification(req.idempotency_key)
        if marker is not None:
            return False
        with aws_errors(
            "ses:SendEmail",
            hint=f"Verify the sender identity {self.aws.settings.notify_sender} in SES.",
        ):
            self.aws.platform("ses").send_email(
                Source=self.aws.settings.notify_sender,
                Destination={"ToAddresses": [req.to]},
                Message={"Subject": {"Data": req.subject}, "Body": {"Text": {"Data": req.body}}},
            )
        self.registry.record_notification(
            req.idempotency_key, req.to, req.subject, datetime.now(UTC).isoformat()
        )
        return True

    @activity.defn
    def head_console_tail(self, req: ConsoleTailInput) -> ConsoleTail:
        """The last lines of the head node's console output (EC2 GetConsoleOutput, decoded and
        bounded: see :func:`bridgehead.capacity.console_tail`), for a bootstrap that never
        signalled readiness. The instance id comes from the stack's own events, never from input."""
        bind_subject(org_id=req.org_id, region=req.region)
        org = self.registry.org(req.org_id)
        cfn = self.aws.customer(org, "cloudformation", req.region)
        with aws_errors(f"cloudformation:DescribeStackEvents {req.stack_name}"):
            events = cfn.describe_stack_events(StackName=req.stack_name).get("StackEvents", [])
        instance = next(
            (
                e["PhysicalResourceId"]
                for e in events
                if e.get("LogicalResourceId") == "HeadNode"
                and str(e.get("PhysicalResourceId", "")).startswith("i-")
            ),
            None,
        )
        if instance is None:  # no resource events (moto records stack-level events only)
            with aws_errors(f"cloudformation:DescribeStackResource {req.stack_name}"):
                try:
                    res = cfn.describe_stack_resource(
                        StackName=req.stack_name, LogicalResourceId="HeadNode"
                    )["StackResourceDetail"]
                except ClientError as e:
                    if error_code(e) != "ValidationError":
                        raise
                    return ConsoleTail()  # the stack or its head node is gone
            physical = str(res.get("PhysicalResourceId") or "")
            instance = physical if physical.startswith("i-") else None
        if instance is None:
            return ConsoleTail()
        ec2 = self.aws.customer(org, "ec2", req.region)
        with aws_errors(f"ec2:GetConsoleOutput {instance}"):
            try:
                raw = ec2.get_console_output(InstanceId=instance, Latest=True).get("Output") or ""
            except ClientError as e:
                if error_code(e) != "InvalidInstanceID.NotFound":
                    raise
                return ConsoleTail(instance_id=instance)  # terminated and gone
        try:
            text = base64.b64decode(raw).decode("utf-8", errors="replace")
        except ValueError:
            text = raw  # some SDK versions hand it over decoded
        return ConsoleTail(instance_id=instance, lines=console_tail(text))
