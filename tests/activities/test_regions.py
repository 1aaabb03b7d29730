"""activities/regions.py against moto: the rendered foundation launches in the customer account,
what it leaves behind is found and swept (only this organisation's foundation pieces); the EC2
vCPU quota pre-check (its need from the vCPU table, usage from the account's running instances,
a refusal naming the quota code, a warning where Service Quotas has no answer); the foundation's
registry record moves only as the state machine allows; cleanup is refused while clusters live."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.regions import EC2_STANDARD_VCPU_QUOTA, RegionActivities
from bridgehead import models as m
from tests.activities.conftest import (
    CUSTOMER,
    REGION,
    Platform,
    admin,
    customer_client,
    refuse,
    run,
)

#: moto's CloudFormation builds the foundation's network but not its KMS key or EFS mounts, and
#: reports its DependencyViolation without a CloudFormation error shape.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
    pytest.mark.filterwarnings("ignore:Exception.DependencyViolationError"),
]

ACTIVITIES = (
    "render_foundation_template",
    "check_vcpu_quota",
    "record_foundation",
    "foundation_states",
    "begin_foundation_delete",
    "org_live_clusters",
    "sweep_foundation_leftovers",
    "find_leftovers",
)

ORG = "acme"
STACK = "bridgehead-acme--foundation-us-east-1"


@pytest.fixture
def acts(platform: Platform) -> RegionActivities:
    platform.ready_org(ORG)
    return RegionActivities(platform.aws, platform.registry)


def launch_foundation(acts: RegionActivities, org: str = ORG) -> dict[str, str]:
    """The rendered template, launched in the customer account as the foundation stack is."""
    rendered = run(
        acts.render_foundation_template, m.FoundationTemplateInput(org_id=org, region=REGION)
    )
    cfn = admin("cloudformation")
    cfn.create_stack(
        StackName=f"bridgehead-{org}--foundation-{REGION}",
        TemplateBody=rendered.template_body,
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": k, "Value": v} for k, v in rendered.tags.items()],
    )
    stack = cfn.describe_stacks(StackName=f"bridgehead-{org}--foundation-{REGION}")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def network_arns(found: list[str]) -> list[str]:
    kinds = (
        ":vpc/",
        ":subnet/",
        ":internet-gateway/",
        ":security-group/",
        ":route-table/",
        ":natgateway/",
    )
    return sorted(a for a in found if any(k in a for k in kinds))


def test_the_foundation_launches_and_its_leftovers_are_found_then_swept(
    acts: RegionActivities, platform: Platform
):
    rendered = run(
        acts.render_foundation_template, m.FoundationTemplateInput(org_id=ORG, region=REGION)
    )
    assert rendered.tags == {
        "bridgehead:org": ORG,
        "bridgehead:region": REGION,
        "bridgehead:kind": "foundation",
    }
    assert json.loads(rendered.template_body)["Resources"], "a template CloudFormation takes"
    outputs = launch_foundation(acts)
    platform.ready_org("other", account=CUSTOMER)  # another organisation of the same account
    other = launch_foundation(acts, "other")
    # moto deletes what it can, then fails on the VPC's dependencies: the network is left over.
    with pytest.raises(Exception, match="DependencyViolation"):
        admin("cloudformation").delete_stack(StackName=STACK)
    where = m.LeftoversInput(org_id=ORG, region=REGION)
    found = run(acts.find_leftovers, where).resources
    vpc = f"arn:aws:ec2:{REGION}:{CUSTOMER}:vpc/{outputs['VpcId']}"
    assert vpc in found and f"vpc/{outputs['VpcId']}" in found  # tagged, and live in EC2
    assert any(":natgateway/" in a for a in found) and any(":internet-gateway/" in a for a in found)
    assert not any(":cloudformation:" in a or other["VpcId"] in a for a in found), found
    swept = run(acts.sweep_foundation_leftovers, where).resources
    assert f"vpc/{outputs['VpcId']}" in swept and any(
        r.startswith("internet-gateway/") for r in swept
    )
    assert network_arns(run(acts.find_leftovers, where).resources) == []
    # The other organisation's foundation stays (its NAT gateway is not asserted: moto ignores the
    # tag filters of DescribeNatGateways, which EC2 applies).
    ec2 = admin("ec2")
    assert ec2.describe_vpcs(VpcIds=[other["VpcId"]])["Vpcs"]
    assert ec2.describe_subnets(SubnetIds=[other["PrivateSubnet1Id"], other["PublicSubnetId"]])
    kept = ec2.describe_security_groups(GroupIds=[other["HeadSecurityGroupId"]])["SecurityGroups"]
    assert kept and not any(other["VpcId"] in r for r in swept)
    assert run(acts.sweep_foundation_leftovers, where).resources == [], (
        "a second sweep finds nothing"
    )


def plant_ec2_quota(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    """moto's Service Quotas knows VPC quotas only: give the customer account an EC2 vCPU quota."""
    from moto.servicequotas.models import ServiceQuotasBackend

    real = ServiceQuotasBackend.get_service_quota

    def get(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
        if (self.account_id, service_code, quota_code) == (
            CUSTOMER,
            "ec2",
            EC2_STANDARD_VCPU_QUOTA,
        ):
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": value}
        return real(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get)


def check(acts: RegionActivities, running: list[str], nodes: dict[str, int]) -> m.QuotaReport:
    ec2 = admin("ec2")
    for itype in running:
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType=itype)
    stopped = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="c5.4xlarge"
    )
    ec2.stop_instances(InstanceIds=[stopped["Instances"][0]["InstanceId"]])  # counts nothing
    req = m.QuotaCheckInput(org_id=ORG, region=REGION, nodes=nodes)
    return run(acts.check_vcpu_quota, req)


def test_refused_when_need_plus_usage_exceeds_quota(acts: RegionActivities, monkeypatch):
    plant_ec2_quota(monkeypatch, 16.0)
    r = check(acts, ["c5.xlarge"], {"t3.medium": 1, "c5.xlarge": 3})
    assert r.available and not r.sufficient
    assert (r.limit_vcpus, r.needed_vcpus, r.in_use_vcpus) == (16.0, 2 + 3 * 4, 4)
    assert "needs up to 14 more vCPUs" in r.message and EC2_STANDARD_VCPU_QUOTA in r.message


def test_allowed_when_it_fits(acts: RegionActivities, monkeypatch):
    plant_ec2_quota(monkeypatch, 16.0)
    r = check(acts, ["c5.xlarge"], {"t3.medium": 1, "c5.xlarge": 2})
    assert r.available and r.sufficient and (r.needed_vcpus, r.in_use_vcpus) == (10, 4)


def test_degrades_to_a_warning_where_service_quotas_has_no_answer(acts: RegionActivities):
    r = check(acts, [], {"t3.medium": 1})  # moto: NoSuchResourceException for EC2 quotas
    assert not r.available and r.sufficient and "NoSuchResourceException" in r.message


def test_the_foundation_record_moves_only_as_the_state_machine_allows(
    acts: RegionActivities, platform: Platform
):
    rec = m.FoundationRecord(org_id=ORG, region=REGION, state="CREATING", stack_name=STACK)
    run(acts.record_foundation, rec)
    ready = rec.model_copy(update={"state": "READY", "outputs": {"VpcId": "vpc-1"}})
    run(acts.record_foundation, ready)
    run(acts.record_foundation, ready)  # a retried write of the same state
    item = platform.registry.foundation(ORG, REGION)
    assert (item["state"], item["outputs"], item["stack_name"]) == (
        "READY",
        {"VpcId": "vpc-1"},
        STACK,
    )
    with pytest.raises(ApplicationError) as e:
        run(acts.record_foundation, rec)  # READY never goes back to CREATING
    assert e.value.type == "IllegalTransition" and e.value.non_retryable
    assert "is READY; it cannot become CREATING" in e.value.message
    assert platform.registry.foundation(ORG, REGION)["state"] == "READY"
    west = m.FoundationRecord(org_id=ORG, region="us-west-2", state="CREATING", stack_name="s")
    run(acts.record_foundation, west)
    states = run(acts.foundation_states, m.FoundationStatesInput(org_id=ORG)).states
    assert states == {REGION: "READY", "us-west-2": "CREATING"}


def cluster(platform: Platform, name: str, region: str, state: str) -> None:
    platform.registry.put_cluster(ORG, name, {"name": name, "region": region, "state": state})


def test_cleanup_is_refused_while_a_cluster_lives_and_marks_deleting_once_none_does(
    acts: RegionActivities, platform: Platform
):
    run(
        acts.record_foundation,
        m.FoundationRecord(org_id=ORG, region=REGION, state="CREATING", stack_name=STACK),
    )
    run(
        acts.record_foundation,
        m.FoundationRecord(org_id=ORG, region=REGION, state="READY", stack_name=STACK),
    )
    cluster(platform, "db", REGION, "RUNNING")
    cluster(platform, "old", REGION, "DELETED")
    cluster(platform, "west", "us-west-2", "STOPPED")
    req = m.RegionClustersInput(org_id=ORG, region=REGION)
    refused = run(acts.begin_foundation_delete, req)
    assert [(c.name, c.state) for c in refused.clusters] == [("db", "RUNNING")]
    assert platform.registry.foundation(ORG, REGION)["state"] == "READY", "the mark is undone"
    live = run(acts.org_live_clusters, m.OrgClustersInput(org_id=ORG)).clusters
    assert sorted((c.name, c.region) for c in live) == [("db", REGION), ("west", "us-west-2")]
    cluster(platform, "db", REGION, "DELETED")
    allowed = run(acts.begin_foundation_delete, req)
    assert (allowed.clusters, allowed.stack_name) == ([], STACK)
    item = platform.registry.foundation(ORG, REGION)
    assert (item["state"], item["previous_state"]) == ("DELETING", "READY")
    assert [
        c.name for c in run(acts.org_live_clusters, m.OrgClustersInput(org_id=ORG)).clusters
    ] == ["west"]


@pytest.mark.parametrize(
    "service,operation,code,kind,retried",
    [
        (
            "resourcegroupstaggingapi",
            "GetResources",
            "AccessDeniedException",
            "AwsPermissionError",
            False,
        ),
        ("resourcegroupstaggingapi", "GetResources", "ThrottlingException", "AwsThrottled", True),
        ("ec2", "DescribeVpcs", "UnauthorizedOperation", "AwsPermissionError", False),
        ("ec2", "DescribeVpcs", "RequestLimitExceeded", "AwsThrottled", True),
    ],
)
def test_aws_refusals_of_the_leftover_search_fail_at_once_and_throttling_is_retried(
    acts: RegionActivities,
    platform: Platform,
    service: str,
    operation: str,
    code: str,
    kind: str,
    retried: bool,
):
    refuse(customer_client(platform, ORG, service), operation, code)
    activity = acts.find_leftovers if service != "ec2" else acts.sweep_foundation_leftovers
    with pytest.raises(ApplicationError) as e:
        run(activity, m.LeftoversInput(org_id=ORG, region=REGION))
    assert (e.value.type, e.value.non_retryable) == (kind, not retried), e.value
    assert code in e.value.message and REGION in e.value.message
