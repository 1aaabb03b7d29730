"""activities/clusters.py against moto: validation plans a cluster from the registry and the
foundation the organisation really has (its plan launches in the customer account) and names what
is wrong otherwise; the cluster's record is written only next to a READY foundation and moved only
by its own workflow; e-mail goes out through SES once per key; the head node's console is read
from the stack's own instance."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from pydantic import model_validator
from temporalio.exceptions import ApplicationError

from activities.cloudformation import StackActivities
from activities.clusters import ClusterActivities
from activities.regions import RegionActivities
from bridgehead import ids, policies
from bridgehead import models as m
from bridgehead.capacity import CONSOLE_LINES
from starter.emulator import PLATFORM_ACCOUNT
from tests.activities.conftest import (
    CUSTOMER,
    REGION,
    Platform,
    admin,
    customer_client,
    refuse,
    run,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Tried to parse AWS::"),
    pytest.mark.filterwarnings("ignore:Exception.DependencyViolationError"),
]

ACTIVITIES = ("validate_cluster", "register_cluster", "notify", "head_console_tail")

ORG = "acme"
SENDER = "noreply@bridgehead.example.com"
CONFIG = m.ClusterConfig(
    head_instance_type="t3.medium", compute_instance_type="c5.xlarge", compute_max_nodes=2
)


@pytest.fixture
def acts(platform: Platform) -> ClusterActivities:
    platform.ready_org(ORG)
    return ClusterActivities(platform.aws, platform.registry)


def ready_region(platform: Platform) -> tuple[str, dict[str, str]]:
    """The region as ProvisionRegion and ShareImages leave it: the foundation launched in the
    customer account and recorded READY with its outputs, the platform image shared."""
    regions = RegionActivities(platform.aws, platform.registry)
    rendered = run(
        regions.render_foundation_template, m.FoundationTemplateInput(org_id=ORG, region=REGION)
    )
    name = f"bridgehead-{ORG}--foundation-{REGION}"
    cfn = admin("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=rendered.template_body)
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    for state in ("CREATING", "READY"):
        rec = m.FoundationRecord(
            org_id=ORG, region=REGION, state=state, stack_name=name, outputs=outputs
        )
        run(regions.record_foundation, rec)
    image = platform.released_image()
    platform.registry.put_image_share(ORG, REGION, {"image_id": image, "state": "SHARED"})
    return image, outputs


def customer_node_roles() -> None:
    """The node role and instance profile the customer creates beside Bridgehead's role."""
    iam = admin("iam")
    for node in policies.node_roles(ORG, [REGION], CUSTOMER, "aws"):
        iam.create_role(
            RoleName=node["name"], AssumeRolePolicyDocument=json.dumps(node["trust_policy"])
        )
        iam.create_instance_profile(InstanceProfileName=node["name"])
        iam.add_role_to_instance_profile(InstanceProfileName=node["name"], RoleName=node["name"])


def validate(acts: ClusterActivities, config: m.ClusterConfig = CONFIG) -> m.ClusterPlan:
    req = m.ValidateClusterInput(org_id=ORG, name="c1", region=REGION, config=config)
    return run(acts.validate_cluster, req, workflow_id="cluster-acme-c1")


def stack_request(plan: m.ClusterPlan) -> m.StackRequest:
    """The create request the lifecycle makes from ``plan`` (its template as the plan carries it)."""
    return m.StackRequest(
        org_id=ORG,
        region=REGION,
        stack_name="bridgehead-acme--cluster-c1",
        **plan.template_fields(),
        parameters=plan.parameters,
        tags=plan.tags,
        client_request_token="c1",
    )


def test_the_plan_comes_from_the_real_foundation_and_launches(
    acts: ClusterActivities, platform: Platform
):
    image, outputs = ready_region(platform)
    plan = validate(acts)
    assert plan.errors == [] and plan.template_body
    p = plan.parameters
    assert (p["ImageId"], p["VpcId"], p["PrivateSubnetId"]) == (
        image,
        outputs["VpcId"],
        outputs["PrivateSubnet1Id"],
    )
    assert [x.subnet_id for x in plan.placements] == [
        outputs["PrivateSubnet1Id"],
        outputs["PrivateSubnet2Id"],
    ]
    assert plan.tags["bridgehead:workflow"] == "cluster-acme-c1"
    assert plan.price is not None and plan.price.hourly_usd > 0
    request = stack_request(plan)
    assert request.template_body == plan.template_body
    customer_node_roles()
    run(StackActivities(platform.aws, platform.registry).create_stack, request)
    stack = admin("cloudformation").describe_stacks(StackName="bridgehead-acme--cluster-c1")
    assert stack["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_a_plan_without_the_body_creates_the_stack_the_body_would(
    acts: ClusterActivities, platform: Platform
):
    """Issue 23: the lifecycle asks for the plan without the template's body (keeping it out of
    history); create_stack renders the same template from the plan."""
    ready_region(platform)
    full = validate(acts)
    req = m.ValidateClusterInput(
        org_id=ORG, name="c1", region=REGION, config=CONFIG, with_body=False
    )
    plan = run(acts.validate_cluster, req, workflow_id="cluster-acme-c1")
    assert plan.errors == [] and plan.template_body == "" and plan.template is not None
    assert policies.render_cluster_template(plan.template) == full.template_body
    request = stack_request(plan)
    assert request.cluster_template == plan.template and request.template_body == ""
    customer_node_roles()
    run(StackActivities(platform.aws, platform.registry).create_stack, request)
    got = admin("cloudformation").get_template(StackName="bridgehead-acme--cluster-c1")
    body = got["TemplateBody"]
    assert (json.loads(body) if isinstance(body, str) else body) == json.loads(full.template_body)


def test_twin_a_stack_request_without_a_template_is_refused():
    base = {"org_id": ORG, "region": REGION, "stack_name": "s", "client_request_token": "t"}
    with pytest.raises(ValueError, match="template_body or cluster_template"):
        m.StackRequest(**base)
    with pytest.raises(ValueError, match="not both"):
        m.StackRequest(
            **base, template_body="{}", cluster_template=m.ClusterTemplate(org_id=ORG, name="c1")
        )


def other_clusters_templates_taken(model: type[m.StackRequest]) -> list[str]:
    """Which templates of other clusters ``model`` takes for stack c1 of ORG (none should be)."""
    base = {"org_id": ORG, "region": REGION, "client_request_token": "t"}
    mine = m.ClusterTemplate(org_id=ORG, name="c1")
    assert model(**base, stack_name=ids.cluster_stack(ORG, "c1"), cluster_template=mine)
    taken = []
    for other in (
        m.ClusterTemplate(org_id="globex", name="c1"),
        mine.model_copy(update={"name": "c2"}),
    ):
        try:
            model(**base, stack_name=ids.cluster_stack(ORG, "c1"), cluster_template=other)
        except ValueError as e:
            assert "is not the one of stack" in str(e)
        else:
            taken.append(f"{other.org_id}/{other.name}")
    return taken


def test_a_stack_request_with_another_clusters_template_is_refused():
    """Defence in depth (tenant isolation): a template rendered for another organisation, or for
    another cluster, cannot create this stack."""
    assert other_clusters_templates_taken(m.StackRequest) == []


class OneTemplateOnly(m.StackRequest):
    """The planted defect: the request's check as it was, one template, whichever it is."""

    @model_validator(mode="after")
    def _one_template(self) -> OneTemplateOnly:
        if bool(self.template_body) == (self.cluster_template is not None):
            raise ValueError("a stack request needs template_body or cluster_template (not both)")
        return self


def test_twin_a_request_that_only_counts_templates_takes_another_orgs():
    assert other_clusters_templates_taken(OneTemplateOnly) == ["globex/c1", "acme/c2"]


def test_what_is_wrong_is_named_field_by_field(acts: ClusterActivities, platform: Platform):
    platform.ready_org(ORG, state="ACTION_REQUIRED", regions=["us-west-2"])
    bad = CONFIG.model_copy(update={"head_instance_type": "x9.huge", "compute_max_nodes": 500})
    assert validate(acts, bad).errors == [
        "config.head_instance_type: 'x9.huge' is not an offered instance type (rate table "
        f"2026-11: {', '.join(sorted(platform.aws.settings.rates))})",
        "config.compute_max_nodes: 500 exceeds the ceiling of 64",
        "org_id: organisation acme is ACTION_REQUIRED, not READY; finish onboarding first",
        "region: us-east-1 is not one of the organisation's regions (us-west-2)",
        "region: the platform image is not shared with the organisation in us-east-1 (run ShareImages)",
        "region: the regional foundation in us-east-1 is missing, not READY (run ProvisionRegion)",
    ]


def register(acts: ClusterActivities, state: str, **info: object) -> None:
    req = m.RegisterClusterInput(
        org_id=ORG,
        name="c1",
        region=REGION,
        state=m.ClusterState(state),
        stack_name="bridgehead-acme--cluster-c1",
        workflow_id="cluster-acme-c1",
    )
    run(acts.register_cluster, req, **info)


def test_a_cluster_is_registered_next_to_a_ready_foundation_and_moved_by_its_workflow(
    acts: ClusterActivities, platform: Platform
):
    with pytest.raises(ApplicationError) as refused:
        register(acts, "CREATING")  # no foundation yet
    assert refused.value.type == "CustomerActionRequired" and refused.value.non_retryable
    assert platform.registry.cluster(ORG, "c1") is None
    image, _ = ready_region(platform)
    register(acts, "CREATING")
    register(acts, "CREATING")  # a retry by the same run
    record = platform.registry.cluster(ORG, "c1")
    assert (record["state"], record["image_id"], record["workflow_run"]) == (
        "CREATING",
        image,
        "test-run",
    )
    register(acts, "RUNNING")
    assert platform.registry.cluster(ORG, "c1")["state"] == "RUNNING"
    with pytest.raises(ApplicationError) as foreign:
        req = m.RegisterClusterInput(
            org_id=ORG, name="c1", region=REGION, state=m.ClusterState.DELETING, workflow_id="x"
        )
        run(acts.register_cluster, req)
    assert foreign.value.type == "IllegalTransition" and foreign.value.non_retryable
    assert "belongs to another workflow_id" in foreign.value.message
    with pytest.raises(ApplicationError) as second:
        register(acts, "CREATING", workflow_run_id="another-run")  # a second cluster of the name
    assert second.value.type == "CustomerActionRequired"
    assert platform.registry.cluster(ORG, "c1")["state"] == "RUNNING"


def sent() -> list[tuple[list[str], str]]:
    from moto.ses.models import ses_backends

    messages = ses_backends[PLATFORM_ACCOUNT][REGION].sent_messages
    return [(x.destinations["ToAddresses"], x.subject) for x in messages]


def note(key: str = "ready-acme") -> m.NotifyInput:
    return m.NotifyInput(to="admin@acme.example", subject="ready", body="b", idempotency_key=key)


def test_an_email_goes_out_once_per_key(acts: ClusterActivities, platform: Platform):
    platform.aws.platform("ses").verify_email_identity(EmailAddress=SENDER)
    assert run(acts.notify, note()) is True
    assert run(acts.notify, note()) is False  # a retry, or a replay asking again
    assert sent() == [(["admin@acme.example"], "ready")]
    assert platform.registry.notification("ready-acme")["to"] == "admin@acme.example"
    assert run(acts.notify, note("ready-acme-2")) is True and len(sent()) == 2


def test_an_unverified_sender_fails_at_once_saying_how_to_fix_it(
    acts: ClusterActivities, platform: Platform
):
    with pytest.raises(ApplicationError) as e:
        run(acts.notify, note())
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert "MessageRejected" in e.value.message
    assert f"Verify the sender identity {SENDER} in SES." in e.value.message
    assert sent() == [] and platform.registry.notification("ready-acme") is None


HEAD = json.dumps(
    {
        "Resources": {
            "HeadNode": {
                "Type": "AWS::EC2::Instance",
                "Properties": {"ImageId": "ami-12345678", "InstanceType": "t3.medium"},
            }
        }
    }
)


NO_HEAD = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


def test_the_console_of_the_stacks_own_head_node_is_read(acts: ClusterActivities):
    cfn = admin("cloudformation")
    cfn.create_stack(StackName="bridgehead-acme--cluster-c1", TemplateBody=HEAD)
    head = cfn.describe_stack_resource(
        StackName="bridgehead-acme--cluster-c1", LogicalResourceId="HeadNode"
    )["StackResourceDetail"]["PhysicalResourceId"]
    req = m.ConsoleTailInput(org_id=ORG, region=REGION, stack_name="bridgehead-acme--cluster-c1")
    tail = run(acts.head_console_tail, req)
    console = admin("ec2").get_console_output(InstanceId=head)["Output"]
    if not console.startswith("Linux"):  # base64, as EC2 sends it (moto sends it decoded)
        console = base64.b64decode(console).decode()
    assert tail.instance_id == head and 0 < len(tail.lines) <= CONSOLE_LINES
    assert tail.lines[-1] == [x.rstrip() for x in console.splitlines() if x.strip()][-1]
    # A stack without its head node (gone with a rollback) has no console to read.
    cfn.create_stack(StackName="bridgehead-acme--cluster-c2", TemplateBody=NO_HEAD)
    headless = m.ConsoleTailInput(
        org_id=ORG, region=REGION, stack_name="bridgehead-acme--cluster-c2"
    )
    assert run(acts.head_console_tail, headless) == m.ConsoleTail()


def test_the_console_of_a_stack_that_does_not_exist_fails_at_once(acts: ClusterActivities):
    req = m.ConsoleTailInput(org_id=ORG, region=REGION, stack_name="bridgehead-acme--cluster-c3")
    with pytest.raises(ApplicationError) as e:
        run(acts.head_console_tail, req)
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert "cloudformation:DescribeStackEvents bridgehead-acme--cluster-c3" in e.value.message
    assert "does not exist" in e.value.message


def test_a_console_that_may_not_be_read_fails_at_once(acts: ClusterActivities, platform: Platform):
    admin("cloudformation").create_stack(StackName="bridgehead-acme--cluster-c1", TemplateBody=HEAD)
    refuse(customer_client(platform, ORG, "ec2"), "GetConsoleOutput", "UnauthorizedOperation")
    req = m.ConsoleTailInput(org_id=ORG, region=REGION, stack_name="bridgehead-acme--cluster-c1")
    with pytest.raises(ApplicationError) as e:
        run(acts.head_console_tail, req, schedule_to_close_timeout=timedelta(minutes=5))
    assert e.value.type == "AwsPermissionError" and e.value.non_retryable
    assert e.value.message.startswith("ec2:GetConsoleOutput i-")
